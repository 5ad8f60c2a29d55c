"""Figures of the explain reports (matplotlib `Figure` objects, rendered with Agg: no display, no pyplot
state, safe from threads): feature-map grids, kernels, Grad-CAM / saliency overlays, top-k bars, the
confusion matrix and the most confidently wrong images."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.atomic import write_atomic
from cnnlab.pictures import figure_class  # a Figure that draws itself in Jupyter (_repr_png_)

DPI = 100


def _figure(w: float, h: float):
    return figure_class()(figsize=(w, h), dpi=DPI)


def save(fig, path: Path) -> Path:
    """Write a figure as PNG, atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    write_atomic(Path(path), buf.getvalue())
    return Path(path)


def _image(values: np.ndarray) -> np.ndarray:
    """(C, H, W) input -> something imshow takes: (H, W) gray or (H, W, 3) RGB in 0..1."""
    if values.shape[0] == 1:
        return values[0]
    return np.clip(values[:3].transpose(1, 2, 0), 0, 1)


def _off(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def mosaic(maps: np.ndarray, cols: int, *, gap: int = 1) -> np.ndarray:
    """(N, h, w) maps -> one (rows*(h+gap), cols*(w+gap)) image, each map scaled to its own largest
    |value| (so -1..1, 0 stays 0), NaN between tiles. One imshow instead of N subplots: fast."""
    n, h, w = maps.shape
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), np.nan, dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        m = float(np.nanmax(np.abs(maps[i]))) if maps[i].size else 0.0
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = maps[i] / (m or 1.0)
    return out


def _diverging_cmap():
    # deferred: matplotlib (~0.4 s), only when a figure is drawn (explain's reprs import this module)
    import matplotlib

    return matplotlib.colormaps["RdBu_r"].with_extremes(bad="white")


def stage_grid(stage: Any, *, max_maps: int = 64):
    """One stage's output: a labelled grid of its feature maps (each on its own scale, centred on 0:
    red positive, blue negative, white zero), or for a vector stage (flatten, dense, softmax) bars."""
    v = stage.values
    if v.ndim == 3 and stage.kind != "input":
        n = min(len(v), max_maps)
        cols = min(8, n)
        rows = math.ceil(n / cols)
        h, w = v.shape[1:]
        fig = _figure(1.2 * cols, 1.2 * rows * h / w + 0.6)
        ax = fig.add_subplot(1, 1, 1)
        ax.imshow(mosaic(v[:n], cols), cmap=_diverging_cmap(), vmin=-1, vmax=1, interpolation="nearest")
        for i in range(n):
            r, c = divmod(i, cols)
            ax.text(c * (w + 1), r * (h + 1), str(i), fontsize=6, va="top", color="#333")
        _off(ax)
        more = f" (first {n} of {len(v)} maps)" if n < len(v) else ""
        ax.set_title(f"{stage.name} ({stage.kind}) {'x'.join(map(str, v.shape))}{more}", fontsize=10)
        return fig
    if v.ndim == 3:
        fig = _figure(3, 3.3)
        ax = fig.add_subplot(1, 1, 1)
        ax.imshow(_image(v), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"input {'x'.join(map(str, v.shape))}", fontsize=10)
        _off(ax)
        return fig
    fig = _figure(min(12, 2 + 0.02 * len(v) + 3), 2.6)
    ax = fig.add_subplot(1, 1, 1)
    # one LineCollection, not thousands of bar patches (a 2048-value flatten draws in milliseconds)
    ax.vlines(
        np.arange(len(v)),
        0,
        v,
        colors=np.where(v >= 0, "#d8601c", "#2a5fb8"),
        linewidth=max(0.5, 300 / len(v)),
    )
    ax.set_title(f"{stage.name} ({stage.kind}) {len(v)} values", fontsize=10)
    ax.set_xlim(-0.5, len(v) - 0.5)
    ax.grid(alpha=0.3)
    return fig


