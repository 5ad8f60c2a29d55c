"""The training step of the fast recipe's model (conv -> BN -> ReLU -> max-pool, twice) as written and with
the rewrites `fit` makes on the CPU (`cnnlab.engine.rewrite`): each max-pool before its ReLU (exact), then
also the first batch norm folded into its convolution (the same computation to float rounding).
Milliseconds per step, the variants taking turns over many rounds, and how far their losses and weights
are from the step as written after a few steps.

    .venv/bin/python benchmarks/step_rewrites.py                     # this CPU's kernels (bf16 where native)
    .venv/bin/python benchmarks/step_rewrites.py --capability avx2   # AVX2 kernels, float32
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from profile_phases import CAPS, with_capability  # noqa: E402

VARIANTS = {"as written": (False, False), "pool before ReLU": (False, True), "and BN folded": (True, True)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--capability", choices=sorted(CAPS), default=None, help="force lower CPU kernels")
    p.add_argument("--rounds", type=int, default=12, help="rounds, each timing every variant [12]")
    p.add_argument("--steps", type=int, default=10, help="timed steps per variant and round [10]")
    args = p.parse_args()
    if args.capability:
        with_capability(args)
    import torch
    import torch.nn.functional as F
    from _machine import machine_line

    import cnnlab as cl
    from cnnlab.engine.rewrite import fold_batch_norm, pool_before_relu
    from cnnlab.engine.setup import autocast
    from cnnlab.hardware import native_bf16_cpu

    amp = "bf16" if native_bf16_cpu() else "off"
    x = torch.rand(256, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (256,))
    held = contextlib.ExitStack()  # each variant's model stays rewritten until the end

    def trainer(fold: bool, swap: bool):
        model = cl.create_model("fastcnn", seed=0).to(memory_format=torch.channels_last).train()
        # as step_rewrites does: the pools first, so the folded pair's pool follows it
        assert bool(held.enter_context(pool_before_relu(model, swap))) == swap
        assert bool(held.enter_context(fold_batch_norm(model, fold))) == fold
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7, fused=True)

        def step() -> torch.Tensor:
            with autocast(torch.device("cpu"), amp):
                loss = F.cross_entropy(model(x).float(), y, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss.detach()

        return model, step

    runs = {name: trainer(*how) for name, how in VARIANTS.items()}
    losses = {}
    for name, (_, step) in runs.items():
        torch.manual_seed(1)
        losses[name] = torch.stack([step() for _ in range(3)])
    base_model, _ = runs["as written"]
    ms: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, (_, step) in runs.items():
            step()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step()
            ms[name].append((time.perf_counter() - t0) * 1000 / args.steps)
    base = statistics.median(ms["as written"])
    print(
        f"fastcnn training step, batch 256, amp {amp}, {args.rounds} rounds taking turns. {machine_line()}\n"
    )
    print(
        "| step | ms per step (median) | min | max | / as written | losses after 3 steps, largest difference |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    exact = True
    for name, v in ms.items():
        diff = float((losses[name] - losses["as written"]).abs().max())
        exact = exact and (diff == 0 or VARIANTS[name][0])
        print(
            f"| {name} | {statistics.median(v):.1f} | {min(v):.1f} | {max(v):.1f} | "
            f"{statistics.median(v) / base:.3f} | {diff:.2e} |"
        )
    print(f"\npool before ReLU bit-identical to the step as written: {exact}")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
