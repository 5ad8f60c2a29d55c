"""Activations per named stage: run the model one stage at a time and keep every output.

The forward pass is the model's own: an ``nn.Sequential`` applies its stages in order, and so does this
loop, so the last stage's output is exactly ``model(x)``. No hooks are registered, so one model can be
explained by several threads at once (the web server does).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from cnnlab.errors import CnnlabError, NotFoundError
from cnnlab.explain import schema
from cnnlab.explain.inputs import PreparedInput, prepare_input
from cnnlab.explain.reprs import activations_html, prediction_table
from cnnlab.explain.stages import eval_mode, model_device, named_stages, stage_kind, stage_params
from cnnlab.explain.wire import wire_values


@dataclass
class Stage:
    """One stage's output for one image."""

    name: str
    kind: str
    values: np.ndarray  # float32, the output without the batch axis: (C, H, W) or (N,)
    module: str = ""
    params: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        v = self.values
        rng = f", {float(v.min()):.3g}..{float(v.max()):.3g}" if v.size else ""
        return f"Stage({self.name!r}, {self.kind}, shape {tuple(v.shape)}{rng})"

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)

    def to_schema(
        self, encoding: str | None = "base64", *, precision: str = "exact", previous: Stage | None = None
    ) -> schema.Layer:
        """This stage as the schema's `Layer`; ``precision="compact"`` may send it as uint8 or as
        derived from ``previous`` (see `cnnlab.explain.wire`)."""
        values, op = wire_values(
            self.values,
            previous.values if previous is not None else None,
            kind=self.kind,
            encoding=encoding,
            precision=precision,
        )
        return schema.Layer(
            name=self.name,
            kind=self.kind,
            shape=list(self.shape),
            module=self.module,
            params=self.params,
            stats=schema.stats_of(self.values),
            values=values,
            # an op is found only against a previous stage's values
            derived=schema.Derived(source=previous.name, op=op) if op and previous is not None else None,
        )


@dataclass
class Prediction:
    logits: np.ndarray  # (K,) float32
    probabilities: np.ndarray  # (K,) float32, softmax of the logits
    classes: list[str]

    def __repr__(self) -> str:
        return f"Prediction({self.label!r} {self.probability:.3f}, of {len(self.classes)} classes)"

    def _repr_html_(self) -> str:
        """In Jupyter: the most probable classes as a table."""
        return prediction_table(self)

    @property
    def index(self) -> int:
        return int(np.argmax(self.logits))

    @property
    def label(self) -> str:
        return self.classes[self.index]

    @property
    def probability(self) -> float:
        return float(self.probabilities[self.index])

    def top(self, k: int = 5) -> list[tuple[int, str, float]]:
        """The k most probable classes: (index, label, probability), most probable first."""
        order = np.argsort(-self.probabilities, kind="stable")[: max(1, k)]
        return [(int(i), self.classes[i], float(self.probabilities[i])) for i in order]

    def to_schema(self, top_k: int = 5) -> schema.PredictionSchema:
        return schema.PredictionSchema(
            index=self.index,
            label=self.label,
            probability=self.probability,
            logits=[float(v) for v in self.logits],
            probabilities=[float(v) for v in self.probabilities],
            top=[schema.ClassScore(index=i, label=lb, probability=p) for i, lb, p in self.top(top_k)],
        )


