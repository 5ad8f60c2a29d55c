"""`cnnlab serve`: run the explainer app with uvicorn, on this machine only unless told otherwise."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import sys
from typing import Any

import torch
import uvicorn

from cnnlab.web.app import create_app
from cnnlab.web.protocol import MAX_HEAD_BYTES, JsonErrorsH11

_ENV = "CNNLAB_SERVE_CONFIG"  # how `serve` hands its settings to worker processes
DRAIN_SECONDS = 3  # on SIGTERM / Ctrl+C: requests in flight get this long, then the process exits


def bound_malloc_arenas(arenas: int = 2, mmap_threshold: int = 1 << 20) -> bool:
    """Ask glibc for at most ``arenas`` malloc arenas, and to give every block of ``mmap_threshold`` bytes
    or more its own mapping. By default every thread that allocates gets its own arena (up to 8 per core),
    and a server whose pool threads each decode images and run models keeps all of them, so its memory
    grows with the number of threads that ever ran rather than with its work. And by default glibc raises
    its mmap threshold to the largest block freed (up to 32 MiB): after one burst of 8 MiB uploads every
    later body is carved from the heap, which is not given back, so the server stayed ~0.9 GB above idle
    after 200 large uploads. A fixed threshold hands each body's memory back when it is freed. A no-op
    (False) where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        arenas_set = libc.mallopt(-8, arenas)  # -8: M_ARENA_MAX
        return bool(arenas_set and libc.mallopt(-3, mmap_threshold))  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


SWITCH_SECONDS = 0.001  # how long a thread holding Python's interpreter lock keeps another waiting


def share_the_interpreter_lock(seconds: float = SWITCH_SECONDS) -> None:
    """Make a thread that holds Python's interpreter lock hand it over after ``seconds`` when another
    waits (Python's default: 5 ms). The event loop answers every connection and needs the lock after each
    wait; with compute and batch threads busy it waited up to 5 ms per step, several steps per answer
    (/healthz p99 ~300 ms under 30 concurrent predicts on 2 cores). A shorter interval costs the
    threads' throughput a little and bounds that wait."""
    sys.setswitchinterval(seconds)


def app_from_env():
    """App factory for uvicorn's worker processes: settings come from ``$CNNLAB_SERVE_CONFIG``."""
    bound_malloc_arenas()
    share_the_interpreter_lock()
    cfg = json.loads(os.environ[_ENV])
    torch.set_num_threads(cfg.pop("threads"))
    return create_app(cfg.pop("runs_dir"), **cfg)


def serve(
    runs_dir: str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    data_dir: str | os.PathLike | None = None,
    threads: int = 1,
    workers: int = 1,
    max_concurrent: int = 4,
) -> None:
    """Serve the page and the API for the runs in ``runs_dir`` until interrupted.

    ``threads`` is torch's intra-op thread count. One image is a tiny amount of work: with one thread
    per request, requests run side by side instead of fighting over the cores (measured on 2 cores:
    cnn4 on one 28x28 image takes ~1 ms with 1 thread, and far longer with 2 while anything else runs).
    ``workers`` > 1 starts that many server processes (each with its own model cache and limits): the
    per-request Python work then runs in parallel instead of taking turns on one interpreter lock.
    SIGTERM or Ctrl+C stops accepting, gives requests in flight `DRAIN_SECONDS`, and exits.
    """
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"Warning: serving on {host}: anyone who can reach this address can use the page and API")
    shown = f"[{host}]" if ":" in host else host
    print(f"cnnlab explainer: http://{shown}:{port}/  (API docs: http://{shown}:{port}/docs)  Ctrl+C stops")
    options: dict[str, Any] = {  # uvicorn.run's keyword arguments, of many types
        "host": host,
        "port": port,
        "log_level": "warning",
        "timeout_keep_alive": 5,
        "timeout_graceful_shutdown": DRAIN_SECONDS,  # a stop never waits on work in flight for long
        "http": JsonErrorsH11,  # malformed framing answered as JSON too
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
    }
    data_dir = os.fspath(data_dir) if data_dir else None
    if workers > 1:
        cfg = {
            "runs_dir": os.fspath(runs_dir),
            "data_dir": data_dir,
            "threads": threads,
            "max_concurrent": max_concurrent,
        }
        os.environ[_ENV] = json.dumps(cfg)
        uvicorn.run("cnnlab.web.server:app_from_env", factory=True, workers=workers, **options)
    else:
        bound_malloc_arenas()
        share_the_interpreter_lock()
        torch.set_num_threads(threads)
        app = create_app(runs_dir, data_dir=data_dir, max_concurrent=max_concurrent)
        uvicorn.run(app, **options)
