"""The fast recipe against its peers in one run on this machine: the same model (fastcnn) and recipe written
with PyTorch Lightning (`Trainer`) and with Keras (benchmarks/peers/*_fast.py). Prints seconds per epoch
and time to 91% test accuracy for each, and cnnlab's ratio to each peer.

    .venv/bin/pip install -r benchmarks/peers/requirements-lightning.txt   # once
    benchmarks/peers/setup_keras_env.sh                                    # once
    .venv/bin/python benchmarks/speedrun_peers.py [--seeds 1] [--epochs 4]
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
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/speedrun_peers.json"))
    args = p.parse_args()
    args.bf16 = bf16_recipe()
    print(f"Machine: {machine_line()}; {args.threads} threads", flush=True)
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in PEERS:
            res[name] = measure(name, 0, args, Path(tmp))
            print(f"  {name}: {res[name]}", flush=True)
    c = res["cnnlab"]
    print(
        f"\nFast recipe (fastcnn, {args.epochs} epochs, batch 256, Adam one-cycle, "
        f"{'bf16 mixed precision' if args.bf16 else 'float32'} for all three), seed 0. Machine: {machine_line()}\n"
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
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"machine": machine(), "epochs": args.epochs, "bf16": args.bf16, "results": res}, indent=2)
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
