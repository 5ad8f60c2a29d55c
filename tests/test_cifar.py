"""CIFAR-10 binary reader, checksum-verified download from a local server, and safe extraction.

The batches are generated here (20 records per file instead of 10,000), packed as the real archive is.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import tarfile
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cnnlab.data import list_datasets, load_data
from cnnlab.data.cifar import CIFAR10, RECORD, extract_cifar, load_cifar10, read_cifar_batch
from cnnlab.data.store import RemoteFile
from cnnlab.errors import CnnlabError

N = 20  # records per generated batch file


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CNNLAB_DATA_DIR", raising=False)


def batch_bytes(seed: int, n: int = N) -> tuple[bytes, np.ndarray, np.ndarray]:
    """n records: labels cycling 0..9, and images whose R, G, B planes are recognisable."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) + seed) % 10
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    records = np.concatenate([labels[:, None].astype(np.uint8), images.reshape(n, -1)], axis=1)
    return records.tobytes(), images, labels


def small_spec(**changes):
    return replace(CIFAR10, records_per_file=N, val_size=10, **changes)


def write_batches(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for i, name in enumerate(CIFAR10.members):
        raw, images, labels = batch_bytes(i)
        (folder / name).write_bytes(raw)
        truth[name] = (images, labels)
    return truth


def add_member(tar: tarfile.TarFile, name: str, data: bytes, **kw) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in kw.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data) if info.isreg() else None)


