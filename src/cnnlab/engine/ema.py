"""Callbacks that shape which weights train and which are kept: an EMA of the weights (updated after
every optimizer step; validation, early stopping and the final model use the average), and frozen
backbone epochs for fine-tuning."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from cnnlab.engine.callbacks import Callback, LoopView
from cnnlab.engine.setup import param_groups


def make_ema(model: nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """An exponential moving average of the weights (and BN buffers), updated after every step.

    The decay warms up as min(decay, (1 + n) / (10 + n)) after n updates, so short runs are not dominated
    by the random initial weights (a fixed 0.999 would keep ~37% of them after 1,000 steps)."""
    updates: int | None = None

    def ema(
        averaged: Sequence[torch.Tensor], current: Sequence[torch.Tensor], num_averaged: torch.Tensor | int
    ) -> None:
        nonlocal updates
        if updates is None:  # from the saved count, so a resumed run continues the same warm-up
            updates = int(num_averaged) - 1  # AveragedModel counts its first plain copy too
        d = min(decay, (1 + updates) / (10 + updates))
        updates += 1
        floats = [(a, c) for a, c in zip(averaged, current, strict=True) if a.is_floating_point()]
        if floats:
            torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], 1.0 - d)
        for a, c in zip(averaged, current, strict=True):  # integer buffers (BN's num_batches_tracked)
            if not a.is_floating_point():
                a.copy_(c)

    return AveragedModel(model, multi_avg_fn=ema, use_buffers=True)


class EMA(Callback):
    """Keep an average of the weights with ``decay`` (e.g. 0.999); validate on it, and end with it. Its
    ``state_dict`` is the average's (checkpoints carry it)."""

    priority = -40  # updated after every step before anything reads this step's weights

    def __init__(self, decay: float):
        self.decay = decay
        self.averaged: torch.optim.swa_utils.AveragedModel | None = None

    def on_train_begin(self, loop: LoopView) -> None:
        self.averaged = make_ema(loop.model, self.decay)
        loop.evaluate_with(self.averaged.module)  # what validation and early stopping look at

    def on_train_batch_end(self, loop: LoopView) -> None:
        assert self.averaged is not None
        self.averaged.update_parameters(loop.model)

    def on_train_end(self, loop: LoopView) -> None:
        assert self.averaged is not None
        loop.model.load_state_dict(self.averaged.module.state_dict())

    def state_dict(self) -> dict:
        assert self.averaged is not None, "the average exists from on_train_begin on"
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict) -> None:
        assert self.averaged is not None, "the average exists from on_train_begin on"
        self.averaged.load_state_dict(state)


class FreezeBackbone(Callback):
    """Train only the classifier (the last stage with parameters) for the first ``epochs`` epochs, then
    everything: the usual start of fine-tuning a pretrained backbone. A function of the epoch alone, so a
    resumed run freezes exactly as the original did."""

    priority = -20

    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_epoch_begin(self, loop: LoopView) -> None:
        frozen = loop.epoch <= self.epochs
        for p in param_groups(loop.model).backbone:
            p.requires_grad_(not frozen)

    def on_train_end(self, loop: LoopView) -> None:
        for p in loop.model.parameters():
            p.requires_grad_(True)
