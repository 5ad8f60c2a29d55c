"""Every GPU measurement in one run, sized to fit a lent machine's lease (one command of at most 10 minutes).

Parts, most important first, each in its own process(es), within one wall-clock budget (``--budget``,
default 510 s): a part gets a share of what the earlier ones left, no new seed starts once its share is
spent, and every part writes its JSON as it goes, so a part cut short keeps what it measured.

1. ``fast``: cnnlab's `fast` recipe with the graph-captured step (``--cuda-graphs auto``) over 10 seeds
   (targets: >= 94% in <= 2 s, >= 95% in <= 10 s of training);
2. ``eager``: the same recipe with ``--cuda-graphs off`` (what the graph buys);
3. ``plain``: the same model and recipe as a plain eager PyTorch script (benchmarks/peers/gpu_plain.py);
4. ``lightning``: the same in PyTorch Lightning, ``precision="bf16-mixed"`` (benchmarks/peers/gpu_lightning.py);
5. ``resume``: a run killed with SIGKILL and resumed, against an uninterrupted one (benchmarks/resume_check.py);
6. ``best``: the `best` recipe, one seed (>= 96% within 10 minutes; moonshot 96.5%);
7. ``compile``: the `fast` recipe with torch.compile, its warm-up reported beside the timed run.

A summary goes to ``gpu_all.json`` (rewritten after every part) beside the parts' JSON, in $OUT when set
(the device machine's output folder), else benchmarks/results/; the table printed at the end has the
ratios cnnlab / peer of the time to 94%.

On a lent GPU machine (its python3 has CUDA torch and Lightning; cnnlab runs from the source tree and reads
the data carried with the working tree), from the repository root::

    mkdir -p .devdata && cp -r ../shared/data/fashion-mnist .devdata/   # here, once; .devdata is ignored
    # then run there, carrying .devdata:
    PYTHONPATH=src python3 benchmarks/gpu_all.py --data-dir .devdata/fashion-mnist

Smoke test of the plumbing on a CPU (tiny subset)::

    .venv/bin/python benchmarks/gpu_all.py --device cpu --quick --limit 600 --parts fast,plain,resume
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEEDRUN = [str(ROOT / "benchmarks/speedrun.py")]

# name -> (script and arguments, seeds in a full run, seeds with --quick, share of the remaining budget)
PARTS = {
    "fast": ([*SPEEDRUN, "--recipe", "fast"], 10, 2, 0.35),
    "eager": ([*SPEEDRUN, "--recipe", "fast", "--cuda-graphs", "off"], 2, 1, 0.2),
    "plain": ([str(ROOT / "benchmarks/peers/gpu_plain.py")], 2, 1, 0.3),
    "lightning": ([str(ROOT / "benchmarks/peers/gpu_lightning.py")], 2, 1, 0.4),
    "resume": ([str(ROOT / "benchmarks/resume_check.py")], 1, 1, 0.4),
    "best": ([*SPEEDRUN, "--recipe", "best"], 1, 1, 0.85),
    "compile": ([*SPEEDRUN, "--recipe", "fast", "--compile"], 2, 1, 1.0),
}
PEERS = ("plain", "lightning")


def part_command(
    name: str, args: argparse.Namespace, out: Path, seed: int | None, budget: float
) -> list[str]:
    script, seeds, quick_seeds, _ = PARTS[name]
    cmd = [sys.executable, *script, "--device", args.device, "--out", str(out)]
    if name in PEERS:
        cmd += ["--seed", str(seed)] + (["--epochs", "2"] if args.quick else [])
    elif name == "resume":
        cmd += ["--limit", str(args.limit or 6000)] + (
            ["--epochs", "2", "--every", "1"] if args.quick else []
        )
    else:
        cmd += ["--seeds", str(quick_seeds if args.quick else seeds), "--budget", f"{budget:.0f}"]
        cmd += ["--epochs", "2"] if args.quick else []  # a smoke test: two epochs of each recipe
    if args.limit and name != "resume":
        cmd += ["--limit", str(args.limit)]
    return cmd + (["--data-dir", args.data_dir] if args.data_dir else [])


def run_part(name: str, args: argparse.Namespace, out_dir: Path, left: float) -> dict:
    """Run one part (every seed of a peer in its own process) and summarise what it wrote."""
    share = left * PARTS[name][3]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0, records, rc = time.perf_counter(), [], 0
    seeds = range(PARTS[name][2] if args.quick else PARTS[name][1]) if name in PEERS else [None]
    for seed in seeds:
        spent = time.perf_counter() - t0
        if records and spent > share:
            break
        out = out_dir / (f"{name}-{args.device}" + (f"-seed{seed}" if seed is not None else "") + ".json")
        out.unlink(missing_ok=True)
        cmd = part_command(name, args, out, seed, share - spent)
        print(f"== {name}: {' '.join(cmd[1:])} (at most {left - spent:.0f} s)", flush=True)
        try:
            rc = subprocess.run(cmd, timeout=max(left - spent, 1), env=env).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        if out.exists():
            records.append(json.loads(out.read_text()))
    return {"returncode": rc, "wall_seconds": round(time.perf_counter() - t0, 1), **summarize(name, records)}


def summarize(name: str, records: list[dict]) -> dict:
    if not records:
        return {"seeds": 0}
    if name == "resume":
        return {"seeds": 1, "result": records[0]}
    if name in PEERS:
        finals = [r["epochs"][-1]["test_accuracy"] for r in records]
        to94 = [r["time_to"]["0.94"] for r in records if r["time_to"].get("0.94") is not None]
        return {
            "seeds": len(records),
            "final_accuracy_mean": statistics.mean(finals),
            "to94_reached": len(to94),
            "to94_seconds_mean": statistics.mean(to94) if to94 else None,
            "gpu_max_allocated_mb": max((r.get("gpu_max_allocated_mb") or 0) for r in records) or None,
        }
    record = records[0]
    return {"seeds": len(record["runs"]), "summary": record["summary"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=510.0, help="wall-clock seconds for all parts together")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, from {', '.join(PARTS)}")
    p.add_argument("--quick", action="store_true", help="fewer seeds and epochs: a smoke test")
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
        left = args.budget - (time.perf_counter() - start)
        if left < 30:
            summary["parts"][name] = {"skipped": f"budget spent ({left:.0f} s left)"}
        else:
            summary["parts"][name] = run_part(name, args, out_dir, left)
        summary["host_max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
        (out_dir / "gpu_all.json").write_text(json.dumps(summary, indent=2))
    print_table(summary)
    print(f"wrote {out_dir / 'gpu_all.json'}")


def _to94(part: dict) -> float | None:
    if "summary" in part:
        return part["summary"]["targets"]["0.94"]["seconds_mean"]
    return part.get("to94_seconds_mean")


def print_table(summary: dict) -> None:
    print(f"\nGPU measurements on {summary['device']} (torch {summary['torch']})\n")
    print("| part | seeds | final accuracy | 94% (reached, s) | 95% (reached, s) | GPU MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, part in summary["parts"].items():
        if "skipped" in part or not part.get("seeds"):
            print(f"| {name} | - | {part.get('skipped') or 'failed: ' + str(part.get('returncode'))} | | | |")
        elif name == "resume":
            r = part["result"]
            print(
                f"| resume | 1 | weights bit-identical: {r.get('weights_bit_identical')} (killed at {r.get('killed_at')}) | | | |"
            )
        elif "summary" in part:
            s = part["summary"]
            cells = [
                f"{v['reached']}/{v['of']}, {v['seconds_mean']:.1f}"
                if v["seconds_mean"] is not None
                else f"0/{v['of']}"
                for v in (s["targets"][t] for t in ("0.94", "0.95"))
            ]
            acc = f"{100 * s['final_accuracy_mean']:.2f} ± {100 * s['final_accuracy_std']:.2f}"
            print(
                f"| {name} | {part['seeds']} | {acc} | {' | '.join(cells)} | {s.get('gpu_max_allocated_mb', '-')} |"
            )
        else:
            to94 = (
                f"{part['to94_reached']}/{part['seeds']}, {part['to94_seconds_mean']:.1f}"
                if part["to94_seconds_mean"]
                else f"0/{part['seeds']}"
            )
            print(
                f"| {name} | {part['seeds']} | {100 * part['final_accuracy_mean']:.2f} | {to94} | | {part['gpu_max_allocated_mb'] or '-'} |"
            )
    fast = _to94(summary["parts"].get("fast", {}))
    for peer in PEERS:
        theirs = _to94(summary["parts"].get(peer, {}))
        if fast and theirs:
            print(f"cnnlab / {peer}, time to 94%: {fast / theirs:.2f}")
    print(f"host peak RSS of the parts: {summary.get('host_max_rss_mb')} MB")


if __name__ == "__main__":
    main()
