"""The images a run was tested on: its dataset's final (official test) split, rebuilt from config.json."""

from __future__ import annotations

import os

from cnnlab.errors import CnnlabError

IMAGE_OPTIONS = ("image_size", "channels", "resize", "bad_images")  # how training turned files into tensors


def run_test_split(config: dict, *, data_dir: str | os.PathLike | None = None, download: bool = False):
    """The test split of the dataset a run was trained on (same name, split protocol, seed, limit and image
    options: a folder run's test images are decoded at the size, channels and resize mode it trained on).

    The data folder is ``data_dir``, else the one recorded in the run (when it still exists), else
    ``$CNNLAB_DATA_DIR`` / the user cache (see `cnnlab.load_data`); nothing is downloaded unless
    ``download``.

    Returns:
        ``(split, classes)``: the split (``.images`` uint8 (N, C, H, W), ``.labels``) and class names.
    """
    from cnnlab.data import load_data

    if "data" not in config:
        raise CnnlabError("the run's config.json does not name its dataset")
    recorded = config.get("data_dir")
    folder = data_dir or (recorded if recorded and os.path.isdir(recorded) else None)
    data = load_data(
        config["data"],
        split=config.get("split", "default"),
        seed=config.get("seed", 0),
        data_dir=folder,
        limit=config.get("limit"),
        download=download,
        **{k: config[k] for k in IMAGE_OPTIONS if config.get(k) is not None},
    )
    return data.test, list(data.classes)
