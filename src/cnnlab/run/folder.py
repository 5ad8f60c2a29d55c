"""Run folders: everything a training run leaves behind, and loading it back.

    runs/<name>/
      config.json        the TrainConfig plus the model's input shape, classes and spec: enough to rebuild and repeat
      env.json           versions, device, threads, seed, determinism settings, processes, resumed from
      metrics.csv        one row per epoch
      results.json       final-set metrics, best epoch, train seconds
      model.safetensors  the weights (no pickle: loading runs no code)
      model.safetensors.sha256  their sha256 (``sha256sum`` format), checked on load
      plots/learning_curves.png
      checkpoints/       step-<N>/ folders written during training (see cnnlab.engine.checkpoint)
      splits.json        folder and CSV datasets: the file of every image in each split, and how they were split
      nonfinite_loss.json  only when the loss became NaN/inf: step, lr, batch indices
An existing run is never silently overwritten; `--resume auto` continues one from its checkpoints.
Every file is validated when loaded (`cnnlab.run.files`): a damaged config.json or weights file is one
`RunFileError` line; a damaged results.json or metrics.csv only loses what it held, with a note.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

import numpy
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from cnnlab.atomic import write_atomic, write_json
from cnnlab.data import BUILTIN_NAMES, LIGHT_ON_DARK, load_recorded
from cnnlab.engine.history import History
from cnnlab.errors import CnnlabError, NotFoundError, RunFileError
from cnnlab.models import create_model
from cnnlab.notebook import run_html
from cnnlab.plots import learning_curves
from cnnlab.run.config import run_config
from cnnlab.run.files import (
    CHECKSUM,
    WEIGHTS,
    checksum_line,
    read_config,
    read_history,
    read_results,
    read_safetensors_header,
    verify_weights,
)
from cnnlab.version import __version__

log = logging.getLogger("cnnlab.run.folder")


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


def environment(device: torch.device | str, seed: int) -> dict:
    dev = torch.device(device)
    env = {
        "cnnlab": __version__,
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
    data=None,
    config=None,
    env: dict | None = None,
    results: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a run folder (see the module docstring) that `load_run`, `cnnlab eval`, `predict`, `export`,
    `explain` and the web page can all use.

    Args:
        data: the `Dataset` the model was trained on. It fills in what finds the run's test images again
            (dataset name, split, seed, limit; size and channels of a folder dataset) and what rebuilds
            the model (input shape, class names). Without it, ``config`` must hold ``input_shape`` and
            ``classes``, and ``data``/``split``/``seed`` for `cnnlab eval` and `export` to find the test set.
        config: the model's name or layer spec, what `create_model` was given: a dict such as
            ``{"model": "cnn2"}`` (more keys are kept as they are), or the `TrainConfig` it was trained with.
        env: versions and device (default: this machine's, CPU). results: extra keys for results.json.

    A ``normalize`` stage in the model is recorded (its mean/std), so the rebuilt model has it too. The
    weights' sha256 goes to ``model.safetensors.sha256``, checked by ``load_run``.

    Raises:
        CnnlabError: no model name, no input shape or classes, or an output folder that holds files.

    Example:
        >>> history = cl.fit(model, data, epochs=5)  # doctest: +SKIP
        >>> cl.save_run("runs/cnn2", model, history, data=data, config={"model": "cnn2"})  # doctest: +SKIP
    """
    p = ensure_new_run_dir(path, overwrite=overwrite)
    config = run_config(model, config, data)
    p.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # one metadata key: safetensors writes a map's keys in no fixed order, and a run's weights should be
    # byte-identical when its tensors are (the model is named in config.json)
    weights = save(state, metadata={"format": "cnnlab"})
    write_atomic(p / WEIGHTS, weights)
    write_atomic(p / CHECKSUM, checksum_line(hashlib.sha256(weights).hexdigest()))
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
        learning_curves({str(config["model"]): history}, p / "plots" / "learning_curves.png")
    return p


