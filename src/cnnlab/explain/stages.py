"""What each named stage of a model is: its kind (from `isinstance`, never from its name) and the
numbers a learner needs to follow it (kernel size, stride, padding, dropout rate, ...)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

import torch
from torch import nn

from cnnlab.errors import NotFoundError
from cnnlab.models.normalize import Normalize

_ACTIVATIONS = (nn.GELU, nn.SiLU, nn.ELU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.Hardswish, nn.Mish, nn.PReLU)


def stage_kind(module: nn.Module) -> str:
    """The schema kind of one stage (see `schema.KINDS`).

    Example:
        >>> stage_kind(nn.Conv2d(1, 8, 3)), stage_kind(nn.MaxPool2d(2)), stage_kind(nn.Sequential())
        ('conv', 'maxpool', 'block')
    """
    if isinstance(module, Normalize):
        return "normalize"
    if isinstance(module, nn.Conv2d):
        return "conv"
    if isinstance(module, nn.Linear):
        return "dense"
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return "batchnorm"
    if isinstance(module, nn.ReLU):
        return "relu"
    if isinstance(module, _ACTIVATIONS):
        return "activation"
    if isinstance(module, nn.MaxPool2d):
        return "maxpool"
    if isinstance(module, nn.AvgPool2d):
        return "avgpool"
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return "globalpool"
    if isinstance(module, (nn.Dropout, nn.Dropout2d)):
        return "dropout"
    if isinstance(module, nn.Flatten):
        return "flatten"
    return "block"


def _pair(v) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(x) for x in v]


def conv_padding(module: nn.Conv2d) -> list[int]:
    """[top, bottom, left, right] padding of a conv layer, whatever form it was given in."""
    left, right, top, bottom = module._reversed_padding_repeated_twice
    return [int(top), int(bottom), int(left), int(right)]


def stage_params(module: nn.Module) -> dict:
    """The hyper-parameters of a stage as plain JSON values."""
    kind = stage_kind(module)
    if kind == "conv":
        conv = cast(nn.Conv2d, module)  # stage_kind checked the class
        return {
            "in_channels": conv.in_channels,
            "out_channels": conv.out_channels,
            "kernel_size": _pair(conv.kernel_size),
            "stride": _pair(conv.stride),
            "padding": conv_padding(conv),
            "dilation": _pair(conv.dilation),
            "groups": conv.groups,
            "bias": conv.bias is not None,
            "padding_mode": conv.padding_mode,
            "weights": int(conv.weight.numel() + (conv.bias.numel() if conv.bias is not None else 0)),
        }
    if kind in ("maxpool", "avgpool"):
        p = {
            "op": "max" if kind == "maxpool" else "avg",
            "kernel_size": _pair(module.kernel_size),
            "stride": _pair(module.stride if module.stride is not None else module.kernel_size),
            "padding": _pair(module.padding),
            "ceil_mode": bool(module.ceil_mode),
        }
        if kind == "maxpool":
            p["dilation"] = _pair(module.dilation)
        else:
            p["count_include_pad"] = bool(module.count_include_pad)
        return p
    if kind == "globalpool":
        size = module.output_size
        return {
            "op": "avg" if isinstance(module, nn.AdaptiveAvgPool2d) else "max",
            "output_size": _pair(size if size is not None else 1),
        }
    if kind == "dense":
        dense = cast(nn.Linear, module)
        return {
            "in_features": dense.in_features,
            "out_features": dense.out_features,
            "bias": dense.bias is not None,
            "weights": int(dense.weight.numel() + (dense.bias.numel() if dense.bias is not None else 0)),
        }
    if kind == "dropout":
        return {"p": float(cast(nn.Dropout | nn.Dropout2d, module).p), "at_eval": "identity"}
    if kind == "normalize":
        norm = cast(Normalize, module)
        return {"mean": norm.mean.flatten().tolist(), "std": norm.std.flatten().tolist()}
    if kind == "batchnorm":
        return {"num_features": module.num_features, "eps": module.eps, **_batchnorm_tensors(module)}
    if kind == "activation":
        return {"function": type(module).__name__}
    if kind == "block":
        return {"module": type(module).__name__, "weights": sum(p.numel() for p in module.parameters())}
    return {}


def _batchnorm_tensors(module: nn.Module) -> dict:
    """gamma, beta and the running statistics a batch norm uses at evaluation (per channel): what the
    page needs to spell out y = gamma * (x - mean) / sqrt(var + eps) + beta."""

    def values(t) -> list[float] | None:
        return [float(v) for v in t.detach().cpu().float().flatten()] if t is not None else None

    return {
        "gamma": values(module.weight),
        "beta": values(module.bias),
        "running_mean": values(module.running_mean),
        "running_var": values(module.running_var),
    }


def named_stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's named stages (an ``nn.Sequential``'s children); a model that is not a Sequential
    is one stage."""
    if isinstance(model, nn.Sequential):
        return list(model.named_children())
    return [("model", model)]


def find_stage(model: nn.Module, name: str) -> tuple[int, nn.Module]:
    """Index and module of the stage called ``name``; a clear error listing the stages otherwise."""
    stages = named_stages(model)
    for i, (n, m) in enumerate(stages):
        if n == name:
            return i, m
    raise NotFoundError(f"Unknown layer {name!r}. Available: {', '.join(n for n, _ in stages)}")


def model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Evaluation mode for the duration (dropout off, batch norm on its running statistics). A model
    already in eval mode is not touched, so a model shared by server threads is never mutated."""
    was_training = model.training
    if was_training:
        model.eval()
    try:
        yield model
    finally:
        if was_training:
            model.train()
