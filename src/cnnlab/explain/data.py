"""The images a run was tested on: its dataset's final (official test) split, rebuilt from config.json,
and for folder and CSV runs the files that split held when the run was tested (splits.json)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cnnlab.data import load_recorded
from cnnlab.data.load import IMAGE_OPTIONS  # noqa: F401  (the web's test-set cache keys on them)
from cnnlab.errors import RunFileError
from cnnlab.userfiles import UserFileNotFound, read_user_bytes

SPLITS_FILE = "splits.json"
SPLITS_MAX_BYTES = 256 << 20  # ~50 bytes per file name: millions of images


def run_test_split(config: dict, *, data_dir: str | os.PathLike | None = None, download: bool = False):
    """The test split of the dataset a run was trained on (same name, split protocol, seed, limit and image
    options: a folder run's test images are decoded at the size, channels and resize mode it trained on).

    The data folder is ``data_dir``, else the one recorded in the run (when it still exists), else
    ``$CNNLAB_DATA_DIR`` / the user cache (see `cnnlab.load_data`); nothing is downloaded unless
    ``download``.

    Returns:
        ``(split, classes)``: the split (``.images`` uint8 (N, C, H, W), ``.labels``) and class names.
    """
    data = load_recorded(config, data_dir=data_dir, download=download)
    return data.test, list(data.classes)


class Splits(BaseModel):
    """The part of a run's splits.json a report reads; the rest passes unchecked."""

    model_config = ConfigDict(strict=True, extra="allow")
    test: list[str] = Field(max_length=50_000_000)


def recorded_test_files(run_folder: str | os.PathLike) -> list[str] | None:
    """The test split's files, in split order, as the run recorded them in splits.json (paths relative
    to the dataset folder); None for a run without one (built-in datasets). A damaged file is a
    `RunFileError`."""
    path = Path(run_folder) / SPLITS_FILE
    try:
        data = read_user_bytes(path, max_bytes=SPLITS_MAX_BYTES, what="splits file")
    except UserFileNotFound:
        return None
    try:
        return Splits.model_validate(json.loads(data)).test
    except (ValueError, RecursionError, ValidationError) as exc:
        why = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)[:200]
        raise RunFileError(f"{path} is damaged ({why}); delete it to report without file names") from None
