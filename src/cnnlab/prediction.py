"""Predict the classes of image files with a trained run: any format and size, folders, thousands of files.

(Named `prediction`, not `predict`: importing a submodule `cnnlab.predict` would replace the package
attribute `cnnlab.predict`, the public batch-prediction function of the engine.)

Files are decoded in parallel, in chunks, exactly as the run's training images were (same size,
channels and resize mode; see `cnnlab.data.decode`) and as explain and the web page decode them (the
run's ``image_options``, the same ``invert`` rule), and classified in batches. Files that cannot be
read are reported and skipped; the rest are still predicted.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.decode import IMAGE_EXTENSIONS, BadImage, decode_images
from cnnlab.engine import predict
from cnnlab.errors import CnnlabError
from cnnlab.explain.inputs import auto_invert

__all__ = ["FilePrediction", "PredictResult", "collect_images", "predict_files"]


@dataclass(frozen=True)
class FilePrediction:
    """The top classes of one file, most probable first."""

    path: str
    top: list[tuple[str, float]]  # (class name, probability)

    def as_dict(self) -> dict:
        return {"path": self.path, "top": [{"class": c, "probability": p} for c, p in self.top]}


@dataclass
class PredictResult:
    predictions: list[FilePrediction]
    bad: list[BadImage]  # (path, reason): reported and skipped
    input_shape: tuple[int, int, int]
    resize: str
    resized: int = 0  # files whose size differed from the model's input
    inverted: int = 0  # files inverted (dark on light -> light on dark)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "input_shape": list(self.input_shape),
            "resize": self.resize,
            "predictions": [p.as_dict() for p in self.predictions],
            "skipped": [{"path": p, "reason": r} for p, r in self.bad],
            "notes": self.notes,
        }


def collect_images(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[str], list[BadImage]]:
    """Expand folders (recursively, image extensions only, sorted); a missing path is a bad entry.

    A file named explicitly is always tried, whatever its extension: if it is not an image, the
    decoder says so.
    """
    files: list[str] = []
    bad: list[BadImage] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = sorted(
                str(f)
                for f in p.rglob("*")
                if f.is_file()
                and f.suffix.lower() in IMAGE_EXTENSIONS
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
            if not found:
                bad.append((str(p), "folder holds no images (" + ", ".join(sorted(IMAGE_EXTENSIONS)) + ")"))
            files.extend(found)
        elif p.exists():
            files.append(str(p))
        else:
            bad.append((str(p), "no such file or folder"))
    return files, bad


def predict_files(
    run,
    paths: Sequence[str | os.PathLike[str]],
    *,
    top_k: int = 3,
    batch_size: int = 256,
    workers: int | None = None,
    chunk: int = 2048,
    invert: bool | str = "auto",
) -> PredictResult:
    """Top-k classes with probabilities for every readable image among `paths` (files or folders).

    Args:
        run: a `Run` from `cnnlab.load_run` (model, classes, input shape, resize mode of training).
        paths: image files and/or folders (searched recursively).
        top_k: how many classes per file (capped at the number of classes).
        batch_size: images per forward pass.
        workers: decoding threads [one per core].
        chunk: files decoded at a time (bounds memory for huge folders).
        invert: ``"auto"``, ``True`` or ``False``, as in `cnnlab.explain.prepare_input`: auto inverts, for a
            grayscale model trained on light-on-black images, each image with a bright border.

    Raises:
        CnnlabError: nothing to predict (no path holds a readable image), or bad arguments.

    Example:
        >>> run = cl.load_run("runs/pets")  # doctest: +SKIP
        >>> predict_files(run, ["cat.jpg"]).predictions[0].top[0]  # doctest: +SKIP
        ('cat', 0.97)
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise CnnlabError(f"top_k must be a positive integer, got {top_k!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise CnnlabError(f"batch size must be a positive integer, got {batch_size!r}")
    if not paths:
        raise CnnlabError("No images given: pass image files or folders.")
    c, h, w = (int(v) for v in run.input_shape)
    if h != w:
        raise CnnlabError(f"This run's model takes {h}x{w} images; predict supports square inputs only.")
    classes = list(run.classes)
    k = min(top_k, len(classes))
    if invert not in ("auto", True, False):
        raise CnnlabError(f"invert must be 'auto', True or False, got {invert!r}")
    options = run.image_options
    resize = options["resize"]
    files, bad = collect_images(paths)
    result = PredictResult([], bad, (c, h, w), resize)
    for start in range(0, len(files), chunk):
        _predict_chunk(
            run,
            files[start : start + chunk],
            result,
            k=k,
            invert=invert,
            batch_size=batch_size,
            workers=workers,
        )
    if not result.predictions:
        shown = "; ".join(f"{p}: {r}" for p, r in result.bad[:3])
        raise CnnlabError(f"No readable image to predict ({len(result.bad)} skipped: {shown}).")
    _add_notes(result, options)
    if np.isnan([p for pr in result.predictions for _, p in pr.top]).any():
        raise CnnlabError("The model produced NaN probabilities; its weights are broken (non-finite).")
    return result


def _predict_chunk(
    run, part: list[str], result: PredictResult, *, k: int, invert: bool | str, batch_size: int, workers
) -> None:
    """Decode ``part`` as training decoded its images, invert where asked, and add each readable file's top
    ``k`` classes (and the unreadable ones, the resized and inverted counts) to ``result``."""
    c, h, w = result.input_shape
    options = run.image_options
    decoded = decode_images(
        part, size=h, channels=c, resize=result.resize, fill=options["fill"], workers=workers
    )
    result.bad.extend(decoded.bad)
    good = [f for f, ok in zip(part, decoded.ok.tolist(), strict=True) if ok]
    sizes = decoded.sizes[decoded.ok]
    result.resized += int(((sizes[:, 0] != h) | (sizes[:, 1] != w)).sum())
    if not good:
        return
    x = torch.from_numpy(decoded.images)
    if invert == "auto":
        flip = auto_invert(x) & (c == 1 and options["light_on_dark"])
    else:
        flip = torch.full((len(x),), bool(invert))  # a bool mask, also for invert=1 or 0
    x = torch.where(flip.view(-1, 1, 1, 1), 255 - x, x)
    result.inverted += int(flip.sum())
    probs = predict(run.model, x, batch_size=batch_size)
    top_p, top_i = torch.topk(probs, k, dim=1)
    classes = list(run.classes)
    for f, ps, idx in zip(good, top_p.tolist(), top_i.tolist(), strict=True):
        result.predictions.append(
            FilePrediction(f, [(classes[i], float(p)) for i, p in zip(idx, ps, strict=True)])
        )


def _add_notes(result: PredictResult, options: dict) -> None:
    """Say how many images were resized (and how) or inverted before the model saw them."""
    _, h, w = result.input_shape
    resize = result.resize
    if result.resized:
        how = {"pad": "keeping the aspect ratio, padded", "crop": "centre-cropped", "stretch": "stretched"}[
            resize
        ]
        # folder runs trained on images decoded this way; a built-in's images were all of the model's size
        if options["fill"] == "black":
            how += ", as in training"
        elif resize == "pad":
            how += " with the image's border colour"
        result.notes.append(
            f"{result.resized} of {len(result.predictions)} images were not {h}x{w} (the model's input) and "
            f"were resized ({how})."
        )
    if result.inverted:
        result.notes.append(
            f"{result.inverted} of {len(result.predictions)} images were inverted (dark on a light background, "
            "unlike the light-on-black training images; --invert no keeps them as they are)."
        )
