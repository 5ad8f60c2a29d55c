"""Where the model looked: Grad-CAM on any stage with an image-shaped output, and gradient saliency.

Grad-CAM (Selvaraju et al., 2017): take the feature maps A (C, h, w) of a stage and the gradient of the
class score (its logit) with respect to them; weight each map by its mean gradient, sum, keep the
positive part, min-max scale to 0..1 and resize to the input's size. Saliency: |d score / d pixel|, max over channels.
Both run the model stage by stage with ``torch.autograd.grad`` (no hooks, no stored .grad), so they are
safe on a model shared between threads.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError, NotFoundError
from cnnlab.explain import schema
from cnnlab.explain.inputs import PreparedInput, prepare_input
from cnnlab.explain.reprs import heatmap_png
from cnnlab.explain.stages import eval_mode, model_device, named_stages, stage_kind
from cnnlab.explain.stagewise import model_classes


@dataclass
class Heatmap:
    method: str  # "gradcam" or "saliency"
    layer: str | None
    class_index: int
    label: str
    values: np.ndarray  # (H, W) at the input's size, 0..1
    raw: np.ndarray  # Grad-CAM at the layer's resolution before scaling (saliency: same as values)

    def _repr_png_(self) -> bytes:
        """In Jupyter: the heat map as a picture."""
        return heatmap_png(self)

    def to_schema(self, encoding: str = "base64") -> schema.HeatmapSchema:
        return schema.HeatmapSchema(
            method=self.method,
            layer=self.layer,
            class_index=self.class_index,
            label=self.label,
            values=schema.encode_tensor(self.values, encoding),
        )


def spatial_stages(model: nn.Module, input_shape: Sequence[int]) -> list[str]:
    """Names of the stages whose output is image-shaped (C, h, w) with h, w > 1: Grad-CAM targets."""
    x = torch.zeros(1, *input_shape, device=model_device(model))
    names = []
    with eval_mode(model), torch.inference_mode():
        for name, stage in named_stages(model):
            x = stage(x)
            if x.dim() == 4 and x.shape[2] * x.shape[3] > 1 and stage_kind(stage) not in ("normalize",):
                names.append(name)
    return names


def default_layer(model: nn.Module, input_shape: Sequence[int]) -> str:
    """The usual Grad-CAM layer: the last conv stage (or residual block) with an image-shaped output,
    taken after its batch norm and activation when those follow it (the rectified feature maps)."""
    spatial = spatial_stages(model, input_shape)
    kinds = [(n, stage_kind(m)) for n, m in named_stages(model)]
    convs = [i for i, (n, k) in enumerate(kinds) if n in spatial and k in ("conv", "block")]
    if not convs:
        raise CnnlabError("Grad-CAM needs a conv layer; this model has none (an MLP sees no maps)")
    i = convs[-1]
    while i + 1 < len(kinds) and kinds[i + 1][1] in ("batchnorm", "relu", "activation"):
        i += 1
    return kinds[i][0]


def _scaled(cam: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Min-max scale to 0..1 (as the Grad-CAM authors' code and pytorch-grad-cam do: the part of the
    map that is the same everywhere, e.g. from biases on a blank background, says nothing about where
    the model looked), then resize bilinearly to the input's size."""
    cam = cam - cam.min()
    top = float(cam.max())
    cam = cam / top if top > 0 else cam
    up = F.interpolate(cam[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    return up.clamp_(0.0, 1.0).float().cpu().numpy()


def _target(logits: torch.Tensor, class_index: int | None) -> int:
    k = logits.shape[1]
    if class_index is None:
        return int(logits[0].argmax())
    if not 0 <= int(class_index) < k:
        raise CnnlabError(f"class index {class_index} is out of range 0..{k - 1}")
    return int(class_index)


def _layer_or_default(model: nn.Module, layer: str | None, input_shape: tuple[int, ...]) -> str:
    if layer is not None:
        stages = named_stages(model)
        if layer not in dict(stages):
            raise NotFoundError(f"Unknown layer {layer!r}. Available: {', '.join(n for n, _ in stages)}")
        return layer
    per_model = _DEFAULTS.setdefault(model, {})
    if input_shape not in per_model:  # one probe forward per model and input shape, then remembered
        per_model[input_shape] = default_layer(model, input_shape)
    return per_model[input_shape]


_DEFAULTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def gradcam_and_saliency(
    model: nn.Module,
    image,
    *,
    layer: str | None = None,
    class_index: int | None = None,
    classes: Sequence[str] | None = None,
    input_shape: tuple[int, int, int] | None = None,
    invert: bool | str = False,
    want_gradcam: bool = True,
    want_saliency: bool = True,
) -> tuple[Heatmap | None, Heatmap | None]:
    """Grad-CAM and saliency from one forward and one backward pass: ``(gradcam, saliency)``.

    Grad-CAM is None when it was not wanted, or when no ``layer`` was named and the model has no conv
    stage (an MLP); naming a layer without feature maps is an error.
    """
    prepared = image if isinstance(image, PreparedInput) else prepare_input(image, input_shape, invert=invert)
    shape = tuple(prepared.tensor.shape[1:])
    if want_gradcam:
        try:
            layer = _layer_or_default(model, layer, shape)
        except CnnlabError:
            if layer is not None:
                raise
            want_gradcam = False
    if not (want_gradcam or want_saliency):
        return None, None
    x = prepared.tensor.to(model_device(model)).clone().requires_grad_(want_saliency)
    feats = None
    with eval_mode(model), torch.enable_grad():
        h = x
        for name, stage in named_stages(model):
            h = stage(h)
            if want_gradcam and name == layer:
                if h.dim() != 4:
                    allowed = ", ".join(spatial_stages(model, shape))
                    raise CnnlabError(
                        f"Grad-CAM needs a layer with feature maps; {layer!r} outputs shape "
                        f"{tuple(h.shape[1:])}. Layers with maps: {allowed}"
                    )
                feats = h
        logits = h
        target = _target(logits, class_index)
        wanted = [t for t in (feats, x if want_saliency else None) if t is not None]
        grads = list(torch.autograd.grad(logits[0, target], wanted))
    classes = model_classes(model, classes)
    names = list(classes) if classes is not None else [str(i) for i in range(logits.shape[1])]
    cam = sal = None
    if feats is not None:  # Grad-CAM wanted and its layer reached: its gradient comes first
        g = grads.pop(0)
        weights = g[0].mean(dim=(1, 2))  # (C,) how much each map matters to the class
        raw = torch.relu((weights[:, None, None] * feats[0]).sum(0)).detach()  # (h, w)
        values = _scaled(raw, (shape[1], shape[2]))  # at the input's (H, W)
        cam = Heatmap("gradcam", layer, target, names[target], values, raw.cpu().numpy())
    if want_saliency:
        m = grads.pop(0)[0].abs().amax(dim=0)  # |d score / d pixel|, max over channels
        top = float(m.max())
        values = (m / top if top > 0 else m).float().cpu().numpy()
        sal = Heatmap("saliency", None, target, names[target], values, values)
    return cam, sal


def gradcam(
    model: nn.Module,
    image,
    *,
    layer: str | None = None,
    class_index: int | None = None,
    classes: Sequence[str] | None = None,
    input_shape: tuple[int, int, int] | None = None,
    invert: bool | str = False,
) -> Heatmap:
    """Grad-CAM for ``class_index`` (default: the predicted class) on stage ``layer`` (default: the
    last conv stage, after its ReLU).

    Example:
        >>> import cnnlab as cl
        >>> cam = cl.explain.gradcam(cl.create_model("cnn2", seed=0), np.random.rand(28, 28))
        >>> cam.layer, cam.values.shape
        ('relu2', (28, 28))
    """
    prepared = image if isinstance(image, PreparedInput) else prepare_input(image, input_shape, invert=invert)
    layer = _layer_or_default(model, layer, tuple(prepared.tensor.shape[1:]))  # errors for an MLP
    cam, _ = gradcam_and_saliency(
        model, prepared, layer=layer, class_index=class_index, classes=classes, want_saliency=False
    )
    assert cam is not None  # a layer was resolved above, so Grad-CAM ran
    return cam


def saliency(
    model: nn.Module,
    image,
    *,
    class_index: int | None = None,
    classes: Sequence[str] | None = None,
    input_shape: tuple[int, int, int] | None = None,
    invert: bool | str = False,
) -> Heatmap:
    """Gradient saliency: how much each pixel moves the class score, |d logit / d x|, max over channels,
    scaled to 0..1."""
    _, sal = gradcam_and_saliency(
        model, image, class_index=class_index, classes=classes, input_shape=input_shape, invert=invert,
        want_gradcam=False,
    )  # fmt: skip
    assert sal is not None  # saliency needs no layer: it always runs when wanted
    return sal
