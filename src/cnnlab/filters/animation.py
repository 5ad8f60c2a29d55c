"""Animated GIFs of a kernel (or a pooling window) sliding over a small grid, like the tutorial's figures.

Each frame shows the padded input with the current window, the products (or the pooled values), the
kernel, and the output with the cell being filled; the caption spells out the arithmetic. One frame per
output cell. The kernel slides as in a CNN layer: cross-correlation, no flip.

Max pooling ignores padding (pads count as -inf, as in PyTorch); average pooling counts pads as zeros
(PyTorch's default `count_include_pad=True`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from cnnlab.errors import CnnlabError
from cnnlab.filters.arith import conv_arith
from cnnlab.notebook import animation_html

KINDS = ("conv", "max", "avg")
MAX_GRID = 12  # input side; larger grids make unreadable frames and hundreds of them
MAX_FRAMES = 144
CELL = 0.5  # inches per cell
DPI = 100
_CLASSIC_3X3 = np.array([[0, 1, 2], [2, 2, 0], [0, 1, 2]])  # the kernel of the well-known conv GIFs


@dataclass
class Animation:
    """Frames of one animation plus its encoded GIF and PNG strip."""

    frames: list[np.ndarray]  # RGB uint8, all the same size
    out_shape: tuple[int, int]
    title: str

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of each frame in pixels."""
        return self.frames[0].shape[1], self.frames[0].shape[0]

    def _repr_html_(self) -> str:
        """In Jupyter: the animated GIF, captioned."""
        return animation_html(self)

    def gif(self, duration_ms: int = 700) -> bytes:
        images = [
            Image.fromarray(f).convert("P", palette=Image.Palette.ADAPTIVE, colors=64) for f in self.frames
        ]
        buf = io.BytesIO()
        images[0].save(
            buf, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0
        )
        return buf.getvalue()

    def strip(self, scale: float = 0.5) -> bytes:
        """All frames in one PNG, laid out like the output grid (row r, column c = output cell r, c)."""
        w, h = (max(1, round(s * scale)) for s in self.size)
        rows, cols = self.out_shape
        sheet = Image.new("RGB", (cols * w, rows * h), "white")
        for i, frame in enumerate(self.frames):
            r, c = divmod(i, cols)
            sheet.paste(Image.fromarray(frame).resize((w, h), Image.Resampling.LANCZOS), (c * w, r * h))
        buf = io.BytesIO()
        sheet.save(buf, format="PNG")
        return buf.getvalue()


def _grid(ax, x0: float, y0: float, values, *, face=None, fmt=str, fontsize=11) -> None:
    """Draw a matrix of cells with its top-left corner at (x0, y0) (y grows downwards)."""
    # deferred: matplotlib (~0.4 s), only when a figure is drawn (`filters conv-arith` without --animate needs none)
    from matplotlib.patches import Rectangle

    rows, cols = np.shape(values)
    for r in range(rows):
        for c in range(cols):
            color = face[r][c] if face is not None else "white"
            ax.add_patch(Rectangle((x0 + c, y0 + r), 1, 1, facecolor=color, edgecolor="#555", lw=1))
            text = fmt(values[r][c])
            if text:
                ax.text(x0 + c + 0.5, y0 + r + 0.5, text, ha="center", va="center", fontsize=fontsize)


def _title(kind: str, n, k, p, s, out) -> str:
    label = {"conv": "kernel", "max": "max pooling", "avg": "average pooling"}[kind]
    one = lambda v: v[0] if v[0] == v[1] else v  # noqa: E731
    return f"{n[0]}x{n[1]} input, {k[0]}x{k[1]} {label}, padding {one(p)}, stride {one(s)} -> {out[0]}x{out[1]} output"


def _window_value(win: np.ndarray, k, kind: str) -> tuple[float, str]:
    """The output at one window position and the arithmetic behind it, as the caption shows it."""
    if kind == "conv":
        terms = [f"{a:g}×{b:g}" for a, b in zip(win.ravel(), k.ravel(), strict=True)]
        return float((win * k).sum()), " + ".join(terms if len(terms) <= 9 else [*terms[:8], "..."])
    if kind == "max":
        return float(win.max()), "max(" + ", ".join(
            "pad" if np.isinf(v) else f"{v:g}" for v in win.ravel()
        ) + ")"
    return float(win.mean()), "mean(" + ", ".join(f"{v:g}" for v in win.ravel()) + ")"


def _output_cells(ax, x0: float, out_h: int, out_w: int) -> tuple[dict, dict]:
    """The output grid's cells and their (empty) texts, filled in frame by frame."""
    # deferred: matplotlib (~0.4 s), only when a figure is drawn (`filters conv-arith` without --animate needs none)
    from matplotlib.patches import Rectangle

    cells, texts = {}, {}
    for y in range(out_h):
        for z in range(out_w):
            cells[y, z] = ax.add_patch(
                Rectangle((x0 + z, 1.35 + y), 1, 1, facecolor="white", edgecolor="#555", lw=1)
            )
            texts[y, z] = ax.text(x0 + z + 0.5, 1.35 + y + 0.5, "", ha="center", va="center", fontsize=11)
    return cells, texts


