"""What checkpointing costs the `fast` recipe's training run (fit): with no checkpoints, with the default
policy (every 1,000 steps and at each epoch's end, keep 3) and with an aggressive one (every 100 steps),
interleaved over repeats; plus the size of one checkpoint and the time to verify and load it.

The overhead is measured directly: the time spent inside the checkpointer's save() (capture, safetensors +
JSON, temp folder, fsync of each file, rename, fsync of the folder, sha256 manifest, pruning) relative to
the rest of the run; checkpointing adds nothing else to a step but two integer comparisons. The wall-time
medians of whole runs are printed beside it, but on a shared machine their spread swamps the effect.

    .venv/bin/python benchmarks/checkpoint_overhead.py --epochs 1 --repeats 3          # CPU (the recipe's 4 epochs by default)
    python benchmarks/checkpoint_overhead.py --device cuda                             # the GPU recipe
Writes benchmarks/results/checkpoint.json and prints a table naming the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine, machine_line  # noqa: E402

import cnnlab as cl  # noqa: E402
from cnnlab.engine import EarlyStopping, resolve_device  # noqa: E402
from cnnlab.engine.checkpoint import list_checkpoints, load_checkpoint  # noqa: E402
from cnnlab.engine.snapshot import Checkpointer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"none": None, "default (1000 steps + epochs)": 1000, "every 100 steps": 100}


class TimedCheckpointer(Checkpointer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seconds: list[float] = []

    def save(self, *args, **kwargs):
        t0 = time.perf_counter()
        path = super().save(*args, **kwargs)
        self.seconds.append(time.perf_counter() - t0)
        return path


def train_once(cfg: cl.TrainConfig, data, device, every: int | None, folder: Path) -> dict:
    """The fit() call `cnnlab train` makes for this config; checkpoints to ``folder`` unless every is None."""
    model = cl.build_model(cfg, data)
    ckpt = None
    if every is not None:
        ckpt = TimedCheckpointer(folder, every=every, keep=cfg.keep, meta={"config": cfg.to_dict()})
    t0 = time.perf_counter()
    cl.fit(
        model,
        data,
        **cfg.fit_options(),
        callbacks=[EarlyStopping(cfg.monitor, patience=cfg.patience)],
        device=device,
        progress=False,
        checkpoints=ckpt,
    )
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "saves": len(ckpt.seconds) if ckpt else 0, "save_s": ckpt.seconds if ckpt else []}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--epochs", type=int, default=None, help="override the recipe's epochs (fewer on a busy machine)"
    )
    ap.add_argument("--limit", type=int, default=None, help="cap the training split (quick checks only)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "fashion-mnist"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "checkpoint.json"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cfg = cl.TrainConfig.from_recipe("fast", device_type=device.type)
    if args.epochs:
        cfg.epochs = args.epochs
    data = cl.load_data(
        "fashion_mnist", split=cfg.split, seed=cfg.seed, data_dir=args.data_dir, limit=args.limit
    )
    steps = cfg.epochs * -(-len(data.train) // cfg.batch_size)
    print(
        f"{machine_line()}\nfast recipe on {device}: {cfg.model}, {len(data.train):,} images, {steps} steps"
    )

    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        train_once(cfg, data, device, None, Path(tmp) / "warm")  # warm-up, not timed
        for r in range(args.repeats):  # interleaved, so drifting machine load hits every variant alike
            for name, every in VARIANTS.items():
                folder = Path(tmp) / f"{r}-{len(runs[name])}-{every}"
                runs[name].append(train_once(cfg, data, device, every, folder))
                print(
                    f"  repeat {r + 1} {name}: {runs[name][-1]['wall_s']:.1f} s, {runs[name][-1]['saves']} saves"
                )
        newest = list_checkpoints(folder)[0]
        size = sum(f.stat().st_size for f in newest.iterdir())
        t0 = time.perf_counter()
        load_checkpoint(newest)
        verify_s = time.perf_counter() - t0

    base = statistics.median(x["wall_s"] for x in runs["none"])
    rows = []
    for name, xs in runs.items():
        wall = statistics.median(x["wall_s"] for x in xs)
        saves = [s for x in xs for s in x["save_s"]]
        rows.append(
            {
                "variant": name,
                "every_steps": VARIANTS[name],
                "wall_s_median": round(wall, 2),
                "wall_s": [round(x["wall_s"], 2) for x in xs],
                "saves_per_run": xs[0]["saves"],
                "save_ms_median": round(1000 * statistics.median(saves), 1) if saves else None,
                # the overhead: time inside save() relative to the rest of the run
                "overhead_pct": round(100 * sum(saves) / (sum(x["wall_s"] for x in xs) - sum(saves)), 2),
                "wall_vs_none_pct": round(100 * (wall / base - 1), 2),  # noisy on a shared machine
            }
        )
    print("\n| checkpoints | saves/run | ms/save | overhead (time in save) | run wall s, median | vs none |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        ms = f"{r['save_ms_median']:.0f}" if r["save_ms_median"] else "-"
        print(
            f"| {r['variant']} | {r['saves_per_run']} | {ms} | {r['overhead_pct']:.2f}% | "
            f"{r['wall_s_median']:.1f} | {r['wall_vs_none_pct']:+.1f}% |"
        )
    print(f"\nOne checkpoint: {size / 1e6:.2f} MB; verify + load: {1000 * verify_s:.0f} ms. {machine_line()}")
    result = {
        "machine": machine(),
        "device": str(device),
        "recipe": "fast",
        "model": cfg.model,
        "epochs": cfg.epochs,
        "train_images": len(data.train),
        "steps": steps,
        "repeats": args.repeats,
        "checkpoint_mb": round(size / 1e6, 3),
        "verify_load_ms": round(1000 * verify_s, 1),
        "load_average_1min": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],  # start, end
        "variants": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
