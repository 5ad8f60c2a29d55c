"""CIFAR-10 from its binary distribution: 60,000 32x32 RGB photos in 10 classes.

The binary version (`cifar-10-binary.tar.gz`) holds six files of fixed-size records, each one label
byte followed by 3,072 pixel bytes (1,024 red, 1,024 green, 1,024 blue, row by row): read with numpy,
nothing is unpickled (the "python version" of CIFAR is pickles, which can run code when loaded).

The archive is downloaded only into the user cache, checked against the publisher's md5 before use,
and only the six expected members are taken out of it: each must be a regular file of the exact
expected size, and it is written under a name cnnlab chooses, never under the path the archive gives,
so a crafted archive (`../../.bashrc`, absolute paths, links) cannot write anywhere else.
"""

from __future__ import annotations

import gzip
import os
import posixpath
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from cnnlab.atomic import write_atomic
from cnnlab.data.official import BuiltinOptions, BuiltinSpec, builtin_info, check_options, official_dataset
from cnnlab.data.store import RemoteFile, cache_dir, check_file, fetch_files, given_data_dir, how_to_provide
from cnnlab.data.types import Dataset
from cnnlab.errors import CnnlabError
from cnnlab.userfiles import format_size, limit_output, open_user_file, read_user_bytes

__all__ = [
    "CIFAR10",
    "CIFAR_SPLITS",
    "CifarSpec",
    "cifar_info",
    "extract_cifar",
    "load_cifar",
    "load_cifar10",
    "read_cifar_batch",
]

RECORD = 1 + 3 * 32 * 32  # label byte + R, G, B planes of 32x32
_MAX_ARCHIVE_BYTES = 256 << 20  # the published archive is 163 MB
_TAR_SLACK = 16 << 20  # tar headers, batches.meta.txt and readme.html beside the batches


@dataclass(frozen=True, kw_only=True)
class CifarSpec(BuiltinSpec):
    """Where CIFAR-10 comes from and what its archive must hold."""

    archive: RemoteFile
    member_dir: str  # the folder inside the archive
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    records_per_file: int = 10_000
    input_shape: tuple[int, int, int] = (3, 32, 32)

    @property
    def members(self) -> tuple[str, ...]:
        return (*self.train_files, *self.test_files)

    @property
    def train_size(self) -> int:
        return len(self.train_files) * self.records_per_file

    @property
    def test_size(self) -> int:
        return len(self.test_files) * self.records_per_file


CIFAR10 = CifarSpec(
    name="cifar10",
    description="Krizhevsky's CIFAR-10: 32x32 RGB photos, 10 classes (binary version, no pickles)",
    classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    mirrors=("https://www.cs.toronto.edu/~kriz/",),
    # The md5 published on https://www.cs.toronto.edu/~kriz/cifar.html (no sha256 is published).
    archive=RemoteFile("cifar-10-binary.tar.gz", md5="c32a1d4ab5d03f1284b67883e8d87530"),
    member_dir="cifar-10-batches-bin",
    train_files=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    test_files=("test_batch.bin",),
)


CIFAR_SPLITS = {
    "tutorial": "official train shuffled and cut 75/25 (37,500/12,500)",
    "default": "official train minus 5,000 validation images stratified by class (45,000/5,000)",
}


def cifar_info(spec: CifarSpec = CIFAR10) -> dict[str, Any]:
    """The `list_datasets()` entry for CIFAR-10."""
    return builtin_info(
        spec,
        train_size=spec.train_size,
        test_size=spec.test_size,
        splits=CIFAR_SPLITS,
        files=[spec.archive.name],
    )


