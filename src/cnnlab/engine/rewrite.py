"""Two rewrites of a plain ``nn.Sequential``'s training step on the CPU, made for the duration of ``fit``
and undone after it (an exception or Ctrl-C included), each the same computation as the layers written:

- **Each max-pool before the ReLU that feeds it** (`pool_before_relu`): the same result to the bit, with
  the ReLU on a quarter of the values. Max-pooling commutes with any non-decreasing function applied
  element by element, so relu(maxpool(x)) == maxpool(relu(x)) value for value, and the gradients agree
  too: both reach the window's first maximum when it is positive and are zero otherwise (ReLU's gradient
  at 0 is 0 in PyTorch); padding is -inf either way. `tests/test_rewrite.py` checks it bit for bit.
- **A batch norm folded into the convolution before it** (`fold_batch_norm`), where the convolution's
  input is small beside its output (the first layer: 9 values a patch, 32 channels out): the batch's
  statistics of each output channel are w.mean(P) + b and w'Cov(P)w, from the mean and covariance of
  the input's patches P (a 9x9 matrix), so the layer pair runs as one convolution with the weights
  w * gamma / sqrt(var + eps) and the matching bias, and autograd carries the gradient through that fold
  to w, b, gamma and beta exactly as through batch norm's own backward. No pass over the conv's output for
  the statistics, none for the normalisation, none in backward: the fast recipe's first block was a
  third of its step. The same running statistics and ``num_batches_tracked``; the numbers agree to float
  rounding (1e-5 relative in float32; in bf16 the statistics come out more exact, from float32 inputs
  instead of the conv's bf16 outputs). Used only while the input needs no gradient (the first layer);
  in eval mode, or otherwise, the two layers run as written. Where a max-pool follows the pair (after the
  first rewrite: fastcnn's conv, bn, relu, pool runs conv, bn, pool, relu), the folded convolution and
  the pool run together a few images at a time in float32, so the convolution's output, four times the
  pool's, stays in the cache in forward and backward.

Both are done inside the model itself, not in a second ``nn.Sequential`` of its layers: the model's own
``_modules`` are put in the swapped order, and a folded pair's two layers get instance ``forward``s (the
convolution's giving the normalised output, the batch norm's passing it on), so forward hooks on the
model see every training call, its parameters and state dict are untouched, and a saved or exported model
keeps the layers as written. A pair is left as it is when either layer has hooks of its own (they would
see other values), and every pair when global module hooks are registered.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as _module

__all__ = ["fold_batch_norm", "foldable_pairs", "pool_before_relu", "step_rewrites", "swappable_pairs"]


@contextmanager
def step_rewrites(model: nn.Module, enabled: bool = True) -> Iterator[None]:
    """`pool_before_relu` and `fold_batch_norm` while the block runs (``fit`` on the CPU); the pools are
    moved first, so a folded pair's max-pool comes right after it and is pooled with it."""
    with pool_before_relu(model, enabled), fold_batch_norm(model, enabled):
        yield


@contextmanager
def pool_before_relu(model: nn.Module, enabled: bool = True) -> Iterator[list[tuple[str, str]]]:
    """Run each (ReLU, max-pool) pair of the plain ``nn.Sequential`` ``model`` pool first while the block
    runs; yields the (relu, pool) names swapped (none: ``model`` as it is)."""
    pairs = swappable_pairs(model) if enabled else []
    if pairs:
        _reorder(model, pairs, swap=True)
    try:
        yield pairs
    finally:
        if pairs:
            _reorder(model, pairs, swap=False)


def swappable_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """The (relu, pool) child names of ``model`` that `pool_before_relu` swaps: a plain ``nn.Sequential``'s
    ``nn.ReLU`` right before an ``nn.MaxPool2d`` (no indices returned), neither with hooks of its own."""
    if type(model) is not nn.Sequential or _global_hooks():
        return []
    children = list(model.named_children())
    pairs = []
    for (a_name, a), (b_name, b) in zip(children, children[1:], strict=False):
        relu_pool = isinstance(a, nn.ReLU) and isinstance(b, nn.MaxPool2d) and not b.return_indices
        if relu_pool and not _hooked(a) and not _hooked(b):
            pairs.append((a_name, b_name))
    return pairs


def _reorder(model: nn.Module, pairs: list[tuple[str, str]], *, swap: bool) -> None:
    """Put each pair in ``model._modules`` pool first (``swap``) or back to relu first, keeping every other
    entry where it is (so anything added meanwhile stays)."""
    modules = model._modules
    pairs = [(relu, pool) for relu, pool in pairs if relu in modules and pool in modules]
    first = {relu if swap else pool: (pool, relu) if swap else (relu, pool) for relu, pool in pairs}
    moved = {name for pair in pairs for name in pair}
    order: list[str] = []
    for name in modules:
        if name in first:
            order += first[name]
        elif name not in moved:
            order.append(name)
    entries = [(name, modules[name]) for name in order]
    modules.clear()  # the same dict, reordered in place
    modules.update(entries)


