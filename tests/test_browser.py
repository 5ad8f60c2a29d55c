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


def trained_run(tmp_path_factory, fmnist_dir, model: str = "cnn2", limit: int = 2000) -> Path:
    """A small really-trained run, trained once per test session (shared through the base temp dir)."""
    path = tmp_path_factory.getbasetemp() / "trained-runs" / (model if limit == 2000 else f"{model}-{limit}")
    if not (path / "model.safetensors").is_file():
        cfg = cl.TrainConfig(model=model, epochs=1, limit=limit, batch_size=64, patience=None)
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
    # a residual net (block stages) whose test set is smaller than cnn2's: 1,000 images, not 2,000
    shutil.copytree(trained_run(tmp_path_factory, fmnist_dir, "resnet_s", limit=1000), root / "resnet")
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

    # fidelity: the page decodes the compact document exactly as the Python API does, and so holds
    # PyTorch's numbers to the stated precision (the input and the logits bit-exact)
    acts = cl.explain.activations(run.model, buf.getvalue(), input_shape=run.input_shape, invert="auto")
    doc = page.evaluate("() => window.cnnlab.doc")
    python = cl.explain.schema.decode_layers(doc)
    errors = cl.explain.schema.stated_errors(doc)
    for layer in ("input", "conv1", "relu1", "pool2", "flatten", "output"):
        got = page.evaluate(f"() => Array.from(window.cnnlab.layers.find(l => l.name === '{layer}').data)")
        got = np.asarray(got, dtype=np.float32)
        assert np.array_equal(got, python[layer].ravel()), layer
        assert np.abs(got - acts[layer].values.ravel()).max() <= errors[layer] * (1 + 1e-6) + 1e-7, layer
        if layer in ("input", "output"):
            assert np.array_equal(got, acts[layer].values.ravel()), layer
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
    bound = float(page.get_attribute("#detail .sum", "data-bound"))
    assert abs(total - value) <= bound < 0.1 * max(1.0, abs(value))
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


# ---------------------------------------------------------------------------------------------------------
# regressions: switching model, block stages, the playground's "current input", small screens, bad input
# ---------------------------------------------------------------------------------------------------------


def _fresh(page, url) -> None:
    """Reload the page on the default model (cnn2) with a random test image explained."""
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready='1']", timeout=10000)
    _wait_render(page, 0)
    page.errors.clear()


def _switch_model(page, model: str) -> None:
    n = _rendered(page)
    page.select_option("#model", model)
    _wait_render(page, n)


def _shown(page) -> dict:
    return page.evaluate(
        """() => ({model: cnnlab.doc.model.id, source: cnnlab.doc.input.source,
                   columns: [...document.querySelectorAll('#network .col')].map(c => c.dataset.layer)})"""
    )


def _stages(root: Path, model: str) -> list[str]:
    return ["input", *[n for n, _ in cl.load_run(root / model).model.named_children()], "softmax"]


def test_model_switch_explains_an_input_of_the_new_model(page, server):
    url, root = server
    _fresh(page, url)
    # a test image that only cnn2's 2,000-image test set has (resnet's has 1,000)
    for _ in range(40):
        if int(_shown(page)["source"].removeprefix("test:")) >= 1000:
            break
        n = _rendered(page)
        page.click("#random")
        _wait_render(page, n)
    else:
        pytest.fail("no random test image with index >= 1000 in 40 tries")
    _switch_model(page, "resnet")
    shown = _shown(page)
    assert shown["model"] == "resnet" and shown["columns"] == _stages(root, "resnet")
    index = int(shown["source"].removeprefix("test:"))
    assert 0 <= index < 1000 and f"test image #{index}" in page.inner_text("#pred-truth")
    assert not page.is_visible("#error") and "error" not in page.get_attribute("#status", "class")

    # an uploaded image is explained again by the new model
    buf = io.BytesIO()
    Image.fromarray(np.tile(np.linspace(0, 255, 30, dtype=np.uint8), (30, 1))).save(buf, format="PNG")
    n = _rendered(page)
    page.set_input_files(
        "#file", files=[{"name": "g.png", "mimeType": "image/png", "buffer": buf.getvalue()}]
    )
    _wait_render(page, n)
    _switch_model(page, "cnn2")
    shown = _shown(page)
    assert shown["model"] == "cnn2" and not shown["source"].startswith("test:")
    assert page.inner_text("#pred-truth").startswith("your image")
    assert page.errors == []


MAGENTA_IN_DETAIL = """() => [...document.querySelectorAll('#detail canvas')].some(c => {
  if (!c.width || !c.height) return false;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  for (let i = 0; i < d.length; i += 4) if (d[i] === 255 && d[i + 1] === 0 && d[i + 2] === 255) return true;
  return false;
})"""


