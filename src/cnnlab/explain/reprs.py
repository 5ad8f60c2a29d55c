"""Explain's objects in Jupyter: the HTML and PNG behind ``Activations``, ``Prediction`` and ``Heatmap``'s
reprs, built from ``cnnlab.notebook``'s pieces and this package's figures."""

from __future__ import annotations

import numpy as np

from cnnlab.explain.figures import overlay
from cnnlab.explain.figures import overview as figure_columns
from cnnlab.notebook import figure_png, image, section, side_by_side, table


def prediction_table(pred, k: int = 5) -> str:
    """An explain `Prediction`: the k most probable classes."""
    return table(
        ["class", "probability"], [(label, round(p, 4)) for _, label, p in pred.top(k)], max_rows=None
    )


def overview(acts, **options):
    """The network at a glance (`cnnlab.explain.figures.overview`: one column of maps per stage, the
    input on the left, the softmax on the right) with the class names beside the softmax column, each
    at the height of its own band of that column, the most probable in bold. ``options`` go to the
    figure (``per_stage``, ``tile``, ``gap``).

    Example:
        >>> import cnnlab as cl, numpy as np
        >>> acts = cl.explain.activations(cl.create_model("cnn2", seed=0), np.zeros((28, 28)))
        >>> fig = overview(acts)  # in a notebook cell, the figure draws itself
    """
    fig = figure_columns(acts, **options)
    classes = list(acts.prediction.classes)
    last = acts.layers[-1].values
    if not fig.axes or not fig.axes[0].images or last.ndim != 1 or len(last) != len(classes):
        return fig
    ax = fig.axes[0]
    height, width = ax.images[0].get_array().shape[:2]
    # the figure samples the column as values[(row * K) // height]: class k owns rows k*H/K .. (k+1)*H/K
    top = int(acts.prediction.index)
    for k, name in enumerate(classes[:40]):  # beyond 40 names the labels would overlap
        ax.text(
            width + 2,
            (k + 0.5) * height / len(classes) - 0.5,
            f"{name} {float(acts.prediction.probabilities[k]):.0%}",
            ha="left",
            va="center",
            fontsize=6,
            fontweight="bold" if k == top else "normal",
        )
    return fig


def activations_html(acts) -> str:
    """Explain `Activations`: the network as columns of feature maps (the softmax column labelled with
    the class names), and what it predicted."""
    stages = table(
        ["stage", "kind", "shape"], [(s.name, s.kind, "x".join(map(str, s.shape))) for s in acts.layers]
    )
    pic = image(figure_png(overview(acts), dpi=100), "feature maps of every stage")
    return section(
        f"Activations of {acts.model_name}: {acts.prediction.label} ({acts.prediction.probability:.1%})",
        pic,
        side_by_side(prediction_table(acts.prediction), stages),
    )


def heatmap_png(heat, image_values=None) -> bytes:
    """An explain `Heatmap` (Grad-CAM or saliency) as a PNG: over the input when it is given (C, H, W)."""
    if image_values is None:
        image_values = np.zeros((1, *heat.values.shape), dtype=np.float32)
    return figure_png(overlay(image_values, heat))
