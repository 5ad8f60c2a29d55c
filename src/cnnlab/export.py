"""Export a trained run to ONNX or TorchScript, with its preprocessing written into the file and a
parity check against PyTorch.

The exported graph takes what every cnnlab model takes: float32 pixels in 0..1, shape (batch, C, H, W),
with a dynamic batch axis, and returns logits (apply softmax for probabilities). Per-channel
normalisation, when the run has it, is the model's own `normalize` stage, so it is inside the graph.
The metadata (ONNX `metadata_props`; TorchScript extra file `cnnlab.json`) says all of this: input name
and shape, channels, image size, resize mode, mean/std, class names.

TorchScript is deprecated by PyTorch (2.13 warns on `torch.jit.script`/`load`) but still the one format
that C++ `torch::jit::load` and older deployments read; ONNX is the recommended target.

ONNX uses PyTorch's TorchScript-based exporter (`dynamo=False`): the newer torch.export-based one needs
the `onnxscript` package, which the `export` extra does not pull in; for these Sequential CNNs both give
the same graph.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnlab.atomic import atomic_path
from cnnlab.errors import CnnlabError
from cnnlab.models.normalize import Normalize
from cnnlab.run.folder import Run, load_run

__all__ = ["FORMATS", "ExportResult", "export_run", "metadata_for", "parity"]

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
INPUT_NAME, OUTPUT_NAME = "pixels", "logits"
MAX_ABS_DIFF = 1e-4  # what the parity check must reach (logits)
OPSET = 17


@dataclass
class ExportResult:
    path: Path
    format: str
    metadata: dict
    parity: dict | None  # {"n", "max_abs_diff", "argmax_agreement", "source"} or None when skipped
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "path": str(self.path),
            "format": self.format,
            "parity": self.parity,
            "metadata": self.metadata,
            "seconds": round(self.seconds, 2),
            "notes": self.notes,
        }


def metadata_for(run) -> dict:
    """What a consumer of the exported file needs to feed it correctly (all values are strings)."""
    c, h, w = (int(v) for v in run.input_shape)
    norm = next((m for m in run.model.modules() if isinstance(m, Normalize)), None)
    mean = norm.mean.flatten().tolist() if norm is not None else None
    std = norm.std.flatten().tolist() if norm is not None else None
    color = "grayscale (L = 0.299 R + 0.587 G + 0.114 B)" if c == 1 else "RGB"
    options = run.image_options  # what predict, explain and the page do: consumers should do the same
    resize = options["resize"]
    bars = "black" if options["fill"] == "black" else "the image's border colour (median of its edge pixels)"
    how = {
        "pad": f"scale the longer side to fit, pad the rest with {bars}, centred",
        "crop": "scale the shorter side to fit, cut the centre square",
        "stretch": "stretch to the square",
    }[resize]
    invert = (
        "; a dark object on a light background (mean edge brightness above half) is inverted first, as the "
        "training images are light on black"
        if options["light_on_dark"] and c == 1
        else ""
    )
    inside = (
        "per-channel (x - mean) / std is applied inside the model"
        if norm is not None
        else "no normalisation beyond /255"
    )
    return {
        "producer": "cnnlab",
        "model": str(run.config.get("model")),
        "input_name": INPUT_NAME,
        "input_shape": json.dumps(["batch", c, h, w]),
        "input_dtype": "float32",
        "output_name": OUTPUT_NAME,
        "output": "logits (batch, num_classes); softmax gives probabilities",
        "channels": str(c),
        "image_size": json.dumps([h, w]),
        "resize": resize,
        "mean": json.dumps(mean),
        "std": json.dumps(std),
        "classes": json.dumps(list(run.classes)),
        "preprocessing": (
            f"decode, convert to {color}, resize to {h}x{w} ({how}), divide by 255 to float32 0..1, "
            f"layout (batch, {c}, {h}, {w}); {inside}{invert}"
        ),
    }


def export_run(
    run_or_path,
    *,
    format: str = "onnx",
    out: str | os.PathLike[str] | None = None,
    parity_images: int = 1000,
    data_dir: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Export a run's model; check it against PyTorch on `parity_images` test images (0: no check).

    The file is written to a temp name beside `out`, checked, and only then renamed: a failed export
    or a failed parity check leaves nothing behind.

    Args:
        run_or_path: a run folder or a `Run` from `load_run`.
        format: `"onnx"` or `"torchscript"`.
        out: the file to write [`<run>/model.onnx` or `<run>/model.torchscript.pt`].
        parity_images: images of the run's dataset to compare on: the test split first, then val and
            train when it is smaller (random pixels if the dataset cannot be loaded here, with a note).
        data_dir: where the run's built-in dataset lives, if not where it was trained.
        overwrite: replace an existing `out`.

    Raises:
        CnnlabError: unknown format, existing output, missing onnx/onnxruntime, or parity worse than
            1e-4 max abs logit difference / 100% argmax agreement.

    Example:
        >>> r = export_run("runs/cnn2", format="onnx")  # doctest: +SKIP
        >>> r.parity["max_abs_diff"] <= 1e-4, r.parity["argmax_agreement"]  # doctest: +SKIP
        (True, 1.0)
    """
    if format not in FORMATS:
        raise CnnlabError(f"Unknown export format {format!r}. Available: {', '.join(FORMATS)}")
    if isinstance(parity_images, bool) or not isinstance(parity_images, int) or parity_images < 0:
        raise CnnlabError(f"parity_images must be an integer >= 0, got {parity_images!r}")
    if format == "onnx":
        _need_onnx()
    run = run_or_path if isinstance(run_or_path, Run) else load_run(run_or_path)
    target = Path(out) if out is not None else run.path / f"model{FORMATS[format]}"
    if target.is_dir():
        raise CnnlabError(
            f"--out {target} is a folder; give a file name such as {target / ('model' + FORMATS[format])}"
        )
    if target.exists() and not overwrite:
        raise CnnlabError(f"{target} already exists; pass --overwrite to replace it or choose another --out")
    t0 = time.perf_counter()
    model = run.model.to("cpu").eval()
    meta = metadata_for(run)
    result = ExportResult(target, format, meta, None)
    try:
        with atomic_path(target) as tmp:  # written only when the parity check passes
            _write_checked(run, model, tmp, format, meta, result, parity_images, data_dir)
    except OSError as exc:
        raise CnnlabError(f"Cannot write {target}: {exc.strerror or exc}") from None
    result.seconds = time.perf_counter() - t0
    return result


