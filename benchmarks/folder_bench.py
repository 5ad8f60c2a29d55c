"""Folder pipeline speed: decoding + caching JPEGs vs a torchvision-style per-sample Dataset + DataLoader,
and a training epoch from the cache vs from a built-in dataset of the same size (the folder decoded at
28x28 grayscale vs Fashion-MNIST cut to the same train/val sizes: same tensors, same model, taking turns).

    python benchmarks/folder_bench.py                 # 10,000 generated 256x256 JPEGs (about a minute)
    python benchmarks/folder_bench.py --n 2000        # quicker
    python benchmarks/folder_bench.py --keep /tmp/jpegs   # reuse (or keep) the generated folder
    python benchmarks/folder_bench.py large --n 60000 --folder /var/tmp/jpegs60k --cap 3G   # issue 25

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


# ---- issue 25: folders as large as the disk -------------------------------------------------------------
# python benchmarks/folder_bench.py large --n 60000 --folder /var/tmp/jpegs60k --cap 3G


def _make_jpegs(job: tuple[str, int, int, int, int]) -> int:
    """JPEGs ``lo..hi`` of the large folder (each from its own seed, so processes can share the work)."""
    root, lo, hi, size, seed = job
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(lo, hi):
        rng = np.random.default_rng([seed, i])
        c = i % CLASSES
        base = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
        arr = np.asarray(base.resize((size, size), Image.Resampling.BICUBIC)).copy()
        cx, cy = rng.integers(size // 4, 3 * size // 4, 2).tolist()
        r = int(rng.integers(size // 12, size // 4))
        arr[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = ((c * 25) % 256, 255 - c * 20, (c * 70) % 256)
        Image.fromarray(arr).save(Path(root) / f"class_{c}" / f"{i:06d}.jpg", quality=90)
    return hi - lo


def generate_parallel(root: Path, n: int, size: int, workers: int) -> float:
    """``n`` JPEGs of ``size`` px in CLASSES folders, made by ``workers`` processes; returns seconds."""
    from concurrent.futures import ProcessPoolExecutor

    t0 = time.perf_counter()
    for c in range(CLASSES):
        (root / f"class_{c}").mkdir(parents=True, exist_ok=True)
    jobs = [(str(root), lo, min(n, lo + 500), size, 0) for lo in range(0, n, 500)]
    with ProcessPoolExecutor(workers) as pool:
        assert sum(pool.map(_make_jpegs, jobs)) == n
    return time.perf_counter() - t0


def _pillow_chunk(job: tuple[list[str], int]) -> int:
    """A plain Pillow loop: open, convert to RGB, resize to the square size, as an array."""
    paths, size = job
    for p in paths:
        with Image.open(p) as im:
            np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
    return len(paths)


def pillow_loop(paths: list[str], size: int, workers: int) -> float:
    """Seconds for the plain Pillow loop over ``paths`` on ``workers`` processes (the cores' throughput)."""
    from concurrent.futures import ProcessPoolExecutor

    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        assert sum(
            pool.map(_pillow_chunk, [(paths[i : i + 256], size) for i in range(0, len(paths), 256)])
        ) == len(paths)
    return time.perf_counter() - t0


def cold_decode(root: Path, size: int, cache_home: Path) -> float:
    """Seconds for ``decode_folder`` into an empty cache (decode + write the memory map on disk)."""
    shutil.rmtree(cache_home, ignore_errors=True)
    os.environ["XDG_CACHE_HOME"] = str(cache_home)
    from cnnlab.data.folder import decode_folder

    t0 = time.perf_counter()
    imgs = decode_folder(root, image_size=size, channels=3)
    took = time.perf_counter() - t0
    assert not imgs.from_cache and not imgs.bad and imgs.cache_file is not None
    return took


_FIRST_BATCH = """
import sys, time, json
t0 = time.perf_counter()
from cnnlab.data.folder import load_folder
from cnnlab.engine.batches import StreamBatches
t1 = time.perf_counter()
data = load_folder(sys.argv[1], image_size=int(sys.argv[2]), quiet=True)
batches = StreamBatches(data.train.images, data.train.labels, batch_size=64, shuffle=True, seed=0)
x, y, idx = next(iter(batches.epoch(1)))
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_to_first_batch_s": t2 - t1, "train": len(data.train)}))
"""


def warm_first_batch(root: Path, size: int, cache_home: Path) -> dict:
    """A fresh process on the warm cache: seconds from ``load_folder`` to the first streamed batch."""
    import subprocess

    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home), "PYTHONPATH": _src_path()}
    out = subprocess.run(
        [sys.executable, "-c", _FIRST_BATCH, str(root), str(size)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _src_path() -> str:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)


def _recipe_config(root: Path, size: int, placement: str, **kw):
    from cnnlab.config import TrainConfig

    return TrainConfig.from_recipe(
        "folder", device_type="cpu", data=str(root), image_size=size, epochs=1, min_steps=0,
        data_placement=placement, **kw,
    )  # fmt: skip


def one_epoch(root: Path, size: int, placement: str, **kw) -> tuple[float, int, dict]:
    """One epoch of the folder recipe with ``placement``: (seconds of the epoch, training images, weights)."""
    from cnnlab.engine import fit
    from cnnlab.experiment import build_model, load_config_data

    cfg = _recipe_config(root, size, placement, **kw)
    data = load_config_data(cfg)
    model = build_model(cfg, data)
    history = fit(model, data, cfg, progress=False, validate=False, device="cpu")
    return float(history["seconds"][-1]), len(data.train), model.state_dict()


def stream_vs_device(root: Path, size: int, rounds: int, cache_home: Path) -> dict:
    """Images/s of one epoch of the folder recipe, device-resident vs streamed, taking turns ``rounds``
    times, each first in every other round (best kept); the weights after each pair must be identical."""
    os.environ["XDG_CACHE_HOME"] = str(cache_home)
    best = {"device": float("inf"), "stream": float("inf")}
    identical = True
    n = 0
    for r in range(rounds):
        weights = {}
        for where in ("device", "stream") if r % 2 == 0 else ("stream", "device"):  # neither always first
            seconds, n, weights[where] = one_epoch(root, size, where)
            best[where] = min(best[where], seconds)
        identical &= all(torch.equal(weights["device"][k], weights["stream"][k]) for k in weights["device"])
    return {
        "image_size": size, "train_images": n, "rounds": rounds,
        "device_images_per_s": n / best["device"], "stream_images_per_s": n / best["stream"],
        "stream_over_device": best["device"] / best["stream"], "identical_weights": identical,
    }  # fmt: skip


CAPPED_MODEL = "conv16k5s4-bn-conv32s2-bn-pool-conv64-bn-gap"
"""The 224 px epoch's model: a strided 5x5 first conv (224 -> 55 px) makes it cheap on a CPU, so the epoch
measures the data path (decoded images read from disk in batches) rather than convolutions; the folder
recipe's other settings, without its augmentation, batch 64, float32."""


def capped_epoch_child(root: str, size: int, model: str) -> None:
    """(Run inside the memory-capped cgroup.) One streamed epoch at ``size`` px; prints JSON: seconds,
    images and this process's peak RSS."""
    from cnnlab.engine import fit
    from cnnlab.experiment import build_model, load_config_data

    # augmentation off: at 224 px on a CPU its crops and rotations would cost far more than the model
    cfg = _recipe_config(
        Path(root), size, "stream", model=model, batch_size=64, amp="off", augment_crop=0.0, augment_rotate=0.0,
        augment_jitter=0.0,
    )  # fmt: skip
    data = load_config_data(cfg)
    net = build_model(cfg, data)
    history = fit(net, data, cfg, progress=False, device="cpu")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({
        "epoch_s": float(history["seconds"][-1]), "train_images": len(data.train), "val_images": len(data.val),
        "val_accuracy": float(history["val_accuracy"][-1]), "peak_rss_bytes": peak,
    }))  # fmt: skip


