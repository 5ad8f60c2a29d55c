"""Issue 22's slow-attack family against a real `cnnlab serve`, each at 30-way concurrency, while a probe on
its own connection measures /healthz: slow bodies, chunk floods, expensive small images (PNG text chunks)
and run-folder scans (clients polling /api/models over runs with oversized results.json); then the
server's RSS under 200 connections that each send a body 50 bytes short of 8 MiB, and after they go.

Used by ``benchmarks/fuzz_api.py --slow`` (which trains the run and starts the server). Targets: /healthz
p99 <= 100 ms and max <= 250 ms during every attack; peak RSS <= 1.5 GB under the 200 connections and
back within 100 MB of idle after; no 5xx and no traceback in the server's log.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import threading
import time
from collections import Counter
from pathlib import Path

from cnnlab.web.attacks import bloated_png, chunk_flood, near_limit_head

TARGETS = {
    "health_p99_ms": 100.0,
    "health_max_ms": 250.0,
    "peak_rss_mb": 1536.0,
    "rss_after_over_idle_mb": 100.0,
}
CONCURRENCY = 30
ATTACKER_NICE = 0  # set by fuzz_api.py --attackers-nice: the attackers' threads at this niceness


PROBE = r"""
import http.client, json, sys, threading, time
host, port, every = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
stop, seconds, failures = threading.Event(), [], [0]
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
conn = http.client.HTTPConnection(host, port, timeout=10)
while not stop.is_set():
    t0 = time.perf_counter()
    try:
        conn.request("GET", "/healthz")
        r = conn.getresponse()
        r.read()
        ok = r.status == 200
    except OSError:
        ok = False
        conn.close()
        conn = http.client.HTTPConnection(host, port, timeout=10)
    seconds.append(time.perf_counter() - t0)
    failures[0] += not ok
    stop.wait(every)
print(json.dumps({"seconds": seconds, "failures": failures[0]}))
"""


class ProcessProbe:
    """GET /healthz every ``every`` seconds from a process of its own (the attackers' threads never delay
    it), recording each answer's latency; the same summary as fuzz_api's thread probe."""

    def __init__(self, url: str, every: float = 0.02):
        host, port = url.removeprefix("http://").split(":")
        self.args = [host, port, str(every)]
        self.seconds: list[float] = []
        self.failures = 0

    def __enter__(self) -> ProcessProbe:
        import subprocess
        import sys

        self.process = subprocess.Popen(
            [sys.executable, "-c", PROBE, *self.args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        return self

    def __exit__(self, *exc) -> None:
        out, _ = self.process.communicate("", timeout=60)
        doc = json.loads(out)
        self.seconds, self.failures = doc["seconds"], doc["failures"]

    def summary(self) -> dict:
        return latency_summary(self.seconds, self.failures)


def _status(answer: bytes) -> int | None:
    """The status code of a raw HTTP answer, or None when there was none."""
    try:
        return int(answer.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


def _raw(port: int, data: bytes, *, pause: float = 0.0, timeout: float = 30.0) -> int | None:
    """Send ``data`` on a new connection (what the server lets through before it answers) and return the
    answer's status."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with contextlib.suppress(OSError):
            s.sendall(data)
        if pause:
            time.sleep(pause)
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := s.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer:
                    break
    return _status(answer)


def _crowd(work, seconds: float, n: int = CONCURRENCY) -> Counter:
    """``n`` threads calling ``work()`` until ``seconds`` have passed: a count of what it returned."""
    counts: Counter = Counter()
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def loop() -> None:
        import os

        if ATTACKER_NICE:  # on Linux this thread alone: clients on other machines, not on the server's cores
            os.nice(ATTACKER_NICE)
        while time.monotonic() < end:
            try:
                result = work()
            except OSError as exc:
                result = type(exc).__name__
            with lock:
                counts[result] += 1

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    return counts


def slow_bodies(port: int, seconds: float) -> Counter:
    """Bodies that trickle in (100 bytes every 0.1 s of an announced 100 kB), dropped after ``seconds``."""
    head = near_limit_head(size=100_000)
    end = time.monotonic() + seconds

    def work():
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(head + b"--xx\r\n")
            while time.monotonic() < end:
                s.sendall(b"x" * 100)
                time.sleep(0.1)
        return "dropped"

    return _crowd(work, seconds)


def chunk_floods(port: int, seconds: float) -> Counter:
    flood = chunk_flood(chunks=400_000)
    return _crowd(lambda: _raw(port, flood), seconds)


def expensive_images(url: str, model: str, seconds: float) -> Counter:
    import httpx

    body = bloated_png()
    local = threading.local()

    def work():
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=60)
        files = {"file": ("x.png", body, "image/png")}
        return local.client.post("/api/predict", data={"model": model}, files=files).status_code

    return _crowd(work, seconds)


