"""Where a training epoch's time goes, phase by phase (``benchmarks/profile_phases.py``).

The engine marks its real pieces with ``phase(name)``: the batch gather, augmentation, forward, backward,
optimizer, callbacks, the non-finite guard, progress and evaluation. Outside a ``PhaseTimer`` a mark is one
context-variable read returning a shared do-nothing context (well under a microsecond, nothing else);
inside one, each mark adds its wall time to its phase. Phases nest (the guard runs inside the step):
a phase's time is its own, what nested phases took is counted once, under them. On a GPU the timer
synchronises the device at each mark, so the figures say where the device's time went too; that
synchronisation exists only while a profile runs.

Example:
    >>> with PhaseTimer() as timer:  # doctest: +SKIP
    ...     cl.fit(model, data, epochs=1)
    >>> timer.seconds["forward"]  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar, Token

import torch

PHASES = (
    "gather",
    "augmentation",
    "forward",
    "backward",
    "optimizer",
    "graph replay",
    "callbacks",
    "guard",
    "progress",
    "evaluation",
)

_ACTIVE: ContextVar[PhaseTimer | None] = ContextVar("cnnlab_phase_timer", default=None)
_OFF = nullcontext()


def phase(name: str) -> AbstractContextManager[object]:
    """Count the block's time under ``name`` while a ``PhaseTimer`` runs; otherwise do nothing."""
    timer = _ACTIVE.get()
    return _OFF if timer is None else timer.span(name)


class PhaseTimer:
    """Collect ``seconds[name]`` and ``calls[name]`` for every ``phase`` mark run inside ``with timer:``.

    Args:
        sync: called at every mark before the clock is read (None: synchronise CUDA when it is
            initialised, nothing on a CPU, where every op has finished when it returns).
    """

    def __init__(self, sync: Callable[[], None] | None = None):
        self.sync = sync or _default_sync
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.calls: defaultdict[str, int] = defaultdict(int)
        self._stack: list[list] = []  # [name, start of its current own stretch]
        self._token: Token[PhaseTimer | None] | None = None

    def __enter__(self) -> PhaseTimer:
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _ACTIVE.reset(self._token)
            self._token = None

    @contextmanager
    def span(self, name: str) -> Iterator[None]:
        self.sync()
        now = time.perf_counter()
        if self._stack:  # the enclosing phase pauses: nested time is counted once, here
            outer = self._stack[-1]
            self.seconds[outer[0]] += now - outer[1]
        self._stack.append([name, now])
        self.calls[name] += 1
        try:
            yield
        finally:
            self.sync()
            now = time.perf_counter()
            inner = self._stack.pop()
            self.seconds[name] += now - inner[1]
            if self._stack:
                self._stack[-1][1] = now  # the enclosing phase resumes

    def total(self) -> float:
        return float(sum(self.seconds.values()))


def _default_sync() -> None:
    # not while a CUDA graph is being captured: synchronising then would break the capture
    if torch.cuda.is_initialized() and not torch.cuda.is_current_stream_capturing():
        torch.cuda.synchronize()
