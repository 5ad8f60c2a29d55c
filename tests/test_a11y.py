"""Keyboard, screen readers and languages: axe-core (injected into the page by Playwright) finds no serious
or critical violation on the page and /docs, in English and Polish, at 1440x900 and on a 390x844 phone;
the whole page works from the keyboard (Tab to the network, arrows, Enter, Escape); every canvas has a
name; predictions are announced; no text is under 12 px; the language choice is remembered; /docs renders
its prose, code and examples properly."""

from __future__ import annotations

import re

import pytest

from browser_support import AXE, DESKTOP, PHONE, fresh, open_detail, rendered, wait_render

pytest_plugins = ["browser_support", "site_support"]
pytestmark = pytest.mark.browser

RUN_AXE = """async () => {
  const r = await axe.run(document, {resultTypes: ['violations']});
  return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
    .map(v => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', ')}`);
}"""


@pytest.fixture(scope="module")
def axe_page(browser, server):
    """A page whose Content-Security-Policy lets Playwright inject axe-core's script."""
    if not AXE.is_file():
        pytest.skip(f"axe-core is not installed: run `npm ci --prefix {AXE.parents[2]}`")
    context = browser.new_context(viewport=DESKTOP, bypass_csp=True, locale="en-US")
    pg = context.new_page()
    pg.errors = []
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    yield pg
    context.close()


def _violations(pg) -> list[str]:
    pg.add_script_tag(path=str(AXE))
    return pg.evaluate(RUN_AXE)


def _page_with_views(pg, url: str, lang: str) -> None:
    """The page with the most on screen: a conv view with its channel table, and the compare panel."""
    fresh(pg, url, f"model=cnn2&lang={lang}")
    open_detail(pg, ".col[data-layer='conv2'] .map >> nth=1", "conv")
    pg.wait_for_selector("#detail .sum[data-total]")
    pg.click("#compare-toggle")
    pg.check("#compare input[value='mlp']")
    pg.wait_for_selector("#compare .cmp-card[data-model='mlp'] ol", timeout=15000)


