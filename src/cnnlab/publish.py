"""``cnnlab publish``: runs -> a static site that explains them in the browser, no Python at view time.

The site is the explainer page of ``cnnlab serve`` (the same files in ``web/static/``) with a second data
source: ``site.json`` lists the models and each ``models/<id>/`` holds what the page's Web Worker engine
needs (``web/static/engine/``):

- ``model.json``: the /api/models entry, the model's stages as an op tree (`cnnlab.explain.graph`) with
  each stage's kind, module and parameters as /api/explain gives them, how an image file becomes its
  input (`Run.image_options`), the Grad-CAM stage and the gallery's labels;
- ``model.safetensors`` (float32, only the tensors the engine reads) and ``model.safetensors.sha256``,
  which the page checks before it runs anything;
- ``gallery.bin``: the first N images of the run's own test split, uint8 (N, C, H, W), exactly what the
  model was tested on.

Beside ``site.json``, ``playground.json`` and ``sample.png`` (the named kernels and the gray sample photo)
let the page's filter playground work in the browser too.

Everything is written to a temporary folder beside the target and renamed into place at the end, so a
refused run, a damaged one or a missing test set leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors.torch import save

from cnnlab.errors import CnnlabError
from cnnlab.explain.data import run_test_split
from cnnlab.explain.graph import engine_stages
from cnnlab.explain.heatmaps import default_layer
from cnnlab.explain.stages import named_stages, stage_kind, stage_params
from cnnlab.filters import KERNEL_INFO, KERNELS, sample_image
from cnnlab.models import count_params
from cnnlab.run.folder import load_run
from cnnlab.web.registry import RunEntry

SITE_SCHEMA = "cnnlab.site/1"
STATIC = Path(__file__).parent / "web" / "static"
_SERVED_ONLY = re.compile(r"\s*<a [^>]*data-served-only[^>]*>.*?</a>")


@dataclass
class Published:
    out: Path
    models: list[str]
    bytes: int


def _site_index() -> str:
    """index.html for a static host: relative paths (a GitHub Pages site lives under /<repo>/), the site
    marker the page reads to choose its data source, and no links to the server's API docs."""
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    html = html.replace('"/static/', '"static/')
    html = _SERVED_ONLY.sub("", html)
    return html.replace("<head>", '<head>\n  <meta name="cnnlab-site" content="site.json">', 1)


PLAYGROUND_KERNEL = 7  # the largest named kernel the page's playground offers


def _write_playground(folder: Path) -> None:
    """The filter playground's named kernels and gray sample photo: a static site filters in the browser
    (web/static/filterlocal.js) what `cnnlab serve` filters at /api/filter. No sample photo here (an odd
    scikit-image install): the playground then filters the page's own input only."""
    kernels = [
        {"name": n, "description": i.description, "source": i.source, "matrix": KERNELS[n].tolist()}
        for n, i in KERNEL_INFO.items()
        if max(KERNELS[n].shape) <= PLAYGROUND_KERNEL
    ]
    (folder / "playground.json").write_text(json.dumps({"kernels": kernels}), encoding="utf-8")
    try:
        gray = sample_image(gray=True)
    except CnnlabError:
        return
    Image.fromarray(np.clip(np.round(gray * 255), 0, 255).astype(np.uint8)).save(
        folder / "sample.png", optimize=True
    )


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CnnlabError(f"{out} already holds files; publish into a new or empty folder")
    if not out.parent.is_dir():
        raise CnnlabError(f"{out.parent} does not exist; create it first")


def _ids(paths: Sequence[Path]) -> list[str]:
    ids: list[str] = []
    for p in paths:
        base = re.sub(r"[^A-Za-z0-9_.-]+", "-", p.resolve().name).strip(".-") or "run"
        name, i = base, 2
        while name in ids:
            name, i = f"{base}-{i}", i + 1
        ids.append(name)
    return ids


def publish(
    runs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    gallery: int = 100,
    data_dir: str | os.PathLike | None = None,
) -> Published:
    """Write the static site for ``runs`` to ``out`` (a new or empty folder).

    Raises:
        CnnlabError: a run that is damaged or has a stage the browser engine cannot run, a test split
        smaller than ``gallery`` or not available here, or an ``out`` that holds files. Nothing is
        written then.

    Example:
        >>> cl.publish(["runs/cnn2"], "site", gallery=100)  # doctest: +SKIP
    """
    if not runs:
        raise CnnlabError("give at least one run folder")
    if gallery < 1:
        raise CnnlabError(f"--gallery must be at least 1, got {gallery}")
    target = Path(out)
    _check_out(target)
    paths = [Path(r) for r in runs]
    checked = [_checked(p, i, gallery, data_dir) for p, i in zip(paths, _ids(paths), strict=True)]
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-publishing-", dir=target.parent))
    try:
        shutil.copytree(STATIC, tmp / "static", ignore=shutil.ignore_patterns("apidocs.*", "*.md"))
        (tmp / "index.html").write_text(_site_index(), encoding="utf-8")
        _write_playground(tmp)
        entries = [_write_model(c, tmp / "models" / c[1]["model"]["id"]) for c in checked]
        site = {"schema": SITE_SCHEMA, "models": entries, "unavailable": []}
        (tmp / "site.json").write_text(json.dumps(site, indent=1), encoding="utf-8")
        (tmp / ".nojekyll").write_text("", encoding="utf-8")  # GitHub Pages: serve the files as they are
        size = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
        if target.exists():
            target.rmdir()  # empty (checked above)
        os.rename(tmp, target)
        os.chmod(target, 0o755)  # mkdtemp made it 0700
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Published(target, [e["id"] for e in entries], size)