class UnknownLayer(NotFoundError, KeyError):
    """A stage name the model does not have: a `NotFoundError` (one line, HTTP 404) and a ``KeyError``
    (so `Activations` behaves as a mapping: ``in``, ``.get``)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(eq=False)
class Activations(Mapping):
    """Every stage's output for one image, the input first and the softmax last: a read-only mapping
    from stage name to `Stage`, in the order the image flows (``len``, ``list``, ``in``, ``items()``).

    Example:
        >>> import cnnlab as cl
        >>> acts = cl.explain.activations(cl.create_model("cnn2", seed=0), np.zeros((28, 28)))
        >>> [s.name for s in acts.layers][:4], acts["conv1"].shape
        (['input', 'conv1', 'relu1', 'pool1'], (64, 26, 26))
    """

    layers: list[Stage]
    prediction: Prediction
    input: PreparedInput
    model_name: str = "model"
    params: int = 0

    def __repr__(self) -> str:
        names = [s.name for s in self.layers]
        shown = ", ".join(names[:6]) + (f", ... {names[-1]}" if len(names) > 6 else "")
        return f"Activations({self.model_name}: {len(names)} stages [{shown}], {self.prediction!r})"

    def _repr_html_(self) -> str:
        """In Jupyter: the network as columns of feature maps, and what it predicted."""
        return activations_html(self)

    def __getitem__(self, name: str) -> Stage:
        for s in self.layers:
            if s.name == name:
                return s
        raise UnknownLayer(f"Unknown layer {name!r}. Available: {', '.join(s.name for s in self.layers)}")

    def __iter__(self) -> Iterator[str]:
        return (s.name for s in self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def input_of(self, name: str) -> Stage:
        """The stage whose output feeds stage ``name``."""
        names = [s.name for s in self.layers]
        i = names.index(self[name].name)
        if i == 0:
            raise CnnlabError("the input has no input")
        return self.layers[i - 1]

    def to_schema(
        self,
        *,
        encoding: str | None = "base64",
        precision: str = "compact",
        top_k: int = 5,
        model_id: str | None = None,
        gradcam=None,
        saliency=None,
    ) -> schema.ActivationsDoc:
        """The JSON document (see `cnnlab.explain.schema`). ``encoding=None`` leaves out the values;
        ``precision="compact"`` (base64 only) sends big stages as uint8 and repeated ones as derived,
        ``"exact"`` sends every stage as float32; ``encoding="list"`` is always exact."""
        prev = [None, *self.layers[:-1]]
        return schema.ActivationsDoc(
            model=self.model_info(model_id),
            input=schema.InputInfo(**self.input.info()),
            layers=[
                s.to_schema(encoding, precision=precision, previous=p)
                for s, p in zip(self.layers, prev, strict=True)
            ],
            prediction=self.prediction.to_schema(top_k),
            gradcam=gradcam.to_schema() if gradcam is not None else None,
            saliency=saliency.to_schema() if saliency is not None else None,
        )

    def to_json(self, **kwargs) -> dict:
        return self.to_schema(**kwargs).model_dump(mode="json", by_alias=True)

    def model_info(self, model_id: str | None = None) -> schema.ModelSchema:
        return schema.ModelSchema(
            id=model_id,
            name=self.model_name,
            input_shape=list(self.input.tensor.shape[1:]),
            classes=list(self.prediction.classes),
            params=self.params,
        )


def model_classes(model: nn.Module, classes: Sequence[str] | None) -> Sequence[str] | None:
    """The class names given, else the ones a loaded run's model carries (``cl.load_run`` names them)."""
    return classes if classes is not None else getattr(model, "classes", None)


def _classes(classes: Sequence[str] | None, k: int) -> list[str]:
    if classes is None:
        return [str(i) for i in range(k)]
    if len(classes) != k:
        raise CnnlabError(f"the model returns {k} scores but {len(classes)} class names were given")
    return [str(c) for c in classes]


def softmax(logits) -> np.ndarray:
    """Probabilities from logits, exactly as PyTorch computes them (float32, max-shifted exp / sum).

    Example:
        >>> softmax([0.0, 0.0]).tolist()
        [0.5, 0.5]
    """
    t = torch.as_tensor(np.asarray(logits, dtype=np.float32))
    return torch.softmax(t, dim=-1).numpy()


def softmax_steps(logits) -> dict:
    """Softmax spelled out for a learner: shift by the max, exponentiate, divide by the sum."""
    z = np.asarray(logits, dtype=np.float64)
    shifted = z - z.max()
    e = np.exp(shifted)
    return {
        "logits": z.tolist(),
        "max": float(z.max()),
        "exp": e.tolist(),
        "sum": float(e.sum()),
        "probabilities": (e / e.sum()).tolist(),
    }


