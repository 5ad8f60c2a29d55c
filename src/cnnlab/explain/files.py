"""Explain reports as files: one folder per image (activations, kernels, Grad-CAM, saliency, JSON) and
one for the dataset (confusion matrix, most-confused pairs, most confidently wrong, per-class CSV)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from cnnlab.atomic import write_atomic
from cnnlab.explain import figures
from cnnlab.explain.heatmaps import Heatmap, gradcam_and_saliency
from cnnlab.explain.inputs import PreparedInput
from cnnlab.explain.reports import DatasetReport, dataset_report
from cnnlab.explain.stages import named_stages
from cnnlab.explain.stagewise import Activations, activations


def safe_name(name: str) -> str:
    return re.sub(r"[^\w\-.]+", "_", name).strip("._") or "image"


@dataclass
class ImageReport:
    folder: Path
    acts: Activations
    gradcam: Heatmap | None
    saliency: Heatmap
    files: list[Path] = field(default_factory=list)


def image_report(
    model: nn.Module,
    image: PreparedInput,
    out: str | os.PathLike,
    *,
    classes: Sequence[str],
    layer: str | None = None,
    top_k: int = 5,
    model_name: str = "model",
) -> ImageReport:
    """Write everything about one image to ``out``: ``prediction.json`` (the activations schema, values
    included), ``topk.png``, ``overview.png``, ``stages/NN_<stage>.png``, ``kernels_<conv>.png``,
    ``gradcam_<layer>.png`` and ``saliency.png``."""
    folder = Path(out)
    acts = activations(model, image, classes=classes, model_name=model_name)
    # one forward + backward for both; no conv layer (an MLP): no Grad-CAM, the rest of the report
    # still stands; a named layer that cannot be used is an error
    cam, sal = gradcam_and_saliency(model, image, layer=layer, classes=classes)
    files = []
    doc = acts.to_json(top_k=top_k, gradcam=cam, saliency=sal, precision="exact")  # files: every digit
    files.append(folder / "prediction.json")
    write_atomic(files[-1], json.dumps(doc) + "\n")
    files.append(figures.save(figures.topk_figure(acts.prediction, top_k), folder / "topk.png"))
    files.append(figures.save(figures.overview(acts), folder / "overview.png"))
    for i, stage in enumerate(acts.layers):
        path = folder / "stages" / f"{i:02d}_{safe_name(stage.name)}.png"
        files.append(figures.save(figures.stage_grid(stage), path))
    for name, module in named_stages(model):
        if isinstance(module, nn.Conv2d):  # stage_kind "conv"
            w = module.weight.detach().cpu().float().numpy()
            files.append(
                figures.save(figures.kernels_figure(w, name), folder / f"kernels_{safe_name(name)}.png")
            )
    img = acts.layers[0].values
    if cam is not None:
        path = folder / f"gradcam_{safe_name(cam.layer or '')}.png"  # a Grad-CAM always has a layer
        files.append(figures.save(figures.overlay(img, cam), path))
    assert sal is not None  # saliency needs no layer: always computed here
    files.append(figures.save(figures.overlay(img, sal), folder / "saliency.png"))
    return ImageReport(folder, acts, cam, sal, files)


def write_dataset_report(
    model: nn.Module,
    split,
    out: str | os.PathLike,
    *,
    classes: Sequence[str],
    n_wrong: int = 16,
    recorded_files: Sequence[str] | None = None,
) -> tuple[DatasetReport, list[Path]]:
    """Write ``confusion_matrix.png``, ``confusion_matrix.csv`` (counts), ``confusion_matrix_normalized.csv``,
    ``per_class.csv`` (precision, recall, F1, support), ``most_confused.csv``, ``confidently_wrong.csv``
    and ``.png`` (by index in the split and, for folder and CSV datasets, by file) and ``report.json`` to
    ``out``. ``recorded_files``: the run's splits.json test files (see `dataset_report`)."""
    folder = Path(out)
    rep = dataset_report(model, split, classes=classes, recorded_files=recorded_files)
    files = [figures.save(figures.confusion_figure(rep), folder / "confusion_matrix.png")]
    for name, text in (
        ("confusion_matrix.csv", rep.confusion_csv()),
        ("confusion_matrix_normalized.csv", rep.confusion_csv(normalize=True)),
        ("per_class.csv", rep.per_class_csv()),
        ("most_confused.csv", rep.most_confused_csv()),
        ("confidently_wrong.csv", rep.confidently_wrong_csv(n_wrong)),
    ):
        write_atomic(folder / name, text)
        files.append(folder / name)
    summary = rep.summary(n_wrong)
    if summary["confidently_wrong"]:
        images = split.images.cpu().numpy() if hasattr(split.images, "cpu") else np.asarray(split.images)
        grid = figures.wrong_grid(rep, images, summary["confidently_wrong"])
        files.append(figures.save(grid, folder / "confidently_wrong.png"))
    write_atomic(folder / "report.json", json.dumps(summary, indent=2) + "\n")
    files.append(folder / "report.json")
    return rep, files