def _hooked(m: nn.Module) -> bool:
    return any(
        getattr(m, attr, None)
        for attr in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
        )
    )


def _global_hooks() -> bool:
    return any(
        getattr(_module, attr, None)
        for attr in (
            "_global_forward_hooks",
            "_global_forward_pre_hooks",
            "_global_backward_hooks",
            "_global_backward_pre_hooks",
        )
    )


@contextmanager
def fold_batch_norm(model: nn.Module, enabled: bool = True) -> Iterator[list[tuple[str, str]]]:
    """Run each (Conv2d, BatchNorm2d) pair of `foldable_pairs` as one folded convolution while the block
    runs; yields the (conv, bn) names folded."""
    pairs = foldable_pairs(model) if enabled else []
    layers = dict(model.named_children())
    names = list(layers)
    pooled = []  # the max-pools run by their folded convolutions
    for conv_name, bn_name in pairs:
        conv, bn = layers[conv_name], layers[bn_name]
        following = names.index(bn_name) + 1
        pool = layers[names[following]] if following < len(names) else None
        if type(pool) is not nn.MaxPool2d or pool.return_indices or _hooked(pool):
            pool = None
        # bound methods and plain attributes (not registered submodules: the state dict stays as it is),
        # so that a copy of the model made meanwhile (copy.deepcopy) folds its own layers, not these
        object.__setattr__(conv, _FOLDED_INTO, (bn, pool))
        conv.forward = types.MethodType(_folded_forward, conv)
        passed: list[nn.Module] = [bn] if pool is None else [bn, pool]
        for layer in passed:
            layer.forward = types.MethodType(_passed_on, layer)
        pooled += [names[following]] if pool is not None else []
    try:
        yield pairs
    finally:
        for name in (*(name for pair in pairs for name in pair), *pooled):
            for attr in ("forward", _FOLDED_INTO):
                vars(layers[name]).pop(attr, None)


def foldable_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """The (conv, bn) child names of ``model`` that `fold_batch_norm` folds: in a plain ``nn.Sequential``,
    an ``nn.Conv2d`` (one group, zero padding given as numbers) right before an ``nn.BatchNorm2d`` of its
    channels with a momentum, neither with hooks of its own, where the patches (input channels x kernel
    area) are at most half the output channels: there the statistics from the patches cost less than
    the pass over the output they replace."""
    if type(model) is not nn.Sequential or _global_hooks():
        return []
    children = list(model.named_children())
    pairs = []
    for (a_name, a), (b_name, b) in zip(children, children[1:], strict=False):
        if type(a) is nn.Conv2d and type(b) is nn.BatchNorm2d and _foldable(a, b):
            pairs.append((a_name, b_name))
    return pairs


