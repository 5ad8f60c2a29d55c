"""The model registry: `@register_model`, `create_model`, `list_models`.

Every model is an ``nn.Sequential`` of named stages taking pixels in 0..1, shape (B, C, H, W), and
returning logits (B, num_classes). Input shape and class count come from the dataset.

This module is only the mechanism; the built-in models are registered by the catalogue (``zoo.py``), which
``cnnlab.models`` imports, so the registry never imports the modules that fill it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from cnnlab import names
from cnnlab.errors import CnnlabError, UsageError
from cnnlab.models.backbones import create_backbone
from cnnlab.models.normalize import with_normalization
from cnnlab.models.pretrained import Pretrained
from cnnlab.models.spec import build_from_spec, parse_spec
from cnnlab.models.timm_config import FAMILY, FAMILY_DESCRIPTION, backbone_config, is_backbone

Builder = Callable[[tuple[int, int, int], int], nn.Sequential]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    builder: Builder
    spec: str | None = None  # the layer spec, for models that are one
    min_size: int = 1  # smallest input height/width the architecture accepts (checked with a clear message)
    family: bool = False  # stands for many models (timm:NAME): listed, never built by this name


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    name: str, *, description: str, spec: str | None = None, min_size: int = 1
) -> Callable[[Builder], Builder]:
    """Register a builder ``(input_shape, num_classes) -> nn.Sequential`` under ``name``.

    Example:
        >>> @register_model("tiny", description="one conv")  # doctest: +SKIP
        ... def tiny(input_shape, num_classes):
        ...     return build_from_spec("conv8-gap", input_shape=input_shape, num_classes=num_classes)
    """

    def deco(fn: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelInfo(name, description, fn, spec, min_size)
        return fn

    return deco


def register_spec(name: str, spec: str, description: str) -> None:
    """Register a model that is exactly a layer spec."""
    parse_spec(spec)  # fail at import if a built-in spec is wrong
    register_model(name, description=description, spec=spec)(
        lambda input_shape, num_classes: build_from_spec(
            spec, input_shape=input_shape, num_classes=num_classes
        )
    )


def list_models(*, families: bool = False) -> list[ModelInfo]:
    """All registered models, in registration order; with ``families``, then one entry for the timm
    backbones (``timm:NAME``, ``family=True``: a pattern to fill in, not a name to build).

    Example:
        >>> [m.name for m in list_models(families=True)][-3:]
        ['resnet_s', 'resnet_w', 'timm:NAME']
    """
    infos = list(_REGISTRY.values())
    if families:
        infos.append(ModelInfo(FAMILY, FAMILY_DESCRIPTION, _family_builder, family=True))
    return infos


def _family_builder(input_shape: tuple[int, int, int], num_classes: int) -> nn.Sequential:
    return create_backbone(FAMILY, input_shape=input_shape, num_classes=num_classes)  # says: name one


def is_registered(name: str) -> bool:
    return name in _REGISTRY


def create_model(
    name_or_spec: str,
    *,
    input_shape: tuple[int, int, int] = (1, 28, 28),
    num_classes: int = 10,
    seed: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    pretrained: Pretrained = None,
) -> nn.Sequential:
    """Create a registered model by name, a timm backbone, or a model from a layer spec.

    Args:
        name_or_spec: ``"cnn2"``, a timm backbone ``"timm:resnet18"`` (needs ``cnnlab[timm]``), or a spec
            such as ``"conv64-pool-drop.25-dense128"``.
        input_shape: (channels, height, width) of the images, from the dataset.
        num_classes: number of classes, from the dataset (a timm backbone gets a new classifier).
        seed: if given, the weights are initialised from this seed (same seed, same weights).
        mean, std: per-channel normalisation; when given, a ``normalize`` stage comes first. A timm
            backbone always has one: the normalisation its weights were trained with, unless given.
        pretrained: timm backbones only: ``True`` for its ImageNet weights (from the Hugging Face cache,
            downloaded when online), or the path of a local safetensors file; the classifier is new.

    Example:
        >>> m = create_model("cnn2")
        >>> sum(p.numel() for p in m.parameters())
        485514
    """
    c, h, w = input_shape  # a list is accepted too: hand on a tuple
    input_shape = (c, h, w)
    if is_backbone(name_or_spec):
        if seed is not None:
            torch.manual_seed(seed)
        model = create_backbone(
            name_or_spec, input_shape=input_shape, num_classes=num_classes, pretrained=pretrained
        )
        if mean is None or std is None:
            mean, std = backbone_config(name_or_spec).mean_std(input_shape[0])
    elif pretrained is not None and pretrained is not False:
        raise UsageError(
            f"--pretrained needs a pretrained backbone, --model timm:NAME (e.g. timm:resnet18); "
            f"{name_or_spec!r} is trained from scratch"
        )
    else:
        model = _create(name_or_spec, input_shape, num_classes, seed)
    if mean is not None and std is not None:
        if len(mean) != input_shape[0] or len(std) != input_shape[0]:
            raise CnnlabError(
                f"mean/std need {input_shape[0]} values (one per channel), got {len(mean)}/{len(std)}"
            )
        model = with_normalization(model, mean, std)
    return model


def _create(
    name_or_spec: str, input_shape: tuple[int, int, int], num_classes: int, seed: int | None
) -> nn.Sequential:
    c, h, w = input_shape
    if seed is not None:
        torch.manual_seed(seed)
    info = _REGISTRY.get(name_or_spec)
    if info is not None:
        if min(h, w) < info.min_size:
            raise CnnlabError(
                f"Model {info.name!r} needs images of at least {info.min_size}x{info.min_size}, got {h}x{w}"
            )
        try:
            return info.builder(input_shape, num_classes)
        except RuntimeError as exc:  # a shape that does not fit the architecture
            raise CnnlabError(
                f"Model {info.name!r} cannot take input of shape {input_shape}: {exc}"
            ) from None
    check_model_name(name_or_spec)
    return build_from_spec(name_or_spec, input_shape=input_shape, num_classes=num_classes)


def check_model_name(name_or_spec: str) -> None:
    """Refuse a name that is no registered model, no layer spec and no timm backbone timm knows, with the
    close matches, before anything is built or any data read (the shapes are checked when building)."""
    names.check_model_name(name_or_spec, tuple(_REGISTRY))
    if is_backbone(name_or_spec):
        backbone_config(name_or_spec)  # an unknown timm name fails with its close matches


def count_params(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
