"""Shared set-up of the published-site tests (test_site_engine.py, test_site_page.py, test_a11y.py): small
folder datasets of synthetic pictures, runs of every built-in model (and a batch-norm spec model, a
normalize stage, an RGB resnet_f) with seeded weights saved by `cl.save_run` (no training: the engine must
agree with PyTorch whatever the weights), one site published from them by `cnnlab.publish`, served by
Python's own static file server (what a user runs: `python -m http.server`).

PYTEST_DONT_REWRITE: imported before pytest registers this module as a plugin."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab as cl
from cnnlab.engine import History
from cnnlab.web.live import free_port

GALLERY = 20
# run id -> (model or spec, folder, extra create_model arguments)
SITE_MODELS = {
    "mlp": ("mlp", "gray28", {}),
    "cnn1": ("cnn1", "gray28", {}),
    "cnn2": ("cnn2", "gray28", {"mean": [0.3], "std": [0.4]}),  # with a normalize stage
    "cnn4": ("cnn4", "gray28", {}),
    "fastcnn": ("fastcnn", "gray28", {}),
    "resnet_s": ("resnet_s", "gray28", {}),
    "speednet": ("speednet", "gray16", {}),
    "bnspec": (
        "conv8k5s2p2-bn-gelu-avgpool3s1-conv12psame-bn-silu-pool3s2-drop.1-dense16-bn-tanh",
        "gray28",
        {},
    ),
    "resnet_f": ("resnet_f", "rgb40", {}),
}
FOLDERS = {"gray28": (28, 1), "gray16": (16, 1), "rgb40": (40, 3)}


def _pictures(folder: Path, size: int, channels: int, seed: int) -> None:
    """Three classes of 60 pictures: a bright textured square, bar or ring on dark noise, of several sizes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for k, name in enumerate(("square", "bar", "ring")):
        (folder / name).mkdir(parents=True)
        for i in range(60):
            img = rng.integers(0, 70, (size, size, 3), dtype=np.uint8)
            cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
            r = rng.integers(size // 8, size // 4 + 1)
            if k == 0:
                mask = (abs(yy - cy) < r) & (abs(xx - cx) < r)
            elif k == 1:
                mask = abs(xx - cx) < max(1, r // 2)
            else:
                d = np.hypot(yy - cy, xx - cx)
                mask = (d > r - 2) & (d < r + 1)
            # textured, not flat: a flat patch gives near-equal conv outputs whose max-pool winner depends on
            # float32 summation order (PyTorch's or the engine's: both correct subgradients for saliency)
            colour = rng.integers(150, 236, 3)
            img[mask] = np.clip(colour + rng.integers(-20, 21, (int(mask.sum()), 3)), 0, 255).astype(np.uint8)
            pic = Image.fromarray(img if channels == 3 else img.mean(axis=2).astype(np.uint8))
            pic.save(folder / name / f"{i}.png")


def _perturb(model: torch.nn.Module, seed: int) -> None:
    """Batch-norm statistics and scales away from their initial 0/1 (and residual blocks' zero-initialised
    last scale away from 0), so every op of the engine has something to get wrong."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)


def make_site_runs(base: Path) -> Path:
    """Folder datasets and one seeded run per entry of SITE_MODELS under ``base``; the runs' folder."""
    runs = base / "runs"
    if runs.is_dir():
        return runs
    for i, (name, (size, channels)) in enumerate(FOLDERS.items()):
        _pictures(base / "data" / name, size, channels, seed=i)
    for seed, (run_id, (model, folder, extra)) in enumerate(SITE_MODELS.items()):
        size, channels = FOLDERS[folder]
        data = cl.load_data(str(base / "data" / folder), image_size=size, channels=channels)
        net = cl.create_model(
            model, input_shape=data.input_shape, num_classes=len(data.classes), seed=seed, **extra
        )
        _perturb(net, seed)
        cl.save_run(runs / run_id, net, History(), data=data, config={"model": model})
    return runs


@contextlib.contextmanager
def static_server(folder: Path) -> Iterator[str]:
    """``python -m http.server`` on ``folder`` in a thread: its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="session")
def site_runs(tmp_path_factory) -> Path:
    return make_site_runs(tmp_path_factory.getbasetemp() / "site-runs")


@pytest.fixture(scope="session")
def site(site_runs, tmp_path_factory) -> Path:
    from cnnlab.publish import publish

    out = tmp_path_factory.mktemp("published") / "site"
    publish([site_runs / r for r in SITE_MODELS], out, gallery=GALLERY)
    return out


@pytest.fixture(scope="session")
def site_url(site) -> Iterator[str]:
    with static_server(site) as url:
        yield url


def open_site(pg, url: str, query: str = "") -> None:
    """Load the published page and wait for its first result."""
    pg.goto(url + "/" + (f"?{query}" if query else ""))
    pg.wait_for_selector("body[data-ready='1']", timeout=20000)
    pg.wait_for_function("() => Number(document.body.dataset.rendered || 0) > 0", timeout=30000)
