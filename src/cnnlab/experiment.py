"""Orchestration: one training run end to end (``train``), and the tutorial's experiment (``compare``):
several models under the same protocol, one table, one figure."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

from cnnlab.config import TrainConfig
from cnnlab.data import Dataset, load_data
from cnnlab.engine import Augment, EarlyStopping, History, evaluate, fit, resolve_device
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
) -> RunResult:
    """Train one model as ``config`` says, evaluate it once on the final (official test) set, and write
    a run folder to ``out`` (unless ``out`` is None).

    Example:
        >>> r = cl.train(cl.TrainConfig(model="cnn2", epochs=2, limit=2000), out="runs/try")  # doctest: +SKIP
        >>> r.test["error_pct"]
    """
    config.validate()
    if out is not None:
        ensure_new_run_dir(out, overwrite=overwrite)  # fail before any work, never after
    device = resolve_device(config.device)
    if data is None:
        data = load_data(
            config.data,
            split=config.split,
            seed=config.seed,
            data_dir=data_dir,
            limit=config.limit,
            **config.data_options(),
        )
    check_fits(config)
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
    callbacks = []
    if config.monitor:  # model selection on the validation split; early stopping only with a patience
        patience = config.patience if config.patience is not None else 10**9
        callbacks.append(EarlyStopping(config.monitor, patience=patience))
    augment = Augment(config.augment_translate, config.augment_flip, config.augment_erasing)
    history = fit(
        model,
        data,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        optimizer=config.optimizer,
        weight_decay=config.weight_decay,
        schedule=config.schedule,
        label_smoothing=config.label_smoothing,
        augment=augment,
        ema=config.ema,
        amp=config.amp,
        compile=config.compile,
        callbacks=callbacks,
        seed=config.seed,
        device=device,
        progress=progress,
        channels_last=config.channels_last,
    )
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
            env=environment(device, config.seed),
            results={"test": test, "params": params, "summary": summary(model, data.input_shape).as_dict()},
            overwrite=overwrite,
        )
    return RunResult(config.model, path, params, history, test)


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
