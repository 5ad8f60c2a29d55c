"""Models: a registry of named architectures and a layer-spec parser for your own.

Importing this package imports the catalogue (``zoo``), which registers the built-in models; the
registry module itself is only the mechanism, so there is no import cycle.
"""

from cnnlab.models import zoo as _zoo  # noqa: F401  (the catalogue: registers the built-in models)
from cnnlab.models.registry import (
    ModelInfo,
    check_model_name,
    count_params,
    create_model,
    is_registered,
    list_models,
    register_model,
    register_spec,
)
from cnnlab.models.spec import GRAMMAR, build_from_spec, parse_spec
from cnnlab.models.timm_config import BackboneConfig, backbone_config, is_backbone

__all__ = [
    "GRAMMAR",
    "BackboneConfig",
    "ModelInfo",
    "backbone_config",
    "build_from_spec",
    "check_model_name",
    "count_params",
    "create_model",
    "is_backbone",
    "is_registered",
    "list_models",
    "parse_spec",
    "register_model",
    "register_spec",
]
