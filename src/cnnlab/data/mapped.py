"""A split's images as an index view into the folder cache's memory map: no copy until a batch is read.

``MappedImages(base, rows)`` stands where a split's uint8 (N, C, H, W) tensor stands (``Split.images``): it
has the tensor's ``shape``, ``dtype``, ``len`` and ``dim()``, and indexing it (an int, a slice, an index
tensor or array, a bool mask) returns a real uint8 tensor of just those images. Rows are read in sorted
order (sequential on disk) and put back in the order asked for. When ``base`` is a memory map of a file the
rows are read with ``os.preadv`` into fresh memory rather than through the map, so reading a whole epoch
of a 15 GB cache leaves the process's resident memory at one batch, not at every page it touched (the
kernel's page cache still keeps what fits). ``to(device)``, ``cpu()``, ``numpy()`` and ``float()`` read
the whole split: that is the device-resident placement's one copy.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np
import torch

__all__ = ["MappedImages"]


class MappedImages:
    """The images ``base[rows]`` of a uint8 (N, C, H, W) array, read on demand.

    Example:
        >>> base = np.arange(5 * 1 * 2 * 2, dtype=np.uint8).reshape(5, 1, 2, 2)
        >>> view = MappedImages(base, np.array([4, 0, 2]))
        >>> len(view), tuple(view.shape), view[1:].flatten().tolist()
        (3, (3, 1, 2, 2), [0, 1, 2, 3, 8, 9, 10, 11])
    """

    def __init__(self, base: np.ndarray, rows: np.ndarray | None = None):
        if base.dtype != np.uint8 or base.ndim != 4:
            raise TypeError(f"MappedImages needs a uint8 (N, C, H, W) array, got {base.dtype} {base.shape}")
        self.base = base
        self.rows = np.arange(len(base), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        self._file = _file_of(base)
        self._fd: int | None = None
        self._open()

    def _open(self) -> None:
        """Open the file once (reads with explicit offsets share it safely between threads)."""
        if self._file is not None and self._fd is None:
            self._fd = os.open(self._file[0], os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))

    # --- what a tensor has ------------------------------------------------------------------------
    dtype = torch.uint8
    ndim = 4
    device = torch.device("cpu")

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), *self.base.shape[1:]))

    def dim(self) -> int:
        return 4

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def nbytes(self) -> int:
        return len(self.rows) * int(self.base[0].nbytes if len(self.base) else 0)

    def __repr__(self) -> str:
        n, c, h, w = self.shape
        where = f" of '{self._file[0]}'" if self._file else ""
        return f"MappedImages({n:,} images uint8 {c}x{h}x{w}{where})"

    def __getitem__(self, key: Any) -> torch.Tensor:
        if isinstance(key, (int, np.integer)) or (torch.is_tensor(key) and key.dim() == 0):
            return self.gather(self.rows[[int(key)]])[0]
        if isinstance(key, slice):
            return self.gather(self.rows[key])
        index = key.cpu().numpy() if torch.is_tensor(key) else np.asarray(key)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return self.gather(self.rows[index.astype(np.int64, copy=False)])

    def take(self, positions: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The images at ``positions`` of this view (a batch), as a uint8 tensor."""
        return self[positions]

    def to(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.gather(self.rows).to(*args, **kwargs)

    def cpu(self) -> torch.Tensor:
        return self.gather(self.rows)

    def numpy(self) -> np.ndarray:
        return self.gather(self.rows).numpy()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self.numpy()
        return arr if dtype is None else arr.astype(dtype)

    def float(self) -> torch.Tensor:
        return self.gather(self.rows).float()

    # --- reading ----------------------------------------------------------------------------------
    def gather(self, rows: np.ndarray) -> torch.Tensor:
        """``base[rows]`` as a new uint8 tensor, read in sorted order."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self.base)):
            raise IndexError(f"image index out of range for {len(self.base)} images")
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        out = np.empty((len(rows), *self.base.shape[1:]), dtype=np.uint8)
        if self._file is None:
            out[order] = self.base[ordered]
            return torch.from_numpy(out)
        buf = np.empty_like(out)
        self._read_sorted(ordered, buf.reshape(len(rows), -1))
        out[order] = buf
        return torch.from_numpy(out)

    def _read_sorted(self, rows: np.ndarray, out: np.ndarray) -> None:
        """Read ascending ``rows`` of the file into ``out`` (k, row bytes), one ``preadv`` per run of
        consecutive rows."""
        assert self._file is not None
        path, offset = self._file
        self._open()  # after unpickling
        assert self._fd is not None
        row_bytes = out.shape[1]
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for lo, hi in zip(np.r_[0, breaks].tolist(), np.r_[breaks, len(rows)].tolist(), strict=True):
            view = memoryview(out[lo:hi]).cast("B")  # type: ignore[arg-type]  # an ndarray is a buffer
            at, done = offset + int(rows[lo]) * row_bytes, 0
            while done < len(view):
                got = os.preadv(self._fd, [view[done:]], at + done)
                if got <= 0:
                    raise OSError(f"the image cache '{path}' ended early (cut short while in use?)")
                done += got

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # type: ignore[arg-type]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None}  # a file descriptor does not travel to another process


def _file_of(base: np.ndarray) -> tuple[str, int] | None:
    """(path, byte offset of row 0) when ``base`` is a memory map of a whole ``.npy`` file's C-ordered array
    (what ``np.load(..., mmap_mode="r")`` returns; a slice of one is read through the map instead)."""
    if not hasattr(os, "preadv"):  # Windows: rows are read through the map
        return None
    if not isinstance(base, np.memmap) or base.filename is None or not base.flags.c_contiguous:
        return None
    try:
        whole = base.offset + base.nbytes == os.path.getsize(base.filename)
    except OSError:
        return None
    return (str(base.filename), int(base.offset)) if whole else None
