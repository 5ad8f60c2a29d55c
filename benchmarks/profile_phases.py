"""Where one training epoch's time goes, phase by phase, for any recipe: gather, augmentation, forward,
backward, optimizer, callbacks, guard, progress, evaluation, and the loop's own remainder.

It runs the real path — ``cl.fit`` on the recipe's config, with validation and the progress display as
``cnnlab train`` has them — inside a ``cnnlab.engine.phases.PhaseTimer``, which times the engine's own
phase marks (no copy of the loop). The recipe's full schedule is set up and the run stops after
``--epochs`` epochs (default 1). On a GPU the timer synchronises at every mark; nothing else is added.

    .venv/bin/python benchmarks/profile_phases.py                          # fast recipe, one epoch
    .venv/bin/python benchmarks/profile_phases.py --capability avx2         # AVX2 kernels on an AVX512 CPU
    .venv/bin/python benchmarks/profile_phases.py --recipe best --limit 5000
    .venv/bin/python benchmarks/profile_phases.py --set compile=true --set channels_last=false

``--capability avx2`` re-runs the script with ``ATEN_CPU_CAPABILITY=avx2`` and ``ONEDNN_MAX_CPU_ISA=AVX2``
(both ATen's and oneDNN's kernels at AVX2, bf16 then emulated, so the recipes train in float32): how an
AVX512 machine stands in for the AVX2-only laptops and cloud CPUs most users have. The machine line says
which kernels ran. Writes benchmarks/results/profile_phases-<recipe>-<device>[-<capability>].json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAPS = {"avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="fast")
    p.add_argument("--epochs", type=int, default=1, help="epochs profiled (the recipe's schedule is kept)")
    p.add_argument("--limit", type=int, default=None, help="cap each split at N images (a shorter epoch)")
    p.add_argument("--device", default="auto")
    p.add_argument("--capability", choices=sorted(CAPS), default=None, help="force lower CPU kernels")
    p.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE", help="a training option")
    p.add_argument("--no-progress", action="store_true", help="train without the progress display")
    p.add_argument(
        "--data-dir",
        default=os.environ.get("CNNLAB_DATA_DIR") or str(ROOT.parent / "shared/data/fashion-mnist"),
    )
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


def with_capability(args: argparse.Namespace) -> None:
    """Re-run this script with the capability's environment: ATen reads it when torch is imported."""
    env = CAPS[args.capability]
    if all(os.environ.get(k) == v for k, v in env.items()):
        return
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **env})


def overrides(pairs: list[str]) -> dict:
    """``--set name=value`` pairs, each value read as the option's type (true/false, numbers, none)."""
    from cnnlab.config import _kind, options

    table, out = options(), {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in table:
            raise SystemExit(f"--set takes OPTION=VALUE with a training option, got {pair!r}")
        base, optional = _kind(table[name][2])
        if optional and text.lower() == "none":
            out[name] = None
        elif base is bool:
            if text.lower() not in ("true", "false", "on", "off", "1", "0"):
                raise SystemExit(f"--set {name} takes true or false, got {text!r}")
            out[name] = text.lower() in ("true", "on", "1")
        else:
            try:
                out[name] = base(text)
            except ValueError:
                raise SystemExit(f"--set {name}: {text!r} is not a {base.__name__}") from None
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.capability:
        with_capability(args)
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from _machine import machine, machine_line
    from _phases import Window, table

    import cnnlab as cl
    from cnnlab.engine import resolve_device
    from cnnlab.engine.phases import PhaseTimer
    from cnnlab.errors import CnnlabError

    device = resolve_device(args.device)
    try:
        cfg = cl.TrainConfig.from_recipe(
            args.recipe, device_type=device.type, **overrides(args.set)
        ).validate()
        data = cl.load_data(cfg.data, split=cfg.split, seed=0, data_dir=args.data_dir, limit=args.limit)
    except CnnlabError as exc:
        raise SystemExit(f"profile_phases: {exc}") from None
    print(f"Machine: {machine_line()}; device {device}, {torch.get_num_threads()} threads", flush=True)
    model = cl.build_model(cfg, data)
    window = Window(args.epochs)
    t0 = time.perf_counter()
    with PhaseTimer() as timer:
        window.timer = timer
        history = cl.fit(
            model, data, **cfg.fit_options(), callbacks=[window], device=device, progress=not args.no_progress
        )
    fit_wall = time.perf_counter() - t0
    result = window.result(history, fit_wall)
    title = (
        f"Recipe `{args.recipe}` ({cfg.model}, batch {cfg.batch_size}, amp {cfg.amp}, compile {cfg.compile}, "
        f"channels_last {cfg.channels_last}), {args.epochs} epoch(s) of {len(data.train.labels):,} images. "
        f"Machine: {machine_line()}"
    )
    print("\n" + title + "\n\n" + table(result))
    name = f"profile_phases-{args.recipe}-{device.type}" + (f"-{args.capability}" if args.capability else "")
    out = Path(args.out or ROOT / "benchmarks/results" / f"{name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"machine": machine(), "config": cfg.to_dict(), "epochs": args.epochs, **result}
    out.write_text(json.dumps(record, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