def capped_epoch(root: Path, size: int, model: str, cap: int, cache_home: Path) -> dict:
    """One streamed epoch in a child process under a hard memory cap with no swap: a cgroup-v1 memory
    controller child group (``memory.limit_in_bytes`` and ``memory.memsw.limit_in_bytes`` = ``cap``). Returns
    the child's figures and the group's: peak usage (page cache included), hits of the limit, OOM kills."""
    import subprocess

    group = Path("/sys/fs/cgroup/memory") / f"cnnlab-bench-{os.getpid()}"
    group.mkdir()
    try:
        (group / "memory.limit_in_bytes").write_text(str(cap))
        memsw = group / "memory.memsw.limit_in_bytes"
        if memsw.exists():
            memsw.write_text(str(cap))  # memory + swap: no swap at all
        env = {**os.environ, "XDG_CACHE_HOME": str(cache_home), "PYTHONPATH": _src_path()}
        dropped = _drop_page_cache()  # so the epoch's reads are charged to the capped group, from disk
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, __file__, "_capped-epoch", str(root), str(size), model],
            env=env, capture_output=True, text=True,
            preexec_fn=lambda: (group / "cgroup.procs").write_text(str(os.getpid())),
        )  # fmt: skip
        wall = time.perf_counter() - t0
        stats = dict(line.split() for line in (group / "memory.stat").read_text().splitlines())
        result = {
            "cap_bytes": cap, "exit_code": proc.returncode, "wall_s": wall,
            "group_peak_bytes": int((group / "memory.max_usage_in_bytes").read_text()),
            "group_limit_hits": int((group / "memory.failcnt").read_text()),
            "oom_kills": int(dict(line.split() for line in (group / "memory.oom_control").read_text().splitlines()).get("oom_kill", 0)),
            "swap_bytes": int(stats.get("swap", 0)), "page_cache_dropped_first": dropped,
        }  # fmt: skip
        if proc.returncode == 0:
            result.update(json.loads(proc.stdout.strip().splitlines()[-1]))
        else:
            result["stderr_tail"] = proc.stderr[-2000:]
        return result
    finally:
        group.rmdir()


