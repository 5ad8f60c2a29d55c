"""Response models of the web-only endpoints (the activations format itself is `cnnlab.explain.schema`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from cnnlab.explain.schema import SCHEMA_VERSION, Stats, TensorData


class ErrorDoc(BaseModel):
    error: str = Field(description="one line saying what was wrong and what would have worked")
    status: int


class LayerBrief(BaseModel):
    name: str | None
    kind: str | None
    shape: list[int] | None


class ModelEntry(BaseModel):
    id: str = Field(
        description="the run folder relative to RUNS_DIR: what the other endpoints take as `model`"
    )
    name: str
    data: str
    input_shape: list[int]
    classes: list[str]
    params: int | None = None
    test_accuracy: float | None = None
    error_pct: float | None = None
    layers: list[LayerBrief] = []


class UnavailableEntry(BaseModel):
    id: str = Field(description="the run folder relative to RUNS_DIR")
    error: str = Field(description="why it cannot be used (what the endpoints answer with 409)")


class ModelsDoc(BaseModel):
    schema_version: str = SCHEMA_VERSION
    runs_dir: str
    models: list[ModelEntry]
    unavailable: list[UnavailableEntry] = Field(
        default_factory=list, description="runs whose files are damaged, with the reason"
    )


class KernelEntry(BaseModel):
    name: str
    description: str
    source: str
    matrix: list[list[float]]


class KernelsDoc(BaseModel):
    kernels: list[KernelEntry]
    max_size: int


class WeightsDoc(BaseModel):
    model: str
    layer: str
    kind: str
    params: dict[str, Any]
    channel: int | None = Field(None, description="the output channel asked for; None: all of them")
    weight: TensorData = Field(description="conv: (Cout, Cin, kh, kw), or (Cin, kh, kw) for one channel")
    bias: TensorData | None = None


class FilterDoc(BaseModel):
    kernel: list[list[float]]
    kernel_name: str | None
    op: str
    boundary: str
    mode: str
    stride: int
    downsample: int = Field(
        description="every n-th pixel kept before filtering (the tutorial's img[::n, ::n])"
    )
    input: TensorData | None = Field(None, description="the grayscale image that was filtered (H, W)")
    output: TensorData = Field(description="the feature map (Ho, Wo)")
    stats: Stats
    seconds: float


class HealthDoc(BaseModel):
    status: str
    models: int | None = None
