"""The static-site part of web_bench.py (issue 23): `cnnlab publish` for cnn2 with a 100-image gallery,
served by Python's static file server (`python -m http.server`, in a thread), in headless chromium.

Measures: the site's size (target <= 3 MB: weights, gallery, page code); navigation to interactive
(models listed, controls live; target <= 1.0 s median) and to the first network drawn; a new gallery image
explained in the Web Worker, all stages + softmax (target <= 60 ms median) and the backward pass with
Grad-CAM and saliency (target <= 150 ms median), as the worker times itself, plus the page's round trip to
the worker; axe-core on the static page (a conv view and the compare panel open), en and pl, desktop and
phone (target 0 serious or critical).
"""

from __future__ import annotations

import functools
import http.server
import statistics
import threading
from pathlib import Path

from cnnlab.web.live import CHROMIUM, CHROMIUM_ARGS

SITE_TARGETS = {
    "site_bytes": 3_000_000,
    "site_interactive_ms": 1000.0,
    "worker_explain_ms": 60.0,
    "worker_gradcam_ms": 150.0,
    "site_axe_serious_or_critical": 0,
}

# n gallery images explained through the page's own data source; the worker's timings and the round trip
EXPLAIN_IN_WORKER = """async (n) => {
  const { dataSource } = await import(new URL('static/datasource.js', location.href));
  const out = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const d = await dataSource.explain({ model: 'cnn2', test_index: i % 100, top_k: 5 });
    out.push({ ...d.timing, round_trip_ms: performance.now() - t0 });
  }
  return out;
}"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def serve_folder(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


def publish_cnn2(runs: Path, out: Path, data_dir: str | None) -> int:
    from cnnlab.publish import publish

    publish([runs / "cnn2", runs / "fastcnn"], out, gallery=100, data_dir=data_dir)  # fastcnn: to compare
    return sum(f.stat().st_size for f in out.rglob("*") if f.is_file() and "fastcnn" not in f.parts)


def _page_times(browser, base: str, runs: int) -> tuple[list[float], list[float]]:
    interactive, drawn = [], []
    for i in range(runs + 1):
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(base + "/?model=cnn2")
        page.wait_for_selector("body[data-ready='1']", timeout=30000)
        page.wait_for_function("() => Number(document.body.dataset.rendered || 0) >= 1", timeout=30000)
        t = page.evaluate("() => [window.cnnlabInteractiveMs, window.cnnlabFirstRenderMs]")
        if i:  # the first navigation also pays chromium's start-up
            interactive.append(t[0])
            drawn.append(t[1])
        page.close()
    return interactive, drawn


def bench_site(base: str, runs: int, images: int) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        interactive, drawn = _page_times(browser, base, runs)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(base + "/?model=cnn2")
        page.wait_for_function("() => Number(document.body.dataset.rendered || 0) >= 1", timeout=30000)
        times = page.evaluate(EXPLAIN_IN_WORKER, images + 5)[5:]  # warm-up: the JIT
        browser.close()
    med = {k: statistics.median(t[k] for t in times) for k in ("forward_ms", "gradcam_ms", "round_trip_ms")}
    return {
        "runs": runs,
        "interactive_ms_median": statistics.median(interactive),
        "interactive_ms_max": max(interactive),
        "first_network_drawn_ms_median": statistics.median(drawn),
        "images": len(times),
        "worker_explain_ms_median": med["forward_ms"],
        "worker_explain_ms_p95": sorted(t["forward_ms"] for t in times)[int(0.95 * (len(times) - 1))],
        "worker_gradcam_ms_median": med["gradcam_ms"],
        "page_round_trip_ms_median": med["round_trip_ms"],
    }


def bench_site_axe(base: str, axe_js: Path) -> dict:
    from playwright.sync_api import sync_playwright

    run_axe = """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
        .filter(v => v.impact === "serious" || v.impact === "critical").map(v => `${v.id} (${v.nodes.length})`)"""
    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for lang in ("en", "pl"):
            for screen, (w, h) in (("desktop", (1440, 900)), ("phone", (390, 844))):
                ctx = browser.new_context(viewport={"width": w, "height": h}, bypass_csp=True)
                page = ctx.new_page()
                page.goto(f"{base}/?model=cnn2&lang={lang}")
                page.wait_for_function(
                    "() => Number(document.body.dataset.rendered || 0) >= 1", timeout=30000
                )
                page.click(".col[data-layer='conv2'] .map >> nth=1")
                page.wait_for_selector("#detail .sum[data-total]", timeout=30000)
                page.click("#compare-toggle")
                page.check("#compare input[value='fastcnn']")
                page.wait_for_selector("#compare .cmp-card[data-model='fastcnn'] ol", timeout=30000)
                page.add_script_tag(path=str(axe_js))
                out[f"site-{lang}-{screen}"] = page.evaluate(run_axe)
                ctx.close()
        browser.close()
    return {"violations": out, "serious_or_critical": sum(len(v) for v in out.values())}


def site_part(runs: Path, tmp: Path, data_dir: str | None, *, quick: bool, axe_js: Path | None) -> dict:
    """Publish, serve, measure. Needs the Fashion-MNIST test set (the gallery) and chromium."""
    size = publish_cnn2(runs, tmp / "site", data_dir)
    srv, base = serve_folder(tmp / "site")
    try:
        timing = bench_site(base, 2 if quick else 7, 5 if quick else 50)
        axe = bench_site_axe(base, axe_js) if axe_js is not None else None
    finally:
        srv.shutdown()
        srv.server_close()
    meets = {
        "site_bytes": size <= SITE_TARGETS["site_bytes"],
        "site_interactive_ms": timing["interactive_ms_median"] <= SITE_TARGETS["site_interactive_ms"],
        "worker_explain_ms": timing["worker_explain_ms_median"] <= SITE_TARGETS["worker_explain_ms"],
        "worker_gradcam_ms": timing["worker_gradcam_ms_median"] <= SITE_TARGETS["worker_gradcam_ms"],
        "site_axe_serious_or_critical": axe is not None and axe["serious_or_critical"] == 0,
    }
    return {"cnn2_site_bytes": size, **timing, "axe": axe, "meets": meets}
