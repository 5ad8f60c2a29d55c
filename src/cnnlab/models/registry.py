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

from cnnlab.errors import CnnlabError
from cnnlab.models.normalize import with_normalization
from cnnlab.models.spec import build_from_spec, parse_spec

Builder = Callable[[tuple[int, int, int], int], nn.Sequential]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    builder: Builder
    spec: str | None = None  # the layer spec, for models that are one
    min_size: int = 1  # smallest input height/width the architecture accepts (checked with a clear message)


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


def list_models() -> list[ModelInfo]:
    """All registered models, in registration order."""
    return list(_REGISTRY.values())


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
) -> nn.Sequential:
    """Create a registered model by name, or build one from a layer spec.

    Args:
        name_or_spec: ``"cnn2"`` or a spec such as ``"conv64-pool-drop.25-dense128"``.
        input_shape: (channels, height, width) of the images, from the dataset.
        num_classes: number of classes, from the dataset.
        seed: if given, the weights are initialised from this seed (same seed, same weights).
        mean, std: per-channel normalisation; when given, a ``normalize`` stage comes first.

    Example:
        >>> m = create_model("cnn2")
        >>> sum(p.numel() for p in m.parameters())
        485514
    """
    model = _create(name_or_spec, tuple(input_shape), num_classes, seed)
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
            return info.builder(tuple(input_shape), num_classes)
        except RuntimeError as exc:  # a shape that does not fit the architecture
            raise CnnlabError(
                f"Model {info.name!r} cannot take input of shape {tuple(input_shape)}: {exc}"
            ) from None
    if "-" not in name_or_spec:
        try:
            parse_spec(name_or_spec)
        except CnnlabError as exc:
            if "unknown token" not in str(exc):
                raise
            available = ", ".join(_REGISTRY)
            raise CnnlabError(
                f"Unknown model {name_or_spec!r}. Available: {available}; or a layer spec such as 'conv32-pool-dense64'"
            ) from None
    return build_from_spec(name_or_spec, input_shape=tuple(input_shape), num_classes=num_classes)


def count_params(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
