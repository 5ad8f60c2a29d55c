"""The files of a run folder, checked against one schema when they are read (`cnnlab.run.folder.load_run` and
the web server's run scan both come here).

- ``config.json`` (required): at most `CONFIG_MAX_BYTES`, JSON nested at most `MAX_DEPTH` deep, and the
  keys a run is rebuilt from typed and in range (`RunConfig`): ``model``, ``input_shape``, ``classes``,
  ``mean``/``std`` (finite, one per channel, std > 0) and the dataset keys the test set is found by.
  Other keys (the training settings, notes of older versions) are kept as they are. Anything wrong is
  one `RunFileError` line naming the file and the key.
- ``results.json`` and ``metrics.csv`` (optional): read tolerantly. A damaged one, or a damaged key in
  one, is dropped with a note: it never stops the model from loading.
- ``model.safetensors.sha256`` (`CHECKSUM`): the weights' sha256, written by `cnnlab.run.folder.save_run`, in
  ``sha256sum`` format (``sha256sum -c model.safetensors.sha256`` checks it too). A file of its own,
  not a key in config.json or results.json: those are the files people edit by hand (rename a class,
  fix a note), and an edit there must not make the weights look corrupt, nor a rewrite of them drop the
  hash. A run without it (older cnnlab, made by hand) loads as "not verified", with a note.

Every read is bounded: regular files only (after symlinks), refused when larger than the cap, read with
no more than cap + 1 bytes. (This is a local helper until the shared user-file opener lands.)
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cnnlab.engine.history import History
from cnnlab.errors import RunFileError
from cnnlab.tensorfiles import TensorFileError, read_header
from cnnlab.userfiles import (
    UserFileError,
    UserFileNotFound,
    check_user_file,
    is_text,
    read_user_bytes,
)

WEIGHTS = "model.safetensors"
CHECKSUM = WEIGHTS + ".sha256"
CONFIG_MAX_BYTES = 1 << 20
RESULTS_MAX_BYTES = 1 << 20
MAX_SUMMARY_LAYERS = 1000  # rows of results.json's summary a reader takes (a model has tens of stages)
METRICS_MAX_BYTES = 16 << 20
WEIGHTS_MAX_BYTES = 16 << 30
MAX_DEPTH = 32
_SHA_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *]model\.safetensors\s*$")


# ---- bounded reading -------------------------------------------------------------------------------------


def check_regular(path: Path, *, max_bytes: int) -> int:
    """The size of ``path`` if it is a regular file (after symlinks) of at most ``max_bytes``."""
    try:
        size = check_user_file(path, what=path.name).st_size
    except UserFileNotFound:
        raise RunFileError(f"{path} is missing") from None
    except UserFileError as exc:
        raise RunFileError(f"{path}: {exc.reason}") from None
    if size > max_bytes:
        raise RunFileError(f"{path} is {size:,} bytes, over the {max_bytes:,}-byte limit")
    return size


def read_bounded(path: Path, *, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (never blocks on a FIFO, never reads more)."""
    check_regular(path, max_bytes=max_bytes)
    try:
        return read_user_bytes(path, max_bytes=max_bytes, what=path.name)
    except UserFileError as exc:  # swapped or grown since the check
        raise RunFileError(f"{path}: {exc.reason}") from None