def oversized_runs(runs: Path, source: str, n: int = 8) -> None:
    """``n`` copies of run ``source`` whose results.json hold 76,000 summary rows (4 MiB), as in the issue."""
    layers = [{"name": f"l{i}", "kind": "conv", "output_shape": [1, 2, 3]} for i in range(76_000)]
    for i in range(n):
        shutil.copytree(runs / source, runs / f"big{i}")
        (runs / f"big{i}" / "results.json").write_text(json.dumps({"summary": {"layers": layers}}))


def run_scans(url: str, seconds: float) -> Counter:
    import httpx

    local = threading.local()

    def work():
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=60)
        return local.client.get("/api/models").status_code

    return _crowd(work, seconds)


def near_limit_bodies(server, connections: int = 200, hold: float = 5.0) -> dict:
    """``connections`` POSTs that each send all but the last 50 bytes of an 8 MiB body and wait: the
    server's peak RSS meanwhile (sampled every 50 ms), and its RSS 1 s and 5 s after they close."""
    size = 8 * 1024 * 1024 - 50
    body = b"--xx\r\n" + b"x" * (size - 56)  # 50 bytes short of what the head announces
    head = near_limit_head(size=size)
    idle = server.rss_bytes()
    peak = [idle]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], server.rss_bytes())
            time.sleep(0.05)

    sockets: list[socket.socket] = []
    statuses: Counter = Counter()
    lock = threading.Lock()

    def send() -> None:
        if ATTACKER_NICE:
            import os

            os.nice(ATTACKER_NICE)
        s = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        with lock:
            sockets.append(s)
        try:
            s.sendall(head + body)
            result = "held"
        except OSError as exc:  # refused (503) and closed while sending
            result = type(exc).__name__
        s.settimeout(0.2)
        with contextlib.suppress(OSError):
            answer = s.recv(65536)
            result = _status(answer) or result
        with lock:
            statuses[result] += 1

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    senders = [threading.Thread(target=send, daemon=True) for _ in range(connections)]
    for t in senders:
        t.start()
    for t in senders:
        t.join(120)
    time.sleep(hold)
    for s in sockets:
        s.close()
    time.sleep(1.0)
    after_1s = server.rss_bytes()
    time.sleep(4.0)
    stop.set()
    sampler.join()
    mb = 2**20
    return {
        "connections": connections,
        "body_bytes": size,
        "statuses": {str(k): v for k, v in statuses.items()},
        "rss_idle_mb": round(idle / mb, 1),
        "rss_peak_mb": round(peak[0] / mb, 1),
        "rss_after_1s_mb": round(after_1s / mb, 1),
        "rss_after_5s_mb": round(server.rss_bytes() / mb, 1),
    }


def family(server, runs: Path, model: str, probe_cls=ProcessProbe, seconds: float = 10.0) -> dict:
    """Every attack, one after another, each with its own /healthz probe; then the RSS attack."""
    attacks = {
        "slow bodies": lambda: slow_bodies(server.port, seconds),
        "chunk floods": lambda: chunk_floods(server.port, seconds),
        "expensive small images": lambda: expensive_images(server.url, model, seconds),
        "run-folder scans": lambda: run_scans(server.url, seconds),
    }
    out: dict = {}
    for name, attack in attacks.items():
        with probe_cls(server.url) as probe:
            time.sleep(0.2)
            counts = attack()
            time.sleep(0.2)
        out[name] = {"answers": {str(k): v for k, v in counts.items()}, "health": probe.summary()}
    out["200 near-8 MiB bodies"] = near_limit_bodies(server)
    return out


def verdict(result: dict, log: str) -> dict:
    """Each target, met or not."""
    checks = {}
    for name, r in result.items():
        if "health" in r:
            h = r["health"]
            checks[f"{name}: /healthz p99"] = (h["p99_ms"] or 1e9) <= TARGETS["health_p99_ms"]
            checks[f"{name}: /healthz max"] = (h["max_ms"] or 1e9) <= TARGETS["health_max_ms"]
            checks[f"{name}: no 5xx"] = not any(
                k.isdigit() and int(k) >= 500 and k != "503" for k in r["answers"]
            )
    rss = result["200 near-8 MiB bodies"]
    checks["peak RSS"] = rss["rss_peak_mb"] <= TARGETS["peak_rss_mb"]
    checks["RSS back near idle"] = (
        rss["rss_after_5s_mb"] - rss["rss_idle_mb"] <= TARGETS["rss_after_over_idle_mb"]
    )
    checks["no traceback in the server log"] = "Traceback" not in log
    return checks


def latency_summary(seconds, failures) -> dict:
    """Count, failures, p50/p99/max in ms of a probe's latencies (seconds): the `/healthz` columns."""
    import numpy as np

    ms = np.asarray(seconds) * 1000
    return {
        "n": len(ms),
        "failures": failures,
        "p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 2) if len(ms) else None,
        "max_ms": round(float(ms.max()), 2) if len(ms) else None,
    }
