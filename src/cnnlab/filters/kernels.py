"""Named kernels (the tutorial's four, then the usual set) and parsing of the user's own kernels.

A kernel is a 2-D float64 array of any size from 1x1 to 63x63, odd or even. The registry's matrices are
read-only; `get_kernel` returns a writable copy.

A kernel can be given as:
- a registered name: `"outline"`, `"sobel_left"`, ... (`list_kernels()`);
- a matrix: a nested list / array, or text: JSON `"[[1,0,-1],[2,0,-2],[1,0,-1]]"` or rows separated by
  semicolons `"1 0 -1; 2 0 -2; 1 0 -1"` (a single row `"[1, 2, 1]"` is a 1xN kernel);
- a file: `.json` (a nested list), `.csv` / `.txt` (one row per line, comma- or space-separated) or
  `.npy` (a 2-D numeric array; pickles are refused).
"""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from cnnlab.errors import CnnlabError, shortened
from cnnlab.userfiles import UserFileError, read_user_bytes

MAX_KERNEL_SIZE = 63
"""Largest kernel side accepted (a 63x63 kernel already blurs away most of a photo)."""

KERNEL_FILE_SUFFIXES = (".json", ".csv", ".txt", ".npy")
MAX_KERNEL_FILE_BYTES = 1 << 20
"""Largest kernel file read (1 MiB): a 63x63 matrix of long decimals takes about 100 kB."""


@dataclass(frozen=True)
class KernelInfo:
    """What a named kernel is for, and where it comes from."""

    name: str
    description: str
    source: str  # "tutorial" (defined exactly as the post does) or "common"
    tutorial_downsample: int = 1  # the image the tutorial applies it to: 1 full size, 2 half size


def _k(rows: Any, scale: float = 1.0) -> np.ndarray:
    m = np.asarray(rows, dtype=np.float64) * scale
    m.setflags(write=False)
    return m


_SOBEL = [[1, 0, -1], [2, 0, -2], [1, 0, -1]]
_PREWITT = [[1, 0, -1], [1, 0, -1], [1, 0, -1]]
_BINOMIAL5 = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1])

# name -> (matrix, description, source, tutorial_downsample). Order is the listing order.
_REGISTRY: dict[str, tuple[np.ndarray, str, str, int]] = {
    # The tutorial's four, exactly as the post writes them (sections 2 of TUTORIAL.md).
    "outline": (_k([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]), "edges in every direction", "tutorial", 1),
    "sobel_left": (_k(_SOBEL), "the tutorial's 'left sobel': vertical edges", "tutorial", 2),
    "blur": (
        _k(np.full((3, 3), 0.01)),
        "the tutorial's blur; sums to 0.09 so it also darkens",
        "tutorial",
        2,
    ),
    "negative": (_k(np.full((3, 3), -1.0)), "every entry -1: a negated 3x3 local sum", "tutorial", 2),
    # The usual set.
    "identity": (_k([[0, 0, 0], [0, 1, 0], [0, 0, 0]]), "returns the image unchanged", "common", 1),
    "sobel_right": (_k(np.fliplr(_SOBEL)), "vertical edges, opposite sign to sobel_left", "common", 1),
    "sobel_top": (_k(np.transpose(_SOBEL)), "horizontal edges", "common", 1),
    "sobel_bottom": (_k(-np.transpose(_SOBEL)), "horizontal edges, opposite sign to sobel_top", "common", 1),
    "prewitt_left": (_k(_PREWITT), "vertical edges, unweighted rows", "common", 1),
    "prewitt_right": (_k(np.fliplr(_PREWITT)), "vertical edges, opposite sign", "common", 1),
    "prewitt_top": (_k(np.transpose(_PREWITT)), "horizontal edges, unweighted columns", "common", 1),
    "prewitt_bottom": (_k(-np.transpose(_PREWITT)), "horizontal edges, opposite sign", "common", 1),
    "laplacian": (_k([[0, 1, 0], [1, -4, 1], [0, 1, 0]]), "second derivative, 4-neighbour", "common", 1),
    "laplacian_diag": (_k([[1, 1, 1], [1, -8, 1], [1, 1, 1]]), "second derivative, 8-neighbour", "common", 1),
    "box_blur": (_k(np.ones((3, 3)), 1 / 9), "3x3 mean, normalised to sum 1", "common", 1),
    "gaussian3": (
        _k([[1, 2, 1], [2, 4, 2], [1, 2, 1]], 1 / 16),
        "3x3 Gaussian (binomial), sum 1",
        "common",
        1,
    ),
    "gaussian5": (_k(_BINOMIAL5, 1 / 256), "5x5 Gaussian (binomial), sum 1", "common", 1),
    "sharpen": (
        _k([[0, -1, 0], [-1, 5, -1], [0, -1, 0]]),
        "identity plus a Laplacian edge boost",
        "common",
        1,
    ),
    "emboss": (_k([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]), "relief lit from the top left", "common", 1),
    "ridge": (
        _k([[0, -1, 0], [-1, 4, -1], [0, -1, 0]]),
        "ridges and edges (negative Laplacian)",
        "common",
        1,
    ),
}

