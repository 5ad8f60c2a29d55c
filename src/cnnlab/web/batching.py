"""Micro-batching for /api/predict: concurrent requests for one model share one forward pass.

One image is a tiny amount of work for a model, and most of a small forward pass is per-call overhead
held under Python's interpreter lock (module calls, operator dispatch), not arithmetic. So each loaded
model gets a `Batcher`: a request parses its form and decodes its image in the compute pool as before,
then hands its prepared (1, C, H, W) input and a future to the model's batcher, whose own thread stacks
what has arrived (up to `MAX_BATCH` images), runs one forward pass
(`cnnlab.explain.stagewise.forward_logits`: evaluation mode, ``torch.inference_mode``) and resolves each
future with its own row of logits. The request then builds its own answer. Nothing is shared but the
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
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from cnnlab.web.compute import settle_from_thread

if TYPE_CHECKING:
    import torch

MAX_BATCH = 32
WINDOW_SECONDS = 0.002


class BatchItem:
    """One request's place in a batch: its input, and the future (on the server's event loop) that gets
    its row of logits. Made on the event loop, filled in the compute pool, settled by the batcher."""

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


class Batcher:
    """Stacks concurrent requests' inputs for ``model`` and runs them as one forward pass, on its own thread.

    Example:
        >>> batcher = Batcher(model)  # doctest: +SKIP
        >>> with batcher.expecting():  # a request on its way: a forming batch waits for it  # doctest: +SKIP
        ...     x = prepare(...)
        ...     batcher.submit(item, x)  # item.future -> (K,) logits  # doctest: +SKIP
    """

    def __init__(self, model: torch.nn.Module, *, max_batch: int = MAX_BATCH, window: float = WINDOW_SECONDS):
        if max_batch < 1 or window < 0:
            raise ValueError("max_batch must be >= 1 and window >= 0")
        self.model = model
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
        """Queue ``x`` (1, C, H, W) for the next batch; ``item.future`` gets its (K,) logits."""
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
        while (batch := self._next_batch()) is not None:
            batch = [item for item in batch if not item.dropped]
            by_shape: dict[tuple, list[BatchItem]] = {}
            for item in batch:  # one model takes one input shape; anything else runs apart (and fails)
                by_shape.setdefault(tuple(item.input().shape[1:]), []).append(item)
            for items in by_shape.values():
                self._run(items)

    def _run(self, items: list[BatchItem]) -> None:
        import torch

        from cnnlab.explain.stagewise import forward_logits

        try:
            logits = forward_logits(self.model, torch.cat([item.input() for item in items]))
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
        for item, row in zip(items, logits, strict=True):
            item.settle(row)


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
