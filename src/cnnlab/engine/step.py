"""One training step in two halves: ``forward`` (logits and loss under autocast) and ``update``
(backward, optimizer step, learning-rate schedule). ``fit`` calls the non-finite guard between them.
``cnnlab.engine.graphs.GraphedStep`` is the same interface with the whole step captured in a CUDA graph."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.engine.setup import autocast, compile_model, make_optimizer, make_schedule


class TrainStep:
    """The optimizer, schedule and (optionally compiled, DDP-wrapped) network of a run.

    Args:
        model: the module to train (its parameters are optimised).
        cfg: the training options (a ``TrainConfig``): optimizer, lr, weight_decay, schedule, epochs,
            label_smoothing, amp, compile.
        steps_per_epoch: for the schedule's length.
        device, ddp: where it trains; ``ddp`` wraps the network for data-parallel gradients.
        example: the training batches (``DeviceBatches``): ``torch.compile`` warms up on the first one,
            outside the timed run.
    """

    def __init__(self, model: nn.Module, cfg, *, steps_per_epoch: int, device: torch.device, ddp, example):
        self.model = model
        self.label_smoothing = cfg.label_smoothing
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

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean loss, logits) of a batch; the loss is on the graph for ``update``."""
        return self._loss(self.net, x, y)

    def update(self, loss: torch.Tensor, share: float = 1.0) -> None:
        """Backward (of ``loss * share``: this rank's weight in a DDP batch), an optimizer and a schedule step."""
        self.optimizer.zero_grad(set_to_none=True)
        (loss if share == 1.0 else loss * share).backward()
        self.optimizer.step()
        if self.schedule is not None:
            self.schedule.step()
