"""The runs the server may show: found by scanning RUNS_DIR, never named by a path from the client.

A model id is the run folder's path relative to RUNS_DIR (``cnn4``, ``compare/cnn2``), taken from the
scan; a request's id is only ever looked up in that table. A run qualifies when it holds ``config.json``
and ``model.safetensors`` as regular files whose real location is inside RUNS_DIR (symlinks that lead
out are ignored). Its config.json is validated when scanned (`cnnlab.run.files`): a run whose config is
damaged is kept apart with the reason (listed as unavailable, 409 when asked for), and never stops the
others from being listed. Weights are read only with safetensors (`cnnlab.load_run`, which checks their
sha256), never unpickled. Loaded models and test sets are kept in small LRU caches.

What a scan costs is paid once per file version: a run's parsed config.json and results.json are kept by
their files' signatures (device, inode, size, mtime), so a rescan of unchanged runs only stats them, and a
run that failed to load is remembered by the same signatures and refused at once until a file changes.
A scan runs under its own lock, never under the table's: a request that looks a run up never waits for a
scan (however large the runs folder), and one scan runs at a time.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from cnnlab.errors import CnnlabError, NotFoundError, RunFileError
from cnnlab.explain.data import IMAGE_OPTIONS, run_test_split
from cnnlab.run.files import WEIGHTS, read_config, read_results
from cnnlab.run.folder import load_run
from cnnlab.userfiles import is_text, printable

SCAN_DEPTH = 3  # runs/<a>/<b>/<c>: a compare folder holds one run per model
RESCAN_SECONDS = 2.0
REQUEST_RESCAN_SECONDS = 0.5  # a request may ask for a fresh scan; it gets one at most this old


class UnknownModel(NotFoundError):
    """No run of that id under RUNS_DIR. HTTP 404."""


class Unavailable(RunFileError):
    """The run exists but cannot be used here: its files are damaged, or its test set is missing. HTTP 409."""


Signature = tuple  # the (device, inode, size, mtime_ns) of each of a run's files: which version was read


def signature(*paths: Path) -> Signature:
    """The files' versions, by stat alone (a missing file is None)."""
    out: list[tuple[int, int, int, int] | None] = []
    for p in paths:
        try:
            st = p.stat()
        except OSError:
            out.append(None)
            continue
        out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


@dataclass(frozen=True)
class RunEntry:
    id: str
    path: Path
    config: dict
    results: dict
    stamp: Signature  # config.json's, results.json's and the weights' versions: a changed run is reloaded

    def describe(self) -> dict:
        test = self.results.get("test") or {}
        return {
            "id": self.id,
            "name": printable(self.config.get("model", "?")),
            "data": printable(self.config.get("data", "?")),
            "input_shape": list(self.config.get("input_shape", [])),
            "classes": [str(c) for c in self.config.get("classes", [])],
            "params": self.results.get("params") or self.config.get("params"),
            "test_accuracy": test.get("accuracy"),
            "error_pct": round(test["error_pct"], 4) if test.get("error_pct") is not None else None,
            "layers": [
                {"name": r.get("name"), "kind": r.get("kind"), "shape": r.get("output_shape")}
                for r in (self.results.get("summary") or {}).get("layers", [])
            ],
        }


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve(strict=True).relative_to(root)
    except (OSError, ValueError, RuntimeError):
        return False
    return True


def _read_run(folder: Path, rid: str, stamp: Signature) -> RunEntry | str:
    """The run in ``folder`` (validated config, tolerant results), or why it cannot be used."""
    try:
        config = read_config(folder)
    except RunFileError as exc:
        return str(exc)
    results, _ = read_results(folder)  # damaged keys are dropped: the run is still listed
    return RunEntry(rid, folder, config, results, stamp)


def scan_runs(
    root: Path, *, depth: int = SCAN_DEPTH, cache: dict | None = None
) -> tuple[dict[str, RunEntry], dict[str, str]]:
    """Every run folder under ``root`` (to ``depth`` levels): (runs by id, reasons of the unusable by id).
    ``cache``: what earlier scans read, by folder and file signatures (updated in place), so that an
    unchanged run costs a few ``stat`` calls."""
    root = root.resolve()
    found: dict[str, RunEntry] = {}
    broken: dict[str, str] = {}
    seen: dict = {}

    def visit(folder: Path, level: int) -> None:
        cfg, weights = folder / "config.json", folder / WEIGHTS
        if cfg.is_file() and weights.is_file() and _inside(cfg, root) and _inside(weights, root):
            rid = folder.relative_to(root).as_posix() if folder != root else folder.name
            if not is_text(rid):  # an id no client can send back: listed as unavailable, by a shown name
                broken[printable(rid)] = "its folder name is not UTF-8 text; rename the folder"
                return
            stamp = signature(cfg, folder / "results.json", weights)
            known = (cache or {}).get(folder)
            read = known[1] if known is not None and known[0] == stamp else _read_run(folder, rid, stamp)
            seen[folder] = (stamp, read)
            if isinstance(read, str):
                broken[rid] = read
            else:
                found[rid] = read
            return
        if level >= depth:
            return
        try:
            children = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        for e in children:
            if e.name.startswith(".") or not e.is_dir():
                continue
            child = Path(e.path)
            if _inside(child, root):
                visit(child, level + 1)

    visit(root, 0)
    if cache is not None:
        cache.clear()
        cache.update(seen)
    return found, broken


