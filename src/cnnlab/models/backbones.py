"""Pretrained backbones from timm, as cnnlab models: ``create_model("timm:resnet18", pretrained=True)``.

A timm network becomes an ``nn.Sequential`` of named stages like every cnnlab model, so summary,
explain, the page and ONNX export treat it alike: ``normalize`` (the backbone's mean/std, added by
``create_model``), then timm's own top-level modules in the order its forward runs them (``conv1``,
``bn1``, ..., ``layer4`` for a ResNet; a container of stages such as EfficientNet's ``blocks`` is opened
into ``blocks0``, ``blocks1``, ...), then its pooling and the new classifier, named ``output``. The split is
checked with a real forward pass against timm's own; a network whose forward is not such a chain gets
three stages instead: ``features``, ``pool`` and ``output``.

timm is imported on first use only (see ``timm_import.py``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol, cast

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models.pretrained import Pretrained, load_weights, pretrained_file, timm_names
from cnnlab.models.timm_config import backbone_config
from cnnlab.models.timm_import import import_timm


class _TimmApi(Protocol):
    """The methods every timm model has beyond ``nn.Module`` (timm gives them no common base class)."""

    def get_classifier(self) -> nn.Module: ...
    def reset_classifier(self, num_classes: int) -> None: ...
    def forward_features(self, x: torch.Tensor) -> torch.Tensor: ...
    def forward_head(self, x: torch.Tensor) -> torch.Tensor: ...


def _timm(net: nn.Module) -> _TimmApi:
    return cast(_TimmApi, net)


def create_backbone(
    name: str, *, input_shape: tuple[int, int, int], num_classes: int, pretrained: Pretrained = None
) -> nn.Sequential:
    """A timm backbone with a new ``num_classes`` classifier, as named stages (no ``normalize`` stage:
    ``create_model`` adds it). ``pretrained``: ``True`` for the backbone's ImageNet weights (from the
    Hugging Face cache, downloaded when online), a path to a local safetensors file, or ``None``."""
    cfg = backbone_config(name)
    timm = import_timm()
    c, h, w = input_shape
    try:
        net = timm.create_model(cfg.name, pretrained=False, num_classes=num_classes, in_chans=c)
    except (TypeError, ValueError, RuntimeError, AssertionError) as exc:
        raise CnnlabError(f"timm cannot build {name!r} for input {c}x{h}x{w}: {exc}") from None
    names = timm_names(net)  # before the classifier may move out of ``net``
    model = _as_stages(net, name, input_shape, preferred=cfg.input_size[1])
    if pretrained is True:
        pretrained = str(pretrained_file(cfg))
    if pretrained:
        load_weights(model, pretrained, names=names, cfg=cfg, in_chans=c)
    return model.train()


def _as_stages(
    net: nn.Module, name: str, input_shape: tuple[int, int, int], *, preferred: int
) -> nn.Sequential:
    """``net`` as named stages whose chain computes what ``net`` does (checked on one probe image)."""
    probe = torch.rand(1, *input_shape, generator=torch.Generator().manual_seed(0))
    net.eval()
    try:
        with torch.no_grad():
            expected = net(probe)
    except (RuntimeError, AssertionError, ValueError) as exc:  # too small, or not the fixed size it needs
        raise CnnlabError(
            f"Model {name!r} cannot take input of shape {tuple(input_shape)} ({exc}); its weights were "
            f"trained at {preferred}x{preferred}: try --image-size {preferred}"
        ) from None
    for wrap in (_chain_of_children, _features_pool_head):  # in this order: the second changes ``net``
        stages = wrap(net)
        if stages is not None and _computes(stages, probe, expected):
            return stages
    raise CnnlabError(f"timm model {name!r} is not a chain of stages cnnlab can show; try a CNN backbone")


def _chain_of_children(net: nn.Module) -> nn.Sequential | None:
    """timm's top-level modules in order, a container of stages opened, the classifier named ``output``."""
    classifier = _timm(net).get_classifier()
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    for child_name, child in net.named_children():
        if child is classifier:
            stages["output"] = child
        elif (
            isinstance(child, nn.Sequential)
            and len(child)
            and all(isinstance(m, nn.Sequential) for m in child)
        ):
            stages.update((f"{child_name}{i}", m) for i, m in enumerate(child))
        else:
            stages[child_name] = child
    return nn.Sequential(stages) if "output" in stages and next(reversed(stages)) == "output" else None


class _Features(nn.Module):
    """timm's ``forward_features`` as one stage (it holds the network's weights)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _timm(self.net).forward_features(x)


class _Pool(nn.Module):
    """timm's ``forward_head`` without the classifier (pooling, flatten, norm) as one stage."""

    net: nn.Module  # not a submodule: see __init__

    def __init__(self, net: nn.Module):
        super().__init__()
        self.__dict__["net"] = net  # a plain reference: the weights belong to ``features`` (saved once)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _timm(self.net).forward_head(x)


def _features_pool_head(net: nn.Module) -> nn.Sequential:
    classifier = _timm(net).get_classifier()
    _timm(net).reset_classifier(0)  # the classifier becomes its own stage; timm puts an Identity in its place
    return nn.Sequential(OrderedDict(features=_Features(net), pool=_Pool(net), output=classifier))


def _computes(stages: nn.Sequential, probe: torch.Tensor, expected: torch.Tensor) -> bool:
    try:
        with torch.no_grad():
            got = stages.eval()(probe)
    except (RuntimeError, TypeError):
        return False
    return got.shape == expected.shape and torch.allclose(got, expected, rtol=1e-4, atol=1e-5)
