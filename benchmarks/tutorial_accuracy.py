"""The tutorial's accuracy targets: error % on the official 10,000 test images under the tutorial protocol
(the official 60,000 split 45,000 train / 15,000 validation, the official 10,000 touched once at the end),
mean over seeds, for mlp / cnn1 / cnn2 / cnn4. Each run is a real `cnnlab train` on the CLI.

Two trainings of the same four models on the same split:
- `--recipe tutorial` (default): the post's training as written (Adam 1e-3, batch 32, up to 100 epochs,
  early stopping on val_loss with patience 5, best weights restored);
- `--recipe fast --epochs N --batch-size B`: cnnlab's training (one-cycle Adam, label smoothing,
  normalisation) for a fixed epoch budget, no early stopping; the epoch with the best validation accuracy
  is kept.

    .venv/bin/python benchmarks/tutorial_accuracy.py --seeds 0,1,2 --jobs 2 --threads 1
    .venv/bin/python benchmarks/tutorial_accuracy.py --recipe fast --epochs 10 --batch-size 128 --seeds 0,1,2
    (writes benchmarks/results/tutorial_accuracy[_RECIPE].json and prints a Markdown table)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine, machine_line  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGET_ERROR = {
    "mlp": 12.0,
    "cnn1": 9.0,
    "cnn2": 8.5,
    "cnn4": 8.0,
}  # the bar: the tutorial's Keras code or better
POST = {"mlp": "almost 13", "cnn1": "below 10", "cnn2": "lower again", "cnn4": "lowest"}


def run_one(model: str, seed: int, args) -> dict:
    out = Path(args.runs) / f"{model}-seed{seed}"
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    cmd = [
        sys.executable,
        "-m",
        "cnnlab",
        "train",
        "--model",
        model,
        "--seed",
        str(seed),
        "--split",
        "tutorial",
        "--out",
        str(out),
        "--quiet",
        "--json",
        "--overwrite",
        "--recipe",
        args.recipe,
        "--epochs",
        str(args.epochs),
    ]
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    res = json.loads(r.stdout)
    res.update(seed=seed, wall_seconds=round(time.perf_counter() - t0, 1), amp=_amp(out))
    print(
        f"  {model} seed {seed}: error {res['error_pct']:.2f}% ({res['epochs_run']} epochs, best {res['best_epoch']}, "
        f"{res['train_seconds']:.0f} s)",
        flush=True,
    )
    return res


def collect_one(model: str, seed: int, args) -> dict | None:
    """The result of a finished run folder (as `cnnlab train --json` would print it), or None."""
    folder = Path(args.runs) / f"{model}-seed{seed}"
    if not (folder / "results.json").is_file():
        return None
    res = json.loads((folder / "results.json").read_text())
    test = res["test"]
    return {
        "model": model,
        "seed": seed,
        "params": res["params"],
        "epochs_run": res["epochs_run"],
        "best_epoch": res["best_epoch"],
        "train_seconds": round(res["train_seconds"], 1),
        "test_accuracy": round(test["accuracy"], 4),
        "error_pct": round(test["error_pct"], 2),
        "amp": _amp(folder),
    }


def _amp(folder: Path) -> str:
    """The autocast a run trained with, from its config.json."""
    return json.loads((folder / "config.json").read_text()).get("amp", "auto")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="mlp,cnn1,cnn2,cnn4")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--recipe", default="tutorial", help="tutorial (the post's training) or fast")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=None, help="[the recipe's]")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (each with --threads threads)")
    p.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 1)))
    p.add_argument(
        "--data-dir",
        default=os.environ.get("CNNLAB_DATA_DIR") or str(ROOT.parent / "shared/data/fashion-mnist"),
    )
    p.add_argument("--runs", default=None, help="[runs/bench-tutorial-accuracy[-RECIPE]]")
    p.add_argument("--out", default=None, help="[benchmarks/results/tutorial_accuracy[_RECIPE].json]")
    p.add_argument(
        "--collect", action="store_true", help="train nothing: tabulate the run folders already in --runs"
    )
    p.add_argument(
        "--missing",
        action="store_true",
        help="train only the runs whose folder in --runs has no results yet, then tabulate them all",
    )
    args = p.parse_args()
    suffix = "" if args.recipe == "tutorial" else f"_{args.recipe}"
    args.runs = args.runs or str(ROOT / f"runs/bench-tutorial-accuracy{suffix.replace('_', '-')}")
    args.out = args.out or str(ROOT / f"benchmarks/results/tutorial_accuracy{suffix}.json")
    models = args.models.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    training = (
        "the post's (Adam 1e-3, batch 32, early stopping on val_loss, patience 5)"
        if args.recipe == "tutorial"
        else f"--recipe {args.recipe}, {args.epochs} epochs, batch {args.batch_size or 'of the recipe'}"
    )
    print(f"Machine: {machine_line()}", flush=True)
    jobs = [(m, s) for m in models for s in seeds]
    if args.collect:
        results = [r for r in (collect_one(m, s, args) for m, s in jobs) if r is not None]
        models = [m for m in models if any(r["model"] == m for r in results)]
        seeds = sorted({r["seed"] for r in results})
    else:
        done = {ms: collect_one(*ms, args) for ms in jobs} if args.missing else {}
        with ThreadPoolExecutor(args.jobs) as pool:
            results = list(pool.map(lambda ms: done.get(ms) or run_one(*ms, args), jobs))
    table = []
    for m in models:
        rs = [r for r in results if r["model"] == m]
        errs = [r["error_pct"] for r in rs]
        table.append(
            {
                "model": m,
                "params": rs[0]["params"],
                "seeds": len(rs),
                "error_mean": round(statistics.mean(errs), 2),
                "error_std": round(statistics.stdev(errs), 2) if len(errs) > 1 else 0.0,
                "epochs_mean": round(statistics.mean(r["epochs_run"] for r in rs), 1),
                "train_seconds_mean": round(statistics.mean(r["train_seconds"] for r in rs), 1),
                "target_error": TARGET_ERROR.get(m),
                "met": statistics.mean(errs) <= TARGET_ERROR.get(m, 100),
            }
        )
    print(
        f"\nTutorial protocol on Fashion-MNIST, error on the official 10,000 test images, mean of {len(seeds)} seeds"
    )
    print(f"Training: {training}; autocast {', '.join(sorted({r['amp'] for r in results}))}")
    print(f"Machine: {machine_line()}\n")
    print("| model | params | error % (mean ± std) | target | met | epochs (mean) | train s (mean) |")
    print("|---|---:|---:|---:|:-:|---:|---:|")
    for t in table:
        print(
            f"| {t['model']} | {t['params']:,} | {t['error_mean']:.2f} ± {t['error_std']:.2f} | ≤ {t['target_error']} | "
            f"{'yes' if t['met'] else 'NO'} | {t['epochs_mean']} | {t['train_seconds_mean']} |"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "machine": machine(),
                "table": table,
                "runs": results,
                "training": training,
                "threads": args.threads,
                "jobs": args.jobs,
            },
            indent=2,
        )
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
