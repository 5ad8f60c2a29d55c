"""Your own small image folder: how well and how fast `cnnlab train --data FOLDER` does on a few hundred
images of different kinds, as a new user would run it.

Builds small folder datasets in a temp folder (one sub-folder per class), all from nothing on the network:
  shapes  circles, squares and triangles in random colours on dark backgrounds, 40-90 px (3 x 80 images)
  photos  distinct crops of scikit-image's bundled photos, one photo per class (5 x 60 images)
  digits  0-9 rendered in DejaVu fonts at many sizes and both polarities (10 x 30 images)
  handwritten  real handwritten digits (the UCI scans bundled with scikit-learn, when it is installed) at
          many sizes and both polarities (10 x 32 images)
then runs each command variant on each as a subprocess (`python -m cnnlab train --data FOLDER --out R
--json --quiet` plus the variant's flags) and prints a table: dataset, variant, test accuracy, wall time
(including start-up), training images/s. Variants: `default` (nothing but --data and --out) and
`finetune` (a pretrained timm backbone; run only where its weights are in the Hugging Face cache and the
CLI has --pretrained). It also times the photo augmentation against a training step of fastcnn and
resnet_s at 64 px RGB (`--augment-cost`).

    python benchmarks/own_data.py                          # everything (run alone on the machine)
    python benchmarks/own_data.py --datasets shapes --variants default
    python benchmarks/own_data.py --variant "fast=--recipe fast" --keep /tmp/own   # add a variant, keep the folders
    python benchmarks/own_data.py --smoke                  # tiny folders, --epochs 1: checks the script runs

Writes benchmarks/results/own_data.json and names the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine, machine_line  # noqa: E402

from cnnlab.engine import Callback  # noqa: E402
from cnnlab.engine.snapshot import Checkpointer  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "own_data.json"
FINETUNE_BACKBONE = "timm:resnet18"


# ---- the datasets ------------------------------------------------------------------------------------


def make_shapes(root: Path, per_class: int, rng: np.random.Generator) -> None:
    """Circles, squares and triangles of random size, position, angle and bright colour on a dark,
    slightly noisy background; images 40-90 px square."""
    for label in ("circle", "square", "triangle"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            size = int(rng.integers(40, 91))
            bg = tuple(int(v) for v in rng.integers(0, 60, 3))
            img = Image.new("RGB", (size, size), bg)
            draw = ImageDraw.Draw(img)
            colour = tuple(int(v) for v in rng.integers(90, 256, 3))
            r = rng.uniform(0.18, 0.4) * size
            cx, cy = (rng.uniform(r + 1, size - r - 1) for _ in range(2))
            if label == "circle":
                draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
            else:
                n = 4 if label == "square" else 3
                a0 = rng.uniform(0, 2 * np.pi)
                pts = [
                    (cx + r * np.cos(a0 + 2 * np.pi * k / n), cy + r * np.sin(a0 + 2 * np.pi * k / n))
                    for k in range(n)
                ]
                draw.polygon(pts, fill=colour)
            arr = np.asarray(img).astype(np.int16) + rng.integers(-8, 9, (size, size, 3))
            Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(root / label / f"{label}_{i:03d}.png")


PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")


def make_photos(root: Path, per_class: int, rng: np.random.Generator) -> None:
    """Crops of one bundled photo per class: random windows of 30-70% of the shorter side, saved as
    48-96 px JPEGs, some mirrored."""
    from skimage import data

    for name in PHOTOS:
        (root / name).mkdir(parents=True)
        photo = getattr(data, name)()[..., :3]
        h, w = photo.shape[:2]
        for i in range(per_class):
            side = int(rng.uniform(0.3, 0.7) * min(h, w))
            top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = Image.fromarray(photo[top : top + side, left : left + side])
            if rng.random() < 0.5:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            out = int(rng.integers(48, 97))
            crop.resize((out, out), Image.Resampling.BILINEAR).save(
                root / name / f"{name}_{i:03d}.jpg", quality=90
            )


def _fonts(size: int) -> list[ImageFont.ImageFont]:
    folder = Path("/usr/share/fonts/truetype/dejavu")
    files = (
        sorted(folder.glob("DejaVuSans*.ttf")) + sorted(folder.glob("DejaVuSerif*.ttf"))
        if folder.is_dir()
        else []
    )
    files = [f for f in files if "ExtraLight" not in f.name]
    if files:
        return [ImageFont.truetype(str(f), size) for f in files]
    return [ImageFont.load_default(size=size)]  # Pillow's own scalable font (Pillow >= 10.1)


def make_digits(root: Path, per_class: int, rng: np.random.Generator) -> None:
    """Digits 0-9 in several fonts, 24-80 px canvases, glyphs 45-90% of the canvas, random offset and
    tilt, white on black or black on white, a little noise."""
    for d in range(10):
        (root / str(d)).mkdir(parents=True)
        for i in range(per_class):
            size = int(rng.integers(24, 81))
            glyph = int(rng.uniform(0.45, 0.9) * size)
            fonts = _fonts(glyph)
            font = fonts[int(rng.integers(0, len(fonts)))]
            canvas = Image.new("L", (size * 2, size * 2), 0)
            ImageDraw.Draw(canvas).text((size, size), str(d), fill=255, font=font, anchor="mm")
            canvas = canvas.rotate(float(rng.uniform(-12, 12)), resample=Image.Resampling.BILINEAR)
            dx, dy = (int(rng.integers(-size // 8, size // 8 + 1)) for _ in range(2))
            img = canvas.crop((size // 2 + dx, size // 2 + dy, size // 2 + dx + size, size // 2 + dy + size))
            arr = np.asarray(img).astype(np.int16)
            if rng.random() < 0.5:
                arr = 255 - arr  # dark on light
            arr = arr + rng.integers(-12, 13, arr.shape)
            Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(root / str(d) / f"{d}_{i:03d}.png")


class Unavailable(Exception):
    """A dataset that cannot be built on this machine (the message says why)."""


def make_handwritten(root: Path, per_class: int, rng: np.random.Generator) -> None:
    """Real handwriting: the UCI digits bundled with scikit-learn (8x8 scans of 43 writers, 17 grey levels),
    each scaled to 16-44 px and placed at a random spot of a 24-72 px canvas, either polarity, a little
    noise."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise Unavailable(
            "needs scikit-learn (pip install scikit-learn), whose bundled UCI digits it uses"
        ) from None
    digits = load_digits()
    for d in range(10):
        (root / str(d)).mkdir(parents=True)
        for i, k in enumerate(rng.choice(np.flatnonzero(digits.target == d), per_class, replace=False)):
            side = int(rng.integers(16, 45))
            scan = Image.fromarray((digits.images[k] * (255 / 16)).astype(np.uint8))
            canvas = Image.new("L", (size := int(rng.integers(max(24, side + 4), 73)),) * 2, 0)
            canvas.paste(
                scan.resize((side, side), Image.Resampling.BICUBIC), tuple(rng.integers(0, size - side, 2))
            )
            arr = np.asarray(canvas).astype(np.int16)
            if rng.random() < 0.5:
                arr = 255 - arr  # dark on light
            arr = arr + rng.integers(-12, 13, arr.shape)
            Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(root / str(d) / f"{d}_{i:03d}.png")


