# ---------------------------------------------------------------------------------------------------------
# cnnlab.data fixtures: the genuine Fashion-MNIST files and a writer for small IDX files.
# ---------------------------------------------------------------------------------------------------------
import gzip as _gzip
import os as _os
from pathlib import Path as _Path

import numpy as _np
import pytest as _pytest


def _fmnist_candidates() -> list[_Path]:
    # In CI the repo is cloned somewhere else with `shared/` beside it: ../shared/data/fashion-mnist.
    # $CNNLAB_DATA_DIR, the variable the README gives (CNNLAB_TEST_DATA, its old name, still works)
    found = [_Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fashion-mnist"]
    for var in ("CNNLAB_TEST_DATA", "CNNLAB_DATA_DIR"):
        if _os.environ.get(var):
            env = _Path(_os.environ[var]).expanduser()
            found.insert(0, env / "fashion-mnist" if (env / "fashion-mnist").is_dir() else env)
    return found


@_pytest.fixture(scope="session")
def fmnist_dir() -> _Path:
    """Folder holding the four genuine Fashion-MNIST .gz files. Without them the test is skipped on a
    developer's machine, and fails under CI (CI=true), where a missing dataset is a broken setup."""
    for folder in _fmnist_candidates():
        if (folder / "train-images-idx3-ubyte.gz").is_file():
            return folder
    why = "genuine Fashion-MNIST files not found (set CNNLAB_DATA_DIR to their folder)"
    if _os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        _pytest.fail(why)
    _pytest.skip(why)


def write_idx(path: _Path, array: _np.ndarray, *, compress: bool | None = None) -> _Path:
    """Write `array` (uint8) as an IDX file; gzip it when `compress` or when the name ends in .gz."""
    array = _np.ascontiguousarray(array, dtype=_np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.tobytes()
    if compress if compress is not None else path.name.endswith(".gz"):
        data = _gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path


@_pytest.fixture
def make_idx():
    """`make_idx(path, array)` writes a small IDX file (gzip if the name ends in .gz) and returns its path."""
    return write_idx


# ---------------------------------------------------------------------------------------------------------
# core fixtures: a small real Fashion-MNIST subset, and the CLI run in-process.
# ---------------------------------------------------------------------------------------------------------


@_pytest.fixture(scope="session")
def fmnist_small(fmnist_dir):
    """The tutorial split of the real Fashion-MNIST, capped at 2,000 images per split."""
    from cnnlab.data import load_data

    return load_data("fashion_mnist", split="tutorial", seed=0, data_dir=fmnist_dir, limit=2000)


def synthetic_dataset(
    n_train: int = 200,
    n_val: int = 100,
    n_test: int = 100,
    *,
    classes: int = 10,
    shape: tuple[int, int, int] = (1, 28, 28),
    seed: int = 0,
):
    """A small learnable dataset made on the spot: class k is a bright bar at angle k*180/classes degrees
    through a random point near the centre, with noise. Same shapes and dtypes as the real datasets."""
    import torch

    from cnnlab.data import Dataset, Split

    g = torch.Generator().manual_seed(seed)
    c, h, w = shape

    def split(n: int) -> Split:
        labels = torch.arange(n) % classes
        labels = labels[torch.randperm(n, generator=g)]
        angle = labels.double() * (torch.pi / classes)
        yy, xx = torch.meshgrid(
            torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
        )
        cy = h / 2 + (torch.rand(n, generator=g, dtype=torch.float64) - 0.5) * h / 4
        cx = w / 2 + (torch.rand(n, generator=g, dtype=torch.float64) - 0.5) * w / 4
        dist = (xx - cx[:, None, None]) * torch.sin(angle)[:, None, None] - (
            yy - cy[:, None, None]
        ) * torch.cos(angle)[:, None, None]
        bar = (dist.abs() < 1.6).double() * 200
        noise = torch.rand(n, h, w, generator=g, dtype=torch.float64) * 55
        img = (bar + noise).clamp(0, 255).to(torch.uint8)[:, None].expand(n, c, h, w).contiguous()
        return Split(img, labels.to(torch.int64))

    return Dataset(
        name="synthetic",
        classes=tuple(f"angle{k}" for k in range(classes)),
        train=split(n_train),
        val=split(n_val),
        test=split(n_test),
        split="default",
        seed=seed,
    )


@_pytest.fixture(scope="session")
def tiny():
    """200 training images (batch 50: 4 steps per epoch), 100 validation and 100 test images, 28x28x1 in
    10 classes, generated (no files needed): for the engine's unit tests."""
    return synthetic_dataset()


@_pytest.fixture
def one_thread():
    """torch on one thread for the test (bit-exact comparisons), restored afterwards."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@_pytest.fixture
def run_cli(capsys):
    """`run_cli(*args)` -> (exit code, stdout, stderr) of `cnnlab ARGS` run in this process."""
    from cnnlab.cli import main

    def run(*args: str):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


def pytest_collection_modifyitems(config, items):
    """Browser tests drive Chromium over runs really trained on Fashion-MNIST: they count as slow, so
    `-m "not slow"` is the quick loop (the whole suite, CI's, runs them)."""
    for item in items:
        if item.get_closest_marker("browser") and not item.get_closest_marker("slow"):
            item.add_marker(_pytest.mark.slow)
