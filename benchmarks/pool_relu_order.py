"""The training step of the fast recipe's model with its layers as written (conv -> BN -> ReLU -> max-pool)
and as `fit` runs them on the CPU (`cnnlab.engine.reorder.pool_before_relu` max-pool, then ReLU on a quarter of the values):
milliseconds per step, the two taking turns over many rounds, and whether losses and gradients agree bit
for bit.

    .venv/bin/python benchmarks/pool_relu_order.py                     # this CPU's kernels (bf16 where native)
    .venv/bin/python benchmarks/pool_relu_order.py --capability avx2   # AVX2 kernels, float32
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--capability", choices=sorted(CAPS), default=None, help="force lower CPU kernels")
    p.add_argument("--rounds", type=int, default=12, help="rounds, each timing both orders [12]")
    p.add_argument("--steps", type=int, default=10, help="timed steps per order and round [10]")
    args = p.parse_args()
    if args.capability:
        with_capability(args)
    import torch
    import torch.nn.functional as F
    from _machine import machine_line

    import cnnlab as cl
    from cnnlab.engine.reorder import pool_before_relu
    from cnnlab.engine.setup import autocast
    from cnnlab.hardware import native_bf16_cpu

    amp = "bf16" if native_bf16_cpu() else "off"
    x = torch.rand(256, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (256,))

    held = contextlib.ExitStack()  # the reordered model stays reordered until the end

    def trainer(reorder: bool):
        model = cl.create_model("fastcnn", seed=0).to(memory_format=torch.channels_last).train()
        assert held.enter_context(pool_before_relu(model, reorder)) or not reorder
        net = model
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7, fused=True)

        def step() -> torch.Tensor:
            with autocast(torch.device("cpu"), amp):
                loss = F.cross_entropy(net(x).float(), y, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss.detach()

        return model, step

    pair = {name: trainer(name == "pool, then ReLU") for name in ("as written", "pool, then ReLU")}
    losses = {}
    for name, (_, step) in pair.items():
        torch.manual_seed(1)
        losses[name] = [step() for _ in range(3)]
    same = all(torch.equal(a, b) for a, b in zip(*losses.values(), strict=True))
    (m0, _), (m1, _) = pair.values()
    same = same and all(torch.equal(a, b) for a, b in zip(m0.parameters(), m1.parameters(), strict=True))
    ms: dict[str, list[float]] = {name: [] for name in pair}
    for _ in range(args.rounds):
        for name, (_, step) in pair.items():
            step()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step()
            ms[name].append((time.perf_counter() - t0) * 1000 / args.steps)
    a, b = (statistics.median(v) for v in ms.values())
    print(
        f"fastcnn training step, batch 256, amp {amp}, {args.rounds} rounds taking turns. {machine_line()}\n"
    )
    print("| layer order | ms per step (median) | min | max |\n|---|---:|---:|---:|")
    for name, v in ms.items():
        print(f"| {name} | {statistics.median(v):.1f} | {min(v):.1f} | {max(v):.1f} |")
    print(f"\nreordered / as written: {b / a:.3f}; losses and weights after 3 steps bit-identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