DATASETS: dict[str, tuple[Callable, int]] = {  # name -> (maker, images per class)
    "shapes": (make_shapes, 80),
    "photos": (make_photos, 60),
    "digits": (make_digits, 30),
    "handwritten": (make_handwritten, 32),
}


# ---- the command variants ------------------------------------------------------------------------------


def _cli_help() -> str:
    r = subprocess.run([sys.executable, "-m", "cnnlab", "train", "--help"], capture_output=True, text=True)
    return r.stdout


def finetune_ready() -> str | None:
    """None when the fine-tune variant can run here, else why not."""
    if "--pretrained" not in _cli_help():
        return "this cnnlab's train has no --pretrained yet"
    try:
        from huggingface_hub import try_to_load_from_cache

        from cnnlab.models import backbone_config

        cfg = backbone_config(FINETUNE_BACKBONE)
        if not isinstance(try_to_load_from_cache(cfg.hf_hub_id, "model.safetensors"), str):
            return f"no {cfg.hf_hub_id} weights in the Hugging Face cache (no network here)"
    except Exception as exc:  # timm missing, or any other reason the backbone cannot be had
        return str(exc).splitlines()[0]
    return None


VARIANTS: list[dict] = [
    {"name": "default", "args": [], "ready": lambda: None},
    {
        "name": "finetune",
        "args": ["--model", FINETUNE_BACKBONE, "--pretrained", "--recipe", "finetune"],
        "ready": finetune_ready,
    },
]