AXE_CASES = [
    pytest.param("page", "en", DESKTOP, id="page-en-desktop"),
    pytest.param("docs", "en", DESKTOP, id="docs-en-desktop"),
    pytest.param("page", "pl", PHONE, id="page-pl-phone", marks=pytest.mark.slow),
    pytest.param("page", "en", PHONE, id="page-en-phone", marks=pytest.mark.slow),
    pytest.param("page", "pl", DESKTOP, id="page-pl-desktop", marks=pytest.mark.slow),
    pytest.param("docs", "pl", PHONE, id="docs-pl-phone", marks=pytest.mark.slow),
    pytest.param("docs", "en", PHONE, id="docs-en-phone", marks=pytest.mark.slow),
    pytest.param("docs", "pl", DESKTOP, id="docs-pl-desktop", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("where", "lang", "viewport"), AXE_CASES)
def test_axe_finds_no_serious_violation(axe_page, server, where, lang, viewport):
    url, _ = server
    axe_page.set_viewport_size(viewport)
    if where == "page":
        _page_with_views(axe_page, url, lang)
    else:
        axe_page.goto(f"{url}/docs?lang={lang}")
        axe_page.wait_for_selector("body[data-ready='1']")
    assert axe_page.evaluate("() => document.documentElement.lang") == lang
    assert _violations(axe_page) == []
    assert axe_page.errors == []


SITE_CASES = [
    pytest.param("en", DESKTOP, id="site-en-desktop"),
    pytest.param("pl", PHONE, id="site-pl-phone"),
    pytest.param("pl", DESKTOP, id="site-pl-desktop", marks=pytest.mark.slow),
    pytest.param("en", PHONE, id="site-en-phone", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("lang", "viewport"), SITE_CASES)
def test_axe_finds_no_serious_violation_on_a_published_site(browser, site_url, lang, viewport):
    """The static site of `cnnlab publish` (issue 23): the same page, answered by the in-browser engine."""
    if not AXE.is_file():
        pytest.skip(f"axe-core is not installed: run `npm ci --prefix {AXE.parents[2]}`")
    from site_support import open_site

    context = browser.new_context(viewport=viewport, bypass_csp=True, locale="en-US")
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    open_site(pg, site_url, f"model=cnn2&lang={lang}")
    open_detail(pg, ".col[data-layer='conv2'] .map >> nth=1", "conv")
    pg.wait_for_selector("#detail .sum[data-total]")
    pg.click("#compare-toggle")
    pg.check("#compare input[value='mlp']")
    pg.wait_for_selector("#compare .cmp-card[data-model='mlp'] ol", timeout=15000)
    assert pg.evaluate("() => document.documentElement.lang") == lang
    assert _violations(pg) == []
    assert errors == []
    context.close()


def _focused(page) -> dict:
    return page.evaluate(
        """() => { const e = document.activeElement;
                   return {tag: e.tagName, cls: e.className, layer: e.dataset.layer ?? null,
                           channel: e.dataset.channel ?? null, id: e.id}; }"""
    )


def test_keyboard_only(page, server):
    url, _ = server
    fresh(page, url)
    # Tab reaches the network in one stop, whatever the number of maps
    page.focus("#per-stage")
    page.keyboard.press("Tab")
    first = _focused(page)
    assert first["layer"] == "input" and "map" in first["cls"]
    page.keyboard.press("ArrowRight")
    assert _focused(page)["layer"] == "conv1"
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    at = _focused(page)
    assert (at["layer"], at["channel"]) == ("conv1", "2")
    tabbable = page.eval_on_selector_all("#network button", "bs => bs.filter(b => b.tabIndex === 0).length")
    assert tabbable == 1
    # Enter opens the view; focus moves to its heading, so a screen reader reads where it is
    page.keyboard.press("Enter")
    page.wait_for_selector("#detail[data-kind='conv'][data-channel='2'] .sum[data-total]")
    assert _focused(page)["id"] == "detail-title"
    # the output map is a control: arrows move the kernel, announced in a live region
    page.focus("#detail .big-holder.control")
    line = page.locator("#detail .sum")
    assert line.get_attribute("aria-live") == "polite"
    before = line.get_attribute("data-total")
    text = line.inner_text()
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowUp")
    assert line.inner_text() != text and line.get_attribute("data-total") != before
    # Escape closes it and gives focus back to the map that opened it
    page.keyboard.press("Escape")
    assert page.is_hidden("#detail")
    back = _focused(page)
    assert (back["layer"], back["channel"]) == ("conv1", "2")
    # the class bars of the prediction are buttons: Enter asks for that class's heat maps
    n = page.evaluate("() => cnnlab.seq")
    page.focus("#pred-bars button >> nth=1")
    page.keyboard.press("Enter")
    page.wait_for_function(
        f"() => cnnlab.seq > {n} && cnnlab.doc.gradcam && cnnlab.doc.gradcam.class_index === cnnlab.classIndex"
    )
    assert page.errors == []


NAMELESS_CANVASES = """() => [...document.querySelectorAll('canvas')].filter(c => {
  if (c.closest('[aria-hidden=true]') || c.getAttribute('aria-hidden') === 'true') return false;
  if (c.getAttribute('aria-label') || c.getAttribute('aria-labelledby')) return false;
  const owner = c.closest('button, [role=application], figure');
  return !(owner && (owner.getAttribute('aria-label') || owner.querySelector('figcaption')));
}).map(c => c.id || c.className)"""

SMALL_TEXT = """() => {
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const n = walker.currentNode;
    if (!n.textContent.trim()) continue;
    const e = n.parentElement;
    if (!e.getClientRects().length || e.closest('.sr-only')) continue;
    const size = parseFloat(getComputedStyle(e).fontSize);
    if (size < 12) out.push(`${e.tagName}.${e.className}: ${size}px '${n.textContent.trim().slice(0, 20)}'`);
  }
  return out;
}"""


def test_names_live_region_and_text_size(page, server):
    url, _ = server
    fresh(page, url)
    open_detail(page, ".col[data-layer='pool1'] .map >> nth=0", "maxpool")
    assert page.evaluate(NAMELESS_CANVASES) == []
    assert page.evaluate(SMALL_TEXT) == []
    open_detail(page, ".col[data-layer='conv2'] .map >> nth=0", "conv")  # its intermediate maps too
    page.wait_for_selector("#detail .conv-build .build-sum")
    assert page.evaluate(NAMELESS_CANVASES) == []
    assert page.evaluate(SMALL_TEXT) == []
    maps = page.eval_on_selector_all(
        "#network .map", "ms => ms.map(m => m.getAttribute('aria-label') || m.textContent)"
    )
    assert all(m.strip() for m in maps)
    # a new prediction is announced
    live = page.locator("#pred-live")
    assert live.get_attribute("aria-live") == "polite" and live.inner_text().startswith("Prediction of cnn2:")
    before = live.inner_text()
    for _ in range(5):
        n = rendered(page)
        page.click("#random")
        wait_render(page, n)
        if live.inner_text() != before:
            break
    assert live.inner_text() != before
    assert page.errors == []


def test_language_switch_is_remembered_and_the_article_teaches(page, server):
    url, _ = server
    fresh(page, url)
    assert page.inner_text("#net-title") == "The network, stage by stage"
    page.select_option("#lang", "pl")
    assert page.inner_text("#net-title") == "Sieć, etap po etapie"
    assert page.evaluate("() => document.documentElement.lang") == "pl"
    page.wait_for_function("() => document.querySelector('#article-body h3').textContent.includes('Model')")
    assert "Jądra" in page.inner_text("#article-body")
    fresh(page, url)  # a reload, no ?lang=: the choice was kept
    assert page.inner_text("#net-title") == "Sieć, etap po etapie"
    assert "etapów modelu cnn2" in page.inner_text("#status")
    # the article tells the model in view, and its buttons open that stage
    text = page.inner_text("#article-body")
    assert "conv1" in text and "64" in text and "26" in text
    page.click("#article-body button:has-text('conv1')")
    page.wait_for_selector("#detail[data-layer='conv1'][data-kind='conv']")
    # the padding/stride widget: the formula follows its controls
    widget = page.locator("#article-body .arith")
    formula = widget.locator(".arith-formula")
    assert "⌊(5 + 2·1 − 3) / 2⌋ + 1 = 3" in formula.inner_text()
    widget.locator("input[name='arith-s']").fill("1")  # stride 1
    widget.locator("input[name='arith-s']").press("Enter")
    assert "= 5" in formula.inner_text()
    page.select_option("#lang", "en")
    assert "How a CNN sees" in page.inner_text("#article-title")
    assert page.errors == []


def test_docs_prose_code_errors_and_examples(page, server):
    url, _ = server
    page.goto(url + "/docs")
    page.wait_for_selector("body[data-ready='1']")
    # the page's own styles do not reach the reference's prose (it was 1.4rem grey)
    prose = page.locator("section.endpoint p").first
    assert prose.evaluate("p => getComputedStyle(p).fontSize") == "16px"
    assert prose.evaluate("p => getComputedStyle(p).color") == page.evaluate(
        "() => getComputedStyle(document.body).color"
    )
    text = page.inner_text("main")
    assert "``" not in text  # double backticks became code
    assert page.locator("section.endpoint p code, section.endpoint td code").count() > 3
    weights = page.locator("section.endpoint", has_text="GET /api/weights").inner_text()
    assert "413" not in weights and "415" not in weights  # no upload errors for a request without a body
    assert "415" in page.locator("section.endpoint", has_text="POST /api/predict").inner_text()
    examples = page.locator("pre.example").all_inner_texts()
    assert not any("…" in e or "..." in e for e in examples)
    assert any(re.search(r"model=cnn2|model=bn|model=mlp|model=resnet|model=rgb", e) for e in examples)
    assert page.errors == []