def _write_checked(
    run, model, tmp: Path, format: str, meta: dict, result, parity_images: int, data_dir
) -> None:
    c, h, w = (int(v) for v in run.input_shape)
    example = torch.rand(2, c, h, w)
    if format == "onnx":
        _export_onnx(model, example, tmp, meta)
    else:
        _export_torchscript(model, tmp, meta)
    if parity_images:
        x, source = _parity_inputs(run, parity_images, data_dir)
        result.parity = {**parity(model, tmp, format, x), "source": source}
        if source.startswith("random"):
            result.notes.append(f"parity measured on {source}")
        p = result.parity
        if p["max_abs_diff"] > MAX_ABS_DIFF or p["argmax_agreement"] < 1.0:
            raise CnnlabError(
                f"Exported {format} model disagrees with PyTorch on {p['n']} images: max abs logit "
                f"difference {p['max_abs_diff']:.3g} (limit {MAX_ABS_DIFF:g}), argmax agreement "
                f"{p['argmax_agreement']:.2%}; nothing was written (--parity-images 0 skips the check)"
            )


def _need_onnx() -> None:
    try:
        # deferred: onnx and onnxruntime are the optional `export` extra (onnx ~0.8 s)
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise CnnlabError(
            "ONNX export needs the onnx and onnxruntime packages: pip install 'cnnlab[export]'"
        ) from None


def _export_onnx(model: nn.Module, example: torch.Tensor, path: Path, meta: dict) -> None:
    # deferred: the optional `export` extra
    import onnx

    with warnings.catch_warnings():
        # The legacy exporter announces its own deprecation; see the module docstring for why it is used.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
        )
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = meta["preprocessing"]
    proto.producer_name = "cnnlab"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _export_torchscript(model: nn.Module, path: Path, meta: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(model)
        torch.jit.save(scripted, str(path), _extra_files={"cnnlab.json": json.dumps(meta, indent=2)})


def _parity_inputs(run, n: int, data_dir) -> tuple[torch.Tensor, str]:
    """The first `n` test images of the run's dataset as 0..1 floats (topped up with val and train images
    when the test split is smaller), else uniform random pixels."""
    cfg = run.config
    c, h, w = (int(v) for v in run.input_shape)
    why = ""
    try:
        data = run.load_dataset(data_dir=data_dir)
        # The test split first; a small dataset's test split is topped up with val, then train images.
        parts, counts, left = [], [], n
        for name in ("test", "val", "train"):
            take = getattr(data, name).images[:left]
            if len(take):
                parts.append(take)
                counts.append(f"{len(take)} {name}")
                left -= len(take)
        images = torch.cat(parts) if parts else torch.empty(0)
        if len(images) and tuple(images.shape[1:]) == (c, h, w):
            what = "test images" if len(counts) == 1 else f"images ({' + '.join(counts)})"
            return images.float() / 255.0, f"{len(images)} {what} of {cfg['data']}"
        why = "its images do not fit the model"
    except CnnlabError as exc:
        why = str(exc)
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, c, h, w, generator=g), f"random pixels ({n} images; dataset not available: {why})"


def parity(
    model: nn.Module, path: str | os.PathLike[str], format: str, x: torch.Tensor, *, batch: int = 250
) -> dict:
    """Max abs logit difference and argmax agreement of the exported file vs `model` (eager, CPU) on `x`.

    Batches of `batch` plus a final partial one exercise the dynamic batch axis.
    """
    model = model.eval()
    if format == "onnx":
        # deferred: the optional `export` extra
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

        def run(xb: torch.Tensor) -> np.ndarray:
            return session.run([OUTPUT_NAME], {INPUT_NAME: xb.numpy()})[0]
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            loaded = torch.jit.load(str(path), map_location="cpu").eval()

        def run(xb: torch.Tensor) -> np.ndarray:
            with torch.no_grad():
                return loaded(xb).numpy()

    max_diff, agree = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(x), batch):
            xb = x[start : start + batch].contiguous()
            ref = model(xb).numpy()
            got = run(xb)
            if got.shape != ref.shape:
                raise CnnlabError(f"Exported model returned shape {got.shape}, PyTorch {ref.shape}")
            diff = np.abs(got.astype(np.float64) - ref)
            max_diff = max(max_diff, float(diff.max()) if np.isfinite(diff).all() else float("inf"))
            agree += int((got.argmax(1) == ref.argmax(1)).sum())
    n = len(x)
    return {"n": n, "max_abs_diff": max_diff, "argmax_agreement": agree / max(n, 1)}
