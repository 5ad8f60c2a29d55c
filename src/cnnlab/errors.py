"""Errors a user can cause. Each type carries how it is reported: the CLI prints one line and exits with
``exit_code``; the web API answers ``{"error": ..., "status": ...}`` with ``http_status``.

Raise the most specific type; a plain ``CnnlabError`` is a bad value (exit 1, HTTP 422).
"""

from __future__ import annotations

import difflib


def shortened(path: str, limit: int = 120) -> str:
    """A path cut to ``limit`` characters for a message, in the middle: its start and the file name stay
    (a long temporary folder must not hide which file it was)."""
    if len(path) <= limit:
        return path
    tail = max(limit // 2, limit - 40 - 3)
    return f"{path[: limit - tail - 3]}...{path[-tail:]}"


def did_you_mean(word: str, choices, *, what: str = "") -> str:
    """`` (did you mean 'mypics'?)`` when ``word`` is close to one of ``choices`` (difflib), else ``""``."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=3, cutoff=0.6)
    if not close:
        return ""
    return f" (did you mean {' or '.join(repr(c) for c in close)}{what}?)"


class CnnlabError(Exception):
    """A problem with the user's input (unknown name, missing file, bad value). Exit code 1, HTTP 422."""

    exit_code = 1
    http_status = 422

    def _render_traceback_(self) -> list[str]:
        """How IPython and Jupyter show it: the one line the CLI prints, not a traceback through cnnlab's
        internals (the message says what to change; where cnnlab noticed is no help to a reader).
        ``traceback.print_exc()`` still gives the whole story."""
        return [f"cnnlab: error: {self}"]


class UsageError(CnnlabError):
    """Options that cannot be parsed or do not go together. Exit code 2 (as argparse), HTTP 400."""

    exit_code = 2
    http_status = 400


class NotFoundError(CnnlabError):
    """An unknown name: a model, run, layer, dataset, recipe or file. Exit code 1, HTTP 404."""

    http_status = 404


class RunFileError(CnnlabError):
    """A run folder whose files are missing, damaged or do not agree. Exit code 1, HTTP 409."""

    http_status = 409


class NonFiniteLossError(CnnlabError):
    """Training produced a NaN or infinite loss. Exit code 3."""

    exit_code = 3