def activations(
    model: nn.Module,
    image,
    *,
    classes: Sequence[str] | None = None,
    input_shape: tuple[int, int, int] | None = None,
    invert: bool | str = False,
    model_name: str | None = None,
) -> Activations:
    """Run ``model`` on one image, stage by stage, and keep every stage's output.

    Args:
        model: an ``nn.Sequential`` of named stages returning logits (any registered model).
        image: what `prepare_input` takes: a path, bytes, an (H, W[, C]) array or a (C, H, W) tensor.
        classes: class names in label order (default: those of a run's model from ``cl.load_run``, else
            "0", "1", ...).
        input_shape: the model's (C, H, W); images of another size or channel count are adapted.
        invert: invert the image (``"auto"``: when a grayscale image has a bright border).

    Returns:
        `Activations`: ``.layers`` (input, every stage, softmax), ``.prediction``, ``.to_json()``.

    Example:
        >>> import cnnlab as cl
        >>> acts = cl.explain.activations(cl.create_model("mlp"), np.zeros((28, 28)))
        >>> acts.layers[-1].kind, round(float(acts.layers[-1].values.sum()), 5)
        ('softmax', 1.0)
    """
    prepared = image if isinstance(image, PreparedInput) else prepare_input(image, input_shape, invert=invert)
    x = prepared.tensor.to(model_device(model))
    stages = named_stages(model)
    layers = [Stage("input", "input", prepared.tensor[0].numpy().copy(), "input image, pixels in 0..1")]
    with eval_mode(model), torch.inference_mode():
        try:
            for name, stage in stages:
                x = stage(x)  # e.g. conv1: (1, 64, 26, 26)
                layers.append(
                    Stage(
                        name, stage_kind(stage), x[0].float().cpu().numpy(), repr(stage), stage_params(stage)
                    )
                )
        except RuntimeError as exc:
            raise CnnlabError(
                f"the model cannot take an input of shape {tuple(prepared.tensor.shape[1:])}: {exc}"
            ) from None
    logits = layers[-1].values
    if logits.ndim != 1:
        raise CnnlabError(f"the model's last stage returns shape {logits.shape}; expected logits (K,)")
    probs = softmax(logits)
    taken = {s.name for s in layers}
    soft_name = "softmax" if "softmax" not in taken else "softmax_"
    layers.append(Stage(soft_name, "softmax", probs, "softmax(logits): exp(z_i) / sum_j exp(z_j)"))
    pred = Prediction(logits, probs, _classes(model_classes(model, classes), len(logits)))
    return Activations(
        layers,
        pred,
        prepared,
        model_name=model_name or type(model).__name__,
        params=sum(p.numel() for p in model.parameters()),
    )


def forward_logits(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Logits of a batch of prepared inputs, (B, C, H, W) -> float32 (B, K): one plain forward pass in
    evaluation mode (batch norm on its running statistics, dropout off), so each row depends on its own
    image only. What `predict_image` runs on one image and the web server on a micro-batch."""
    with eval_mode(model), torch.inference_mode():
        try:
            logits = model(x.to(model_device(model)))
        except RuntimeError as exc:
            raise CnnlabError(
                f"the model cannot take an input of shape {tuple(x.shape[1:])}: {exc}"
            ) from None
    if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
        raise CnnlabError(f"the model returns shape {tuple(logits.shape)}; expected logits (batch, K)")
    return logits.float().cpu().numpy()


def prediction(
    logits: np.ndarray, classes: Sequence[str] | None = None, probabilities: np.ndarray | None = None
) -> Prediction:
    """A `Prediction` from one image's logits (K,), and their `softmax` when already computed."""
    probs = softmax(logits) if probabilities is None else probabilities
    return Prediction(logits, probs, _classes(classes, len(logits)))


def predict_image(
    model: nn.Module,
    image,
    *,
    classes: Sequence[str] | None = None,
    input_shape: tuple[int, int, int] | None = None,
    invert: bool | str = False,
) -> tuple[Prediction, PreparedInput]:
    """Only the prediction (one plain forward pass): what /api/predict answers."""
    prepared = image if isinstance(image, PreparedInput) else prepare_input(image, input_shape, invert=invert)
    return prediction(forward_logits(model, prepared.tensor)[0], classes), prepared
