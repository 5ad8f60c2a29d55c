"""Callbacks: everything at the edges of the training loop, with Keras-style lifecycle hooks.

``fit`` calls, in order: ``on_train_begin``; per epoch ``on_epoch_begin``; per step
``on_train_batch_begin``, ``on_before_optimizer_step`` (inside the step: the loss and gradients are known,
the weights not yet touched; on a CUDA graph, right after the replay) and ``on_train_batch_end``;
``on_epoch_end`` (``loop.logs`` holds the epoch's metrics); ``on_train_end`` (only when training ends
normally).

The contract: every hook gets a ``LoopView`` — read-only (epoch, step, logs, model, optimizer, ...) — and
may change the loop only through its requests (``request_stop``, ``select_epoch``, ``evaluate_with``).
No callback reads another's fields. Callbacks run in ascending ``priority`` (ties: the order given);
the built-in ones sit below 0 and ``Checkpointing`` at ``LAST``, after everything it saves. A callback
that keeps state across a resume has ``state_dict`` and ``load_state_dict``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

import torch
from torch import nn

from cnnlab.engine.phases import phase

LAST = 100  # Checkpointing's priority: it saves what every other callback did in the same hook
T = TypeVar("T")


@dataclass
class TrainState:
    """The loop's own state. ``fit`` changes it (and ``Checkpointing``, which owns resuming, sets where it
    starts with ``start_at``); callbacks see it through a read-only ``LoopView``."""

    model: nn.Module
    weights: nn.Module | None = None  # whose weights count as "this epoch's" (the EMA average, if any)
    epoch: int = 0  # 1-based: the epoch in progress, or that just ended in on_epoch_end
    logs: dict = field(default_factory=dict)
    stop_training: bool = False
    best_epoch: int | None = None  # the epoch whose weights the run keeps (a callback selects it)
    # the loop's objects and position
    epochs: int = 0  # the epoch limit
    steps_per_epoch: int = 0
    step: int = 0  # batches done in the current epoch
    global_step: int = 0  # optimizer steps since the run began
    first_epoch: int = 1  # where training (re)starts; a resumed run may start mid-epoch
    optimizer: Any = None  # torch.optim.Optimizer
    schedule: Any = None  # LRScheduler, DeviceSchedule or None
    device: torch.device = torch.device("cpu")
    ddp: Any = None  # cnnlab.engine.distributed.Distributed
    loss: torch.Tensor = field(default_factory=lambda: torch.zeros(()))  # this step's loss, detached
    batch_indices: torch.Tensor = field(
        default_factory=lambda: torch.zeros(0, dtype=torch.long)
    )  # this rank's
    sums: EpochSums = field(default_factory=lambda: EpochSums.of(None, torch.device("cpu")))
    epoch_lr: float = 0.0  # the learning rate at the start of the epoch
    epoch_t0: float = 0.0  # perf_counter() at the start of the epoch (minus time before a resume)
    resources: ExitStack = field(default_factory=ExitStack)  # contexts callbacks keep open while training
    cut: dict | None = None  # a resumed epoch cut short: its step, running sums, lr and seconds so far

    def start_at(self, *, epoch: int, global_step: int, cut: dict | None = None) -> None:
        """Begin (again) at ``epoch`` after ``global_step`` steps; ``cut``: that epoch is already under way
        (``step``, ``sums``, ``lr``, ``seconds``), as a mid-epoch checkpoint recorded it."""
        self.first_epoch, self.global_step, self.cut = epoch, global_step, cut

    def begin_epoch(self, epoch: int) -> None:
        """Fresh running sums, timer and lr for ``epoch`` — or those of the epoch a resume cut short."""
        fresh: dict[str, Any] = {"step": 0, "sums": None}
        cut = self.cut if self.cut is not None and epoch == self.first_epoch else fresh
        self.cut, self.epoch, self.step = None, epoch, cut["step"]
        self.sums = EpochSums.of(cut["sums"], self.device)
        mid_epoch = cut["sums"] is not None  # cut short after some steps: its lr and time so far go on
        self.epoch_lr = cut["lr"] if mid_epoch else float(self.optimizer.param_groups[0]["lr"])
        self.epoch_t0 = time.perf_counter() - (cut["seconds"] if mid_epoch else 0.0)

    def position(self, *, epoch_end: bool) -> dict:
        """Where training stands, as a checkpoint records it."""
        where: dict[str, Any]
        if epoch_end:
            done = self.stop_training or self.epoch == self.epochs
            where = {"epoch": self.epoch + 1, "step": 0, "global_step": self.global_step, "done": done}
        else:
            where = {"epoch": self.epoch, "step": self.step, "global_step": self.global_step, "done": False}
            where.update(lr=self.epoch_lr, seconds=time.perf_counter() - self.epoch_t0)
        return {**where, "best_epoch": self.best_epoch, "stopped_early": self.stop_training}

    def view(self) -> LoopView:
        return LoopView(self)


class LoopView:
    """What a callback sees of the training loop: read-only, plus three requests.

    Example:
        >>> class StopAt90(Callback):
        ...     def on_epoch_end(self, loop: LoopView) -> None:
        ...         if loop.logs.get("val_accuracy", 0) >= 0.9:
        ...             loop.request_stop()
    """

    __slots__ = ("_s",)

    def __init__(self, state: TrainState):
        self._s = state

    # where the loop is
    epoch = property(lambda self: self._s.epoch, doc="1-based: the epoch in progress, or that just ended")
    epochs = property(lambda self: self._s.epochs, doc="the epoch limit")
    first_epoch = property(lambda self: self._s.first_epoch, doc="where this fit started (a resume: later)")
    step = property(lambda self: self._s.step, doc="batches done in the current epoch")
    steps_per_epoch = property(lambda self: self._s.steps_per_epoch)
    global_step = property(lambda self: self._s.global_step, doc="optimizer steps since the run began")
    epoch_lr = property(lambda self: self._s.epoch_lr, doc="the learning rate at the start of the epoch")
    epoch_t0 = property(lambda self: self._s.epoch_t0, doc="perf_counter() at the start of the epoch")
    # what it trains
    model = property(lambda self: self._s.model, doc="the module being trained")
    optimizer = property(lambda self: self._s.optimizer)
    schedule = property(lambda self: self._s.schedule, doc="the lr schedule (None: constant)")
    device = property(lambda self: self._s.device)
    ddp = property(lambda self: self._s.ddp, doc="cnnlab.engine.distributed.Distributed")
    loss = property(lambda self: self._s.loss, doc="this step's loss, detached (a device tensor)")
    batch_indices = property(lambda self: self._s.batch_indices, doc="this rank's training-split indices")
    sums = property(lambda self: self._s.sums, doc="the epoch's running loss and accuracy (EpochSums)")
    stop_requested = property(lambda self: self._s.stop_training)
    best_epoch = property(lambda self: self._s.best_epoch, doc="the epoch selected so far (None: none)")

    @property
    def logs(self) -> Mapping[str, Any]:
        """The epoch's metrics in ``on_epoch_end`` (loss, accuracy, val_loss, val_accuracy, lr, seconds)."""
        return MappingProxyType(self._s.logs)

    @property
    def weights(self) -> nn.Module:
        """Whose weights count as this epoch's: the model, or the average ``evaluate_with`` named."""
        return self._s.weights if self._s.weights is not None else self._s.model

    # requests
    def request_stop(self) -> None:
        """End training after this epoch (Keras' ``model.stop_training = True``)."""
        self._s.stop_training = True

    def select_epoch(self, epoch: int | None) -> None:
        """Record ``epoch`` as the one whose weights the run keeps (History and checkpoints note it)."""
        self._s.best_epoch = epoch

    def evaluate_with(self, module: nn.Module) -> None:
        """Validate (and select epochs) on ``module``'s weights instead of the model's (EMA does)."""
        self._s.weights = module

    def keep_open(self, context: AbstractContextManager[T]) -> T:
        """Enter ``context`` now and leave it when training ends, however it ends."""
        return self._s.resources.enter_context(context)

    def at_exit(self, fn: Callable[[], Any]) -> None:
        """Call ``fn`` when training ends, however it ends."""
        self._s.resources.callback(fn)


