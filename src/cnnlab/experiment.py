"""Orchestration: one training run end to end (``train``), and the tutorial's experiment (``compare``):
several models under the same protocol, one table, one figure."""

from __future__ import annotations

import csv
import io
import itertools
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from cnnlab.atomic import write_atomic, write_json
from cnnlab.config import TrainConfig, flag, resume_may_change
from cnnlab.data import BUILTIN_NAMES, Dataset, channel_stats, check_dataset_name, list_datasets, load_data
from cnnlab.engine import EarlyStopping, History, evaluate, fit, resolve_device
from cnnlab.engine.checkpoint import Checkpoint, CheckpointError, find_latest, load_checkpoint
from cnnlab.engine.determinism import reproducibility
from cnnlab.engine.distributed import Distributed, init_from_env
from cnnlab.engine.placement import choose_placement
from cnnlab.engine.snapshot import Checkpointer
from cnnlab.engine.tensorboard import run_callbacks
from cnnlab.errors import CnnlabError
from cnnlab.models import (
    backbone_config,
    check_model_name,
    count_params,
    create_model,
    is_backbone,
    is_registered,
    list_models,
)
from cnnlab.models.pretrained import pretrained_file
from cnnlab.notebook import comparison_html, result_html
from cnnlab.plots import learning_curves
from cnnlab.recipes import check_fits, get_recipe
from cnnlab.run.config import trained_run_config
from cnnlab.run.folder import ensure_new_run_dir, environment, load_run, save_run
from cnnlab.summarize import summary
from cnnlab.userfiles import check_user_file


@dataclass
class RunResult:
    name: str
    path: Path | None
    params: int
    history: History
    test: dict  # loss, accuracy, error_pct, n
    primary: bool = True  # False on the other ranks of a distributed run (rank 0 evaluates and saves)

    def row(self) -> dict:
        return {
            "model": self.name,
            "params": self.params,
            "epochs_run": self.history.epochs,
            "best_epoch": self.history.best_epoch,
            "train_seconds": round(self.history.total_seconds, 1),
            "test_accuracy": round(self.test["accuracy"], 4),
            "error_pct": round(self.test["error_pct"], 2),
        }

    def _repr_html_(self) -> str:
        """In Jupyter: what was trained, the final-set numbers and the learning curves."""
        return result_html(self)


class Comparison(list):
    """What `compare` returns: a list of `RunResult` (one per model, in order) that shows itself in
    Jupyter as the tutorial's error % table with every model's learning curves."""

    def _repr_html_(self) -> str:
        return comparison_html(self)


