"""cnnlab vs the tutorial's own Keras code, same machine, same data and protocol.

Part A, same batch size (32): seconds per epoch of each model, Keras vs cnnlab (`--recipe tutorial`),
both run here in this one invocation (an epoch = training on 45,000 images + validating on 15,000).

Part B, time to the same accuracy: the Keras run's final test accuracy under the full tutorial protocol
(from `keras_tutorial.py --out FILE`, a run to early stopping) against cnnlab with a recipe of its
choosing (`--recipe fast` on the tutorial split, the tutorial's own model, a fixed epoch budget). The Keras
wall time is its epochs_run times the per-epoch seconds measured in part A, so both sides are timed in the
same conditions; the time measured in the full run itself is reported beside it.

    benchmarks/peers/setup_keras_env.sh
    benchmarks/.venv-keras/bin/python benchmarks/peers/keras_tutorial.py --models mlp,cnn1 \
        --out benchmarks/results/keras_full_seed0.json
    benchmarks/.venv-keras/bin/python benchmarks/peers/keras_tutorial.py --models cnn2,cnn4 \
        --out benchmarks/results/keras_full_seed0_cnn24.json
    .venv/bin/python benchmarks/tutorial_speed.py   # reads both files
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine, machine_line  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KERAS_PY = ROOT / "benchmarks/.venv-keras/bin/python"
KERAS_SCRIPT = ROOT / "benchmarks/peers/keras_tutorial.py"
# cnnlab's choice for part B: the fast recipe's settings on the tutorial split, per model an epoch budget
FAST_EPOCHS = {"mlp": 8, "cnn1": 4, "cnn2": 5, "cnn4": 5}
FAST_BATCH = 128


def run(cmd: list[str], threads: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TF_CPP_MIN_LOG_LEVEL": "2"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{r.stderr[-3000:]}")
    return r


def keras_epochs(model: str, epochs: int, args) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "k.json"
        run(
            [
                str(KERAS_PY),
                str(KERAS_SCRIPT),
                "--models",
                model,
                "--epochs",
                str(epochs),
                "--patience",
                "1000",
                "--threads",
                str(args.threads),
                "--data-dir",
                args.data_dir,
                "--quiet",
                "--out",
                str(out),
            ],
            args.threads,
        )
        return json.loads(out.read_text())["models"][model]["history"]


def cnnlab_run(model: str, extra: list[str], args) -> tuple[list[dict], dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        r = run(
            [
                sys.executable,
                "-m",
                "cnnlab",
                "train",
                "--model",
                model,
                "--split",
                "tutorial",
                "--out",
                str(out),
                "--data-dir",
                args.data_dir,
                "--quiet",
                "--json",
                *extra,
            ],
            args.threads,
        )
        rows = list(csv.DictReader((out / "metrics.csv").open()))
        return [{k: float(v) for k, v in row.items()} for row in rows], json.loads(r.stdout)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="mlp,cnn1,cnn2,cnn4")
    p.add_argument(
        "--epochs",
        type=int,
        default=2,
        help="epochs per side in part A; the first (warm-up, tracing) is dropped, the median of the rest timed",
    )
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument(
        "--keras-full",
        nargs="*",
        default=[
            str(ROOT / "benchmarks/results/keras_full_seed0.json"),  # mlp, cnn1
            str(ROOT / "benchmarks/results/keras_full_seed0_cnn24.json"),  # cnn2, cnn4
        ],
        help="results of full Keras runs (keras_tutorial.py --out); models are taken from each file that exists",
    )
    p.add_argument(
        "--data-dir",
        default=os.environ.get("CNNLAB_DATA_DIR") or str(ROOT.parent / "shared/data/fashion-mnist"),
    )
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/tutorial_speed.json"))
    args = p.parse_args()
    if not KERAS_PY.exists():
        raise SystemExit("The Keras peer's environment is missing: run benchmarks/peers/setup_keras_env.sh")
    models = args.models.split(",")
    full = {}
    for f in map(Path, args.keras_full):
        if f.exists():
            full.update(json.loads(f.read_text())["models"])
    print(f"Machine: {machine_line()}; {args.threads} threads each", flush=True)
    rows = []
    for m in models:
        k = keras_epochs(m, args.epochs, args)
        c, _ = cnnlab_run(m, ["--epochs", str(args.epochs), "--patience", "none", "--batch-size", "32"], args)
        k_s, c_s = (statistics.median(r["seconds"] for r in rows[1:] or rows) for rows in (k, c))
        row = {
            "model": m,
            "keras_s_per_epoch": round(k_s, 2),
            "cnnlab_s_per_epoch": round(c_s, 2),
            "epoch_ratio": round(c_s / k_s, 2),
        }
        print(
            f"  A {m}: Keras {k_s:.1f} s/epoch, cnnlab {c_s:.1f} s/epoch (ratio {c_s / k_s:.2f})", flush=True
        )
        if m in full:
            ref = full[m]
            keras_wall = ref["epochs_run"] * k_s
            fast, res = cnnlab_run(
                m,
                ["--recipe", "fast", "--epochs", str(FAST_EPOCHS.get(m, 5)), "--batch-size", str(FAST_BATCH)],
                args,
            )
            fast_wall = sum(r["seconds"] for r in fast)
            row.update(
                keras_test_accuracy=round(ref["test_accuracy"], 4),
                keras_epochs_run=ref["epochs_run"],
                keras_wall_s=round(keras_wall, 1),
                keras_wall_s_as_measured=round(ref["train_seconds"], 1),
                cnnlab_recipe=f"fast, {FAST_EPOCHS.get(m, 5)} epochs, batch {FAST_BATCH}",
                cnnlab_test_accuracy=round(res["test_accuracy"], 4),
                cnnlab_wall_s=round(fast_wall, 1),
                time_ratio=round(fast_wall / keras_wall, 2),
                reached=res["test_accuracy"] >= ref["test_accuracy"],
            )
            print(
                f"  B {m}: Keras {ref['test_accuracy']:.4f} in {keras_wall:.0f} s ({ref['epochs_run']} epochs); "
                f"cnnlab {res['test_accuracy']:.4f} in {fast_wall:.0f} s (ratio {fast_wall / keras_wall:.2f})",
                flush=True,
            )
        rows.append(row)
    print(
        f"\nFashion-MNIST, tutorial split (45,000 train / 15,000 validation / 10,000 test). Machine: {machine_line()}\n"
    )
    print("Same batch size (32), seconds per epoch:\n")
    print("| model | Keras s/epoch | cnnlab s/epoch | cnnlab / Keras |\n|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['model']} | {r['keras_s_per_epoch']:.1f} | {r['cnnlab_s_per_epoch']:.1f} | {r['epoch_ratio']:.2f} |"
        )
    if any("keras_wall_s" in r for r in rows):
        print(
            "\nTime to the Keras run's final test accuracy (Keras: full tutorial protocol to early stopping):\n"
        )
        print(
            "| model | Keras accuracy | Keras time (epochs) | cnnlab recipe | cnnlab accuracy | cnnlab time | cnnlab / Keras |"
        )
        print("|---|---:|---:|---|---:|---:|---:|")
        for r in rows:
            if "keras_wall_s" in r:
                print(
                    f"| {r['model']} | {r['keras_test_accuracy']:.4f} | {r['keras_wall_s']:.0f} s ({r['keras_epochs_run']}) | "
                    f"{r['cnnlab_recipe']} | {r['cnnlab_test_accuracy']:.4f} | {r['cnnlab_wall_s']:.0f} s | "
                    f"{r['time_ratio']:.2f}{'' if r['reached'] else ' (not reached)'} |"
                )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"machine": machine(), "threads": args.threads, "rows": rows}, indent=2)
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