def _depth(value) -> int:
    """How deeply ``value`` nests lists and dicts (iteratively: no recursion to exhaust)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (list, dict)):
            deepest = max(deepest, d)
            if d > MAX_DEPTH:
                return d
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def read_json(path: Path, *, max_bytes: int):
    """A JSON document of at most ``max_bytes``, nested at most `MAX_DEPTH` deep, or `RunFileError`."""
    data = read_bounded(path, max_bytes=max_bytes)
    try:
        value = json.loads(data)
    except RecursionError:
        raise RunFileError(f"{path} is nested too deeply (at most {MAX_DEPTH} levels)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunFileError(f"{path} is not valid JSON: {exc}") from None
    if _depth(value) > MAX_DEPTH:
        raise RunFileError(f"{path} is nested too deeply (at most {MAX_DEPTH} levels)")
    return value


# ---- config.json ---------------------------------------------------------------------------------------


class RunConfig(BaseModel):
    """The keys of config.json a run is rebuilt from; other keys pass through unchecked."""

    model_config = ConfigDict(strict=True, extra="allow")

    model: str = Field(min_length=1, max_length=10_000, description="a registered model or a layer spec")
    input_shape: list[int] = Field(min_length=3, max_length=3, description="[channels, height, width]")
    classes: list[str] = Field(min_length=1, max_length=100_000)
    num_classes: int | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    data: str | None = Field(None, max_length=10_000)
    split: str | None = Field(None, max_length=100)
    seed: int | None = None
    limit: int | None = Field(None, ge=1)
    data_dir: str | None = Field(None, max_length=10_000)
    image_size: int | None = Field(None, ge=1, le=16384)
    channels: int | None = Field(None, ge=1, le=4)
    resize: Literal["pad", "crop", "stretch"] | None = None
    bad_images: str | None = Field(None, max_length=100)
    params: int | None = Field(None, ge=0)
    spec: str | None = Field(None, max_length=10_000)

    @field_validator("input_shape")
    @classmethod
    def _shape(cls, v: list[int]) -> list[int]:
        c, h, w = v
        if not (1 <= c <= 4096 and 1 <= h <= 16384 and 1 <= w <= 16384):
            raise ValueError(f"must be [channels 1..4096, height 1..16384, width 1..16384], got {v}")
        return v

    @field_validator("classes")
    @classmethod
    def _classes(cls, v: list[str]) -> list[str]:
        if any(len(c) > 1000 for c in v):
            raise ValueError("class names are at most 1,000 characters")
        bad = next((c for c in v if not is_text(c)), None)
        if bad is not None:  # a folder name in bytes that are not UTF-8 (older cnnlab trained on it)
            raise ValueError(
                f"class names must be UTF-8 text; {ascii(bad)[:80]} is not UTF-8 (rename it here)"
            )
        return v

    @field_validator("mean", "std")
    @classmethod
    def _finite(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and not all(math.isfinite(x) for x in v):
            raise ValueError(f"must be finite numbers, got {v[:8]}")
        return v

    @model_validator(mode="after")
    def _agree(self) -> RunConfig:
        channels = self.input_shape[0]
        _, height, width = self.input_shape
        if self.channels is not None and self.channels != channels:  # the test images would not fit
            raise ValueError(f"channels is {self.channels} but input_shape is {self.input_shape}")
        if self.image_size is not None and not self.image_size == height == width:
            raise ValueError(f"image_size is {self.image_size} but input_shape is {self.input_shape}")
        if self.num_classes is not None and self.num_classes != len(self.classes):
            raise ValueError(f"num_classes is {self.num_classes} but {len(self.classes)} classes are named")
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std go together: give both or neither")
        if self.mean is not None and self.std is not None:
            if len(self.mean) != channels or len(self.std) != channels:
                raise ValueError(f"mean and std need one value per channel ({channels})")
            if any(s <= 0 for s in self.std):
                raise ValueError(f"std must be > 0 for every channel, got {self.std}")
        return self


def problem(exc: ValidationError) -> str:
    """pydantic's first error as ``key: what is wrong (got ...)``."""
    e = exc.errors()[0]
    loc = ".".join(str(x) for x in e.get("loc", ()))
    msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
    got = "" if e.get("type") in ("value_error", "missing") else f" (got {e.get('input')!r:.60})"
    return f"{loc + ': ' if loc else ''}{msg}{got}"


def read_config(folder: Path) -> dict:
    """The run's config.json, validated (see `RunConfig`); raises `RunFileError` in one line."""
    path = folder / "config.json"
    raw = read_json(path, max_bytes=CONFIG_MAX_BYTES)
    lacking = [k for k in ("model", "input_shape", "classes") if not isinstance(raw, dict) or k not in raw]
    if lacking:
        raise RunFileError(f"{path} lacks {', '.join(lacking)}: not a cnnlab run's config")
    try:
        RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise RunFileError(f"{path} is not a valid cnnlab run config: {problem(exc)}") from None
    return raw


# ---- results.json and metrics.csv (optional, tolerant) -------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class _Layer(_Strict):
    name: str | None = None
    kind: str | None = None
    output_shape: list[int] | None = None


class _Summary(_Strict):
    layers: list[_Layer] = Field(default_factory=list, max_length=MAX_SUMMARY_LAYERS)


class _Test(_Strict):
    accuracy: float | None = None
    error_pct: float | None = None
    loss: float | None = None


