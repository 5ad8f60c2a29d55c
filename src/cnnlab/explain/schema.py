"""The one JSON format for what a model sees: defined here, used by `Activations.to_json()`, by every
web endpoint (as its response model, so OpenAPI documents it) and by the page.

    {
      "schema": "cnnlab.activations/2",
      "model":  {"id", "name", "input_shape": [C, H, W], "classes": [...], "params"},
      "input":  {"shape", "source", "original_size", "inverted", "resized"},
      "layers": [{"name", "kind", "shape", "module", "params", "stats": {min, max, mean},
                  "values" | "derived"}, ...],
      "prediction": {"index", "label", "probability", "logits", "probabilities", "top": [...]},
      "gradcam": {...} | null, "saliency": {...} | null
    }

`layers` has one entry per named stage of the model, in order, with the model's input first (kind
`input`) and the softmax of the logits last (kind `softmax`). A tensor travels as
`{"dtype", "shape", "encoding": "base64" | "list", "data", "scale", "zero_point", "max_error"}`:

- `float32` + `base64`: the little-endian float32 bytes in C (row-major) order, bit-identical to PyTorch;
- `float32` + `list`: a flat JSON list of the same numbers, for scripts;
- `uint8` + `base64`: one byte per value, ``value = (q - zero_point[c]) * scale[c]`` for slice ``c`` of the
  first axis, within `max_error` of PyTorch's value (the compact form, see `cnnlab.explain.wire`).

In the compact form (the default) a stage may instead be `derived` from the stage before it:
``{"source": "conv1", "op": "relu" | "identity"}``, recomputed by the reader (`decode_layers`).
Version 2 added `uint8`, `scale`, `zero_point`, `max_error` and `derived` (version 1 sent every stage
as float32). Bump `SCHEMA_VERSION` on any breaking change.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = "cnnlab.activations/2"

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


Precision = Literal["compact", "exact"]
PRECISIONS: tuple[str, ...] = ("compact", "exact")


class TensorData(BaseModel):
    """An array in C order: float32 (base64 bytes or a flat list) or uint8 with a scale per slice."""

    dtype: Literal["float32", "uint8"] = "float32"
    shape: list[int]
    encoding: Encoding
    data: str | list[float | None]
    scale: list[float] | None = Field(
        None, description="uint8: the step of each slice of the first axis (one entry for a 1-d array)"
    )
    zero_point: list[int] | None = Field(None, description="uint8: the byte that stands for 0, per slice")
    max_error: float = Field(0.0, description="largest |decoded - exact value|; 0 for float32 (exact)")


class Derived(BaseModel):
    """A stage sent without values: recompute it from an earlier stage."""

    source: str = Field(description="the stage it is computed from (the one just before it)")
    op: Literal["identity", "relu"] = Field(description="identity: the same values; relu: max(x, 0)")


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
    derived: Derived | None = Field(None, description="set instead of values in the compact form")


class ClassScore(BaseModel):
    index: int
    label: str
    probability: float


class PredictionSchema(BaseModel):
    index: int
    label: str
    probability: float
    logits: list[float | None]
    probabilities: list[float | None]
    top: list[ClassScore]


class HeatmapSchema(BaseModel):
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


class ModelSchema(BaseModel):
    id: str | None = None
    name: str
    input_shape: list[int]
    classes: list[str]
    params: int


class ActivationsDoc(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    schema_: str = Field(SCHEMA_VERSION, alias="schema")
    model: ModelSchema
    input: InputInfo
    layers: list[Layer]
    prediction: PredictionSchema
    gradcam: HeatmapSchema | None = None
    saliency: HeatmapSchema | None = None


class PredictionDoc(BaseModel):
    """What /api/predict answers: the prediction without the activations."""

    model_config = ConfigDict(populate_by_name=True)

    schema_: str = Field(SCHEMA_VERSION, alias="schema")
    model: ModelSchema
    input: InputInfo
    prediction: PredictionSchema


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
    arr: np.ndarray
    if t.encoding == "list":
        arr = np.asarray([np.nan if v is None else v for v in t.data], dtype=np.float32)
    elif not isinstance(t.data, str):
        raise ValueError("a base64 tensor's data must be a string")
    elif t.dtype == "uint8":
        if t.scale is None or t.zero_point is None:
            raise ValueError("a uint8 tensor needs scale and zero_point")
        q = np.frombuffer(base64.b64decode(t.data), dtype=np.uint8).astype(np.float64)
        q = q.reshape(len(t.scale), -1)  # one row per slice of the first axis
        # (q - zp) * scale in float64, then rounded once to float32: what the page computes too
        arr = (q - np.asarray(t.zero_point, np.float64)[:, None]) * np.asarray(t.scale, np.float64)[:, None]
    else:
        arr = np.frombuffer(base64.b64decode(t.data), dtype="<f4").copy()
    return arr.reshape(t.shape).astype(np.float32, copy=False)


def decode_layers(doc: ActivationsDoc | dict) -> dict[str, np.ndarray]:
    """Every stage's values of an activations document, derived stages recomputed, by stage name.

    Example:
        >>> import cnnlab as cl
        >>> acts = cl.explain.activations(cl.create_model("cnn2", seed=0), np.zeros((28, 28)))
        >>> values = decode_layers(acts.to_json())
        >>> values["relu1"].shape, bool((values["relu1"] >= 0).all())
        ((64, 26, 26), True)
    """
    if isinstance(doc, dict):
        doc = ActivationsDoc.model_validate(doc)
    out: dict[str, np.ndarray] = {}
    for layer in doc.layers:
        if layer.derived is not None:
            src = out[layer.derived.source].reshape(layer.shape)
            out[layer.name] = np.maximum(src, np.float32(0)) if layer.derived.op == "relu" else src.copy()
        elif layer.values is not None:
            out[layer.name] = decode_tensor(layer.values)
    return out


def stated_errors(doc: ActivationsDoc | dict) -> dict[str, float]:
    """The precision a document states for each stage: the largest |decoded - exact| (0: bit-exact); a
    derived stage has its source's (identity and ReLU add no error)."""
    if isinstance(doc, dict):
        doc = ActivationsDoc.model_validate(doc)
    out: dict[str, float] = {}
    for layer in doc.layers:
        if layer.derived is not None:
            out[layer.name] = out[layer.derived.source]
        elif layer.values is not None:
            out[layer.name] = layer.values.max_error
    return out


def stats_of(values: np.ndarray) -> Stats:
    finite = values[np.isfinite(values)] if values.size else values
    if finite.size == 0:
        return Stats(min=None, max=None, mean=None)
    return Stats(min=float(finite.min()), max=float(finite.max()), mean=float(finite.mean()))


def json_schema() -> dict:
    """The JSON Schema of the activations document (what `cnnlab explain --json` and /api/explain emit)."""
    return ActivationsDoc.model_json_schema(by_alias=True)
