"""The one JSON format for what a model sees: defined here, used by `Activations.to_json()`, by every
web endpoint (as its response model, so OpenAPI documents it) and by the page.

    {
      "schema": "cnnlab.activations/1",
      "model":  {"id", "name", "input_shape": [C, H, W], "classes": [...], "params"},
      "input":  {"shape", "source", "original_size", "inverted", "resized"},
      "layers": [{"name", "kind", "shape", "module", "params", "stats": {min, max, mean}, "values"}, ...],
      "prediction": {"index", "label", "probability", "logits", "probabilities", "top": [...]},
      "gradcam": {...} | null, "saliency": {...} | null
    }

`layers` has one entry per named stage of the model, in order, with the model's input first (kind
`input`) and the softmax of the logits last (kind `softmax`). A tensor travels as
`{"dtype": "float32", "shape", "encoding": "base64" | "list", "data"}`: base64 of the little-endian
float32 bytes in C (row-major) order, so every value the page shows is bit-identical to PyTorch's;
`list` is a flat JSON list of the same numbers, for scripts. Bump `SCHEMA_VERSION` on any breaking change.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = "cnnlab.activations/1"

Encoding = Literal["base64", "list"]
ENCODINGS: tuple[str, ...] = ("base64", "list")

KINDS = (
    "input",  # the image as the model receives it (0..1 pixels)
    "normalize",  # per-channel (x - mean) / std inside the model
    "conv",  # nn.Conv2d (cross-correlation, with padding and stride)
    "batchnorm",
    "relu",
    "activation",  # any other element-wise non-linearity (params.function names it)
    "maxpool",
    "avgpool",
    "globalpool",  # adaptive pooling to a fixed size, e.g. global average pooling
    "dropout",  # identity at evaluation time
    "flatten",
    "dense",  # nn.Linear
    "block",  # any other stage, e.g. a residual block
    "softmax",  # probabilities from the logits (not a stage of the model: the models return logits)
)
Kind = Literal[
    "input",
    "normalize",
    "conv",
    "batchnorm",
    "relu",
    "activation",
    "maxpool",
    "avgpool",
    "globalpool",
    "dropout",
    "flatten",
    "dense",
    "block",
    "softmax",
]


class TensorData(BaseModel):
    """An array: float32 values in C order, as base64 bytes or a flat list."""

    dtype: Literal["float32"] = "float32"
    shape: list[int]
    encoding: Encoding
    data: str | list[float | None]


class Stats(BaseModel):
    min: float | None
    max: float | None
    mean: float | None


class Layer(BaseModel):
    name: str
    kind: Kind
    shape: list[int] = Field(description="output shape without the batch axis: [C, H, W] or [N]")
    module: str = Field(description="the PyTorch module, as repr() prints it")
    params: dict[str, Any] = Field(default_factory=dict, description="kernel size, stride, padding, p, ...")
    stats: Stats
    values: TensorData | None = None


class ClassScore(BaseModel):
    index: int
    label: str
    probability: float


class Prediction(BaseModel):
    index: int
    label: str
    probability: float
    logits: list[float | None]
    probabilities: list[float | None]
    top: list[ClassScore]


class Heatmap(BaseModel):
    method: Literal["gradcam", "saliency"]
    layer: str | None = Field(description="the stage Grad-CAM looked at (None for saliency)")
    class_index: int
    label: str
    values: TensorData = Field(description="(H, W) at the input's size, 0..1")


class InputInfo(BaseModel):
    shape: list[int]
    source: str = Field(description="'upload', 'test:<index>', 'array', ...")
    original_size: list[int] | None = Field(None, description="[height, width] before resizing")
    inverted: bool = False
    resized: bool = False
    label: int | None = Field(None, description="the true class, when the image comes from a dataset")


class ModelInfo(BaseModel):
    id: str | None = None
    name: str
    input_shape: list[int]
    classes: list[str]
    params: int


class ActivationsDoc(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    schema_: str = Field(SCHEMA_VERSION, alias="schema")
    model: ModelInfo
    input: InputInfo
    layers: list[Layer]
    prediction: Prediction
    gradcam: Heatmap | None = None
    saliency: Heatmap | None = None


class PredictionDoc(BaseModel):
    """What /api/predict answers: the prediction without the activations."""

    model_config = ConfigDict(populate_by_name=True)

    schema_: str = Field(SCHEMA_VERSION, alias="schema")
    model: ModelInfo
    input: InputInfo
    prediction: Prediction


def encode_tensor(values: Any, encoding: str = "base64") -> TensorData:
    """Array -> `TensorData` (float32, C order).

    Example:
        >>> t = encode_tensor(np.arange(3, dtype=np.float32))
        >>> t.shape, decode_tensor(t).tolist()
        ([3], [0.0, 1.0, 2.0])
    """
    arr = np.ascontiguousarray(np.asarray(values, dtype="<f4"))
    if encoding == "base64":
        data: str | list = base64.b64encode(arr.tobytes()).decode("ascii")
    elif encoding == "list":
        data = [None if not np.isfinite(v) else float(v) for v in arr.ravel().tolist()]
    else:
        raise ValueError(f"Unknown encoding {encoding!r}. Available: {', '.join(ENCODINGS)}")
    return TensorData(shape=list(arr.shape), encoding=encoding, data=data)


def decode_tensor(t: TensorData | dict) -> np.ndarray:
    """`TensorData` (or its JSON dict) -> float32 array of its shape."""
    if isinstance(t, dict):
        t = TensorData.model_validate(t)
    if t.encoding == "base64":
        arr = np.frombuffer(base64.b64decode(t.data), dtype="<f4").copy()
    else:
        arr = np.asarray([np.nan if v is None else v for v in t.data], dtype=np.float32)
    return arr.reshape(t.shape).astype(np.float32, copy=False)


def stats_of(values: np.ndarray) -> Stats:
    finite = values[np.isfinite(values)] if values.size else values
    if finite.size == 0:
        return Stats(min=None, max=None, mean=None)
    return Stats(min=float(finite.min()), max=float(finite.max()), mean=float(finite.mean()))


def json_schema() -> dict:
    """The JSON Schema of the activations document (what `cnnlab explain --json` and /api/explain emit)."""
    return ActivationsDoc.model_json_schema(by_alias=True)
