"""The training step, written once: ``TrainStep.body`` is forward, loss, backward, the caller's check,
gradient clipping, optimizer step and learning-rate schedule. The eager path calls it for every batch;
``cnnlab.engine.graphs.GraphedStep`` captures the same function in a CUDA graph and replays it.

Why one function run whole (rather than a captured forward+backward with the optimizer replayed apart):
a graph of the whole step is one launch per step, which is what makes small models fast on a GPU, and a
body that both paths run cannot drift between them. The price is where the non-finite guard looks: the
eager body calls ``check(loss)`` after backward and before the optimizer, so a bad loss never reaches the
weights; a graph cannot stop halfway, so there the check runs right after the replay.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.engine.phases import phase
from cnnlab.engine.setup import autocast, compile_model, make_optimizer, make_schedule

Check = Callable[[torch.Tensor], None]  # sees the step's detached loss; raises to stop the run


class TrainStep:
    """The optimizer, schedule and (optionally compiled, DDP-wrapped) network of a run, and its step.

    Args:
        model: the module to train (its parameters are optimised).
        cfg: the training options (a ``TrainConfig``): optimizer, lr, weight_decay, schedule, epochs,
            label_smoothing, clip_grad_norm, amp, compile.
        steps_per_epoch: for the schedule's length.
        device, ddp: where it trains; ``ddp`` wraps the network for data-parallel gradients.
        example: the training batches (``DeviceBatches``): ``torch.compile`` warms up on the first one,
            outside the timed run.

    Example:
        >>> loss, logits = step(x, y, check=guard)  # doctest: +SKIP  # one optimizer step
    """

    def __init__(self, model: nn.Module, cfg, *, steps_per_epoch: int, device: torch.device, ddp, example):
        self.model = model
        self.label_smoothing = cfg.label_smoothing
        self.clip_grad_norm: float | None = cfg.clip_grad_norm
        self.optimizer = self._make_optimizer(model, cfg, device)
        self.schedule = self._make_schedule(cfg, steps_per_epoch)
        self.cast = self._make_cast(cfg, device)
        net, self.compile_seconds = model, None
        if cfg.compile:
            x0, y0, _ = next(iter(example.epoch(1)))
            net, self.compile_seconds = compile_model(
                model, device, lambda c: self._loss(c, x0, y0)[0].backward()
            )
        self.net = ddp.wrap(net, device)  # DDP averages the gradients over ranks during backward

    def _make_optimizer(self, model: nn.Module, cfg, device: torch.device) -> torch.optim.Optimizer:
        return make_optimizer(
            model, cfg.optimizer, cfg.lr, cfg.weight_decay, device, backbone_lr=cfg.backbone_lr
        )

    def _make_schedule(self, cfg, steps_per_epoch: int):
        return make_schedule(self.optimizer, cfg.schedule, cfg.epochs * steps_per_epoch)

    def _make_cast(self, cfg, device: torch.device):
        return autocast(device, cfg.amp)

    def _loss(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self.cast:
            logits = net(x)  # (B, num_classes)
            return F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing), logits

    def body(
        self, x: torch.Tensor, y: torch.Tensor, *, share: float = 1.0, check: Check | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on the batch ``(x, y)``; returns its (mean loss, logits), detached.

        ``share``: this rank's weight in a DDP batch (its loss is scaled before backward). ``check``: called
        with the loss after backward and before the weights change (the non-finite guard); a graph captures
        the body without it. Every other line runs on both paths, so none may read a value back to the host."""
        with phase("optimizer"):
            self.optimizer.zero_grad(set_to_none=True)  # a graph's backward then allocates its own gradients
        with phase("forward"):
            loss, logits = self._loss(self.net, x, y)
        with phase("backward"):
            (loss if share == 1.0 else loss * share).backward()
        loss, logits = loss.detach(), logits.detach()
        if check is not None:
            check(loss)
        with phase("optimizer"):
            if self.clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
            self.optimizer.step()
            if self.schedule is not None:
                self.schedule.step()  # the learning rate of the next step
        return loss, logits

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, *, share: float = 1.0, check: Check | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One training step: the body, run eagerly."""
        return self.body(x, y, share=share, check=check)
