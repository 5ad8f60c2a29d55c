"""A ``normalize`` stage: per-channel (x - mean) / std inside the model, so every consumer of a model
(training, predict, explain, the web page, ONNX export) feeds the same 0..1 pixels and gets the same
numbers, with no preprocessing to forget."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    mean: torch.Tensor  # registered as buffers below; declared so type checkers know them
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError("mean and std need one value per channel and std > 0")
        # buffers: saved with the weights, moved with .to(), not trained
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def with_normalization(model: nn.Sequential, mean: Sequence[float], std: Sequence[float]) -> nn.Sequential:
    """``model`` with a ``normalize`` stage in front (same modules, not copies)."""
    stages = OrderedDict([("normalize", Normalize(mean, std)), *model.named_children()])
    return nn.Sequential(stages)
