"""A model's stages as plain data for the page's in-browser engine (``web/static/engine/``): one op tree
per named stage, with its weights named by their state-dict keys. What the tree can say is exactly what
the JS engine runs; any module outside it is `Unsupported`, naming the stage, so ``cnnlab publish``
refuses a model before writing anything (a timm backbone, a custom module whose forward it cannot know).

Ops: ``conv`` (any kernel, stride, padding, dilation, groups; zero padding), ``dense``, ``batchnorm``
(running statistics, as at evaluation), ``relu``, ``act`` (GELU exact or tanh, SiLU, ELU, Tanh, Sigmoid,
LeakyReLU, Hardswish, Mish), ``maxpool``, ``avgpool``, ``adaptive`` (global pooling), ``identity``
(dropout at evaluation), ``flatten``, ``normalize``, ``seq`` (a Sequential) and ``residual``
(`cnnlab.models.resnet.ResidualBlock`: relu(body(x) + shortcut(x))).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.explain.stages import conv_padding, named_stages
from cnnlab.models.normalize import Normalize
from cnnlab.models.resnet import ResidualBlock

_ACTS: dict[type[nn.Module], str] = {
    nn.SiLU: "silu",
    nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid",
    nn.Hardswish: "hardswish",
    nn.Mish: "mish",
}


class Unsupported(CnnlabError):
    """A stage the in-browser engine cannot run. Exit code 1."""


def _pair(v) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(x) for x in v]


def _key(prefix: str, name: str, tensor) -> str | None:
    return f"{prefix}{name}" if tensor is not None else None


def _conv(m: nn.Conv2d, prefix: str) -> dict:
    if m.padding_mode != "zeros":
        raise ValueError(f"padding_mode={m.padding_mode!r} (the engine pads with zeros)")
    return {
        "op": "conv",
        "w": f"{prefix}weight",
        "b": _key(prefix, "bias", m.bias),
        "shape": list(m.weight.shape),  # (out, in / groups, kh, kw)
        "stride": _pair(m.stride),
        "padding": conv_padding(m),  # top, bottom, left, right
        "dilation": _pair(m.dilation),
        "groups": int(m.groups),
    }


def _pool(m: nn.Module) -> dict:
    if isinstance(m, nn.MaxPool2d):
        if m.return_indices:
            raise ValueError("max pooling that returns indices")
        extra: dict[str, Any] = {"op": "maxpool", "dilation": _pair(m.dilation)}
    else:
        if getattr(m, "divisor_override", None):
            raise ValueError("average pooling with divisor_override")
        extra = {"op": "avgpool", "count_include_pad": bool(m.count_include_pad)}
    return {
        **extra,
        "kernel": _pair(m.kernel_size),
        "stride": _pair(m.stride if m.stride else m.kernel_size),
        "padding": _pair(m.padding),
        "ceil": bool(m.ceil_mode),
    }


def _batchnorm(m: nn.BatchNorm1d | nn.BatchNorm2d, prefix: str) -> dict:
    if m.running_mean is None:
        raise ValueError("batch norm without running statistics")
    return {
        "op": "batchnorm",
        "w": _key(prefix, "weight", m.weight),
        "b": _key(prefix, "bias", m.bias),
        "mean": f"{prefix}running_mean",
        "var": f"{prefix}running_var",
        "eps": float(m.eps),
    }


def _activation(m: nn.Module) -> dict | None:
    if isinstance(m, nn.ReLU):
        return {"op": "relu"}
    if isinstance(m, nn.GELU):
        return {"op": "act", "fn": "gelu_tanh" if m.approximate == "tanh" else "gelu"}
    if isinstance(m, nn.ELU):
        return {"op": "act", "fn": "elu", "alpha": float(m.alpha)}
    if isinstance(m, nn.LeakyReLU):
        return {"op": "act", "fn": "leakyrelu", "alpha": float(m.negative_slope)}
    for cls, fn in _ACTS.items():
        if isinstance(m, cls):
            return {"op": "act", "fn": fn}
    return None


def module_ops(m: nn.Module, prefix: str = "") -> dict:
    """The op tree of one module whose parameters are named ``prefix + ...`` in the state dict.

    Raises:
        ValueError: a module (or an option of one) the engine does not run; the message names it.
    """
    act = _activation(m)
    if act is not None:
        return act
    if isinstance(m, Normalize):
        return {"op": "normalize", "mean": m.mean.flatten().tolist(), "std": m.std.flatten().tolist()}
    if isinstance(m, nn.Conv2d):
        return _conv(m, prefix)
    if isinstance(m, nn.Linear):
        return {
            "op": "dense",
            "w": f"{prefix}weight",
            "b": _key(prefix, "bias", m.bias),
            "shape": list(m.weight.shape),
        }
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return _batchnorm(m, prefix)
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        return _pool(m)
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        size = _pair(m.output_size if m.output_size is not None else 1)
        return {
            "op": "adaptive",
            "mode": "avg" if isinstance(m, nn.AdaptiveAvgPool2d) else "max",
            "size": size,
        }
    if isinstance(m, (nn.Dropout, nn.Dropout2d, nn.Identity)):
        return {"op": "identity"}
    if isinstance(m, nn.Flatten):
        if (m.start_dim, m.end_dim) != (1, -1):
            raise ValueError(f"Flatten({m.start_dim}, {m.end_dim})")
        return {"op": "flatten"}
    if isinstance(m, nn.Sequential) and type(m) is nn.Sequential:
        return {"op": "seq", "items": [module_ops(c, f"{prefix}{n}.") for n, c in m.named_children()]}
    if type(m) is ResidualBlock:  # its forward: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))
        body = [("conv1", m.conv1), ("bn1", m.bn1), ("", nn.ReLU()), ("conv2", m.conv2), ("bn2", m.bn2)]
        return {
            "op": "residual",
            "body": {"op": "seq", "items": [module_ops(c, f"{prefix}{n}.") for n, c in body]},
            "shortcut": module_ops(m.shortcut, f"{prefix}shortcut."),
        }
    raise ValueError(f"{type(m).__name__} ({m})"[:160])


def engine_stages(model: nn.Module) -> list[dict]:
    """``[{"name", "ops"}, ...]`` for every named stage of ``model``, in order.

    Raises:
        Unsupported: a stage the engine cannot run, named with the module it could not translate.

    Example:
        >>> import cnnlab as cl
        >>> [s["ops"]["op"] for s in engine_stages(cl.create_model("mlp", seed=0))]
        ['flatten', 'dense', 'relu', 'dense']
    """
    out = []
    for name, stage in named_stages(model):
        try:
            out.append({"name": name, "ops": module_ops(stage, f"{name}." if name != "model" else "")})
        except ValueError as exc:
            raise Unsupported(
                f"stage {name!r} cannot run in the browser: {exc}. The engine runs conv, dense, batch norm, "
                "activations, pooling, dropout, flatten, normalize and residual blocks"
            ) from None
    return out
