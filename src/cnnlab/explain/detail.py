"""How one output value was made: the input patch, the kernel and the dot product of a conv layer; the
window and the chosen value of a pooling layer.

A conv layer (``nn.Conv2d``) computes cross-correlation, not the flipped convolution of the tutorial's
``convolve2d``: output[o, y, x] = bias[o] + sum over c, i, j of
input_padded[c, y*stride + i*dilation, x*stride + j*dilation] * weight[o, c, i, j].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.explain.stages import find_stage
from cnnlab.explain.stagewise import Activations


def _check_position(values: np.ndarray, channel: int, y: int, x: int, name: str) -> None:
    c, h, w = values.shape
    if not (0 <= channel < c and 0 <= y < h and 0 <= x < w):
        raise CnnlabError(
            f"position (channel {channel}, y {y}, x {x}) is outside {name}'s output of shape {c}x{h}x{w}"
        )


@dataclass
class ConvDetail:
    layer: str
    channel: int
    y: int
    x: int
    top_left: tuple[int, int]  # where the window starts in the (unpadded) input; negative inside padding
    channels: list[int]  # the input channels this output reads (all of them unless groups > 1)
    patch: np.ndarray  # (Cin, kh, kw) input values under the kernel, padding included
    kernel: np.ndarray  # (Cin, kh, kw) the weights of output channel `channel`
    products: np.ndarray  # patch * kernel
    per_channel: np.ndarray  # (Cin,) sum of products per input channel
    bias: float
    total: float  # sum of products + bias, computed here in float64
    output: float  # the value the model produced (float32)

    def to_json(self) -> dict:
        return {
            "layer": self.layer,
            "channel": self.channel,
            "y": self.y,
            "x": self.x,
            "top_left": list(self.top_left),
            "channels": self.channels,
            "patch": self.patch.tolist(),
            "kernel": self.kernel.tolist(),
            "per_channel": self.per_channel.tolist(),
            "bias": self.bias,
            "total": self.total,
            "output": self.output,
        }


def conv_position(
    model: nn.Module, acts: Activations, layer: str, channel: int, y: int, x: int
) -> ConvDetail:
    """The dot product behind ``acts[layer].values[channel, y, x]`` for a conv stage.

    Example:
        >>> d = conv_position(model, acts, "conv1", 0, 5, 7)  # doctest: +SKIP
        >>> abs(d.total - d.output) < 1e-4  # doctest: +SKIP
        True
    """
    _, conv = find_stage(model, layer)
    if not isinstance(conv, nn.Conv2d):
        raise CnnlabError(f"layer {layer!r} is a {type(conv).__name__}, not a conv layer")
    out = acts[layer].values
    _check_position(out, channel, y, x, layer)
    inp = acts.input_of(layer).values  # (Cin, H, W)
    left, right, top, bottom = conv._reversed_padding_repeated_twice
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    padded = F.pad(_t(inp)[None], (left, right, top, bottom), mode=mode)[0].numpy().astype(np.float64)
    kh, kw = conv.kernel_size
    sh, sw = conv.stride
    dh, dw = conv.dilation
    group = channel // (conv.out_channels // conv.groups)
    cin = conv.in_channels // conv.groups
    chans = list(range(group * cin, (group + 1) * cin))
    y0, x0 = y * sh, x * sw
    patch = padded[chans, y0 : y0 + dh * (kh - 1) + 1 : dh, x0 : x0 + dw * (kw - 1) + 1 : dw]
    kernel = conv.weight[channel].detach().cpu().double().numpy()
    products = patch * kernel
    per_channel = products.sum(axis=(1, 2))
    bias = float(conv.bias[channel].detach()) if conv.bias is not None else 0.0
    return ConvDetail(
        layer,
        channel,
        y,
        x,
        (y0 - top, x0 - left),
        chans,
        patch,
        kernel,
        products,
        per_channel,
        bias,
        float(per_channel.sum() + bias),
        float(out[channel, y, x]),
    )


@dataclass
class PoolDetail:
    layer: str
    op: str  # "max" or "avg"
    channel: int
    y: int
    x: int
    top_left: tuple[int, int]
    window: np.ndarray  # (kh, kw) input values in the window (padding: -inf for max, 0 for avg)
    chosen: tuple[int, int] | None  # row, col inside the window of the max (None for avg)
    output: float

    def to_json(self) -> dict:
        w = [[None if not np.isfinite(v) else float(v) for v in row] for row in self.window]
        return {
            "layer": self.layer,
            "op": self.op,
            "channel": self.channel,
            "y": self.y,
            "x": self.x,
            "top_left": list(self.top_left),
            "window": w,
            "chosen": list(self.chosen) if self.chosen else None,
            "output": self.output,
        }


def _t(a: np.ndarray):
    return torch.from_numpy(np.ascontiguousarray(a))


def pool_window(model: nn.Module, acts: Activations, layer: str, channel: int, y: int, x: int) -> PoolDetail:
    """The window behind one output of a max/average pooling stage and, for max, which value won."""
    _, pool = find_stage(model, layer)
    out = acts[layer].values
    _check_position(out, channel, y, x, layer)
    inp = acts.input_of(layer).values[channel].astype(np.float64)
    if isinstance(pool, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        h, w = inp.shape
        oh, ow = out.shape[1:]
        ys, ye = (y * h) // oh, -((-(y + 1) * h) // oh)
        xs, xe = (x * w) // ow, -((-(x + 1) * w) // ow)
        window, top_left = inp[ys:ye, xs:xe], (ys, xs)
        op = "avg" if isinstance(pool, nn.AdaptiveAvgPool2d) else "max"
    elif isinstance(pool, (nn.MaxPool2d, nn.AvgPool2d)):
        op = "max" if isinstance(pool, nn.MaxPool2d) else "avg"

        def two(v):
            return (v, v) if isinstance(v, int) else tuple(v)

        kh, kw = two(pool.kernel_size)
        sh, sw = two(pool.stride if pool.stride is not None else pool.kernel_size)
        ph, pw = two(pool.padding)
        dh, dw = two(pool.dilation) if op == "max" else (1, 1)
        fill = -np.inf if op == "max" else 0.0
        h, w = inp.shape
        # pad enough on the far side for ceil_mode windows that run past the edge
        big = np.full((h + 2 * ph + dh * kh + sh, w + 2 * pw + dw * kw + sw), fill)
        big[ph : ph + h, pw : pw + w] = inp
        y0, x0 = y * sh, x * sw
        window = big[y0 : y0 + dh * (kh - 1) + 1 : dh, x0 : x0 + dw * (kw - 1) + 1 : dw]
        top_left = (y0 - ph, x0 - pw)
    else:
        raise CnnlabError(f"layer {layer!r} is a {type(pool).__name__}, not a pooling layer")
    chosen = None
    if op == "max":
        r, c = np.unravel_index(int(np.argmax(window)), window.shape)
        chosen = (int(r), int(c))
    return PoolDetail(layer, op, channel, y, x, top_left, window, chosen, float(out[channel, y, x]))
