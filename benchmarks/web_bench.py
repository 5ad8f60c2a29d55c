"""Benchmark the explainer web app on this machine, over real HTTP on loopback.

Measures (the targets of issue 16):
1. /api/explain for cnn2 on a 28x28 image: the document's size (target <= 150 KB), the server time (the
   app's Server-Timing header) and the client's round trip;
2. /api/predict on fastcnn with 20 concurrent clients (each sending its next request as soon as the last
   is answered): latency p50/p95/p99 and throughput; target p95 <= 40 ms;
3. the page in headless chromium on cnn2: navigation to interactive (models listed, controls live; target
   <= 500 ms median), to the first network drawn, and a click on "Random test image" to the network
   redrawn (target <= 50 ms median; also split into the server round trip and the page's own decode and
   redraw);
5. the static site `cnnlab publish` writes (benchmarks/site_bench.py, issue 23): its size for cnn2 with a
   100-image gallery, interactive from a local static server, a new image explained in the Web Worker and
   its Grad-CAM, axe-core on it; needs the Fashion-MNIST test set (--data-dir) for the gallery.
4. axe-core on the page (with a conv view and the compare panel open) and on /docs, in English and
   Polish, at 1440x900 and 390x844: serious and critical violations (target 0). Needs
   `npm ci --prefix tests/js` (axe-core); skipped without it.

The server runs as `cnnlab serve` in its own process (as users run it), with the default settings. The
runs are real trained runs when --runs names a folder holding `cnn2/` and `fastcnn/` runs, else freshly
initialised models saved as runs (the compute and the document sizes are the same). Prints a table naming
the machine; writes benchmarks/results/web.json.
Run: .venv/bin/python benchmarks/web_bench.py [--runs RUNS_DIR] [--data-dir DIR] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import numpy as np
from _machine import machine  # noqa: E402
from site_bench import SITE_TARGETS, site_part  # noqa: E402

import cnnlab
from cnnlab.web.live import CHROMIUM, CHROMIUM_ARGS, LiveServer

RESULTS = Path(__file__).resolve().parent / "results" / "web.json"
AXE = Path(__file__).resolve().parents[1] / "tests" / "js" / "node_modules" / "axe-core" / "axe.min.js"
TARGETS = {
    "explain_bytes": 150_000,
    "predict_p95_ms": 40.0,
    "page_interactive_ms": 500.0,
    "click_to_redraw_ms": 50.0,
    "axe_serious_or_critical": 0,
}


MODELS = ("cnn2", "fastcnn")


def make_runs(runs: str | None, root: Path) -> None:
    """A runs folder holding a cnn2 and a fastcnn run (copied from ``runs``, or fresh weights)."""
    from cnnlab.data import DATASETS
    from cnnlab.engine import History
    from cnnlab.run.folder import save_run

    classes = list(DATASETS["fashion_mnist"].classes)
    for name in MODELS:
        if runs and (Path(runs) / name / "model.safetensors").is_file():
            shutil.copytree(Path(runs) / name, root / name)
            continue
        config = {"model": name, "input_shape": [1, 28, 28], "classes": classes, "data": "fashion_mnist",
                  "split": "tutorial", "seed": 0, "limit": None}  # fmt: skip
        save_run(root / name, cnnlab.create_model(name, seed=0), History(), config=config)


def image_png(seed: int = 0) -> bytes:
    from PIL import Image

    a = np.random.default_rng(seed).integers(0, 255, (28, 28), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def bench_explain(base: str, model: str, n: int) -> dict:
    import httpx

    png = image_png()
    server, client = [], []
    with httpx.Client(base_url=base, timeout=30) as c:
        for i in range(n + 5):
            t0 = time.perf_counter()
            r = c.post("/api/explain", data={"model": model}, files={"file": ("x.png", png, "image/png")})
            dt = time.perf_counter() - t0
            r.raise_for_status()
            if i >= 5:  # warm-up: first model load, first allocation of every buffer
                server.append(float(r.headers["server-timing"].split("dur=")[1]))
                client.append(dt * 1000)
        size = len(r.content)
        doc = r.json()
    return {
        "n": n,
        "server_ms_median": statistics.median(server),
        "server_ms_p95": pct(server, 95),
        "client_ms_median": statistics.median(client),
        "response_bytes": size,
        "stages": len(doc["layers"]) - 2,
        "gradcam_layer": doc["gradcam"]["layer"] if doc["gradcam"] else None,
    }


def multipart(fields: dict[str, str], png: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body built once, so the load generator spends its CPU on sending."""
    boundary = "cnnlabbench7d1f"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
        "Content-Type: image/png\r\n\r\n".encode()
        + png
        + b"\r\n"
    )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


