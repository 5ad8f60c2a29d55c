"""Does the folder recipe keep the right model? A newcomer's folder (4 classes x 40 pictures, mixed sizes
and formats, one corrupt file) trained as `cnnlab train --data FOLDER --out RUN` does, keeping every
epoch's checkpoint; then every epoch's weights are scored on the run's own test split (off the clock,
after training: nothing here feeds back into the run).

Prints, with the machine named: the epoch the run saved and its test loss, the epoch with the lowest test
loss among all checkpoints (the "best checkpoint"), and the epoch the old rule (the first epoch at the best
validation accuracy) would have kept. The target (issue 21): the saved model's test loss within 10 % of
the best checkpoint's.

    python benchmarks/selection_check.py                 # about a minute, alone on the machine
    python benchmarks/selection_check.py --seeds 0,1,2   # several folders/runs

Writes benchmarks/results/selection.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine, machine_line  # noqa: E402

import cnnlab as cl  # noqa: E402
from cnnlab.engine.checkpoint import list_checkpoints, load_checkpoint  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "selection.json"
CLASSES = ("astronaut", "coffee", "chelsea", "rocket")
FORMATS = ("jpg", "png", "webp", "bmp")


def make_folder(root: Path, per_class: int, seed: int) -> Path:
    """Crops of one bundled photo per class, 40-160 px, in four formats, some grey; one corrupt file."""
    from skimage import data

    rng = np.random.default_rng(seed)
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        photo = getattr(data, name)()[..., :3]
        h, w = photo.shape[:2]
        for i in range(per_class):
            side = int(rng.uniform(0.25, 0.6) * min(h, w))
            top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = Image.fromarray(photo[top : top + side, left : left + side])
            crop = crop.resize((int(rng.integers(40, 161)), int(rng.integers(40, 161))))
            if rng.random() < 0.2:
                crop = crop.convert("L")
            crop.save(root / name / f"{name}_{i:03d}.{FORMATS[i % len(FORMATS)]}")
    (root / CLASSES[0] / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def score_checkpoints(run_dir: Path) -> dict[int, float]:
    """Test loss of every epoch-end checkpoint's weights, on the run's own test split."""
    run = cl.load_run(run_dir)
    test = run.load_dataset().test
    losses = {}
    for path in list_checkpoints(run_dir / "checkpoints"):
        ckpt = load_checkpoint(path)
        if ckpt.epoch_end is None:
            continue
        run.model.load_state_dict(ckpt.model)
        losses[ckpt.epoch_end] = cl.evaluate(run.model, test)["loss"]
    return losses


def one(seed: int, per_class: int, work: Path) -> dict:
    folder = make_folder(work / f"mypics-{seed}", per_class, seed)
    out = work / f"run-{seed}"
    cmd = [
        sys.executable,
        "-m",
        "cnnlab",
        "train",
        "--data",
        str(folder),
        "--out",
        str(out),
        "--seed",
        str(seed),
    ]
    # every epoch's checkpoint kept, so each can be scored afterwards (the recipe itself is untouched)
    r = subprocess.run([*cmd, "--keep", "100000", "--quiet", "--json"], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"training failed: {r.stderr.strip().splitlines()[-1:]}")
    results = json.loads((out / "results.json").read_text())
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    acc = [float(row["val_accuracy"]) for row in rows]
    first_at_best = 1 + acc.index(max(acc))
    losses = score_checkpoints(out)
    best_epoch = min(losses, key=losses.get)
    saved = results["selection"]["best_epoch"]
    # what a default run keeps on disk: the last 3 epochs' checkpoints and the selected one
    kept = {e: losses[e] for e in {*range(len(rows) - 2, len(rows) + 1), saved} if e in losses}
    best_kept = min(kept, key=kept.get)
    return {
        "per_epoch": [
            {
                "epoch": i + 1,
                "val_accuracy": acc[i],
                "val_loss": float(row["val_loss"]),
                "test_loss": losses.get(i + 1),
            }
            for i, row in enumerate(rows)
        ],
        "seed": seed,
        "epochs": len(rows),
        "val_images": (json.loads((out / "config.json").read_text())["dataset"].get("sizes") or {}).get(
            "val"
        ),
        "saved_epoch": saved,
        "saved_test_loss": results["test"]["loss"],
        "saved_test_accuracy": results["test"]["accuracy"],
        "best_checkpoint_epoch": best_epoch,
        "best_checkpoint_test_loss": losses[best_epoch],
        "old_rule_epoch": first_at_best,
        "old_rule_test_loss": losses.get(first_at_best),
        "epochs_tied_at_best_val_accuracy": sum(a == max(acc) for a in acc),
        "ratio": results["test"]["loss"] / losses[best_epoch],
        "best_kept_epoch": best_kept,
        "best_kept_test_loss": kept[best_kept],
        "ratio_to_kept": results["test"]["loss"] / kept[best_kept],
        "rule": results["selection"]["rule"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0", help="comma-separated seeds: one folder and run each [0]")
    ap.add_argument("--per-class", type=int, default=40)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            rows.append(one(seed, args.per_class, Path(tmp)))
            r = rows[-1]
            print(
                f"seed {seed}: saved epoch {r['saved_epoch']}/{r['epochs']} test loss {r['saved_test_loss']:.4f} "
                f"(accuracy {r['saved_test_accuracy']:.3f}); best checkpoint epoch {r['best_checkpoint_epoch']} "
                f"{r['best_checkpoint_test_loss']:.4f}; ratio {r['ratio']:.3f}; the old rule's epoch "
                f"{r['old_rule_epoch']} {r['old_rule_test_loss']:.4f} ({r['epochs_tied_at_best_val_accuracy']} "
                "epochs tied at the best validation accuracy)",
                flush=True,
            )
    print(f"\n{machine_line()}")
    print(
        "| seed | saved epoch | saved test loss | best kept checkpoint (last 3 + saved) | saved / kept | "
        "best of all epochs (hindsight) | saved / all | old rule's epoch, test loss |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['seed']} | {r['saved_epoch']} of {r['epochs']} | {r['saved_test_loss']:.4f} | "
            f"{r['best_kept_test_loss']:.4f} (epoch {r['best_kept_epoch']}) | {r['ratio_to_kept']:.3f} | "
            f"{r['best_checkpoint_test_loss']:.4f} (epoch {r['best_checkpoint_epoch']}) | {r['ratio']:.3f} | "
            f"{r['old_rule_epoch']}, {r['old_rule_test_loss']:.4f} |"
        )
    met = all(r["ratio_to_kept"] <= 1.10 for r in rows)
    hindsight = all(r["ratio"] <= 1.10 for r in rows)
    print(
        f"target: saved test loss within 10% of the best kept checkpoint's: {'met' if met else 'NOT met'}; "
        f"of the best of all {rows[0]['epochs']} epochs in hindsight: {'met' if hindsight else 'NOT met'}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine(), "runs": rows, "met": met}, indent=2) + "\n")


if __name__ == "__main__":
    main()
