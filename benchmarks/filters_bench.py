"""Benchmark the filter playground against scipy.signal.convolve2d, in the same run, on this machine.

Measures:
1. speed on a 12-megapixel photo (4000x3000, the bundled cat resized) with 3x3, 15x15 and 31x31 random
   kernels, in float32 (what `load_image` returns) and float64: cnnlab best of 3 against scipy (one run;
   it takes seconds), the ratio, and the largest difference relative to the largest output value;
2. peak extra memory of `apply` on a 12 MP colour photo (3x3 direct engine and 15x15 FFT engine),
   counted by tracemalloc (numpy allocations) and as the growth of the process's peak RSS;
3. cold start: `cnnlab filters` writing the tutorial's four figures, as a fresh subprocess.

Prints a table naming the machine and writes benchmarks/results/filters.json.
Run: .venv/bin/python benchmarks/filters_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import numpy as np
import scipy
import scipy.signal
from _machine import machine  # noqa: E402

from cnnlab.filters import apply, choose_method, sample_image

RESULTS = Path(__file__).resolve().parent / "results" / "filters.json"
SIZE = (3000, 4000)  # 12 megapixels, a typical phone photo


def photo(gray: bool) -> np.ndarray:
    """The bundled cat, resized to 12 MP (a real photo's statistics, not noise)."""
    from PIL import Image

    rgb = (sample_image(gray=False) * 255).astype(np.uint8)
    big = Image.fromarray(rgb).resize((SIZE[1], SIZE[0]), Image.Resampling.BICUBIC)
    if gray:
        big = big.convert("L")
    return np.asarray(big, dtype=np.float32) / np.float32(255)


def best_of(fn, n: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(n):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def speed(quick: bool) -> list[dict]:
    rows = []
    gray32 = photo(gray=True)
    rng = np.random.default_rng(0)
    sizes = (3, 15) if quick else (3, 15, 31)
    for dtype in (np.float32, np.float64):
        img = gray32.astype(dtype)
        for k in sizes:
            kernel = rng.standard_normal((k, k)).astype(dtype)
            t_scipy, ref = best_of(
                lambda img=img, kernel=kernel: scipy.signal.convolve2d(
                    img, kernel, boundary="symm", mode="same"
                ),
                1,
            )
            t_ours, ours = best_of(lambda img=img, kernel=kernel: apply(img, kernel), 3)
            rel = float(np.abs(ours - ref).max() / np.abs(ref).max())
            rows.append(
                {
                    "dtype": np.dtype(dtype).name,
                    "kernel": f"{k}x{k}",
                    "engine": choose_method((k, k)),
                    "scipy_s": round(t_scipy, 4),
                    "cnnlab_s": round(t_ours, 4),
                    "speedup": round(t_scipy / t_ours, 1),
                    "max_rel_diff": rel,
                }
            )
            print(f"  {rows[-1]}", file=sys.stderr)
    return rows


def _rss_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB -> MiB
    return float("nan")


def memory_child(kernel_size: int) -> dict:
    """Run in a fresh process: peak extra memory of one `apply` on a 12 MP colour photo."""
    color = photo(gray=False)  # (3000, 4000, 3) float32, 137 MiB
    base_mb = color.nbytes / 2**20
    kernel = (
        "outline" if kernel_size == 3 else np.outer(*(2 * [np.exp(-(np.linspace(-2, 2, kernel_size) ** 2))]))
    )
    apply(color[:64, :64], kernel)  # import and warm up the engine outside the measurement
    rss_before = _rss_mib("VmRSS")
    try:  # reset the peak-RSS counter (Linux) so the photo's own construction does not hide our peak
        Path("/proc/self/clear_refs").write_text("5")
        hwm_reset = True
    except OSError:
        hwm_reset = False
    tracemalloc.start()
    out = apply(color, kernel)
    peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    rss_growth = _rss_mib("VmHWM") - rss_before if hwm_reset else float("nan")
    return {
        "kernel": "outline 3x3" if kernel_size == 3 else f"gaussian {kernel_size}x{kernel_size}",
        "engine": choose_method((kernel_size, kernel_size)),
        "image_mb": round(base_mb, 1),
        "peak_extra_mb": round(peak_mb, 1),
        "peak_extra_x": round(peak_mb / base_mb, 2),
        "rss_peak_growth_mb": round(rss_growth, 1),
        "rss_peak_growth_x": round(rss_growth / base_mb, 2),
        "output_mb": round(out.nbytes / 2**20, 1),
    }


def memory() -> list[dict]:
    rows = []
    for k in (3, 15):
        proc = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(k)], capture_output=True, text=True, check=True
        )
        rows.append(json.loads(proc.stdout))
        print(f"  {rows[-1]}", file=sys.stderr)
    return rows


