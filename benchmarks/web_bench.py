"""Benchmark the explainer web app on this machine, over real HTTP on loopback.

Measures:
1. /api/explain for cnn4 on a 28x28 image: server time (the app's Server-Timing header: parsing the
   upload, every stage's activations, Grad-CAM, saliency, JSON) and the client's round trip; target
   server time < 50 ms;
2. /api/predict with 20 concurrent clients (each sending its next request as soon as the last one is
   answered): latency p50/p95/p99 and throughput; target p95 < 100 ms;
3. the page in headless chromium: time from navigation to interactive (models listed, controls live)
   and to the first network drawn; target interactive < 1 s.

The server runs as `cnnlab serve` in its own process (as users run it), with the default settings.
The cnn4 run is a real trained run when --run is given, else a freshly initialised cnn4 saved as a run
(the compute is identical). Prints a table naming the machine; writes benchmarks/results/web.json.
Run: .venv/bin/python benchmarks/web_bench.py [--run runs/cnn4] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import numpy as np
from _machine import machine  # noqa: E402

import cnnlab

RESULTS = Path(__file__).resolve().parent / "results" / "web.json"
CHROMIUM = "/usr/bin/chromium"
TARGETS = {"explain_server_ms": 50.0, "predict_p95_ms": 100.0, "page_interactive_ms": 1000.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_runs(run: str | None, root: Path) -> str:
    """A runs folder holding one cnn4 run; returns its model id."""
    if run:
        shutil.copytree(run, root / "cnn4")
        return "cnn4"
    from cnnlab.data import DATASETS
    from cnnlab.engine import History
    from cnnlab.runs import save_run

    classes = list(DATASETS["fashion_mnist"].classes)
    config = {"model": "cnn4", "input_shape": [1, 28, 28], "classes": classes, "data": "fashion_mnist",
              "split": "tutorial", "seed": 0, "limit": None}  # fmt: skip
    save_run(root / "cnn4", cnnlab.create_model("cnn4", seed=0), History(), config=config)
    return "cnn4"


def image_png(seed: int = 0) -> bytes:
    from PIL import Image

    a = np.random.default_rng(seed).integers(0, 255, (28, 28), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def start_server(runs: Path, port: int, data_dir: str | None, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cnnlab", "serve", str(runs), "--port", str(port), *extra]
    if data_dir:
        cmd += ["--data-dir", data_dir]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the server did not start: {proc.stderr.read().decode()[-2000:]}")


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


def bench_page(base: str, runs: int) -> dict | None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not Path(CHROMIUM).is_file():
        return None
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
    interactive, rendered, loaded = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        for i in range(runs + 1):
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.goto(base + "/")
            page.wait_for_selector("body[data-ready='1']", timeout=30000)
            page.wait_for_selector("body[data-rendered='1']", timeout=30000)
            # milliseconds since navigation start, measured by the page itself
            t = page.evaluate(
                "() => ({ready: window.cnnlabInteractiveMs, rendered: window.cnnlabFirstRenderMs, "
                "load: performance.getEntriesByType('navigation')[0].loadEventEnd})"
            )
            page.close()
            if i == 0:
                continue  # the first navigation also pays chromium's own start-up
            interactive.append(t["ready"])
            loaded.append(t["load"])
            rendered.append(t["rendered"])
        browser.close()
    return {
        "runs": runs,
        "interactive_ms_median": statistics.median(interactive),
        "interactive_ms_max": max(interactive),
        "load_event_ms_median": statistics.median(loaded),
        "first_network_drawn_ms_median": statistics.median(rendered),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--run", default=None, help="a trained cnn4 run folder to serve (default: a fresh cnn4)"
    )
    parser.add_argument(
        "--data-dir", default=os.environ.get("CNNLAB_DATA_DIR"), help="for random test images"
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument(
        "--max-concurrent", type=int, default=None, help="passed to cnnlab serve [its default]"
    )
    parser.add_argument("--workers", type=int, default=None, help="passed to cnnlab serve [its default]")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    n_explain, per_client, page_runs = (20, 5, 3) if args.quick else (100, 25, 7)
    info = machine()
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        model = make_runs(args.run, runs)
        port = free_port()
        extra = ["--max-concurrent", str(args.max_concurrent)] if args.max_concurrent else []
        extra += ["--workers", str(args.workers)] if args.workers else []
        proc = start_server(runs, port, args.data_dir, extra)
        base = f"http://127.0.0.1:{port}"
        try:
            explain = bench_explain(base, model, n_explain)
            one_process = not args.workers or args.workers == 1  # workers' CPU is not visible in /proc/<pid>
            predict = bench_predict(base, model, 20, per_client, proc.pid if one_process else None)
            page = bench_page(base, page_runs)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    results = {
        "machine": info,
        "server": "cnnlab serve (uvicorn, 1 torch thread per request)"
        + (f", --max-concurrent {args.max_concurrent}" if args.max_concurrent else "")
        + (f", --workers {args.workers}" if args.workers else ""),
        "model": "cnn4" + (" (trained run)" if args.run else " (fresh weights; same compute as trained)"),
        "explain": explain,
        "predict_20_clients": predict,
        "page": page,
        "targets": TARGETS,
        "meets": {
            "explain_server_ms": explain["server_ms_median"] < TARGETS["explain_server_ms"],
            "predict_p95_ms": predict["p95_ms"] < TARGETS["predict_p95_ms"],
            "page_interactive_ms": page is not None
            and page["interactive_ms_median"] < TARGETS["page_interactive_ms"],
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
    e, p, g = r["explain"], r["predict_20_clients"], r["page"]
    ok = r["meets"]
    t.add_row("/api/explain cnn4 28x28, server time (median)", f"{e['server_ms_median']:.1f} ms", "< 50 ms", "yes" if ok["explain_server_ms"] else "no")  # fmt: skip
    t.add_row(
        "  server time p95 / client round trip",
        f"{e['server_ms_p95']:.1f} / {e['client_ms_median']:.1f} ms",
        "",
        "",
    )
    t.add_row("  response size", f"{e['response_bytes'] / 1e6:.2f} MB ({e['stages']} stages)", "", "")
    t.add_row("/api/predict, 20 concurrent clients: p95", f"{p['p95_ms']:.1f} ms", "< 100 ms", "yes" if ok["predict_p95_ms"] else "no")  # fmt: skip
    t.add_row("  p50 / p99", f"{p['p50_ms']:.1f} / {p['p99_ms']:.1f} ms", "", "")
    t.add_row("  throughput", f"{p['throughput_rps']:.0f} req/s ({p['requests']} requests, codes {p['status_codes']})", "", "")  # fmt: skip
    if p["server_cpu_ms_per_request"]:
        t.add_row("  server CPU per request", f"{p['server_cpu_ms_per_request']:.2f} ms", "", "")
    if g:
        t.add_row("page interactive (median)", f"{g['interactive_ms_median']:.0f} ms", "< 1000 ms", "yes" if ok["page_interactive_ms"] else "no")  # fmt: skip
        t.add_row("  first network drawn (median)", f"{g['first_network_drawn_ms_median']:.0f} ms", "", "")
    else:
        t.add_row("page interactive", "skipped (no playwright/chromium)", "< 1000 ms", "")
    Console().print(t)


if __name__ == "__main__":
    sys.exit(main())