def make_archive(path: Path, *, extra=()) -> str:
    """A cifar-10-binary.tar.gz like the real one (plus `extra` members); returns its md5."""
    with tarfile.open(path, "w:gz") as tar:
        add_member(tar, "cifar-10-batches-bin/batches.meta.txt", "\n".join(CIFAR10.classes).encode())
        for i, name in enumerate(CIFAR10.members):
            add_member(tar, f"cifar-10-batches-bin/{name}", batch_bytes(i)[0])
        add_member(tar, "cifar-10-batches-bin/readme.html", b"<html></html>")
        for name, data, kw in extra:
            add_member(tar, name, data, **kw)
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def server(tmp_path):
    """A local HTTP server over tmp_path/'www'; yields (base URL, folder)."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    # a short poll interval: shutdown() waits up to one interval (0.5 s by default) per server
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", root
    httpd.shutdown()
    httpd.server_close()


# --- the reader ---------------------------------------------------------------------------------


def test_read_batch_layout_and_errors():
    raw, images, labels = batch_bytes(3)
    x, y = read_cifar_batch(raw, "b.bin")
    assert x.shape == (N, 3, 32, 32) and x.dtype == np.uint8
    assert np.array_equal(x, images) and np.array_equal(y, labels)
    # channel planes: byte 1 + 1024*c + 32*row + col of a record
    rec = np.frombuffer(raw, np.uint8)[RECORD : 2 * RECORD]
    assert x[1, 2, 5, 7] == rec[1 + 2 * 1024 + 5 * 32 + 7]
    with pytest.raises(CnnlabError, match="not a whole number of 3,073-byte records"):
        read_cifar_batch(raw[:-1], "cut.bin")
    with pytest.raises(CnnlabError, match="not a whole number"):
        read_cifar_batch(b"", "empty.bin")
    bad = bytearray(raw)
    bad[RECORD] = 10
    with pytest.raises(CnnlabError, match="has label 10; CIFAR-10 labels are 0..9"):
        read_cifar_batch(bytes(bad), "bad.bin")


def test_listed_as_a_builtin():
    info = {d["name"]: d for d in list_datasets()}["cifar10"]
    assert (
        info["input_shape"] == [3, 32, 32] and info["classes"][0] == "airplane" and len(info["classes"]) == 10
    )
    assert (info["train_size"], info["test_size"]) == (50000, 10000)
    assert CIFAR10.archive.md5 == "c32a1d4ab5d03f1284b67883e8d87530"


# --- loading from a folder ----------------------------------------------------------------------


@pytest.mark.parametrize("sub", ["", "cifar-10-batches-bin"])
def test_load_from_data_dir_with_bin_files(tmp_path, sub):
    truth = write_batches(tmp_path / "d" / sub if sub else tmp_path / "d")
    data = load_cifar10(data_dir=tmp_path / "d", spec=small_spec(), seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (90, 10, 20)
    assert data.input_shape == (3, 32, 32) and data.classes == CIFAR10.classes
    assert data.describe()["split_description"] == (
        "official train minus 5,000 validation images stratified by class (45,000/5,000); official test set; seed 0"
    )
    assert data.split_files() is None  # a built-in's images are records of its files, not files
    assert np.array_equal(data.test.images.numpy(), truth["test_batch.bin"][0])
    assert np.bincount(data.val.labels.numpy(), minlength=10).tolist() == [1] * 10  # stratified
    x = data.train.images.numpy() / 255.0
    np.testing.assert_allclose(data.mean, x.mean(axis=(0, 2, 3)), atol=1e-5)
    # every training image is one of the five training batches' images
    train_all = np.concatenate([truth[m][0] for m in CIFAR10.train_files])
    joined = np.concatenate([data.train.images.numpy(), data.val.images.numpy()])
    assert sorted(map(bytes, joined.reshape(100, -1))) == sorted(map(bytes, train_all.reshape(100, -1)))
    tut = load_cifar10(data_dir=tmp_path / "d", spec=small_spec(), split="tutorial", limit=5)
    assert (len(tut.train), len(tut.val), len(tut.test)) == (5, 5, 5)
    gray = load_cifar10(data_dir=tmp_path / "d", spec=small_spec(), channels=1, image_size=16)
    assert gray.input_shape == (1, 16, 16) and len(gray.mean) == 1


def test_load_from_data_dir_with_only_the_archive_writes_nothing_there(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    md5 = make_archive(d / "cifar-10-binary.tar.gz")
    spec = small_spec(archive=RemoteFile("cifar-10-binary.tar.gz", md5=md5))
    before = sorted(p.name for p in d.iterdir())
    data = load_cifar10(data_dir=d, spec=spec)
    assert len(data.test) == N and sorted(p.name for p in d.iterdir()) == before
    wrong = small_spec(archive=RemoteFile("cifar-10-binary.tar.gz", md5="0" * 32))
    with pytest.raises(CnnlabError, match="does not match the official checksum for cifar10"):
        load_cifar10(data_dir=d, spec=wrong)


def test_missing_files_and_bad_sizes(tmp_path):
    with pytest.raises(CnnlabError, match="cifar10 not found in data_dir .*cifar-10-binary.tar.gz"):
        load_data("cifar10", data_dir=tmp_path)
    write_batches(tmp_path / "d")
    with pytest.raises(CnnlabError, match="holds 20 images, expected 10,000"):
        load_data("cifar10", data_dir=tmp_path / "d")
    with pytest.raises(CnnlabError, match="limit must be an integer from 1 to 45,000"):
        load_data("cifar10", limit=0)
    with pytest.raises(CnnlabError, match="Unknown split"):
        load_data("cifar10", split="80/10/10")
    with pytest.raises(CnnlabError, match="is not in the cache folder .* and download=False"):
        load_cifar10(spec=small_spec(), download=False)


# --- download and extraction --------------------------------------------------------------------


def test_download_verify_extract_then_offline(tmp_path, server):
    url, www = server
    md5 = make_archive(www / "cifar-10-binary.tar.gz")
    spec = small_spec(mirrors=(url,), archive=RemoteFile("cifar-10-binary.tar.gz", md5=md5))
    data = load_cifar10(spec=spec)
    assert len(data.train) == 90
    cache = tmp_path / "cache" / "cnnlab" / "cifar10"
    assert sorted(p.name for p in (cache / "cifar-10-batches-bin").iterdir()) == sorted(CIFAR10.members)
    assert not (cache / "cifar-10-binary.tar.gz").exists()  # extracted, then removed
    (www / "cifar-10-binary.tar.gz").unlink()  # "offline": the second load needs no download
    again = load_cifar10(spec=spec)
    assert np.array_equal(again.test.images.numpy(), data.test.images.numpy())


def test_download_with_a_wrong_checksum_leaves_nothing(tmp_path, server):
    url, www = server
    make_archive(www / "cifar-10-binary.tar.gz")
    spec = small_spec(mirrors=(url,), archive=RemoteFile("cifar-10-binary.tar.gz", md5="0" * 32))
    with pytest.raises(CnnlabError, match="does not match its checksum"):
        load_cifar10(spec=spec)
    cache = tmp_path / "cache" / "cnnlab" / "cifar10"
    assert not cache.exists() or not any(cache.rglob("*"))
    with pytest.raises(CnnlabError, match="HTTP 404"):
        load_cifar10(spec=small_spec(mirrors=(url + "missing/",)))


def test_download_over_file_url(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    md5 = make_archive(mirror / "cifar-10-binary.tar.gz")
    spec = small_spec(mirrors=(mirror.as_uri() + "/",), archive=RemoteFile("cifar-10-binary.tar.gz", md5=md5))
    assert len(load_cifar10(spec=spec).test) == N


def test_extraction_ignores_traversal_and_refuses_links(tmp_path):
    outside = tmp_path / "evil.bin"
    archive = tmp_path / "a.tar.gz"
    make_archive(
        archive,
        extra=[
            ("../evil.bin", b"x", {}),
            (str(tmp_path / "abs_evil.bin"), b"x", {}),
            ("cifar-10-batches-bin/../../evil2.bin", b"x", {}),
        ],
    )
    dest = tmp_path / "out" / "bins"
    extract_cifar(archive, dest, small_spec())
    assert sorted(p.name for p in dest.iterdir()) == sorted(CIFAR10.members)
    assert (
        not outside.exists()
        and not (tmp_path / "abs_evil.bin").exists()
        and not (tmp_path / "evil2.bin").exists()
    )

    # a link in place of a batch file is refused, and nothing is written
    linked = tmp_path / "linked.tar.gz"
    with tarfile.open(linked, "w:gz") as tar:
        for i, name in enumerate(CIFAR10.members):
            if name == "data_batch_1.bin":
                add_member(
                    tar, f"cifar-10-batches-bin/{name}", b"", type=tarfile.SYMTYPE, linkname="/etc/passwd"
                )
            else:
                add_member(tar, f"cifar-10-batches-bin/{name}", batch_bytes(i)[0])
    dest2 = tmp_path / "out2"
    with pytest.raises(CnnlabError, match="is not a regular file"):
        extract_cifar(linked, dest2, small_spec())
    assert not dest2.exists() or not any(dest2.iterdir())


def test_archive_errors(tmp_path):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not a tar")
    with pytest.raises(CnnlabError, match="not a readable tar.gz archive"):
        extract_cifar(bad, tmp_path / "o", small_spec())
    partial = tmp_path / "partial.tar.gz"
    with tarfile.open(partial, "w:gz") as tar:
        add_member(tar, "cifar-10-batches-bin/test_batch.bin", batch_bytes(0)[0])
    with pytest.raises(CnnlabError, match="lacks cifar-10-batches-bin/data_batch_1.bin"):
        extract_cifar(partial, tmp_path / "o", small_spec())
    wrong_size = tmp_path / "size.tar.gz"
    with tarfile.open(wrong_size, "w:gz") as tar:
        add_member(tar, "cifar-10-batches-bin/test_batch.bin", batch_bytes(0, n=3)[0])
    with pytest.raises(CnnlabError, match="has 9,219 bytes, expected 61,460"):
        extract_cifar(wrong_size, tmp_path / "o", small_spec())
