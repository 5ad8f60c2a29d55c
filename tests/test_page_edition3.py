"""The page's third edition (issue 23), on the published site (the same page code `cnnlab serve` sends):
the network first and full width with its softmax on screen at 1440 px for every built-in model, no
sideways scroll on a phone even with a long run name, a visible keyboard focus ring on the maps (WCAG
2.4.7), stage headers that never break inside a number."""

from __future__ import annotations

import re

import pytest

from browser_support import PHONE, rendered, switch_model, wait_render
from site_support import SITE_MODELS, open_site

pytest_plugins = ["browser_support", "site_support"]
pytestmark = pytest.mark.browser

DESKTOP = {"width": 1440, "height": 900}


@pytest.fixture(scope="module")
def desk(browser):
    context = browser.new_context(viewport=DESKTOP, locale="en-US")
    pg = context.new_page()
    pg.errors = []
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    yield pg
    context.close()


def test_network_first_and_its_softmax_on_screen_for_every_model(desk, site_url):
    open_site(desk, site_url, "model=mlp")
    net = desk.locator("#network-card").bounding_box()
    assert net["y"] < 120, "the network is the page: right under the header"
    assert net["width"] >= DESKTOP["width"] - 60, "full width"
    assert desk.locator("#network-card").bounding_box()["y"] < desk.locator(".inputs").bounding_box()["y"]
    for model in SITE_MODELS:
        if model != "mlp":
            switch_model(desk, model)
        soft = desk.locator("#network .col.kind-softmax").bounding_box()
        assert soft["x"] >= 0 and soft["x"] + soft["width"] <= DESKTOP["width"], model
        overflow = desk.evaluate(
            "() => { const n = document.getElementById('network'); return n.scrollWidth - n.clientWidth; }"
        )
        assert overflow <= 0, f"{model}: the network scrolls sideways by {overflow} px"
    assert desk.errors == []


def test_stage_headers_never_break_inside_a_number(desk, site_url):
    open_site(desk, site_url, "model=speednet")  # 26 narrow columns
    broken = desk.evaluate(
        """() => [...document.querySelectorAll('#network .col-head .shape')].flatMap((s) =>
            [...s.childNodes].filter((n) => n.nodeType === 1 || n.textContent.trim()).flatMap((n) => {
              const r = document.createRange(); r.selectNodeContents(n);
              return r.getClientRects().length > 1 ? [s.textContent] : [];
            }))"""
    )
    assert broken == []


def test_keyboard_focus_on_a_map_is_visible(desk, site_url):
    open_site(desk, site_url, "model=cnn2")
    desk.focus("#network .col[data-layer='conv1'] .map >> nth=0")
    desk.keyboard.press("ArrowDown")
    ring = desk.evaluate(
        """() => { const a = document.activeElement, s = getComputedStyle(a);
                  return {map: a.classList.contains('map'), width: parseFloat(s.outlineWidth), style: s.outlineStyle,
                          colour: s.outlineColor, offset: parseFloat(s.outlineOffset)}; }"""
    )
    assert ring["map"] and ring["style"] == "solid" and ring["width"] >= 3 and ring["offset"] >= 2, ring
    assert ring["colour"] == "rgb(31, 79, 160)", ring  # --focus, not the 1 px grey line of an unfocused map


def test_phone_page_never_scrolls_sideways_even_with_a_long_run_name(browser, site_url):
    context = browser.new_context(viewport=PHONE, locale="en-US", is_mobile=True, has_touch=True)
    pg = context.new_page()
    open_site(pg, site_url, "model=resnet_s")
    pg.evaluate(
        """() => { const o = document.createElement('option'); o.value = 'x';
                  o.textContent = 'experiments/2026-12-07/fashion-mnist-resnet-with-a-very-long-name (resnet_s)';
                  document.getElementById('model').append(o); }"""
    )
    assert pg.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    assert pg.locator("#model").bounding_box()["width"] <= PHONE["width"] * 0.75
    context.close()