def _nearest(m: np.ndarray, size: int) -> np.ndarray:
    """Resize a 2-D map to (size, size) by repeating pixels (no smoothing: the cells stay visible)."""
    h, w = m.shape
    return m[(np.arange(size) * h) // size][:, (np.arange(size) * w) // size]


def overview(acts: Any, *, per_stage: int = 6, tile: int = 32, gap: int = 6):
    """The network as columns of feature maps, one column per stage (the page's overview, as a file).
    Composed into one RGB image, so it costs one imshow however many stages there are."""
    # deferred: matplotlib (~0.4 s), only when a figure is drawn (explain's reprs import this module)
    import matplotlib

    cmap = matplotlib.colormaps["RdBu_r"]
    stages = acts.layers
    rows = max(min(per_stage, s.values.shape[0]) if s.values.ndim == 3 else 1 for s in stages)
    height = rows * (tile + gap) - gap
    widths = [tile if s.values.ndim == 3 else tile // 2 for s in stages]
    canvas = np.ones((height, sum(widths) + gap * (len(stages) - 1), 3), dtype=np.float32)
    x, centres = 0, []
    for s, w in zip(stages, widths, strict=True):
        v = s.values
        if v.ndim == 3:
            if s.kind == "input":
                img = _image(v)
                rgb = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img
                shown = [np.stack([_nearest(rgb[..., k], tile) for k in range(3)], axis=2)]
            else:
                shown = []
                for m in v[:per_stage]:
                    lim = float(np.abs(m).max()) or 1.0
                    shown.append(cmap(0.5 + 0.5 * _nearest(m, tile) / lim)[..., :3])
            for r, t in enumerate(shown):
                canvas[r * (tile + gap) : r * (tile + gap) + tile, x : x + tile] = t
        else:
            lim = float(np.abs(v).max()) or 1.0
            col = v[(np.arange(height) * len(v)) // height]
            canvas[:, x : x + w] = cmap(0.5 + 0.5 * col / lim)[:, None, :3]
        centres.append(x + w / 2)
        x += w + gap
    fig = _figure(max(6.0, canvas.shape[1] / 60), canvas.shape[0] / 60 + 1.0)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(canvas, interpolation="nearest")
    vector = 0
    for s, cx in zip(stages, centres, strict=True):
        label = f"{s.name}\n{'x'.join(map(str, s.values.shape))}"
        if s.values.ndim == 3 or vector % 2 == 0:  # narrow vector columns: every other label goes below
            ax.text(cx, -4, label, ha="center", va="bottom", fontsize=6)
        else:
            ax.text(cx, height + 3, label, ha="center", va="top", fontsize=6)
        vector += s.values.ndim != 3
    _off(ax)
    for side in ax.spines.values():
        side.set_visible(False)
    p = acts.prediction
    fig.suptitle(f"prediction: {p.label} ({p.probability:.1%})", fontsize=10)
    return fig


def kernels_figure(weight: np.ndarray, name: str, *, max_filters: int = 64):
    """The learned kernels of a conv layer, weight (Cout, Cin, kh, kw): RGB when Cin is 3, else the
    first input channel of each filter (red positive, blue negative)."""
    n = min(len(weight), max_filters)
    cols = min(8, n)
    kh, kw = weight.shape[2:]
    fig = _figure(0.9 * cols, 0.9 * math.ceil(n / cols) * kh / kw + 0.6)
    ax = fig.add_subplot(1, 1, 1)
    if weight.shape[1] == 3:
        rows = math.ceil(n / cols)
        tiles = np.ones((rows * (kh + 1) - 1, cols * (kw + 1) - 1, 3), dtype=np.float32)
        for i in range(n):
            r, c = divmod(i, cols)
            w = weight[i].transpose(1, 2, 0)
            tiles[r * (kh + 1) : r * (kh + 1) + kh, c * (kw + 1) : c * (kw + 1) + kw] = (w - w.min()) / (
                np.ptp(w) + 1e-12
            )
        ax.imshow(tiles, interpolation="nearest")
    else:
        ax.imshow(
            mosaic(weight[:n, 0], cols), cmap=_diverging_cmap(), vmin=-1, vmax=1, interpolation="nearest"
        )
    _off(ax)
    what = "RGB" if weight.shape[1] == 3 else "input channel 0"
    ax.set_title(f"{name}: {len(weight)} kernels {kh}x{kw} ({what})", fontsize=10)
    return fig


def overlay(image: np.ndarray, heat: Any, *, title: str | None = None):
    """Input, heat map, and the heat map over the input."""
    fig = _figure(7.5, 2.8)
    img = _image(image)
    for i, (panel, label) in enumerate(
        [(img, "input"), (heat.values, heat.method), (None, "overlay")], start=1
    ):
        ax = fig.add_subplot(1, 3, i)
        if panel is not None and i == 1:
            ax.imshow(panel, cmap="gray")
        elif panel is not None:
            ax.imshow(panel, cmap="jet", vmin=0, vmax=1)
        else:
            ax.imshow(img, cmap="gray")
            ax.imshow(heat.values, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        ax.set_title(label, fontsize=9)
        _off(ax)
    where = f" on {heat.layer}" if heat.layer else ""
    fig.suptitle(title or f"{heat.method}{where} for class '{heat.label}'", fontsize=10)
    return fig


def topk_figure(pred: Any, k: int = 5):
    top = pred.top(k)[::-1]
    fig = _figure(5, 0.4 * len(top) + 0.8)
    ax = fig.add_subplot(1, 1, 1)
    ax.barh([t[1] for t in top], [t[2] for t in top], color="#3b7dd8")
    for i, t in enumerate(top):
        ax.text(t[2], i, f" {t[2]:.1%}", va="center", fontsize=8)
    ax.set_xlim(0, 1.15)
    ax.set_title("top classes (softmax)", fontsize=10)
    return fig


def confusion_figure(report: Any):
    """Counts and row-normalised confusion matrices side by side, class names on both axes."""
    k = len(report.classes)
    size = max(5.0, 0.55 * k + 2)
    fig = _figure(2 * size, size)
    for i, (norm, title) in enumerate([(False, "counts"), (True, "row-normalised (recall)")], start=1):
        cm = report.confusion(normalize=norm)
        ax = fig.add_subplot(1, 2, i)
        ax.imshow(cm, cmap="Blues")
        ax.set_xticks(range(k), report.classes, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(k), report.classes, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"confusion matrix, {title}", fontsize=10)
        if k <= 20:
            top = cm.max() or 1
            for t in range(k):
                for p in range(k):
                    txt = f"{cm[t, p]:.2f}" if norm else str(int(cm[t, p]))
                    color = "white" if cm[t, p] > 0.6 * top else "black"
                    ax.text(p, t, txt, ha="center", va="center", fontsize=6.5, color=color)
    fig.suptitle(f"{len(report.labels):,} images, accuracy {report.accuracy:.2%}", fontsize=11)
    return fig


def wrong_grid(report: Any, images: np.ndarray, cases: Sequence[dict]):
    """The most confidently wrong images with true / predicted / probability. ``images`` is the split's
    uint8 (N, C, H, W) array."""
    n = max(1, len(cases))
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig = _figure(2.6 * cols, 2.9 * rows)
    for i, case in enumerate(cases):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(_image(images[case["index"]].astype(np.float32) / 255.0), cmap="gray", vmin=0, vmax=1)
        name = f"#{case['index']}" if case.get("file") is None else _short(case["file"])
        ax.set_title(
            f"{name} true: {case['true']}\npred: {case['predicted']} ({case['probability']:.1%})", fontsize=8
        )
        _off(ax)
    fig.suptitle("most confidently wrong", fontsize=11)
    return fig


def _short(file: str, most: int = 28) -> str:
    """A file's name for a title: the last part of its path, cut in the middle when long."""
    name = file.replace("\\", "/").rsplit("/", 1)[-1]
    return name if len(name) <= most else name[: most // 2 - 1] + "..." + name[-(most // 2 - 2) :]