class ResultsFile(_Strict):
    """The keys of results.json that cnnlab reads back."""

    best_epoch: int | None = Field(None, ge=0)
    stopped_early: bool | None = None
    epochs_run: int | None = Field(None, ge=0)
    train_seconds: float | None = None
    params: int | None = Field(None, ge=0)
    test: _Test | None = None
    summary: _Summary | None = None


def read_results(folder: Path) -> tuple[dict, list[str]]:
    """results.json with every key that fails `ResultsFile` dropped: (what is left, notes on what was
    dropped). A missing file is ``{}`` with no note; an unreadable one ``{}`` with a note."""
    path = folder / "results.json"
    if not path.exists():
        return {}, []
    try:
        raw = read_json(path, max_bytes=RESULTS_MAX_BYTES)
    except RunFileError as exc:
        return {}, [f"{exc}; its results are not shown"]
    if not isinstance(raw, dict):
        return {}, [f"{path} is not a JSON object; its results are not shown"]
    notes = []
    for _ in range(len(ResultsFile.model_fields) + 1):  # each round drops at least one key
        try:
            ResultsFile.model_validate(raw)
            break
        except ValidationError as exc:
            bad = {e["loc"][0] for e in exc.errors() if e.get("loc")}
            notes.append(f"{path}: ignoring {', '.join(sorted(map(str, bad)))} ({problem(exc)})")
            raw = {k: v for k, v in raw.items() if k not in bad}
    return raw, notes


def read_history(folder: Path, *, best_epoch: int | None) -> tuple[History, list[str]]:
    """metrics.csv as a `History` (empty, with a note, when the file is damaged)."""
    path = folder / "metrics.csv"
    if not path.exists():
        return History(best_epoch=best_epoch), []
    try:
        text = read_bounded(path, max_bytes=METRICS_MAX_BYTES).decode("utf-8")
        return History.from_csv(text, best_epoch=best_epoch), []
    except (RunFileError, UnicodeDecodeError, ValueError, TypeError, KeyError, csv.Error) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return History(best_epoch=best_epoch), [
            f"{path} is damaged ({why[:120]}); the run's history is not shown"
        ]


# ---- safetensors headers -------------------------------------------------------------------------------


def read_safetensors_header(path: Path, *, max_bytes: int = WEIGHTS_MAX_BYTES) -> dict[str, tuple[int, ...]]:
    """The tensors' shapes in the safetensors file at ``path`` (a regular file of at most ``max_bytes``),
    from its header alone, capped and checked (`cnnlab.tensorfiles`); `RunFileError` otherwise."""
    check_regular(path, max_bytes=max_bytes)
    try:
        return read_header(path, max_bytes=max_bytes)
    except UserFileError as exc:
        raise RunFileError(f"{path}: {exc.reason}") from None
    except TensorFileError as exc:
        raise RunFileError(f"{path} is not a readable safetensors file: {exc}") from None


# ---- the weights' checksum ---------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def checksum_line(digest: str) -> str:
    """The `CHECKSUM` file's content, as ``sha256sum`` writes it."""
    return f"{digest}  {WEIGHTS}\n"


def recorded_checksum(folder: Path) -> str | None:
    """The sha256 recorded for the weights, or None when the run has no `CHECKSUM` file."""
    path = folder / CHECKSUM
    if not os.path.lexists(path):
        return None
    text = read_bounded(path, max_bytes=4096).decode("utf-8", "replace").strip()
    m = _SHA_LINE.match(text)
    if not m:
        raise RunFileError(
            f"{path} is damaged (expected one line '<sha256>  {WEIGHTS}'); delete it to load the run "
            "unverified"
        )
    return m.group(1).lower()


def verify_weights(folder: Path) -> bool | None:
    """Check the weights against their recorded sha256: True when they match, None when none is recorded;
    a mismatch is a `RunFileError`."""
    recorded = recorded_checksum(folder)
    if recorded is None:
        return None
    weights = folder / WEIGHTS
    check_regular(weights, max_bytes=WEIGHTS_MAX_BYTES)
    if sha256_file(weights) != recorded:
        raise RunFileError(
            f"{weights} does not match its recorded sha256 ({CHECKSUM}): the file is damaged or was "
            "changed after training; restore or retrain it, or load with verify=False if you changed it "
            "on purpose"
        )
    return True
