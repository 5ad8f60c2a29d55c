"""The explainer page in a real browser (Playwright driving Debian's chromium): every stage rendered from
the compact wire format and agreeing with PyTorch; the learning views (the conv view's animation and all
input channels, dense contributions traced to feature-map positions, softmax's sources, batch norm's
statistics, pooling's dropped values); one honest colour scale with legends; the overview's layout.
Screenshots go to test-artifacts/. Flow and accessibility are in test_page_flow.py and test_a11y.py."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlab as cl
from browser_support import ARTIFACTS, fresh, open_detail, png, rendered, stages, switch_model, wait_render

pytest_plugins = ["browser_support"]  # the shared server, browser and page fixtures
pytestmark = pytest.mark.browser

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
    fresh(page, url)
    page.screenshot(path=str(ARTIFACTS / "01-loaded.png"), full_page=True)
    img = np.full((40, 32), 250, dtype=np.uint8)
    img[8:34, 6:26] = 30  # a dark block on white, as a photo would be
    image = png(img)
    n = rendered(page)
    with page.expect_response(lambda r: r.url.endswith("/api/explain")) as answer:
        page.set_input_files("#file", files=[{"name": "block.png", "mimeType": "image/png", "buffer": image}])
    wait_render(page, n)
    assert len(answer.value.body()) < 150_000  # the compact wire format (it was 794 KB for cnn2)
    run = cl.load_run(root / "cnn2")
    columns = page.eval_on_selector_all("#network .col", "cols => cols.map(c => c.dataset.layer)")
    assert columns == stages(root, "cnn2")
    assert page.evaluate(EMPTY_COLUMNS) == []

    # fidelity: the page decodes the compact document exactly as the Python API does, and so holds
    # PyTorch's numbers to the stated precision (the input and the logits bit-exact)
    acts = cl.explain.activations(run.model, image, input_shape=run.input_shape, invert="auto")
    doc = page.evaluate("() => window.cnnlab.doc")
    assert doc["schema"] == cl.explain.SCHEMA_VERSION
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
    assert page.errors == []


def test_conv_view_animates_and_adds_up_every_input_channel(page, server):
    url, root = server
    fresh(page, url)
    open_detail(page, ".col[data-layer='conv2'] .map >> nth=1", "conv")
    line = "#detail .sum[data-total]"
    page.wait_for_selector(line)
    total = float(page.get_attribute(line, "data-total"))
    value = float(page.get_attribute(line, "data-output"))
    bound = float(page.get_attribute(line, "data-bound"))
    assert abs(total - value) <= bound < 0.1 * max(1.0, abs(value)) and "✓" in page.inner_text(line)
    assert page.locator("#detail table.numbers").count() == 3  # patch, kernel, products
    # every input channel: a row with its patch x kernel, its partial sum, the running total; the last
    # running total plus the bias is the total shown
    rows = page.locator("#detail table.ch-table tr:has(canvas.triple)")
    assert rows.count() == 64
    partial = [
        float(x)
        for x in page.locator(
            "#detail table.ch-table tr:has(canvas.triple) td.num:nth-child(3)"
        ).all_inner_texts()
    ]
    running = float(
        page.locator("#detail table.ch-table tr:has(canvas.triple) >> nth=63")
        .locator("td.num")
        .last.inner_text()
    )
    assert abs(sum(partial) - running) < 64 * 1e-4 and abs(running - (total - _bias(root, "conv2", 1))) < 1e-3
    # the animation: play moves the kernel, pause stops it, the step buttons move it by one position
    where = page.locator("#detail .player span.muted")
    first = where.inner_text()
    page.click("#detail .player button.play")
    page.wait_for_function(
        f"() => document.querySelector('#detail .player span.muted').textContent !== {first!r}", timeout=5000
    )
    page.click("#detail .player button.play")  # pause
    paused = where.inner_text()
    page.wait_for_timeout(600)
    assert where.inner_text() == paused
    y, x = _pos(paused)
    page.click("#detail .player button >> nth=2")  # step forward
    assert _pos(where.inner_text()) == ((y, x + 1) if x + 1 < 11 else ((y + 1) % 11, 0))
    page.locator("#detail").screenshot(path=str(ARTIFACTS / "03-conv-detail.png"))
    # a learned kernel goes to the playground, as cross-correlation on the current image
    page.click("#detail button:has-text('playground')")
    page.wait_for_function("() => document.getElementById('kernel-op').value === 'corr'")
    cells = [float(v) for v in page.eval_on_selector_all("#kernel-grid input", "xs => xs.map(x => x.value)")]
    w = cl.load_run(root / "cnn2").model.conv2.weight[1].detach().numpy()
    assert any(np.allclose(cells, w[c].ravel(), atol=1e-4) for c in range(64))
    assert page.input_value("#kernel-image") == "current"
    assert page.errors == []


def _bias(root, layer: str, channel: int) -> float:
    return float(getattr(cl.load_run(root / "cnn2").model, layer).bias[channel].detach())


def _pos(text: str) -> tuple[int, int]:
    inside = text[text.index("(") + 1 : text.index(")")]
    y, x = (int(v) for v in inside.split(","))
    return y, x


def test_dense_softmax_pool_and_batchnorm_views(page, server):
    url, root = server
    fresh(page, url)
    # dense: the top weight x activation products, traced to a map position of pool2 (via flatten)
    open_detail(page, ".col[data-layer='dense1'] .map", "dense")
    page.wait_for_selector("#detail table.contrib-table")
    line = page.locator("#detail .sum")
    assert "✓" in line.inner_text()
    assert page.locator("#detail table.contrib-table tr:has(td.from)").count() == 10
    link = page.locator("#detail td.from button").first
    assert "drop2 channel" in link.inner_text() or "pool2 channel" in link.inner_text()
    link.click()
    page.wait_for_selector("#detail[data-layer='drop2'], #detail[data-layer='pool2']")
    # softmax: a class's logit traced to the output layer's inputs; the class's heat maps on demand
    open_detail(page, ".col[data-layer='softmax'] .bar >> nth=2", "softmax")
    page.wait_for_selector("#detail .sources table.contrib-table")
    assert "Pullover" in page.inner_text("#detail .sources h3")
    # pooling: 2x2 windows keep 1 value and drop 3; pool2 reads 10 of relu2's 11 rows and columns
    open_detail(page, ".col[data-layer='pool2'] .map >> nth=0", "maxpool")
    assert page.locator("#detail td.dropped").count() == 3 and page.locator("#detail td.chosen").count() == 1
    assert page.locator("#detail .never-read").count() == 2
    assert "never read" in page.inner_text("#detail .explain")
    # batch norm: gamma, beta and the running statistics of the channel, and the arithmetic
    switch_model(page, "bn")
    bn_name = next(
        n for n, m in cl.load_run(root / "bn").model.named_children() if "BatchNorm" in type(m).__name__
    )
    open_detail(page, f".col[data-layer='{bn_name}'] .map >> nth=3", "batchnorm")
    bn = getattr(cl.load_run(root / "bn").model, bn_name)
    cells = page.locator("#detail table.bn-stats td").all_inner_texts()
    want = [bn.weight[3], bn.bias[3], bn.running_mean[3], bn.running_var[3]]
    assert [float(c) for c in cells[:4]] == pytest.approx([float(v.detach()) for v in want], abs=6e-5)
    assert "✓" in page.inner_text("#detail .sum")
    page.locator("#detail").screenshot(path=str(ARTIFACTS / "04-batchnorm.png"))
    assert page.errors == []


# ---- colours ----------------------------------------------------------------------------------------

GRAY_INPUT = """() => [document.getElementById('input-view'), document.querySelector('.col[data-layer=input] canvas')]
  .every(c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                for (let i = 0; i < d.length; i += 4) if (d[i] !== d[i + 1] || d[i] !== d[i + 2]) return false;
                return true; })"""

ZERO_CELLS = """() => [...document.querySelectorAll('#detail table.numbers td')]
  .filter(td => /^-?0\\.00$/.test(td.textContent))
  .map(td => getComputedStyle(td).backgroundColor.match(/\\d+/g).map(Number))
  .filter(([r, g, b]) => 0.2126 * r + 0.7152 * g + 0.0722 * b < 215)"""


def test_one_honest_colour_scale_with_legends(page, server):
    url, _ = server
    fresh(page, url)
    assert page.evaluate(GRAY_INPUT)  # a grayscale input stays gray, wherever it is drawn
    # every stage but softmax carries its legend; a signed stage's legend is centred on 0
    cols = page.eval_on_selector_all(
        "#network .col", "cs => cs.map(c => [c.dataset.kind, !!c.querySelector('.legend')])"
    )
    assert all(has for kind, has in cols if kind != "softmax")
    # number cells that read 0.00 are (nearly) white: one scale for the whole stage, not per grid
    open_detail(page, ".col[data-layer='conv2'] .map >> nth=0", "conv")
    page.wait_for_selector("#detail .sum[data-total]")
    page.focus("#detail .big-holder.control")
    product_legends = set()  # the products' scale: one for the view, not each grid's own 9 products
    for _ in range(5):
        assert page.evaluate(ZERO_CELLS) == []
        product_legends.add(page.inner_text("#detail .dot figure.grid:nth-of-type(3) .legend"))
        page.keyboard.press("ArrowRight")
    assert len(product_legends) == 1, product_legends
    assert page.locator("#detail .legend").count() >= 5  # input and output maps, patch, kernel, products
    # the robust range: one outlier does not set the scale, and the legend says values were clipped
    scale = page.evaluate(
        """() => import('/static/colors.js').then(m => {
             const d = new Float32Array(1000).map((_, i) => (i % 10) / 10); d[7] = 50;
             return m.scaleOf(d); })"""
    )
    assert scale["kind"] == "seq" and scale["m"] < 1 and scale["clipped"]
    # heat maps get a legend too
    page.select_option("#overlay", "gradcam")
    assert page.locator("#overlay-legend .legend").count() == 1
    page.select_option("#overlay", "none")
    assert page.errors == []


# ---- layout -----------------------------------------------------------------------------------------


def test_overview_layout_edges_and_all_maps(page, server):
    url, _ = server
    fresh(page, url)
    page.select_option("#per-stage", "16")
    # into a stage that reads every map of the one before: through one hub, n + m curves, not n x m
    paths = page.eval_on_selector_all("#network path.link", "ps => ps.length")
    assert paths < 400, paths
    assert page.locator("#network-card").bounding_box()["height"] < 1300  # it was a 3,300 px card
    # hovering a map lights its edges, and only some of them
    page.hover(".col[data-layer='conv2'] .map >> nth=2")
    hot = page.eval_on_selector_all("#network path.link.hot", "ps => ps.length")
    assert 0 < hot < paths
    # "+N more" and the column headings are real buttons that open something
    page.click(".col[data-layer='conv2'] button.more")
    page.wait_for_selector("#detail[data-channel='all'] .thumb-grid")
    thumbs = page.locator("#detail .thumb-grid button")
    assert thumbs.count() == 128
    box = page.locator("#detail .thumb-grid").bounding_box()
    assert box["width"] <= 1440 and thumbs.first.bounding_box()["width"] >= 36  # readable, no overflow
    page.select_option("#detail select", "strength")
    order = page.eval_on_selector_all(
        "#detail .thumb-grid button", "bs => bs.map(b => Number(b.dataset.channel))"
    )
    assert sorted(order) == list(range(128)) and order != list(range(128))
    thumbs.first.click()
    page.wait_for_selector(f"#detail[data-kind='conv'][data-channel='{order[0]}']")
    page.click(".col[data-layer='pool1'] button.col-head")
    page.wait_for_selector("#detail[data-layer='pool1']")
    page.select_option("#per-stage", "8")
    page.screenshot(path=str(ARTIFACTS / "02-network.png"), full_page=True)
    assert page.errors == []


def test_block_stage_detail_shows_no_per_channel_mapping(page, server):
    url, _ = server
    fresh(page, url)
    switch_model(page, "resnet")
    for layer, channel in [("stem", 3), ("block1", 0)]:
        open_detail(page, f".col[data-layer='{layer}'] .map >> nth={channel}")
        page.wait_for_selector(f"#detail[data-layer='{layer}'] .sum")
        text = page.inner_text("#detail")
        assert f"channel {channel}" in text and "undefined" not in text and "NaN" not in text
        assert "before:" not in text
        assert ("shortcut" if layer.startswith("block") else "Conv2d → BatchNorm2d → ReLU") in text
    assert page.errors == []
