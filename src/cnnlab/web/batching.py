"""Micro-batching for /api/predict: concurrent requests for one model share one forward pass.

One image is a tiny amount of work for a model, and most of a small forward pass is per-call overhead
held under Python's interpreter lock (module calls, operator dispatch), not arithmetic. So each loaded
model gets a `Batcher`: a request parses its form and decodes its image (in predict's pool of threads, never on the
event loop: `cnnlab.web.routes.predict`), then hands its prepared (1, C, H, W) input and a future to the model's batcher, whose own thread stacks
what has arrived (up to `MAX_BATCH` images), runs one forward pass
(`cnnlab.explain.stagewise.forward_logits`: evaluation mode, ``torch.inference_mode``) and resolves each
future with its own row of logits and of probabilities (the softmax too runs once per batch, off the
server's event loop). The request then builds its own answer. Nothing is shared but the
forward pass: a bad upload fails in its own decode, before it reaches a batch.

How long a batch waits: not at all when no other request for the model is being decoded (a lone user pays
nothing), else until those requests arrive, the batch is full, or `WINDOW_SECONDS` have passed since its
first image, whichever is first. In evaluation mode each output row depends on its own image only; a
batched row equals the one-image forward pass to float32 rounding (the convolution may sum in another
order), far below the 1e-6 the tests hold it to.

A request that gives up (deadline, client gone) before its batch starts is left out of it. If a batch's
forward pass fails, its images are run one at a time, so only an image that fails alone gets the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from typing import Any

import torch

from cnnlab.explain.stagewise import forward_logits, softmax
from cnnlab.web.compute import below_the_loop, settle, settle_from_thread

MAX_BATCH = 32
WINDOW_SECONDS = 0.002


def _settle_all(answers: list[tuple[asyncio.Future, Any]]) -> None:
    for future, row in answers:
        settle(future, row)


class BatchItem:
    """One request's place in a batch: its input, and the future (on the server's event loop) that gets
    its rows of logits and probabilities. Made on the event loop, filled in the compute pool, settled by the batcher."""

    __slots__ = ("loop", "future", "x", "dropped")

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.future: asyncio.Future = loop.create_future()
        self.x: torch.Tensor | None = None
        self.dropped = False  # set by the request when it gave up: the batcher skips it if not started

    def input(self) -> torch.Tensor:
        """The input `Batcher.submit` gave it (an item is queued only once it has one)."""
        if self.x is None:
            raise RuntimeError("this BatchItem has no input yet: queue it with Batcher.submit")
        return self.x

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        """Resolve the future from the batcher's thread."""
        settle_from_thread(self.loop, self.future, result, error)


def served_copy(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.memory_format]:
    """The model the batcher runs, and the layout to feed it: for a convolutional model on the CPU an
    evaluation-mode copy in channels_last, which oneDNN convolves much faster (fastcnn on 20 images, one
    thread: 3.7 ms instead of 6.4 ms); the same weights, so the same logits to float32 rounding. Other models
    are run as they are."""
    convolutional = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    if not (convolutional and on_cpu):
        return model, torch.contiguous_format
    served = copy.deepcopy(model).eval().requires_grad_(False)
    return served.to(memory_format=torch.channels_last), torch.channels_last  # type: ignore[call-overload]


