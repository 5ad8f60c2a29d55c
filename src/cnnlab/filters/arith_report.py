"""The `cnnlab conv-arith` command: sizes, the formula, the positions each output reads, and GIFs."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from cnnlab.atomic import atomic_files
from cnnlab.errors import CnnlabError
from cnnlab.filters.animation import animate
from cnnlab.filters.arith import AxisArith, conv_arith

MAX_LISTED = 12  # outputs listed per axis before the table elides the middle


def _pair_text(value: str | tuple[int, int]) -> str:
    """'same', '1' or '1x2', as the user would type it."""
    if isinstance(value, str):
        return value
    return str(value[0]) if value[0] == value[1] else f"{value[0]}x{value[1]}"


def _reads(axis: AxisArith, i: int) -> str:
    """The input positions output i reads; for a very wide kernel the middle ones are elided, and
    nothing is listed in full (sizes may be astronomically large)."""
    start, d, k, n = i * axis.stride - axis.pad_before, axis.dilation, axis.k, axis.n
    taps = range(k) if k <= MAX_LISTED else [*range(MAX_LISTED // 2), -1, *range(k - MAX_LISTED // 2, k)]
    cells = []
    for j in taps:
        pos = start + d * j
        cells.append("..." if j < 0 else str(pos) if 0 <= pos < n else f"({pos})")
    # taps j with 0 <= start + d*j <= n - 1, counted without listing them
    first = max(0, -(start // d))
    last = min(k - 1, (n - 1 - start) // d)
    pads = k - max(0, last - first + 1)
    text = " ".join(cells)
    return f"{text}   ({pads} padding)" if pads else text


def _axis_table(axis: AxisArith, title: str):
    table = Table(title=title, title_justify="left")
    table.add_column("output", justify="right")
    table.add_column("reads input positions (in parentheses: padding)")
    out = axis.out
    indices = (
        range(out) if out <= MAX_LISTED else [*range(MAX_LISTED // 2), -1, *range(out - MAX_LISTED // 2, out)]
    )
    for i in indices:
        table.add_row("..." if i < 0 else str(i), "..." if i < 0 else _reads(axis, i))
    return table


def run_conv_arith(args: argparse.Namespace) -> int:
    console = Console()
    # Sizes arrive parsed and range-checked by argparse (cnnlab.commands.filters): (rows, cols) pairs.
    n = args.input
    k = args.kernel or ((2, 2) if args.pool else (3, 3))
    s = args.stride or (k if args.pool else (1, 1))
    d = args.dilation
    pad = args.padding
    if args.pool and d != (1, 1):
        raise CnnlabError("--dilation is for convolution, not --pool")
    # raises on impossible settings: a kernel larger than the padded input, 'same' with a stride,
    # pooling padding over half the window
    rows, cols = conv_arith(n, k, padding=pad, stride=s, dilation=d, pool=bool(args.pool))
    what = f"{args.pool} pooling" if args.pool else "convolution"
    console.print(
        f"[bold]{what}[/]: input {n[0]}x{n[1]}, kernel {k[0]}x{k[1]}, padding {_pair_text(pad)}, stride {s[0]}x{s[1]}"
        + (f", dilation {d[0]}x{d[1]}" if d != (1, 1) else "")
    )
    console.print(f"[bold]output size: {rows.out}x{cols.out}[/]")
    console.print(
        "formula: out = floor((n + p_before + p_after - d*(k - 1) - 1) / s) + 1, i.e. floor((n + 2p - k) / s) + 1 for d = 1"
    )
    same = (rows.n, rows.k, rows.stride, rows.pad_before, rows.pad_after, rows.dilation) == (
        cols.n,
        cols.k,
        cols.stride,
        cols.pad_before,
        cols.pad_after,
        cols.dilation,
    )
    if same:
        console.print(f"  rows and columns: {rows.formula()}")
        console.print(_axis_table(rows, "Each output row (and column) reads these input rows (columns):"))
    else:
        console.print(f"  rows:    {rows.formula()}")
        console.print(f"  columns: {cols.formula()}")
        console.print(_axis_table(rows, "Output rows read input rows:"))
        console.print(_axis_table(cols, "Output columns read input columns:"))
    console.print(
        f"output \\[r, c] reads the {k[0]}x{k[1]} window of rows(r) x columns(c); padding positions hold 0"
        + (" (-inf for max pooling)" if args.pool == "max" else "")
    )
    if args.animate:
        _animate(args, n, k, rows, cols, s, console)
    return 0


def _animate(args, n, k, rows, cols, s, console) -> None:
    if (
        rows.pad_before != rows.pad_after
        or cols.pad_before != cols.pad_after
        or rows.dilation != 1
        or cols.dilation != 1
    ):
        raise CnnlabError("--animate draws symmetric padding and no dilation; give --padding as a number")
    kind = args.pool or "conv"
    anim = animate(n, k, padding=(rows.pad_before, cols.pad_before), stride=s, kind=kind)
    pad_txt = (
        rows.pad_before if rows.pad_before == cols.pad_before else f"{rows.pad_before}x{cols.pad_before}"
    )
    stem = f"{kind}_in{n[0]}x{n[1]}_k{k[0]}x{k[1]}_p{pad_txt}_s{s[0]}x{s[1]}"
    with atomic_files(args.out) as stage:
        gif = stage.write(f"{stem}.gif", anim.gif())
        strip = stage.write(f"{stem}_frames.png", anim.strip())
    w, h = anim.size
    console.print(f"wrote {gif} ({len(anim.frames)} frames, {w}x{h} px) and {strip}")
