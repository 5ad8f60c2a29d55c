"""Names and pretrained configurations of timm backbones (``timm:NAME``): what a name means, what input
size and normalisation its weights expect. timm is imported on first use only (``timm_import.py``).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from cnnlab.errors import NotFoundError, UsageError
from cnnlab.models.timm_import import import_timm

PREFIX = "timm:"
FAMILY = "timm:NAME"
FAMILY_DESCRIPTION = (
    "Any timm backbone (e.g. timm:resnet18, timm:mobilenetv3_small_100, timm:efficientnet_b0) with a new "
    "classifier for your classes; ImageNet weights with --pretrained (or --pretrained PATH); needs cnnlab[timm]"
)


def is_backbone(name: str) -> bool:
    """Whether ``name`` asks for a timm backbone (``timm:NAME``)."""
    return isinstance(name, str) and PREFIX in name


def timm_name(name: str) -> str:
    """``"timm:resnet18"`` -> ``"resnet18"``; refuses a timm name mixed with a layer spec."""
    rest = name[len(PREFIX) :] if name.startswith(PREFIX) else ""
    if not name.startswith(PREFIX) or "-" in rest or PREFIX in rest:
        raise UsageError(
            f"{name!r} mixes a timm backbone with a layer spec: use --model timm:NAME alone "
            "(e.g. timm:resnet18), or a layer spec such as 'conv32-pool-dense64'"
        )
    if not rest or name == FAMILY:
        raise UsageError(f"{FAMILY} stands for any timm backbone: name one, e.g. timm:resnet18")
    return rest


@dataclass(frozen=True)
class BackboneConfig:
    """What a backbone's pretrained weights expect (from timm's pretrained config)."""

    name: str  # timm's name, with the weights' tag when given ("resnet18.a1_in1k")
    input_size: tuple[int, int, int]  # (C, H, W) the weights were trained at
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str  # how timm resizes for these weights ("bicubic", "bilinear")
    hf_hub_id: str | None  # the Hugging Face repo with the weights, when timm knows one
    first_conv: str  # the input convolution's name (its weights adapt to 1-channel images)
    classifier: str  # the classifier's name (replaced for your classes)

    def mean_std(self, channels: int) -> tuple[list[float], list[float]]:
        """Per-channel mean and std for ``channels`` input channels (grey images: the average)."""
        if channels == len(self.mean):
            return list(self.mean), list(self.std)
        avg_mean, avg_std = sum(self.mean) / len(self.mean), sum(self.std) / len(self.std)
        return [avg_mean] * channels, [avg_std] * channels


def backbone_config(name: str) -> BackboneConfig:
    """Preferred input size and normalisation of a backbone (``"timm:resnet18"`` or ``"resnet18"``).

    Example:
        >>> backbone_config("timm:resnet18").input_size  # doctest: +SKIP
        (3, 224, 224)
    """
    arch = timm_name(name) if PREFIX in name else name  # a name/spec mix fails before timm loads
    timm = import_timm()
    arch = _known(timm, arch)
    # deferred: timm is the optional `timm` extra
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    try:
        cfg = timm.models.get_pretrained_cfg(arch)
    except RuntimeError:  # an unknown tag after the dot
        base = arch.split(".")[0]
        tags = ", ".join(timm.list_pretrained(f"{base}.*")) or "none"
        raise NotFoundError(f"timm has no weights {arch!r}. Available for {base}: {tags}") from None
    if cfg is None:  # an architecture without pretrained weights: timm's ImageNet defaults
        return BackboneConfig(
            arch, (3, 224, 224), IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, "bicubic", None, "", ""
        )
    return BackboneConfig(
        name=arch,
        input_size=tuple(cfg.input_size),
        mean=tuple(cfg.mean),
        std=tuple(cfg.std),
        interpolation=cfg.interpolation,
        hf_hub_id=cfg.hf_hub_id,
        first_conv=cfg.first_conv or "",
        classifier=cfg.classifier or "",
    )


def _known(timm, arch: str) -> str:
    if timm.is_model(arch):
        return arch
    names = timm.list_models()
    close = difflib.get_close_matches(arch.split(".")[0], names, n=5, cutoff=0.6)
    hint = f" Close matches: {', '.join(PREFIX + c for c in close)}." if close else ""
    raise NotFoundError(
        f"Unknown timm backbone {arch!r}.{hint} All {len(names)} names: python -c 'import timm; print(timm.list_models())'"
    )
