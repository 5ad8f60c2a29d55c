"""config.json, built in one place: what rebuilds a run's model (name or spec, input shape, classes, the
normalize stage's mean/std) and repeats it (the training options, where its data are). ``run_config``
completes what ``save_run`` is given; ``trained_run_config`` is what ``cnnlab train`` gives it."""

from __future__ import annotations

import os
import warnings

from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models.normalize import Normalize

PREPROCESSING = "pixels / 255 (0..1), shape (N, C, H, W); mean/std applied by the model's normalize stage"


def trained_run_config(config, model: nn.Module, data, *, data_dir, spec: str | None, params: int) -> dict:
    """config.json of a run ``cnnlab train`` made: its ``TrainConfig`` as given (it names the data as the
    user did), what rebuilds the model, the dataset in words, and the data folder it read."""
    mean, std = normalization_of(model)
    return {
        **config.to_dict(),
        "input_shape": list(data.input_shape),
        "classes": list(data.classes),
        "num_classes": data.num_classes,
        "spec": spec,
        "params": params,
        "dataset": data.describe(),
        "data_dir": str(data_dir or os.environ.get("CNNLAB_DATA_DIR") or "") or None,
        "mean": mean,
        "std": std,
        "preprocessing": PREPROCESSING,
    }


def normalization_of(model: nn.Module) -> tuple[list[float] | None, list[float] | None]:
    """The (mean, std) of the model's ``normalize`` stage, or (None, None) when it has none."""
    norm = next((m for m in model.modules() if isinstance(m, Normalize)), None)
    if norm is None:
        return None, None
    return norm.mean.flatten().tolist(), norm.std.flatten().tolist()


def run_config(model: nn.Module, config=None, data=None) -> dict:
    """config.json of `save_run`: ``config`` (a dict or a `TrainConfig`) completed from the dataset and
    the model, checked for what rebuilding the model and finding its test set need."""
    cfg = dict(config.to_dict() if hasattr(config, "to_dict") else (config or {}))
    if data is not None:  # the dataset trained on is the truth about where the test images are
        c, h, w = data.input_shape
        cfg.update(data=data.name, split=data.split, seed=data.seed, limit=data.limit)
        cfg.update(input_shape=[c, h, w], classes=list(data.classes), num_classes=data.num_classes)
        cfg.setdefault("dataset", data.describe())
        if data.split_files() is not None:  # a folder or CSV: decode its test images as they trained
            cfg["image_size"] = cfg.get("image_size") or h
            cfg["channels"] = cfg.get("channels") or c
        elif cfg.get("data_dir") is None and os.environ.get("CNNLAB_DATA_DIR"):
            cfg["data_dir"] = os.environ["CNNLAB_DATA_DIR"]
    if cfg.get("mean") is None:
        cfg["mean"], cfg["std"] = normalization_of(model)
    if not cfg.get("model"):
        raise CnnlabError(
            "save_run needs the model's name or layer spec, as create_model was given it: "
            "config={'model': 'cnn2'} (or the TrainConfig it was trained with)"
        )
    missing = [k for k in ("input_shape", "classes") if k not in cfg]
    if missing:
        raise CnnlabError(
            f"save_run needs the model's {' and '.join(missing)}: pass data= (the Dataset it was trained "
            "on), or give them in config"
        )
    if cfg.get("data") is None:
        warnings.warn(
            "save_run: no dataset recorded (pass data=, the Dataset the model was trained on); "
            "`cnnlab eval` and the export's parity check will not find this run's test images",
            stacklevel=3,
        )
    return cfg