async def _predict_load(
    base: str, model: str, clients: int, per_client: int
) -> tuple[list[float], float, dict]:
    """``clients`` keep-alive connections, each sending its next request when the last is answered.

    A minimal HTTP/1.1 client on asyncio streams (prebuilt request bytes, Content-Length framing): on a
    2-core machine the load generator shares the cores with the server, and a full client library
    (httpx) spends about as much CPU per request as the server does."""
    host, port = base.removeprefix("http://").split(":")
    requests = []
    for i in range(8):
        body, ctype = multipart({"model": model}, image_png(i))
        head = (
            f"POST /api/predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    latencies: list[float] = []
    codes: dict[int, int] = {}

    async def worker(k: int, conn) -> None:
        reader, writer = conn
        for i in range(per_client):
            t0 = time.perf_counter()
            writer.write(requests[(k + i) % len(requests)])
            await writer.drain()
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append((time.perf_counter() - t0) * 1000)
            codes[status] = codes.get(status, 0) + 1

    conns = [await asyncio.open_connection(host, int(port)) for _ in range(clients)]
    await asyncio.gather(*(worker(k, c) for k, c in enumerate(conns)))  # warm the connections
    latencies.clear()
    codes.clear()
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(k, c) for k, c in enumerate(conns)))
    wall = time.perf_counter() - t0
    for _, writer in conns:
        writer.close()
    return latencies, wall, codes


def process_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), or None elsewhere."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def bench_predict(base: str, model: str, clients: int, per_client: int, pid: int | None) -> dict:
    cpu0 = process_cpu_seconds(pid)
    latencies, wall, codes = asyncio.run(_predict_load(base, model, clients, per_client))
    cpu1 = process_cpu_seconds(pid)
    # both rounds (warm-up and measured) ran on the server: 2 x clients x per_client requests
    cpu_ms = (cpu1 - cpu0) * 1000 / (2 * clients * per_client) if cpu0 is not None and cpu1 else None
    return {
        "server_cpu_ms_per_request": cpu_ms,
        "load_average_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "clients": clients,
        "requests": len(latencies),
        "status_codes": {str(k): v for k, v in sorted(codes.items())},
        "p50_ms": pct(latencies, 50),
        "p95_ms": pct(latencies, 95),
        "p99_ms": pct(latencies, 99),
        "throughput_rps": len(latencies) / wall,
    }


# A click on "Random test image" until the network is redrawn and painted (the page bumps
# body[data-rendered] when a render is done; the observer runs after it, then a frame is painted).
CLICK_TO_REDRAW = """() => new Promise((resolve) => {
  const n = Number(document.body.dataset.rendered);
  const obs = new MutationObserver(() => {
    if (Number(document.body.dataset.rendered) <= n) return;
    obs.disconnect();
    requestAnimationFrame(() => setTimeout(() => resolve({ms: performance.now() - t0, ...window.cnnlabLastRender})));
  });
  obs.observe(document.body, {attributes: true, attributeFilter: ["data-rendered"]});
  const t0 = performance.now();
  document.getElementById("random").click();
})"""


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    return sync_playwright if Path(CHROMIUM).is_file() else None