KERNELS: MappingProxyType[str, np.ndarray] = MappingProxyType({n: v[0] for n, v in _REGISTRY.items()})
"""Every named kernel: name -> read-only float64 matrix, in listing order."""

KERNEL_INFO: MappingProxyType[str, KernelInfo] = MappingProxyType(
    {n: KernelInfo(n, d, s, ds) for n, (_, d, s, ds) in _REGISTRY.items()}
)
TUTORIAL_KERNELS = tuple(n for n, info in KERNEL_INFO.items() if info.source == "tutorial")


def list_kernels() -> list[str]:
    """Names of every registered kernel, the tutorial's four first.

    Example:
        >>> list_kernels()[:4]
        ['outline', 'sobel_left', 'blur', 'negative']
    """
    return list(KERNELS)


def get_kernel(name: str) -> np.ndarray:
    """A writable copy of the named kernel.

    Example:
        >>> get_kernel("sobel_left")
        array([[ 1.,  0., -1.],
               [ 2.,  0., -2.],
               [ 1.,  0., -1.]])
    """
    try:
        return KERNELS[name].copy()
    except KeyError:
        raise CnnlabError(f"Unknown kernel {name!r}. Available: {', '.join(KERNELS)}") from None


def normalize_kernel(kernel: np.ndarray) -> np.ndarray:
    """Scale a kernel so its entries sum to 1, or, when they sum to 0 (edge detectors), so its positive
    entries sum to 1 (the response to a 0..1 image then stays within -1..1).

    Example:
        >>> normalize_kernel(np.ones((2, 2))).tolist()
        [[0.25, 0.25], [0.25, 0.25]]
        >>> normalize_kernel(get_kernel("sobel_left"))[1].tolist()
        [0.5, 0.0, -0.5]
    """
    k = np.asarray(kernel, dtype=np.float64)
    total = k.sum()
    if abs(total) > 1e-12 * np.abs(k).sum():
        return k / total
    positive = k[k > 0].sum()
    if positive == 0:
        raise CnnlabError("cannot normalise an all-zero kernel")
    return k / positive


MAX_ENTRY = 1e30  # x 63*63 entries x pixels <= 1 stays far below float32's 3.4e38


def validate_kernel(values: Any, what: str = "kernel") -> np.ndarray:
    """Check a matrix is a usable kernel and return it as a float64 2-D array.

    Rules: numeric and finite, non-empty, rectangular, at most 2-D (a 1-D list is one row), each side at
    most `MAX_KERNEL_SIZE`. `what` names the kernel in the error message.
    """
    if isinstance(values, list):
        values = _check_nested(values, what)
    arr = np.asarray(values)
    if arr.dtype.kind not in "iuf" or arr.dtype == object:
        raise CnnlabError(f"{what} has non-numeric entries (dtype {arr.dtype})")
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise CnnlabError(f"{what} must be a 2-D matrix, got {arr.ndim} dimensions {arr.shape}")
    if arr.size == 0:
        raise CnnlabError(f"{what} is empty")
    if max(arr.shape) > MAX_KERNEL_SIZE:
        raise CnnlabError(
            f"{what} is {arr.shape[0]}x{arr.shape[1]}; the largest allowed is {MAX_KERNEL_SIZE}x{MAX_KERNEL_SIZE}"
        )
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise CnnlabError(f"{what} has NaN or infinite entries")
    if np.abs(arr).max() > MAX_ENTRY:
        raise CnnlabError(
            f"{what} entries must lie within ±{MAX_ENTRY:g} (larger ones overflow float32 outputs)"
        )
    return arr


def _check_nested(values: list, what: str) -> list:
    """Reject ragged rows and non-numbers with a message that points at the entry."""
    if not values:
        raise CnnlabError(f"{what} is empty")
    rows = values if all(isinstance(r, list) for r in values) else [values]
    if any(isinstance(r, list) for r in values) and rows is not values:
        raise CnnlabError(f"{what} mixes numbers and rows")
    width = len(rows[0])
    for i, row in enumerate(rows):
        if len(row) != width:
            raise CnnlabError(f"{what} is ragged: row 1 has {width} entries, row {i + 1} has {len(row)}")
        for j, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise CnnlabError(f"{what} has a non-numeric entry {v!r} at row {i + 1}, column {j + 1}")
    return rows


def _parse_rows(text: str, what: str, sep: str | None) -> list[list[float]]:
    """Rows of numbers from CSV-like text (one row per line or per ';')."""
    rows = []
    for i, line in enumerate(re.split(r"[;\n]", text.strip())):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = line.split(sep) if sep else line.replace(",", " ").split()
        row = []
        for j, cell in enumerate(cells):
            try:
                row.append(float(cell))
            except ValueError:
                raise CnnlabError(
                    f"{what} has a non-numeric entry {cell.strip()!r} at row {i + 1}, column {j + 1}"
                ) from None
        rows.append(row)
    return rows