def run_variant(folder: Path, out: Path, args: list[str], extra: list[str]) -> dict:
    """One `cnnlab train` as a subprocess: wall seconds (start-up included) and what it reports."""
    cmd = [sys.executable, "-m", "cnnlab", "train", "--data", str(folder), "--out", str(out), *args, *extra]
    t0 = time.perf_counter()
    r = subprocess.run([*cmd, "--json", "--quiet"], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    shown = shlex.join(["cnnlab", "train", "--data", folder.name, "--out", "R", *args, *extra])
    if r.returncode != 0:
        tail = (r.stderr.strip() or r.stdout.strip()).splitlines()[-1:] or ["(no output)"]
        return {"command": shown, "wall_s": wall, "error": tail[0]}
    start = r.stdout.find("{")
    result = json.loads(r.stdout[start : r.stdout.rfind("}") + 1]) if start >= 0 else {}
    config = json.loads((out / "config.json").read_text()) if (out / "config.json").is_file() else {}
    n_train = ((config.get("dataset") or {}).get("sizes") or {}).get("train")
    epochs, seconds = result.get("epochs_run"), result.get("train_seconds")
    return {
        "command": shown,
        "wall_s": wall,
        "test_accuracy": result.get("test_accuracy"),
        "model": result.get("model"),
        "recipe": config.get("recipe"),
        "input_shape": config.get("input_shape"),
        "epochs": epochs,
        "train_s": seconds,
        "train_images": n_train,
        "images_per_s": n_train * epochs / seconds if n_train and epochs and seconds else None,
    }


# ---- augmentation cost vs a training step ----------------------------------------------------------------


def augment_cost(batch: int = 32, size: int = 64, repeats: int = 20) -> dict:
    """Best-of-``repeats`` milliseconds per batch: photo augmentation (crop, rotate, jitter, flip) vs one
    forward+backward+SGD step of fastcnn and resnet_s, on ``batch`` RGB images of ``size`` px."""
    import torch
    import torch.nn.functional as F

    from cnnlab.engine import Augment
    from cnnlab.models import create_model

    def best_ms(fn) -> float:
        fn()  # warm-up (oneDNN picks its kernels)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return 1000 * min(times)

    x = torch.rand(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y, idx = torch.randint(0, 3, (batch,)), torch.arange(batch)
    augments = {
        "crop+rotate": Augment(crop=0.35, rotate=15),
        "jitter": Augment(jitter=0.3),
        "photo (crop, rotate, jitter, flip)": Augment(crop=0.35, rotate=15, jitter=0.3, flip="random"),
        "translate+flip+erasing": Augment(translate=4, flip="random", erasing=0.5),
    }
    out = {name: best_ms(lambda a=a: a(x, idx, seed=0, epoch=1, step=0)) for name, a in augments.items()}
    for name in ("fastcnn", "resnet_s"):
        model = create_model(name, input_shape=(3, size, size), num_classes=3, seed=0)
        model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)

        def step(model=model, opt=opt) -> None:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()

        out[f"{name} training step"] = best_ms(step)
    return {"batch": batch, "size": size, "threads": torch.get_num_threads(), "ms": out}


# ---- the run -------------------------------------------------------------------------------------------


class EpochClock(Callback):
    """Per epoch, the wall time spent outside the training steps: from the end of an epoch's last step to
    the start of the next epoch's first (validation, callbacks, the checkpoint)."""

    def __init__(self):
        self.outside: list[float] = []
        self._last_step_end: float | None = None

    def on_train_batch_end(self, state) -> None:
        self._last_step_end = time.perf_counter()

    def on_epoch_begin(self, state) -> None:
        if self._last_step_end is not None:
            self.outside.append(time.perf_counter() - self._last_step_end)

    def on_train_end(self, state) -> None:
        self.outside.append(time.perf_counter() - self._last_step_end)


def pipeline_overhead(folder: Path, epochs: int = 6) -> dict:
    """Does training from a folder cost what its model costs? The folder recipe's model trained on the
    folder (decoded once, 64 px RGB) against the same model on in-memory tensors of the same shape and
    count, and the time an epoch spends outside its training steps (validation, checkpoint, logs) in a
    real `cnnlab train` run of that folder."""
    import dataclasses

    import torch

    import cnnlab as cl
    from cnnlab.data import Split

    data = cl.load_data(str(folder), split="default", seed=0)
    cfg = cl.TrainConfig.from_recipe(
        "folder", device_type="cpu", data=str(folder), epochs=epochs, min_steps=0
    )
    cfg = cfg.sized_for(len(data.train))
    g = torch.Generator().manual_seed(0)

    def tensors(split: Split) -> Split:  # the same shape and labels, made in memory (no file behind them)
        return Split(
            torch.randint(0, 256, split.images.shape, dtype=torch.uint8, generator=g), split.labels.clone()
        )

    memory = dataclasses.replace(
        data, train=tensors(data.train), val=tensors(data.val), test=tensors(data.test)
    )
    rates: dict[str, float] = {}
    for name, d in 2 * (("folder", data), ("in-memory tensors", memory)):  # interleaved, best of two
        model = cl.build_model(cfg, d)
        h = cl.fit(model, d, **cfg.fit_options(), progress=False, device="cpu", validate=False)
        seconds = sum(h["seconds"][1:])  # after the first epoch (warm-up)
        rates[name] = max(rates.get(name, 0.0), len(d.train) * (epochs - 1) / seconds)
    clock = EpochClock()
    with tempfile.TemporaryDirectory() as tmp:  # as `cnnlab train` runs it: validation, checkpoints, logs
        model = cl.build_model(cfg, data)
        checkpoints = Checkpointer(Path(tmp) / "checkpoints", every=1000, keep=3)
        cl.fit(model, data, **cfg.fit_options(), progress=False, device="cpu", checkpoints=checkpoints,
               callbacks=[cl.EarlyStopping(cfg.monitor, patience=None), clock])  # fmt: skip
    return {
        "model": cfg.model,
        "images": len(data.train),
        "input_shape": list(data.input_shape),
        "batch_size": cfg.batch_size,
        "images_per_s": {k: round(v, 1) for k, v in rates.items()},
        "folder_vs_memory": round(rates["folder"] / rates["in-memory tensors"], 3),
        "epoch_overhead_s": round(statistics.median(clock.outside[1:]), 4),
    }


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated [{','.join(DATASETS)}]")
    ap.add_argument("--variants", default=None, help="comma-separated variant names [all]")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=FLAGS",
        help="add a variant, e.g. 'fast=--recipe fast' (repeatable)",
    )
    ap.add_argument("--extra", default="", help="flags added to every command, e.g. '--epochs 3'")
    ap.add_argument(
        "--smoke", action="store_true", help="10 images per class and --epochs 1: the script runs"
    )
    ap.add_argument("--keep", type=Path, default=None, help="build the folders here and keep them")
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated images [0]")
    ap.add_argument("--no-augment-cost", dest="augment_cost", action="store_false")
    ap.add_argument(
        "--no-overhead", dest="overhead", action="store_false", help="skip the folder-vs-memory measurement"
    )
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results [{RESULTS}]")
    return ap.parse_args()


