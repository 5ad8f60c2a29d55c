"""Orchestration: one training run end to end (``train``), and the tutorial's experiment (``compare``):
several models under the same protocol, one table, one figure."""

from __future__ import annotations

import csv
import io
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from cnnlab.config import TrainConfig
from cnnlab.data import Dataset, load_data
from cnnlab.engine import EarlyStopping, History, evaluate, fit, resolve_device
from cnnlab.engine.checkpoint import Checkpoint, CheckpointError, find_latest, load_checkpoint
from cnnlab.engine.determinism import reproducibility
from cnnlab.engine.distributed import Distributed, init_from_env
from cnnlab.engine.snapshot import Checkpointer
from cnnlab.errors import CnnlabError
from cnnlab.models import count_params, create_model, is_registered
from cnnlab.recipes import check_fits
from cnnlab.runs import ensure_new_run_dir, environment, save_run, write_atomic, write_json
from cnnlab.summarize import summary


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
    device = resolve_device(config.device)
    ddp = init_from_env(device)  # under torchrun: join the job (gloo on CPU, NCCL on CUDA)
    if ddp.active and device.type == "cuda":
        device = torch.device("cuda", ddp.local_rank)
    checkpoints, ckpt = None, None
    if out is not None:  # fail before any work, never after
        checkpoints, ckpt = _checkpoints_for(
            config, out, resume=resume, force=force, overwrite=overwrite, ddp=ddp
        )
    elif resume is not None:
        ckpt = _checked(load_checkpoint(_auto_needs_out(resume)), config, ddp=ddp, force=force)
    if data is None:
        data = load_data(
            config.data,
            split=config.split,
            seed=config.seed,
            data_dir=data_dir,
            limit=config.limit,
            **config.data_options(),
        )
    mean, std = data.mean, data.std
    if config.normalize and mean is None:
        mean, std = channel_stats(data.train.images)
    model = create_model(
        config.model,
        input_shape=data.input_shape,
        num_classes=data.num_classes,
        seed=config.seed,
        mean=mean,
        std=std,
    )
    # model selection on the monitored split; early stopping only with a patience
    callbacks = [EarlyStopping(config.monitor, patience=config.patience)]
    with reproducibility(
        seed=config.seed, deterministic=config.deterministic, threads=config.threads
    ) as repro:
        history = fit(
            model,
            data,
            **config.fit_options(),
            callbacks=callbacks,
            device=device,
            progress=progress,
            checkpoints=checkpoints,
            resume=ckpt,
        )
        env = {
            **environment(device, config.seed),
            **repro,
            "world_size": ddp.world,
            "backend": ddp.backend,
            "resumed_from": str(ckpt.path) if ckpt is not None else None,
        }
    if not ddp.is_main:  # rank 0 evaluates and writes the run
        return RunResult(config.model, None, count_params(model), history, {}, primary=False)
    test = evaluate(
        model, data.test, tta=config.tta_views or None, amp=config.amp
    )  # the one look at the test set
    params = count_params(model)
    path = None
    if out is not None:
        saved = {
            **config.to_dict(),
            "input_shape": list(data.input_shape),
            "classes": list(data.classes),
            "num_classes": data.num_classes,
            "spec": _spec_of(config.model),
            "params": params,
            "dataset": data.describe(),
            "data_dir": str(data_dir or os.environ.get("CNNLAB_DATA_DIR") or "") or None,
            "mean": list(mean) if mean else None,
            "std": list(std) if std else None,
            "preprocessing": "pixels / 255 (0..1), shape (N, C, H, W); mean/std applied by the model's normalize stage",
        }
        path = save_run(
            out,
            model,
            history,
            config=saved,
            env=env,
            results={"test": test, "params": params, "summary": summary(model, data.input_shape).as_dict()},
            overwrite=True,  # our own folder: checked (new, or the run being resumed) before training
        )
    return RunResult(config.model, path, params, history, test)


