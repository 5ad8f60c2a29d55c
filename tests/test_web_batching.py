"""Micro-batching of /api/predict (`cnnlab.web.batching`): a batched row equals the one-image prediction
whatever else is in the batch, concurrent requests share forward passes, a bad request fails alone, and
the request deadline still holds."""

from __future__ import annotations

import asyncio
import io
import os
import sys
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import cnnlab as cl
from cnnlab.errors import CnnlabError
from cnnlab.explain.stagewise import predict_image
from cnnlab.web.batching import Batcher, Batchers, BatchItem
from cnnlab.web.compute import DeadlineExceeded, within

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

CLASSES = [f"c{i}" for i in range(10)]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as `cnnlab serve` runs
    yield
    torch.set_num_threads(before)


def fastcnn_in_train_mode() -> nn.Module:
    """fastcnn (batch norm and dropout) with running statistics far from a batch's own, left in training
    mode: a forward pass that forgot evaluation mode would make each row depend on its batch."""
    model = cl.create_model("fastcnn", input_shape=(1, 28, 28), num_classes=10, seed=0)
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 3 + 0.2)
    return model.train()


def images(n: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(1, 1, 28, 28, generator=g) for _ in range(n)]


def batched(batcher: Batcher, xs: list[torch.Tensor]) -> list:
    """Submit ``xs`` as one batch (all announced before the first arrives); each one's result or error."""

    async def main():
        loop = asyncio.get_running_loop()
        items = [BatchItem(loop) for _ in xs]
        with batcher.expecting():  # the worker waits for the whole group (the window is long here)
            for item, x in zip(items, xs, strict=True):
                batcher.submit(item, x)
        return await asyncio.gather(*(within(i.future, 10) for i in items), return_exceptions=True)

    return asyncio.run(main())


def test_batched_rows_equal_one_image_predictions_whatever_the_batch():
    model = fastcnn_in_train_mode()
    batcher = Batcher(model, window=1.0)
    try:
        xs = images(7)
        alone = [predict_image(model, x, classes=CLASSES)[0] for x in xs]
        together = batched(batcher, xs)
        assert (batcher.forwards, batcher.images) == (1, 7)  # one forward pass for the seven
        # the first image again, with other companions: its row does not depend on them
        others = batched(batcher, [xs[0], *images(12, seed=5)])
        assert batcher.forwards == 2
        for one, (logits, probs) in [*zip(alone, together, strict=True), (alone[0], others[0])]:
            np.testing.assert_array_equal(probs, cl.explain.softmax(logits))  # a batch's softmax, row by row
            np.testing.assert_allclose(probs, one.probabilities, atol=1e-6, rtol=0)
            assert int(np.argmax(logits)) == one.index
        assert model.training  # evaluation mode only for the pass: the model is left as it was
    finally:
        batcher.close()


class Picky(nn.Module):
    """A model that cannot take an image holding a negative pixel (as a model can fail on one input),
    nor one that is not 4 pixels wide."""

    def forward(self, x):
        if (x < 0).any() or x.shape[-1] != 4:
            raise RuntimeError("negative pixels or not 4 wide")
        return x.flatten(1)[:, :3]


def test_a_failing_image_fails_alone():
    batcher = Batcher(Picky(), window=1.0)
    try:
        good, bad = torch.rand(1, 1, 4, 4), -torch.rand(1, 1, 4, 4)
        results = batched(batcher, [good, bad, good * 0.5])
        assert isinstance(results[1], CnnlabError) and "negative pixels" in str(results[1])
        np.testing.assert_array_equal(results[0][0], good.flatten()[:3].numpy())
        np.testing.assert_array_equal(results[2][0], (good * 0.5).flatten()[:3].numpy())
        # a different input shape in the same batch runs apart (and, here, fails apart)
        results = batched(batcher, [good, torch.rand(1, 1, 4, 2)])
        assert isinstance(results[1], CnnlabError) and not isinstance(results[0], Exception)
    finally:
        batcher.close()


class Slow(nn.Module):
    def __init__(self):
        super().__init__()
        self.started = threading.Event()

    def forward(self, x):
        self.started.set()
        time.sleep(0.3)
        return x.flatten(1)[:, :2]


def test_deadline_and_a_request_that_gave_up_is_left_out():
    model = Slow()
    batcher = Batcher(model, window=0.0)

    async def main():
        loop = asyncio.get_running_loop()
        first, second = BatchItem(loop), BatchItem(loop)
        batcher.submit(first, torch.zeros(1, 1, 2, 2))
        await asyncio.to_thread(model.started.wait, 5)  # the first batch is running
        batcher.submit(second, torch.zeros(1, 1, 2, 2))  # queued behind it
        with pytest.raises(DeadlineExceeded, match="within 0.05 s"):
            await within(second.future, 0.05)
        second.dropped = True  # what the route does when its request gives up
        with pytest.raises(DeadlineExceeded):
            await within(first.future, 0.05)

    asyncio.run(main())
    deadline = time.monotonic() + 5
    while batcher.forwards < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert (batcher.forwards, batcher.images) == (1, 1)  # the second image was never run
    batcher.close()


def test_a_model_pushed_out_of_the_cache_still_answers():
    batchers = Batchers(1, window=0.0)
    a, b = Picky(), Picky()
    first = batchers.get("a", a)
    assert batchers.get("a", a) is first
    batchers.get("b", b)  # "a" is closed: a request already holding it still gets its answer
    x = torch.rand(1, 1, 4, 4)
    assert np.array_equal(batched(first, [x])[0][0], x.flatten()[:3].numpy())
    assert batchers.get("a", a) is not first and set(batchers.stats()) == {"a"}
    batchers.close()