@dataclass
class Run:
    path: Path
    model: nn.Module
    config: dict
    history: History
    results: dict
    verified: bool | None = None  # the weights matched their recorded sha256; None: none was recorded
    notes: list[str] = field(default_factory=list)  # what was damaged or unchecked, but not fatal

    def _repr_html_(self) -> str:
        """In Jupyter: settings, final-set results and learning curves."""
        return run_html(self)

    @property
    def classes(self) -> list[str]:
        return list(self.config["classes"])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.config["input_shape"])

    def load_dataset(self, *, data_dir: str | os.PathLike | None = None, download: bool = False):
        """The dataset this run trained on, cut and decoded as it was (see ``cnnlab.data.load_recorded``)."""
        return load_recorded(self.config, data_dir=data_dir, download=download)

    @property
    def image_options(self) -> dict:
        """How an image file becomes this model's input; predict, explain and the page all use these.

        ``resize``: the run's mode (pad, crop or stretch, as its folder dataset was decoded). ``fill``: the
        padding, black where training padded images (folders) and the image's own border colour for
        built-in datasets, whose images were never padded. ``light_on_dark``: the training images show
        light objects on black (Fashion-MNIST, MNIST), so ``invert="auto"`` may invert a dark-on-light photo.
        """
        data = self.config.get("data")
        return {
            "resize": self.config.get("resize") or "pad",
            "fill": "border" if data in BUILTIN_NAMES else "black",
            "light_on_dark": data in LIGHT_ON_DARK,
        }


def load_run(path: str | os.PathLike, *, device: str | torch.device = "cpu", verify: bool = True) -> Run:
    """Load a run folder: rebuild the model from ``config.json`` and load its safetensors weights.

    Every file is validated first (`cnnlab.run.files`): config.json against the run schema, the weights
    against their recorded sha256 (unless ``verify=False``, for weights changed on purpose). A run with
    no recorded sha256 (older cnnlab, made by hand) loads with ``verified=None`` and a note. A damaged
    results.json or metrics.csv is left out with a note (``run.notes``, also logged as warnings).

    Raises:
        NotFoundError: the folder does not exist.
        RunFileError: a file is missing, damaged, or config.json and the weights disagree.

    Example:
        >>> run = cl.load_run("runs/cnn2")  # doctest: +SKIP
        >>> run.model, run.classes
    """
    p = Path(path)
    if not p.is_dir():
        raise NotFoundError(f"Run folder {p} does not exist")
    weights = p / WEIGHTS
    for f in (p / "config.json", weights):
        if not f.exists():
            raise RunFileError(f"{p} is not a cnnlab run: {f.name} is missing")
    config = read_config(p)
    notes = []
    verified = verify_weights(p) if verify else None
    if verify and verified is None:
        notes.append(
            f"{weights} has no recorded sha256 (a run from an older cnnlab or made by hand): loaded "
            f"unverified; record one with `sha256sum {WEIGHTS} > {CHECKSUM}` in the run folder"
        )
    model = _model_for(config, weights, device)
    results, more = read_results(p)
    history, most = read_history(p, best_epoch=results.get("best_epoch"))
    notes += more + most
    for note in notes:
        log.warning("cnnlab: note: %s", note)
    # explanations then name the classes untold (torch's stub types Module attributes as Tensor | Module)
    model.classes = list(config["classes"])  # type: ignore[assignment]
    return Run(p, model, config, history, results, verified=verified, notes=notes)


def _model_for(config: dict, weights: Path, device) -> nn.Module:
    """The model config.json describes, holding the weights file's tensors. The weights' names and shapes
    (read from the safetensors header, capped in size and entries) are compared with the model's, built
    first on the meta device (shapes only, no memory), before the model is built for real or any tensor
    data is read: a config describing a model larger than the weights file can hold costs nothing."""
    stored = read_safetensors_header(weights)
    with torch.device("meta"):  # shapes only
        planned = {k: tuple(v.shape) for k, v in _build(config, weights).state_dict().items()}
    missing, unexpected = sorted(set(planned) - set(stored)), sorted(set(stored) - set(planned))
    if missing or unexpected:
        raise RunFileError(
            f"{weights} does not match model {config['model']!r} (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for k, shape in planned.items():
        if stored[k] != shape:  # same names, other shapes: config.json and the weights disagree
            raise RunFileError(
                f"{weights} does not match the model config.json describes ({k}: {list(stored[k])} in "
                f"the weights, {list(shape)} in the model)"
            )
    model = _build(config, weights)
    try:
        model.load_state_dict(load_file(weights, device=str(device)))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise RunFileError(f"{weights} is not a readable safetensors file: {first}") from None
    return model.to(device).eval()


def _build(config: dict, weights: Path) -> nn.Module:
    try:
        return create_model(
            config["model"],
            input_shape=tuple(config["input_shape"]),
            num_classes=len(config["classes"]),
            mean=config.get("mean"),  # the normalize stage, when the run was trained with one
            std=config.get("std"),
        )
    except (CnnlabError, ValueError, RuntimeError, NotImplementedError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunFileError(
            f"{weights.parent / 'config.json'} describes no model cnnlab can build: {first}"
        ) from None
