"""A model on a whole split: confusion matrix, most-confused pairs, the most confidently wrong images,
per-class precision / recall / F1. Predictions are computed here with torch (``explain`` does not use
the training engine)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.explain.stages import eval_mode, model_device


@torch.inference_mode()
def split_probabilities(model: nn.Module, images: torch.Tensor, *, batch_size: int = 500) -> np.ndarray:
    """Softmax probabilities (N, K) for uint8 (N, C, H, W) images (divided by 255, as in training)."""
    dev = model_device(model)
    out = []
    with eval_mode(model):
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].to(dev)
            x = x.float().mul_(1.0 / 255.0) if x.dtype == torch.uint8 else x.float()
            out.append(torch.softmax(model(x).float(), dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


@dataclass
class DatasetReport:
    classes: list[str]
    labels: np.ndarray  # (N,) true classes
    probabilities: np.ndarray  # (N, K)
    files: list[str] | None = None  # folder and CSV datasets: each image's file, relative to the dataset
    notes: list[str] = field(default_factory=list)  # what a reader should know (e.g. the folder changed)

    @property
    def predictions(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def accuracy(self) -> float:
        return float((self.predictions == self.labels).mean()) if len(self.labels) else 0.0

    def confusion(self, *, normalize: bool = False) -> np.ndarray:
        """(K, K): row = true class, column = predicted class; ``normalize`` divides each row by its
        total (the recall of each class sits on the diagonal)."""
        k = len(self.classes)
        cm = np.bincount(self.labels * k + self.predictions, minlength=k * k).reshape(k, k)
        if not normalize:
            return cm
        rows = cm.sum(axis=1, keepdims=True)
        return np.divide(cm, rows, out=np.zeros((k, k)), where=rows > 0)

    def most_confused(self, n: int = 10) -> list[dict]:
        """The off-diagonal cells with the most images: true class, predicted class, count, share."""
        cm, norm = self.confusion(), self.confusion(normalize=True)
        cells = [(int(cm[t, p]), t, p) for t in range(len(cm)) for p in range(len(cm)) if t != p and cm[t, p]]
        cells.sort(key=lambda c: (-c[0], c[1], c[2]))
        return [
            {
                "true": self.classes[t],
                "predicted": self.classes[p],
                "count": c,
                "share_of_true": round(float(norm[t, p]), 4),
            }
            for c, t, p in cells[:n]
        ]

    def confidently_wrong(self, n: int = 16) -> list[dict]:
        """Misclassified images, the most confident mistakes first: index in the split, its file (for a
        folder or CSV dataset; None for a built-in one), true class, predicted class, probability."""
        pred = self.predictions
        wrong = np.flatnonzero(pred != self.labels)
        conf = self.probabilities[wrong, pred[wrong]]
        order = wrong[np.argsort(-conf, kind="stable")][:n]
        return [
            {
                "index": int(i),
                "file": self.files[i] if self.files is not None else None,
                "true": self.classes[self.labels[i]],
                "predicted": self.classes[pred[i]],
                "probability": float(self.probabilities[i, pred[i]]),
            }
            for i in order
        ]

    def confidently_wrong_csv(self, n: int = 16) -> str:
        return _csv(self.confidently_wrong(n), ["index", "file", "true", "predicted", "probability"])

    def per_class(self) -> list[dict]:
        """Precision, recall, F1 and support of each class (0 where undefined)."""
        cm = self.confusion()
        rows = []
        for i, name in enumerate(self.classes):
            tp = float(cm[i, i])
            predicted, actual = float(cm[:, i].sum()), float(cm[i].sum())
            precision = tp / predicted if predicted else 0.0
            recall = tp / actual if actual else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            rows.append(
                {
                    "class": name,
                    "precision": round(precision, 4),
                    "recall": round(recall, 4),
                    "f1": round(f1, 4),
                    "support": int(actual),
                }
            )
        return rows

    def per_class_csv(self) -> str:
        return _csv(self.per_class(), ["class", "precision", "recall", "f1", "support"])

    def most_confused_csv(self, n: int = 10) -> str:
        return _csv(self.most_confused(n), ["true", "predicted", "count", "share_of_true"])

    def confusion_csv(self, *, normalize: bool = False) -> str:
        cm = self.confusion(normalize=normalize)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["true \\ predicted", *self.classes])
        for name, row in zip(self.classes, cm, strict=True):
            w.writerow([name, *(f"{v:.4f}" if normalize else int(v) for v in row)])
        return buf.getvalue()

    def summary(self, n_wrong: int = 16) -> dict:
        return {
            "n": int(len(self.labels)),
            "accuracy": round(self.accuracy, 4),
            "error_pct": round(100 * (1 - self.accuracy), 2),
            "most_confused": self.most_confused(),
            "per_class": self.per_class(),
            "confidently_wrong": self.confidently_wrong(n_wrong),
            "notes": list(self.notes),
        }


def _csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def dataset_report(
    model: nn.Module,
    split,
    *,
    classes: Sequence[str],
    batch_size: int = 500,
    recorded_files: Sequence[str] | None = None,
) -> DatasetReport:
    """Predict every image of ``split`` (``.images`` uint8 (N, C, H, W), ``.labels``, ``.files`` when the
    images come from files) and keep what the report needs.

    Images are named by the split's own ``.files`` (those the report was computed on). A run keeps the
    files of the split it was tested on (splits.json): given as ``recorded_files``, they are compared, and
    a dataset changed since training is said in the report's ``notes``.

    Example:
        >>> rep = cl.explain.dataset_report(run.model, data.test, classes=data.classes)  # doctest: +SKIP
        >>> rep.confusion().shape, rep.most_confused(3)  # doctest: +SKIP
    """
    labels = np.asarray(split.labels.cpu().numpy() if hasattr(split.labels, "numpy") else split.labels)
    if len(labels) == 0:
        raise CnnlabError("the split is empty: nothing to report on")
    probs = split_probabilities(model, split.images, batch_size=batch_size)
    if probs.shape[1] != len(classes):
        raise CnnlabError(f"the model returns {probs.shape[1]} scores but there are {len(classes)} classes")
    files, notes = _names(getattr(split, "files", None), recorded_files)
    return DatasetReport(list(classes), labels.astype(np.int64), probs, files, notes)


def _names(found: Sequence[str] | None, recorded: Sequence[str] | None) -> tuple[list[str] | None, list[str]]:
    """The images' file names, and a note when the run's record of its test split disagrees with them."""
    if found is None:
        return None, []
    found = list(found)
    if recorded is None or list(recorded) == found:
        return found, []
    new, gone = len(set(found) - set(recorded)), len(set(recorded) - set(found))
    what = f"{new} new and {gone} missing files" if new or gone else "the same files in another order"
    return found, [
        f"the test split is not the one this run was tested on (splits.json: {what}); the dataset "
        "changed since training, and images are named as found now"
    ]