def _foldable(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> bool:
    patch = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
    return (
        conv.groups == 1
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        and bn.num_features == conv.out_channels
        and bn.momentum is not None
        and 2 * patch <= conv.out_channels
        and not _hooked(conv)
        and not _hooked(bn)
    )


_FOLDED_INTO = "_cnnlab_folded_into"


def _passed_on(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return x  # the folded convolution before it has normalised (and pooled) already


def _folded_forward(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    bn, pool = vars(conv)[_FOLDED_INTO]
    if not bn.training or x.requires_grad:  # as written (running statistics; or x's own gradient)
        return _pooled(pool, type(bn).forward(bn, type(conv).forward(conv, x)))
    patches = _patches(x, conv)
    weight, bias = _folded(conv, bn, patches)
    if torch.is_autocast_enabled(x.device.type):  # bf16: the convolution's own backward is the faster
        return _pooled(pool, F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups))
    return _PatchConv.apply(x, weight, bias, patches, conv, pool)


def _pooled(pool: nn.MaxPool2d | None, y: torch.Tensor) -> torch.Tensor:
    return y if pool is None else type(pool).forward(pool, y)


class _PatchConv(torch.autograd.Function):
    """The folded convolution, and the max-pool after it when there is one, with the weight gradient from
    the patches already made for the statistics: one matrix product (patches x output gradient). In
    float32 the convolution's own weight backward for fastcnn's first layer is twice as slow (AVX2 kernels:
    a training epoch 7.0-7.4 s against 7.9-8.0 s with it); in bf16 it is the faster one, so it stays there.

    With a pool, both run `_CHUNK` images at a time, so that the convolution's output (fastcnn's: 22 MB a
    batch, four times the pooled size) and, in backward, its gradient are made and used while in the
    cache, never written to memory whole (AVX2 kernels: 7.26 -> 6.54 s an epoch in `benchmarks/speedrun.py`,
    fresh processes taking turns; in bf16 it was slower, so bf16 keeps the convolution's own backward).
    The statistics and running statistics are the whole batch's, as batch norm's."""

    @staticmethod
    def forward(ctx, x, weight, bias, patches, conv, pool):
        n = x.shape[0]
        step = n if pool is None else _CHUNK
        outs, ctx.indices = [], []
        for i in range(0, n, step):
            y = F.conv2d(x[i : i + step], weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
            if pool is not None:
                ctx.conv_out = y.shape[1:], y.stride()  # the pool's input: (C, H, W) and strides
                y, indices = F.max_pool2d(y, *_pool_args(pool), return_indices=True)
                ctx.indices.append(indices)
            outs.append(y)
        ctx.save_for_backward(patches)
        ctx.pool, ctx.step, ctx.weight_shape = pool, step, weight.shape
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    @staticmethod
    def backward(ctx, grad):
        (patches,) = ctx.saved_tensors
        per = patches.shape[1] // grad.shape[0]  # positions per image
        grad_weight = grad.new_zeros(patches.shape[0], ctx.weight_shape[0])  # (patch, C_out), transposed
        grad_bias = torch.zeros(ctx.weight_shape[0])
        for k, i in enumerate(range(0, grad.shape[0], ctx.step)):
            g = grad[i : i + ctx.step]
            if ctx.pool is not None:  # the pool's backward: the chunk's gradient scattered to its maxima
                shape, strides = ctx.conv_out  # its input's values are not read, only its shape and layout
                like = torch.empty_strided((g.shape[0], *shape), strides, dtype=g.dtype)
                g = torch.ops.aten.max_pool2d_with_indices_backward(
                    g, like, *_pool_args(ctx.pool), ctx.indices[k]
                )
            rows = g.permute(0, 2, 3, 1).reshape(-1, g.shape[1])  # (positions, C_out)
            part = patches[:, i * per : (i + g.shape[0]) * per]
            grad_weight.addmm_(part.to(rows.dtype), rows)
            grad_bias += rows.sum(dim=0, dtype=torch.float32)
        return None, grad_weight.T.reshape(ctx.weight_shape), grad_bias, None, None, None


_CHUNK = 32  # images a chunk: fastcnn's first convolution's output for 32 is 2.8 MB


def _pool_args(pool: nn.MaxPool2d) -> tuple:
    return pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode


def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The weights and bias of ``conv`` with ``bn`` (training: the statistics of this batch, whose patches
    are ``p``) folded in; updates ``bn``'s running statistics as its own forward would."""
    with torch.autocast(p.device.type, enabled=False):
        m = p.shape[1]
        mean_p = p.mean(dim=1)
        centred = p - mean_p[:, None]
        cov = (centred @ centred.T) / m  # (D, D): the patches' covariance, biased as batch norm's
        w = conv.weight.float().reshape(conv.out_channels, -1)
        b = conv.bias.float() if conv.bias is not None else torch.zeros_like(mean_p[:1])
        mean = w @ mean_p + b
        var = ((w @ cov) * w).sum(dim=1)
        if bn.track_running_stats:
            _update_running(bn, mean.detach(), var.detach(), m)
        scale = torch.rsqrt(var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = (b - mean) * scale
        if bn.bias is not None:
            shift = shift + bn.bias
    return conv.weight * scale.reshape(-1, 1, 1, 1).to(conv.weight.dtype), shift


def _update_running(bn: nn.BatchNorm2d, mean: torch.Tensor, var: torch.Tensor, m: int) -> None:
    assert bn.running_mean is not None and bn.running_var is not None and bn.momentum is not None
    with torch.no_grad():
        if bn.num_batches_tracked is not None:
            bn.num_batches_tracked.add_(1)
        bn.running_mean.lerp_(mean.to(bn.running_mean.dtype), bn.momentum)
        bn.running_var.lerp_((var * (m / max(1, m - 1))).to(bn.running_var.dtype), bn.momentum)


def _patches(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """The convolution's input patches as a float32 (in_channels x kh x kw, positions) matrix, in the
    order of its weight's flattening."""
    x = x.detach().float()
    assert not isinstance(conv.padding, str)  # see _foldable
    (ph, pw), (kh, kw) = conv.padding, conv.kernel_size
    (sh, sw), (dh, dw) = conv.stride, conv.dilation
    if ph or pw:
        x = F.pad(x, (pw, pw, ph, ph))
    ho = (x.shape[2] - dh * (kh - 1) - 1) // sh + 1
    wo = (x.shape[3] - dw * (kw - 1) - 1) // sw + 1
    views = [
        x[:, c, i * dh : i * dh + sh * (ho - 1) + 1 : sh, j * dw : j * dw + sw * (wo - 1) + 1 : sw]
        for c in range(conv.in_channels)
        for i in range(kh)
        for j in range(kw)
    ]
    return torch.stack(views).reshape(len(views), -1)