def bench_page(base: str, runs: int, clicks: int) -> dict | None:
    sync_playwright = _playwright()
    if sync_playwright is None:
        return None
    interactive, rendered, loaded, click, server, redraw = [], [], [], [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for i in range(runs + 1):
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(base + "/?model=cnn2")
            page.wait_for_selector("body[data-ready='1']", timeout=30000)
            page.wait_for_function("() => Number(document.body.dataset.rendered || 0) >= 1", timeout=30000)
            # milliseconds since navigation start, measured by the page itself
            t = page.evaluate(
                "() => ({ready: window.cnnlabInteractiveMs, rendered: window.cnnlabFirstRenderMs, "
                "load: performance.getEntriesByType('navigation')[0].loadEventEnd})"
            )
            if i == 0:  # the first navigation also pays chromium's own start-up
                page.close()
                continue
            interactive.append(t["ready"])
            loaded.append(t["load"])
            rendered.append(t["rendered"])
            if i == 1:
                for k in range(clicks + 2):
                    r = page.evaluate(CLICK_TO_REDRAW)
                    if k >= 2:  # warm-up: the first test-set images, the JIT
                        click.append(r["ms"])
                        server.append(r["server"])
                        redraw.append(r["render"])
            page.close()
        browser.close()
    return {
        "runs": runs,
        "interactive_ms_median": statistics.median(interactive),
        "interactive_ms_max": max(interactive),
        "load_event_ms_median": statistics.median(loaded),
        "first_network_drawn_ms_median": statistics.median(rendered),
        "clicks": len(click),
        "click_to_redraw_ms_median": statistics.median(click),
        "click_to_redraw_ms_p95": pct(click, 95),
        "click_round_trip_ms_median": statistics.median(server),
        "click_decode_and_redraw_ms_median": statistics.median(redraw),
    }


def bench_axe(base: str) -> dict | None:
    """Serious and critical axe-core violations on the page (a conv view and the compare panel open) and
    on /docs, in both languages, on a desktop and a phone screen."""
    sync_playwright = _playwright()
    if sync_playwright is None or not AXE.is_file():
        return None
    run_axe = """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
        .filter(v => v.impact === "serious" || v.impact === "critical").map(v => `${v.id} (${v.nodes.length})`)"""
    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for where in ("page", "docs"):
            for lang in ("en", "pl"):
                for screen, size in (("desktop", (1440, 900)), ("phone", (390, 844))):
                    ctx = browser.new_context(viewport={"width": size[0], "height": size[1]}, bypass_csp=True)
                    page = ctx.new_page()
                    if where == "page":
                        page.goto(f"{base}/?model=cnn2&lang={lang}")
                        page.wait_for_function(
                            "() => Number(document.body.dataset.rendered || 0) >= 1", timeout=30000
                        )
                        page.click(".col[data-layer='conv2'] .map >> nth=1")
                        page.wait_for_selector("#detail .sum[data-total]", timeout=30000)
                        page.click("#compare-toggle")
                        page.check("#compare input[value='fastcnn']")
                        page.wait_for_selector("#compare .cmp-card[data-model='fastcnn'] ol", timeout=30000)
                    else:
                        page.goto(f"{base}/docs?lang={lang}")
                        page.wait_for_selector("body[data-ready='1']", timeout=30000)
                    page.add_script_tag(path=str(AXE))
                    out[f"{where}-{lang}-{screen}"] = page.evaluate(run_axe)
                    ctx.close()
        browser.close()
    return {"violations": out, "serious_or_critical": sum(len(v) for v in out.values())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", default=None, help="a folder with trained cnn2/ and fastcnn/ runs [fresh weights]"
    )
    parser.add_argument(
        "--data-dir", default=os.environ.get("CNNLAB_DATA_DIR"), help="for random test images"
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke test)")
    parser.add_argument(
        "--max-concurrent", type=int, default=None, help="passed to cnnlab serve [its default]"
    )
    parser.add_argument("--workers", type=int, default=None, help="passed to cnnlab serve [its default]")
    parser.add_argument("--no-axe", action="store_true", help="skip the axe-core part")
    parser.add_argument("--no-site", action="store_true", help="skip the static-site part")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    n_explain, per_client, page_runs, clicks = (5, 2, 2, 3) if args.quick else (100, 50, 7, 30)
    info = {**machine(), "load_average_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        make_runs(args.runs, runs)
        extra = ["--max-concurrent", str(args.max_concurrent)] if args.max_concurrent else []
        extra += ["--workers", str(args.workers)] if args.workers else []
        extra += ["--data-dir", args.data_dir] if args.data_dir else []
        with LiveServer(runs, *extra, start_seconds=60) as server:
            base = server.url
            explain = bench_explain(base, "cnn2", n_explain)
            one_process = not args.workers or args.workers == 1  # workers' CPU is not visible in /proc/<pid>
            pid = server.process.pid if one_process and server.process else None
            predict = bench_predict(base, "fastcnn", 20, per_client, pid)
            page = bench_page(base, page_runs, clicks)
            axe = None if args.no_axe else bench_axe(base)
        site = None
        if args.data_dir and _playwright() is not None and not args.no_site:
            axe_js = None if args.no_axe or not AXE.is_file() else AXE
            site = site_part(runs, Path(tmp), args.data_dir, quick=args.quick, axe_js=axe_js)
    results = {
        "machine": info,
        "server": "cnnlab serve (uvicorn, 1 torch thread per request)"
        + (f", --max-concurrent {args.max_concurrent}" if args.max_concurrent else "")
        + (f", --workers {args.workers}" if args.workers else ""),
        "models": "cnn2, fastcnn"
        + (" (trained runs)" if args.runs else " (fresh weights; same compute as trained)"),
        "explain": explain,
        "predict_20_clients": predict,
        "page": page,
        "axe": axe,
        "site": site,
        "targets": {**TARGETS, **SITE_TARGETS},
        "meets": {
            **(site["meets"] if site else {}),
            "explain_bytes": explain["response_bytes"] <= TARGETS["explain_bytes"],
            "predict_p95_ms": predict["p95_ms"] <= TARGETS["predict_p95_ms"],
            "page_interactive_ms": page is not None
            and page["interactive_ms_median"] <= TARGETS["page_interactive_ms"],
            "click_to_redraw_ms": page is not None
            and page["click_to_redraw_ms_median"] <= TARGETS["click_to_redraw_ms"],
            "axe_serious_or_critical": axe is not None and axe["serious_or_critical"] == 0,
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    _print(results)
    return 0


def _print(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    m = r["machine"]
    t = Table(
        title=f"cnnlab web benchmark on {m['cpu']}, {m['cores']} cores (torch {m['torch']}, load {m['load_average_at_start']:.1f})"
    )
    for c in ("measure", "value", "target", "ok"):
        t.add_column(c, justify="left" if c == "measure" else "right")
    e, p, g, a = r["explain"], r["predict_20_clients"], r["page"], r["axe"]
    ok = {k: "yes" if v else "no" for k, v in r["meets"].items()}
    t.add_row("/api/explain cnn2 28x28, document size", f"{e['response_bytes'] / 1e3:.1f} KB ({e['stages']} stages)", "<= 150 KB", ok["explain_bytes"])  # fmt: skip
    t.add_row(
        "  server time median / p95", f"{e['server_ms_median']:.1f} / {e['server_ms_p95']:.1f} ms", "", ""
    )
    t.add_row("  client round trip (median)", f"{e['client_ms_median']:.1f} ms", "", "")
    t.add_row("/api/predict fastcnn, 20 concurrent clients: p95", f"{p['p95_ms']:.1f} ms", "<= 40 ms", ok["predict_p95_ms"])  # fmt: skip
    t.add_row("  p50 / p99", f"{p['p50_ms']:.1f} / {p['p99_ms']:.1f} ms", "", "")
    t.add_row("  throughput", f"{p['throughput_rps']:.0f} req/s ({p['requests']} requests, codes {p['status_codes']})", "", "")  # fmt: skip
    if p["server_cpu_ms_per_request"]:
        t.add_row("  server CPU per request", f"{p['server_cpu_ms_per_request']:.2f} ms", "", "")
    if g:
        t.add_row("page interactive (median)", f"{g['interactive_ms_median']:.0f} ms", "<= 500 ms", ok["page_interactive_ms"])  # fmt: skip
        t.add_row("  first network drawn (median)", f"{g['first_network_drawn_ms_median']:.0f} ms", "", "")
        t.add_row("click to redrawn network, cnn2 (median)", f"{g['click_to_redraw_ms_median']:.1f} ms", "<= 50 ms", ok["click_to_redraw_ms"])  # fmt: skip
        t.add_row("  of which server round trip / page decode + redraw", f"{g['click_round_trip_ms_median']:.1f} / {g['click_decode_and_redraw_ms_median']:.1f} ms", "", "")  # fmt: skip
    else:
        t.add_row("page", "skipped (no playwright/chromium)", "", "")
    if a:
        t.add_row("axe-core serious+critical (page, /docs; en, pl; desktop, phone)", str(a["serious_or_critical"]), "0", ok["axe_serious_or_critical"])  # fmt: skip
    else:
        t.add_row("axe-core", "skipped (npm ci --prefix tests/js)", "0", "")
    _print_site(t, r.get("site"), ok)
    Console().print(t)


def _print_site(t, s: dict | None, ok: dict) -> None:
    if not s:
        t.add_row("static site", "skipped (needs --data-dir and chromium)", "", "")
        return
    t.add_row("static site, cnn2 + 100-image gallery: size", f"{s['cnn2_site_bytes'] / 1e6:.2f} MB", "<= 3 MB", ok["site_bytes"])  # fmt: skip
    t.add_row("  interactive from a static server (median)", f"{s['interactive_ms_median']:.0f} ms", "<= 1000 ms", ok["site_interactive_ms"])  # fmt: skip
    t.add_row("  first network drawn (median)", f"{s['first_network_drawn_ms_median']:.0f} ms", "", "")
    t.add_row("  new image, all stages + softmax in the Worker (median)", f"{s['worker_explain_ms_median']:.1f} ms", "<= 60 ms", ok["worker_explain_ms"])  # fmt: skip
    t.add_row("  Grad-CAM + saliency (backward) in the Worker (median)", f"{s['worker_gradcam_ms_median']:.1f} ms", "<= 150 ms", ok["worker_gradcam_ms"])  # fmt: skip
    t.add_row(
        "  page -> worker -> page round trip (median)", f"{s['page_round_trip_ms_median']:.1f} ms", "", ""
    )
    a = s["axe"]
    t.add_row("  axe-core serious+critical (site; en, pl; desktop, phone)", str(a["serious_or_critical"]) if a else "skipped", "0", ok["site_axe_serious_or_critical"])  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