def test_block_stage_detail_shows_no_per_channel_mapping(page, server):
    url, _ = server
    _fresh(page, url)
    page.select_option("#per-stage", "64")
    _switch_model(page, "resnet")
    for layer, channel in [("stem", 3), ("block1", 30), ("block2", 50), ("block1", 0)]:
        page.click(f".col[data-layer='{layer}'] canvas.map >> nth={channel}")
        page.wait_for_selector(f"#detail[data-layer='{layer}'] .sum", timeout=10000)
        out = page.locator("#detail canvas.big-map").last
        box = out.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.7)
        text = page.inner_text("#detail")
        assert f"channel {channel}" in text
        assert "undefined" not in text and "NaN" not in text, text
        assert "before:" not in text and "→ " + layer not in text  # no stem[c] → block1[c] mapping
        assert ("shortcut" if layer.startswith("block") else "Conv2d → BatchNorm2d → ReLU") in text
        assert not page.evaluate(MAGENTA_IN_DETAIL)
    page.locator("#detail").screenshot(path=str(ARTIFACTS / "07-block-detail.png"))
    page.select_option("#per-stage", "8")
    assert page.errors == []


def test_detail_panel_follows_model_switch(page, server):
    url, _ = server
    _fresh(page, url)
    page.select_option("#per-stage", "64")
    # a stage the new model lacks: the panel closes
    page.click(".col[data-layer='conv2'] canvas.map >> nth=3")
    page.wait_for_selector("#detail[data-kind='conv'] .sum[data-total]", timeout=10000)
    _switch_model(page, "resnet")
    assert page.is_hidden("#detail")
    # a channel the new model's stage lacks (resnet's pool1 has 32): the panel closes
    _switch_model(page, "cnn2")
    page.click(".col[data-layer='pool1'] canvas.map >> nth=50")
    page.wait_for_selector("#detail[data-layer='pool1'] .sum", timeout=10000)
    _switch_model(page, "resnet")
    assert page.is_hidden("#detail")
    # a stage and channel both models have: the panel shows the new model's numbers
    _switch_model(page, "cnn2")
    page.click(".col[data-layer='pool1'] canvas.map >> nth=3")
    page.wait_for_selector("#detail[data-layer='pool1'] .sum", timeout=10000)
    assert "64×13×13" in page.inner_text("#detail h3")
    _switch_model(page, "resnet")
    page.wait_for_function(
        "() => document.querySelector('#detail h3')?.textContent.includes('32×14×14')", timeout=10000
    )
    assert page.is_visible("#detail") and "channel 3" in page.inner_text("#detail h3")
    output = float(page.get_attribute("#detail .sum", "data-output"))
    assert output in page.evaluate("() => Array.from(cnnlab.layers.find(l => l.name === 'pool1').data)")
    # closed by hand, it stays closed for the next image
    page.click("#detail .close")
    n = _rendered(page)
    page.click("#random")
    _wait_render(page, n)
    assert page.is_hidden("#detail")
    page.select_option("#per-stage", "8")
    assert page.errors == []


PLAYGROUND_VS_INPUT = """() => {
  const c = document.getElementById('filter-input');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const a = Array.from({length: c.width * c.height}, (_, i) => d[4 * i]);
  const b = Array.from(cnnlab.layers[0].data);
  if (a.length !== b.length) return -1;
  const mean = (v) => v.reduce((s, x) => s + x, 0) / v.length;
  const [ma, mb] = [mean(a), mean(b)];
  let sab = 0, saa = 0, sbb = 0;
  a.forEach((x, i) => { sab += (x - ma) * (b[i] - mb); saa += (x - ma) ** 2; sbb += (b[i] - mb) ** 2; });
  return sab / Math.sqrt(saa * sbb);
}"""


def test_playground_current_input_follows_new_images(page, server):
    url, _ = server
    _fresh(page, url)
    page.wait_for_selector("#playground[data-updated]", timeout=15000)
    before = page.get_attribute("#playground", "data-updated")
    page.select_option("#kernel-image", "current")
    page.wait_for_function(f"() => document.getElementById('playground').dataset.updated !== '{before}'")
    assert page.evaluate(PLAYGROUND_VS_INPUT) > 0.99
    first = _shown(page)["source"]
    for _ in range(5):  # a new random test image (rarely the same one again)
        before = page.get_attribute("#playground", "data-updated")
        n = _rendered(page)
        page.click("#random")
        _wait_render(page, n)
        if _shown(page)["source"] != first:
            break
    page.wait_for_function(
        f"() => document.getElementById('playground').dataset.updated !== '{before}'", timeout=10000
    )
    assert page.evaluate(PLAYGROUND_VS_INPUT) > 0.99
    page.select_option("#kernel-image", "sample")
    assert page.errors == []


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _ignore(*_args) -> None:
    pass