def variants(args: argparse.Namespace) -> list[dict]:
    chosen = list(VARIANTS)
    for spec in args.variant:
        name, _, flags = spec.partition("=")
        chosen.append({"name": name.strip(), "args": shlex.split(flags), "ready": lambda: None})
    if args.variants:
        wanted = [v.strip() for v in args.variants.split(",")]
        unknown = sorted(set(wanted) - {v["name"] for v in chosen})
        if unknown:
            sys.exit(
                f"Unknown variant(s) {', '.join(unknown)}. Available: {', '.join(v['name'] for v in chosen)}"
            )
        chosen = [v for v in chosen if v["name"] in wanted]
    return chosen


def main() -> None:
    args = parse_args()
    names = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = sorted(set(names) - set(DATASETS))
    if unknown:
        sys.exit(f"Unknown dataset(s) {', '.join(unknown)}. Available: {', '.join(DATASETS)}")
    extra = shlex.split(args.extra) + (["--epochs", "1"] if args.smoke else [])
    work = Path(tempfile.mkdtemp(prefix="cnnlab-own-data-"))
    root = args.keep or work / "data"
    rows = []
    try:
        for name in names:
            maker, per_class = DATASETS[name]
            folder = root / name
            try:
                if not folder.is_dir():
                    maker(folder, 10 if args.smoke else per_class, np.random.default_rng(args.seed))
            except Unavailable as exc:
                rows.append({"dataset": name, "images": 0, "variant": "all", "skipped": str(exc)})
                print(_line(rows[-1]), flush=True)
                continue
            images = sum(1 for p in folder.rglob("*") if p.is_file())
            for v in variants(args):
                why = v["ready"]()
                row = {"dataset": name, "images": images, "variant": v["name"]}
                if why:
                    rows.append({**row, "skipped": why})
                else:
                    rows.append(
                        {
                            **row,
                            **run_variant(folder, work / "runs" / f"{name}-{v['name']}", v["args"], extra),
                        }
                    )
                print(_line(rows[-1]), flush=True)
        cost = augment_cost(repeats=3 if args.smoke else 20) if args.augment_cost else None
        overhead = (
            pipeline_overhead(root / names[0], epochs=2 if args.smoke else 6) if args.overhead else None
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(rows, cost, overhead, args)


def _line(r: dict) -> str:
    head = f"{r['dataset']:11s} {r['images']:5d} {r['variant']:10s}"
    if "skipped" in r:
        return f"{head} skipped: {r['skipped']}"
    if "error" in r:
        return f"{head} FAILED ({r['wall_s']:.1f} s): {r['error']}"
    acc = f"{100 * r['test_accuracy']:5.1f} %" if r.get("test_accuracy") is not None else "    ? "
    ips = f"{r['images_per_s']:8.0f}" if r.get("images_per_s") else "       ?"
    return f"{head} {acc} {r['wall_s']:7.1f} {ips}   {r['command']}"


def report(rows: list[dict], cost: dict | None, overhead: dict | None, args: argparse.Namespace) -> None:
    print()
    print(f"Own small folders, `cnnlab train` as a subprocess. Machine: {machine_line()}")
    print(
        f"{'dataset':11s} {'imgs':>5s} {'variant':10s} {'test acc':>7s} {'wall s':>7s} {'img/s':>8s}   command"
    )
    for r in rows:
        print(_line(r))
    if cost:
        ms = cost["ms"]
        print(
            f"\nAugmentation vs a training step ({cost['batch']} RGB images of {cost['size']} px, "
            f"{cost['threads']} threads, best of several):"
        )
        for k, v in ms.items():
            print(f"  {k:36s} {v:8.2f} ms")
    if overhead:
        rate = overhead["images_per_s"]
        print(
            f"\nTraining {overhead['model']} on {overhead['images']} images {overhead['input_shape']}: "
            f"{rate['folder']:.0f} images/s from the folder, {rate['in-memory tensors']:.0f} from in-memory "
            f"tensors (ratio {overhead['folder_vs_memory']:.2f}); time per epoch outside the training "
            f"steps (validation, checkpoint, logs): {overhead['epoch_overhead_s']:.3f} s"
        )
    result = {
        "benchmark": "own small folders",
        "machine": machine(),
        "machine_line": machine_line(),
        "smoke": args.smoke,
        "extra_flags": args.extra,
        "load_average": os.getloadavg()[0],
        "rows": rows,
        "augment_cost": cost,
        "pipeline_overhead": overhead,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, args.out)
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
