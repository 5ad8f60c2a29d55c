"""The explainer page in a real browser (Playwright driving Debian's chromium): load it, upload an image,
see every stage rendered, check the page's numbers against PyTorch, open a conv detail view, draw on the
sketch pad and get a prediction, use the filter playground. Screenshots go to test-artifacts/."""

from __future__ import annotations

import io
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab as cl

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def trained_run(tmp_path_factory, fmnist_dir, model: str = "cnn2") -> Path:
    """A small really-trained run, trained once per test session (shared through the base temp dir)."""
    path = tmp_path_factory.getbasetemp() / "trained-runs" / model
    if not (path / "model.safetensors").is_file():
        cfg = cl.TrainConfig(model=model, epochs=1, limit=2000, batch_size=64, patience=None)
        cl.train(cfg, out=path, data_dir=fmnist_dir, progress=False, overwrite=True)
    return path


@pytest.fixture(scope="module")
def sync_playwright():
    pw = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"chromium not found at {CHROMIUM}")
    return pw.sync_playwright


@pytest.fixture(scope="module")
def server(sync_playwright, tmp_path_factory, fmnist_dir):
    uvicorn = pytest.importorskip("uvicorn")
    from cnnlab.web import create_app

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("browser-runs")
    shutil.copytree(trained_run(tmp_path_factory, fmnist_dir), root / "cnn2")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(root, data_dir=fmnist_dir)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}", root
    srv.should_exit = True
    thread.join(timeout=10)
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def page(sync_playwright, server):
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1500, "height": 1000})
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        pg.errors = errors
        yield pg
        browser.close()


def _rendered(page) -> int:
    return int(page.evaluate("() => Number(document.body.dataset.rendered || 0)"))


def _wait_render(page, after: int) -> None:
    page.wait_for_function(f"() => Number(document.body.dataset.rendered || 0) > {after}", timeout=15000)


EMPTY_COLUMNS = """() => [...document.querySelectorAll('#network .col')].filter(col => {
  if (col.dataset.kind === 'softmax') return col.querySelectorAll('.bar').length === 0;
  const canvases = [...col.querySelectorAll('canvas')];
  return !canvases.length || !canvases.every(c => {
    if (!c.width || !c.height) return false;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) return true;
    return false;
  });
}).map(col => col.dataset.layer)"""


def test_page_end_to_end(page, server):
    url, root = server
    t0 = time.perf_counter()
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready='1']", timeout=10000)
    interactive = time.perf_counter() - t0
    _wait_render(page, 0)  # a random test image, explained
    assert interactive < 5, f"page took {interactive:.2f} s to become interactive"
    page.screenshot(path=str(ARTIFACTS / "01-loaded.png"), full_page=True)

    # upload an image: every stage is drawn
    buf = io.BytesIO()
    img = np.full((40, 32), 250, dtype=np.uint8)
    img[8:34, 6:26] = 30  # a dark block on white, as a photo would be
    Image.fromarray(img).save(buf, format="PNG")
    n = _rendered(page)
    page.set_input_files(
        "#file", files=[{"name": "block.png", "mimeType": "image/png", "buffer": buf.getvalue()}]
    )
    _wait_render(page, n)
    run = cl.load_run(root / "cnn2")
    stages = ["input", *[name for name, _ in run.model.named_children()], "softmax"]
    columns = page.eval_on_selector_all("#network .col", "cols => cols.map(c => c.dataset.layer)")
    assert columns == stages
    assert page.evaluate(EMPTY_COLUMNS) == []
    page.screenshot(path=str(ARTIFACTS / "02-uploaded.png"), full_page=True)

    # fidelity: the page holds exactly PyTorch's numbers
    acts = cl.explain.activations(run.model, buf.getvalue(), input_shape=run.input_shape, invert="auto")
    for layer in ("input", "conv1", "pool2", "output"):
        got = page.evaluate(f"() => Array.from(window.cnnlab.layers.find(l => l.name === '{layer}').data)")
        assert np.array_equal(np.asarray(got, dtype=np.float32), acts[layer].values.ravel()), layer
    assert page.inner_text("#pred-label") == run.classes[acts.prediction.index]
    assert page.inner_text("#pred-prob") == f"{100 * acts.prediction.probability:.1f}%"

    # a conv detail view: the dot product shown equals the model's value
    page.click(".col[data-layer='conv2'] canvas.map >> nth=1")
    page.wait_for_selector("#detail .sum[data-total]", timeout=10000)
    out = page.locator("#detail canvas.big-map").last
    box = out.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.6)
    total = float(page.get_attribute("#detail .sum", "data-total"))
    value = float(page.get_attribute("#detail .sum", "data-output"))
    assert abs(total - value) <= 1e-4 * max(1.0, abs(value))
    assert "✓" in page.inner_text("#detail .sum")
    assert page.locator("#detail table.numbers").count() == 3  # patch, kernel, products
    page.locator("#detail").screenshot(path=str(ARTIFACTS / "03-conv-detail.png"))

    # pooling and softmax details open too
    page.click(".col[data-layer='pool1'] canvas.map >> nth=0")
    page.wait_for_selector("#detail[data-kind='maxpool'] td.chosen", timeout=10000)
    page.click(".col[data-layer='softmax'] .bar >> nth=0")
    page.wait_for_selector("#detail table.softmax", timeout=10000)
    page.locator("#detail").screenshot(path=str(ARTIFACTS / "04-softmax-detail.png"))

    # draw on the sketch pad: a prediction comes back for the drawing
    n = _rendered(page)
    page.evaluate("() => window.scrollTo({top: 0, behavior: 'instant'})")
    page.wait_for_timeout(400)  # let the detail view's smooth scroll finish
    sketch = page.locator("#sketch").bounding_box()
    page.mouse.move(sketch["x"] + sketch["width"] * 0.5, sketch["y"] + sketch["height"] * 0.15)
    page.mouse.down()
    for t in np.linspace(0, 1, 12):
        page.mouse.move(
            sketch["x"] + sketch["width"] * 0.5, sketch["y"] + sketch["height"] * (0.15 + 0.7 * t)
        )
    page.mouse.up()
    _wait_render(page, n)
    page.wait_for_function(
        "() => document.getElementById('status').textContent.includes('stages')", timeout=10000
    )
    drawn = np.asarray(page.evaluate("() => Array.from(window.cnnlab.layers[0].data)"), dtype=np.float32)
    assert drawn.reshape(28, 28)[5:24, 12:16].mean() > 0.5 and drawn.reshape(28, 28)[:, :6].max() < 0.1
    assert page.inner_text("#pred-label") in run.classes
    page.screenshot(path=str(ARTIFACTS / "05-sketch.png"), full_page=True)

    # the filter playground: edit a kernel, the feature map updates
    page.wait_for_selector("#playground[data-updated]", timeout=15000)
    before = page.get_attribute("#playground", "data-updated")
    page.fill("#kernel-grid input >> nth=4", "4")
    page.wait_for_function(
        f"() => document.getElementById('playground').dataset.updated !== '{before}'", timeout=10000
    )
    assert "feature map" in page.inner_text("#filter-status")
    page.locator("#playground").screenshot(path=str(ARTIFACTS / "06-playground.png"))
    assert page.errors == []
