"""Hostile paths, timed: `/dev/zero`, a FIFO, and symlinks to each, given everywhere cnnlab reads a path
the user chose — an image to predict or explain, a file in a class folder, a row of a CSV dataset, a kernel
file, an IDX file, a run's config.json — through the real command line (in this process, so Python's
start-up is not counted). Each must be refused with one line in at most 100 ms (issue 15), never read
whole, never waited on.

Issue 22 adds the files of run folders and checkpoints (`run_files`): /dev/zero and a FIFO as a checkpoint's
manifest.json, model.safetensors or state.json, as a run's weights and as --pretrained weights; a
safetensors header of a million entries; a config.json describing a model far larger than its weights
("flatten-dense65536" on [1, 174, 174]: 2 billion parameters); a class folder holding a link to / and a
loop (``up -> ..``). Each must be refused (or, for the links, left out) within 100 ms, with the memory the
process grew by reported.

    .venv/bin/python benchmarks/hostile_files.py        # prints a table naming the machine, writes JSON
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
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
        "train --data FOLDER (a class file)": lambda: _left_out(folder, target),
        "train --data CSV (a row)": lambda: cli("train", "--data", str(csv), "--out", str(tmp / "r2")),
        "eval RUN (its config.json)": lambda: _swap(config, bad, lambda: cli("eval", str(run))),
    }  # fmt: skip


def _left_out(folder: Path, link: Path) -> tuple[int, str]:
    """A class folder's link to a hostile file: since issue 22 a link out of its class folder is never
    followed (the sealed box), so the scan leaves it out, listed as ignored, without touching it."""
    from cnnlab.data.folder_source import scan_source

    src = scan_source(folder)
    rel = str(link.relative_to(folder))
    if rel in src.files:
        return 0, f"{rel} listed for decoding"
    return 1, f"left out: {rel} (a link out of its class folder)"


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


def _raises(call) -> tuple[int, str]:
    """``call()`` as (1, its error's one line) or (0, "")."""
    from cnnlab.errors import CnnlabError

    try:
        call()
    except CnnlabError as exc:
        return 1, str(exc).splitlines()[0]
    return 0, ""


def run_files(tmp: Path, run: Path) -> list[dict]:
    """Issue 22's cases, each timed (and the process's peak memory growth)."""
    import resource

    import torch
    from safetensors.torch import save_file

    from cnnlab.data.folder_source import scan_source
    from cnnlab.engine.checkpoint import load_checkpoint, write_checkpoint
    from cnnlab.models.pretrained import _read

    ckpts = tmp / "ck"
    write_checkpoint(ckpts, 1, {"w": torch.zeros(3)}, {"position": {"global_step": 1}})
    step = ckpts / "step-000000001"
    cases: dict[str, object] = {}
    (tmp / "h22").mkdir()
    for what, bad in hostile_paths(tmp / "h22").items():
        for name in ("manifest.json", "model.safetensors", "state.json"):
            cases[f"checkpoint {name} = {what}"] = lambda n=name, b=bad: _swap(
                step / n, b, lambda: _raises(lambda: load_checkpoint(step))
            )
        cases[f"run model.safetensors = {what}"] = lambda b=bad: _swap(
            run / "model.safetensors", b, lambda: cli("eval", str(run))
        )
        cases[f"--pretrained {what}"] = lambda b=bad: _raises(lambda: _read(b))
    big = tmp / "bigheader"  # a copy of the run without a recorded sha256 (made by hand): the header is read
    shutil.copytree(run, big)
    (big / "model.safetensors.sha256").unlink()
    entries = {f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(1_000_000)}
    head = json.dumps(entries).encode()
    (big / "model.safetensors").write_bytes(len(head).to_bytes(8, "little") + head)
    cases["safetensors header of 10^6 entries"] = lambda: cli("eval", str(big))
    huge = tmp / "huge"
    huge.mkdir()
    (huge / "config.json").write_text(
        json.dumps({"model": "flatten-dense65536", "input_shape": [1, 174, 174], "classes": ["a", "b"]})
    )
    save_file({"output.weight": torch.zeros(2, 4)}, huge / "model.safetensors")
    cases["config.json: flatten-dense65536 on [1,174,174]"] = lambda: cli("eval", str(huge))
    folder = tmp / "sealed"
    for cls in ("circle", "square"):
        (folder / cls).mkdir(parents=True)
        for i in range(3):
            (folder / cls / f"{i}.png").write_bytes(b"")  # listed by name: never decoded here
    (folder / "circle" / "all").symlink_to("/")
    (folder / "circle" / "up").symlink_to("..")
    cases["class folder with links to / and .. (6 files inside)"] = lambda: (
        0,
        f"{len(scan_source(folder).files)} files listed",
    )
    rows = []
    for where, call in cases.items():
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        row = {"path": "issue 22", "where": where, **timed(call)}
        row["grew_mb"] = round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024, 1)
        rows.append(row)
    return rows


def main() -> None:
    os.environ.setdefault("CNNLAB_DATA_DIR", str(ROOT.parent / "shared/data/fashion-mnist"))
    rows = []
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        run = tiny_run(tmp)
        for what, bad in hostile_paths(tmp).items():
            for where, call in places(tmp, run, bad).items():
                rows.append({"path": what, "where": where, **timed(call)})
        rows += run_files(tmp, run)
    ok = [
        r
        for r in rows
        if r["seconds"] is not None
        and r["seconds"] <= TARGET_S
        and (r["code"] and r["lines"] == 1 or r["message"] == "6 files listed")
    ]
    print(
        f"Hostile paths, refused in process (target <= {TARGET_S * 1000:.0f} ms, one line). Machine: {machine_line()}"
    )
    print(f"{'path':18s} {'where':48s} {'ms':>8s} exit  message")
    for r in rows:
        ms = f"{r['seconds'] * 1000:8.1f}" if r["seconds"] is not None else "    hang"
        grew = f" [+{r['grew_mb']} MB]" if r.get("grew_mb") else ""
        print(f"{r['path']:18s} {r['where']:48s} {ms} {r['code']!s:>4s}  {r['message'][:110]}{grew}")
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
