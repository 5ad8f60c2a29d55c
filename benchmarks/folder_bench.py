"""Folder pipeline speed: decoding + caching JPEGs vs a torchvision-style per-sample Dataset + DataLoader,
and a training epoch from the cache vs from a built-in dataset of the same size (the folder decoded at
28x28 grayscale vs Fashion-MNIST cut to the same train/val sizes: same tensors, same model, taking turns).

    python benchmarks/folder_bench.py                 # 10,000 generated 256x256 JPEGs (about a minute)
    python benchmarks/folder_bench.py --n 2000        # quicker
    python benchmarks/folder_bench.py --keep /tmp/jpegs   # reuse (or keep) the generated folder

The peer is what most PyTorch code does (torchvision's ImageFolder + DataLoader), written out here so the
benchmark needs no torchvision: one `__getitem__` per image that opens the file, converts to RGB and
resizes it (bilinear, antialiased, as `transforms.Resize`), returning a uint8 tensor; a DataLoader with
one worker process per core batches them; the batches are concatenated into one uint8 array and saved
with `np.save`: the same product cnnlab's `decode_folder` makes (one cached uint8 array). Both read the
same files, already in the page cache (a full read happens before any timing); the methods take turns
`--repeat` times and the best is kept. Wall and CPU seconds are both reported: on a machine other jobs
load too, parallel workers cannot help either side, and CPU seconds (this process plus its worker
processes) still compare the work each method does.

Prints a table naming the machine and writes benchmarks/results/folder.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine, machine_line  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "folder.json"
CLASSES = 10


def generate(root: Path, n: int, size: int = 256, seed: int = 0) -> float:
    """n JPEGs (quality 90) in CLASSES sub-folders: smooth random colour fields with a class-coloured
    disc, so they compress like photos rather than noise. Returns seconds."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for c in range(CLASSES):
        (root / f"class_{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        c = i % CLASSES
        base = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize(
            (size, size), Image.Resampling.BICUBIC
        )
        arr = np.asarray(base).copy()
        cx, cy, r = rng.integers(64, 192, 2).tolist() + [int(rng.integers(20, 60))]
        arr[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = ((c * 25) % 256, 255 - c * 20, (c * 70) % 256)
        Image.fromarray(arr).save(root / f"class_{c}" / f"{i:05d}.jpg", quality=90)
    return time.perf_counter() - t0


# ---- the peer: torchvision-style per-sample Dataset + DataLoader ---------------------------------------


class PeerImageFolder(torch.utils.data.Dataset):
    """ImageFolder-like: (path, class) samples; every item is decoded and resized on its own."""

    def __init__(self, root: Path, size: int):
        classes = sorted(d.name for d in root.iterdir() if d.is_dir())
        self.samples = [(str(p), i) for i, c in enumerate(classes) for p in sorted((root / c).iterdir())]
        self.size = size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        with open(path, "rb") as f:
            img = Image.open(f).convert("RGB")  # torchvision's pil_loader
        img = img.resize((self.size, self.size), Image.Resampling.BILINEAR)  # transforms.Resize
        x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)  # transforms.PILToTensor
        return x, label


class Clock:
    """Wall seconds and CPU seconds (this process plus the children it waited for: DataLoader workers,
    decoding processes). On a machine other jobs also load, CPU seconds still compare the work done."""

    def __enter__(self):
        self.wall0, self.cpu0 = time.perf_counter(), _cpu()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall0, _cpu() - self.cpu0
        return False


def _cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def peer(root: Path, size: int, workers: int, out: Path) -> tuple:
    loader = torch.utils.data.DataLoader(
        PeerImageFolder(root, size), batch_size=256, shuffle=False, num_workers=workers
    )
    xs, ys = [], []
    for x, y in loader:
        xs.append(x)
        ys.append(y)
    images = torch.cat(xs).numpy()
    np.save(out, images)  # the cache: one uint8 array
    del loader  # its worker processes exit (and count in the CPU seconds)
    return images.shape


def ours(root: Path, size: int, workers: int | None, cache_home: Path, *, warm: bool = False) -> tuple:
    """decode_folder into an empty cache (decode + write), or, with `warm`, again (a cache hit)."""
    from cnnlab.data.folder import decode_folder

    os.environ["XDG_CACHE_HOME"] = str(cache_home)
    if not warm:
        shutil.rmtree(cache_home, ignore_errors=True)
    imgs = decode_folder(root, image_size=size, channels=3, workers=workers)
    assert imgs.from_cache == warm and not imgs.bad
    return imgs.images.shape


# ---- training epochs: from the cache vs from a built-in dataset --------------------------------------


def epoch_times(datasets: dict, model_name: str, rounds: int) -> dict[str, float]:
    """Best seconds of one training epoch per dataset, the datasets taking turns (so a busy machine
    slows both alike); a first round warms oneDNN up and is not counted."""
    from cnnlab.engine import fit
    from cnnlab.models import create_model

    best = {k: float("inf") for k in datasets}
    for r in range(rounds + 1):
        for key, data in datasets.items():
            model = create_model(
                model_name, input_shape=data.input_shape, num_classes=data.num_classes, seed=0
            )
            history = fit(model, data, epochs=1, batch_size=32, progress=False, seed=0, device="cpu")
            if r:
                best[key] = min(best[key], float(history["seconds"][-1]))
    return best


def training_comparison(root: Path, cache_home: Path, model_name: str, rounds: int) -> dict:
    """The folder decoded at 28x28 grayscale (from its cache) vs Fashion-MNIST cut to the same sizes."""
    from cnnlab.data import load_data
    from cnnlab.data.folder import load_folder

    os.environ["XDG_CACHE_HOME"] = str(cache_home)
    load_folder(root, image_size=28, channels=1, quiet=True)  # decode once into the cache
    t0 = time.perf_counter()
    folder = load_folder(root, image_size=28, channels=1, quiet=True)
    folder_load = time.perf_counter() - t0
    n_train = len(folder.train)
    builtin_name = "fashion_mnist"
    t0 = time.perf_counter()
    try:
        from dataclasses import replace

        fm = load_data(
            "fashion_mnist", split="default", seed=0, data_dir=_fmnist_dir(), limit=n_train, download=False
        )
        builtin = replace(fm, val=fm.val.head(len(folder.val)))
    except Exception as exc:  # no Fashion-MNIST here: an in-memory dataset of the same shape
        print(f"(Fashion-MNIST not available: {exc}; using random in-memory images of the same shape)")
        builtin_name = "random in-memory"
        builtin = folder.__class__(
            name="random",
            classes=folder.classes,
            train=folder.train.__class__(
                torch.randint(0, 256, folder.train.images.shape, dtype=torch.uint8), folder.train.labels
            ),
            val=folder.val,
            test=folder.test,
            split="default",
            seed=0,
        )
    builtin_load = time.perf_counter() - t0
    assert builtin.input_shape == folder.input_shape and len(builtin.train) == n_train
    epochs = epoch_times({"folder": folder, "builtin": builtin}, model_name, rounds)
    return {
        "model": model_name,
        "train_images": n_train,
        "val_images": len(folder.val),
        "input_shape": list(folder.input_shape),
        "builtin": builtin_name,
        "folder_load_from_cache_s": folder_load,
        "builtin_load_s": builtin_load,
        "folder_epoch_s": epochs["folder"],
        "builtin_epoch_s": epochs["builtin"],
        "rounds": rounds,
    }


def _fmnist_dir() -> str | None:
    for cand in (
        os.environ.get("CNNLAB_DATA_DIR"),
        str(Path(__file__).resolve().parents[2] / "shared" / "data"),
    ):
        if cand and Path(cand).is_dir():
            return cand
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="JPEGs to generate [10000]")
    ap.add_argument("--size", type=int, default=64, help="decoded image size [64]")
    ap.add_argument("--repeat", type=int, default=2, help="timings per method; the best is kept [2]")
    ap.add_argument("--keep", type=Path, default=None, help="folder for the JPEGs (reused if it holds them)")
    ap.add_argument(
        "--model",
        default="conv32-pool-dense64",
        help="model for the training-epoch comparison [conv32-pool-dense64]",
    )
    ap.add_argument("--rounds", type=int, default=3, help="epochs per dataset, taking turns; best kept [3]")
    ap.add_argument("--no-write", action="store_true", help="do not write benchmarks/results/folder.json")
    args = ap.parse_args()

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="cnnlab-folder-bench-"))
    root = args.keep or work / "jpegs"
    try:
        existing = sum(1 for _ in root.rglob("*.jpg")) if root.is_dir() else 0
        gen_s = None
        if existing != args.n:
            shutil.rmtree(root, ignore_errors=True)
            gen_s = generate(root, args.n)
            print(f"generated {args.n:,} JPEGs of 256x256 in {gen_s:.1f} s")
        for p in root.rglob("*.jpg"):  # into the page cache, for both methods alike
            p.read_bytes()

        rows: dict[str, list[tuple[float, float]]] = {}
        methods = {
            f"peer_workers_{w}": (peer, (root, args.size, w, work / "peer.npy"), {})
            for w in sorted({0, cores})
        }
        methods.update(
            ours_cold_1_thread=(ours, (root, args.size, 1, work / "cache"), {}),
            ours_cold=(ours, (root, args.size, None, work / "cache"), {}),
            ours_warm=(ours, (root, args.size, None, work / "cache"), {"warm": True}),
        )
        shapes = set()
        for r in range(args.repeat):  # the methods take turns, so a busy machine slows them alike
            for key, (fn, fargs, kw) in methods.items():
                with Clock() as c:
                    shapes.add(tuple(fn(*fargs, **kw)))
                rows.setdefault(key, []).append((c.wall, c.cpu))
            print(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1][0]:.2f}s" for k, v in rows.items()))
        assert len(shapes) == 1, shapes
        best = {k: min(w for w, _ in v) for k, v in rows.items()}
        best_cpu = {k: min(c for _, c in v) for k, v in rows.items()}
        peers = [f"peer_workers_{w}" for w in sorted({0, cores})]
        peer_best = min(best[k] for k in peers)
        peer_best_cpu = min(best_cpu[k] for k in peers)
        load = os.getloadavg()[0]
        training = training_comparison(root, work / "cache", args.model, args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    n = args.n
    print()
    print(f"Folder pipeline: {n:,} JPEGs 256x256 -> one uint8 array ({args.size}x{args.size} RGB)")
    print(f"Machine: {machine_line()}")
    print(f"Load average during the run: {load:.1f} (on {cores} cores; other jobs share the machine)")
    print(f"{'method':56s} {'wall s':>7s} {'images/s':>9s} {'vs peer':>8s} {'CPU s':>7s} {'vs peer':>8s}")
    labels = {
        "peer_workers_0": "peer: per-sample Dataset + DataLoader, num_workers=0",
        f"peer_workers_{cores}": f"peer: per-sample Dataset + DataLoader, num_workers={cores}",
        "ours_cold_1_thread": "cnnlab decode_folder, 1 worker: decode + write cache",
        "ours_cold": f"cnnlab decode_folder, {cores} workers: decode + write cache",
        "ours_warm": "cnnlab decode_folder, second run (cache hit)",
    }
    for key, label in labels.items():
        if key in best:
            w, c = best[key], best_cpu[key]
            print(
                f"{label:56s} {w:7.2f} {n / w:9,.0f} {peer_best / w:7.1f}x {c:7.2f} {peer_best_cpu / c:7.1f}x"
            )
    t = training
    print()
    print(
        f"Training epoch ({t['model']}, {t['train_images']:,} train + {t['val_images']:,} val images, "
        f"{'x'.join(map(str, t['input_shape']))}, batch 32, CPU):"
    )
    print(
        f"  from the folder cache:         {t['folder_epoch_s']:.2f} s (load {t['folder_load_from_cache_s']:.2f} s)"
    )
    print(
        f"  from built-in {t['builtin']:16s} {t['builtin_epoch_s']:.2f} s (load {t['builtin_load_s']:.2f} s)"
    )
    print(f"  ratio folder/built-in: {t['folder_epoch_s'] / t['builtin_epoch_s']:.2f}")

    result = {
        "benchmark": "folder pipeline",
        "machine": machine(),
        "machine_line": machine_line(),
        "images": n,
        "source_size": [256, 256],
        "decoded_size": [3, args.size, args.size],
        "repeat": args.repeat,
        "generate_s": gen_s,
        "load_average": load,
        "wall_seconds_best": best,
        "cpu_seconds_best": best_cpu,
        "peer_best_s": peer_best,
        "speedup_vs_peer": peer_best / best["ours_cold"],
        "cpu_speedup_vs_peer": peer_best_cpu / best_cpu["ours_cold"],
        "speedup_warm_vs_peer": peer_best / best["ours_warm"],
        "training": training,
        "training_ratio_folder_over_builtin": training["folder_epoch_s"] / training["builtin_epoch_s"],
    }
    print(
        f"\nDecode + cache speed-up vs the best peer: {result['speedup_vs_peer']:.1f}x wall, "
        f"{result['cpu_speedup_vs_peer']:.1f}x CPU (target >= 2x)"
    )
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        tmp = RESULTS.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, RESULTS)
        print(f"Wrote {RESULTS}")


if __name__ == "__main__":
    main()
