"""Test-time augmentation: average the model's softmax over a few views of each image."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.config import TTA_VIEWS as VIEWS


def view(x: torch.Tensor, name: str) -> torch.Tensor:
    """One named view of a batch (B, C, H, W): identity, horizontal flip, or a 1-pixel shift (reflect pad)."""
    if name == "identity":
        return x
    if name == "flip":
        return x.flip(3)
    shifts = {"left": (0, 2, 1, 1), "right": (2, 0, 1, 1), "up": (1, 1, 0, 2), "down": (1, 1, 2, 0)}
    if name not in shifts:
        raise ValueError(f"Unknown TTA view {name!r}. Available: {', '.join(VIEWS)}")
    left, right, top, bottom = shifts[name]
    h, w = x.shape[2:]
    return F.pad(x, (left, right, top, bottom), mode="reflect")[:, :, 1 : 1 + h, 1 : 1 + w]


def tta_probs(model: nn.Module, x: torch.Tensor, views: Sequence[str] = ("identity", "flip")) -> torch.Tensor:
    """Mean over ``views`` of ``softmax(model(view(x)))``."""
    return torch.stack([torch.softmax(model(view(x, v)).float(), dim=1) for v in views]).mean(0)
