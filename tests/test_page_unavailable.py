"""The page names the runs it cannot show: a run whose config.json is damaged is left out of the model
picker, and a note beside it (in the page's language) gives its reason, as /api/models lists it."""

from __future__ import annotations

import json

import pytest

import cnnlab as cl
from browser_support import served
from cnnlab.engine import History
from cnnlab.run.folder import save_run

pytest_plugins = ["browser_support"]
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def url(browser, tmp_path_factory):
    from cnnlab.web import create_app

    root = tmp_path_factory.mktemp("unavailable-runs")
    config = {"model": "fastcnn", "input_shape": [1, 28, 28], "classes": [str(i) for i in range(10)],
              "data": "fashion_mnist", "split": "tutorial", "seed": 0, "limit": None}  # fmt: skip
    save_run(root / "good", cl.create_model("fastcnn", seed=0), History(), config=config)
    save_run(root / "damaged", cl.create_model("fastcnn", seed=0), History(), config=config)
    (root / "damaged" / "config.json").write_text(json.dumps({**config, "classes": 5}))
    with served(create_app(root, warm=False)) as base:
        yield base


def test_unavailable_runs_are_named_with_their_reason(browser, url):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    try:
        page.goto(url + "/?lang=en")
        page.wait_for_selector("body[data-ready='1']", timeout=15000)
        assert page.eval_on_selector_all("#model option", "os => os.map(o => o.value)") == ["good"]
        note = page.locator("#unavailable")
        assert note.is_visible() and note.locator("summary").inner_text() == "runs that cannot be loaded: 1"
        note.locator("summary").click()
        reason = note.locator("li").inner_text()
        assert reason.startswith("damaged: ") and "classes" in reason and "/tmp" not in reason
        page.select_option("#lang", "pl")
        assert note.locator("summary").inner_text() == "modele, których nie można wczytać: 1"
    finally:
        context.close()
