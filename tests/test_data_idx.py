"""IDX reader: good files round-trip; every kind of broken file is one CnnlabError naming the file."""

from __future__ import annotations

import gzip
import time

import numpy as np
import pytest

from cnnlab.data import read_idx
from cnnlab.errors import CnnlabError


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(7, 28, 28), dtype=np.uint8)


@pytest.mark.parametrize("name", ["imgs-idx3-ubyte.gz", "imgs-idx3-ubyte"])
def test_round_trip_gzip_and_raw(tmp_path, make_idx, images, name):
    out = read_idx(make_idx(tmp_path / name, images))
    assert out.dtype == np.uint8
    assert out.shape == (7, 28, 28)
    np.testing.assert_array_equal(out, images)


def test_labels_one_dimension(tmp_path, make_idx):
    labels = np.arange(10, dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(make_idx(tmp_path / "l.gz", labels)), labels)


def test_other_type_codes_come_back_native(tmp_path):
    # int32 (type 0x0C), big-endian on disk, must come back as native int32 values.
    values = np.array([1, -2, 70000], dtype=">i4")
    (tmp_path / "i.idx").write_bytes(bytes([0, 0, 0x0C, 1]) + (3).to_bytes(4, "big") + values.tobytes())
    out = read_idx(tmp_path / "i.idx")
    assert out.dtype == np.int32 and out.dtype.isnative
    assert out.tolist() == [1, -2, 70000]


def test_gzip_detected_from_content_not_name(tmp_path, make_idx, images):
    path = make_idx(tmp_path / "no-suffix", images, compress=True)
    np.testing.assert_array_equal(read_idx(path), images)


def test_truncated_gzip(tmp_path, make_idx, images):
    path = make_idx(tmp_path / "t.gz", images)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CnnlabError, match=r"t\.gz.*truncated"):
        read_idx(path)


def test_corrupt_gzip_body(tmp_path, make_idx, images):
    path = make_idx(tmp_path / "c.gz", images)
    data = bytearray(path.read_bytes())
    data[20:40] = b"\xff" * 20  # inside the deflate stream
    path.write_bytes(bytes(data))
    with pytest.raises(CnnlabError, match=r"c\.gz"):
        read_idx(path)


@pytest.mark.parametrize("compress", [True, False])
def test_wrong_magic(tmp_path, make_idx, images, compress):
    path = make_idx(tmp_path / "m.idx", images, compress=False)
    data = b"\x12\x34" + path.read_bytes()[2:]
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(CnnlabError, match=r"m\.idx.*not an IDX file.*0x12340803"):
        read_idx(path)


def test_unknown_type_code(tmp_path):
    (tmp_path / "u").write_bytes(bytes([0, 0, 0x07, 1]) + (1).to_bytes(4, "big") + b"\x00")
    with pytest.raises(CnnlabError, match="not an IDX file"):
        read_idx(tmp_path / "u")


@pytest.mark.parametrize("delta", [-1, 1])
def test_payload_length_must_match_header(tmp_path, make_idx, images, delta):
    path = make_idx(tmp_path / "w.gz", images)
    raw = gzip.decompress(path.read_bytes())
    raw = raw[:-1] if delta < 0 else raw + b"\x00"
    path.write_bytes(gzip.compress(raw))
    with pytest.raises(CnnlabError, match=r"w\.gz.*needs exactly 5,488"):
        read_idx(path)


def test_header_cut_short(tmp_path):
    (tmp_path / "h").write_bytes(bytes([0, 0, 8, 3]) + (5).to_bytes(4, "big"))
    with pytest.raises(CnnlabError, match="ends inside its IDX header"):
        read_idx(tmp_path / "h")
    (tmp_path / "e").write_bytes(b"")
    with pytest.raises(CnnlabError, match="too short"):
        read_idx(tmp_path / "e")


def test_gz_name_but_not_gzip(tmp_path):
    path = tmp_path / "page.gz"
    path.write_bytes(b"<html><body>404 Not Found</body></html>")
    with pytest.raises(CnnlabError, match=r"page\.gz.*not a gzip file"):
        read_idx(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(CnnlabError, match="does not exist"):
        read_idx(tmp_path / "nope.gz")
    with pytest.raises(CnnlabError, match="is a folder"):
        read_idx(tmp_path)


@pytest.mark.slow
def test_genuine_files(fmnist_dir):
    start = time.perf_counter()
    images = read_idx(fmnist_dir / "train-images-idx3-ubyte.gz")
    elapsed = time.perf_counter() - start
    labels = read_idx(fmnist_dir / "train-labels-idx1-ubyte.gz")
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (60000,)
    assert elapsed < 1.5, f"reading the 47 MB train images took {elapsed:.2f}s"
    assert read_idx(fmnist_dir / "t10k-images-idx3-ubyte.gz").shape == (10000, 28, 28)
