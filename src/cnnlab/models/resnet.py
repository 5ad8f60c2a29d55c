"""Residual nets for the fast and best recipes. Each is an ``nn.Sequential`` of named stages; a residual
block is one stage, so summaries, feature maps and the explainer treat it like any other layer.

Why these designs: Fashion-MNIST is 28x28, so three resolutions (28, 14, 7) suffice; BatchNorm lets the
one-cycle schedule use large learning rates; a global-average-pool head keeps the classifier tiny and
makes the net indifferent to the input size (CIFAR-10's 32x32 works unchanged).

The builders are registered (as ``resnet_s`` and ``resnet_w``) by the catalogue, ``zoo.py``.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from cnnlab.models.layers import Dropout, Flatten


def conv_bn(c_in: int, c_out: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False),
            bn=nn.BatchNorm2d(c_out),
            relu=nn.ReLU(inplace=True),
        )
    )


class ResidualBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut; ReLU after the sum."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = (
            nn.Identity()
            if c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        )
        nn.init.zeros_(self.bn2.weight)  # each block starts as the identity: stable at large learning rates

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


def _resnet(
    input_shape, num_classes, widths: tuple[int, int, int], drop: float, *, reduce: int = 0
) -> nn.Sequential:
    """``reduce``: max-pool by 2 this many times after the stem, so a larger input comes down to the size
    the blocks were designed for and the last block still sees whole objects."""
    c, w1, w2 = input_shape[0], widths[1], widths[2]
    stages: list[tuple[str, nn.Module]] = [("stem", conv_bn(c, widths[0]))]  # (B, w0, H, W)
    stages += [(f"pool0{'abcdefgh'[i]}" if reduce > 1 else "pool0", nn.MaxPool2d(2)) for i in range(reduce)]
    stages += [
        ("block1", ResidualBlock(widths[0], w1)),
        ("pool1", nn.MaxPool2d(2)),  # (B, w1, H/2, W/2)
        ("block2", ResidualBlock(w1, w2)),
        ("pool2", nn.MaxPool2d(2)),  # (B, w2, H/4, W/4)
        ("block3", ResidualBlock(w2, 2 * w2)),
        ("gap", nn.AdaptiveAvgPool2d(1)),
        ("flatten", Flatten()),  # (B, 2*w2)
        ("drop1", Dropout(drop)),
        ("output", nn.Linear(2 * w2, num_classes)),
    ]
    return nn.Sequential(OrderedDict(stages))


def resnet_s(input_shape: tuple[int, int, int], num_classes: int) -> nn.Sequential:
    """Stem 24, blocks 32/64/128: the fast recipe's model."""
    return _resnet(input_shape, num_classes, (24, 32, 64), drop=0.1)


def resnet_w(input_shape: tuple[int, int, int], num_classes: int) -> nn.Sequential:
    """Stem 64, blocks 96/192/384: the best recipe's model."""
    return _resnet(input_shape, num_classes, (64, 96, 192), drop=0.2)


def resnet_f(input_shape: tuple[int, int, int], num_classes: int) -> nn.Sequential:
    """resnet_s for your own folders: inputs larger than 32 pixels are max-pooled down to 32 or less after
    the stem (64 px: once), so objects that fill the picture stay inside the last block's view, and a
    64 px image costs what a 32 px one does."""
    reduce = max(0, math.ceil(math.log2(max(input_shape[1:]) / 32))) if max(input_shape[1:]) > 32 else 0
    return _resnet(input_shape, num_classes, (24, 32, 64), drop=0.1, reduce=reduce)
