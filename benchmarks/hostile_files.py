"""Hostile paths, timed: `/dev/zero`, a FIFO, and symlinks to each, given everywhere cnnlab reads a path
the user chose — an image to predict or explain, a file in a class folder, a row of a CSV dataset, a kernel
file, an IDX file, a run's config.json — through the real command line (in this process, so Python's
start-up is not counted). Each must be refused with one line in at most 100 ms (issue 15), never read
whole, never waited on.

    .venv/bin/python benchmarks/hostile_files.py        # prints a table naming the machine, writes JSON
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine, machine_line  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 0.1
HANG_S = 10.0  # a call still running after this is reported as hanging (the old behaviour for a FIFO)


def hostile_paths(tmp: Path) -> dict[str, Path]:
    fifo = tmp / "fifo.png"
    os.mkfifo(fifo)
    (tmp / "zero.png").symlink_to("/dev/zero")
    (tmp / "to_fifo.png").symlink_to(fifo)
    return {"/dev/zero": Path("/dev/zero"), "FIFO": fifo, "link to /dev/zero": tmp / "zero.png",
            "link to a FIFO": tmp / "to_fifo.png"}  # fmt: skip


def cli(*args: str) -> tuple[int, str]:
    """`cnnlab ARGS` in this process: (exit code, stderr)."""
    from cnnlab.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code
    return int(code or 0), err.getvalue()


def timed(call) -> dict:
    """Run ``call`` in a thread; its time, exit code and message, or a hang after HANG_S."""
    box: dict = {}

    def run() -> None:
        t0 = time.perf_counter()
        box["code"], box["err"] = call()
        box["seconds"] = time.perf_counter() - t0

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_S)
    if thread.is_alive():
        return {"seconds": None, "code": None, "lines": 0, "message": f"still running after {HANG_S:g} s"}
    lines = [line for line in box["err"].splitlines() if line.strip()]
    return {
        "seconds": box["seconds"],
        "code": box["code"],
        "lines": len(lines),
        "message": lines[-1][:160] if lines else "",
    }


def places(tmp: Path, run: Path, bad: Path) -> dict:
    """Where a user's path is read, each as a command line that reads ``bad`` there."""
    from PIL import Image

    folder = tmp / "folder"
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            Image.new("RGB", (16, 16), (40 * i, 80, 120)).save(folder / cls / f"{i}.png")
    target = folder / "a" / "bad.png"
    target.unlink(missing_ok=True)
    target.symlink_to(bad)
    csv = tmp / "data.csv"
    csv.write_text(f"path,label\n{bad},a\n")
    config = run / "config.json"
    return {
        "predict IMAGE": lambda: cli("predict", str(run), str(bad)),
        "explain RUN IMAGE": lambda: cli("explain", str(run), str(bad), "--out", str(tmp / "ex")),
        "filters IMAGE": lambda: cli("filters", str(bad), "--out", str(tmp / "figs")),
        "filters --kernel FILE": lambda: cli("filters", "--kernel", f"k={bad}", "--out", str(tmp / "figs")),
        "train --data FOLDER (a class file)": lambda: cli("train", "--data", str(folder), "--out", str(tmp / "r1"), "--bad-images", "strict"),
        "train --data CSV (a row)": lambda: cli("train", "--data", str(csv), "--out", str(tmp / "r2")),
        "eval RUN (its config.json)": lambda: _swap(config, bad, lambda: cli("eval", str(run))),
    }  # fmt: skip


def _swap(path: Path, bad: Path, call):
    """Run ``call`` with ``path`` replaced by a link to ``bad``, then put the file back."""
    saved = path.read_bytes()
    path.unlink()
    path.symlink_to(bad)
    try:
        return call()
    finally:
        path.unlink()
        path.write_bytes(saved)


def tiny_run(tmp: Path) -> Path:
    import cnnlab as cl

    data = cl.load_data(
        "fashion_mnist", split="tutorial", limit=200, data_dir=os.environ.get("CNNLAB_DATA_DIR")
    )
    cl.train(cl.TrainConfig(model="mlp", epochs=1, limit=200), out=tmp / "run", data=data, progress=False)
    return tmp / "run"


def main() -> None:
    os.environ.setdefault("CNNLAB_DATA_DIR", str(ROOT.parent / "shared/data/fashion-mnist"))
    rows = []
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        run = tiny_run(tmp)
        for what, bad in hostile_paths(tmp).items():
            for where, call in places(tmp, run, bad).items():
                rows.append({"path": what, "where": where, **timed(call)})
    ok = [
        r
        for r in rows
        if r["seconds"] is not None and r["seconds"] <= TARGET_S and r["code"] and r["lines"] == 1
    ]
    print(
        f"Hostile paths, refused in process (target <= {TARGET_S * 1000:.0f} ms, one line). Machine: {machine_line()}"
    )
    print(f"{'path':18s} {'where':36s} {'ms':>8s} exit  message")
    for r in rows:
        ms = f"{r['seconds'] * 1000:8.1f}" if r["seconds"] is not None else "    hang"
        print(f"{r['path']:18s} {r['where']:36s} {ms} {r['code']!s:>4s}  {r['message']}")
    print(f"{len(ok)}/{len(rows)} refused in one line within {TARGET_S * 1000:.0f} ms")
    out = ROOT / "benchmarks/results/hostile_files.json"
    out.write_text(
        json.dumps(
            {"machine": machine(), "target_s": TARGET_S, "rows": rows, "met": len(ok) == len(rows)}, indent=2
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
