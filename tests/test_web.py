"""The web API: every endpoint, every kind of bad input (a 4xx JSON error in under 100 ms, never a 5xx,
and the server keeps serving), fidelity (the API's values equal the Python API's and the PyTorch model's,
within the precision each document states; bit for bit with ``precision=exact``), and the security
rules (runs found by scanning, safetensors only, no path traversal)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab as cl
from cnnlab.engine import History
from cnnlab.explain import schema
from cnnlab.run.folder import save_run

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from cnnlab.web import create_app  # noqa: E402
from cnnlab.web.limits import Limiter  # noqa: E402

FAST = 0.1  # seconds: the budget for answering bad input


def trained_run(tmp_path_factory, fmnist_dir, model: str = "cnn2") -> Path:
    """A small really-trained run, trained once per test session (shared through the base temp dir)."""
    path = tmp_path_factory.getbasetemp() / "trained-runs" / model
    if not (path / "model.safetensors").is_file():
        cfg = cl.TrainConfig(model=model, epochs=1, limit=2000, batch_size=64, patience=None)
        cl.train(cfg, out=path, data_dir=fmnist_dir, progress=False, overwrite=True)
    return path


def _untrained(path: Path, model: str, fmnist_dir) -> Path:
    from cnnlab.data import DATASETS

    classes = list(DATASETS["fashion_mnist"].classes)
    config = {
        "model": model, "input_shape": [1, 28, 28], "classes": classes, "data": "fashion_mnist",
        "split": "tutorial", "seed": 0, "limit": 2000, "data_dir": str(fmnist_dir),
    }  # fmt: skip
    return save_run(path, cl.create_model(model, seed=1), History(), config=config)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory, fmnist_dir) -> Path:
    root = tmp_path_factory.mktemp("web-runs")
    shutil.copytree(trained_run(tmp_path_factory, fmnist_dir), root / "cnn2")
    _untrained(root / "cnn4", "cnn4", fmnist_dir)
    _untrained(root / "compare" / "mlp", "mlp", fmnist_dir)
    # not runs: pickled weights only; a symlink that leads out of RUNS_DIR; a hidden folder
    pickled = root / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((root / "cnn4" / "config.json").read_text())
    torch.save(cl.create_model("cnn4").state_dict(), pickled / "model.pt")
    outside = _untrained(tmp_path_factory.mktemp("outside") / "run", "cnn1", fmnist_dir)
    os.symlink(outside, root / "escape")
    shutil.copytree(root / "cnn4", root / ".hidden")
    # a run whose weights file is not safetensors: listed, but refused when loaded
    broken = root / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((root / "cnn4" / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"\x80\x04not safetensors")
    return root


@pytest.fixture(scope="module")
def client(runs_dir, fmnist_dir):
    with TestClient(
        create_app(runs_dir, data_dir=fmnist_dir, warm=False), raise_server_exceptions=False
    ) as c:
        yield c


def png(array: np.ndarray, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def shoe(seed: int = 0, size=(40, 30)) -> bytes:
    rng = np.random.default_rng(seed)
    a = np.full(size, 255, dtype=np.uint8)
    a[10:30, 5:25] = rng.integers(0, 120, (20, 20))
    return png(a)


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's calling card)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def timed(fn, *args, **kwargs):
    best, response = float("inf"), None
    for _ in range(3):  # best of 3: the machine may be busy with other work
        t0 = time.perf_counter()
        response = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return response, best


# ---- health, models, kernels, page -------------------------------------------------------------------


def test_health_models_and_page(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["models"] == 4
    models = {m["id"]: m for m in client.get("/api/models").json()["models"]}
    assert set(models) == {"cnn2", "cnn4", "compare/mlp", "broken"}  # no pickle, no escape, no hidden
    m = models["cnn2"]
    assert m["name"] == "cnn2" and m["input_shape"] == [1, 28, 28] and len(m["classes"]) == 10
    assert m["params"] == 485_514 and 0 < m["test_accuracy"] <= 1 and m["layers"][0]["name"] == "conv1"
    kernels = client.get("/api/kernels").json()
    assert kernels["kernels"][0]["name"] == "outline" and kernels["max_size"] >= 5
    page = client.get("/")
    assert page.status_code == 200 and '<script type="module" src="/static/app.js">' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in (
        "app.js",
        "api.js",
        "network.js",
        "detail.js",
        "sketch.js",
        "playground.js",
        "colors.js",
        "style.css",
    ):
        assert client.get(f"/static/{asset}").status_code == 200, asset
    spec = client.get("/openapi.json").json()
    assert {"/api/models", "/api/predict", "/api/explain", "/api/filter", "/healthz", "/readyz"} <= set(
        spec["paths"]
    )
    assert "ActivationsDoc" in spec["components"]["schemas"]
    # a bodiless GET documents no body errors; the uploads do
    weights = set(spec["paths"]["/api/weights"]["get"]["responses"])
    assert {"404", "409", "422", "503", "504"} <= weights and not weights & {"400", "408", "413", "415"}
    assert {"400", "408", "413", "415"} <= set(spec["paths"]["/api/predict"]["post"]["responses"])
    assert client.get("/docs").status_code == 200


def test_weights(client):
    r = client.get("/api/weights", params={"model": "cnn2", "layer": "conv2", "channel": 5})
    assert r.status_code == 200
    run = cl.load_run(client.app.state.registry.root / "cnn2")
    w = schema.decode_tensor(r.json()["weight"])
    assert np.array_equal(w, run.model.conv2.weight[5].detach().numpy())
    assert schema.decode_tensor(r.json()["bias"])[0] == run.model.conv2.bias[5].item()
    full = client.get("/api/weights", params={"model": "cnn2", "layer": "dense1"}).json()
    assert full["weight"]["shape"] == [128, 3200]
    for params, status in [
        ({"model": "cnn2", "layer": "pool1"}, 422),
        ({"model": "cnn2", "layer": "nope"}, 404),
        ({"model": "cnn2", "layer": "conv1", "channel": 64}, 422),
        ({"model": "nope", "layer": "conv1"}, 404),
        ({"model": "cnn2"}, 422),
    ]:
        r = client.get("/api/weights", params=params)
        assert r.status_code == status and r.json()["error"], params


# ---- predict and explain -----------------------------------------------------------------------------


def test_predict_upload_test_index_and_random(client, runs_dir, tmp_path):
    r = client.post(
        "/api/predict", data={"model": "cnn2", "top_k": "3"}, files={"file": ("s.png", shoe(), "image/png")}
    )
    assert r.status_code == 200, r.text
    doc = schema.PredictionDoc.model_validate(r.json())
    assert len(doc.prediction.top) == 3 and abs(sum(doc.prediction.probabilities) - 1) < 1e-5
    assert doc.input.resized and doc.input.inverted and doc.input.original_size == [40, 30]
    # the same file through `cnnlab predict` gets the same probabilities (one way of preparing images)
    path = tmp_path / "s.png"
    path.write_bytes(shoe())
    from cnnlab.prediction import predict_files

    cli = predict_files(cl.load_run(runs_dir / "cnn2"), [path], top_k=3).predictions[0].top
    assert [c for c, _ in cli] == [t.label for t in doc.prediction.top]
    np.testing.assert_allclose([p for _, p in cli], [t.probability for t in doc.prediction.top], atol=1e-6)
    r = client.post("/api/predict", data={"model": "cnn2", "test_index": "7"})
    assert r.status_code == 200 and r.json()["input"]["source"] == "test:7"
    assert r.json()["input"]["label"] is not None
    r = client.post("/api/predict", data={"model": "compare/mlp", "random": "true"})
    assert r.status_code == 200 and r.json()["input"]["source"].startswith("test:")


@pytest.mark.parametrize("model_id", ["cnn2", "cnn4", "compare/mlp"])
def test_explain_values_equal_python_api_and_pytorch(client, runs_dir, model_id):
    image = shoe(3)
    r = client.post("/api/explain", data={"model": model_id}, files={"file": ("s.png", image, "image/png")})
    assert r.status_code == 200, r.text
    doc = schema.ActivationsDoc.model_validate(r.json())
    assert doc.schema_ == cl.explain.SCHEMA_VERSION and doc.model.id == model_id
    run = cl.load_run(runs_dir / model_id)
    acts = cl.explain.activations(
        run.model, image, input_shape=run.input_shape, invert="auto", classes=run.classes
    )
    assert [layer.name for layer in doc.layers] == [s.name for s in acts.layers]
    # the compact wire form: every stage within the precision the document states for it
    decoded, stated = schema.decode_layers(doc), schema.stated_errors(doc)
    for layer, stage in zip(doc.layers, acts.layers, strict=True):
        assert layer.kind == stage.kind and decoded[layer.name].shape == stage.values.shape
        bound = stated[layer.name] * (1 + 1e-6) + 1e-7
        error = float(np.abs(decoded[layer.name] - stage.values).max(initial=0.0))
        assert error <= bound, (layer.name, error, stated[layer.name])
    assert stated["input"] == 0 and np.array_equal(decoded["input"], acts.layers[0].values)
    # and the page's input, run through the PyTorch model directly, gives the same logits
    x = torch.from_numpy(schema.decode_tensor(doc.layers[0].values))[None]
    with torch.no_grad():
        logits = run.model(x)[0].numpy()
    assert np.array_equal(np.asarray(doc.prediction.logits, dtype=np.float32), logits)
    assert (
        doc.prediction.index == int(logits.argmax())
        and doc.prediction.label == run.classes[doc.prediction.index]
    )
    if model_id == "compare/mlp":
        assert doc.gradcam is None and doc.saliency is not None  # no conv layer: no Grad-CAM
    else:
        cam = cl.explain.gradcam(run.model, image, input_shape=run.input_shape, invert="auto")
        assert doc.gradcam.layer == cam.layer
        assert np.array_equal(schema.decode_tensor(doc.gradcam.values), cam.values)


def test_explain_precision_exact_is_bit_for_bit(client, runs_dir):
    """``precision=exact``: every stage float32 with no stated error, bit-identical to the Python API;
    ``compact`` (the default) is the smaller document; anything else is a 422."""
    image = shoe(5)
    sent = {"model": "cnn2", "precision": "exact"}
    r = client.post("/api/explain", data=sent, files={"file": ("s.png", image, "image/png")})
    assert r.status_code == 200, r.text
    doc = schema.ActivationsDoc.model_validate(r.json())
    assert all(layer.derived is None and layer.values.dtype == "float32" for layer in doc.layers)
    assert set(schema.stated_errors(doc).values()) == {0.0}
    run = cl.load_run(runs_dir / "cnn2")
    acts = cl.explain.activations(
        run.model, image, input_shape=run.input_shape, invert="auto", classes=run.classes
    )
    decoded = schema.decode_layers(doc)
    for stage in acts.layers:
        assert np.array_equal(decoded[stage.name], stage.values), stage.name
    compact = client.post(
        "/api/explain", data={"model": "cnn2"}, files={"file": ("s.png", image, "image/png")}
    )
    assert compact.status_code == 200 and len(compact.content) < len(r.content) / 3
    assert any(layer["derived"] for layer in compact.json()["layers"])
    r = client.post("/api/explain", data={**sent, "precision": "fp16"})
    assert r.status_code == 422 and "precision" in r.json()["error"]


def test_explain_options(client):
    base = {"model": "cnn2", "test_index": "3"}
    r = client.post(
        "/api/explain",
        data={**base, "encoding": "list", "gradcam_layer": "conv1", "class_index": "2", "saliency": "false"},
    )
    doc = r.json()
    assert r.status_code == 200 and doc["gradcam"]["layer"] == "conv1" and doc["gradcam"]["class_index"] == 2
    assert doc["saliency"] is None and doc["layers"][1]["values"]["encoding"] == "list"
    assert doc["input"]["label"] is not None and not doc["input"]["inverted"]
    r = client.post("/api/explain", data={**base, "gradcam": "false"})
    assert r.json()["gradcam"] is None
    for extra, status in [
        ({"gradcam_layer": "dense1"}, 422),
        ({"gradcam_layer": "zzz"}, 404),
        ({"class_index": "10"}, 422),
    ]:
        r = client.post("/api/explain", data={**base, **extra})
        assert r.status_code == status and r.json()["error"], extra


BAD_UPLOADS = [
    ("not an image", b"hello, this is text", "image/png", 415),
    ("html", b"<html><script>alert(1)</script></html>", "text/html", 415),
    ("empty", b"", "image/png", 422),
    ("truncated png", None, "image/png", 422),
    ("truncated jpeg", None, "image/jpeg", 422),
    ("1x1", None, "image/png", 422),
    ("30000x30000 claimed", None, "image/png", 422),
    ("tiff (not allowed)", None, "image/tiff", 415),
    ("wrong part type", None, "text/plain", 415),
]


def _bad_body(name: str) -> bytes | None:
    if name == "truncated png":
        return png(np.random.default_rng(0).integers(0, 255, (64, 64)))[:300]
    if name == "truncated jpeg":
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(buf, "JPEG")
        return buf.getvalue()[:400]
    if name == "1x1":
        return png(np.zeros((1, 1)))
    if name == "30000x30000 claimed":
        return bomb_png()
    if name == "tiff (not allowed)":
        buf = io.BytesIO()
        Image.new("L", (32, 32)).save(buf, "TIFF")
        return buf.getvalue()
    if name == "wrong part type":
        return shoe()
    return None


@pytest.mark.parametrize("endpoint", ["/api/predict", "/api/explain"])
@pytest.mark.parametrize("case", BAD_UPLOADS, ids=[c[0] for c in BAD_UPLOADS])
def test_bad_uploads_are_fast_4xx_json(client, endpoint, case):
    name, body, ctype, status = case
    body = _bad_body(name) if body is None else body
    r, seconds = timed(client.post, endpoint, data={"model": "cnn2"}, files={"file": ("x", body, ctype)})
    assert r.status_code == status, (name, r.text)
    assert (
        r.headers["content-type"] == "application/json" and r.json()["error"] and r.json()["status"] == status
    )
    assert seconds < FAST, f"{name}: {seconds * 1000:.0f} ms"


def test_bad_requests_are_fast_4xx_json(client):
    good = {"file": ("s.png", shoe(), "image/png")}
    cases = [
        (dict(data={"model": "cnn5"}, files=good), 404, "Unknown model 'cnn5'. Available: "),
        (dict(data={"model": "../../etc/passwd"}, files=good), 404, "Unknown model"),
        (dict(data={"model": "/etc"}, files=good), 404, "Unknown model"),
        (dict(data={"model": "pickled"}, files=good), 404, "Unknown model"),
        (dict(data={"model": "escape"}, files=good), 404, "Unknown model"),
        (dict(data={"model": "broken"}, files=good), 409, "cannot be loaded"),
        (dict(data={"model": "cnn2"}), 422, "exactly one image source"),
        (dict(data={"model": "cnn2", "test_index": "1"}, files=good), 422, "exactly one image source"),
        (
            dict(data={"model": "cnn2", "colour": "red"}, files=good),
            422,
            "colour: Extra inputs are not permitted",
        ),
        (dict(data={"model": "cnn2", "test_index": "99999"}), 422, "test_index must be in 0..1999"),
        (dict(data={"model": "cnn2", "test_index": "-1"}), 422, "test_index"),
        (dict(data={"model": "cnn2", "test_index": "abc"}), 422, "test_index"),
        (dict(data={"model": "cnn2", "top_k": "0"}, files=good), 422, "top_k"),
        (dict(data={"model": "cnn2", "invert": "maybe"}, files=good), 422, "invert must be"),
        (dict(data={"model": "cnn2", "invert": "maybe", "random": "true"}), 422, "invert must be"),
        (dict(data={"test_index": "1"}), 422, "model: Field required"),
        (dict(data={"model": "x" * 5000}, files=good), 422, "model"),
        (dict(json={"model": "cnn2", "test_index": 1}), 415, "multipart/form-data"),
        (dict(content=b"model=cnn2", headers={"content-type": "text/plain"}), 415, "multipart"),
        (
            dict(content=b"--xx\r\nbroken", headers={"content-type": "multipart/form-data; boundary=xx"}),
            400,
            "malformed multipart",
        ),
        (
            dict(content=b"x" * (9 * 2**20), headers={"content-type": "multipart/form-data; boundary=x"}),
            413,
            "8 MiB",
        ),
    ]
    for kwargs, status, message in cases:
        for endpoint in ("/api/predict", "/api/explain"):
            r, seconds = timed(client.post, endpoint, **kwargs)
            assert r.status_code == status, (kwargs.get("data"), r.text[:200])
            assert message in r.json()["error"], r.json()
            assert seconds < FAST, f"{kwargs.get('data')}: {seconds * 1000:.0f} ms"
    r = client.post(
        "/api/explain",
        data={
            "model": "cnn2",
            "test_index": "1",
            "class_index": "10",
            "gradcam": "false",
            "saliency": "false",
        },
    )
    assert r.status_code == 422 and "class_index must be in 0..9" in r.json()["error"]
    assert client.get("/api/nothing").status_code == 404
    assert client.delete("/api/predict").status_code == 405
    for path in ("/", "/healthz", "/readyz", "/api/models"):  # health and link checkers send HEAD
        assert client.head(path).status_code == 200, path
    # the server keeps serving
    assert client.post("/api/predict", data={"model": "cnn2"}, files=good).status_code == 200


def test_errors_take_their_status_from_the_error_type_only(runs_dir):
    from cnnlab.errors import CnnlabError, NotFoundError, RunFileError, UsageError
    from cnnlab.web.registry import Unavailable, UnknownModel
    from cnnlab.web.uploads import BadUpload

    app = create_app(runs_dir, warm=False)
    raised = {
        "plain": CnnlabError("Unknown layer 'x' (the prefix no longer picks the status)"),
        "usage": UsageError("these options do not go together"),
        "missing": NotFoundError("no such thing"),
        "damaged": RunFileError(f"{runs_dir.resolve()}/cnn2/config.json is damaged"),
        "model": UnknownModel("Unknown model 'x'"),
        "unavailable": Unavailable("cannot be loaded"),
        "upload": BadUpload("not an image", 415),
    }

    def boom(kind: str):
        raise raised[kind]

    app.add_api_route("/boom/{kind}", boom)
    with TestClient(app, raise_server_exceptions=False) as c:
        for kind, exc in raised.items():
            r = c.get(f"/boom/{kind}")
            assert r.status_code == exc.http_status, kind
            assert r.json() == {"error": r.json()["error"], "status": exc.http_status}
        assert [raised[k].http_status for k in raised] == [422, 400, 404, 409, 404, 409, 415]
        # a server path in a message: shown relative to RUNS_DIR, never absolute
        assert c.get("/boom/damaged").json()["error"] == "cnn2/config.json is damaged"


def test_409_errors_name_no_server_path(client, runs_dir):
    r = client.post("/api/predict", data={"model": "broken", "random": "true"})
    error = r.json()["error"]
    assert r.status_code == 409 and "broken/model.safetensors" in error, error
    assert str(runs_dir.resolve()) not in error and "/tmp" not in error and not error.count(os.sep + "broken")


def test_damaged_runs_answer_409_alone_and_the_others_stay_listed(runs_dir, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(runs_dir / "cnn4", root / "good")
    config = json.loads((root / "good" / "config.json").read_text())
    mutations = {
        "classes5": {"classes": 5},
        "shape-abc": {"input_shape": "abc"},
        "model42": {"model": 42},
        "std0": {"std": [0], "mean": [0.5]},
        "nan-mean": {"mean": [float("nan")], "std": [1.0]},
    }
    for name, change in mutations.items():
        shutil.copytree(root / "good", root / name)
        (root / name / "config.json").write_text(json.dumps({**config, **change}))
    shutil.copytree(root / "good", root / "deep")
    (root / "deep" / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    shutil.copytree(root / "good", root / "flipped")  # a bit flipped in the weights' data section
    data = bytearray((root / "flipped" / "model.safetensors").read_bytes())
    data[-10] ^= 0x08
    (root / "flipped" / "model.safetensors").write_bytes(bytes(data))
    shutil.copytree(root / "good", root / "odd-results")  # results.json the listing cannot use
    (root / "odd-results" / "results.json").write_text(
        json.dumps({"summary": {"layers": [{"name": 1, "output_shape": "abc"}]}, "test": {"accuracy": "x"}})
    )
    good = {"file": ("s.png", shoe(), "image/png")}
    with TestClient(create_app(root, warm=False), raise_server_exceptions=False) as c:
        listing = c.get("/api/models")
        assert listing.status_code == 200, listing.text
        doc = listing.json()
        assert {m["id"] for m in doc["models"]} == {"good", "flipped", "odd-results"}
        odd = next(m for m in doc["models"] if m["id"] == "odd-results")
        assert odd["layers"] == [] and odd["test_accuracy"] is None
        broken = {u["id"]: u["error"] for u in doc["unavailable"]}
        assert set(broken) == {*mutations, "deep"}
        assert "classes" in broken["classes5"] and "nested too deeply" in broken["deep"]
        for model_id in [*mutations, "deep", "flipped"]:
            r = c.post("/api/predict", data={"model": model_id}, files=good)
            assert r.status_code == 409, (model_id, r.text)
            assert (
                str(root) not in r.json()["error"]
                and "config.json" in r.json()["error"]
                or (model_id == "flipped" and "sha256" in r.json()["error"])
            ), r.json()
        for model_id in ("good", "odd-results"):
            assert c.post("/api/predict", data={"model": model_id}, files=good).status_code == 200


def test_form_parser():
    from cnnlab.web.forms import parse_form
    from cnnlab.web.uploads import BadUpload

    def body(*parts: bytes, boundary: bytes = b"b0") -> bytes:
        return (
            b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts) + b"--" + boundary + b"--\r\n"
        )

    field = b'Content-Disposition: form-data; name="model"\r\n\r\ncnn2'
    image = b'Content-Disposition: form-data; name="file"; filename="a \\"b\\".png"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n--b0x'
    fields, upload = parse_form(b"preamble\r\n" + body(field, image), 'multipart/form-data; boundary="b0"')
    assert (
        fields == {"model": "cnn2"} and upload.data == b"\x89PNG\r\n--b0x" and upload.filename == 'a "b".png'
    )
    assert upload.content_type == "image/png"
    assert parse_form(b"model=cnn2&test_index=3", "application/x-www-form-urlencoded") == (
        {"model": "cnn2", "test_index": "3"},
        None,
    )
    bad = [
        (body(field)[:-8], "truncated"),
        (body(image, image), "at most one file"),
        (body(b'Content-Disposition: form-data; name="x"; filename="f"\r\n\r\nzz'), "at most one file"),
        (body(b"Content-Disposition: attachment\r\n\r\nzz"), "no Content-Disposition name"),
        (body(b'Content-Disposition: form-data; name="t"\r\n\r\n' + b"x" * 70000), "over 65,536 bytes"),
        (body(*[field] * 40), "too many form parts"),
        (b"no boundary here", "boundary not found"),
    ]
    for raw, message in bad:
        with pytest.raises(BadUpload, match=message):
            parse_form(raw, "multipart/form-data; boundary=b0")
    with pytest.raises(BadUpload, match="no valid boundary"):
        parse_form(body(field), "multipart/form-data")
    with pytest.raises(BadUpload, match="not 'text/plain'"):
        parse_form(b"x", "text/plain")


def test_chunked_body_is_refused_unread(client):
    # a chunked body costs h11 Python work per chunk on the event loop: refused with 411 before any is read
    sent = []

    def chunks():
        for _ in range(20):
            sent.append(1)
            yield b"x" * 2**20

    r = client.post(
        "/api/explain", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert r.status_code == 411 and r.json()["status"] == 411 and "Content-Length" in r.json()["error"]
    assert r.headers["connection"] == "close"


def test_body_limit_on_body_longer_than_announced(client):
    # an ASGI server that does not hold the client to its Content-Length: the cap holds while reading
    from cnnlab.web.limits import BodyLimit

    assert BodyLimit  # the cap is enforced in BodyLimit.read as the body arrives
    r = client.post(
        "/api/explain",
        content=b"x" * (9 * 2**20),
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert r.status_code == 413


# ---- filter ------------------------------------------------------------------------------------------


def test_filter_equals_the_filters_api(client):
    r = client.post("/api/filter", data={"kernel": "sobel_left"})
    assert r.status_code == 200
    doc = r.json()
    img = schema.decode_tensor(doc["input"])
    expected = cl.filters.apply(cl.filters.sample_image(gray=True), "sobel_left")
    assert img.shape == (300, 451) and np.array_equal(schema.decode_tensor(doc["output"]), expected)
    kernel = [[0, 1, 0], [1, -4, 1], [0, 1, 0]]
    a = np.random.default_rng(0).integers(0, 255, (70, 90)).astype(np.uint8)
    r = client.post(
        "/api/filter",
        data={"kernel": json.dumps(kernel), "op": "corr", "stride": "2", "mode": "valid", "max_side": "45"},
        files={"file": ("a.png", png(a), "image/png")},
    )
    doc = r.json()
    assert r.status_code == 200 and doc["downsample"] == 2 and doc["kernel_name"] is None
    small = cl.filters.downsample(cl.load_image(png(a), gray=True), 2)
    ref = cl.filters.apply(small, np.array(kernel, float), op="corr", stride=2, mode="valid")
    assert np.array_equal(schema.decode_tensor(doc["output"]), ref)


@pytest.mark.parametrize(
    "kernel, message",
    [
        ("[[1,2],[3]]", "ragged"),
        ('[["a", 1]]', "non-numeric"),
        ("[[NaN, 1]]", "NaN"),
        ("[[1e999]]", "NaN or infinite"),
        ("[[", "not valid JSON"),
        ("[]", "empty"),
        ('{"a": 1}', "kernel must be a name"),
        ("/etc/passwd", "kernel must be a name"),
        ("kernel.npy", "kernel must be a name"),
        (json.dumps(np.ones((16, 16)).tolist()), "16x16"),
        ("[" * 3000 + "]" * 3000, "kernel"),
        ("", "kernel"),
    ],
)
def test_malformed_kernels(client, kernel, message):
    r, seconds = timed(client.post, "/api/filter", data={"kernel": kernel, "echo_input": "false"})
    assert r.status_code == 422, r.text
    assert message in r.json()["error"]
    assert seconds < FAST


def test_filter_bad_options(client):
    for data in (
        {"kernel": "blur", "stride": "0"},
        {"kernel": "blur", "boundary": "zero"},
        {"kernel": "blur", "op": "x"},
    ):
        r = client.post("/api/filter", data=data)
        assert r.status_code == 422 and r.json()["error"]
    r = client.post(
        "/api/filter", data={"kernel": "blur"}, files={"file": ("b.png", bomb_png(5000, 5000), "image/png")}
    )
    assert r.status_code == 422 and "megapixels" in r.json()["error"]
    r = client.post("/api/filter", data={"kernel": "[[1e308, 1e308], [1e308, 1e308]]"})
    assert r.status_code == 422 and "within ±1e+30" in r.json()["error"]
    long = png(np.full((8, 5000), 128))
    r = client.post("/api/filter", data={"kernel": "blur"}, files={"file": ("l.png", long, "image/png")})
    assert r.status_code == 422 and "too elongated" in r.json()["error"]
    r = client.post("/api/filter", data={"kernel": "[[1, 1], [1, 1]]", "normalize": "true"})
    assert r.status_code == 200 and r.json()["kernel"] == [[0.25, 0.25], [0.25, 0.25]]  # what was applied


# ---- concurrency limiter -----------------------------------------------------------------------------


def test_limiter_answers_503_fast_when_over_capacity():
    import httpx

    async def slow_app(scope, receive, send):
        await asyncio.sleep(0.4)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app = Limiter(slow_app, paths=("/api/",), max_concurrent=1, max_waiting=1, wait_seconds=5)

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:

            async def one(delay):
                await asyncio.sleep(delay)
                t0 = time.perf_counter()
                r = await c.get("/api/x")
                return r.status_code, time.perf_counter() - t0, r

            return await asyncio.gather(one(0), one(0.02), one(0.05), one(0.06))

    results = asyncio.run(main())
    codes = sorted(code for code, _, _ in results)
    assert codes == [200, 200, 503, 503]
    for code, seconds, r in results:
        if code == 503:
            assert seconds < FAST and r.json()["status"] == 503 and r.headers["retry-after"] == "1"

    waited = Limiter(slow_app, paths=("/api/",), max_concurrent=1, max_waiting=5, wait_seconds=0.05)

    async def timeout_case():
        transport = httpx.ASGITransport(app=waited)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await asyncio.gather(c.get("/api/a"), c.get("/api/b"), c.get("/healthz"))

    a, b, health = asyncio.run(timeout_case())
    assert sorted([a.status_code, b.status_code]) == [200, 503]  # waited 50 ms, then gave up
    assert health.status_code == 200  # paths outside the limit are never held


FIRST_REQUESTS = r"""
import io, json, sys
from PIL import Image
import cnnlab as cl
from cnnlab.engine import History
from cnnlab.run.folder import save_run
from cnnlab.web import create_app
from fastapi.testclient import TestClient

