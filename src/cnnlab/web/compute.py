"""Where the server's CPU work runs: a fixed set of worker threads beside the event loop.

Parsing an upload, decoding an image and a model's forward pass all run here, so the event loop only
moves bytes and answers `/healthz` at once whatever is being computed: no upload is parsed or decoded on
the loop, however small (a 59 KB PNG of compressed text chunks once cost 0.5 s to open). /api/predict has
a pool of its own for parsing and decoding, and its forward passes run batched on each model's own thread
(`cnnlab.web.batching`). At most ``workers`` jobs run at
the same time (the `limits.Limiter` in front keeps the queue short). A job that has not finished by its
deadline is answered with 504; if it had not started yet it never starts, and if it had, its result is
dropped when it ends (a thread cannot be stopped from outside, but every job is bounded: images by
pixels, bodies by bytes, models by what a run holds).

On shutdown (SIGTERM, after uvicorn's graceful drain) `ComputePool.close` drops queued jobs and waits a
bounded time for running ones: an interpreter that exits while a thread is inside torch can abort. The
threads are daemons, so a job still running after that never keeps the process alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any

from cnnlab.errors import CnnlabError

WORKER_NICE = 5  # how far below the event loop a worker thread runs when both want a core


def below_the_loop(by: int = WORKER_NICE) -> bool:
    """Lower the calling thread's scheduling priority by ``by`` (Linux schedules each thread on its own,
    so the process and its event loop keep theirs). When uploads keep every core busy, the loop, which
    wakes for a moment per connection, is then run first instead of taking turns with the decoders: on
    2 cores with the attacker sharing them, /healthz waited for the CPU behind the work it had queued.
    False where threads have no priority of their own (not Linux) or it cannot be changed."""
    if not sys.platform.startswith("linux"):  # elsewhere a thread id given as a pid could be another process
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + by))
    except OSError:
        return False
    return True


class DeadlineExceeded(CnnlabError):
    """The server could not finish a request in time. HTTP 504."""

    http_status = 504


class _PoolJob:
    __slots__ = ("fn", "loop", "future", "dropped")

    def __init__(self, fn: Callable[[], Any], loop: asyncio.AbstractEventLoop, future: asyncio.Future):
        self.fn, self.loop, self.future = fn, loop, future
        self.dropped = False  # set by the waiting request when it gave up: skip the job if not started


def settle(future: asyncio.Future, result: Any, error: BaseException | None = None) -> None:
    """Give ``future`` its result or error, on its event loop's thread (unless it is already done)."""
    if future.done():  # the request already gave up (deadline) or was cancelled (client gone, shutdown)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def settle_from_thread(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future, result: Any, error: BaseException | None = None
) -> None:
    """Give a request's future its result (or error) from a worker thread, on the future's event loop.
    A future already done (the request gave up) is left alone; a closed loop means the server is gone."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(settle, future, result, error)


class ComputePool:
    """``await pool.run(fn)`` runs ``fn()`` on one of ``workers`` threads, within ``deadline`` seconds.

    Example:
        >>> pool = ComputePool(2, deadline=5.0)  # doctest: +SKIP
        >>> await pool.run(lambda: sum(range(10)))  # doctest: +SKIP
        45
    """

    def __init__(self, workers: int, *, deadline: float):
        if workers < 1 or deadline <= 0:
            raise ValueError("workers must be >= 1 and deadline > 0")
        self.deadline = deadline
        self._jobs: queue.SimpleQueue[_PoolJob | None] = queue.SimpleQueue()
        self._idle = threading.Condition()
        self._running = 0
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"cnnlab-compute-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    def _work(self) -> None:
        below_the_loop()
        while True:
            job = self._jobs.get()
            if job is None:  # closed
                return
            with self._idle:
                if job.dropped or self._closed:
                    continue
                self._running += 1
            result, error = None, None
            try:
                result = job.fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the request, which reports it
                error = exc
            finally:
                with self._idle:
                    self._running -= 1
                    self._idle.notify_all()
            settle_from_thread(job.loop, job.future, result, error)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, wait: float = 5.0) -> bool:
        """Start no more jobs; wait up to ``wait`` seconds for running ones. True if none is left running."""
        with self._idle:
            self._closed = True
        for _ in self._threads:
            self._jobs.put(None)
        with self._idle:
            return self._idle.wait_for(lambda: self._running == 0, timeout=wait)

    async def run(self, fn: Callable[[], Any], *, deadline: float | None = None) -> Any:
        """The value of ``fn()``, or its exception; `DeadlineExceeded` after ``deadline`` seconds."""
        if self._closed:
            raise DeadlineExceeded("the server is shutting down; try again in a moment")
        loop = asyncio.get_running_loop()
        job = _PoolJob(fn, loop, loop.create_future())
        self._jobs.put(job)
        try:
            return await within(job.future, deadline or self.deadline)
        finally:
            job.dropped = True


async def within(future: asyncio.Future, seconds: float, *, limit: float | None = None) -> Any:
    """The future's value, or `DeadlineExceeded` if it is not done in ``seconds`` (the request's whole
    ``limit``, when only what is left of it is given, names the deadline in the message)."""
    try:
        return await asyncio.wait_for(future, timeout=max(seconds, 0.0))
    except asyncio.TimeoutError:
        raise DeadlineExceeded(
            f"the server could not finish this request within {limit or seconds:g} s; try again later "
            "or with a smaller image"
        ) from None
