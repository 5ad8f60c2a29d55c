"""The images a run was tested on: its dataset's final (official test) split, rebuilt from config.json."""

from __future__ import annotations

import os

from cnnlab.data.load import IMAGE_OPTIONS  # noqa: F401  (the web's test-set cache keys on them)


def run_test_split(config: dict, *, data_dir: str | os.PathLike | None = None, download: bool = False):
    """The test split of the dataset a run was trained on (same name, split protocol, seed, limit and image
    options: a folder run's test images are decoded at the size, channels and resize mode it trained on).

    The data folder is ``data_dir``, else the one recorded in the run (when it still exists), else
    ``$CNNLAB_DATA_DIR`` / the user cache (see `cnnlab.load_data`); nothing is downloaded unless
    ``download``.

    Returns:
        ``(split, classes)``: the split (``.images`` uint8 (N, C, H, W), ``.labels``) and class names.
    """
    from cnnlab.data import load_recorded

    data = load_recorded(config, data_dir=data_dir, download=download)
    return data.test, list(data.classes)
