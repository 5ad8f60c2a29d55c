"""Keras-style model summary: one row per named stage with its output shape and parameter count,
then total / trainable / non-trainable parameters and the estimated FLOPs per image.

Shapes come from a real forward pass (one zero image, eval mode), so they are right by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call

from cnnlab.notebook import summary_html


@dataclass
class StageRow:
    name: str
    kind: str  # the module's class name, e.g. Conv2d
    output_shape: tuple[int, ...]  # without the batch axis
    params: int
    flops: int  # multiply-adds x 2 of the conv and dense layers inside the stage


@dataclass
class Summary:
    rows: list[StageRow]
    input_shape: tuple[int, ...]
    total_params: int
    trainable_params: int
    non_trainable_params: int
    flops: int
    buffers: int = 0
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "input_shape": list(self.input_shape),
            "layers": [
                {
                    "name": r.name,
                    "kind": r.kind,
                    "output_shape": list(r.output_shape),
                    "params": r.params,
                    "flops": r.flops,
                }
                for r in self.rows
            ],
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "flops_per_image": self.flops,
        }

    def _repr_html_(self) -> str:
        return summary_html(self)

    def __str__(self) -> str:
        head = ("Layer (type)", "Output Shape", "Param #")
        body = [(f"{r.name} ({r.kind})", str((None, *r.output_shape)), f"{r.params:,}") for r in self.rows]
        widths = [max(len(x[i]) for x in [head, *body]) + 2 for i in range(3)]
        line = "=" * sum(widths)

        def fmt(cols: tuple[str, str, str]) -> str:
            return "".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()

        out = [fmt(head), line, *(fmt(b) for b in body), line]
        out += [
            f"Total params: {self.total_params:,}",
            f"Trainable params: {self.trainable_params:,}",
            f"Non-trainable params: {self.non_trainable_params:,}",
            f"Estimated FLOPs per image: {_human(self.flops)} ({self.flops:,})",
        ]
        return "\n".join(out)


def _human(n: float) -> str:
    for unit in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.1f}{unit}" if unit else f"{n:.0f}"
        n /= 1000
    return f"{n:.1f}P"


def _layer_flops(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        k = module.kernel_size[0] * module.kernel_size[1] * (module.in_channels // module.groups)
        return 2 * k * out[0].numel()
    if isinstance(module, nn.Linear):
        return 2 * module.in_features * module.out_features
    return 0


def _under(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``tensors`` whose names start with ``prefix``, with the prefix dropped."""
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def summary(model: nn.Module, input_shape: tuple[int, ...] = (1, 28, 28)) -> Summary:
    """Summarise ``model`` (an ``nn.Sequential`` of named stages) for images of ``input_shape`` (C, H, W).

    Example:
        >>> import cnnlab as cl
        >>> s = cl.summary(cl.create_model("cnn2"), (1, 28, 28))
        >>> s.total_params, s.rows[0].output_shape
        (485514, (64, 26, 26))
    """
    stages = list(model.named_children()) if isinstance(model, nn.Sequential) else [("model", model)]
    flops: dict[int, int] = {}
    hooks = []
    for i, (_, stage) in enumerate(stages):
        for sub in stage.modules():
            if isinstance(sub, (nn.Conv2d, nn.Linear)):
                hooks.append(
                    sub.register_forward_hook(
                        lambda m, a, o, i=i: flops.__setitem__(i, flops.get(i, 0) + _layer_flops(m, a[0], o))
                    )
                )
    was_training = model.training
    # shapes and FLOPs come from a forward pass on the meta device: no activation is ever allocated, so a
    # summary of a huge layer spec at a huge image size costs nothing (its real activations could not fit)
    meta = {
        k: torch.empty_like(v, device="meta") for k, v in [*model.named_parameters(), *model.named_buffers()]
    }
    x = torch.zeros(1, *input_shape, device="meta")
    rows = []
    model.eval()
    try:
        with torch.no_grad():
            for i, (name, stage) in enumerate(stages):
                prefix = f"{name}." if stages[0][0] != "model" else ""
                x = functional_call(stage, _under(meta, prefix), (x,))
                rows.append(
                    StageRow(
                        name,
                        type(stage).__name__,
                        tuple(x.shape[1:]),
                        sum(p.numel() for p in stage.parameters()),
                        flops.get(i, 0),
                    )
                )
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return Summary(rows, tuple(input_shape), total, trainable, total - trainable, sum(r.flops for r in rows))