@dataclass
class EpochSums:
    """The epoch's running training loss and accuracy, kept on the device (no sync per step)."""

    loss_sum: torch.Tensor
    correct: torch.Tensor
    seen: int = 0

    @classmethod
    def of(cls, saved: dict | None, device: torch.device) -> EpochSums:
        saved = saved or {"loss_sum": 0.0, "correct": 0, "seen": 0}
        return cls(
            torch.tensor(float(saved["loss_sum"]), device=device),
            torch.tensor(int(saved["correct"]), device=device),
            int(saved["seen"]),
        )

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        self.loss_sum += loss * len(y)
        self.correct += (logits.detach().argmax(1) == y).sum()
        self.seen += len(y)

    def as_dict(self) -> dict:
        return {"loss_sum": self.loss_sum.item(), "correct": self.correct.item(), "seen": self.seen}


class Callback:
    """Subclass and override the hooks you need; each gets the ``LoopView``.

    ``priority``: callbacks run in ascending priority, ties in the order given (yours: 0; the built-in
    guard, EMA, history, frozen backbone and progress below it; checkpointing at ``LAST``)."""

    priority: int = 0
    phase: str = "callbacks"  # what benchmarks/profile_phases.py counts its hooks' time under

    def on_train_begin(self, loop: LoopView) -> None: ...
    def on_epoch_begin(self, loop: LoopView) -> None: ...
    def on_train_batch_begin(self, loop: LoopView) -> None: ...
    def on_before_optimizer_step(self, loop: LoopView) -> None: ...
    def on_train_batch_end(self, loop: LoopView) -> None: ...
    def on_epoch_end(self, loop: LoopView) -> None: ...
    def on_train_end(self, loop: LoopView) -> None: ...