def read_cifar_batch(
    data: bytes | np.ndarray, source: str, *, num_classes: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Decode the bytes of one CIFAR-10 binary batch into uint8 images (N, 3, 32, 32) and labels (N,).

    Example:
        >>> raw = bytes([3]) + bytes(3072)
        >>> images, labels = read_cifar_batch(raw, "one.bin")
        >>> images.shape, labels.tolist()
        ((1, 3, 32, 32), [3])
    """
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if buf.size == 0 or buf.size % RECORD:
        raise CnnlabError(
            f"'{source}' is not a CIFAR-10 binary batch: {buf.size:,} bytes is not a whole number of "
            f"{RECORD:,}-byte records (truncated or another file?)."
        )
    records = buf.reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= num_classes:
        raise CnnlabError(
            f"'{source}' has label {int(labels.max())}; CIFAR-10 labels are 0..{num_classes - 1} (corrupt file?)."
        )
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def extract_cifar(
    archive: str | os.PathLike[str], dest: str | os.PathLike[str], spec: CifarSpec = CIFAR10
) -> Path:
    """Take the expected batch files out of the archive into `dest`, safely (see the module docstring).

    Each file is written atomically (`cnnlab.atomic`), so `dest` never holds half a batch.
    """
    dest = Path(dest)
    members = _members(Path(archive), spec)  # all checked before anything is written
    for name, data in members.items():
        write_atomic(dest / name, data)  # flushed: the archive is deleted once the batches are out
    return dest


def _tar_stream(f: BinaryIO, archive: Path, spec: CifarSpec) -> BinaryIO:
    """The tar bytes of the archive: gunzipped (only as far as a real CIFAR archive goes) or as is."""
    gzipped = f.read(2) == b"\x1f\x8b"
    f.seek(0)
    if not gzipped:
        return f
    cap = len(spec.members) * spec.records_per_file * RECORD + _TAR_SLACK
    bomb = CnnlabError(
        f"'{archive}' decompresses to more than {format_size(cap)}, more than any CIFAR-10 archive "
        "(a decompression bomb?); refused."
    )
    return limit_output(gzip.GzipFile(fileobj=f, mode="rb"), max_bytes=cap, error=bomb)


def _members(archive: Path, spec: CifarSpec) -> dict[str, bytes]:
    """The bytes of every expected member, checked; anything else in the archive is ignored. The archive
    is read once, front to back, and decompressed only as far as a real one goes."""
    wanted = {posixpath.join(spec.member_dir, m): m for m in spec.members}
    size = spec.records_per_file * RECORD
    found: dict[str, bytes] = {}
    try:
        with (
            open_user_file(archive, max_bytes=_MAX_ARCHIVE_BYTES, what="CIFAR-10 archive") as f,
            tarfile.open(fileobj=_tar_stream(f, archive, spec), mode="r|") as tar,
        ):
            for member in tar:
                # Only an exact, normalised, relative name of an expected member is looked at.
                name = posixpath.normpath(member.name)  # "./x" -> "x"; "../x" and "/x" stay unmatched
                if name not in wanted:
                    continue
                if not member.isreg():
                    raise CnnlabError(
                        f"'{archive}': member {member.name!r} is not a regular file (a link?); refusing the archive."
                    )
                if member.size != size:
                    raise CnnlabError(
                        f"'{archive}': member {member.name!r} has {member.size:,} bytes, expected {size:,}."
                    )
                data = tar.extractfile(member)
                if data is None:
                    raise CnnlabError(f"'{archive}': cannot read member {member.name!r}.")
                found[wanted[name]] = data.read(size)  # the member's own size, checked above
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise CnnlabError(f"'{archive}' is not a readable tar.gz archive ({exc}); fetch it again.") from None
    missing = [m for m in spec.members if m not in found]
    if missing:
        raise CnnlabError(
            f"'{archive}' lacks {', '.join(spec.member_dir + '/' + m for m in missing)}; "
            "is it the CIFAR-10 binary version?"
        )
    return found


def _check_archive(path: Path, spec: CifarSpec) -> None:
    check_file(path, spec.archive, dataset=spec.name, mirror=spec.mirrors[0], max_bytes=_MAX_ARCHIVE_BYTES)


def _read_batches(folder: Path, spec: CifarSpec) -> dict[str, bytes]:
    size = spec.records_per_file * RECORD
    return {m: read_user_bytes(folder / m, max_bytes=size, what="CIFAR-10 batch") for m in spec.members}


def _batch_folder(folder: Path, spec: CifarSpec) -> Path | None:
    """The folder (this one or a known sub-folder) holding every batch file, if any."""
    for candidate in (
        folder,
        folder / spec.member_dir,
        folder / spec.name,
        folder / spec.name / spec.member_dir,
    ):
        if all(os.path.lexists(candidate / m) for m in spec.members):  # then read, or refused clearly
            return candidate
    return None


def _load_batches(
    spec: CifarSpec, data_dir: str | os.PathLike[str] | None, download: bool
) -> dict[str, bytes]:
    """The bytes of every batch file: from `data_dir`/`$CNNLAB_DATA_DIR` (never written to) or the cache."""
    given = given_data_dir(data_dir)
    if given is not None:
        folder, origin = given
        batches = _batch_folder(folder, spec)
        if batches is not None:
            return _read_batches(batches, spec)
        for archive in (folder / spec.archive.name, folder / spec.name / spec.archive.name):
            if archive.is_file():
                _check_archive(archive, spec)
                return _members(archive, spec)  # read in memory: the user's folder is not written to
        raise CnnlabError(
            f"{spec.name} not found in {origin} '{folder}': expected {spec.archive.name} or the "
            f"{spec.member_dir}/ folder of its .bin files there."
        )
    return _read_batches(_cached_batches(spec, download), spec)


def _cached_batches(spec: CifarSpec, download: bool) -> Path:
    """The cache's batch folder: downloaded (md5-checked), extracted, and the archive removed, once."""
    folder = cache_dir(spec.name)
    batches = _batch_folder(folder, spec)
    if batches is not None:
        return batches
    archive = folder / spec.archive.name
    if not archive.is_file():
        expected = f"{spec.archive.name} (or its {spec.member_dir}/ folder of .bin files)"
        if not download:
            raise CnnlabError(
                f"{spec.name} is not in the cache folder '{folder}' and download=False; allow the "
                f"download, or {how_to_provide(expected, spec.mirrors[0])}."
            )
        fetch_files(
            spec.name, [spec.archive], spec.mirrors, folder, expected=expected, progress=True, timeout=60.0
        )
    _check_archive(archive, spec)
    batches = extract_cifar(archive, folder / spec.member_dir, spec)
    archive.unlink(missing_ok=True)  # the .bin files are what is read; the archive would double the disk use
    return batches


def load_cifar10(
    *,
    split: str = "default",
    seed: int = 0,
    data_dir: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    download: bool = True,
    image_size: int | None = None,
    channels: int | None = None,
    spec: CifarSpec | None = None,
) -> Dataset:
    """CIFAR-10 as uint8 (N, 3, 32, 32) splits; `load_data("cifar10", ...)` calls this.

    `split="default"`: 45,000 train / 5,000 validation stratified by class; `"tutorial"`: 37,500 /
    12,500 (the post's 75/25 cut); `test` is always the official 10,000. `mean`/`std` are the training
    split's per-channel statistics. Files come from `data_dir`, else `$CNNLAB_DATA_DIR`, else the user
    cache (downloaded there once, md5-checked, then extracted).

    Example:
        >>> data = load_cifar10(seed=0)  # doctest: +SKIP
        >>> data.input_shape, len(data.train), len(data.test)  # doctest: +SKIP
        ((3, 32, 32), 45000, 10000)
    """
    options = BuiltinOptions(split, seed, data_dir, limit, download, image_size, channels)
    return load_cifar(spec if spec is not None else CIFAR10, options)  # looked up now: it may be swapped


def load_cifar(spec: CifarSpec, options: BuiltinOptions) -> Dataset:
    """`load_cifar10` with its options gathered (what `load_data` calls)."""
    options = check_options(spec, options, train_size=spec.train_size)
    raw = _load_batches(spec, options.data_dir, options.download)
    parts = {m: read_cifar_batch(raw[m], m, num_classes=len(spec.classes)) for m in spec.members}
    for m, (x, _) in parts.items():
        if len(x) != spec.records_per_file:
            raise CnnlabError(f"'{m}' holds {len(x):,} images, expected {spec.records_per_file:,}.")

    def joined(files: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate([parts[m][0] for m in files]), np.concatenate([parts[m][1] for m in files])

    train, test = joined(spec.train_files), joined(spec.test_files)
    return official_dataset(spec, train, test, options, splits=CIFAR_SPLITS, stats=True)
