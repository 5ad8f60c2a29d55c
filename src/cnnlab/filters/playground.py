"""The `cnnlab filters` command: kernels on photos, the tutorial's figures, raw feature maps.

Called with the parsed argparse Namespace from `cnnlab.commands.filters`. All options and kernels are checked
before any image is read; every file is staged and only moved into `--out` once everything succeeded.
"""

from __future__ import annotations

import argparse
import io
import re
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from cnnlab.atomic import atomic_files
from cnnlab.errors import CnnlabError
from cnnlab.filters.conv import apply, check_padded_size, choose_method, mode_padding
from cnnlab.filters.figures import feature_png, grid_figure, png_bytes, tutorial_figure
from cnnlab.filters.kernels import KERNEL_INFO, TUTORIAL_KERNELS, normalize_kernel, resolve_kernel
from cnnlab.filters.preprocess import SAMPLE_NAME, downsample, sample_image
from cnnlab.images import load_image

PREVIEW_MAX_SIDE = 1600  # feature maps kept for the grid figure and --show are at most this large
_NONINTERACTIVE = {"agg", "pdf", "ps", "svg", "cairo", "template", "pgf"}
MAX_NAME = 100  # characters of a kernel or image name kept in file names (the OS allows 255 bytes)


def _safe_name(name: str) -> str:
    return re.sub(r"[^\w\-.]+", "_", name).strip("._")[:MAX_NAME].strip("._") or "kernel"


def _unique(name: str, taken: set[str]) -> str:
    candidate, i = name, 2
    while candidate in taken:
        candidate, i = f"{name}-{i}", i + 1
    taken.add(candidate)
    return candidate


def _check_options(args: argparse.Namespace) -> tuple[tuple[int, int], tuple[int, ...] | None]:
    """Stride and padding as (rows, cols) and 1, 2 or 4 values. Their counts and ranges, --downsample,
    --dpi, --fill-value and --max-megapixels are checked by argparse (cnnlab.commands.filters): exit 2."""
    stride = tuple(args.stride)
    padding = tuple(args.padding) if args.padding is not None else None
    if padding is not None and args.mode not in (None, "valid"):
        raise CnnlabError(f"give either --mode {args.mode} or --padding, not both")
    return (stride[0], stride[-1]), padding


def _kernels(args: argparse.Namespace) -> list[tuple[str, np.ndarray, int]]:
    """(unique name, matrix, downsample factor) for each requested kernel."""
    specs = args.kernel or list(TUTORIAL_KERNELS)
    taken: set[str] = set()
    out = []
    for i, spec in enumerate(specs, start=1):
        name, matrix = resolve_kernel(spec, default_name=f"custom{i}" if len(specs) > 1 else "custom")
        if args.normalize:
            matrix = normalize_kernel(matrix)
        if args.downsample is not None:
            factor = args.downsample
        elif not args.kernel:  # the tutorial's own settings: outline full size, the rest half size
            factor = KERNEL_INFO[name].tutorial_downsample
        else:
            factor = 1
        out.append((_unique(_safe_name(name), taken), matrix, factor))
    return out


def _pads4(padding: tuple[int, ...]) -> tuple[int, int, int, int]:
    """--padding's P, PH,PW or TOP,BOTTOM,LEFT,RIGHT as (top, bottom, left, right)."""
    if len(padding) == 4:
        return padding[0], padding[1], padding[2], padding[3]
    ph, pw = padding[0], padding[-1]
    return ph, ph, pw, pw


