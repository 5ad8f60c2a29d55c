"""Run folders: everything a training run leaves behind, and loading it back.

    runs/<name>/
      config.json        the TrainConfig plus the model's input shape, classes and spec: enough to rebuild and repeat
      env.json           versions, device, threads, seed, determinism settings, processes, resumed from
      metrics.csv        one row per epoch
      results.json       final-set metrics, best epoch, train seconds
      model.safetensors  the weights (no pickle: loading runs no code)
      plots/learning_curves.png
      checkpoints/       step-<N>/ folders written during training (see cnnlab.engine.checkpoint)
      nonfinite_loss.json  only when the loss became NaN/inf: step, lr, batch indices
An existing run is never silently overwritten; `--resume auto` continues one from its checkpoints.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cnnlab.atomic import atomic_path, write_atomic
from cnnlab.engine.history import History
from cnnlab.errors import CnnlabError

WEIGHTS = "model.safetensors"


def ensure_new_run_dir(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Check (before any work) that ``path`` can take a new run."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CnnlabError(f"Output path {p} exists and is not a folder")
    if p.is_dir() and any(p.iterdir()) and not overwrite:
        raise CnnlabError(
            f"Output folder {p} already holds files (a run?); choose another --out or pass --overwrite"
        )
    return p


def write_json(path: Path, obj) -> None:
    write_atomic(path, json.dumps(obj, indent=2, default=str) + "\n")


def environment(device: torch.device | str, seed: int) -> dict:
    import numpy

    import cnnlab

    dev = torch.device(device)
    env = {
        "cnnlab": cnnlab.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "processor": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(dev),
        "seed": seed,
    }
    if dev.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(dev)
        env["cuda"] = torch.version.cuda
    return env


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def save_run(
    path: str | os.PathLike,
    model: nn.Module,
    history: History,
    *,
    config: dict,
    env: dict | None = None,
    results: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a run folder (see the module docstring). ``config`` must hold what ``load_run`` needs to
    rebuild the model: ``model``, ``input_shape``, ``classes``.

    Example:
        >>> cl.save_run("runs/cnn2", model, history, config={...})  # doctest: +SKIP
    """
    from safetensors.torch import save_file

    p = ensure_new_run_dir(path, overwrite=overwrite)
    for key in ("model", "input_shape", "classes"):
        if key not in config:
            raise ValueError(f"config needs {key!r} to rebuild the model")
    p.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(p / WEIGHTS) as tmp:
        # one metadata key: safetensors writes a map's keys in no fixed order, and a run's weights should be
        # byte-identical when its tensors are (the model is named in config.json)
        save_file(state, str(tmp), metadata={"format": "cnnlab"})
    write_json(p / "config.json", config)
    write_json(p / "env.json", env or environment("cpu", config.get("seed", 0)))
    write_atomic(p / "metrics.csv", history.to_csv())
    write_json(
        p / "results.json",
        {
            "best_epoch": history.best_epoch,
            "stopped_early": history.stopped_early,
            "epochs_run": history.epochs,
            "train_seconds": history.total_seconds,
            **(results or {}),
        },
    )
    if len(history):
        from cnnlab.plots import learning_curves

        learning_curves({str(config["model"]): history}, p / "plots" / "learning_curves.png")
    return p


@dataclass
class Run:
    path: Path
    model: nn.Module
    config: dict
    history: History
    results: dict

    @property
    def classes(self) -> list[str]:
        return list(self.config["classes"])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.config["input_shape"])

    @property
    def image_options(self) -> dict:
        """How an image file becomes this model's input; predict, explain and the page all use these.

        ``resize``: the run's mode (pad, crop or stretch, as its folder dataset was decoded). ``fill``: the
        padding, black where training padded images (folders) and the image's own border colour for
        built-in datasets, whose images were never padded. ``light_on_dark``: the training images show
        light objects on black (Fashion-MNIST, MNIST), so ``invert="auto"`` may invert a dark-on-light photo.
        """
        from cnnlab.data import BUILTIN_NAMES, LIGHT_ON_DARK

        data = self.config.get("data")
        return {
            "resize": self.config.get("resize") or "pad",
            "fill": "border" if data in BUILTIN_NAMES else "black",
            "light_on_dark": data in LIGHT_ON_DARK,
        }


def load_run(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> Run:
    """Load a run folder: rebuild the model from ``config.json`` and load its safetensors weights.

    Example:
        >>> run = cl.load_run("runs/cnn2")  # doctest: +SKIP
        >>> run.model, run.classes
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from cnnlab.models import create_model

    p = Path(path)
    if not p.is_dir():
        raise CnnlabError(f"Run folder {p} does not exist")
    cfg_path, weights = p / "config.json", p / WEIGHTS
    for f in (cfg_path, weights):
        if not f.is_file():
            raise CnnlabError(f"{p} is not a cnnlab run: {f.name} is missing")
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CnnlabError(f"{cfg_path} is not valid JSON: {exc}") from None
    lacking = [
        k for k in ("model", "input_shape", "classes") if not isinstance(config, dict) or k not in config
    ]
    if lacking:
        raise CnnlabError(f"{cfg_path} lacks {', '.join(lacking)}: not a cnnlab run's config")
    model = create_model(
        config["model"],
        input_shape=tuple(config["input_shape"]),
        num_classes=len(config["classes"]),
        mean=config.get("mean"),  # the normalize stage, when the run was trained with one
        std=config.get("std"),
    )
    try:
        state = load_file(weights, device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CnnlabError(f"{weights} is not a readable safetensors file: {exc}") from None
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # same names, other shapes: config.json and the weights disagree
        first = str(exc).strip().splitlines()[-1].strip()
        raise CnnlabError(f"{weights} does not match the model config.json describes ({first})") from None
    if missing or unexpected:
        raise CnnlabError(
            f"{weights} does not match model {config['model']!r} (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    model.to(device).eval()
    metrics = p / "metrics.csv"
    results = json.loads((p / "results.json").read_text()) if (p / "results.json").is_file() else {}
    history = (
        History.from_csv(metrics.read_text(), best_epoch=results.get("best_epoch"))
        if metrics.is_file()
        else History()
    )
    return Run(p, model, config, history, results)