def _checked(run_path: Path, model_id: str, gallery: int, data_dir) -> tuple:
    """(run, model document, gallery images, labels) of one run, every refusal checked; nothing written."""
    run = load_run(run_path)
    try:
        doc = model_document(run, model_id)
    except CnnlabError as exc:
        raise type(exc)(f"{run_path}: {exc}") from None
    try:
        split, _ = run_test_split(run.config, data_dir=data_dir)
    except CnnlabError as exc:
        raise CnnlabError(
            f"{run_path}: its test split is not available here ({exc}); pass --data-dir"
        ) from None
    n = len(split.labels)
    if gallery > n:
        raise CnnlabError(f"{run_path}: --gallery {gallery} is larger than its test split ({n} images)")
    images = np.ascontiguousarray(np.asarray(split.images[:gallery]))
    if images.dtype != np.uint8:  # test splits hold uint8 pixels; anything else is not what was tested
        raise CnnlabError(f"{run_path}: its test images are {images.dtype}, expected uint8")
    doc["gallery"] = {
        "file": "gallery.bin",
        "count": gallery,
        "shape": list(images.shape[1:]),
        "labels": [int(v) for v in np.asarray(split.labels[:gallery])],
        "test_size": n,
    }
    return run, doc, images


def _write_model(checked: tuple, folder: Path) -> dict:
    """One run's files; its /api/models entry (with where they are)."""
    run, doc, images = checked
    folder.mkdir(parents=True)
    (folder / "gallery.bin").write_bytes(images.tobytes())
    weights = engine_weights(run.model, doc["stages"])
    (folder / "model.safetensors").write_bytes(weights)
    digest = hashlib.sha256(weights).hexdigest()
    (folder / "model.safetensors.sha256").write_text(f"{digest}  model.safetensors\n", encoding="utf-8")
    doc["weights"] = {"file": "model.safetensors", "sha256": "model.safetensors.sha256"}
    (folder / "model.json").write_text(json.dumps(doc), encoding="utf-8")
    return {**doc["entry"], "path": f"models/{doc['model']['id']}/"}


def model_document(run, model_id: str) -> dict:
    """What the page's engine needs to know of one loaded run, weights and gallery aside."""
    ops = engine_stages(run.model)  # Unsupported, naming the stage, before anything is written
    stages = [
        {"name": n, "kind": stage_kind(m), "module": repr(m), "params": stage_params(m), "ops": o["ops"]}
        for (n, m), o in zip(named_stages(run.model), ops, strict=True)
    ]
    try:
        cam_layer: str | None = default_layer(run.model, run.input_shape)
    except CnnlabError:
        cam_layer = None  # an MLP: saliency only
    params = count_params(run.model)
    entry = RunEntry(model_id, run.path, run.config, {**run.results, "params": params}, (0, 0)).describe()
    return {
        "schema": SITE_SCHEMA,
        "entry": entry,
        "model": {
            "id": model_id,
            "name": str(run.config.get("model")),
            "input_shape": list(run.input_shape),
            "classes": run.classes,
            "params": params,
        },
        "image": run.image_options,
        "stages": stages,
        "gradcam_layer": cam_layer,
    }


def _keys(ops, out: set[str]) -> set[str]:
    if isinstance(ops, dict):
        for k, v in ops.items():
            if k in ("w", "b", "mean", "var") and isinstance(v, str):
                out.add(v)
            else:
                _keys(v, out)
    elif isinstance(ops, list):
        for v in ops:
            _keys(v, out)
    return out


def engine_weights(model, stages: list[dict]) -> bytes:
    """The tensors the op trees name, as float32 safetensors (sorted keys: the same model, the same bytes)."""
    state = model.state_dict()
    wanted = _keys([s["ops"] for s in stages], set())
    missing = sorted(wanted - set(state))
    if missing:
        raise CnnlabError(f"the model has no tensor {missing[0]!r}; is the run damaged?")
    return save({k: state[k].detach().float().cpu().contiguous() for k in sorted(wanted)})
