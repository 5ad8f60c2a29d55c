"""Fashion-MNIST speedrun: time to 91/93/94/95/96% on the official test set, mean and std over seeds.

A recipe (`fast` or `best`, see cnnlab.recipes) trains for a fixed budget of epochs on the 55,000-image
training split. After every epoch the official 10,000 test images are evaluated *outside* the timer, for
measurement only (nothing is selected on them): time-to-X is the cumulative training time at the first
epoch whose test accuracy reaches X. torch.compile's warm-up, when on, is excluded and reported beside.

    .venv/bin/python benchmarks/speedrun.py --recipe fast --seeds 5                # CPU: 91%
    .venv/bin/python benchmarks/speedrun.py --recipe fast --model resnet_s --epochs 8 --seeds 5 \
        --out benchmarks/results/speedrun-fast-resnet_s-cpu.json                 # CPU: 93%
    python benchmarks/speedrun.py --recipe fast --seeds 20 --device cuda           # the GPU record
Writes benchmarks/results/speedrun-<recipe>-<device>.json and prints a table naming the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine, machine_line  # noqa: E402

import cnnlab as cl  # noqa: E402
from cnnlab.engine import Callback, resolve_device  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGETS = (0.91, 0.93, 0.94, 0.95, 0.96)


class TestProbe(Callback):
    """After each epoch: cumulative training seconds and test accuracy (evaluated off the clock)."""

    def __init__(self, test, tta):
        self.test, self.tta, self.rows, self.train_seconds = test, tta, [], 0.0

    def on_epoch_end(self, state):
        self.train_seconds += state.logs["seconds"]  # fit(validate=False): the epoch's training time only
        model = state.weights if state.weights is not None else state.model
        m = cl.evaluate(model, self.test, tta=self.tta or None)
        self.rows.append(
            {
                "epoch": state.epoch,
                "train_seconds": round(self.train_seconds, 3),
                "test_accuracy": m["accuracy"],
            }
        )


def one_seed(cfg: cl.TrainConfig, data, device: torch.device) -> dict:
    model = cl.build_model(cfg, data)
    probe = TestProbe(data.test, cfg.tta_views)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    h = cl.fit(
        model,
        data,
        **cfg.fit_options(),
        callbacks=[probe],
        device=device,
        progress=False,
        validate=False,
    )
    out = {
        "seed": cfg.seed,
        "epochs": probe.rows,
        "final_accuracy": probe.rows[-1]["test_accuracy"],
        "train_seconds": probe.rows[-1]["train_seconds"],
        "compile_seconds": h.compile_seconds,
        "time_to": {
            f"{t:.2f}": next((r["train_seconds"] for r in probe.rows if r["test_accuracy"] >= t), None)
            for t in TARGETS
        },
    }
    if device.type == "cuda":
        out["gpu_max_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


def summarize(runs: list[dict], device: torch.device) -> dict:
    """Mean and std over the seeds run so far: final accuracy, and time to each target among seeds reaching it."""
    accs = [r["final_accuracy"] for r in runs]
    summary = {
        "final_accuracy_mean": statistics.mean(accs),
        "final_accuracy_std": statistics.pstdev(accs),
        "train_seconds_mean": statistics.mean(r["train_seconds"] for r in runs),
        "targets": {},
    }
    for t in TARGETS:
        hit = [x for r in runs if (x := r["time_to"][f"{t:.2f}"]) is not None]
        summary["targets"][f"{t:.2f}"] = {
            "reached": len(hit),
            "of": len(runs),
            "seconds_mean": statistics.mean(hit) if hit else None,
            "seconds_std": statistics.pstdev(hit) if hit else None,
        }
    summary["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if device.type == "cuda":
        summary["gpu_max_allocated_mb"] = max(r["gpu_max_allocated_mb"] for r in runs)
    return summary


def write_json(
    out: Path, device: torch.device, base: cl.TrainConfig, summary: dict, runs: list[dict]
) -> None:
    record = {
        "machine": machine(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "config": base.to_dict(),
        "summary": summary,
        "runs": runs,
    }
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="fast")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's budget")
    p.add_argument("--model", default=None, help="override the recipe's model")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--amp", default=None, help="override the recipe's autocast: off, bf16, fp16")
    p.add_argument("--cuda-graphs", default=None, help="auto, on or off (auto: captured on a CUDA GPU)")
    p.add_argument("--augment-translate", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--limit", type=int, default=None, help="smoke runs only: cap each split")
    p.add_argument(
        "--data-dir",
        default=os.environ.get("CNNLAB_DATA_DIR") or str(ROOT.parent / "shared/data/fashion-mnist"),
    )
    p.add_argument("--out", default=None)
    p.add_argument(
        "--budget", type=float, default=None, help="wall-clock seconds after which no new seed starts"
    )
    args = p.parse_args()
    device = resolve_device(args.device)
    overrides = {
        k: v
        for k, v in {
            "epochs": args.epochs,
            "model": args.model,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "compile": args.compile,
            "amp": args.amp,
            "cuda_graphs": args.cuda_graphs,
            "augment_translate": args.augment_translate,
        }.items()
        if v is not None
    }
    base = cl.TrainConfig.from_recipe(args.recipe, device_type=device.type, **overrides).validate()
    data = cl.load_data("fashion_mnist", split=base.split, seed=0, data_dir=args.data_dir, limit=args.limit)
    print(f"Machine: {machine_line()}; device {device}, {torch.get_num_threads()} threads", flush=True)
    print(
        f"Recipe {args.recipe}: model {base.model}, {base.epochs} epochs, batch {base.batch_size}, {base.optimizer} lr {base.lr:g}, "
        f"{base.schedule}, amp {base.amp}; data {data.train.images.dtype} {tuple(data.train.images.shape)} on the device",
        flush=True,
    )
    out = Path(args.out or ROOT / f"benchmarks/results/speedrun-{args.recipe}-{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    runs: list[dict] = []
    start = time.perf_counter()
    for s in range(args.seeds):
        if args.budget is not None and runs and time.perf_counter() - start > args.budget:
            print(f"  budget of {args.budget:g} s spent: stopping after {len(runs)} seeds", flush=True)
            break
        cfg = cl.TrainConfig.from_dict({**base.to_dict(), "seed": s})
        t0 = time.perf_counter()
        r = one_seed(cfg, data, device)
        runs.append(r)
        print(
            f"  seed {s}: {r['final_accuracy']:.4f} after {r['train_seconds']:.1f} s of training "
            f"({time.perf_counter() - t0:.0f} s wall with per-epoch test probes)",
            flush=True,
        )
        summary = summarize(runs, device)
        write_json(
            out, device, base, summary, runs
        )  # after every seed: a run cut short keeps what it measured
    compile_s = [r["compile_seconds"] for r in runs if r["compile_seconds"] is not None]
    print(
        f"\nFashion-MNIST speedrun, recipe `{args.recipe}` ({base.model}, {base.epochs} epochs), {len(runs)} seeds. Machine: {machine_line()}; device {device}\n"
    )
    print(
        f"Final test accuracy: {100 * summary['final_accuracy_mean']:.2f}% ± {100 * summary['final_accuracy_std']:.2f} "
        f"after {summary['train_seconds_mean']:.1f} s of training"
        + (f" (+ {statistics.mean(compile_s):.1f} s compile warm-up)" if compile_s else "")
    )
    print("\n| target | seeds reaching it | time to target (mean ± std) |\n|---:|---:|---:|")
    for t, v in summary["targets"].items():
        when = f"{v['seconds_mean']:.1f} s ± {v['seconds_std']:.1f}" if v["seconds_mean"] is not None else "-"
        print(f"| {100 * float(t):.0f}% | {v['reached']}/{v['of']} | {when} |")
    print(
        f"\nPeak RSS {summary['peak_rss_mb']} MB"
        + (
            f"; GPU max allocated {summary['gpu_max_allocated_mb']} MB"
            if "gpu_max_allocated_mb" in summary
            else ""
        )
        + f"; training images held as {data.train.images.dtype} ({data.train.images.numel() / 2**20:.1f} MB)"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
