"""Issue 22, part 1: nothing a stranger sends is paid for on the server's event loop. Small predict
uploads are decoded off the loop, and a PNG's compressed text chunks are never inflated; chunked bodies
are refused unread (411); request bodies are admitted against a global byte budget before they are read
(503 beyond it); run lookups never wait for a scan; a stop's cancelled requests answer JSON 503."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")

import cnnlab as cl  # noqa: E402
from cnnlab.engine.history import History  # noqa: E402
from cnnlab.web import create_app  # noqa: E402
from cnnlab.web.attacks import bloated_png, chunk_flood  # noqa: E402

CLASSES = [str(i) for i in range(10)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("loop-runs")
    config = {"model": "conv4-pool-dense8", "input_shape": [1, 28, 28], "classes": CLASSES, "data": "fashion_mnist",
              "split": "tutorial", "seed": 0, "limit": None}  # fmt: skip
    model = cl.create_model("conv4-pool-dense8", seed=0)
    cl.save_run(root / "tiny", model, History(), config=config)
    return root


def test_png_text_chunks_are_dropped_before_decoding():
    from cnnlab.images import load_image

    bloated, plain = bloated_png(chunks=59), bloated_png(chunks=0)
    assert len(bloated) < 64 * 1024 and Image.open(io.BytesIO(plain)).size == (256, 256)
    t0 = time.perf_counter()
    img = load_image(bloated, gray=True)
    seconds = time.perf_counter() - t0
    assert np.array_equal(img, load_image(plain, gray=True))  # the same pixels
    assert seconds < 0.1, seconds  # Pillow alone inflates 59 MB of text: 0.25-0.8 s


def test_png_text_chunks_are_dropped_in_folder_decoding(tmp_path):
    from cnnlab.data.decode import _decode, _Options

    path = tmp_path / "x.png"
    path.write_bytes(bloated_png(chunks=59))
    opt = _Options(size=28, channels=1, resize="pad", fill="black", max_pixels=50_000_000, min_side=8)
    t0 = time.perf_counter()
    arr = _decode(str(path), opt)
    assert arr.shape == (1, 28, 28) and time.perf_counter() - t0 < 0.1


def test_a_large_exif_chunk_is_dropped_and_a_small_one_kept():
    from cnnlab.pngsafe import MAX_EXIF_BYTES, without_metadata

    plain = bloated_png(side=16, chunks=0)

    def with_exif(n: int) -> bytes:
        import struct
        import zlib

        data = b"MM\x00*" + bytes(n - 4)
        chunk = struct.pack(">I", n) + b"eXIf" + data + struct.pack(">I", zlib.crc32(b"eXIf" + data))
        return plain[:33] + chunk + plain[33:]

    small, large = with_exif(64), with_exif(MAX_EXIF_BYTES + 1)
    assert without_metadata(io.BytesIO(small)).read() == small
    assert without_metadata(io.BytesIO(large)).read() == plain


def _probe(app, during) -> tuple[list, list[float]]:
    """Run the coroutines ``during(client)`` against ``app`` while /healthz is asked every 10 ms:
    (their answers, /healthz's latencies)."""

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as c:
            seconds: list[float] = []
            done = asyncio.Event()

            async def probe():  # the probe shares the loop: its latency counts from when it was due
                due = time.perf_counter()
                while not done.is_set():
                    assert (await c.get("/healthz")).status_code == 200
                    seconds.append(time.perf_counter() - due)
                    due = time.perf_counter() + 0.01
                    await asyncio.sleep(0.01)

            task = asyncio.ensure_future(probe())
            await asyncio.sleep(0.05)
            answers = await asyncio.gather(*during(c))
            done.set()
            await task
            return answers, seconds

    return asyncio.run(main())


def test_expensive_small_pngs_do_not_stall_the_event_loop(runs):
    # issue 22: 30 concurrent 59 KB PNGs of zTXt chunks froze /healthz 9.6 s (decoded on the loop)
    app = create_app(runs, warm=False)
    files = {"file": ("x.png", bloated_png(), "image/png")}
    first = [True]

    def attack(c):
        if first.pop() if first else False:  # the model loaded and its batcher built first
            return [c.post("/api/predict", data={"model": "tiny"}, files=files)]
        return [c.post("/api/predict", data={"model": "tiny"}, files=files) for _ in range(12)]

    _probe(app, attack)
    app.state.registry.runs(refresh=True)  # a fresh scan: the old code decoded on the loop then
    answers, health = _probe(app, attack)
    assert [r.status_code for r in answers] == [200] * 12, answers[0].text
    assert max(health) < 0.5, sorted(health)[-5:]
    app.state.pool.close()
    app.state.batchers.close()


def test_run_lookups_never_wait_for_a_scan(runs, monkeypatch):
    # issue 22: RunRegistry's lock was held for a whole scan (8 large runs: 17-28 s), and every lookup
    # (predict, on the event loop) waited for it
    from cnnlab.web import registry as reg

    registry = reg.RunRegistry(runs)
    registry.runs(refresh=True)
    real = reg.scan_runs

    def slow_scan(*args, **kwargs):
        time.sleep(1.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(reg, "scan_runs", slow_scan)
    scanning = threading.Thread(target=registry.runs, kwargs={"refresh": True})
    scanning.start()
    time.sleep(0.1)
    t0 = time.perf_counter()
    assert registry.entry("tiny").id == "tiny"
    waited = time.perf_counter() - t0
    scanning.join()
    assert waited < 0.2, waited


def test_unchanged_runs_are_not_parsed_again(runs, tmp_path):
    import os
    import shutil

    from cnnlab.web.registry import RunRegistry

    shutil.copytree(runs / "tiny", tmp_path / "tiny")
    registry = RunRegistry(tmp_path)
    assert "tiny" in registry.runs(refresh=True)
    config = tmp_path / "tiny" / "config.json"
    st = config.stat()
    text = config.read_text()
    config.write_text(text.replace('"conv4-pool-dense8"', '"conv4-pool-dense9"'))  # same size
    os.utime(config, ns=(st.st_atime_ns, st.st_mtime_ns))
    if config.stat().st_ino == st.st_ino:  # the same file version by its signature: not read again
        assert registry.runs(refresh=True)["tiny"].config["model"] == "conv4-pool-dense8"
    config.write_text(text + " ")
    assert registry.runs(refresh=True)["tiny"].config["model"] == "conv4-pool-dense8"


def test_a_huge_results_summary_is_dropped_not_served(runs, tmp_path):
    # issue 22: 8 runs with 4 MiB results.json (76k layers each): /api/models took 17-28 s, 24 MB
    import shutil

    from fastapi.testclient import TestClient

    shutil.copytree(runs / "tiny", tmp_path / "big")
    layers = [{"name": f"l{i}", "kind": "conv", "output_shape": [1, 2, 3]} for i in range(5000)]
    (tmp_path / "big" / "results.json").write_text(json.dumps({"summary": {"layers": layers}}))
    with TestClient(create_app(tmp_path, warm=False)) as c:
        r = c.get("/api/models")
    assert r.status_code == 200 and len(r.content) < 20_000
    assert r.json()["models"][0]["layers"] == []


def test_chunked_bodies_are_refused_unread_by_the_real_server(runs):
    # issue 22: 1-byte chunks cost ~10 us each of h11 work on the loop; 4 POSTs froze /healthz 18.5 s
    from cnnlab.web.live import LiveServer

    flood = chunk_flood(chunks=400_000)
    with LiveServer(runs) as server:
        t0 = time.perf_counter()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            with contextlib.suppress(OSError):  # the server answered and closed while we were sending
                s.sendall(flood)
            answer = b""
            with contextlib.suppress(OSError):
                while chunk := s.recv(65536):
                    answer += chunk
        seconds = time.perf_counter() - t0
        with httpx.Client() as c:
            assert c.get(server.url + "/healthz").status_code == 200
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 411"), answer[:200]
    assert json.loads(body)["status"] == 411
    assert seconds < 2.0, seconds


def test_bodies_are_admitted_against_a_global_budget_before_they_are_read():
    # issue 22: 200 connections each 50 bytes short of 8 MiB held 2.6 GB (bodies buffered before any limit)
    from cnnlab.web.limits import BodyBudget, BodyLimit

    reached = []

    async def app(scope, receive, send):
        reached.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    budget = BodyBudget(100)
    limited = BodyLimit(app, max_bytes=80, seconds=5, budget=budget)

    async def main():
        gate = asyncio.Event()

        async def stalled():
            yield b"a" * 30
            await gate.wait()
            yield b"b" * 30

        transport = httpx.ASGITransport(app=limited)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            first = asyncio.ensure_future(c.post("/x", content=stalled(), headers={"content-length": "60"}))
            await asyncio.sleep(0.05)
            assert budget.held == 60
            second = await c.post("/x", content=b"c" * 60)  # 60 + 60 > 100: refused unread
            small = await c.post("/x", content=b"d" * 40)  # fits beside the first
            gate.set()
            return await first, second, small

    first, second, small = asyncio.run(main())
    assert second.status_code == 503 and second.json()["status"] == 503
    assert second.headers["retry-after"] == "1" and second.headers["connection"] == "close"
    assert first.status_code == small.status_code == 200
    assert reached == [b"d" * 40, b"a" * 30 + b"b" * 30] and budget.held == 0


def test_a_request_cancelled_by_a_stop_answers_json_503():
    # issue 22: SIGTERM with a slow upload in flight: uvicorn cancels it after the grace period, and the
    # client got 500 text/plain (and the log a traceback)
    from cnnlab.web.app import Headers

    async def slow(scope, receive, send):
        await asyncio.sleep(60)

    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def main():
        scope = {"type": "http", "path": "/api/predict", "method": "POST", "headers": []}
        task = asyncio.ensure_future(Headers(slow)(scope, receive, send))
        await asyncio.sleep(0.05)
        task.cancel()  # what uvicorn does when the grace period is over
        await asyncio.wait([task])
        return task

    task = asyncio.run(main())
    assert not task.cancelled() and task.exception() is None
    assert sent[0]["status"] == 503
    assert json.loads(sent[1]["body"])["status"] == 503
    assert (b"content-type", b"application/json") in sent[0]["headers"]


def test_the_page_says_what_a_chunked_request_must_do(runs):
    from fastapi.testclient import TestClient

    with TestClient(create_app(runs, warm=False)) as c:
        r = c.post("/api/predict", content=iter([b"model=tiny"]))
    assert r.status_code == 411 and "Content-Length" in r.json()["error"]


def test_requests_buy_at_most_one_scan_per_half_second(runs, monkeypatch):
    # an unknown model id asked for a rescan each time: a stranger could buy a scan of RUNS_DIR per request
    from cnnlab.web import registry as reg

    registry = reg.RunRegistry(runs)
    registry.runs(refresh=True)
    real, scans = reg.scan_runs, []

    def counted(*args, **kwargs):
        scans.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(reg, "scan_runs", counted)
    for i in range(50):
        with pytest.raises(reg.UnknownModel):
            registry.entry(f"nope{i}")
    assert len(scans) <= 1
    time.sleep(reg.REQUEST_RESCAN_SECONDS + 0.05)
    with pytest.raises(reg.UnknownModel):
        registry.entry("nope")
    assert len(scans) <= 2


def test_the_listing_follows_the_runs_folder(runs, tmp_path):
    import shutil

    from fastapi.testclient import TestClient

    from cnnlab.web.registry import REQUEST_RESCAN_SECONDS

    shutil.copytree(runs / "tiny", tmp_path / "a")
    with TestClient(create_app(tmp_path, warm=False)) as c:
        first = c.get("/api/models").json()
        assert [m["id"] for m in first["models"]] == ["a"]
        assert c.get("/api/models").json() == first  # rendered once, served again
        shutil.copytree(runs / "tiny", tmp_path / "b")
        time.sleep(REQUEST_RESCAN_SECONDS + 0.05)
        assert [m["id"] for m in c.get("/api/models").json()["models"]] == ["a", "b"]
