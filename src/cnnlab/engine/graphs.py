"""The whole training step captured once in a CUDA graph and replayed (``--cuda-graphs``).

Small models on a GPU are launch-bound: an eager step of a residual net issues ~200 kernels, each a few
microseconds of CPU work, while the GPU itself is busy for a fraction of that. ``GraphedStep`` records
the step body the eager path runs (``TrainStep.body``: forward, loss, backward, gradient clipping, the
fused optimizer, and the next step's learning rate — a device tensor computed from a device step counter)
once, then replays the recording: one launch per step.

What a graph needs, and how ``fit`` gives it:
- fixed shapes: the last short batch of an epoch is dropped (``DeviceBatches(drop_last=True)``);
- fixed memory: inputs are copied into static buffers; weights, optimizer moments and the learning rate
  stay where they were at capture, so everything that loads state (a resumed checkpoint) runs first and
  the capture happens lazily, at the first step;
- no host work inside: the index gather and augmentation run just before the replay (they are a pure
  function of (seed, epoch, step), which keeps a resumed run exact), EMA and checkpoints after it.

The learning rate follows the same schedule as eager training; one-cycle's momentum cycling, which fused
optimizers cannot take as a tensor, is left out on this path. The non-finite guard reads the loss after
the replay (every ``CUDA_LOOK_EVERY`` steps and before every checkpoint, as on CUDA eagerly). A capture
that fails falls back to eager steps with a one-line warning.
"""

from __future__ import annotations

import math
import sys

import torch
from torch import nn

from cnnlab.engine.phases import phase
from cnnlab.engine.setup import autocast, make_optimizer, warmup_fraction
from cnnlab.engine.step import Check, TrainStep
from cnnlab.errors import UsageError

WARMUP_STEPS = 3  # eager steps on a side stream before capture (allocations, cuDNN/cuBLAS autotuning)


def use_graphs(mode: str, device: torch.device, ddp, cfg=None) -> bool:
    """Whether ``fit`` captures its step: ``auto`` on a single CUDA device; ``on`` insists (a clear error
    where it cannot); ``off`` never. Fine-tuning options (a backbone learning rate of its own, frozen
    epochs) change the step's parameters or learning rates mid-run, which one captured graph cannot."""
    if mode == "off":
        return False
    tuning = cfg is not None and (cfg.backbone_lr != 1.0 or cfg.freeze_epochs > 0)
    if tuning:
        if mode == "on":
            raise UsageError("--cuda-graphs on does not combine with --backbone-lr or --freeze-epochs")
        return False
    if device.type != "cuda":
        if mode == "on":
            raise UsageError(f"--cuda-graphs on needs a CUDA GPU; this run trains on {device.type}")
        return False
    if ddp.active:  # DDP's gradient all-reduce would have to be captured too
        if mode == "on":
            raise UsageError("--cuda-graphs on does not combine with several processes (--nproc / torchrun)")
        return False
    return True


class DeviceSchedule:
    """The learning rate as a device tensor, set from a device step counter by tensor ops only (so a graph
    can replay it): constant, linear decay to 0, or one-cycle (cosine warm-up from lr/25 over the warm-up
    share, cosine down to lr/25e4 — the values of ``torch.optim.lr_scheduler.OneCycleLR``)."""

    def __init__(self, name: str, lr: float, total_steps: int, device: torch.device):
        self.name, self.max_lr, self.total = name, float(lr), max(int(total_steps), 1)
        self.lr = torch.tensor(self.max_lr, dtype=torch.float32, device=device)
        self.count = torch.zeros((), dtype=torch.float32, device=device)  # optimizer steps taken
        self.set_lr()

    def _at(self, s: torch.Tensor) -> torch.Tensor:
        if self.name == "linear":
            return self.max_lr * (1.0 - s / self.total).clamp_min(0.0)
        if self.name != "onecycle":
            return torch.full_like(s, self.max_lr)
        start, peak = self.max_lr / 25.0, self.max_lr
        end = start / 1e4
        up_end = warmup_fraction(self.total) * self.total - 1  # the step at which the peak is reached
        down_len = max(self.total - 1 - up_end, 1e-9)
        up = (s / up_end).clamp(0.0, 1.0)
        down = ((s - up_end) / down_len).clamp(0.0, 1.0)

        def cos_anneal(a: float, b: float, pct: torch.Tensor) -> torch.Tensor:
            return b + (a - b) / 2.0 * (torch.cos(math.pi * pct) + 1.0)

        return torch.where(s <= up_end, cos_anneal(start, peak, up), cos_anneal(peak, end, down))

    def set_lr(self) -> None:
        """lr <- schedule(step), in place (graph-safe)."""
        self.lr.copy_(self._at(self.count))

    def advance(self) -> None:
        self.count += 1

    def step(self) -> None:
        """After an optimizer step: the learning rate of the next one (as ``LRScheduler.step``)."""
        self.advance()
        self.set_lr()

    def state_dict(self) -> dict:
        return {"step": int(self.count.item())}

    def load_state_dict(self, state: dict) -> None:
        self.count.fill_(float(state["step"]))
        self.set_lr()


