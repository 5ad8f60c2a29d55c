"""Exact resume on this machine's device: one uninterrupted `cnnlab train` against one killed with SIGKILL
after a random checkpoint and continued with `--resume auto`. Prints whether the final weights and the
metrics are bit-identical (and the largest weight difference if not) and writes JSON.

On a GPU this is the proof the README cites for resuming a graph-captured CUDA run (``--deterministic``:
cuDNN and cuBLAS pick reproducible kernels).

    PYTHONPATH=src python3 benchmarks/resume_check.py --device cuda --data-dir DIR --out $OUT/resume.json
    .venv/bin/python benchmarks/resume_check.py --device cpu --limit 600 --epochs 2   # a CPU check
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train_cmd(out: Path, args: argparse.Namespace) -> list[str]:
    cmd = [sys.executable, "-m", "cnnlab", "train", "--recipe", args.recipe, "--device", args.device]
    cmd += ["--limit", str(args.limit), "--epochs", str(args.epochs), "--checkpoint-every", str(args.every)]
    cmd += ["--deterministic", "--quiet", "--out", str(out)]
    return cmd + (["--data-dir", args.data_dir] if args.data_dir else [])


def killed_and_resumed(out: Path, args: argparse.Namespace, rng: random.Random) -> dict:
    """Start a run, SIGKILL it once a checkpoint past a random step exists, then resume it to the end."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    target = rng.randint(1, args.kill_by)
    proc = subprocess.Popen(train_cmd(out, args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    folder = out / "checkpoints"
    killed_at = None
    while proc.poll() is None:
        steps = [int(p.name.split("-")[1]) for p in folder.glob("step-*")] if folder.is_dir() else []
        if steps and max(steps) >= target * args.every:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed_at = max(steps)
            break
        time.sleep(0.05)
    if killed_at is None:
        return {"killed_at": None, "note": "the run ended before the kill point; raise --epochs"}
    r = subprocess.run([*train_cmd(out, args), "--resume", "auto"], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"resume failed: {r.stderr.strip()[-2000:]}")
    return {"killed_at": killed_at}


def compare(a: Path, b: Path) -> dict:
    from safetensors.torch import load_file

    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    diff = (
        max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa)
        if wa.keys() == wb.keys()
        else None
    )
    return {
        "weights_bit_identical": (a / "model.safetensors").read_bytes()
        == (b / "model.safetensors").read_bytes(),
        "max_abs_weight_diff": diff,
        "metrics_identical": _metrics(a) == _metrics(b),
    }


def _metrics(run: Path) -> list[list[str]]:
    """metrics.csv without the seconds column (wall time differs between any two runs)."""
    rows = [line.split(",") for line in (run / "metrics.csv").read_text().splitlines()]
    keep = [i for i, name in enumerate(rows[0]) if name != "seconds"]
    return [[r[i] for i in keep] for r in rows]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--recipe", default="fast")
    p.add_argument("--limit", type=int, default=6000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--every", type=int, default=5, help="checkpoint every N steps")
    p.add_argument(
        "--kill-by", type=int, default=6, help="kill after a checkpoint at up to N x --every steps"
    )
    p.add_argument("--seed", type=int, default=0, help="for the random kill point")
    p.add_argument("--data-dir", default=os.environ.get("CNNLAB_DATA_DIR"))
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/resume_check.json"))
    args = p.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryDirectory() as tmp:
        whole, cut = Path(tmp) / "whole", Path(tmp) / "cut"
        t0 = time.perf_counter()
        subprocess.run(train_cmd(whole, args), env=env, check=True, stdout=subprocess.DEVNULL)
        kill = killed_and_resumed(cut, args, random.Random(args.seed))
        result = {
            "device": args.device,
            "recipe": args.recipe,
            "limit": args.limit,
            "epochs": args.epochs,
            **kill,
        }
        if kill["killed_at"] is not None:
            result.update(compare(whole, cut))
        result["wall_seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
