"""Fuzz the upload endpoints: hundreds of random and mutated bodies, fields and kernels. Whatever comes
in, the answer is 200 with a valid document or a 4xx JSON error, never a 5xx."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab as cl
from cnnlab.engine import History
from cnnlab.explain import schema
from cnnlab.runs import save_run

pytest.importorskip("fastapi")
hypothesis = pytest.importorskip("hypothesis")
from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from cnnlab.web import create_app  # noqa: E402

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _seed_images() -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for fmt, mode, size in [("PNG", "L", (28, 28)), ("JPEG", "RGB", (40, 30)), ("GIF", "P", (16, 16)), ("BMP", "RGB", (12, 20)), ("WEBP", "RGB", (32, 32)), ("PNG", "RGBA", (20, 20))]:  # fmt: skip
        arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        im = Image.fromarray(arr).convert(mode)
        buf = io.BytesIO()
        im.save(buf, format=fmt)
        out.append(buf.getvalue())
    return out


SEEDS = _seed_images()


@st.composite
def mutated_image(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "header"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=32))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 64))]
        else:  # scribble over the header, where sizes and formats live
            j = draw(st.integers(0, min(40, len(data) - 1)))
            data[j : j + 4] = draw(st.binary(min_size=4, max_size=4))
    return bytes(data)


bodies = st.one_of(st.binary(max_size=3000), mutated_image(), st.sampled_from(SEEDS))
content_types = st.sampled_from(["image/png", "image/jpeg", "application/octet-stream", "text/plain", "", "image/gif; x=1", "video/mp4"])  # fmt: skip
field_text = st.one_of(
    st.text(max_size=40), st.sampled_from(["", "0", "-1", "1e9", "true", "auto", "nan", "🙂"])
)


@pytest.fixture(scope="module")
def client(tmp_path_factory, fmnist_dir):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("fuzz-runs")
    classes = [str(i) for i in range(10)]
    config = {"model": "cnn2", "input_shape": [1, 28, 28], "classes": classes, "data": "fashion_mnist",
              "split": "tutorial", "seed": 0, "limit": 500, "data_dir": str(fmnist_dir)}  # fmt: skip
    save_run(root / "cnn2", cl.create_model("cnn2", seed=0), History(), config=config)
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
    upload=st.one_of(st.none(), mutated_image()),
)
def test_fuzz_filter(client, kernel, stride, mode, upload):
    data = {"kernel": kernel, "echo_input": "false", "max_side": "64"}
    data |= {"stride": stride} if stride is not None else {}
    data |= {"mode": mode} if mode is not None else {}
    files = {"file": ("f", upload, "image/png")} if upload is not None else None
    r = client.post("/api/filter", data=data, files=files)
    _check(r)
    assert client.get("/healthz").status_code == 200
