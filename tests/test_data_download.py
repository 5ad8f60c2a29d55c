"""download_file against a local HTTP server: verified files appear atomically, failures leave nothing."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
from dataclasses import replace

import numpy as np
import pytest

from cnnlab.data import DATASETS, download_file, read_idx
from cnnlab.data.store import RemoteFile, fetch_files
from cnnlab.errors import CnnlabError

PAYLOAD_ARRAY = np.random.default_rng(1).integers(0, 256, size=(50, 28, 28), dtype=np.uint8)
HEADER = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (50, 28, 28))
PAYLOAD = gzip.compress(HEADER + PAYLOAD_ARRAY.tobytes(), mtime=0)
MD5 = hashlib.md5(PAYLOAD).hexdigest()
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Routes: /good/<f> serves PAYLOAD; /cut/<f> announces it all and hangs up halfway; others 404."""

    def do_GET(self):
        self.server.hits.append(self.path)
        if self.path.startswith("/good/"):
            self._send(PAYLOAD, len(PAYLOAD))
        elif self.path.startswith("/cut/"):
            self._send(PAYLOAD[: len(PAYLOAD) // 2], len(PAYLOAD))
            self.close_connection = True
        elif self.path.startswith("/nolength/"):
            # No Content-Length, body cut: only the checksum can catch this.
            self.send_response(200)
            self.end_headers()
            self.wfile.write(PAYLOAD[:1000])
            self.close_connection = True
        else:
            self.send_error(404, "Not Found")

    def _send(self, body: bytes, length: int) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.hits = []
    # a short poll interval: shutdown() waits up to one interval (0.5 s by default) per server
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_good_download_with_both_checksums(server, tmp_path):
    _, base = server
    dest = tmp_path / "sub" / "x-idx3-ubyte.gz"
    out = download_file(f"{base}/good/x", dest, md5=MD5, sha256=SHA256, timeout=5)
    assert out == dest and dest.read_bytes() == PAYLOAD
    np.testing.assert_array_equal(read_idx(dest), PAYLOAD_ARRAY)
    assert _leftovers(dest.parent) == ["x-idx3-ubyte.gz"]  # no .part left behind


def test_progress_bar_does_not_change_result(server, tmp_path):
    _, base = server
    dest = download_file(f"{base}/good/x", tmp_path / "p.gz", md5=MD5, progress=True, timeout=5)
    assert dest.read_bytes() == PAYLOAD


@pytest.mark.parametrize("kind", ["md5", "sha256"])
def test_bad_checksum_leaves_nothing(server, tmp_path, kind):
    _, base = server
    url = f"{base}/good/x"
    with pytest.raises(CnnlabError, match=rf"{url}.*{kind}") as info:
        download_file(
            url, tmp_path / "x.gz", **{kind: "0" * len(MD5 if kind == "md5" else SHA256)}, timeout=5
        )
    assert "\n" not in str(info.value)
    assert _leftovers(tmp_path) == []


def test_existing_file_survives_failed_download(server, tmp_path):
    _, base = server
    dest = tmp_path / "x.gz"
    dest.write_bytes(b"old")
    with pytest.raises(CnnlabError):
        download_file(f"{base}/good/x", dest, md5="0" * 32, timeout=5)
    assert dest.read_bytes() == b"old"  # replaced only by a verified file
    assert _leftovers(tmp_path) == ["x.gz"]


def test_connection_cut_mid_stream(server, tmp_path):
    _, base = server
    url = f"{base}/cut/x"
    with pytest.raises(CnnlabError, match=rf"{url}"):
        download_file(url, tmp_path / "x.gz", timeout=5)  # no checksum: the length alone must catch it
    assert _leftovers(tmp_path) == []


def test_cut_without_length_caught_by_checksum(server, tmp_path):
    _, base = server
    with pytest.raises(CnnlabError, match="checksum"):
        download_file(f"{base}/nolength/x", tmp_path / "x.gz", md5=MD5, timeout=5)
    assert _leftovers(tmp_path) == []


def test_http_404_names_url(server, tmp_path):
    _, base = server
    url = f"{base}/missing/x.gz"
    with pytest.raises(CnnlabError, match=rf"{url} failed: HTTP 404"):
        download_file(url, tmp_path / "x.gz", timeout=5)
    assert _leftovers(tmp_path) == []


def test_unreachable_host_and_bad_url(tmp_path):
    # Port 9 on localhost: nothing listens there, so the connection is refused at once.
    with pytest.raises(CnnlabError, match=r"http://127\.0\.0\.1:9/x"):
        download_file("http://127.0.0.1:9/x", tmp_path / "x.gz", timeout=5)
    with pytest.raises(CnnlabError, match="not-a-url"):
        download_file("not-a-url", tmp_path / "x.gz")
    assert _leftovers(tmp_path) == []


def test_mirrors_first_404_then_second_works(server, tmp_path):
    """load_data tries the mirrors in order: a 404 on the first is not fatal."""
    httpd, base = server
    spec = _fake_spec(mirrors=(f"{base}/missing/", f"{base}/good/"))
    httpd.hits.clear()
    folder = tmp_path / "cnnlab" / "fashion_mnist"
    fetch_files(spec.name, [spec.train_images], spec.mirrors, folder, expected="x-idx3-ubyte.gz")
    assert httpd.hits == [f"/missing/{spec.train_images.name}", f"/good/{spec.train_images.name}"]
    assert (folder / spec.train_images.name).read_bytes() == PAYLOAD
    assert _leftovers(folder) == [spec.train_images.name]


def test_all_mirrors_fail_names_every_url(server, tmp_path):
    _, base = server
    spec = _fake_spec(mirrors=(f"{base}/missing/", f"{base}/cut/"))
    with pytest.raises(CnnlabError) as info:
        fetch_files(spec.name, [spec.train_images], spec.mirrors, tmp_path, expected="x-idx3-ubyte.gz")
    message = str(info.value)
    assert f"{base}/missing/" in message and f"{base}/cut/" in message and "\n" not in message
    assert _leftovers(tmp_path) == []


def _fake_spec(mirrors):
    return replace(
        DATASETS["fashion_mnist"], mirrors=mirrors, train_images=RemoteFile("x-idx3-ubyte.gz", md5=MD5)
    )


# --- offline built-ins: say which files and how to provide them, leave no folders -----------------------

UNREACHABLE = "http://127.0.0.1:9/"  # nothing listens on port 9: refused at once, as offline


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CNNLAB_DATA_DIR", raising=False)
    return tmp_path / "cache"


def test_offline_mnist_names_its_files_and_the_data_dir_way(cache, monkeypatch):
    from cnnlab.data import load_data

    monkeypatch.setitem(DATASETS, "mnist", replace(DATASETS["mnist"], mirrors=(UNREACHABLE,)))
    with pytest.raises(CnnlabError) as info:
        load_data("mnist")
    message = str(info.value)
    assert "\n" not in message and message.startswith(
        "Could not download mnist (Download of http://127.0.0.1:9/"
    )
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"):
        assert name in message
    assert "--data-dir DIR (data_dir=DIR in Python) or set CNNLAB_DATA_DIR=DIR" in message
    assert not cache.exists()  # no empty cache folders left behind
    with pytest.raises(CnnlabError, match="download=False; allow the download, or download train-images"):
        load_data("mnist", download=False)


def test_offline_cifar10_from_the_cli_is_one_line_and_leaves_nothing(cache, monkeypatch, run_cli, tmp_path):
    import cnnlab.data.cifar as cifar

    monkeypatch.setattr(cifar, "CIFAR10", replace(cifar.CIFAR10, mirrors=(UNREACHABLE,)))
    code, _, err = run_cli("train", "--data", "cifar10", "--out", tmp_path / "run", "--epochs", "1")
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "cifar-10-binary.tar.gz (or its cifar-10-batches-bin/ folder of .bin files)" in err
    assert "--data-dir DIR" in err and "CNNLAB_DATA_DIR=DIR" in err
    assert not cache.exists() and not (tmp_path / "run").exists()


def test_a_download_cut_short_keeps_the_verified_files_only(server, cache, monkeypatch):
    from cnnlab.data import load_data

    _, base = server
    spec = replace(
        DATASETS["fashion_mnist"],
        mirrors=(f"{base}/good/",),
        train_images=RemoteFile("a-idx3-ubyte.gz", md5=MD5),
        train_labels=RemoteFile("b-idx1-ubyte.gz", md5="0" * 32),  # the mirror sends something else
    )
    monkeypatch.setitem(DATASETS, "fashion_mnist", spec)
    with pytest.raises(CnnlabError, match=r"Could not download fashion_mnist .*b-idx1-ubyte\.gz.*md5"):
        load_data("fashion_mnist")
    assert _leftovers(cache / "cnnlab" / "fashion_mnist") == ["a-idx3-ubyte.gz"]  # kept for next time