def _preview(a: np.ndarray) -> np.ndarray:
    step = -(-max(a.shape[:2]) // PREVIEW_MAX_SIDE)
    return a if step == 1 else np.ascontiguousarray(a[::step, ::step])


def _image(source: str | None, gray: bool, max_pixels: int) -> np.ndarray:
    """The bundled cat, or a user's file: opened with the user-file checks (a regular file, at least
    MIN_IMAGE_SIDE pixels a side, so the tutorial's default half-size copy always exists)."""
    if source is None:
        return sample_image(gray=gray)
    return load_image(source, gray=gray, max_pixels=max_pixels)


def _feature(args, src: np.ndarray, matrix: np.ndarray, stride, padding, max_pixels: int):
    """One kernel on one prepared image: (feature map, milliseconds, engine used)."""
    pad_arg = None if padding is None else (padding[0] if len(padding) == 1 else padding)
    pads = mode_padding(matrix.shape, args.mode or "same", args.op) if pad_arg is None else _pads4(padding)
    check_padded_size(src.shape[:2], matrix.shape, pads, max_pixels, limit_name="--max-megapixels")
    start = time.perf_counter()
    feature = apply(
        src,
        matrix,
        boundary=args.boundary,
        mode=args.mode,
        stride=stride,
        padding=pad_arg,
        op=args.op,
        fillvalue=args.fill_value,
        method=args.method,
        max_pixels=max_pixels,
    )
    ms = (time.perf_counter() - start) * 1e3
    return feature, ms, choose_method(matrix.shape) if args.method == "auto" else args.method


def _settings(args: argparse.Namespace, stride, padding) -> str:
    """The operation in words, for the table's title and the grid's caption."""
    pad_arg = None if padding is None else (padding[0] if len(padding) == 1 else padding)
    size_rule = f"padding {pad_arg}" if pad_arg is not None else f"mode {args.mode or 'same'}"
    return f"{args.op}, boundary {args.boundary}, {size_rule}, stride {stride[0] if stride[0] == stride[1] else stride}"


def _write_feature(stage, stem: str, name: str, src: np.ndarray, feature: np.ndarray, *, dpi: int) -> None:
    """One kernel's three files in ``stem/``: the raw map (``.npy``), the map as a picture, the tutorial's
    figure."""
    buf = io.BytesIO()
    np.save(buf, feature)
    stage.write(f"{stem}/{name}.npy", buf.getvalue())
    stage.write(f"{stem}/{name}_map.png", feature_png(feature))
    stage.write(f"{stem}/{name}.png", png_bytes(tutorial_figure(src, feature, name), dpi=dpi))


def run_filters(args: argparse.Namespace) -> int:
    console = Console()
    stride, padding = _check_options(args)
    kernels = _kernels(args)
    sources: list[str | None] = list(args.images) or [None]
    taken: set[str] = set()
    stems = [_unique(_safe_name(Path(s).stem if s else SAMPLE_NAME), taken) for s in sources]
    max_pixels = int(args.max_megapixels * 1e6)
    settings = _settings(args, stride, padding)
    table = Table(title=f"Feature maps ({settings})")
    for col in ("image", "kernel", "input", "output", "min", "max", "engine", "ms"):
        table.add_column(col, justify="right" if col in ("min", "max", "ms") else "left")
    shown: list[tuple[str, np.ndarray, np.ndarray, str]] = []
    with atomic_files(args.out) as stage:
        for source, stem in zip(sources, stems, strict=True):
            gray = not args.color
            image = _image(source, gray, max_pixels)
            factors = sorted({f for _, _, f in kernels})
            prepared = {f: downsample(image, f) for f in factors}
            del image
            grid_items = []
            for name, matrix, factor in kernels:
                src = prepared[factor]
                feature, ms, engine = _feature(args, src, matrix, stride, padding, max_pixels)
                _write_feature(stage, stem, name, src, feature, dpi=args.dpi)
                small = _preview(feature)
                grid_items.append((name, matrix, small))
                if args.show:
                    shown.append((name, _preview(src), small, stem))
                size = lambda a: f"{a.shape[1]}x{a.shape[0]}"  # noqa: E731 - width x height, as photos are named
                table.add_row(
                    stem,
                    name,
                    size(src),
                    size(feature),
                    f"{feature.min():.3g}",
                    f"{feature.max():.3g}",
                    engine,
                    f"{ms:.0f}",
                )
                del feature
            first = prepared[min(prepared)]
            grid = grid_figure(_preview(first), grid_items, caption=settings)
            stage.write(f"{stem}/grid.png", png_bytes(grid, dpi=args.dpi))
    console.print(table)
    for stem in stems:
        console.print(f"wrote {len(kernels) * 3 + 1} files to {Path(args.out) / stem}/")
    if args.show:
        _show(shown, console)
    return 0


def _show(shown: list[tuple[str, np.ndarray, np.ndarray, str]], console) -> None:
    """Open the tutorial figures in windows, if this machine has a display."""
    # deferred: pyplot picks a GUI backend and costs ~0.5 s; only --show needs it
    import matplotlib.pyplot as plt

    if plt.get_backend().lower() in _NONINTERACTIVE:
        console.print("--show: no display available here; the figures are saved as files only")
        return
    for name, src, feature, _stem in shown:
        tutorial_figure(src, feature, name, pyplot=True)
    plt.show()
