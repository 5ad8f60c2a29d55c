"""Shared set-up of the browser tests (test_browser.py, test_page_flow.py, test_a11y.py): a folder of small
really-trained runs, one uvicorn server and one headless chromium for the whole session, a fresh page per
test module, and the page's own readiness signals (body[data-ready], body[data-rendered] counting renders).

The test modules load the fixtures with ``pytest_plugins = ["browser_support"]`` and import the helpers.
PYTEST_DONT_REWRITE: the helpers are imported before pytest registers this module as a plugin."""

from __future__ import annotations

import contextlib
import io
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab as cl
from cnnlab.web.live import CHROMIUM, CHROMIUM_ARGS, free_port

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
AXE = Path(__file__).resolve().parent / "js" / "node_modules" / "axe-core" / "axe.min.js"
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}


def _train(path: Path, cfg: cl.TrainConfig, data_dir=None) -> Path:
    if not (path / "model.safetensors").is_file():
        cl.train(cfg, out=path, data_dir=data_dir, progress=False, overwrite=True)
    return path


def trained_run(tmp_path_factory, fmnist_dir, model: str = "cnn2", limit: int = 2000) -> Path:
    """A small really-trained Fashion-MNIST run, trained once per test session."""
    name = model if limit == 2000 else f"{model}-{limit}"
    path = tmp_path_factory.getbasetemp() / "trained-runs" / name.replace("-", "_").replace(".", "_")
    cfg = cl.TrainConfig(model=model, epochs=1, limit=limit, batch_size=64, patience=None)
    return _train(path, cfg, fmnist_dir)


def rgb_run(tmp_path_factory) -> Path:
    """A colour (RGB, 16x16) run on a folder of synthetic pictures: red, green and blue blobs."""
    base = tmp_path_factory.getbasetemp() / "trained-runs"
    folder = base / "rgb-folder"
    if not folder.is_dir():
        rng = np.random.default_rng(0)
        for k, name in enumerate(("red", "green", "blue")):
            (folder / name).mkdir(parents=True)
            for i in range(24):
                img = rng.integers(0, 60, (20, 20, 3), dtype=np.uint8)
                y, x = rng.integers(2, 10, 2)
                img[y : y + 8, x : x + 8, k] = 230
                Image.fromarray(img).save(folder / name / f"{i}.png")
    cfg = cl.TrainConfig(
        model="conv8-pool-flatten", data=str(folder), image_size=16, channels=3, epochs=1, batch_size=16,
        patience=None,
    )  # fmt: skip
    return _train(base / "rgb", cfg)


def png(array: np.ndarray, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="session")
def sync_playwright():
    pw = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"chromium not found at {CHROMIUM}")
    return pw.sync_playwright


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory, fmnist_dir):
    """cnn2 (2,000 test images), a residual net (block stages; 1,000), the tutorial's MLP, a spec with a
    batch-norm stage, and an RGB folder run."""
    root = tmp_path_factory.mktemp("browser-runs")
    shutil.copytree(trained_run(tmp_path_factory, fmnist_dir), root / "cnn2")
    shutil.copytree(trained_run(tmp_path_factory, fmnist_dir, "resnet_s", limit=1000), root / "resnet")
    shutil.copytree(trained_run(tmp_path_factory, fmnist_dir, "mlp"), root / "mlp")
    shutil.copytree(
        trained_run(tmp_path_factory, fmnist_dir, "conv8-bn-pool-flatten", limit=1000), root / "bn"
    )
    shutil.copytree(rgb_run(tmp_path_factory), root / "rgb")
    return root


@contextlib.contextmanager
def served(app) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port in a thread of this process: its base URL."""
    uvicorn = pytest.importorskip("uvicorn")
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def server(sync_playwright, runs_root, fmnist_dir):
    from cnnlab.web import create_app

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with served(create_app(runs_root, data_dir=fmnist_dir)) as url:
        yield url, runs_root
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def browser(sync_playwright):
    # per module: Playwright's sync API keeps an event loop running in this thread while it is open, and
    # later tests that start their own (asyncio.run) must not find one
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser, server):
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport=DESKTOP, locale="en-US")
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.errors = errors
    yield pg
    context.close()


def rendered(page) -> int:
    return int(page.evaluate("() => Number(document.body.dataset.rendered || 0)"))


def wait_render(page, after: int) -> None:
    page.wait_for_function(f"() => Number(document.body.dataset.rendered || 0) > {after}", timeout=20000)


def fresh(page, url: str, query: str = "model=cnn2") -> None:
    """Load the page (on cnn2, or as `query` says) and wait for its first result."""
    page.goto(url + "/" + (f"?{query}" if query else ""))
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    wait_render(page, 0)
    page.errors.clear()


def switch_model(page, model: str) -> None:
    n = rendered(page)
    page.select_option("#model", model)
    wait_render(page, n)


def shown(page) -> dict:
    return page.evaluate(
        """() => ({model: cnnlab.doc.model.id, source: cnnlab.doc.input.source,
                   columns: [...document.querySelectorAll('#network .col')].map(c => c.dataset.layer)})"""
    )


def open_detail(page, selector: str, kind: str | None = None) -> None:
    page.click(selector)
    page.wait_for_selector("#detail:not([hidden])" + (f"[data-kind='{kind}']" if kind else ""), timeout=15000)


def stages(root: Path, model: str) -> list[str]:
    return ["input", *[n for n, _ in cl.load_run(root / model).model.named_children()], "softmax"]
