"""Layer specs: a network written as a string, the tutorial's invitation to experiment.

A spec is tokens joined by '-', read left to right. Every registered tutorial model is one:
`cnn2` is ``conv64-pool-drop.25-conv128-pool-drop.25-flatten-dense128``.

Tokens (defaults in brackets):
    conv<C>[k<K>][s<S>][p<P>|psame]  3x3 convolution with C filters [k3 s1 p0 = 'valid', as in the tutorial]
    dense<N>                         fully connected layer with N units
    pool[<K>][s<S>], maxpool..       max pooling [2x2, stride = size];  avgpool[<K>][s<S>] averages
    gap                              global average pooling (then flatten)
    drop<P>                          dropout with rate P, e.g. drop.25 or drop0.5
    bn                               batch normalisation (2-D after conv, 1-D after dense)
    flatten                          (inserted automatically before the first dense layer)
    relu gelu silu elu tanh sigmoid leakyrelu linear
                                     activation of the conv/dense layer just before (after its bn);
                                     conv and dense layers get relu when none is given, `linear` means none
The classifier ``dense<num_classes>`` (named ``output``, no activation: it returns logits) is appended.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.func import functional_call

from cnnlab.models.layers import Dropout, Flatten, ReLU
from cnnlab.names import GRAMMAR, MAX_PARAMS, Token, parse_spec, spec_error

ACTIVATIONS: dict[str, type[nn.Module] | None] = {
    "relu": ReLU,  # in place while training: it always follows a conv, dense or bn here
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leakyrelu": nn.LeakyReLU,
    "linear": None,
}
__all__ = ["ACTIVATIONS", "GRAMMAR", "Token", "build_from_spec", "parse_spec"]


class _Builder:
    """Appends named stages while tracking the output shape with a forward pass on the meta device (shapes
    only: a huge layer at a huge image size allocates no activation)."""

    def __init__(self, input_shape: tuple[int, ...]):
        self.stages: dict[str, nn.Module] = {}
        self.counts: dict[str, int] = {}
        self.probe = torch.zeros(1, *input_shape, device="meta")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.probe.shape[1:])

    def add(self, kind: str, module: nn.Module, *, numbered: bool = True) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        name = f"{kind}{self.counts[kind]}" if numbered else kind
        module.eval()
        meta = {
            k: torch.empty_like(v, device="meta")
            for k, v in [*module.named_parameters(), *module.named_buffers()]
        }
        with torch.no_grad():
            self.probe = functional_call(module, meta, (self.probe,))
        self.stages[name] = module

    def check_size(self, spec: str, new_params: int) -> None:
        """Refuse, before allocating, a layer that would take the model over MAX_PARAMS."""
        params = new_params + sum(p.numel() for m in self.stages.values() for p in m.parameters())
        if params > MAX_PARAMS:
            raise spec_error(
                spec, f"it would have over {MAX_PARAMS / 1e9:g} billion parameters; use smaller layers"
            )


def _add_layer(b: _Builder, spec: str, tok) -> None:
    """The stage (or stages: ``dense`` after an image flattens it first) one token stands for, checked
    against the shape so far."""
    spatial = len(b.shape) == 3
    if tok.kind in ("conv", "pool", "gap") and not spatial:
        raise spec_error(spec, f"'{tok.kind}' needs an image-shaped input but comes after flatten/dense")
    if tok.kind == "conv":
        c, k, s, p = tok.args
        if p != "same" and (b.shape[1] + 2 * p < k or b.shape[2] + 2 * p < k):
            raise spec_error(
                spec,
                f"a {k}x{k} kernel does not fit the {b.shape[1]}x{b.shape[2]} "
                f"feature map at conv layer {b.counts.get('conv', 0) + 1}; use padding or fewer pooling layers",
            )
        b.check_size(spec, b.shape[0] * c * k * k + c)
        b.add("conv", nn.Conv2d(b.shape[0], c, k, stride=s, padding=p))
    elif tok.kind == "dense":
        if spatial:
            b.add("flatten", Flatten(), numbered=False)
        b.check_size(spec, (b.shape[0] + 1) * tok.args[0])
        b.add("dense", nn.Linear(b.shape[0], tok.args[0]))
    elif tok.kind == "pool":
        how, k, s = tok.args
        if b.shape[1] < k or b.shape[2] < k:
            raise spec_error(spec, f"{k}x{k} pooling does not fit the {b.shape[1]}x{b.shape[2]} feature map")
        b.add("pool", nn.MaxPool2d(k, s) if how == "max" else nn.AvgPool2d(k, s))
    elif tok.kind == "gap":
        b.add("gap", nn.AdaptiveAvgPool2d(1), numbered=False)
        b.add("flatten", Flatten(), numbered=False)
    elif tok.kind == "drop":
        b.add("drop", Dropout(tok.args[0]))
    elif tok.kind == "bn":
        b.add("bn", nn.BatchNorm2d(b.shape[0]) if spatial else nn.BatchNorm1d(b.shape[0]))
    elif tok.kind == "flatten":
        if "flatten" in b.stages:
            raise spec_error(spec, "flatten appears twice")
        b.add("flatten", Flatten(), numbered=False)
    elif tok.kind == "act":
        raise spec_error(spec, f"activation '{tok.args[0]}' must follow a conv or dense layer (or its bn)")


def _add_norm_and_activation(b: _Builder, tokens: list, i: int, kind: str) -> int:
    """After a conv or dense layer: an optional ``bn`` token, then its activation (the explicit one, else
    relu). Returns the index of the next token not taken."""
    if i < len(tokens) and tokens[i].kind == "bn":
        b.add("bn", nn.BatchNorm2d(b.shape[0]) if kind == "conv" else nn.BatchNorm1d(b.shape[0]))
        i += 1
    act = "relu"
    if i < len(tokens) and tokens[i].kind == "act":
        act = tokens[i].args[0]
        i += 1
    factory = ACTIVATIONS[act]
    if factory is not None:
        b.add(act, factory())
    return i


def build_from_spec(spec: str, *, input_shape: tuple[int, int, int], num_classes: int) -> nn.Sequential:
    """Build an ``nn.Sequential`` of named stages from a spec (see the module docstring).

    Example:
        >>> m = build_from_spec("conv8-pool-dense16", input_shape=(1, 28, 28), num_classes=10)
        >>> list(dict(m.named_children()))
        ['conv1', 'relu1', 'pool1', 'flatten', 'dense1', 'relu2', 'output']
    """
    tokens = parse_spec(spec)
    b = _Builder(input_shape)
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        _add_layer(b, spec, tok)
        i += 1
        if tok.kind in ("conv", "dense"):
            i = _add_norm_and_activation(b, tokens, i, tok.kind)
    if len(b.shape) != 1:
        b.add("flatten", Flatten(), numbered=False)
    b.check_size(spec, (b.shape[0] + 1) * num_classes)
    b.add("output", nn.Linear(b.shape[0], num_classes), numbered=False)
    model = nn.Sequential(OrderedDict(b.stages))
    model.train()
    return model