# ---- through the HTTP API --------------------------------------------------------------------------


def png(seed: int, size: int = 28) -> bytes:
    a = np.random.default_rng(seed).integers(0, 255, (size, size), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from cnnlab.engine import History
    from cnnlab.run.folder import save_run

    root = tmp_path_factory.mktemp("batch-runs")
    config = {"model": "fastcnn", "input_shape": [1, 28, 28], "classes": CLASSES, "data": "fashion_mnist",
              "split": "tutorial", "seed": 0, "limit": None}  # fmt: skip
    save_run(root / "fast", fastcnn_in_train_mode(), History(), config=config)
    return root


def concurrent_predicts(app, bodies: list[bytes]) -> list:
    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=30) as c:
            return await asyncio.gather(
                *(
                    c.post("/api/predict", data={"model": "fast"}, files={"file": ("x.png", b, "image/png")})
                    for b in bodies
                )
            )

    return asyncio.run(main())


def test_concurrent_requests_share_forward_passes_and_answer_as_alone(runs):
    from cnnlab.web import create_app

    app = create_app(runs, warm=False, batch_window=0.05)
    try:
        bodies = [png(i) for i in range(20)]
        answers = concurrent_predicts(app, bodies)
        assert [r.status_code for r in answers] == [200] * 20, answers[0].text
        forwards, images_run = app.state.batchers.stats()["fast"]
        assert images_run == 20 and forwards < 20, (forwards, images_run)
        run = cl.load_run(runs / "fast")
        for body, r in zip(bodies, answers, strict=True):
            image = cl.explain.prepare_input(body, run.input_shape, invert="auto", **run.image_options)
            alone, _ = predict_image(run.model, image, classes=run.classes)
            probs = r.json()["prediction"]["probabilities"]
            np.testing.assert_allclose(probs, alone.probabilities, atol=1e-6, rtol=0)
    finally:
        app.state.batchers.close()
        app.state.pool.close()


def test_one_bad_image_among_good_ones_fails_alone(runs):
    from cnnlab.web import create_app

    app = create_app(runs, warm=False, batch_window=0.05)
    try:
        bodies = [png(i) for i in range(9)]
        bodies[4] = png(4, size=4)  # under the 8x8 minimum: refused when decoded
        bodies[6] = bodies[6][:40]  # truncated
        answers = concurrent_predicts(app, bodies)
        codes = [r.status_code for r in answers]
        assert codes == [200, 200, 200, 200, 422, 200, 422, 200, 200], [r.text for r in answers]
        assert "8x8" in answers[4].json()["error"]
        assert app.state.batchers.stats()["fast"][1] == 7
    finally:
        app.state.batchers.close()
        app.state.pool.close()


def test_predict_admits_a_batch_at_once_and_no_more_in_all(runs):
    """/api/predict takes a batch's worth of requests at once (else batches could never fill), and no more
    requests in all, running and waiting, than the other endpoints (their bodies are held in memory)."""
    from cnnlab.web import create_app
    from cnnlab.web.limits import Limiter

    app = create_app(runs, warm=False, max_concurrent=4, max_waiting=32, max_batch=32)
    limiters = {m.kwargs["paths"]: m.kwargs for m in app.user_middleware if m.cls is Limiter}
    assert limiters[("/api/predict",)] | {"paths": None} == {
        "paths": None, "max_concurrent": 32, "max_waiting": 4, "wait_seconds": 5.0
    }  # fmt: skip
    others = limiters[("/api/explain", "/api/filter", "/api/weights")]
    assert (others["max_concurrent"], others["max_waiting"]) == (4, 32)
    assert "32 predict requests at once" in app.description and "36 in all" in app.description
    app.state.pool.close()
    app.state.batchers.close()


def test_predict_uploads_are_answered_while_the_compute_pool_is_busy(runs):
    # Predict decodes in a pool of its own (never on the event loop), so a predict is not queued behind
    # slow work (explanations of large images) in the compute pool, whatever the image's size.
    from cnnlab.web import create_app

    app = create_app(runs, warm=False, max_concurrent=1)
    pool = app.state.pool
    try:

        async def main():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=30) as c:

                async def predict(body: bytes) -> tuple[int, float]:
                    t0 = time.perf_counter()
                    files = {"file": ("x.png", body, "image/png")}
                    r = await c.post("/api/predict", data={"model": "fast"}, files=files)
                    return r.status_code, time.perf_counter() - t0

                assert (await predict(png(0)))[0] == 200  # loads the model (in the pool)
                busy = asyncio.ensure_future(pool.run(lambda: time.sleep(1.5)))
                await asyncio.sleep(0.05)
                small, large = await asyncio.gather(predict(png(1)), predict(png(0, 300)))
                await busy
                return small, large

        (small_code, small_s), (large_code, large_s) = asyncio.run(main())
        assert small_code == large_code == 200
        assert small_s < 1.0 and large_s < 1.0  # neither waited for the busy compute thread
    finally:
        app.state.batchers.close()
        pool.close()


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="threads have priorities of their own on Linux"
)
def test_worker_threads_run_below_the_event_loop():
    """Decoding and forward passes yield the CPU to the loop: their threads' priority is lowered, the
    calling thread's (the loop's) is not."""
    from cnnlab.web.compute import WORKER_NICE, ComputePool

    async def main():
        pool = ComputePool(1, deadline=5.0)
        try:
            tid = await pool.run(threading.get_native_id)
            return os.getpriority(os.PRIO_PROCESS, tid)
        finally:
            pool.close()

    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert asyncio.run(main()) == min(19, mine + WORKER_NICE)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine
