"""See inside a trained model: activations of every named stage, how a conv or pooling output was
computed, Grad-CAM and saliency, dataset reports, figures, and the one JSON format the web page reads.

Example:
    >>> import numpy as np, cnnlab as cl
    >>> model = cl.create_model("cnn2", seed=0)
    >>> acts = cl.explain.activations(model, np.zeros((28, 28), dtype=np.float32))
    >>> [(s.name, s.kind, s.shape) for s in acts.layers][:3]
    [('input', 'input', (1, 28, 28)), ('conv1', 'conv', (64, 26, 26)), ('relu1', 'relu', (64, 26, 26))]
    >>> acts.to_json()["schema"]
    'cnnlab.activations/2'

Names are imported on first use (PEP 562). ``explain`` never imports the training engine.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module (under cnnlab.explain) that defines it
_EXPORTS = {
    "SCHEMA_VERSION": "schema",
    "ActivationsDoc": "schema",
    "PredictionDoc": "schema",
    "encode_tensor": "schema",
    "decode_tensor": "schema",
    "decode_layers": "schema",
    "encode_compact": "wire",
    "json_schema": "schema",
    "Activations": "stagewise",
    "Stage": "stagewise",
    "Prediction": "stagewise",
    "activations": "stagewise",
    "predict_image": "stagewise",
    "softmax": "stagewise",
    "softmax_steps": "stagewise",
    "PreparedInput": "inputs",
    "prepare_input": "inputs",
    "stage_kind": "stages",
    "stage_params": "stages",
    "named_stages": "stages",
    "conv_position": "detail",
    "pool_window": "detail",
    "Heatmap": "heatmaps",
    "gradcam": "heatmaps",
    "saliency": "heatmaps",
    "default_layer": "heatmaps",
    "spatial_stages": "heatmaps",
    "DatasetReport": "reports",
    "dataset_report": "reports",
    "split_probabilities": "reports",
    "image_report": "files",
    "write_dataset_report": "files",
    "run_test_split": "data",
}
_SUBMODULES = ("schema", "figures", "wire")

__all__ = sorted([*_EXPORTS, *_SUBMODULES])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"cnnlab.explain.{_EXPORTS[name]}"), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"cnnlab.explain.{name}")
    else:
        raise AttributeError(f"module 'cnnlab.explain' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
