"""Figures of the filter playground: the tutorial's side-by-side figure, a grid of all kernels, and the
raw feature map as a normalised PNG.

Built on `matplotlib.figure.Figure` rather than pyplot, so nothing here touches global state or needs a
display (the web server renders from threads); `png_bytes` renders with Agg.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from cnnlab.pictures import figure_class

DPI = 80  # the tutorial's 20x10 inch figure -> 1600x800 px: plenty for a 451x300 photo, quick to save


def _new_figure(figsize: tuple[float, float], pyplot: bool):
    if pyplot:  # for --show: a figure owned by pyplot so plt.show() can open it
        # deferred: pyplot picks a GUI backend and costs ~0.5 s; only --show needs it
        import matplotlib.pyplot as plt

        return plt.figure(figsize=figsize)
    return figure_class()(figsize=figsize)  # a Figure that draws itself when a notebook cell returns it


def display_range(feature: np.ndarray) -> np.ndarray:
    """Scale a feature map to 0..1 for display (min -> 0, max -> 1; a constant map -> 0).

    Example:
        >>> display_range(np.array([[-2.0, 0.0, 2.0]])).tolist()
        [[0.0, 0.5, 1.0]]
    """
    f = np.asarray(feature, dtype=np.float32)
    lo, hi = float(np.nanmin(f)), float(np.nanmax(f))
    if not hi > lo:
        return np.zeros_like(f)
    return (f - lo) * np.float32(1.0 / (hi - lo))


def _show(ax, img: np.ndarray, title: str, fontsize: float = 15) -> None:
    if img.ndim == 3:  # colour: imshow clips floats to 0..1, so scale feature maps first
        ax.imshow(display_range(img) if img.min() < 0 or img.max() > 1 else img)
    else:  # grayscale, auto-scaled from min to max, exactly as the tutorial's imshow(img, 'gray')
        ax.imshow(img, "gray")
    ax.set_title(title, fontsize=fontsize)
    ax.set_xticks([])
    ax.set_yticks([])


def tutorial_figure(image: np.ndarray, feature: np.ndarray, name: str, *, pyplot: bool = False):
    """The tutorial's figure: input and feature map side by side, 20x10 inches, titled "Input image" and
    "Feature map - <name>", grayscale, no ticks.

    Example:
        >>> fig = tutorial_figure(np.eye(8), np.eye(8), "identity")
        >>> [ax.get_title() for ax in fig.axes]
        ['Input image', 'Feature map - identity']
    """
    fig = _new_figure((20, 10), pyplot)
    _show(fig.add_subplot(1, 2, 1), image, "Input image")
    _show(fig.add_subplot(1, 2, 2), feature, f"Feature map - {name}")
    return fig


def _kernel_panel(ax, kernel: np.ndarray) -> None:
    # Red positive, blue negative, zero white; the range is widened so that the strongest entries are
    # mid-tone and black numbers stay readable on them.
    lim = 1.6 * (float(np.abs(kernel).max()) or 1.0)
    ax.imshow(kernel, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_xticks([])
    ax.set_yticks([])
    texts = [f"{v:.2g}" for v in kernel.ravel()]
    longest = max(len(t) for t in texts)
    side = max(kernel.shape)
    if (side <= 3 and longest <= 5) or (side <= 5 and longest <= 3):  # only when the numbers fit
        size = 8 if longest <= 2 else 6
        for (r, c), text in zip(np.ndindex(kernel.shape), texts, strict=True):
            ax.text(c, r, text, ha="center", va="center", fontsize=size, color="black")


def grid_figure(
    image: np.ndarray,
    results: Sequence[tuple[str, np.ndarray, np.ndarray]],
    *,
    caption: str = "",
    columns: int = 4,
    pyplot: bool = False,
):
    """All requested kernels in one figure: the input, then each feature map with its kernel below it.

    Args:
        image: the input as shown to the kernels (the first panel).
        results: (name, kernel, feature map) per kernel.
        caption: one line under the input (settings such as boundary and mode).
        columns: panels per row.

    Example:
        >>> fig = grid_figure(np.eye(8), [("identity", np.eye(3), np.eye(8))])
        >>> fig.axes[0].get_title(), fig.axes[1].get_title()
        ('Input image', 'identity (3x3)')
    """
    panels = len(results) + 1
    cols = max(1, min(columns, panels))
    rows = -(-panels // cols)
    fig = _new_figure((3.6 * cols, 4.0 * rows), pyplot)
    grid = fig.add_gridspec(2 * rows, cols, height_ratios=[2.6, 1.2] * rows, hspace=0.2, wspace=0.08)
    ax = fig.add_subplot(grid[0, 0])
    _show(ax, image, "Input image", fontsize=11)
    if caption:
        note = fig.add_subplot(grid[1, 0])
        note.axis("off")
        note.text(0.5, 0.5, caption, ha="center", va="center", fontsize=8, wrap=True)
    for i, (name, kernel, feature) in enumerate(results, start=1):
        r, c = divmod(i, cols)
        kh, kw = np.shape(kernel)
        _show(fig.add_subplot(grid[2 * r, c]), feature, f"{name} ({kh}x{kw})", fontsize=11)
        _kernel_panel(fig.add_subplot(grid[2 * r + 1, c]), np.asarray(kernel))
    return fig


def png_bytes(fig, *, dpi: int = DPI) -> bytes:
    """Render a figure to PNG bytes (matplotlib renders PNGs with Agg whatever the figure's canvas).

    Margins are trimmed (`bbox_inches="tight"`), as Jupyter's inline backend shows the tutorial's figures.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def feature_png(feature: np.ndarray) -> bytes:
    """The raw feature map as an 8-bit PNG, min-max normalised (gray, or RGB for colour maps).

    Example:
        >>> feature_png(np.arange(6.0).reshape(2, 3))[:4]
        b'\\x89PNG'
    """
    scaled = np.rint(display_range(feature) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(scaled).save(buf, format="PNG")
    return buf.getvalue()