def test_conv_view_draws_padding_as_a_ring_not_as_values(desk, site_url):
    """bnspec's conv1 is 5x5, stride 2, padding 2: at output (0, 0) the window covers 2 rows and 2 columns
    of padding. They are hatched cells named as padding (not "0.00" in a value's colour), and the input
    map has a ring of padding around it that the window stays on."""
    open_site(desk, site_url, "model=bnspec&image=test:0&stage=conv1&channel=0&pos=0,0")
    desk.wait_for_selector("#detail[data-kind='conv'] .sum[data-total]", timeout=15000)
    cells = desk.evaluate(
        """() => [...document.querySelectorAll('#detail .dot figure:first-child td')]
                 .map((td) => [td.className, td.textContent])"""
    )
    assert len(cells) == 25
    pads = [c for c in cells if c[0] == "pad"]
    assert len(pads) == 16 and all(text.startswith("0 (padding") for _, text in pads), cells
    assert all(c[0] != "pad" for i, c in enumerate(cells) if i // 5 >= 2 and i % 5 >= 2)
    holder = desk.locator("#detail .big-holder.padded").first
    ring, window, canvas = (
        holder.bounding_box(),
        holder.locator(".window").bounding_box(),
        holder.locator("canvas").bounding_box(),
    )
    assert canvas["x"] > ring["x"] and canvas["y"] > ring["y"]  # the ring is around the map
    assert (
        window["x"] >= ring["x"] - 0.5 and window["y"] >= ring["y"] - 0.5
    )  # the window stays on the picture
    assert abs(window["x"] - ring["x"]) < 1 and window["x"] < canvas["x"]


def _pl_plural(n: int, forms: list[str]) -> str:
    if n == 1:
        return forms[0]
    if n % 10 in (2, 3, 4) and n % 100 not in (12, 13, 14):
        return forms[1]
    return forms[2]


def test_polish_plurals_and_number_formats(browser, site_url, site_runs):
    """Polish agrees numbers and nouns (64 jądra, wszystkie 64 mapy, 12 etapów, 1 piksel) and writes
    numbers as Poles do (485 514 parametrów, 35,9%), through Intl.PluralRules and Intl.NumberFormat."""
    import cnnlab as cl
    from cnnlab.models import count_params

    context = browser.new_context(viewport=DESKTOP, locale="pl-PL")
    pg = context.new_page()
    open_site(pg, site_url, "model=cnn2&image=test:0&lang=pl&stage=conv1&channel=all")
    pg.wait_for_selector("#detail:not([hidden])", timeout=15000)
    params = count_params(cl.load_run(site_runs / "cnn2").model)
    info = re.sub(r"\s", " ", pg.inner_text("#model-info"))  # Polish groups digits with a no-break space
    assert f"{params:,}".replace(",", " ") + " parametrów" in info, info
    detail = pg.inner_text("#detail")
    assert "wszystkie 64 mapy" in detail and "64 map " not in detail and "64 map\n" not in detail, detail[
        :300
    ]
    stages = pg.evaluate("() => cnnlab.doc.layers.length - 2")
    assert f"{stages} {_pl_plural(stages, ['etap', 'etapy', 'etapów'])} modelu" in pg.inner_text("#status")
    assert "ma 64 jądra 3×3" in pg.inner_text("#article-body")
    prob = pg.inner_text("#pred-prob")
    assert "," in prob and "." not in prob and prob.endswith("%"), prob
    open_site(pg, site_url, "model=cnn2&image=test:0&lang=pl&stage=conv1&channel=0")
    pg.wait_for_selector("#detail[data-kind='conv'] .sum[data-total]", timeout=15000)
    text = pg.inner_text("#detail")
    assert "o 1 piksel naraz" in text and "piksel(e)" not in text
    cells = pg.eval_on_selector_all("#detail td", "els => els.map(e => e.textContent)")
    assert cells and not [c for c in cells if re.fullmatch(r"[-−]?\d+\.\d+", c)], cells[:10]
    context.close()


def test_article_fits_every_architecture(desk, site_url):
    """Residual nets have their convolutions, batch norms and ReLUs inside blocks: the article finds them
    there (it said 'has no conv layer' and dropped ReLU); a model without any conv gets an example from
    its own dataset (it spoke of a shoe to a shapes model); GELU and batch norm are explained."""
    open_site(desk, site_url, "model=resnet_s&image=test:0")
    text = desk.inner_text("#article-body")
    heads = desk.eval_on_selector_all("#article-body h3", "els => els.map(e => e.textContent)")
    assert "has no conv layer" not in text and "the first conv layer is inside stem" in text
    assert {"Kernels", "Batch norm", "ReLU", "Residual blocks", "Pooling", "Softmax"} <= set(heads), heads
    desk.click("#article-body section[aria-labelledby='art-residual'] button.show")
    desk.wait_for_selector("#detail:not([hidden])[data-layer='block1']", timeout=15000)
    switch_model(desk, "mlp")
    text = desk.inner_text("#article-body")
    label = desk.evaluate(
        "() => cnnlab.doc.model.classes[cnnlab.doc.input.label ?? cnnlab.doc.prediction.index]"
    )
    assert "has no conv layer" in text and f"Moving a {label} 3 pixels up" in text and "shoe" not in text
    switch_model(desk, "bnspec")
    text = desk.inner_text("#article-body")
    assert "GELU, a smooth ReLU" in text and "Open bn1 to see each channel" in text


def test_smaller_defects(desk, site_url):
    """Legend ends that never run together ('-0.680.68'), one scale for a pooling view's input and output,
    readable normalize statistics (not 16 digits), no 'all 1 input channel', no '− -0.39'."""
    open_site(desk, site_url, "model=speednet")
    touching = desk.evaluate(
        """() => [...document.querySelectorAll('#network .legend-ends')].filter((e) => {
            const [a, b] = [...e.children].map((c) => c.getBoundingClientRect());
            return b && Math.abs(a.top - b.top) < 2 && b.left - a.right < 2; }).length"""
    )
    assert touching == 0
    open_site(desk, site_url, "model=cnn2&image=test:0&stage=pool1&channel=0")
    desk.wait_for_selector("#detail[data-kind='maxpool'] figure.big", timeout=15000)
    ends = desk.eval_on_selector_all("#detail figure.big .legend-ends", "els => els.map(e => e.textContent)")
    assert len(ends) == 2 and ends[0] == ends[1], ends
    open_site(desk, site_url, "model=cnn2&image=test:0&stage=normalize&channel=0")
    desk.wait_for_selector("#detail:not([hidden])", timeout=15000)
    text = desk.inner_text("#detail")
    assert "0.3000" in text and not re.search(r"\d\.\d{7,}", text), text[:400]
    open_site(desk, site_url, "model=cnn2&image=test:0&stage=conv1&channel=0")
    desk.wait_for_selector("#detail[data-kind='conv'] .sum[data-total]", timeout=15000)
    assert "all 1 input" not in desk.inner_text("#detail") and "its one input channel" in desk.inner_text(
        "#detail"
    )
    open_site(desk, site_url, "model=bnspec&image=test:0&stage=bn1&channel=0")
    desk.wait_for_selector("#detail[data-kind='batchnorm'] .sum", timeout=15000)
    lines = []
    for ch in range(8):
        desk.evaluate(
            f'() => document.querySelector(\'#network .col[data-layer="bn1"] .map[data-channel="{ch}"]\').click()'
        )
        desk.wait_for_function(
            f"() => document.querySelector('#detail')?.textContent.includes('channel {ch}')"
        )
        lines.append(desk.inner_text("#detail .sum"))
    assert not [line for line in lines if re.search(r"[−-] -\d", line)], lines
    assert any("+ " in line.split("/")[0] for line in lines) or all("− " in line for line in lines)


def test_all_zero_gradcam_says_so(desk, site_url):
    open_site(desk, site_url, "model=cnn2&image=test:0&overlay=gradcam")
    note = desk.evaluate(
        """async () => {
            const m = await import(new URL('static/prediction.js', location.href));
            const s = window.cnnlab, n = s.layers[0].shape[1] * s.layers[0].shape[2];
            m.drawInput(s, () => new Float32Array(n));
            const zero = document.getElementById('overlay-note').textContent;
            m.drawInput(s, (hm) => Float32Array.from({length: n}, (_, i) => i / n));
            return [zero, document.getElementById('overlay-note').textContent]; }"""
    )
    assert "zero everywhere" in note[0] and "zero everywhere" not in note[1], note


def test_overlay_lives_in_the_url_and_a_restored_view_is_shown(desk, site_url):
    open_site(desk, site_url, "model=cnn2&image=test:0")
    desk.select_option("#overlay", "saliency")
    desk.wait_for_function("() => location.search.includes('overlay=saliency')")
    open_site(desk, site_url, "model=cnn2&image=test:4&overlay=gradcam&stage=conv2&channel=3")
    desk.wait_for_selector("#detail[data-kind='conv'] .sum[data-total]", timeout=15000)
    assert desk.input_value("#overlay") == "gradcam"
    desk.wait_for_function(
        "() => Math.abs(document.getElementById('detail').getBoundingClientRect().top) < 60"
    )


def test_scale_switch_stage_map_network(desk, site_url):
    open_site(desk, site_url, "model=cnn2&image=test:0")
    legends = "() => [...document.querySelectorAll('#network .col:not(.kind-input):not(.kind-softmax) > .legend')].map(e => e.textContent)"
    per_stage = desk.evaluate(legends)
    assert len(set(per_stage)) > 1
    n = rendered(desk)
    desk.select_option("#scale-mode", "network")
    wait_render(desk, n)
    whole = desk.evaluate(legends)
    assert len(set(whole)) == 1 and len(whole) == len(per_stage), whole
    n = rendered(desk)
    desk.select_option("#scale-mode", "map")
    wait_render(desk, n)
    notes = desk.eval_on_selector_all(
        "#network .col[data-layer='conv1'] > .legend", "els => els.map(e => e.textContent)"
    )
    assert notes == ["own scale per map"]
    desk.select_option("#scale-mode", "stage")


def test_animated_softmax_pooling_and_relu(desk, site_url):
    open_site(desk, site_url, "model=cnn2&image=test:0&stage=softmax")
    desk.wait_for_selector("#detail[data-kind='softmax'] .softmax-steps", timeout=15000)
    fwd = desk.locator("#detail .softmax-steps .player button").nth(2)
    seen = []
    for _ in range(5):
        fwd.click()
        seen.append(
            (
                desk.inner_text("#detail .softmax-step"),
                desk.get_attribute("#detail table.softmax", "data-step"),
            )
        )
    assert [s[1] for s in seen] == ["1", "2", "3", "4", "1"], seen
    assert seen[1][0].startswith("2/4: exp(z − max)") and "Σ =" in seen[2][0]
    lit = desk.evaluate(
        """() => { document.querySelector('#detail table.softmax').dataset.step = '2';
                  return [...document.querySelectorAll('#detail table.softmax td')]
                    .filter((td) => getComputedStyle(td).backgroundColor === 'rgb(253, 227, 204)').length; }"""
    )
    assert lit == 3  # the exp column, one cell per class
    for stage, kind in (("pool1", "maxpool"), ("relu1", "relu")):
        open_site(desk, site_url, f"model=cnn2&image=test:0&stage={stage}&channel=0&pos=0,0")
        desk.wait_for_selector(f"#detail[data-kind='{kind}'] .player button.play", timeout=15000)
        before = desk.inner_text("#detail .sum")
        desk.click("#detail .player button.play")
        desk.wait_for_function(
            f"() => document.querySelector('#detail .sum').textContent !== {before!r}", timeout=5000
        )
        desk.click("#detail .player button.play")  # pause
        assert "(0, " in before


def test_stage_views_link_to_their_article_section(desk, site_url):
    open_site(desk, site_url, "model=resnet_s&image=test:0&stage=block2&channel=0")
    desk.wait_for_selector("#detail a.read-more", timeout=15000)
    assert desk.get_attribute("#detail a.read-more", "href") == "#art-residual"
    desk.click("#detail a.read-more")
    assert desk.evaluate("() => document.activeElement.id") == "art-residual"
    desk.click("#article-body section[aria-labelledby='art-relu'] button.show")  # and back
    desk.wait_for_selector(
        "#detail:not([hidden])[data-layer='stem'] a.read-more[href='#art-kernels']", timeout=15000
    )


def test_playground_shows_whole_weights_signed_colours_and_a_zero_sum_note(page, server):
    """On the served page (the playground needs the server): a learned weight such as -0.3033 fits its
    field (it showed '-0.30|3'), the feature map is in the network's blue/orange (it was gray), and a
    zero-sum kernel with 'sum to 1' says how it was scaled (it was rescaled silently)."""
    from browser_support import fresh

    url, _ = server
    fresh(page, url)
    page.locator("#playground").scroll_into_view_if_needed()
    page.wait_for_selector("#kernel-preset option[value='sobel_left']", state="attached", timeout=15000)
    n = page.evaluate("() => Number(document.getElementById('playground').dataset.updated || 0)")
    page.select_option("#kernel-preset", "sobel_left")
    page.check("#kernel-normalize")
    page.wait_for_function(f"() => Number(document.getElementById('playground').dataset.updated || 0) > {n}")
    page.wait_for_function("() => document.getElementById('filter-status').textContent.includes('sums to 0')")
    coloured = page.evaluate(
        """() => { const c = document.getElementById('filter-output'), g = c.getContext('2d');
                  const d = g.getImageData(0, 0, c.width, c.height).data; let k = 0;
                  for (let i = 0; i < d.length; i += 4) if (d[i] !== d[i + 1] || d[i + 1] !== d[i + 2]) k++;
                  return k; }"""
    )
    assert coloured > 0
    cell = page.locator("#kernel-grid input").first
    cell.fill("-0.3033")
    assert page.evaluate("(e) => e.scrollWidth <= e.clientWidth", cell.element_handle())


def test_padding_stride_widget_plays(desk, site_url):
    open_site(desk, site_url, "model=cnn2&image=test:0")
    widget = desk.locator("#article-body .arith")
    formula = widget.locator(".arith-formula")
    first = formula.inner_text()
    widget.locator(".player button.play").click()
    desk.wait_for_function(
        "(t) => document.querySelector('#article-body .arith-formula').textContent !== t",
        arg=first,
        timeout=5000,
    )
    widget.locator(".player button.play").click()  # pause
    assert "Output (0, 1)" in formula.inner_text() or "Output (" in formula.inner_text()


_BUILD = """() => { const b = document.querySelector('#detail .conv-build'), c = b.querySelector('.build-in canvas');
    const px = c.getContext('2d').getImageData(0, 0, 1, 1).data, w = b.querySelector('.build-in .window');
    return {items: b.querySelectorAll('.build-item').length, inW: c.width, outW: b.querySelector('.build-out canvas').width,
            corner: [px[0], px[1], px[2]], diff: Number(b.querySelector('.build-sum').dataset.maxDiff),
            win: [parseFloat(w.style.top), parseFloat(w.style.left), parseFloat(w.style.width)],
            cell: c.getBoundingClientRect().width / c.width,
            note: b.querySelector('.build-note')?.textContent || ''}; }"""


def test_conv_view_builds_the_output_from_per_channel_intermediate_maps(desk, site_url):
    """CNN Explainer's picture of a convolution: each input channel's map, with its padding ring, ⊛ its
    kernel slice = an intermediate map; their sum + bias is the output map (checked against the model's).
    bnspec's conv1 reads one channel padded by 2 with stride 2; its conv2 reads 8, and a click on one's
    intermediate map follows that channel."""
    open_site(desk, site_url, "model=bnspec&image=test:0&stage=conv1&channel=2&pos=0,0")
    desk.wait_for_selector("#detail .conv-build .build-sum", timeout=15000)
    info = desk.evaluate(_BUILD)
    assert info["items"] == 1 and info["inW"] == 28 + 4 and info["outW"] == 14, info
    assert info["corner"] in ([228, 225, 216], [255, 255, 255]), "the ring is hatched, not a value's colour"
    assert info["diff"] < 1e-4, "Σ intermediate maps + bias is the model's output map"
    assert info["win"][:2] == [0, 0] and abs(info["win"][2] - 5 * info["cell"]) < 0.01
    desk.focus("#detail .big-holder.control")
    desk.keyboard.press("ArrowDown")
    desk.keyboard.press("ArrowRight")
    moved = desk.evaluate(_BUILD)["win"]
    assert [round(v / info["cell"]) for v in moved[:2]] == [2, 2], "the window moves by the stride"
    desk.click("#network .col[data-layer='conv2'] .map >> nth=1")
    desk.wait_for_selector("#detail[data-layer='conv2'] .conv-build .build-sum", timeout=15000)
    info = desk.evaluate(_BUILD)
    scale = desk.evaluate(
        "() => Math.max(...cnnlab.layers.find((l) => l.name === 'conv2').data.map(Math.abs))"
    )
    assert info["items"] == 8 and info["note"] == "" and info["diff"] <= 1e-5 * max(1.0, scale), info
    other = desk.evaluate(
        "() => [...document.querySelectorAll('#detail .build-item:not(.on)')].map((f) => f.dataset.channel)[2]"
    )
    desk.click(f"#detail .build-item[data-channel='{other}'] .build-out canvas")
    desk.wait_for_function(
        f"() => document.querySelector('#detail .build-item.on')?.dataset.channel === '{other}'"
    )
    assert desk.inner_text("#detail .ch-table tr.on th") == other
    assert desk.errors == []


def test_conv_build_draws_the_strongest_16_and_sums_them_all(desk, site_url):
    open_site(desk, site_url, "model=cnn2&image=test:0&stage=conv2&channel=3")
    desk.wait_for_selector("#detail .conv-build .build-sum", timeout=15000)
    cin = desk.evaluate("() => cnnlab.layers.find((l) => l.name === 'conv2').params.in_channels")
    info = desk.evaluate(_BUILD)
    scale = desk.evaluate(
        "() => Math.max(...cnnlab.layers.find((l) => l.name === 'conv2').data.map(Math.abs))"
    )
    assert info["items"] == 16 < cin and f"16 of {cin}" in info["note"], info
    assert info["diff"] <= 1e-5 * max(1.0, scale), info


def test_padding_stride_widget_plays_with_values(desk, site_url):
    """The widget's sizes are typed (not only stepped) and its input and kernel values are edited: the
    output grid takes the formula's size, each output is the window's sum of products (as F.conv2d gives),
    and pointing at an output moves the window there."""
    import torch
    import torch.nn.functional as F

    open_site(desk, site_url, "model=cnn2&image=test:0")
    w = desk.locator("#article-body .arith")
    for key, value in (("n", 6), ("k", 2), ("p", 1), ("s", 3)):
        w.locator(f"input[name='arith-{key}']").fill(str(value))
        w.locator(f"input[name='arith-{key}']").press("Enter")
    assert w.get_attribute("data-out") == "3"  # floor((6 + 2 - 2) / 3) + 1
    assert w.locator(".arith-out button").count() == 9
    assert "⌊(6 + 2·1 − 2) / 3⌋ + 1 = 3" in w.locator(".arith-formula").inner_text()
    image = torch.arange(36, dtype=torch.float32).reshape(6, 6) % 7 - 2
    kernel = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    cells = w.locator(".arith-in input")
    assert cells.count() == 36 and w.locator(".arith-in .pad").count() == 8 * 8 - 36
    typed = """([sel, values]) => document.querySelectorAll(sel).forEach((c, i) => {
        c.value = String(values[i]); c.dispatchEvent(new Event('input', {bubbles: true})); })"""
    desk.evaluate(typed, ["#article-body .arith-in input", image.flatten().tolist()])
    desk.evaluate(typed, ["#article-body .arith-kernel input", kernel.flatten().tolist()[:3]])
    w.locator(".arith-kernel input").nth(3).fill("3")  # typed as a reader types
    want = F.conv2d(image[None, None], kernel[None, None], stride=3, padding=1)[0, 0]
    got = [float(t) for t in w.locator(".arith-out button").all_inner_texts()]
    assert got == pytest.approx(want.flatten().tolist())
    w.locator(".arith-out button[data-y='1'][data-x='2']").hover()
    marked = desk.evaluate(
        """() => [...document.querySelectorAll('#article-body .arith-in .arith-cell')]
                 .map((c, i) => c.classList.contains('in-win') ? i : -1).filter((i) => i >= 0)"""
    )
    assert marked == [3 * 8 + 6, 3 * 8 + 7, 4 * 8 + 6, 4 * 8 + 7], marked  # rows 3-4, columns 6-7 of 8x8
    assert f"= {want[1, 2].item():g}" in w.locator(".arith-formula").inner_text().replace("−", "-")
    w.locator(".arith-kernel input").first.fill("x")
    assert w.locator(".arith-kernel input").first.get_attribute("aria-invalid") == "true"
    assert desk.errors == []


def test_the_store_writes_the_url_itself(desk, site_url):
    """The page's state is one store that writes the URL on every change of what the URL carries (no view
    calls writeUrl by hand): a position moved in a view reaches the URL, closing the view leaves it, and
    a class, an open stage, compare or overlay set in the store reach it too."""
    open_site(desk, site_url, "model=cnn2&image=test:0&stage=conv1&channel=0&pos=3,3")
    desk.wait_for_selector("#detail[data-kind='conv'] .sum[data-total]", timeout=15000)
    desk.focus("#detail .big-holder.control")
    desk.keyboard.press("ArrowRight")
    desk.wait_for_function("() => new URLSearchParams(location.search).get('pos') === '3,4'")
    desk.keyboard.press("Escape")
    desk.wait_for_function("() => !new URLSearchParams(location.search).has('stage')")
    desk.evaluate(
        """() => { cnnlab.classIndex = 3; cnnlab.compare = new Set(['mlp']); cnnlab.overlay = 'saliency';
                  cnnlab.selected = {layer: 'conv1', channel: 2, pos: [4, 5], unit: null}; }"""
    )
    desk.wait_for_function(
        """() => { const q = new URLSearchParams(location.search);
                  return q.get('class') === '3' && q.get('compare') === 'mlp' && q.get('overlay') === 'saliency'
                    && q.get('stage') === 'conv1' && q.get('channel') === '2' && q.get('pos') === '4,5'; }"""
    )
    assert desk.errors == []


def test_compare_heat_maps_are_labelled(desk, site_url):
    """Each compare card names what its heat map shows (Grad-CAM on which stage, or saliency when the model
    has no maps) on the picture and under it, and the panel's heat legend is labelled with ends apart."""
    open_site(desk, site_url, "model=cnn2&image=test:0&compare=mlp")  # cnn2: Grad-CAM; mlp: saliency
    desk.wait_for_selector("#compare .cmp-card[data-model='mlp'] ol", timeout=20000)
    cards = desk.evaluate(
        """() => [...document.querySelectorAll('#compare .cmp-card')].map((c) => [c.dataset.model,
                  c.querySelector('canvas').getAttribute('aria-label'), c.querySelector('p.muted + canvas + p')?.textContent])"""
    )
    assert [c[0] for c in cards] == ["cnn2", "mlp"]
    for model, aria, caption in cards:
        assert caption and ("Grad-CAM on" in caption or "saliency" in caption), (model, caption)
        assert ("Grad-CAM" in aria) == ("Grad-CAM on" in caption), (model, aria)
    legend = desk.evaluate(
        """() => { const l = document.querySelector('#compare > .legend'), e = l.querySelector('.legend-ends');
                  const [a, b] = [...e.children].map((c) => c.getBoundingClientRect());
                  return {label: l.querySelector('.legend-label')?.textContent, gap: b.left - a.right}; }"""
    )
    assert legend["label"] == "importance (0 to the most)" and legend["gap"] > 8, legend
