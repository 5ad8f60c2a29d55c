"""A real `cnnlab serve` in a child process, on loopback, for tests and benchmarks that need the whole
stack (uvicorn's HTTP parsing, signals, the process's memory) rather than an in-process client.

    with LiveServer("runs") as server:
        httpx.get(server.url + "/healthz")
        server.rss_bytes()
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

# Headless Chromium as the browser tests and benchmarks drive it (Debian's package; Playwright's own
# browser download is not used)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``cnnlab serve RUNS_DIR --host 127.0.0.1 --port <free>`` (plus ``args``), up when entered."""

    def __init__(self, runs_dir: str | os.PathLike, *args: str, start_seconds: float = 120.0):
        self.runs_dir = Path(runs_dir)
        self.args = list(args)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.start_seconds = start_seconds
        self.process: subprocess.Popen | None = None
        # stderr goes to a file: a pipe nobody reads could fill and stall the server
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - read by log_tail() after the server stops

    def __enter__(self) -> LiveServer:
        cmd = [sys.executable, "-m", "cnnlab", "serve", str(self.runs_dir), "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port), *self.args]
        self.process = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=self.log, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + self.start_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"cnnlab serve exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"cnnlab serve did not answer /healthz within {self.start_seconds:g} s")

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the server's stderr."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-chars:]

    def rss_bytes(self) -> int:
        """The server process's resident memory (Linux /proc)."""
        if self.process is None:
            raise RuntimeError("the server has not been started (use `with LiveServer(...)`)")
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("VmRSS not found")

    def stop(self, sig: int = signal.SIGTERM, wait: float = 30.0) -> float:
        """Send ``sig`` and return how many seconds the process took to exit (killed after ``wait``)."""
        process = self.process
        if process is None or process.poll() is not None:
            return 0.0
        t0 = time.monotonic()
        process.send_signal(sig)
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return time.monotonic() - t0
