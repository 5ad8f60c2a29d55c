"""Matplotlib figures as pictures: PNG bytes, and a Figure that shows itself in Jupyter. A leaf module
(matplotlib is imported on first use), so any figure-making module can use it without import cycles."""

from __future__ import annotations

import io
from typing import Any

_FIGURE: Any = None
SCREEN_DPI = 72  # figures shown in a notebook: sharp enough on screen, ~60 KB a figure


def figure_png(fig, *, dpi: int = 110, tight: bool = False) -> bytes:
    """A matplotlib figure as PNG bytes (matplotlib renders PNGs with Agg whatever the figure's canvas);
    ``tight``: margins trimmed, as Jupyter's inline backend shows figures."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    return buf.getvalue()


def figure_class() -> Any:
    """The Figure subclass cnnlab's figures are made of: a `_repr_png_`, so returning one from a
    notebook cell draws it (a bare Figure only prints its repr there). Created on first use."""
    global _FIGURE
    if _FIGURE is None:
        # deferred: matplotlib (~0.4 s), only when a figure is drawn (a leaf every figure module imports)
        from matplotlib.figure import Figure

        class NotebookFigure(Figure):
            def _repr_png_(self) -> bytes:
                return figure_png(self, dpi=SCREEN_DPI, tight=True)

        _FIGURE = NotebookFigure
    return _FIGURE
