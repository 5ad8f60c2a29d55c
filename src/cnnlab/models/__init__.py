"""Models: a registry of named architectures and a layer-spec parser for your own."""

from cnnlab.models.registry import (
    ModelInfo,
    count_params,
    create_model,
    is_registered,
    list_models,
    register_model,
    register_spec,
)
from cnnlab.models.spec import GRAMMAR, build_from_spec, parse_spec

__all__ = [
    "GRAMMAR",
    "ModelInfo",
    "build_from_spec",
    "count_params",
    "create_model",
    "is_registered",
    "list_models",
    "parse_spec",
    "register_model",
    "register_spec",
]