def test_small_screen_keyboard_upload_and_bad_input(page, server):
    url, _ = server
    page.set_viewport_size({"width": 420, "height": 900})
    try:
        _fresh(page, url)
        page.wait_for_selector("#playground[data-updated]", timeout=15000)
        width = page.evaluate("() => document.documentElement.scrollWidth")
        page.screenshot(path=str(ARTIFACTS / "08-narrow.png"), full_page=True)
        assert width <= 420, f"page is {width} px wide in a 420 px viewport"

        # the drop zone opens the file chooser from the keyboard: Enter opens a real one, answered with a file.
        # A standing listener keeps Playwright's chooser interception on: it is switched on asynchronously,
        # and a chooser that opens before that (a busy machine) never reaches expect_file_chooser.
        page.on("filechooser", _ignore)
        page.focus("#drop")
        with page.expect_file_chooser(timeout=15000) as chooser:
            page.keyboard.press("Enter")
        n = _rendered(page)
        image = _png(np.full((30, 30), 90, np.uint8))
        chooser.value.set_files(files=[{"name": "ok.png", "mimeType": "image/png", "buffer": image}])
        _wait_render(page, n)
        assert page.is_hidden("#error")
        # Space clicks the file input the same way (checked on the click itself: under load chromium may
        # not show a second chooser so soon after the first)
        page.evaluate(
            """() => { window.fileClicks = 0; document.getElementById('file').addEventListener('click', (e) => {
                 window.fileClicks += navigator.userActivation.isActive ? 1 : 0; e.preventDefault(); }, {once: true}); }"""
        )
        page.focus("#drop")
        page.keyboard.press(" ")
        page.wait_for_function("() => window.fileClicks === 1", timeout=5000)

        # a rejected upload: the error is plain to see and the previous result is gone
        page.set_input_files(
            "#file",
            files=[{"name": "tiny.png", "mimeType": "image/png", "buffer": _png(np.zeros((9, 7), np.uint8))}],
        )
        page.wait_for_selector("#error:not([hidden])", timeout=10000)
        assert "7x9" in page.inner_text("#error")
        assert page.inner_text("#pred-label") == "—" and page.inner_text("#pred-bars") == ""
        assert page.locator("#network .col").count() == 0
        assert page.evaluate("() => window.cnnlab.doc") is None
        page.screenshot(path=str(ARTIFACTS / "09-rejected-upload.png"), full_page=True)
        assert all("status of 422" in e for e in page.errors), page.errors
        page.errors.clear()
        n = _rendered(page)
        page.click("#random")
        _wait_render(page, n)
        assert page.is_hidden("#error") and page.locator("#network .col").count() > 0

        # kernel cells that are not numbers are marked, not read as 0
        cell = "#kernel-grid input >> nth=4"
        for bad in ("abc", "1e400"):
            before = page.get_attribute("#playground", "data-updated")
            page.fill(cell, bad)
            page.wait_for_function(
                "() => document.getElementById('filter-status').classList.contains('error')", timeout=5000
            )
            assert page.get_attribute(cell, "aria-invalid") == "true"
            assert "not a number" in page.inner_text("#filter-status")
            page.wait_for_timeout(400)  # longer than the playground's debounce: no request went out
            assert page.get_attribute("#playground", "data-updated") == before
        page.fill(cell, "2")
        page.wait_for_function(
            f"() => document.getElementById('playground').dataset.updated !== '{before}'", timeout=10000
        )
        assert page.get_attribute(cell, "aria-invalid") != "true"
        assert "feature map" in page.inner_text("#filter-status")
        assert page.errors == []
    finally:
        page.remove_listener("filechooser", _ignore)
        page.set_viewport_size({"width": 1500, "height": 1000})


def test_api_docs_page_renders_offline_from_openapi(page, server):
    """/docs is rendered by the page itself from /openapi.json (Swagger UI would need a CDN: blank offline)."""
    url, _ = server
    page.errors.clear()
    external: list[str] = []
    page.on("request", lambda r: external.append(r.url) if not r.url.startswith(url) else None)
    page.goto(url + "/docs")
    page.wait_for_selector("section.op")
    heads = page.locator("section.op h2").all_inner_texts()
    for endpoint in ("GET /api/models", "GET /api/weights", "POST /api/predict", "POST /api/explain"):
        assert any(endpoint in h.replace("\n", " ") for h in heads), (endpoint, heads)
    predict = page.locator("section.op", has_text="POST /api/predict").inner_text()
    assert "test_index" in predict and "invert" in predict and "curl" in predict and "422" in predict
    assert not external and not page.errors, (external, page.errors)