# Settings a resumed run may change: they do not change what is trained.
RESUME_MAY_CHANGE = ("checkpoint_every", "keep", "threads", "device", "tta")


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
    config: TrainConfig, out, *, resume, force: bool, overwrite: bool, ddp: Distributed
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
        if ckpt is None and ddp.is_main:
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
    meta = {"config": config.to_dict(), "world_size": ddp.world}
    checkpoints = Checkpointer(folder, every=config.checkpoint_every, keep=config.keep, meta=meta)
    if ddp.is_main:
        checkpoints.check_writable()
    return checkpoints, ckpt


def channel_stats(images) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images (N, C, H, W) on the 0..1 scale, in float64."""
    x = images.double().div_(255.0)
    return x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).clamp_min(1e-6).tolist()


def _spec_of(model: str) -> str | None:
    from cnnlab.models import list_models

    if is_registered(model):
        return next(m.spec for m in list_models() if m.name == model)
    return model


def compare(
    models: list[str],
    base: TrainConfig,
    *,
    out: str | os.PathLike | None,
    data_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
    on_result=None,
) -> list[RunResult]:
    """Train each model under the same protocol (same data, split, seed and recipe), evaluate each once
    on the final set, and write ``results.md``, ``results.csv`` and ``learning_curves.png`` to ``out``
    (one run folder per model beneath it).

    Example:
        >>> cl.compare(["mlp", "cnn1"], cl.TrainConfig(epochs=3, limit=5000), out="runs/compare")  # doctest: +SKIP
    """
    if not models:
        raise CnnlabError("No models to compare; e.g. --models mlp,cnn1,cnn2,cnn4")
    if len(set(models)) != len(models):
        raise CnnlabError(f"Duplicate model in --models: {','.join(models)}")
    base.validate()
    check_fits(base)
    root = ensure_new_run_dir(out, overwrite=overwrite) if out is not None else None
    data = load_data(
        base.data,
        split=base.split,
        seed=base.seed,
        data_dir=data_dir,
        limit=base.limit,
        **base.data_options(),
    )
    for m in models:  # a typo in the last model must not cost the first ones' training
        create_model(m, input_shape=data.input_shape, num_classes=data.num_classes)
    results = []
    for name in models:
        cfg = TrainConfig.from_dict({**base.to_dict(), "model": name})
        sub = root / _safe_name(name) if root is not None else None
        r = train(cfg, out=sub, data=data, data_dir=data_dir, overwrite=overwrite, progress=progress)
        results.append(r)
        if on_result:
            on_result(r)
    if root is not None:
        write_results(root, results, base, data)
    return results


def _safe_name(model: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in model)[:80]


def results_table_md(results: list[RunResult]) -> str:
    head = "| model | params | epochs run | best epoch | train s | test accuracy | error % |\n|---|---:|---:|---:|---:|---:|---:|\n"
    return head + "".join(
        f"| {r['model']} | {r['params']:,} | {r['epochs_run']} | {r['best_epoch']} | {r['train_seconds']:.1f} | "
        f"{r['test_accuracy']:.4f} | {r['error_pct']:.2f} |\n"
        for r in (x.row() for x in results)
    )


def write_results(root: Path, results: list[RunResult], base: TrainConfig, data: Dataset) -> None:
    from cnnlab.plots import learning_curves

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(results[0].row()), lineterminator="\n")
    w.writeheader()
    for r in results:
        w.writerow(r.row())
    write_atomic(root / "results.csv", buf.getvalue())
    sizes = (
        f"{len(data.train):,} train / {len(data.val):,} validation / {len(data.test):,} final (official test)"
    )
    md = (
        f"# {base.data}: {', '.join(r.name for r in results)}\n\n"
        f"Split `{base.split}` (seed {base.seed}): {sizes}. Recipe: {base.optimizer} lr {base.lr:g}, batch {base.batch_size}, "
        f"schedule {base.schedule}, up to {base.epochs} epochs, early stopping on {base.monitor} (patience {base.patience}), "
        f"best weights restored. Error is measured once on the final set.\n\n" + results_table_md(results)
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
