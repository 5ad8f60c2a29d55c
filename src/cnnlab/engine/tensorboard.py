"""TensorBoard logs of a training run (``cnnlab train --tensorboard``; ``TensorBoard(log_dir)`` in Python), the
habit Keras' and Lightning's users bring: the loss and learning rate of every step, the epoch's metrics, a grid
of misclassified validation images per epoch and the run's hyper-parameters. ``metrics.csv`` stays the
source of truth; these are a view of it for ``tensorboard --logdir RUN/tensorboard``.

The ``tensorboard`` package is an optional extra (``pip install 'cnnlab[tensorboard]'``); asking for the logs
without it is one line saying so, before any training. The per-step losses are collected on the device and
written once per epoch, so logging them costs no device synchronisation per step.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.engine.callbacks import Callback, LoopView
from cnnlab.engine.inference import predict
from cnnlab.errors import CnnlabError

__all__ = ["TensorBoard", "image_grid", "run_callbacks"]


def _summary_writer():
    try:  # deferred: tensorboard is an optional extra
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise CnnlabError(
            "--tensorboard needs the tensorboard package: pip install 'cnnlab[tensorboard]' (or pip install "
            "tensorboard); metrics.csv is written either way."
        ) from None
    return SummaryWriter


class TensorBoard(Callback):
    """Write TensorBoard event files to ``log_dir`` while training.

    Args:
        log_dir: the folder for the event files (``cnnlab train``: ``<out>/tensorboard``).
        val: the validation split (``.images`` uint8, ``.labels``) whose misclassified images are shown.
        classes: class names, for the grid's captions.
        hparams: the run's hyper-parameters (the config), written with the final metrics.
        grid: at most this many misclassified images per epoch, from the first ``scan`` validation images.

    Example:
        >>> cl.fit(model, data, epochs=3, callbacks=[TensorBoard("runs/a/tb", val=data.val)])  # doctest: +SKIP
    """

    priority = 50  # after the metrics are known, before Checkpointing saves

    def __init__(
        self,
        log_dir: str | Path,
        *,
        val: Any = None,
        classes: tuple[str, ...] = (),
        hparams: dict | None = None,
        grid: int = 16,
        scan: int = 512,
    ):
        self.writer = _summary_writer()(log_dir=str(log_dir))
        self.val, self.classes, self.grid, self.scan = val, tuple(classes), grid, scan
        self.hparams = {
            k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in (hparams or {}).items()
        }
        self.losses: list[tuple[int, torch.Tensor, float]] = []
        self.last: dict = {}

    def on_train_batch_end(self, loop: LoopView) -> None:
        if loop.ddp is None or loop.ddp.is_main:
            lr = float(loop.optimizer.param_groups[0]["lr"])
            self.losses.append((loop.global_step, loop.loss.detach().clone(), lr))

    def on_epoch_end(self, loop: LoopView) -> None:
        if loop.ddp is not None and not loop.ddp.is_main:
            return
        if self.losses:
            values = torch.stack([loss for _, loss, _ in self.losses]).float().cpu().tolist()
            for (step, _, lr), value in zip(self.losses, values, strict=True):
                self.writer.add_scalar("step/loss", value, step)
                self.writer.add_scalar("step/lr", lr, step)
            self.losses.clear()
        for key, value in loop.logs.items():
            if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f"epoch/{key}", value, loop.epoch)
        self.last = dict(loop.logs)
        if self.val is not None and len(self.val.labels):
            self._misclassified(loop)
        self.writer.flush()

    def _misclassified(self, loop: LoopView) -> None:
        """A grid of up to ``grid`` misclassified validation images, captioned true -> predicted."""
        n = min(self.scan, len(self.val.labels))
        images = self.val.images[:n]
        labels = self.val.labels[:n].cpu()
        pred = predict(loop.model, images).argmax(1).cpu()
        wrong = torch.nonzero(pred != labels).flatten()[: self.grid]
        if len(wrong) == 0:
            return
        shown = images[wrong].cpu().numpy()
        self.writer.add_image("val/misclassified", image_grid(shown), loop.epoch, dataformats="CHW")
        names = [*self.classes, *map(str, range(len(self.classes), int(max(labels.max(), pred.max())) + 1))]
        captions = [
            f"{k + 1}. {names[int(labels[i])]} -> {names[int(pred[i])]}" for k, i in enumerate(wrong.tolist())
        ]
        self.writer.add_text("val/misclassified", "  \n".join(captions), loop.epoch)

    def on_train_end(self, loop: LoopView) -> None:
        if loop.ddp is not None and not loop.ddp.is_main:
            return
        metrics = {
            f"hparam/{k}": float(v)
            for k, v in self.last.items()
            if k != "epoch" and isinstance(v, (int, float))
        }
        if self.hparams:
            self.writer.add_hparams(self.hparams, metrics, run_name=".")
        self.writer.close()


def image_grid(images: np.ndarray, *, columns: int = 4, gap: int = 2) -> np.ndarray:
    """uint8 (N, C, H, W) images tiled into one (C, rows*H + gaps, columns*W + gaps) uint8 image.

    Example:
        >>> image_grid(np.full((3, 1, 2, 2), 9, dtype=np.uint8), columns=2, gap=1).shape
        (1, 5, 5)
    """
    n, c, h, w = images.shape
    cols = min(columns, n)
    rows = -(-n // cols)
    out = np.zeros((c, rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap), dtype=np.uint8)
    for k in range(n):
        r, q = divmod(k, cols)
        out[:, r * (h + gap) : r * (h + gap) + h, q * (w + gap) : q * (w + gap) + w] = images[k]
    return out


def run_callbacks(config, out: str | os.PathLike | None, data) -> list[Callback]:
    """``[TensorBoard(<out>/tensorboard)]`` when ``config.tensorboard`` asks for it, else none."""
    if not getattr(config, "tensorboard", False):
        return []
    if out is None:
        raise CnnlabError("--tensorboard writes its logs into the run folder: give --out.")
    hparams = {k: v for k, v in vars(config).items() if v is not None}
    return [TensorBoard(Path(out) / "tensorboard", val=data.val, classes=data.classes, hparams=hparams)]