def train(
    config: TrainConfig,
    *,
    out: str | os.PathLike | None,
    data: Dataset | None = None,
    data_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
    resume: str | os.PathLike | None = None,
    force: bool = False,
) -> RunResult:
    """Train one model as ``config`` says, evaluate it once on the final (official test) set, and write
    a run folder to ``out`` (unless ``out`` is None).

    With ``out``, checkpoints go to ``out/checkpoints``. ``resume="auto"`` continues from the newest valid
    one there (passing over corrupt ones with a note; starting afresh when there is none), a path from that
    checkpoint folder. A checkpoint made with a different config is refused unless ``force``. Launched by
    torchrun with several processes, this process joins the job and trains data-parallel.

    Example:
        >>> r = cl.train(cl.TrainConfig(model="cnn2", epochs=2, limit=2000), out="runs/try")  # doctest: +SKIP
        >>> r.test["error_pct"]
    """
    config.validate()
    check_fits(config)
    check_names(config)
    device, ddp = _where_to_train(config)
    checkpoints, ckpt, data_dir = _continuing(
        config, out, resume=resume, force=force, overwrite=overwrite, ddp=ddp, data_dir=data_dir
    )
    if data is None:
        config = with_backbone_size(config)
        data = load_config_data(config, data_dir=data_dir)
    config = config.sized_for(len(data.train))
    if progress and ddp.is_main:
        if ckpt is not None:
            total = -(-len(data.train) // config.batch_size) * config.epochs
            where = out if out is not None else ckpt.path
            print(f"resuming {where} from step {ckpt.step:,} of {total:,}", flush=True)
        print(describe_plan(config, data), flush=True)
    model = build_model(config, data)
    selection = selection_of(config)
    with reproducibility(
        seed=config.seed, deterministic=config.deterministic, threads=config.threads
    ) as repro:
        history = fit(
            model,
            data,
            config,
            callbacks=[selection, *run_callbacks(config, out, data)],
            device=device,
            progress=progress,
            checkpoints=checkpoints,
            resume=ckpt,
        )
        env = {**environment(device, config.seed), **repro, "world_size": ddp.world, "backend": ddp.backend}
        env["resumed_from"] = str(ckpt.path) if ckpt is not None else None
    if not ddp.is_main:  # rank 0 evaluates and writes the run
        return RunResult(config.model, None, count_params(model), history, {}, primary=False)
    test = evaluate(
        model, data.test, tta=config.tta_views or None, amp=config.amp
    )  # the one look at the test set
    path = None
    if out is not None:
        chosen = _selection_record(selection, config, history)
        path = _save(out, config, model, history, data, env, test, data_dir, chosen)
    return RunResult(config.model, path, count_params(model), history, test)


def _where_to_train(config: TrainConfig) -> tuple[torch.device, Distributed]:
    """The device, and under torchrun the job this process joins (gloo on CPU, NCCL on CUDA)."""
    device = resolve_device(config.device)
    ddp = init_from_env(device)
    if ddp.active and device.type == "cuda":
        device = torch.device("cuda", ddp.local_rank)
    return device, ddp


def _continuing(
    config: TrainConfig, out, *, resume, force: bool, overwrite: bool, ddp: Distributed, data_dir
) -> tuple[Checkpointer | None, Checkpoint | None, str | os.PathLike | None]:
    """(the run's checkpointer, the checkpoint it continues from, its data folder), checked before any
    work: a resumed run reads its data where it was started."""
    checkpoints, ckpt = None, None
    if out is not None:
        checkpoints, ckpt = _checkpoints_for(
            config, out, resume=resume, force=force, overwrite=overwrite, ddp=ddp, data_dir=data_dir
        )
    elif resume is not None:
        ckpt = _checked(load_checkpoint(_auto_needs_out(resume)), config, ddp=ddp, force=force)
    if ckpt is not None and data_dir is None:
        saved_dir = ckpt.meta.get("data_dir")
        data_dir = saved_dir if isinstance(saved_dir, str) else None
    return checkpoints, ckpt, data_dir


def _selection_record(selection: EarlyStopping, config: TrainConfig, history: History) -> dict:
    """How the kept epoch was chosen, and which it was (results.json records it)."""
    return {
        "rule": selection.describe(),
        "monitor": config.monitor,
        "tie_break": selection.tie_break,
        "window": selection.window,
        "best_epoch": history.best_epoch,
    }


def selection_of(config: TrainConfig) -> EarlyStopping:
    """Model selection on the monitored split (accuracy ties broken by its loss, a trailing mean over
    ``monitor_window`` epochs); early stopping only with a patience."""
    return EarlyStopping(config.monitor, patience=config.patience, window=config.monitor_window)


def check_names(config: TrainConfig, models: Sequence[str] = ()) -> None:
    """Every name ``config`` gives (dataset or folder, model or spec, timm backbone, pretrained file), and
    ``models`` besides, checked before any data is read: a typo fails in a second, with close matches."""
    check_dataset_name(config.data)
    for name in models or (config.model,):
        check_model_name(name)
    if config.pretrained not in (None, "imagenet"):
        check_user_file(config.pretrained, what="pretrained weights file")
    elif config.pretrained == "imagenet" and is_backbone(config.model):
        pretrained_file(backbone_config(config.model), note=_note)  # the cache first; online, say so


def describe_plan(config: TrainConfig, data: Dataset) -> str:
    """One line before training: the recipe, why it fits, and the schedule it gives on this data."""
    n = len(data.train)
    steps = -(-n // config.batch_size)
    epochs = f"{config.epochs} epoch{'s' * (config.epochs != 1)}"
    epochs = epochs if config.patience is None else f"up to {epochs}"
    floor = f" (a floor of {config.min_steps:,} steps)" if config.min_steps else ""
    where, why = choose_placement(config.data_placement, data.train.images, resolve_device(config.device))
    return (
        f"recipe {config.recipe} ({get_recipe(config.recipe).description.split(':')[0].lower()}): "
        f"{config.model} on {n:,} training images, batch {config.batch_size}, {steps:,} steps per epoch, "
        f"{epochs} = {steps * config.epochs:,} steps{floor}; data placement {where}: {why}"
    )


def with_backbone_size(config: TrainConfig) -> TrainConfig:
    """A pretrained backbone trained on your folder sees images at the size its weights were trained on,
    unless --image-size says otherwise (built-in datasets keep their native size)."""
    if config.image_size is not None or not is_backbone(config.model) or config.data in BUILTIN_NAMES:
        return config
    return replace(config, image_size=int(backbone_config(config.model).input_size[-1]))


def load_config_data(config: TrainConfig, *, data_dir: str | os.PathLike | None = None, **kw) -> Dataset:
    """The dataset ``config`` names, split and sized as it says."""
    return load_data(config.data, seed=config.seed, data_dir=data_dir, **config.data_options(), **kw)


def build_model(config: TrainConfig, data: Dataset) -> torch.nn.Module:
    """The model ``config`` names, shaped for ``data``, with the training split's per-channel statistics in
    a ``normalize`` stage when ``config.normalize`` (the dataset's published ones where it has them)."""
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    if config.normalize and not is_backbone(config.model):  # a backbone normalises as its weights expect
        mean, std = (data.mean, data.std) if data.mean is not None else channel_stats(data.train.images)
    return create_model(
        config.model,
        input_shape=data.input_shape,
        num_classes=data.num_classes,
        seed=config.seed,
        mean=mean,
        std=std,
        pretrained=True if config.pretrained == "imagenet" else config.pretrained,
    )


def _save(
    out,
    config: TrainConfig,
    model,
    history: History,
    data: Dataset,
    env: dict,
    test: dict,
    data_dir,
    selection: dict,
) -> Path:
    """Write the run folder: what rebuilds the model and repeats the run, and what it measured."""
    params = count_params(model)
    saved = trained_run_config(
        config, model, data, data_dir=data_dir, spec=_spec_of(config.model), params=params
    )
    path = save_run(
        out,
        model,
        history,
        config=saved,
        env=env,
        results={
            "test": test,
            "params": params,
            "selection": selection,
            "summary": summary(model, data.input_shape).as_dict(),
        },
        overwrite=True,  # our own folder: checked (new, or the run being resumed) before training
    )
    files = data.split_files()
    if files is not None:  # a folder or CSV dataset: which file went to which split, in order
        write_json(path / "splits.json", {"description": data.split_description, **files})
    return path


# Settings a resumed run may change: they do not change what is trained (``resume=True`` in the table).
RESUME_MAY_CHANGE = resume_may_change()


def resumed_config(out, given: dict, *, force: bool = False) -> TrainConfig | None:
    """``--resume auto`` from the run folder alone: the config the newest valid checkpoint in
    ``out/checkpoints`` was made with, with the options ``given`` again over it. Options a resumed run may change are taken as given; any other that differs
    from the run's is refused, naming them, unless ``force``. None when there is no checkpoint yet."""
    ckpt, _ = find_latest(Path(out) / "checkpoints")
    saved = ckpt.meta.get("config") if ckpt is not None else None
    if ckpt is None or not isinstance(saved, dict):
        return None  # train() says why (no checkpoint yet, damaged ones, no config recorded)
    differ = [
        f"{flag(k)} {saved.get(k)!r} -> {v!r}"
        for k, v in given.items()
        if k not in RESUME_MAY_CHANGE and saved.get(k) != v
    ]
    if differ and not force:
        raise CheckpointError(
            f"{out} was trained with other settings than those given: {'; '.join(differ)}. "
            f"Leave them out to continue the run as it was (only {', '.join(map(flag, RESUME_MAY_CHANGE))} "
            "may change), or pass --force"
        )
    return TrainConfig.from_dict({**saved, **given}).validate()


def _note(text: str) -> None:
    print(f"cnnlab: {text}", file=sys.stderr)


def _auto_needs_out(resume) -> str | os.PathLike:
    if str(resume) == "auto":
        raise CnnlabError("--resume auto looks for checkpoints in --out; give --out (or a checkpoint path)")
    return resume


def _checked(ckpt: Checkpoint, config: TrainConfig, *, ddp: Distributed, force: bool) -> Checkpoint:
    """Refuse a checkpoint made with another config (unless ``force``), naming what differs."""
    saved = ckpt.meta.get("config")
    if not isinstance(saved, dict):
        differ = ["(the checkpoint records no config)"]
    else:
        now = config.to_dict()
        keys = sorted((set(saved) | set(now)) - set(RESUME_MAY_CHANGE))
        differ = [f"{k} {saved.get(k)!r} -> {now.get(k)!r}" for k in keys if saved.get(k) != now.get(k)]
    if ckpt.meta.get("world_size", 1) != ddp.world:
        differ.append(f"processes {ckpt.meta.get('world_size', 1)} -> {ddp.world}")
    if differ and not force:
        raise CheckpointError(
            f"Checkpoint {ckpt.path} was made with a different config: {'; '.join(differ)}. "
            "Resume with the same settings, or pass --force to continue with the new ones"
        )
    if differ and ddp.is_main:
        _note(f"resuming despite a different config (--force): {'; '.join(differ)}")
    return ckpt


def _checkpoints_for(
    config: TrainConfig, out, *, resume, force: bool, overwrite: bool, ddp: Distributed, data_dir=None
) -> tuple[Checkpointer, Checkpoint | None]:
    """The run folder's checkpointer, and the checkpoint to resume from (None: a new run)."""
    folder = Path(out) / "checkpoints"
    ckpt = None
    if resume is not None and str(resume) == "auto":
        ckpt, notes = find_latest(folder)
        for n in notes if ddp.is_main else ():
            _note(n)
        if ckpt is None and notes:
            raise CheckpointError(
                f"No valid checkpoint in {folder}: all {len(notes)} are damaged (see above)"
            )
        if ckpt is None and _never_checkpointed(Path(out)):
            overwrite = True  # a run stopped before its first checkpoint: nothing in it to keep
            if ddp.is_main:
                _note(
                    f"no checkpoint in {out} yet (stopped before its first?); starting the run afresh there"
                )
        elif ckpt is None and ddp.is_main:
            _note(f"no checkpoint in {folder} yet; starting a new run")
    elif resume is not None:
        ckpt = load_checkpoint(resume)
    if ckpt is None and folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise CnnlabError(
            f"Output folder {out} already holds a run with checkpoints; continue it with --resume auto, "
            "choose another --out, or pass --overwrite to start over"
        )
    if ckpt is None or ckpt.path.parent.resolve() != folder.resolve():
        ensure_new_run_dir(out, overwrite=overwrite)
    if ckpt is not None:
        _checked(ckpt, config, ddp=ddp, force=force)
    ddp.barrier()  # every rank has looked before rank 0 changes anything
    if ckpt is None and overwrite and ddp.is_main:
        shutil.rmtree(folder, ignore_errors=True)
    where = str(data_dir) if data_dir is not None else None  # a resume without --data-dir reads there
    meta = {"config": config.to_dict(), "world_size": ddp.world, "data_dir": where}
    checkpoints = Checkpointer(folder, every=config.checkpoint_every, keep=config.keep, meta=meta)
    if ddp.is_main:
        checkpoints.check_writable()
    return checkpoints, ckpt


def _never_checkpointed(out: Path) -> bool:
    """``out`` holds nothing but a ``checkpoints/`` folder with no checkpoint in it (at most the
    temporary folder of one being written): a run killed before its first checkpoint."""
    if not out.is_dir():
        return False
    entries = list(out.iterdir())
    if not entries or [e.name for e in entries] != ["checkpoints"] or not entries[0].is_dir():
        return False
    return all(e.name.startswith((".tmp", ".old")) for e in entries[0].iterdir())


def _spec_of(model: str) -> str | None:
    if is_registered(model):
        return next(m.spec for m in list_models() if m.name == model)
    return model


def compare(
    models: list[str],
    base: TrainConfig,
    *,
    out: str | os.PathLike | None,
    data: Dataset | None = None,
    data_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
    resume: str | None = None,
    on_result=None,
) -> Comparison:
    """Train each model under the same protocol (same data, split, seed and recipe), evaluate each once
    on the final set, and write ``results.md``, ``results.csv`` and ``learning_curves.png`` to ``out``
    (one run folder per model beneath it).

    ``resume="auto"`` continues an interrupted comparison in ``out``: models whose run folder is complete
    are kept as they are (their config must match), an interrupted one continues from its checkpoints,
    and the rest are trained.

    Example:
        >>> cl.compare(["mlp", "cnn1"], cl.TrainConfig(epochs=3, limit=5000), out="runs/compare")  # doctest: +SKIP
    """
    if not models:
        raise CnnlabError("No models to compare; e.g. --models mlp,cnn1,cnn2,cnn4")
    if len(set(models)) != len(models):
        raise CnnlabError(f"Duplicate model in --models: {','.join(models)}")
    if resume not in (None, "auto"):
        raise CnnlabError(f"compare resumes with --resume auto (whole comparisons), got {resume!r}")
    if resume and out is None:
        raise CnnlabError("--resume auto continues the comparison in --out; give --out")
    base.validate()
    check_fits(base)
    check_names(base, models)
    root = None
    if out is not None:
        root = Path(out) if resume and Path(out).is_dir() else ensure_new_run_dir(out, overwrite=overwrite)
    if data is None:
        data = load_config_data(base, data_dir=data_dir)
    for m in models:  # a shape misfit in the last model must not cost the first ones' training
        create_model(m, input_shape=data.input_shape, num_classes=data.num_classes)
    results = Comparison()
    for name in models:
        cfg = TrainConfig.from_dict({**base.to_dict(), "model": name})
        sub = root / _safe_name(name) if root is not None else None
        done = _finished(sub, cfg) if resume and sub is not None else None
        r = done or train(
            cfg, out=sub, data=data, data_dir=data_dir, overwrite=overwrite, progress=progress, resume=resume
        )
        results.append(r)
        if on_result:
            on_result(r)
    if root is not None:
        write_results(root, results, base, data)
    return results


def _finished(folder: Path, config: TrainConfig) -> RunResult | None:
    """The result of a complete run in ``folder`` (trained with ``config``), or None if it is not done."""
    if not (folder / "results.json").is_file():
        return None
    run = load_run(folder)
    now = config.to_dict()
    differ = [k for k in now if k not in RESUME_MAY_CHANGE and run.config.get(k) != now[k]]
    if differ:
        raise CnnlabError(
            f"{folder} was trained with other settings ({', '.join(differ)}); "
            "resume with the same flags, or start a new comparison in another --out"
        )
    test = run.results.get("test") or {}
    return RunResult(config.model, folder, count_params(run.model), run.history, test)


def _safe_name(model: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in model)[:80]


def protocol(config: TrainConfig, data: Dataset) -> str:
    """What was done, in words, as it was done: split sizes, recipe, stopping rule, which set is scored."""
    official = {d["name"]: d["test_size"] for d in list_datasets()}
    if data.name not in official:
        final = "the held-out test split"
    elif len(data.test) < official[data.name]:
        final = "a subset of the official test set (--limit)"
    else:
        final = "the official test set"
    sizes = f"{len(data.train):,} train / {len(data.val):,} validation / {len(data.test):,} final ({final})"
    rule = selection_of(config).describe()
    if config.patience is None:
        stop = f"all {config.epochs} epochs, keeping {rule}"
    else:
        stop = (
            f"up to {config.epochs} epochs, early stopping on {config.monitor} (patience {config.patience}), "
            f"best weights restored ({rule})"
        )
    extras = config.reported()  # what the option table says results.md names: augmentations included
    return (
        f"Split `{config.split}` (seed {config.seed}): {sizes}. Recipe `{config.recipe}`: {config.optimizer} lr "
        f"{config.lr:g}, batch {config.batch_size}, schedule {config.schedule}"
        + "".join(f", {e}" for e in extras)
        + f"; {stop}. Error is measured once, on the final set."
    )


def results_table_md(results: list[RunResult]) -> str:
    head = "| model | params | epochs run | best epoch | train s | test accuracy | error % |\n|---|---:|---:|---:|---:|---:|---:|\n"
    return head + "".join(
        f"| {r['model']} | {r['params']:,} | {r['epochs_run']} | {r['best_epoch']} | {r['train_seconds']:.1f} | "
        f"{r['test_accuracy']:.4f} | {r['error_pct']:.2f} |\n"
        for r in (x.row() for x in results)
    )


def lesson(results: list[RunResult]) -> list[str]:
    """The post's lesson checked on these results, in words: the MLP worse than every CNN, and more
    convolution layers, lower error (cnn1 >= cnn2 >= cnn4). Empty without the tutorial's models."""
    err = {r.name: r.test["error_pct"] for r in results if r.test}
    cnns = [m for m in ("cnn1", "cnn2", "cnn4") if m in err]
    lines = []
    if "mlp" in err and cnns:
        worst = all(err["mlp"] > err[m] for m in cnns)
        shown = ", ".join(f"{m} {err[m]:.2f}%" for m in cnns)
        lines.append(f"MLP worse than every CNN: {'yes' if worst else 'NO'} (mlp {err['mlp']:.2f}%; {shown})")
    if len(cnns) > 1:
        pairs = list(itertools.pairwise(cnns))
        wrong = [f"{b} {err[b]:.2f}% > {a} {err[a]:.2f}%" for a, b in pairs if err[b] > err[a]]
        order = " >= ".join(cnns)
        lines.append(
            f"more conv layers, lower error ({order} in error): "
            + ("yes" if not wrong else f"NOT in this run: {'; '.join(wrong)}")
        )
    return lines


def write_results(root: Path, results: list[RunResult], base: TrainConfig, data: Dataset) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(results[0].row()), lineterminator="\n")
    w.writeheader()
    for r in results:
        w.writerow(r.row())
    write_atomic(root / "results.csv", buf.getvalue())
    md = (
        f"# {base.data}: {', '.join(r.name for r in results)}\n\n{protocol(base, data)}\n\n"
        + results_table_md(results)
        + "".join(f"\n- {line}" for line in lesson(results))
        + "\n"
    )
    write_atomic(root / "results.md", md)
    write_json(
        root / "results.json",
        {
            "config": base.to_dict(),
            "dataset": data.describe(),
            "results": [r.row() for r in results],
            "env": environment(resolve_device(base.device), base.seed),
        },
    )
    learning_curves({r.name: r.history for r in results}, root / "learning_curves.png")