def _drop_page_cache() -> bool:
    """Write back and drop the kernel's page cache (root only); whether it was done."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1")
        return True
    except OSError:
        return False


def _bytes(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(text[:-1]) * units[text[-1].upper()]) if text[-1].upper() in units else int(text)


def large_main(argv: list[str]) -> None:
    """Issue 25's figures: cold decode vs a plain Pillow loop, warm start to the first batch, stream vs
    device at 64 px (folder recipe, identical weights), and a 224 px streamed epoch under a memory cap."""
    ap = argparse.ArgumentParser(prog="folder_bench.py large", description=large_main.__doc__)
    ap.add_argument("--n", type=int, default=60_000, help="JPEGs [60000]")
    ap.add_argument("--source-size", type=int, default=256, help="side of the generated JPEGs [256]")
    ap.add_argument(
        "--size", type=int, default=224, help="decoded size for decode, warm start and the capped epoch [224]"
    )
    ap.add_argument(
        "--folder", type=Path, required=True, help="where the JPEGs are made (reused if complete)"
    )
    ap.add_argument("--cache", type=Path, default=None, help="cache folder [<folder>.cache]")
    ap.add_argument("--cap", default="3G", help="memory cap of the 224 px epoch [3G]")
    ap.add_argument("--model", default=CAPPED_MODEL, help="model of the capped epoch")
    ap.add_argument("--rounds", type=int, default=2, help="stream/device epochs, taking turns [2]")
    ap.add_argument(
        "--decode-repeat", type=int, default=2, help="cold decodes and Pillow loops, taking turns [2]"
    )
    ap.add_argument(
        "--small-n", type=int, default=6000, help="images of the 64 px stream-vs-device folder [6000]"
    )
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: decode,warm,speed,capped")
    ap.add_argument("--out", type=Path, default=RESULTS.with_name("folder_large.json"))
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    cores = len(os.sched_getaffinity(0))
    cache = args.cache or args.folder.with_name(args.folder.name + ".cache")
    result: dict = {"machine": machine(), "machine_line": machine_line(), "cores": cores, "images": args.n}
    for folder, n in (
        (args.folder, args.n),
        (args.folder.with_name(args.folder.name + "-small"), args.small_n),
    ):
        if (sum(1 for _ in folder.rglob("*.jpg")) if folder.is_dir() else 0) != n:
            shutil.rmtree(folder, ignore_errors=True)
            print(f"generating {n:,} JPEGs of {args.source_size} px in {folder} ...", flush=True)
            result.setdefault("generate_s", []).append(generate_parallel(folder, n, args.source_size, cores))
    paths = sorted(str(p) for p in args.folder.rglob("*.jpg"))
    if "decode" not in skip:
        for p in paths:  # into the page cache, for both alike
            Path(p).read_bytes()
        pil, ours = float("inf"), float("inf")
        for _ in range(args.decode_repeat):  # taking turns; the best of each (other jobs load the machine)
            pil = min(pil, pillow_loop(paths, args.size, cores))
            ours = min(ours, cold_decode(args.folder, args.size, cache))
        result["decode"] = {"pillow_loop_s": pil, "cnnlab_cold_decode_s": ours, "ratio": pil / ours,
                            "repeat": args.decode_repeat,
                            "decoded_bytes": args.n * 3 * args.size**2, "size": args.size}  # fmt: skip
        print(
            f"cold decode: plain Pillow loop {pil:.1f} s, cnnlab {ours:.1f} s -> {pil / ours:.2f} (target >= 0.9)",
            flush=True,
        )
    if "warm" not in skip:
        result["warm"] = warm_first_batch(args.folder, args.size, cache)
        print(
            f"warm start to the first batch: {result['warm']['load_to_first_batch_s']:.2f} s (target <= 2 s)",
            flush=True,
        )
    if "speed" not in skip:
        small = args.folder.with_name(args.folder.name + "-small")
        result["speed"] = stream_vs_device(small, 64, args.rounds, cache)
        sp = result["speed"]
        print(f"64 px folder recipe: device {sp['device_images_per_s']:.0f} img/s, stream {sp['stream_images_per_s']:.0f} img/s "
              f"-> {sp['stream_over_device']:.2f} (target >= 0.9), identical weights: {sp['identical_weights']}", flush=True)  # fmt: skip
    if "capped" not in skip:
        result["capped"] = c = capped_epoch(args.folder, args.size, args.model, _bytes(args.cap), cache)
        print(f"{args.size} px streamed epoch under a {args.cap} cap: exit {c['exit_code']}, peak RSS "
              f"{c.get('peak_rss_bytes', 0) / 1e9:.2f} GB (target <= 2.5), swap {c['swap_bytes']}, OOM kills {c['oom_kills']}", flush=True)  # fmt: skip
    print(f"Machine: {machine_line()}; load average {os.getloadavg()[0]:.1f} on {cores} cores")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["large"]:
        large_main(sys.argv[2:])
    elif sys.argv[1:2] == ["_capped-epoch"]:
        capped_epoch_child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main()
