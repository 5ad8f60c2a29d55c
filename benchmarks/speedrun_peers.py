"""The fast recipe against its peers in one run on this machine: the same model (fastcnn) and recipe written
with PyTorch Lightning (`Trainer`) and with Keras (benchmarks/peers/*_fast.py). Prints seconds per epoch
and time to 91% test accuracy for each, and cnnlab's ratio to each peer.

    .venv/bin/pip install -r benchmarks/peers/requirements-lightning.txt   # once
    benchmarks/peers/setup_keras_env.sh                                    # once
    .venv/bin/python benchmarks/speedrun_peers.py [--epochs 4] [--peers cnnlab,Lightning]
    .venv/bin/python benchmarks/speedrun_peers.py --capability avx2   # all of them on AVX2 kernels

The table names the CPU's capabilities (AVX2/AVX512/AVX512-BF16/AMX), the kernels that ran and whether bf16 is
native. ``--capability avx2`` runs every trainer with ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` (how
an AVX512 machine stands in for an AVX2-only one; bf16 is then emulated, so all train in float32). A peer
whose environment is not installed is left out with a note.
"""

from __future__ import annotations

import argparse
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
CAPS = {"avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}}
PEERS = {
    "cnnlab": [sys.executable, str(ROOT / "benchmarks/speedrun.py"), "--recipe", "fast"],
    "Lightning": [sys.executable, str(ROOT / "benchmarks/peers/lightning_fast.py")],
    "Keras": [str(ROOT / "benchmarks/.venv-keras/bin/python"), str(ROOT / "benchmarks/peers/keras_fast.py")],
}


def bf16_recipe() -> bool:
    from cnnlab.recipes import get_recipe

    return get_recipe("fast").settings("cpu").get("amp") == "bf16"


def measure(name: str, seed: int, args, tmp: Path) -> dict:
    out = tmp / f"{name}-{seed}.json"
    cmd = [*PEERS[name], "--epochs", str(args.epochs), "--out", str(out)]
    cmd += ["--limit", str(args.limit)] if args.limit else []  # smoke runs only
    cmd += ["--data-dir", args.data_dir] if args.data_dir else []
    cmd += (
        ["--seeds", "1", "--device", "cpu"]
        if name == "cnnlab"
        else ["--seed", str(seed), "--threads", str(args.threads)]
    )
    if name != "cnnlab" and args.bf16:
        cmd.append("--bf16")  # the same precision as cnnlab's recipe on this CPU
    if name == "cnnlab" and seed:
        raise SystemExit("use --seeds with cnnlab's own speedrun for more seeds")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.update(CAPS.get(args.capability or "", {}))
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"{name} failed:\n{r.stderr[-3000:]}")
    d = json.loads(out.read_text())
    run = d["runs"][0] if name == "cnnlab" else d
    epochs = run["epochs"]
    times = [e["train_seconds"] for e in epochs]
    per_epoch = [b - a for a, b in zip([0.0, *times[:-1]], times, strict=True)]
    return {
        "s_per_epoch": statistics.median(per_epoch),
        "time_to_91": run["time_to"].get("0.91"),
        "final_accuracy": epochs[-1]["test_accuracy"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--peers", default=",".join(PEERS), help="which trainers, e.g. cnnlab,Lightning")
    p.add_argument("--capability", choices=sorted(CAPS), default=None, help="force lower CPU kernels")
    p.add_argument("--limit", type=int, default=None, help="smoke runs only: cap each split at N images")
    p.add_argument("--data-dir", default=None, help="the Fashion-MNIST folder (default: each script's own)")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    names = [n.strip() for n in args.peers.split(",") if n.strip()]
    if "cnnlab" not in names or any(n not in PEERS for n in names):
        raise SystemExit(f"--peers takes cnnlab and any of {', '.join(PEERS)}, comma-separated")
    os.environ.update(CAPS.get(args.capability or "", {}))  # the recipe's bf16 choice reads them too
    args.bf16 = bf16_recipe()
    print(f"Machine: {machine_line()}; {args.threads} threads", flush=True)
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            if not Path(PEERS[name][0]).exists():
                print(f"  {name}: not installed ({PEERS[name][0]}), left out", flush=True)
                continue
            res[name] = measure(name, 0, args, Path(tmp))
            print(f"  {name}: {res[name]}", flush=True)
    c = res["cnnlab"]
    print(
        f"\nFast recipe (fastcnn, {args.epochs} epochs, batch 256, Adam one-cycle, "
        f"{'bf16 mixed precision' if args.bf16 else 'float32'} for all), seed 0, each alone in turn. "
        f"Machine: {machine_line()}\n"
    )
    print(
        "| trainer | s/epoch | time to 91% | final accuracy | cnnlab / peer (epoch) | cnnlab / peer (to 91%) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in res.items():
        t91 = f"{r['time_to_91']:.1f} s" if r["time_to_91"] else "not reached"
        ratio_e = f"{c['s_per_epoch'] / r['s_per_epoch']:.2f}" if name != "cnnlab" else ""
        ratio_t = (
            f"{c['time_to_91'] / r['time_to_91']:.2f}"
            if name != "cnnlab" and c["time_to_91"] and r["time_to_91"]
            else ""
        )
        print(
            f"| {name} | {r['s_per_epoch']:.1f} | {t91} | {100 * r['final_accuracy']:.2f}% | {ratio_e} | {ratio_t} |"
        )
    name = "speedrun_peers" + (f"-{args.capability}" if args.capability else "")
    out = Path(args.out or ROOT / f"benchmarks/results/{name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"machine": machine(), "capability": args.capability, "epochs": args.epochs, "bf16": args.bf16}
    out.write_text(json.dumps({**record, "results": res}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
