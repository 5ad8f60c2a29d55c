"""Fuzzing the API from its own OpenAPI document (`/openapi.json`), with Schemathesis (a test
dependency: ``pip install schemathesis``; imported only here).

Schemathesis turns each operation's schema into Hypothesis strategies: schema-valid requests and
schema-violating ones. Left alone, nearly all of them name a model that does not exist and stop at a
404, so `steered` points a share of them at real runs, real layers and real (or mutated) images: the
compute paths then see hostile values too. `check` asserts what every answer must be: never a 5xx, the
documented status codes and content type, and a body that matches the documented schema.

Used by tests/test_web_fuzz.py (in-process, a few hundred requests) and benchmarks/fuzz_api.py (a real
`cnnlab serve`, 10,000 requests).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

LAYERS = ("conv1", "conv2", "dense1", "relu1", "pool1", "flatten", "output")


def seed_images() -> list[bytes]:
    """Small real images in every accepted format (and one too small), to upload and to mutate."""
    rng = np.random.default_rng(0)
    out = []
    for fmt, mode, size in [("PNG", "L", (28, 28)), ("JPEG", "RGB", (40, 30)), ("GIF", "P", (16, 16)), ("BMP", "RGB", (12, 20)), ("WEBP", "RGB", (32, 32)), ("PNG", "RGBA", (20, 20)), ("PNG", "L", (4, 4))]:  # fmt: skip
        arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).convert(mode).save(buf, format=fmt)
        out.append(buf.getvalue())
    return out


def mutated_images(images: list[bytes] | None = None):
    """A Hypothesis strategy: one of ``images`` (default `seed_images`) with up to 4 bit flips,
    truncations, insertions or scribbles over its header."""
    # deferred: hypothesis and schemathesis are test extras (`pip install cnnlab[test]`); seed_images needs neither
    from hypothesis import strategies as st

    images = images or seed_images()

    @st.composite
    def mutated(draw) -> bytes:
        data = bytearray(draw(st.sampled_from(images)))
        for _ in range(draw(st.integers(0, 4))):
            if not data:
                break
            i = draw(st.integers(0, len(data) - 1))
            op = draw(st.sampled_from(["flip", "truncate", "insert", "header"]))
            if op == "flip":
                data[i] ^= 1 << draw(st.integers(0, 7))
            elif op == "truncate":
                del data[i:]
            elif op == "insert":
                data[i:i] = draw(st.binary(min_size=1, max_size=32))
            else:  # the header, where sizes and formats live
                j = draw(st.integers(0, min(40, len(data) - 1)))
                data[j : j + 4] = draw(st.binary(min_size=4, max_size=4))
        return bytes(data)

    return mutated()


def steered(schema, *, model_ids: list[str], images: list[bytes] | None = None):
    """A Hypothesis strategy of Schemathesis cases for every operation, schema-valid and not, a share of
    them naming a real model, layer and image."""
    # deferred: hypothesis and schemathesis are test extras (`pip install cnnlab[test]`); seed_images needs neither
    from hypothesis import strategies as st
    from schemathesis import GenerationMode

    files = mutated_images(images)
    raw = st.one_of(schema.as_strategy(), schema.as_strategy(generation_mode=GenerationMode.NEGATIVE))

    @st.composite
    def cases(draw):
        case = draw(raw)
        for params in (case.query, case.body):
            if not isinstance(params, dict) or not model_ids:
                continue
            if "model" in params and draw(st.integers(0, 9)) < 6:
                params["model"] = draw(st.sampled_from(model_ids))
            if "layer" in params and draw(st.booleans()):
                params["layer"] = draw(st.sampled_from(LAYERS))
            if case.media_type == "multipart/form-data" and draw(st.integers(0, 9)) < 4:
                params["file"] = draw(files)
        return case

    return cases()


def check(case, response: Any) -> None:
    """Raise unless ``response`` is no 5xx and conforms to the documented status codes, content type and
    body schema. (Schemathesis' other default checks expect the schema to say which valid-looking
    requests are refused; ours cannot, e.g. "exactly one image source".)"""
    # deferred: hypothesis and schemathesis are test extras (`pip install cnnlab[test]`); seed_images needs neither
    from schemathesis import checks

    case.validate_response(
        response,
        checks=[
            checks.not_a_server_error,
            checks.status_code_conformance,
            checks.content_type_conformance,
            checks.response_schema_conformance,
        ],
    )
