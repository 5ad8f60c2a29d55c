"""Callbacks: the extension points at the edges of the training loop."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from torch import nn


@dataclass
class TrainState:
    """What callbacks see and may change (``stop_training``)."""

    model: nn.Module
    weights: nn.Module | None = None  # whose weights count as "this epoch's" (the EMA average, if any)
    epoch: int = 0  # 1-based, the epoch that just ended
    logs: dict = field(default_factory=dict)
    stop_training: bool = False
    best_epoch: int | None = None


class Callback:
    def on_train_begin(self, state: TrainState) -> None: ...
    def on_epoch_end(self, state: TrainState) -> None: ...
    def on_train_end(self, state: TrainState) -> None: ...


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs (Keras semantics).

    Unlike Keras, ``restore_best_weights`` also restores the best epoch's weights when training ends
    at the epoch limit, so the model you get is always the one the monitor liked best.

    Args:
        monitor: a History key, e.g. ``"val_loss"`` or ``"val_accuracy"``.
        patience: epochs without improvement before stopping.
        min_delta: the smallest change that counts as an improvement.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (max for accuracy-like keys, else min).
        restore_best_weights: put back the best epoch's weights at the end.

    Example:
        >>> es = EarlyStopping(monitor="val_loss", patience=5)
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        *,
        patience: int = 5,
        min_delta: float = 0.0,
        mode: str = "auto",
        restore_best_weights: bool = True,
    ):
        if patience < 0:
            raise ValueError("patience must be >= 0")
        if mode not in ("auto", "min", "max"):
            raise ValueError("mode must be 'auto', 'min' or 'max'")
        self.monitor = monitor
        self.patience = patience
        self.min_delta = abs(min_delta)
        self.mode = ("max" if "acc" in monitor else "min") if mode == "auto" else mode
        self.restore_best_weights = restore_best_weights
        self.reset()

    def reset(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.best_weights: dict | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None

    def _improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_train_begin(self, state: TrainState) -> None:
        self.reset()

    def on_epoch_end(self, state: TrainState) -> None:
        if self.monitor not in state.logs:
            raise KeyError(
                f"EarlyStopping monitors {self.monitor!r}, which is not logged; available: {sorted(state.logs)}"
            )
        value = float(state.logs[self.monitor])
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, state.epoch, 0
            if self.restore_best_weights:
                source = state.weights if state.weights is not None else state.model
                self.best_weights = {k: v.detach().clone() for k, v in source.state_dict().items()}
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped_epoch = state.epoch
                state.stop_training = True
        state.best_epoch = self.best_epoch

    def on_train_end(self, state: TrainState) -> None:
        if self.restore_best_weights and self.best_weights is not None:
            state.model.load_state_dict(self.best_weights)
        state.best_epoch = self.best_epoch

    def state_dict(self) -> dict:
        """Everything needed to continue exactly (checkpoints save it; ``best_weights`` are tensors)."""
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
            "best_weights": self.best_weights,
        }

    def load_state_dict(self, state: dict) -> None:
        self.best = float(state["best"])
        self.best_epoch = state["best_epoch"]
        self.wait = int(state["wait"])
        self.stopped_epoch = state["stopped_epoch"]
        self.best_weights = state.get("best_weights")