class Batcher:
    """Stacks concurrent requests' inputs for ``model`` and runs them as one forward pass, on its own thread.

    Example:
        >>> batcher = Batcher(model)  # doctest: +SKIP
        >>> with batcher.expecting():  # a request on its way: a forming batch waits for it  # doctest: +SKIP
        ...     x = prepare(...)
        ...     batcher.submit(item, x)  # item.future -> (logits, probabilities), (K,) each  # doctest: +SKIP
    """

    def __init__(self, model: torch.nn.Module, *, max_batch: int = MAX_BATCH, window: float = WINDOW_SECONDS):
        if max_batch < 1 or window < 0:
            raise ValueError("max_batch must be >= 1 and window >= 0")
        self.model = model
        self._served, self._layout = served_copy(model)
        self.max_batch = max_batch
        self.window = window
        self.forwards = 0  # forward passes run, and the images they held (for tests and monitoring)
        self.images = 0
        self._items: deque[BatchItem] = deque()
        self._expected = 0  # requests for this model being decoded: they will submit soon
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="cnnlab-batcher", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def expecting(self) -> Iterator[None]:
        """Around a request's decode and `submit`: a batch being formed waits (within the window) for it."""
        with self._cond:
            self._expected += 1
        try:
            yield
        finally:
            with self._cond:
                self._expected -= 1
                self._cond.notify()

    def submit(self, item: BatchItem, x: torch.Tensor) -> None:
        """Queue ``x`` (1, C, H, W) for the next batch; ``item.future`` gets its (K,) logits and probabilities."""
        item.x = x
        with self._cond:
            closed = self._closed
            if not closed:
                self._items.append(item)
                self._cond.notify()
        if closed:  # the model was pushed out of the cache meanwhile: run it here, alone
            self._run([item])

    def close(self) -> None:
        """Take no more images; the thread runs what is queued, then ends."""
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _next_batch(self) -> list[BatchItem] | None:
        """Block until a batch is ready (see the module docstring); None once closed and drained."""
        with self._cond:
            while not self._items and not self._closed:
                self._cond.wait()
            until = time.monotonic() + self.window
            while len(self._items) < self.max_batch and self._expected > 0 and not self._closed:
                left = until - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if not self._items:
                return None
            return [self._items.popleft() for _ in range(min(len(self._items), self.max_batch))]

    def _work(self) -> None:
        below_the_loop()
        while (batch := self._next_batch()) is not None:
            batch = [item for item in batch if not item.dropped]
            by_shape: dict[tuple, list[BatchItem]] = {}
            for item in batch:  # one model takes one input shape; anything else runs apart (and fails)
                by_shape.setdefault(tuple(item.input().shape[1:]), []).append(item)
            for items in by_shape.values():
                self._run(items)

    def _run(self, items: list[BatchItem]) -> None:
        try:
            x = torch.cat([item.input() for item in items]).contiguous(memory_format=self._layout)
            logits = forward_logits(self._served, x)
            probabilities = softmax(logits)  # here, once per batch: torch calls on the server's loop stall it
        except BaseException as exc:  # noqa: BLE001 - handed to the request(s), which report it
            if len(items) > 1:  # find the image that fails alone; the others get their answers
                for item in items:
                    self._run([item])
                return
            items[0].settle(error=exc)
            return
        with self._cond:
            self.forwards += 1
            self.images += len(items)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, Any]]] = {}
        for item, row, probs in zip(items, logits, probabilities, strict=True):
            by_loop.setdefault(item.loop, []).append((item.future, (row, probs)))
        for loop, answers in by_loop.items():  # one wake-up of the server's loop per batch, not per image
            with contextlib.suppress(RuntimeError):  # a closed loop: the server is gone
                loop.call_soon_threadsafe(_settle_all, answers)


class Batchers:
    """The batcher of each loaded model, at most ``max_models`` (the registry's model cache size); a
    model reloaded (its run retrained) or pushed out gets its batcher closed."""

    def __init__(self, max_models: int, **options: Any):
        self.max_models = max_models
        self.options = options
        self._lock = threading.Lock()
        self._by_id: OrderedDict[str, Batcher] = OrderedDict()

    def get(self, model_id: str, model: torch.nn.Module) -> Batcher:
        with self._lock:
            batcher = self._by_id.get(model_id)
            if batcher is not None and batcher.model is model:
                self._by_id.move_to_end(model_id)
                return batcher
            if batcher is not None:
                batcher.close()
            self._by_id[model_id] = batcher = Batcher(model, **self.options)
            while len(self._by_id) > self.max_models:
                self._by_id.popitem(last=False)[1].close()
            return batcher

    def stats(self) -> dict[str, tuple[int, int]]:
        """(forward passes, images) per model id."""
        with self._lock:
            return {k: (b.forwards, b.images) for k, b in self._by_id.items()}

    def close(self) -> None:
        with self._lock:
            for batcher in self._by_id.values():
                batcher.close()
            self._by_id.clear()