class GraphedStep(TrainStep):
    """A ``TrainStep`` that captures its ``body`` once in a CUDA graph and replays it for every batch. With
    ``capture=False`` — or after a failed capture — the same body runs eagerly, which is also how its
    arithmetic is tested on a CPU. What differs from the eager step is only where the state lives: the
    learning rate is a device tensor (``DeviceSchedule``), the optimizer is capturable, autocast keeps no
    weight cache."""

    def __init__(self, model: nn.Module, cfg, *, steps_per_epoch: int, device: torch.device, ddp, example,
                 capture: bool = True):  # fmt: skip
        self.device = device
        self.schedule_tensor = DeviceSchedule(cfg.schedule, cfg.lr, cfg.epochs * steps_per_epoch, device)
        super().__init__(model, cfg, steps_per_epoch=steps_per_epoch, device=device, ddp=ddp, example=example)
        self.capture_wanted = capture
        self.started = False
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: tuple[torch.Tensor, ...] | None = None

    def _make_optimizer(self, model: nn.Module, cfg, device: torch.device) -> torch.optim.Optimizer:
        return make_optimizer(
            model, cfg.optimizer, self.schedule_tensor.lr, cfg.weight_decay, device, capturable=True
        )

    def _make_schedule(self, cfg, steps_per_epoch: int):
        return self.schedule_tensor  # checkpoints save and restore its step counter

    def _make_cast(self, cfg, device: torch.device):
        return autocast(device, cfg.amp, cache=False)  # autocast's weight cache cannot live in a graph

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, *, share: float = 1.0, check: Check | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One training step: the captured body replayed (``check`` then sees the loss after the replay: a
        graph cannot stop halfway), or the body run eagerly before capture or after a failed one."""
        if not self.started:  # after on_train_begin: a resumed run's state is loaded by now
            self.started = True
            for group in self.optimizer.param_groups:  # a loaded optimizer holds a copy of the lr
                group["lr"] = self.schedule_tensor.lr
            self.schedule_tensor.set_lr()
            if self.capture_wanted:
                self._try_capture(x, y)
        if self.graph is None or self.static is None:
            return self.body(x, y, share=share, check=check)
        sx, sy, loss, logits = self.static
        with phase("graph replay"):  # forward, backward and optimizer in one launch
            sx.copy_(x)
            sy.copy_(y)
            self.graph.replay()
        if check is not None:
            check(loss)
        return loss, logits

    def _try_capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        saved = _snapshot(self.model, self.optimizer, self.schedule_tensor)
        try:
            self._capture(x, y, saved)
        except Exception as exc:  # noqa: BLE001 — any capture problem: undo the warm-up, train eagerly
            _restore(saved, self.model, self.optimizer, self.schedule_tensor)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            print(
                f"cnnlab: CUDA graph capture failed ({first[:160]}); training with eager steps",
                file=sys.stderr,
            )
            self.graph, self.static = None, None

    def _capture(self, x: torch.Tensor, y: torch.Tensor, saved: dict[str, torch.Tensor]) -> None:
        sx, sy = x.clone(), y.clone()
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):  # warm-up: allocations and autotuning happen outside the graph
            for _ in range(WARMUP_STEPS):
                self.body(sx, sy)
        torch.cuda.current_stream(self.device).wait_stream(side)
        _restore(saved, self.model, self.optimizer, self.schedule_tensor)  # in place: addresses stay
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # the body sets the gradients to None: backward allocates them here
            loss, logits = self.body(sx, sy)
        self.graph, self.static = graph, (sx, sy, loss, logits)


def _tensors(model: nn.Module, optimizer: torch.optim.Optimizer, schedule: DeviceSchedule) -> dict:
    found = {f"model.{k}": v for k, v in model.state_dict(keep_vars=True).items()}
    for i, p in enumerate(p for g in optimizer.param_groups for p in g["params"]):
        for k, v in optimizer.state.get(p, {}).items():
            if torch.is_tensor(v):
                found[f"opt.{i}.{k}"] = v
    found["schedule.step"] = schedule.count
    return found


def _snapshot(model, optimizer, schedule) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in _tensors(model, optimizer, schedule).items()}


def _restore(saved: dict[str, torch.Tensor], model, optimizer, schedule) -> None:
    """Undo the warm-up steps in place. Optimizer state the warm-up created (first-step moments, momentum
    buffers, step counters) goes back to zero, which is where a fresh optimizer's first step starts."""
    with torch.no_grad():
        for k, v in _tensors(model, optimizer, schedule).items():
            if k in saved:
                v.copy_(saved[k])
            else:
                v.zero_()
    schedule.set_lr()