def cold_start(runs: int) -> dict:
    exe = Path(sys.executable).with_name("cnnlab")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "cnnlab"]
    times = []
    for _ in range(runs):
        out = tempfile.mkdtemp(prefix="cnnlab-bench-")
        start = time.perf_counter()
        proc = subprocess.run([*cmd, "filters", "--out", out], capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        figures = sorted(
            p.name for p in Path(out, "chelsea").glob("*.png") if not p.name.endswith("_map.png")
        )
        shutil.rmtree(out, ignore_errors=True)
        if proc.returncode != 0:
            raise SystemExit(f"cnnlab filters failed: {proc.stderr.strip()}")
    return {
        "command": "cnnlab filters (tutorial's four figures + grid)",
        "figures": figures,
        "first_s": round(times[0], 2),
        "median_s": round(statistics.median(times), 2),
        "runs": len(times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip 31x31 (scipy takes ~10 s for it)")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child)))
        return
    from rich.console import Console
    from rich.table import Table

    info = machine(numpy=np.__version__, scipy=scipy.__version__)
    print("speed...", file=sys.stderr)
    speed_rows = speed(args.quick)
    print("memory...", file=sys.stderr)
    mem_rows = memory()
    print("cold start...", file=sys.stderr)
    cold = cold_start(3)

    console = Console(width=120)
    console.print(
        f"[bold]cnnlab filters benchmark[/] on {info['cpu']}, {info['cores']} cores; "
        f"Python {info['python']}, numpy {info['numpy']}, scipy {info['scipy']}, cnnlab {info['cnnlab']}"
    )
    t = Table(title=f"{SIZE[1]}x{SIZE[0]} (12 MP) grayscale photo, boundary symm, mode same")
    for col in ("dtype", "kernel", "engine", "scipy convolve2d s", "cnnlab s", "speedup", "max rel diff"):
        t.add_column(col, justify="left" if col in ("dtype", "kernel", "engine") else "right")
    for r in speed_rows:
        t.add_row(
            r["dtype"],
            r["kernel"],
            r["engine"],
            f"{r['scipy_s']:.3f}",
            f"{r['cnnlab_s']:.3f}",
            f"{r['speedup']:.1f}x",
            f"{r['max_rel_diff']:.1e}",
        )
    console.print(t)
    m = Table(title=f"Peak extra memory, 12 MP colour photo (float32, {mem_rows[0]['image_mb']:.0f} MiB)")
    for col in (
        "kernel",
        "engine",
        "peak extra (tracemalloc)",
        "x image",
        "peak RSS growth",
        "x image ",
        "of which output",
    ):
        m.add_column(col, justify="left" if col in ("kernel", "engine") else "right")
    for r in mem_rows:
        m.add_row(
            r["kernel"],
            r["engine"],
            f"{r['peak_extra_mb']:.0f} MiB",
            f"{r['peak_extra_x']:.2f}x",
            f"{r['rss_peak_growth_mb']:.0f} MiB",
            f"{r['rss_peak_growth_x']:.2f}x",
            f"{r['output_mb']:.0f} MiB",
        )
    console.print(m)
    console.print(
        f"cold start, {cold['command']}: first {cold['first_s']:.2f} s, median of {cold['runs']} "
        f"{cold['median_s']:.2f} s ({', '.join(cold['figures'])})"
    )

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(
        json.dumps({"machine": info, "speed": speed_rows, "memory": mem_rows, "cold_start": cold}, indent=1)
    )
    os.replace(tmp, RESULTS)
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
