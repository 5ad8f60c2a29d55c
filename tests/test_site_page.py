"""The published page in a real browser, served by a plain static file server: the same front end as
`cnnlab serve`, answered by the in-browser engine. Gallery images with their true labels, uploads, the
sketch pad, the detail views (weights from the worker), compare, a model switch; an image the browser
cannot decode, a tiny one and weights that fail their sha256 leave the previous result and say why; a
huge photo is scaled down first."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from browser_support import open_detail, png, rendered, shown, switch_model, wait_render
from site_support import GALLERY, open_site, static_server

pytest_plugins = ["browser_support", "site_support"]
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def spage(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-US")
    pg = context.new_page()
    pg.errors = []
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" else None)
    yield pg
    context.close()


def test_static_page_explains_gallery_images_uploads_and_drawings(spage, site_url):
    open_site(spage, site_url, "model=cnn2&image=test:3")
    info = shown(spage)
    assert info["model"] == "cnn2" and info["source"] == "test:3"
    assert info["columns"][0] == "input" and info["columns"][-1] == "softmax"
    assert "true class" in spage.inner_text("#pred-truth").lower()
    assert spage.locator("a[href='/docs']").count() == 0
    n = rendered(spage)
    spage.click("#random")
    wait_render(spage, n)
    src = shown(spage)["source"]
    assert src.startswith("test:") and 0 <= int(src[5:]) < GALLERY
    picture = np.zeros((40, 30), np.uint8)
    picture[10:30, 8:22] = 220
    n = rendered(spage)
    spage.set_input_files("#file", files=[{"name": "a.png", "mimeType": "image/png", "buffer": png(picture)}])
    wait_render(spage, n)
    assert shown(spage)["source"] == "upload"
    n = rendered(spage)
    box = spage.locator("#sketch").bounding_box()
    spage.mouse.move(box["x"] + 60, box["y"] + 60)
    spage.mouse.down()
    spage.mouse.move(box["x"] + 200, box["y"] + 200, steps=8)
    spage.mouse.up()
    wait_render(spage, n)
    assert spage.is_hidden("#error") and spage.errors == []


def test_static_detail_views_compare_and_model_switch(spage, site_url):
    open_site(spage, site_url, "model=cnn2&image=test:1")
    open_detail(spage, ".col[data-layer='conv1'] .map >> nth=1", "conv")
    spage.wait_for_selector("#detail .sum[data-total]", timeout=15000)
    open_detail(spage, ".col[data-layer='output'] .map >> nth=0")
    switch_model(spage, "resnet_f")
    assert shown(spage)["model"] == "resnet_f"
    switch_model(spage, "mlp")
    spage.click("#compare-toggle")
    spage.check("#compare input[value='cnn1']")
    spage.wait_for_selector("#compare .cmp-card[data-model='cnn1'] ol", timeout=20000)
    assert spage.errors == []


def test_static_bad_images_keep_the_result(spage, site_url):
    open_site(spage, site_url, "model=cnn2&image=test:2")
    label = spage.inner_text("#pred-label")
    for name, data, words in [
        ("broken.png", b"\x89PNG\r\n\x1a\n not really", "cannot decode"),
        ("tiny.png", png(np.zeros((9, 7), np.uint8)), "7x9 is under 8 pixels"),
    ]:
        spage.evaluate("() => { document.getElementById('error').hidden = true; }")
        spage.set_input_files("#file", files=[{"name": name, "mimeType": "image/png", "buffer": data}])
        spage.wait_for_selector("#error:not([hidden])", timeout=15000)
        assert words in spage.inner_text("#error")
        assert spage.inner_text("#pred-label") == label and shown(spage)["source"] == "test:2"
    spage.errors.clear()


@pytest.mark.slow  # encoding and decoding a 24-megapixel JPEG takes a few seconds
def test_static_huge_photo_is_scaled_down(spage, site_url):
    open_site(spage, site_url, "model=cnn2")
    yy, xx = np.mgrid[0:4000, 0:6000]
    photo = ((xx // 40 + yy // 40) % 2 * 200 + 30).astype(np.uint8)
    n = rendered(spage)
    spage.set_input_files(
        "#file", files=[{"name": "p.jpg", "mimeType": "image/jpeg", "buffer": png(photo, "JPEG")}]
    )
    wait_render(spage, n)
    assert "6000×4000" in spage.inner_text("#pred-truth") and spage.is_hidden("#error")


def test_weights_failing_their_sha256_are_not_run(browser, site, tmp_path):
    bad = tmp_path / "site"
    shutil.copytree(site, bad)
    weights = bad / "models" / "mlp" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x01
    weights.write_bytes(bytes(data))
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-US")
    pg = context.new_page()
    with static_server(bad) as url:
        open_site(pg, url, "model=cnn2&image=test:0")
        label = pg.inner_text("#pred-label")
        pg.select_option("#model", "mlp")
        pg.wait_for_selector("#error:not([hidden])", timeout=15000)
        assert "fail their sha256 check" in pg.inner_text("#error")
        assert pg.inner_text("#pred-label") == label
        assert pg.evaluate("() => cnnlab.doc.model.id") == "cnn2" and pg.input_value("#model") == "cnn2"
    context.close()


def test_gallery_of_the_models_own_test_images(spage, site_url, site_runs):
    import cnnlab as cl
    from cnnlab.explain.data import run_test_split

    open_site(spage, site_url, "model=resnet_f")
    spage.wait_for_selector("#gallery:not([hidden]) .gallery-item", timeout=15000)
    run = cl.load_run(site_runs / "resnet_f")
    split, classes = run_test_split(run.config)
    labels = spage.eval_on_selector_all("#gallery .gallery-label", "els => els.map(e => e.textContent)")
    assert labels == [classes[int(v)] for v in np.asarray(split.labels[:12])]
    n = rendered(spage)
    spage.click("#gallery .gallery-item[data-index='5']")
    wait_render(spage, n)
    assert shown(spage)["source"] == "test:5"
    assert f"true class: {labels[5]}" in spage.inner_text("#pred-truth")
    switch_model(spage, "cnn2")  # another dataset: another gallery
    spage.wait_for_function("() => document.querySelector('#gallery .gallery-item canvas')?.width === 28")


def test_static_playground_filters_in_the_browser(spage, site_url):
    """The filter playground works on a published site: its named kernels and the sample photo are in the
    site, the feature map is computed in the browser as `cnnlab.filters.apply` computes it (boundary symm,
    mode same; convolution and cross-correlation, odd and even kernels), and a learned kernel sent from
    the conv view is filtered on the current input."""
    from cnnlab.filters import apply

    open_site(spage, site_url, "model=cnn2&image=test:0&stage=conv1&channel=0")
    spage.wait_for_function("() => Number(document.getElementById('playground').dataset.updated || 0) > 0")
    assert spage.is_visible("#playground") and "computed in this browser" in spage.inner_text(
        "#filter-status"
    )
    assert spage.evaluate("() => document.getElementById('filter-input').width") == 451  # the cat photo
    rng = np.random.default_rng(0)
    img = rng.random((9, 11)).astype(np.float32)
    for k in (rng.normal(size=(3, 3)), rng.normal(size=(4, 4))):
        for op in ("conv", "corr"):
            got = spage.evaluate(
                """async ([img, k, op]) => {
                    const m = await import(new URL('static/filterlocal.js', location.href));
                    return Array.from(m.applyFilter(Float32Array.from(img), 9, 11, k, op)); }""",
                [img.ravel().tolist(), k.tolist(), op],
            )
            np.testing.assert_allclose(np.reshape(got, (9, 11)), apply(img, k, op=op), rtol=1e-5, atol=1e-5)
    spage.wait_for_selector("#detail[data-kind='conv'] .sum[data-total]", timeout=15000)
    n = spage.evaluate("() => Number(document.getElementById('playground').dataset.updated)")
    spage.click("#detail button:has-text('Try this kernel in the playground')")
    spage.wait_for_function(f"() => Number(document.getElementById('playground').dataset.updated) > {n}")
    assert "the kernel conv1[0, 0] of the model" in spage.inner_text("#filter-status")
    assert spage.evaluate("() => document.getElementById('filter-input').width") == 28
    assert spage.errors == []