classes = [str(i) for i in range(10)]
config = {"model": "cnn1", "input_shape": [1, 28, 28], "classes": classes, "data": "fashion_mnist"}
save_run(sys.argv[1] + "/cnn1", cl.create_model("cnn1", seed=0), History(), config=config)
app = create_app(sys.argv[1], warm=False)
buf = io.BytesIO()
Image.new("L", (28, 28), 200).save(buf, format="WEBP")
image = {"file": ("x.webp", buf.getvalue(), "image/webp")}
before = set(sys.modules)
with TestClient(app) as c:
    codes = [
        c.post("/api/predict", data={"model": "cnn1"}, files=image).status_code,
        c.post("/api/explain", data={"model": "cnn1"}, files=image).status_code,
        c.post("/api/filter", data={"kernel": "outline"}, files=image).status_code,
        c.get("/api/weights", params={"model": "cnn1", "layer": "conv1"}).status_code,
    ]
new = sorted(m for m in set(sys.modules) - before if m.startswith(("cnnlab", "PIL", "torch", "numpy")))
print(json.dumps({"codes": codes, "new": new}), flush=True)
# What this checks is printed. The interpreter's own teardown beside the threads torch has used aborted
# now and then ("terminate called without an active exception": 1 run in 30, on the code before and
# after the resize moved to torch), which is not what this test is about; the real server's shutdown
# is tested with SIGTERM in test_web_fuzz.py and test_web_loop.py.
import os
os._exit(0)
"""


@pytest.mark.slow  # several seconds: fresh interpreters or real training
def test_requests_import_nothing_the_app_did_not_import_at_start(tmp_path):
    # The first requests run on several threads at once (and beside the warm-up thread): any module they
    # imported on first use could be handed to one of them half initialised (an ImportError under load).
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", FIRST_REQUESTS, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["codes"] == [200, 200, 200, 200]
    assert result["new"] == []
