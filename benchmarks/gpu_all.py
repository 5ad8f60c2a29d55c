"""Every GPU measurement in one run, for a machine with one CUDA GPU (the issue's H100/H200 targets):

1. the `fast` recipe speedrun over 20 seeds (>= 94% in <= 2 s and >= 95% in <= 10 s of training),
2. the `best` recipe over 3 seeds (>= 96% within 10 minutes; moonshot 96.5%),
3. the same with torch.compile on, its warm-up reported beside the timed run.

    python benchmarks/gpu_all.py [--quick]      # --quick: 2 seeds each, for a smoke test
Each part writes its own JSON (benchmarks/results/speedrun-*.json); a summary goes to
benchmarks/results/gpu_all.json (or $OUT/gpu_all.json when OUT is set, for a remote machine).
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    import torch

    if not torch.cuda.is_available():
        raise SystemExit(
            "benchmarks/gpu_all.py needs a CUDA GPU; on a CPU run benchmarks/speedrun.py instead"
        )
    out_dir = Path(os.environ.get("OUT") or ROOT / "benchmarks/results")
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = [
        ("fast", ["--recipe", "fast", "--seeds", "2" if args.quick else "20"]),
        ("fast-compile", ["--recipe", "fast", "--seeds", "2" if args.quick else "5", "--compile"]),
        (
            "best",
            ["--recipe", "best", "--seeds", "1" if args.quick else "3"]
            + (["--epochs", "5"] if args.quick else []),
        ),
    ]
    summary = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "parts": {}}
    for name, extra in parts:
        out = out_dir / f"speedrun-{name}-cuda.json"
        t0 = time.perf_counter()
        r = subprocess.run(
            [
                sys.executable,
                str(ROOT / "benchmarks/speedrun.py"),
                "--device",
                "cuda",
                "--out",
                str(out),
                *extra,
            ]
        )
        summary["parts"][name] = {
            "returncode": r.returncode,
            "wall_seconds": round(time.perf_counter() - t0, 1),
            "summary": json.loads(out.read_text())["summary"] if out.exists() else None,
        }
        (out_dir / "gpu_all.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
