"""Figures shared by runs and comparisons (matplotlib, Agg backend: files only).

Built on `matplotlib.figure.Figure`, never pyplot and never `matplotlib.use`: switching the global
backend from inside a library would stop a notebook's own `plt.show()` from drawing anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cnnlab.atomic import write_atomic
from cnnlab.pictures import figure_png

# Histories are duck-typed (`cnnlab.engine.History`: h["epoch"], h["val_loss"], h.best_epoch), so this
# module imports nothing from the engine: a History's notebook view draws its curves through here.
History = Any


def learning_curves_figure(histories: Mapping[str, History], *, figsize=(12, 4.5)):
    """Train (dashed) vs validation (solid) accuracy and loss per epoch, one colour per model; the
    best epoch is marked. The tutorial's figure, for one model or several. Both losses are the training
    loss function (label smoothing included, as Keras reports them), so the curves compare like with like."""
    # deferred: matplotlib (~0.4 s), only when a figure is drawn (histories and runs import this module)
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=figsize)
    axes = fig.subplots(1, 2)
    for i, (name, h) in enumerate(histories.items()):
        color = f"C{i}"
        ep = h["epoch"]
        for ax, key in zip(axes, ("accuracy", "loss"), strict=True):
            ax.plot(ep, h[key], "--", color=color, label=f"{name} train")
            if any(v is not None for v in h[f"val_{key}"]):
                ax.plot(ep, h[f"val_{key}"], "-", color=color, label=f"{name} validation")
                if h.best_epoch:
                    ax.plot([h.best_epoch], [h[f"val_{key}"][h.best_epoch - 1]], "o", color=color)
    for ax, key in zip(axes, ("Accuracy", "Loss"), strict=True):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.set_ylabel(key.lower())
        ax.set_title(f"{key} per epoch (dot: best epoch)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def learning_curves(histories: Mapping[str, History], path: Path) -> Path:
    """Write `learning_curves_figure` to ``path`` as a PNG (atomically)."""
    write_atomic(Path(path), figure_png(learning_curves_figure(histories)))
    return Path(path)