class CallbackList(Callback):
    """Calls each hook on every callback, in ascending ``priority`` (a stable sort: ties keep their order)."""

    def __init__(self, callbacks: Sequence[Callback]):
        self.callbacks = sorted(callbacks, key=lambda cb: getattr(cb, "priority", 0))

    def _each(self, hook: str, loop: LoopView) -> None:
        for cb in self.callbacks:
            with phase(getattr(cb, "phase", "callbacks")):
                getattr(cb, hook)(loop)

    def on_epoch_begin(self, loop: LoopView) -> None:
        self._each("on_epoch_begin", loop)

    def on_train_batch_begin(self, loop: LoopView) -> None:
        self._each("on_train_batch_begin", loop)

    def on_before_optimizer_step(self, loop: LoopView) -> None:
        self._each("on_before_optimizer_step", loop)

    def on_train_batch_end(self, loop: LoopView) -> None:
        self._each("on_train_batch_end", loop)

    def on_epoch_end(self, loop: LoopView) -> None:
        self._each("on_epoch_end", loop)

    @contextmanager
    def training(self, state: TrainState) -> Iterator[None]:
        """``on_train_begin`` now, ``on_train_end`` when the block ends normally; contexts callbacks
        opened (progress display, signal handlers) are closed however it ends."""
        loop = state.view()
        with state.resources:
            self._each("on_train_begin", loop)
            yield
            self._each("on_train_end", loop)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs (Keras semantics).

    Unlike Keras, ``restore_best_weights`` also restores the best epoch's weights when training ends
    at the epoch limit, so the model you get is always the one the monitor liked best.

    Ties: an accuracy counts in steps of one image, so on a small validation split it ties constantly (24
    images: every epoch from the 22nd on at 1.0). An epoch that equals the best accuracy is taken as the
    better one when its loss on the same split (``tie_break``, ``val_loss`` for ``val_accuracy``) is lower:
    the latest of the tied epochs the loss prefers, not the first that reached the value.

    Noise: on a small split one epoch's loss also wanders (24 images: 0.37 to 0.43 between neighbours while
    the weights barely move). ``window`` compares epochs by the mean of the monitored value over the last
    ``window`` epochs, so a lucky single epoch does not win over a run that has settled.

    Args:
        monitor: a History key, e.g. ``"val_loss"`` or ``"val_accuracy"``.
        patience: epochs without improvement before stopping (None: never stop, only keep the best).
        min_delta: the smallest change that counts as an improvement.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (max for accuracy-like keys, else min).
        restore_best_weights: put back the best epoch's weights at the end.
        tie_break: the key that decides between epochs tied on ``monitor`` (lower wins); ``"auto"``: the
            loss of the same split for an accuracy monitor, none for a loss; ``None``: the first epoch wins.
        window: epochs averaged (a trailing mean, this epoch included) before comparing; 1: each on its own.

    Example:
        >>> es = EarlyStopping(monitor="val_loss", patience=5)
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        *,
        patience: int | None = 5,
        min_delta: float = 0.0,
        mode: str = "auto",
        restore_best_weights: bool = True,
        tie_break: str | None = "auto",
        window: int = 1,
    ):
        if window < 1:
            raise ValueError("window must be >= 1")
        if patience is not None and patience < 0:
            raise ValueError("patience must be >= 0")
        if mode not in ("auto", "min", "max"):
            raise ValueError("mode must be 'auto', 'min' or 'max'")
        self.monitor = monitor
        self.patience = patience
        self.min_delta = abs(min_delta)
        self.mode = ("max" if "acc" in monitor else "min") if mode == "auto" else mode
        self.restore_best_weights = restore_best_weights
        self.tie_break = tie_break_for(monitor, self.mode) if tie_break == "auto" else tie_break
        self.window = window
        self.reset()

    def reset(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_tie = math.inf  # the tie-break key's value at the best epoch
        self.best_epoch: int | None = None
        self.best_weights: dict | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.recent: list[float] = []  # the monitored values of the last ``window`` epochs

    def _improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def _better_tie(self, value: float, logs: Mapping[str, Any]) -> bool:
        """Equal to the best on ``monitor``, and lower on the tie-break key."""
        if self.tie_break is None or value != self.best or self.tie_break not in logs:
            return False
        return float(logs[self.tie_break]) < self.best_tie

    def describe(self) -> str:
        """The selection rule in words (results.json and results.md record it)."""
        rule = f"the epoch with the best {self.monitor}"
        if self.window > 1:
            rule += f" averaged over the {self.window} epochs ending there"
        return rule + (f", ties broken by the lower {self.tie_break}" if self.tie_break else "")

    def on_train_begin(self, loop: LoopView) -> None:
        self.reset()

    def on_epoch_end(self, loop: LoopView) -> None:
        logs = loop.logs
        if self.monitor not in logs:
            raise KeyError(
                f"EarlyStopping monitors {self.monitor!r}, which is not logged; available: {sorted(logs)}"
            )
        self.recent = [*self.recent, float(logs[self.monitor])][-self.window :]
        value = sum(self.recent) / len(self.recent)
        if self._improved(value) or self._better_tie(value, logs):
            self.best, self.best_epoch, self.wait = value, loop.epoch, 0
            self.best_tie = float(logs.get(self.tie_break, math.inf)) if self.tie_break else math.inf
            if self.restore_best_weights:
                self.best_weights = {k: v.detach().clone() for k, v in loop.weights.state_dict().items()}
        else:
            self.wait += 1
            if self.patience is not None and self.wait >= self.patience:
                self.stopped_epoch = loop.epoch
                loop.request_stop()
        loop.select_epoch(self.best_epoch)

    def on_train_end(self, loop: LoopView) -> None:
        if self.restore_best_weights and self.best_weights is not None:
            loop.model.load_state_dict(self.best_weights)
        loop.select_epoch(self.best_epoch)

    def state_dict(self) -> dict:
        """Everything needed to continue exactly (checkpoints save it; ``best_weights`` are tensors)."""
        return {
            "best": self.best,
            "best_tie": self.best_tie,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
            "best_weights": self.best_weights,
            "recent": list(self.recent),
        }

    def load_state_dict(self, state: dict) -> None:
        self.best = float(state["best"])
        self.best_tie = float(state.get("best_tie", math.inf))  # checkpoints from before tie-breaking
        self.best_epoch = state["best_epoch"]
        self.wait = int(state["wait"])
        self.stopped_epoch = state["stopped_epoch"]
        self.best_weights = state.get("best_weights")
        self.recent = [float(v) for v in state.get("recent", [])][-self.window :]


def tie_break_for(monitor: str, mode: str) -> str | None:
    """The loss of the monitored split for an accuracy-like monitor (``val_accuracy`` -> ``val_loss``)."""
    if mode != "max" or "acc" not in monitor:
        return None
    return monitor.replace("accuracy", "loss").replace("acc", "loss")