class _Scene:
    """The animation's picture: everything static is drawn once (the padded input, the kernel or the pooling
    kind, the output grid, the title); ``show`` then only moves the window and updates texts and colours."""

    def __init__(self, xp: np.ndarray, k, kind: str, *, padding, size, window, out, title: str):
        # deferred: matplotlib (~0.4 s), only when a figure is drawn (`filters conv-arith` without --animate needs none)
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle

        (p_h, p_w), (n_h, n_w), (k_h, k_w), (out_h, out_w) = padding, size, window, out
        hp, wp = xp.shape
        k_x0 = wp + 1.5  # layout in cell units: padded input | kernel | output
        o_x0 = k_x0 + (k_w if kind == "conv" else 2) + 1.5
        width, height = o_x0 + out_w + 0.5, max(hp, out_h) + 2.35
        self.fig = fig = Figure(figsize=(width * CELL, height * CELL), dpi=DPI)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        ax.axis("off")
        inside = lambda y, z: p_h <= y < p_h + n_h and p_w <= z < p_w + n_w  # noqa: E731
        face = [["#cfe3ff" if inside(y, z) else "#dddddd" for z in range(wp)] for y in range(hp)]
        _grid(ax, 0.5, 1.35, xp, face=face, fmt=lambda v: "" if np.isinf(v) else f"{v:g}")
        self.window = Rectangle((0.5, 1.35), k_w, k_h, fill=False, edgecolor="#d62728", lw=3, zorder=5)
        ax.add_patch(self.window)
        self.weights = []
        if kind == "conv":  # the kernel's weight, small, in the corner of each window cell
            for (a, b), w in np.ndenumerate(k):
                t = ax.text(0, 0, f"×{w:g}", ha="right", va="bottom", fontsize=7, color="#d62728", zorder=6)
                self.weights.append((a, b, t))
            _grid(ax, k_x0, 1.35, k, face=[["#ffd8d8"] * k_w for _ in range(k_h)], fmt=lambda v: f"{v:g}")
            ax.text(k_x0 + k_w / 2, 1.05, "kernel", ha="center", fontsize=10)
        else:
            ax.text(k_x0 + 1, 1.35 + hp / 2, kind, ha="center", va="center", fontsize=14, color="#d62728")
        self.out_w = out_w
        self.out_cells, self.out_texts = _output_cells(ax, o_x0, out_h, out_w)
        ax.text(
            0.5 + wp / 2, 1.05, "input (grey: padding)" if p_h or p_w else "input", ha="center", fontsize=10
        )
        ax.text(o_x0 + out_w / 2, 1.05, "output", ha="center", fontsize=10)
        ax.text(0.5, 0.4, title, fontsize=10, va="center")
        self.caption = ax.text(0.5, height - 0.4, "", fontsize=9, va="center")

    def show(self, i: int, at: tuple[int, int], caption: str, value: float) -> None:
        """Frame ``i``: the window at padded-input row/column ``at``, output cell ``i`` being filled."""
        y, x = at
        self.window.set_xy((0.5 + x, 1.35 + y))
        for a, b, t in self.weights:
            t.set_position((0.5 + x + b + 0.92, 1.35 + y + a + 0.9))
        if i:  # the previous output cell is done: from orange to green
            self.out_cells[divmod(i - 1, self.out_w)].set_facecolor("#d9f2d9")
        cell = divmod(i, self.out_w)
        self.out_cells[cell].set_facecolor("#ffb347")
        self.out_texts[cell].set_text(f"{value:.3g}")
        self.caption.set_text(caption)


def animate(
    input_size: int | tuple[int, int] = 5,
    kernel_size: int | tuple[int, int] = 3,
    *,
    padding: int | tuple[int, int] = 1,
    stride: int | tuple[int, int] = 1,
    kind: str = "conv",
    seed: int = 0,
) -> Animation:
    """Frames of a `kind` ("conv", "max" or "avg") window sliding over a small random integer grid.

    Example:
        >>> anim = animate(5, 3, padding=1, stride=2)
        >>> len(anim.frames), anim.out_shape
        (9, (3, 3))
    """
    if kind not in KINDS:
        raise CnnlabError(f"Unknown animation kind {kind!r}. Choose one of: {', '.join(KINDS)}")
    two = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    (n_h, n_w), (k_h, k_w), (p_h, p_w), (s_h, s_w) = map(two, (input_size, kernel_size, padding, stride))
    rows_ax, cols_ax = conv_arith(
        (n_h, n_w), (k_h, k_w), padding=(p_h, p_w), stride=(s_h, s_w), pool=kind != "conv"
    )
    out_h, out_w = rows_ax.out, cols_ax.out
    if max(n_h, n_w) > MAX_GRID or out_h * out_w > MAX_FRAMES:
        raise CnnlabError(
            f"animations are for small grids: input at most {MAX_GRID}x{MAX_GRID}, {MAX_FRAMES} frames"
        )
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 4, size=(n_h, n_w))
    k = None
    if kind == "conv":
        k = _CLASSIC_3X3 if (k_h, k_w) == (3, 3) else rng.integers(-1, 3, size=(k_h, k_w))
    pad_value = -np.inf if kind == "max" else 0
    xp = np.pad(x.astype(float), ((p_h, p_h), (p_w, p_w)), constant_values=pad_value)
    title = _title(kind, (n_h, n_w), (k_h, k_w), (p_h, p_w), (s_h, s_w), (out_h, out_w))
    scene = _Scene(
        xp, k, kind, padding=(p_h, p_w), size=(n_h, n_w), window=(k_h, k_w), out=(out_h, out_w), title=title
    )
    frames = []
    for i in range(out_h * out_w):
        r, c = divmod(i, out_w)
        value, expr = _window_value(xp[r * s_h : r * s_h + k_h, c * s_w : c * s_w + k_w], k, kind)
        scene.show(i, (r * s_h, c * s_w), f"out[{r},{c}] = {expr} = {value:.3g}", value)
        frames.append(_render(scene.fig))
    return Animation(frames=frames, out_shape=(out_h, out_w), title=title)


def _render(fig) -> np.ndarray:
    # deferred: matplotlib (~0.4 s), only when a figure is drawn (`filters conv-arith` without --animate needs none)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
