"""Stopping on Ctrl-C or SIGTERM without losing work.

The first SIGINT/SIGTERM is only remembered: the training loop finishes the step it is in, saves a
checkpoint and raises ``Interrupted`` (exit code 130 or 143). A second one raises ``Interrupted`` at once.
Under torchrun a Ctrl-C reaches each worker twice within milliseconds (from the terminal and again from the
launcher), so a repeat inside ``debounce`` seconds counts as the same request.
"""

from __future__ import annotations

import signal
import threading
import time

from cnnlab.errors import CnnlabError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(CnnlabError):
    """Training stopped by a signal. Exit code 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, message: str, signum: int, *, continue_with: str | None = None):
        """``continue_with``: how to continue, when a checkpoint was saved (the CLI gives its command)."""
        super().__init__(message + (f"; continue with {continue_with}" if continue_with else ""))
        self.what, self.signum, self.continue_with = message, signum, continue_with
        self.exit_code = 128 + signum

    def continuing_with(self, how: str) -> Interrupted:
        """The same interruption, telling how to continue as ``how`` (when it can be continued at all)."""
        return Interrupted(self.what, self.signum, continue_with=how) if self.continue_with else self


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class GracefulStop:
    """Context manager: while active, ``signum`` is the first SIGINT/SIGTERM received (else 0).

    Handlers are installed only in the main thread (Python delivers signals there); elsewhere this is a
    no-op that never reports a signal. The previous handlers come back on exit.

    Example:
        >>> with GracefulStop() as stop:  # doctest: +SKIP
        ...     for batch in batches:
        ...         train_step(batch)
        ...         if stop.signum:
        ...             save(); raise Interrupted("stopped", stop.signum)
    """

    def __init__(self, *, debounce: float = 0.0):
        self.debounce = debounce
        self.signum = 0
        self._at = 0.0
        self._previous: dict = {}

    def _handle(self, signum: int, frame) -> None:
        now = time.monotonic()
        if not self.signum:
            self.signum, self._at = signum, now
            return
        if now - self._at < self.debounce:
            return
        raise Interrupted(f"{signal_name(signum)} again: stopped at once, without saving", signum)

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()