class RunRegistry:
    """Run lookup, an LRU of loaded models and an LRU of test sets, safe to use from many threads."""

    def __init__(
        self, root: str | os.PathLike, *, max_models: int = 4, data_dir: str | os.PathLike | None = None
    ):
        self.root = Path(root)
        self.max_models = max_models
        self.data_dir = os.fspath(data_dir) if data_dir is not None else None  # a str: part of cache keys
        self._lock = threading.Lock()  # the tables below; held for dictionary work only, never a scan
        self._scan_lock = threading.Lock()  # one scan at a time
        self._runs: dict[str, RunEntry] = {}
        self._broken: dict[str, str] = {}
        self._scanned = -1e9  # monotonic time of the last scan's end (long ago: none yet)
        self._scan_started = -1e9
        self._parsed: dict = {}  # folder -> (file signatures, RunEntry or reason): see scan_runs
        self._failed: dict[str, tuple[Signature, str]] = {}  # model id -> (signatures, why it failed)
        self.generation = 0  # bumped by a scan that finds the runs changed: what answers may be cached by
        self._models: OrderedDict[str, tuple[tuple, object]] = OrderedDict()
        self._model_locks: dict[str, threading.Lock] = {}
        self._tests: OrderedDict[tuple, tuple] = OrderedDict()
        self._test_lock = threading.Lock()

    def runs(self, *, refresh: bool = False, max_age: float | None = None) -> dict[str, RunEntry]:
        """The runs of the last scan; a new scan first when ``refresh`` or when the last is due again.
        ``max_age``: with ``refresh``, a scan begun at most this many seconds ago will do (what a request
        asks for: however often strangers ask, the folder is scanned at most once per ``max_age``).
        Callers that find a scan under way wait for it (on the scan lock), and take its result."""
        asked = time.monotonic()
        if max_age is not None:
            asked -= max_age
        with self._lock:
            if max_age is not None and self._scanned >= self._scan_started >= asked:  # recent and done
                return self._runs
            if not refresh and asked - self._scanned <= RESCAN_SECONDS:
                return self._runs
        with self._scan_lock:
            with self._lock:
                if self._scan_started >= asked:  # a scan that began after this call asked: its answer
                    return self._runs
            self._scan_started = time.monotonic()
            if self.root.is_dir():
                runs, broken = scan_runs(self.root, cache=self._parsed)
            else:
                runs, broken = {}, {}
            with self._lock:
                same = broken == self._broken and {k: e.stamp for k, e in runs.items()} == {
                    k: e.stamp for k, e in self._runs.items()
                }
                if same:  # nothing changed: the same table (and generation) as before
                    runs = self._runs
                else:
                    self._runs, self._broken = runs, broken
                    self.generation += 1
                self._scanned = time.monotonic()
                return runs

    def unavailable(self) -> dict[str, str]:
        """Runs found by the last scan whose files are damaged: the reason, by id."""
        with self._lock:
            return dict(self._broken)

    def entry(self, model_id: str) -> RunEntry:
        runs = self.runs()
        if model_id not in runs:
            runs = self.runs(refresh=True, max_age=REQUEST_RESCAN_SECONDS)
        with self._lock:
            why = self._broken.get(model_id)
        if why is not None:
            raise Unavailable(f"model {model_id!r} cannot be loaded: {why}")
        if model_id not in runs:
            shown = ", ".join(list(runs)[:20]) or "none (train one with `cnnlab train --out RUNS_DIR/NAME`)"
            raise UnknownModel(f"Unknown model {model_id[:80]!r}. Available: {shown}")
        return runs[model_id]

    def run(self, model_id: str):
        """The loaded `cnnlab.run.folder.Run` for ``model_id`` (from the cache when its files are unchanged). A
        run that failed to load fails again at once, until one of its files changes."""
        entry = self.entry(model_id)
        with self._lock:
            cached = self._models.get(model_id)
            if cached and cached[0] == entry.stamp:
                self._models.move_to_end(model_id)
                return cached[1]
            failed = self._failed.get(model_id)
            if failed is not None and failed[0] == entry.stamp:
                raise Unavailable(failed[1])
            lock = self._model_locks.setdefault(model_id, threading.Lock())
        with lock:  # one load per model, even when many requests ask at once
            with self._lock:
                cached = self._models.get(model_id)
                if cached and cached[0] == entry.stamp:
                    return cached[1]
                failed = self._failed.get(model_id)
                if failed is not None and failed[0] == entry.stamp:
                    raise Unavailable(failed[1])
            try:
                run = load_run(entry.path)
            except CnnlabError as exc:
                message = f"model {model_id!r} cannot be loaded: {exc}"
                with self._lock:
                    self._failed[model_id] = (entry.stamp, message)
                raise Unavailable(message) from None
            with self._lock:
                self._failed.pop(model_id, None)
                self._models[model_id] = (entry.stamp, run)
                self._models.move_to_end(model_id)
                while len(self._models) > self.max_models:
                    self._models.popitem(last=False)
            return run

    def test_split(self, model_id: str):
        """(split, classes) of the run's test set, loaded once per dataset and kept."""
        cfg = self.entry(model_id).config
        key = (
            str(cfg.get("data")),
            str(cfg.get("split")),
            cfg.get("seed"),
            cfg.get("limit"),
            self.data_dir,
            cfg.get("data_dir"),
            *(cfg.get(k) for k in IMAGE_OPTIONS),
        )
        with self._test_lock:
            if key in self._tests:
                self._tests.move_to_end(key)
                return self._tests[key]
            try:
                value = run_test_split(cfg, data_dir=self.data_dir)
            except CnnlabError as exc:
                raise Unavailable(f"the test set of {model_id!r} is not available here: {exc}") from None
            self._tests[key] = value
            while len(self._tests) > 2:
                self._tests.popitem(last=False)
            return value
