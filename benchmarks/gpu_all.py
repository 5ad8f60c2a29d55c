"""Every GPU measurement in one run, sized to fit a lent machine's lease (one command of at most 10 minutes):

1. ``fast``: the `fast` recipe speedrun over 20 seeds (targets: >= 94% in <= 2 s, >= 95% in <= 10 s of training),
2. ``best``: the `best` recipe, one seed (>= 96% within 10 minutes; moonshot 96.5%),
3. ``compile``: the `fast` recipe with torch.compile, its warm-up reported beside the timed run.

Parts run in that order (most important first), each in its own process, within one wall-clock budget
(``--budget``, default 540 s): a part gets what the earlier ones left, no new seed starts once its share is
spent, and every speedrun rewrites its JSON after each seed, so a part cut short keeps what it measured.
A summary goes to ``gpu_all.json`` beside the parts' JSON, in $OUT when set (the device machine's
output folder), else benchmarks/results/.

On a lent GPU machine (its python3 has CUDA torch; cnnlab runs from the source tree and reads the data
carried with the working tree), from the repository root::

    mkdir -p .devdata && cp -r ../shared/data/fashion-mnist .devdata/   # here, once; .devdata is ignored
    # then run there, carrying .devdata:
    PYTHONPATH=src python3 benchmarks/gpu_all.py --data-dir .devdata/fashion-mnist

Smoke test of the plumbing on a CPU (tiny subset, two parts)::

    .venv/bin/python benchmarks/gpu_all.py --device cpu --quick --limit 600 --parts fast,best
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> (speedrun.py arguments, seeds in a full run, seeds with --quick)
PARTS = {
    "fast": (["--recipe", "fast"], 20, 2),
    "best": (["--recipe", "best"], 1, 1),
    "compile": (["--recipe", "fast", "--compile"], 5, 1),
}
RESERVE = {"fast": 0.45, "best": 0.85, "compile": 1.0}  # share of the remaining budget a part may use


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=540.0, help="wall-clock seconds for all parts together")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, from {', '.join(PARTS)}")
    p.add_argument("--quick", action="store_true", help="fewer seeds (and 2 epochs of `best`): a smoke test")
    p.add_argument("--device", default="cuda", help="cuda (the measurement) or cpu (a smoke test only)")
    p.add_argument("--limit", type=int, default=None, help="smoke tests only: cap each data split")
    p.add_argument(
        "--data-dir", default=None, help="Fashion-MNIST folder (else $CNNLAB_DATA_DIR or ../shared)"
    )
    args = p.parse_args()
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    unknown = [x for x in parts if x not in PARTS]
    if unknown:
        raise SystemExit(f"Unknown part(s) {', '.join(unknown)}. Available: {', '.join(PARTS)}")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu_all.py needs a CUDA GPU (or --device cpu for a smoke test)")
    out_dir = Path(os.environ.get("OUT") or ROOT / "benchmarks/results")
    out_dir.mkdir(parents=True, exist_ok=True)
    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    summary = {"device": device_name, "torch": torch.__version__, "budget_seconds": args.budget, "parts": {}}
    start = time.perf_counter()
    for name in parts:
        extra, seeds, quick_seeds = PARTS[name]
        left = args.budget - (time.perf_counter() - start)
        if left < 30:
            summary["parts"][name] = {"skipped": f"budget spent ({left:.0f} s left)"}
            continue
        share = left * RESERVE[name]
        out = out_dir / f"speedrun-{name}-{args.device}.json"
        out.unlink(missing_ok=True)
        cmd = [
            sys.executable,
            str(ROOT / "benchmarks/speedrun.py"),
            "--device",
            args.device,
            "--out",
            str(out),
        ]
        cmd += [*extra, "--seeds", str(quick_seeds if args.quick else seeds), "--budget", f"{share:.0f}"]
        if args.quick and name == "best":
            cmd += ["--epochs", "2"]
        if args.limit:
            cmd += ["--limit", str(args.limit)]
        if args.data_dir:
            cmd += ["--data-dir", args.data_dir]
        print(f"== {name}: {' '.join(cmd[1:])} (at most {left:.0f} s)", flush=True)
        t0 = time.perf_counter()
        try:
            rc = subprocess.run(cmd, timeout=left).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        record = json.loads(out.read_text()) if out.exists() else None
        summary["parts"][name] = {
            "returncode": rc,
            "wall_seconds": round(time.perf_counter() - t0, 1),
            "seeds": len(record["runs"]) if record else 0,
            "summary": record["summary"] if record else None,
        }
        (out_dir / "gpu_all.json").write_text(json.dumps(summary, indent=2))
    print_table(summary)
    (out_dir / "gpu_all.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {out_dir / 'gpu_all.json'}")


def print_table(summary: dict) -> None:
    print(f"\nGPU measurements on {summary['device']} (torch {summary['torch']})\n")
    print(
        "| part | seeds | final accuracy | 94% (reached, s) | 95% (reached, s) | 96% (reached, s) | GPU MB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, part in summary["parts"].items():
        s = part.get("summary")
        if not s:
            print(
                f"| {name} | - | {part.get('skipped') or 'failed: ' + str(part.get('returncode'))} | | | | |"
            )
            continue
        cells = []
        for t in ("0.94", "0.95", "0.96"):
            v = s["targets"][t]
            cells.append(
                f"{v['reached']}/{v['of']}, {v['seconds_mean']:.1f}"
                if v["seconds_mean"] is not None
                else f"0/{v['of']}"
            )
        acc = f"{100 * s['final_accuracy_mean']:.2f} ± {100 * s['final_accuracy_std']:.2f}"
        print(
            f"| {name} | {part['seeds']} | {acc} | {' | '.join(cells)} | {s.get('gpu_max_allocated_mb', '-')} |"
        )


if __name__ == "__main__":
    main()
