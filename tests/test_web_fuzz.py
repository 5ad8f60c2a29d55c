"""Fuzz the upload endpoints: hundreds of random and mutated bodies, fields and kernels. Whatever comes
in, the answer is 200 with a valid document or a 4xx JSON error, never a 5xx. Then the hostile cases
found by hand (issue 15), each refused fast: bodies built to make the multipart parser do quadratic work,
a request past its deadline, a body that trickles in; and against a real `cnnlab serve`: /healthz stays
fast while a hostile 8 MiB body is refused, malformed HTTP framing gets the JSON error shape, SIGTERM
exits within seconds with a request in flight."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
import time

import pytest
import torch

import cnnlab as cl
from cnnlab.engine import History
from cnnlab.explain import schema
from cnnlab.run.folder import save_run

pytest.importorskip("fastapi")
hypothesis = pytest.importorskip("hypothesis")
from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from cnnlab.web import create_app  # noqa: E402
from cnnlab.web.fuzzing import mutated_images, seed_images  # noqa: E402

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


SEEDS = seed_images()
mutated_image = mutated_images(SEEDS)


bodies = st.one_of(st.binary(max_size=3000), mutated_image, st.sampled_from(SEEDS))
content_types = st.sampled_from(["image/png", "image/jpeg", "application/octet-stream", "text/plain", "", "image/gif; x=1", "video/mp4"])  # fmt: skip
field_text = st.one_of(
    st.text(max_size=40), st.sampled_from(["", "0", "-1", "1e9", "true", "auto", "nan", "🙂"])
)


@pytest.fixture(scope="module")
def root(tmp_path_factory, fmnist_dir):
    root = tmp_path_factory.mktemp("fuzz-runs")
    classes = [str(i) for i in range(10)]
    config = {"model": "cnn2", "input_shape": [1, 28, 28], "classes": classes, "data": "fashion_mnist",
              "split": "tutorial", "seed": 0, "limit": 500, "data_dir": str(fmnist_dir)}  # fmt: skip
    save_run(root / "cnn2", cl.create_model("cnn2", seed=0), History(), config=config)
    return root


@pytest.fixture(scope="module")
def client(root, fmnist_dir):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with TestClient(create_app(root, data_dir=fmnist_dir, warm=False), raise_server_exceptions=False) as c:
        yield c
    torch.set_num_threads(before)


def _check(r, ok_doc=None):
    assert r.status_code < 500, r.text[:300]
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    if r.status_code >= 400:
        assert isinstance(body["error"], str) and body["error"]
    elif ok_doc is not None:
        ok_doc.model_validate(body)


@SETTINGS
@given(body=bodies, ctype=content_types, invert=st.one_of(st.none(), field_text), endpoint=st.sampled_from(["/api/predict", "/api/explain"]))  # fmt: skip
def test_fuzz_image_uploads(client, body, ctype, invert, endpoint):
    data = {"model": "cnn2"} | ({"invert": invert} if invert is not None else {})
    r = client.post(endpoint, data=data, files={"file": ("f", body, ctype)})
    _check(r, schema.PredictionDoc if endpoint == "/api/predict" else schema.ActivationsDoc)


@SETTINGS
@given(
    fields=st.dictionaries(
        st.sampled_from(
            [
                "model",
                "test_index",
                "random",
                "top_k",
                "invert",
                "gradcam_layer",
                "class_index",
                "encoding",
                "saliency",
            ]
        ),  # fmt: skip
        field_text,
        max_size=5,
    ),
    raw=st.one_of(st.none(), st.binary(max_size=500)),
)
def test_fuzz_form_fields_and_raw_bodies(client, fields, raw):
    if raw is not None:  # a random body that claims to be multipart
        r = client.post(
            "/api/explain", content=raw, headers={"content-type": "multipart/form-data; boundary=b"}
        )
    else:
        r = client.post("/api/explain", data=fields)
    _check(r)


finite = st.floats(allow_nan=True, allow_infinity=True, width=32)
matrices = st.lists(
    st.lists(st.one_of(finite, st.integers(-(10**30), 10**30)), min_size=0, max_size=6), max_size=6
)


@SETTINGS
@given(
    kernel=st.one_of(st.text(max_size=60), matrices.map(json.dumps)),
    stride=st.one_of(st.none(), field_text),
    mode=st.one_of(st.none(), st.sampled_from(["same", "valid", "full", "x"])),
    upload=st.one_of(st.none(), mutated_image),
)
def test_fuzz_filter(client, kernel, stride, mode, upload):
    data = {"kernel": kernel, "echo_input": "false", "max_side": "64"}
    data |= {"stride": stride} if stride is not None else {}
    data |= {"mode": mode} if mode is not None else {}
    files = {"file": ("f", upload, "image/png")} if upload is not None else None
    r = client.post("/api/filter", data=data, files=files)
    _check(r)
    assert client.get("/healthz").status_code == 200


# ---- driven by /openapi.json (Schemathesis) ---------------------------------------------------------


def test_openapi_driven_fuzz(root, fmnist_dir):
    """Schema-valid and schema-violating requests for every operation, generated by Schemathesis from
    the app's own OpenAPI document, a share steered at the real run: every answer is documented, JSON
    and never a 5xx. (benchmarks/fuzz_api.py sends 10,000 of these to a real server.)"""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import Phase

    from cnnlab.web.fuzzing import check, steered

    app = create_app(root, data_dir=fmnist_dir, warm=False)
    api = schemathesis.openapi.from_asgi("/openapi.json", app)
    seen: dict[int, int] = {}

    @settings(SETTINGS, max_examples=100, database=None, phases=[Phase.generate])
    @given(case=steered(api, model_ids=["cnn2"], images=SEEDS))
    def one(case):
        response = case.call()
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        check(case, response)

    with TestClient(app):  # lifespan: the app's pool closes at the end
        one()
    assert seen.get(200, 0) >= 3 and sum(n for code, n in seen.items() if code >= 500) == 0, seen


# ---- hostile cases (issue 15) ----------------------------------------------------------------------------

MIB8 = 8 * 2**20
REPEATED_BOUNDARY = b"--xx\r\n" * 1_398_000 + b"--xx--\r\n"  # froze the old parser for 266 s
FILE_HEAD = b'--xx\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
HOSTILE_BODIES = {
    "repeated boundary lines": (REPEATED_BOUNDARY, "too many form parts"),
    "fake delimiters in a file": (FILE_HEAD + b"\r\n--xxy" * (MIB8 // 8) + b"\r\n--xx--\r\n", "too many form parts"),
    "many small parts": (b'--xx\r\nContent-Disposition: form-data; name="a"\r\n\r\nb\r\n' * 130_000 + b"--xx--\r\n", "too many form parts"),
    "an 8 MiB part header": (b"--xx\r\nX-A: " + b"v" * (MIB8 - 64) + b"\r\n\r\nx\r\n--xx--\r\n", "header size"),
    "many part headers": (b"--xx\r\n" + b"X-A: b\r\n" * 1_000_000 + b"\r\nx\r\n--xx--\r\n", "header count"),
    "a field over 64 KiB": (b'--xx\r\nContent-Disposition: form-data; name="model"\r\n\r\n' + b"m" * (MIB8 - 100) + b"\r\n--xx--\r\n", "over 65,536 bytes"),
}  # fmt: skip
MULTIPART_XX = {"content-type": "multipart/form-data; boundary=xx"}


@pytest.mark.parametrize("name", list(HOSTILE_BODIES))
def test_hostile_multipart_bodies_are_refused_fast(client, name):
    body, message = HOSTILE_BODIES[name]
    assert len(body) <= MIB8, len(body)  # under the body cap: the parser has to deal with it
    best = float("inf")
    for _ in range(3):  # best of 3: the machine may be busy with other work
        t0 = time.perf_counter()
        r = client.post("/api/predict", content=body, headers=MULTIPART_XX)
        best = min(best, time.perf_counter() - t0)
        assert r.status_code in (400, 413), r.text[:200]
        assert message in r.json()["error"] and r.json()["status"] == r.status_code
    # milliseconds, not the old parser's minutes; the 100 ms target is benchmarks/fuzz_api.py's, measured alone
    assert best < 1.0, f"{name}: {best * 1000:.0f} ms"


def test_boundary_length_is_bounded(client):
    for boundary in ("", "b" * 71):
        r = client.post(
            "/api/predict",
            content=b"--x",
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        )
        assert r.status_code == 400 and "no valid boundary" in r.json()["error"]  # fmt: skip


def test_a_request_past_its_deadline_is_504_and_the_server_goes_on(root):
    with TestClient(create_app(root, warm=False, request_seconds=0.001), raise_server_exceptions=False) as c:
        r = c.get("/api/weights", params={"model": "cnn2", "layer": "conv1"})
        assert r.status_code == 504 and r.json() == {"error": r.json()["error"], "status": 504}
        assert "within 0.001 s" in r.json()["error"]
        assert c.get("/healthz").status_code == 200


def test_a_body_that_trickles_in_is_408():
    import httpx

    from cnnlab.web.limits import BodyLimit

    async def app(scope, receive, send):  # never reached
        raise AssertionError("the app must not see a body that did not arrive in time")

    async def trickle():
        yield b"--xx\r\n"
        await asyncio.sleep(1.0)
        yield b"rest"

    async def main():
        transport = httpx.ASGITransport(app=BodyLimit(app, seconds=0.1))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            headers = {**MULTIPART_XX, "content-length": "10"}  # announced, so not chunked (411)
            return await c.post("/api/predict", content=trickle(), headers=headers)

    r = asyncio.run(main())
    assert r.status_code == 408 and "did not arrive within 0.1 s" in r.json()["error"]


# ---- against a real server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(root):
    from cnnlab.web.live import LiveServer

    with LiveServer(root) as server:
        yield server


def _health_probe(url: str, stop: threading.Event, seconds: list[float]) -> None:
    import httpx

    with httpx.Client(timeout=10) as c:
        while not stop.is_set():
            t0 = time.perf_counter()
            c.get(url + "/healthz")
            seconds.append(time.perf_counter() - t0)
            time.sleep(0.005)


def test_live_hostile_body_is_400_fast_and_health_stays_fast(live):
    import httpx

    stop, health = threading.Event(), []
    probe = threading.Thread(target=_health_probe, args=(live.url, stop, health))
    probe.start()
    try:
        with httpx.Client(timeout=5) as c:  # the old parser needed 266 s: fail fast instead
            answers = []
            for _ in range(3):
                r = c.post(live.url + "/api/predict", content=REPEATED_BOUNDARY, headers=MULTIPART_XX)
                assert r.status_code == 400 and r.json()["status"] == 400
                answers.append(float(r.headers["server-timing"].split("dur=")[1]) / 1000)
    finally:
        stop.set()
        probe.join()
    # The server's own time, upload read included (the old parser: 266 s). The 100 ms target is measured
    # on an idle machine by benchmarks/fuzz_api.py; here other tests may share the cores.
    # Bounds that catch a stall, not speed targets: 2 s against 266 s.
    assert min(answers) <= 2.0, answers
    assert len(health) >= 3 and max(health) <= 2.0 and sorted(health)[len(health) // 2] <= 1.0, health


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        # a head that never ends, over MAX_HEAD_BYTES (16 KiB) but all of it read by the server's first read:
        # bytes still unread when it closes would make the kernel reset the connection before the answer
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 30_000,
    ],
    ids=["request line", "header line", "content-length", "head too long"],
)
def test_live_malformed_framing_gets_the_json_error_shape(live, raw):
    answer = _raw(live.port, raw)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"content-type: application/json" in head.lower()
    doc = json.loads(body)
    assert doc["status"] == 400 and "malformed HTTP request" in doc["error"]


def test_a_client_still_sending_after_a_400_reads_the_answer_not_a_reset(live):
    """A head over the limit followed by more of it, sent while the server answers: the server reads and
    drops what keeps coming after its 400 (lingering close) instead of closing with bytes unread, which
    makes the kernel reset the connection, often before the client has read the answer."""
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", live.port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 40_000)
            time.sleep(0.05)  # the server has answered and shut its side by now
            for _ in range(8):  # still sending: 256 KB more, after the answer
                s.sendall(b"a" * 32_768)
            s.shutdown(socket.SHUT_WR)
            answer = b"".join(iter(lambda: s.recv(65536), b""))
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400"), answer[:200]
        assert json.loads(body)["status"] == 400


@pytest.mark.slow
def test_sigterm_exits_within_seconds_with_requests_in_flight(root):
    from cnnlab.web.live import LiveServer

    with LiveServer(root) as server:
        stalled = socket.create_connection(("127.0.0.1", server.port))  # a body that never arrives
        stalled.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=xx\r\nContent-Length: 5000\r\n\r\n--xx")  # fmt: skip
        idle = socket.create_connection(("127.0.0.1", server.port))  # a keep-alive connection
        time.sleep(0.3)
        seconds = server.stop(signal.SIGTERM, wait=20)
        stalled.close()
        idle.close()
    assert seconds < 6, f"SIGTERM took {seconds:.1f} s"


@pytest.mark.slow
def test_fuzz_benchmark_smoke(tmp_path, fmnist_dir):
    """benchmarks/fuzz_api.py end to end with a few requests: trains its run, serves it, fuzzes it."""
    pytest.importorskip("schemathesis")
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz_api.py"
    out = tmp_path / "fuzz.json"
    cmd = [sys.executable, str(script), "--requests", "150", "--limit", "300", "--data-dir", str(fmnist_dir)]
    subprocess.run([*cmd, "--out", str(out)], timeout=600, check=False)
    result = json.loads(out.read_text())
    assert result["fuzz"]["requests"] == 150
    passed = result["pass"]  # the timing and memory targets are for an idle machine: not asserted here
    assert passed["zero_5xx"] and passed["zero_crashes"] and passed["conforms"] and passed["framing_json"]
    assert result["hostile_multipart"]["statuses"] == [400] * 5


@pytest.mark.slow
def test_slow_attack_benchmark_smoke(tmp_path, fmnist_dir):
    """benchmarks/fuzz_api.py --slow end to end, each attack for one second: every attack answered, no
    5xx, no traceback, the body budget holding the near-8 MiB bodies."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz_api.py"
    out = tmp_path / "slow.json"
    cmd = [sys.executable, str(script), "--slow", "--slow-seconds", "1", "--limit", "300"]
    subprocess.run([*cmd, "--data-dir", str(fmnist_dir), "--out", str(out)], timeout=600, check=False)
    result = json.loads(out.read_text())
    passed = result["pass"]  # the latency targets are for the machine alone: not asserted here
    assert all(v for k, v in passed.items() if "5xx" in k or "traceback" in k or "alive" in k), passed
    rss = result["attacks"]["200 near-8 MiB bodies"]
    assert rss["statuses"].get("503", 0) >= 150 and rss["rss_peak_mb"] < 1536, rss
    assert set(result["attacks"]["chunk floods"]["answers"]) == {"411"}