def _parse_text(text: str, what: str) -> np.ndarray:
    text = text.strip()
    if text.startswith("["):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CnnlabError(
                f"{what} is not a valid matrix ({exc.msg} at character {exc.pos + 1}); "
                "write it like [[1,0,-1],[2,0,-2],[1,0,-1]]"
            ) from None
        except RecursionError:
            raise CnnlabError(
                f"{what} is nested too deeply; write it as a list of rows like [[1,0,-1],[2,0,-2],[1,0,-1]]"
            ) from None
        if not isinstance(values, list):
            raise CnnlabError(f"{what} must be a list of rows like [[1,0,-1],[2,0,-2],[1,0,-1]]")
        return validate_kernel(values, what)
    return validate_kernel(_parse_rows(text, what, None), what)


def load_kernel_file(path: str | os.PathLike) -> np.ndarray:
    """Read a kernel from a .json, .csv, .txt or .npy file (see the module docstring)."""
    p = Path(path)
    what = f"kernel file {shortened(str(p))!r}"
    try:
        data = read_user_bytes(p, max_bytes=MAX_KERNEL_FILE_BYTES, what="kernel file")
    except UserFileError as exc:
        hint = "; give a .json, .csv, .txt or .npy file" if "regular file" in exc.reason else ""
        big = (
            f" (a {MAX_KERNEL_SIZE}x{MAX_KERNEL_SIZE} kernel needs far less)" if "limit" in exc.reason else ""
        )
        raise type(exc)(shortened(str(p)), f"{exc.reason}{hint}{big}", what="kernel file") from None
    suffix = p.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise CnnlabError(f"cannot read {what} as a numeric .npy array ({exc})") from None
        return validate_kernel(arr, what)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CnnlabError(f"cannot read {what} ({exc})") from None
    if suffix == ".json":
        if not text.strip().startswith("["):
            raise CnnlabError(f"{what} must hold a JSON list of rows like [[1,0,-1],[2,0,-2],[1,0,-1]]")
        return _parse_text(text, what)
    if suffix == ".csv":
        return validate_kernel(_parse_rows(text.replace(";", "\n"), what, ","), what)
    return _parse_text(text, what)


def _short(text: str, limit: int = 80) -> str:
    """`text` cut to `limit` characters for an error message (an inline 63x63 matrix is long)."""
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _looks_like_file(text: str) -> bool:
    if Path(text).suffix.lower() in KERNEL_FILE_SUFFIXES:
        return True
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # e.g. a long inline matrix: "File name too long"
        return False


def _looks_like_matrix(text: str) -> bool:
    """Matrix text: '[...]', rows with ';', or numbers separated by spaces/commas (typos included)."""
    text = text.strip()
    return (
        text.startswith("[")
        or ";" in text
        or (any(c.isdigit() for c in text) and bool(re.search(r"[\s,]", text)))
    )


def parse_kernel(spec: Any) -> np.ndarray:
    """Turn any kernel form (name, matrix, matrix text or file path) into a validated float64 array.

    Example:
        >>> parse_kernel("[[1, 0, -1], [2, 0, -2], [1, 0, -1]]").shape
        (3, 3)
        >>> parse_kernel("1 2 1").tolist()
        [[1.0, 2.0, 1.0]]
        >>> parse_kernel("blur").sum().round(2)
        np.float64(0.09)
    """
    if isinstance(spec, (str, os.PathLike)):
        text = os.fspath(spec)
        if text in KERNELS:
            return get_kernel(text)
        if _looks_like_file(text):
            return load_kernel_file(text)
        if _looks_like_matrix(text):
            return _parse_text(text, f"kernel {_short(text)!r}")
        if os.sep in text:
            return load_kernel_file(text)
        if not text.strip():
            raise CnnlabError("kernel is empty")
        raise CnnlabError(
            f"Unknown kernel {_short(text)!r}. Available: {', '.join(KERNELS)}; "
            "or give a matrix like '[[1,0,-1],[2,0,-2],[1,0,-1]]' or a .json/.csv/.npy file"
        )
    return validate_kernel(spec)


def resolve_kernel(arg: str, default_name: str = "custom") -> tuple[str, np.ndarray]:
    """A command-line `--kernel` value -> (display name, matrix).

    `NAME=SPEC` names a custom kernel; otherwise a registered name keeps its name, a file its stem and
    an inline matrix gets `default_name`.

    Example:
        >>> resolve_kernel("edge=[[1,-1]]")[0]
        'edge'
    """
    match = re.fullmatch(r"([A-Za-z_][\w\-]*)=(.+)", arg.strip(), flags=re.DOTALL)
    if match and match.group(1) not in KERNELS:
        return match.group(1), parse_kernel(match.group(2))
    kernel = parse_kernel(arg)
    if arg in KERNELS:
        return arg, kernel
    if _looks_like_file(arg):
        return Path(arg).stem or default_name, kernel
    return default_name, kernel
