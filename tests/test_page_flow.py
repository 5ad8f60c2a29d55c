"""The page's flow in a real browser: models compared side by side on one image, the image kept across a
model switch when the datasets match, class-driven heat maps, the view in the URL, a failed upload that
keeps the result, a 24-megapixel photo scaled down in the browser, an empty sketch pad that sends nothing,
the MLP's missing Grad-CAM explained, RGB models, and the playground and detail panel following along."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlab as cl
from browser_support import PHONE, fresh, open_detail, png, rendered, shown, stages, switch_model, wait_render

pytest_plugins = ["browser_support"]
pytestmark = pytest.mark.browser


def _test_image(root, model: str, index: int) -> np.ndarray:
    split, _ = cl.explain.run_test_split(cl.load_run(root / model).config)
    return split.images[index]


def _input(page) -> np.ndarray:
    return np.asarray(page.evaluate("() => Array.from(cnnlab.layers[0].data)"), dtype=np.float32)


def test_compare_models_on_the_same_image(page, server):
    url, root = server
    fresh(page, url)
    index = int(shown(page)["source"].removeprefix("test:"))
    page.click("#compare-toggle")
    assert page.get_attribute("#compare-toggle", "aria-expanded") == "true"
    assert page.is_disabled("#compare input[value='rgb']")  # another dataset: its images are not this one's
    page.check("#compare input[value='mlp']")
    page.check("#compare input[value='resnet']")
    for m in ("mlp", "resnet"):
        page.wait_for_selector(f"#compare .cmp-card[data-model='{m}'] ol", timeout=20000)
    # each model's card is that model's prediction for exactly this test image (sent by its pixels)
    image = _test_image(root, "cnn2", index)
    for m in ("mlp", "resnet"):
        run = cl.load_run(root / m)
        acts = cl.explain.activations(run.model, image, classes=run.classes)
        card = page.locator(f"#compare .cmp-card[data-model='{m}']")
        assert card.locator("ol li .pl").first.inner_text() == acts.prediction.label
        assert card.locator("ol li .pv").first.inner_text() == f"{100 * acts.prediction.probability:.1f}%"
    assert "no Grad-CAM" in page.inner_text("#compare .cmp-card[data-model='mlp']")
    assert "Grad-CAM on" in page.inner_text("#compare .cmp-card[data-model='resnet']")
    assert "compare=mlp%2Cresnet" in page.url or "compare=mlp,resnet" in page.url
    # "Open" switches to that model, on the same image
    n = rendered(page)
    page.click("#compare .cmp-card[data-model='mlp'] button")
    wait_render(page, n)
    assert shown(page)["model"] == "mlp" and np.array_equal(_input(page), image[0].ravel() / np.float32(255))
    assert f"test image #{index} of cnn2" in page.inner_text("#pred-truth")
    page.click("#compare-toggle")
    assert page.errors == []


def test_model_switch_keeps_the_image_when_datasets_match(page, server):
    url, root = server
    fresh(page, url)
    index = int(shown(page)["source"].removeprefix("test:"))
    before = _input(page)
    label = page.evaluate("() => cnnlab.doc.model.classes[cnnlab.doc.input.label]")
    switch_model(page, "resnet")
    s = shown(page)
    assert s["model"] == "resnet" and s["columns"] == stages(root, "resnet")
    assert np.array_equal(_input(page), before)  # the very same pixels
    truth = page.inner_text("#pred-truth")
    assert f"test image #{index} of cnn2" in truth and f"true class: {label}" in truth
    # a model of another dataset gets one of its own test images
    switch_model(page, "rgb")
    assert shown(page)["source"].startswith("test:") and page.evaluate("() => cnnlab.source.model") == "rgb"
    # an upload goes to any model
    n = rendered(page)
    page.set_input_files(
        "#file",
        files=[
            {
                "name": "g.png",
                "mimeType": "image/png",
                "buffer": png(np.tile(np.linspace(0, 255, 30, dtype=np.uint8), (30, 1))),
            }
        ],
    )
    wait_render(page, n)
    switch_model(page, "cnn2")
    assert page.inner_text("#pred-truth").startswith("your image")
    assert page.errors == []


def test_class_driven_heat_maps_and_the_mlp_without_grad_cam(page, server):
    url, _ = server
    fresh(page, url)
    second = int(page.get_attribute("#pred-bars button >> nth=1", "data-index"))
    label = page.locator("#pred-bars button").nth(1).locator(".pl").inner_text()
    page.click("#pred-bars button >> nth=1")
    page.wait_for_function(f"() => cnnlab.doc.gradcam && cnnlab.doc.gradcam.class_index === {second}")
    assert page.input_value("#overlay") == "gradcam" and label in page.inner_text("#overlay-note")
    assert page.get_attribute("#pred-bars button >> nth=1", "aria-pressed") == "true"
    assert f"class={second}" in page.url
    # any class, not only the top five
    last = len(page.evaluate("() => cnnlab.doc.model.classes")) - 1
    page.select_option("#cam-class", str(last))
    page.wait_for_function(f"() => cnnlab.doc.saliency.class_index === {last}")
    # the MLP has no feature maps: Grad-CAM says why instead of drawing nothing
    switch_model(page, "mlp")
    page.select_option("#overlay", "gradcam")
    note = page.inner_text("#overlay-note")
    assert "No Grad-CAM for mlp" in note and "flattens" in note
    assert "needs conv layers" in page.inner_text("#overlay option[value='gradcam']")
    page.select_option("#overlay", "none")
    assert page.errors == []


def test_the_view_lives_in_the_url(page, server):
    url, _ = server
    fresh(page, url)
    index = shown(page)["source"]
    open_detail(page, ".col[data-layer='conv2'] .map >> nth=5", "conv")
    page.focus("#detail .big-holder.control")
    for key in ("ArrowUp", "ArrowLeft", "ArrowLeft"):
        page.keyboard.press(key)
    where = page.inner_text("#detail .player span.muted")
    page.click("#compare-toggle")
    page.check("#compare input[value='mlp']")
    shared = page.url
    assert (
        "stage=conv2" in shared
        and "channel=5" in shared
        and "pos=" in shared
        and f"image={index.replace(':', '%3A')}" in shared
    )
    page.click("#compare-toggle")
    page.goto(shared)  # reload from the URL alone
    page.wait_for_selector("#detail[data-kind='conv'][data-channel='5'] .sum[data-total]", timeout=20000)
    assert shown(page)["source"] == index
    assert page.inner_text("#detail .player span.muted") == where
    assert page.is_visible("#compare") and page.is_checked("#compare input[value='mlp']")
    # a view of a test image shown to another model comes back too
    page.click("#detail .close")
    switch_model(page, "mlp")
    page.goto(page.url)
    page.wait_for_function("() => window.cnnlab.doc && cnnlab.doc.model.id === 'mlp'", timeout=20000)
    assert f"{index.replace('test:', 'test image #')} of cnn2" in page.inner_text("#pred-truth")
    assert page.errors == []


def test_failed_upload_keeps_the_result_and_says_so_once(page, server):
    url, _ = server
    fresh(page, url)
    label = page.inner_text("#pred-label")
    columns = shown(page)["columns"]
    page.set_input_files(
        "#file",
        files=[{"name": "tiny.png", "mimeType": "image/png", "buffer": png(np.zeros((9, 7), np.uint8))}],
    )
    page.wait_for_selector("#error:not([hidden])", timeout=15000)
    message = page.inner_text("#error")
    assert "7x9" in message
    assert page.inner_text("#pred-label") == label and shown(page)["columns"] == columns
    assert page.inner_text("body").count(message) == 1  # in the banner only, not also in the status line
    assert all("status of 422" in e for e in page.errors), page.errors
    page.errors.clear()
    # the next image clears the banner; a model switch then sends that image, not the rejected one
    n = rendered(page)
    page.click("#random")
    wait_render(page, n)
    assert page.is_hidden("#error")
    switch_model(page, "mlp")
    assert page.is_hidden("#error")
    assert page.errors == []


@pytest.mark.slow  # encoding and decoding a 24-megapixel JPEG takes a few seconds
def test_big_phone_photo_is_scaled_down_in_the_browser(page, server):
    url, _ = server
    fresh(page, url)
    yy, xx = np.mgrid[0:4000, 0:6000]
    photo = ((xx // 40 + yy // 40) % 2 * 200 + 30).astype(np.uint8)  # 24 megapixels, a checkerboard
    data = png(photo, "JPEG", quality=80)
    n = rendered(page)
    page.set_input_files("#file", files=[{"name": "phone.jpg", "mimeType": "image/jpeg", "buffer": data}])
    wait_render(page, n)
    assert "scaled down in your browser from 6000×4000" in page.inner_text("#pred-truth")
    assert page.is_hidden("#error")
    assert page.errors == []


def test_cleared_sketch_pad_sends_nothing(page, server):
    url, _ = server
    fresh(page, url)
    page.locator("#sketch").scroll_into_view_if_needed()  # below the network (the page's third edition)
    box = page.locator("#sketch").bounding_box()
    n = rendered(page)
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.2)
    page.mouse.down()
    for f in np.linspace(0.2, 0.8, 8):
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * f)
    page.mouse.up()
    wait_render(page, n)
    drawn = _input(page).reshape(28, 28)
    assert drawn[8:20, 12:16].mean() > 0.5 and drawn[:, :6].max() < 0.1
    assert "your drawing" in page.inner_text("#pred-truth")
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if "/api/explain" in r.url else None)
    page.click("#sketch-clear")
    page.wait_for_timeout(500)
    assert sent == [] and "empty" in page.inner_text("#pred-truth")
    assert page.errors == []


def test_rgb_model_gets_colour_texts_and_a_colour_sketch_pad(page, server):
    url, _ = server
    fresh(page, url, "model=rgb")
    assert page.is_hidden("#invert-row") and "Colour images" in page.inner_text("#source-note")
    assert page.is_visible("#sketch-colour-row") and "colour" in page.inner_text("#sketch-note")
    coloured = page.evaluate(
        """() => { const c = document.getElementById('input-view');
                   const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                   for (let i = 0; i < d.length; i += 4) if (d[i] !== d[i + 1] || d[i] !== d[i + 2]) return true;
                   return false; }"""
    )
    assert coloured
    box = page.locator("#sketch").bounding_box()
    n = rendered(page)
    page.mouse.move(box["x"] + 60, box["y"] + 60)
    page.mouse.down()
    page.mouse.move(box["x"] + 120, box["y"] + 120)
    page.mouse.up()
    wait_render(page, n)
    rgb = _input(page).reshape(3, 16, 16)
    assert not np.allclose(rgb[0], rgb[2])  # drawn in colour (a blue pen on white)
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


def test_playground_and_detail_follow_new_images_and_models(page, server):
    url, _ = server
    fresh(page, url)
    page.wait_for_selector("#playground[data-updated]", timeout=15000)
    before = page.get_attribute("#playground", "data-updated")
    page.select_option("#kernel-image", "current")
    page.wait_for_function(f"() => document.getElementById('playground').dataset.updated !== '{before}'")
    assert page.evaluate(PLAYGROUND_VS_INPUT) > 0.99
    # a channel the next model's stage lacks (resnet's pool1 has 32): the panel closes
    page.select_option("#per-stage", "16")
    page.click(".col[data-layer='pool1'] button.more")
    page.click("#detail .thumb-grid button[data-channel='50']")
    page.wait_for_selector("#detail[data-layer='pool1'][data-channel='50']")
    switch_model(page, "resnet")
    assert page.is_hidden("#detail")
    # a stage and channel both have: the panel shows the new model's numbers
    switch_model(page, "cnn2")
    open_detail(page, ".col[data-layer='pool1'] .map >> nth=3", "maxpool")
    switch_model(page, "resnet")
    page.wait_for_function("() => document.querySelector('#detail h2')?.textContent.includes('32×14×14')")
    page.select_option("#per-stage", "8")
    page.select_option("#kernel-image", "sample")
    assert page.errors == []


def test_phone_layout_and_keyboard_upload(page, server):
    url, _ = server
    page.set_viewport_size(PHONE)
    try:
        fresh(page, url)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
        page.on("filechooser", _ignore)
        page.focus("#drop")
        with page.expect_file_chooser(timeout=15000) as chooser:
            page.keyboard.press("Enter")
        n = rendered(page)
        chooser.value.set_files(
            files=[
                {"name": "ok.png", "mimeType": "image/png", "buffer": png(np.full((30, 30), 90, np.uint8))}
            ]
        )
        wait_render(page, n)
        assert page.is_hidden("#error")
    finally:
        page.remove_listener("filechooser", _ignore)
        page.set_viewport_size({"width": 1440, "height": 900})
    assert page.errors == []


def _ignore(*_args) -> None:
    pass
