"""load_data: where files are found, checksums, the two split protocols, limit; real Fashion-MNIST facts."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from cnnlab.data import DATASETS, Dataset, Split, list_datasets, load_data
from cnnlab.data.split import split_indices, stratified_split, tutorial_split
from cnnlab.data.store import RemoteFile
from cnnlab.errors import CnnlabError

FILES = [f.name for f in DATASETS["fashion_mnist"].files]


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    # Never read or write the user's real cache, whatever the machine's environment says.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CNNLAB_DATA_DIR", raising=False)


@pytest.fixture(scope="module")
def tutorial(fmnist_dir) -> Dataset:
    return load_data("fashion_mnist", split="tutorial", seed=0, data_dir=fmnist_dir)


@pytest.fixture(scope="module")
def default(fmnist_dir) -> Dataset:
    return load_data("fashion_mnist", seed=0, data_dir=fmnist_dir)


# --- a tiny fake dataset, served from file:// URLs, for the download path -------------------------------


@pytest.fixture
def fake(tmp_path, make_idx, monkeypatch):
    """Replace fashion_mnist by 200 train / 50 test fake images whose mirror is a local folder."""
    rng = np.random.default_rng(0)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    arrays = {
        FILES[0]: rng.integers(0, 256, (200, 28, 28)),
        FILES[1]: np.arange(200) % 10,
        FILES[2]: rng.integers(0, 256, (50, 28, 28)),
        FILES[3]: np.arange(50) % 10,
    }
    remote = [
        RemoteFile(n, sha256=hashlib.sha256(make_idx(mirror / n, a).read_bytes()).hexdigest())
        for n, a in arrays.items()
    ]
    spec = replace(
        DATASETS["fashion_mnist"],
        mirrors=(f"{(tmp_path / 'nowhere').as_uri()}/", f"{mirror.as_uri()}/"),
        train_images=remote[0],
        train_labels=remote[1],
        test_images=remote[2],
        test_labels=remote[3],
        train_size=200,
        test_size=50,
        val_size=50,
    )
    monkeypatch.setitem(DATASETS, "fashion_mnist", spec)
    return mirror


def test_downloads_into_cache_then_works_offline(fake, tmp_path):
    data = load_data("fashion_mnist")
    cache = tmp_path / "cache" / "cnnlab" / "fashion_mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(FILES)  # no .part files
    assert (len(data.train), len(data.val), len(data.test)) == (150, 50, 50)
    assert data.describe()["split_description"].endswith("official test set; seed 0")
    for f in FILES:
        (fake / f).unlink()  # the mirror is gone: the cache must be enough
    assert len(load_data("fashion_mnist", download=False).train) == 150


def test_no_download_and_empty_cache(fake):
    with pytest.raises(CnnlabError, match="not in the cache folder.*download=False"):
        load_data("fashion_mnist", download=False)


def test_corrupt_cached_file_is_refused(fake, tmp_path):
    load_data("fashion_mnist")
    (tmp_path / "cache" / "cnnlab" / "fashion_mnist" / FILES[3]).write_bytes(b"\x1f\x8b junk")
    with pytest.raises(CnnlabError, match=f"{FILES[3]}' does not match the official checksum"):
        load_data("fashion_mnist")


def test_bad_limit_fails_before_any_download(fake, tmp_path):
    with pytest.raises(CnnlabError, match="from 1 to 150"):
        load_data("fashion_mnist", limit=151)
    assert not (tmp_path / "cache").exists()


def test_file_contents_must_match_the_registry(fake, monkeypatch):
    # A registry entry whose sizes disagree with its (checksum-valid) files fails loudly, not silently.
    monkeypatch.setitem(DATASETS, "fashion_mnist", replace(DATASETS["fashion_mnist"], train_size=300))
    with pytest.raises(CnnlabError, match=r"holds uint8 \(200, 28, 28\), expected .*\(300, 28, 28\)"):
        load_data("fashion_mnist")


# --- finding the files ------------------------------------------------------------------------------------


def test_data_dir_with_files_or_parent(fake, tmp_path):
    direct = load_data("fashion_mnist", data_dir=fake, limit=10)
    for sub in ("fashion-mnist", "fashion_mnist"):  # the files in a sub-folder named for the dataset
        folder = tmp_path / f"root-{sub}" / sub
        folder.mkdir(parents=True)
        for f in FILES:
            (folder / f).symlink_to(fake / f)
        parent = load_data("fashion_mnist", data_dir=str(folder.parent), limit=10)
        torch.testing.assert_close(direct.train.images, parent.train.images)
    assert not (tmp_path / "cache").exists()  # found: nothing downloaded


def test_env_var_is_used(fake, monkeypatch, tmp_path):
    monkeypatch.setenv("CNNLAB_DATA_DIR", str(fake))
    assert len(load_data("fashion_mnist", limit=5).test) == 5
    assert not (tmp_path / "cache").exists()  # read from there: nothing downloaded, no cache folder


def test_missing_and_empty_data_dir(tmp_path, monkeypatch):
    with pytest.raises(CnnlabError, match=r"Data folder '.*nope' \(from data_dir\) does not exist"):
        load_data("fashion_mnist", data_dir=tmp_path / "nope")
    monkeypatch.setenv("CNNLAB_DATA_DIR", str(tmp_path))
    with pytest.raises(CnnlabError, match=r"No fashion_mnist files in .*CNNLAB_DATA_DIR.*train-images-idx3"):
        load_data("fashion_mnist")
    assert not (tmp_path / "cache").exists()  # a given folder is never downloaded into


def test_one_file_missing_is_named(fake, tmp_path):
    for f in FILES[:3]:
        (tmp_path / f).symlink_to(fake / f)
    with pytest.raises(CnnlabError, match=rf"'{tmp_path}' has no t10k-labels-idx1-ubyte\.gz"):
        load_data("fashion_mnist", data_dir=tmp_path)


def test_corrupt_or_foreign_file(fake, tmp_path):
    for f in FILES:
        (tmp_path / f).symlink_to(fake / f)
    (tmp_path / FILES[1]).unlink()
    (tmp_path / FILES[1]).write_bytes((fake / FILES[1]).read_bytes()[:-10])  # truncated
    with pytest.raises(
        CnnlabError, match=r"train-labels-idx1-ubyte\.gz' does not match the official checksum"
    ):
        load_data("fashion_mnist", data_dir=tmp_path)
    # another dataset's files (here: these fake ones as MNIST): the checksum says so instead of training
    with pytest.raises(CnnlabError, match="official checksum for mnist"):
        load_data("mnist", data_dir=fake)


def test_unknown_names_and_bad_arguments(tmp_path):
    with pytest.raises(
        CnnlabError, match=r"^Unknown dataset 'x'\. Available: fashion_mnist, mnist, cifar10, or a"
    ):
        load_data("x")
    # checked before any file is looked for: the (empty) folder is never reached
    with pytest.raises(CnnlabError, match="Unknown split 'official'. Available: tutorial, default"):
        load_data("fashion_mnist", split="official", data_dir=tmp_path)
    for seed in (-1, 1.5, "0", 2**32):
        with pytest.raises(CnnlabError, match="seed must be an integer"):
            load_data("fashion_mnist", seed=seed, data_dir=tmp_path)


def test_list_datasets_is_json():
    entries = list_datasets()
    assert [e["name"] for e in entries] == ["fashion_mnist", "mnist", "cifar10"]
    fm = entries[0]
    assert fm["classes"][0] == "T-shirt/top" and fm["classes"][-1] == "Ankle boot"
    assert (fm["train_size"], fm["test_size"], fm["input_shape"]) == (60000, 10000, [1, 28, 28])
    assert fm["urls"] == ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
    assert entries[1]["classes"] == [str(d) for d in range(10)]
    json.dumps(entries)


# --- the splits as pure functions -------------------------------------------------------------------------


def test_tutorial_split_sizes_cover_everything_once():
    train, val = tutorial_split(60000, seed=0)
    assert (len(train), len(val)) == (45000, 15000)
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(60000))


@pytest.mark.parametrize("split", ["tutorial", "default"])
def test_split_deterministic_per_seed_and_differs_across_seeds(split):
    labels = np.repeat(np.arange(10), 600)
    a_train, a_val = split_indices(split, labels, 3, val_size=500)
    b_train, b_val = split_indices(split, labels, 3, val_size=500)
    c_train, c_val = split_indices(split, labels, 4, val_size=500)
    assert np.array_equal(a_train, b_train) and np.array_equal(a_val, b_val)
    assert not np.array_equal(np.sort(a_val), np.sort(c_val))
    assert not np.intersect1d(a_train, a_val).size
    assert len(a_train) + len(a_val) == 6000


def test_stratified_counts_with_uneven_classes():
    labels = np.repeat(np.arange(3), [5923, 6742, 47335])  # any proportions: totals still exact
    train, val = stratified_split(labels, 5000, seed=0)
    counts = np.bincount(labels[val])
    assert counts.sum() == 5000 and len(train) == 55000
    np.testing.assert_allclose(counts, 5000 * np.bincount(labels) / 60000, atol=1)
    assert len(set(labels[train[:50]].tolist())) > 1  # shuffled, not grouped by class


# --- the real Fashion-MNIST -------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_split_sizes_and_types(tutorial, default):
    assert tuple(map(len, (tutorial.train, tutorial.val, tutorial.test))) == (45000, 15000, 10000)
    assert tuple(map(len, (default.train, default.val, default.test))) == (55000, 5000, 10000)
    for split in (default.train, default.val, default.test):
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (1, 28, 28)
        assert split.labels.dtype == torch.int64
    assert default.input_shape == (1, 28, 28) and default.num_classes == 10
    assert default.classes[0] == "T-shirt/top"
    assert torch.bincount(default.val.labels).tolist() == [500] * 10
    assert torch.equal(tutorial.test.images, default.test.images)  # the official test set either way
    described = default.describe()
    assert described["sizes"] == {"train": 55000, "val": 5000, "test": 10000}
    json.dumps(described)


@pytest.mark.slow
def test_real_pixel_statistics_and_labels(default):
    official = torch.cat([default.train.images, default.val.images])
    assert official.double().mean().item() == pytest.approx(72.94, abs=0.01)
    labels = torch.cat([default.train.labels, default.val.labels])
    assert torch.bincount(labels).tolist() == [6000] * 10
    assert default.test.labels.min() == 0 and default.test.labels.max() == 9
    scaled = default.test.float()
    assert scaled.dtype == torch.float32 and scaled.min() >= 0 and scaled.max() <= 1


@pytest.mark.slow
def test_real_split_has_no_overlap_and_depends_on_seed(default, fmnist_dir):
    from cnnlab.data import read_idx

    labels = read_idx(fmnist_dir / FILES[1])
    train, val = split_indices("default", labels, 0)
    assert not np.intersect1d(train, val).size
    # The loaded splits are exactly these indices of the official training set.
    assert torch.equal(default.val.labels, torch.from_numpy(labels[val].astype(np.int64)))
    other = load_data("fashion_mnist", seed=1, data_dir=fmnist_dir)
    assert not torch.equal(other.val.labels, default.val.labels)


def test_limit(fake):
    data = load_data("fashion_mnist", split="tutorial", limit=40, data_dir=fake)
    assert tuple(map(len, (data.train, data.val, data.test))) == (40, 40, 40)
    assert len(torch.unique(data.train.labels)) >= 8  # taken from the shuffled split: classes mixed
    assert data.describe()["limit"] == 40
    assert len(load_data("fashion_mnist", split="tutorial", limit=150, data_dir=fake).train) == 150
    for bad in (0, -5, 151, 2.0, True):
        with pytest.raises(CnnlabError, match="limit must be an integer from 1 to 150"):
            load_data("fashion_mnist", split="tutorial", limit=bad, data_dir=fake)


@pytest.mark.slow
def test_load_is_fast(fmnist_dir):
    start = time.perf_counter()
    load_data("fashion_mnist", data_dir=fmnist_dir)
    assert time.perf_counter() - start < 3.0  # about 0.5 s on a laptop core


def test_split_validates_its_tensors():
    with pytest.raises(CnnlabError, match="uint8"):
        Split(torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(CnnlabError, match="2 images but 3 labels"):
        Split(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64))
