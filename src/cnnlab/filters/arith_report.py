"""The `cnnlab conv-arith` command: sizes, the formula, the positions each output reads, and GIFs."""

from __future__ import annotations

import argparse

from cnnlab.errors import CnnlabError
from cnnlab.filters.arith import AxisArith, conv_arith, parse_size

MAX_LISTED = 12  # outputs listed per axis before the table elides the middle


def _reads(axis: AxisArith, i: int) -> str:
    idx = axis.reads(i)
    cells = [str(j) if 0 <= j < axis.n else f"({j})" for j in idx]
    pads = sum(1 for j in idx if not 0 <= j < axis.n)
    text = " ".join(cells)
    return f"{text}   ({pads} padding)" if pads else text


def _axis_table(axis: AxisArith, title: str):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("output", justify="right")
    table.add_column("reads input positions (in parentheses: padding)")
    indices = list(range(axis.out))
    if len(indices) > MAX_LISTED:
        indices = indices[: MAX_LISTED // 2] + [-1] + indices[-MAX_LISTED // 2 :]
    for i in indices:
        table.add_row("..." if i < 0 else str(i), "..." if i < 0 else _reads(axis, i))
    return table


def run_conv_arith(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console()
    n = parse_size(args.input, "--input")
    k = parse_size(args.kernel or ("2" if args.pool else "3"), "--kernel")
    s = parse_size(args.stride, "--stride") if args.stride else (k if args.pool else (1, 1))
    d = parse_size(args.dilation, "--dilation")
    padding = args.padding.strip().lower()
    pad = padding if padding in ("same", "valid", "full") else parse_size(padding, "--padding")
    if args.pool and d != (1, 1):
        raise CnnlabError("--dilation is for convolution, not --pool")
    rows, cols = conv_arith(n, k, padding=pad, stride=s, dilation=d)  # raises on impossible settings
    what = f"{args.pool} pooling" if args.pool else "convolution"
    console.print(
        f"[bold]{what}[/]: input {n[0]}x{n[1]}, kernel {k[0]}x{k[1]}, padding {args.padding}, stride {s[0]}x{s[1]}"
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
        f"output [r, c] reads the {k[0]}x{k[1]} window of rows(r) x columns(c); padding positions hold 0"
        + (" (-inf for max pooling)" if args.pool == "max" else "")
    )
    if args.animate:
        _animate(args, n, k, rows, cols, s, console)
    return 0


def _animate(args, n, k, rows, cols, s, console) -> None:
    from cnnlab.filters.animation import animate
    from cnnlab.filters.outputs import staged_output

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
    with staged_output(args.out) as stage:
        gif = stage.write(f"{stem}.gif", anim.gif())
        strip = stage.write(f"{stem}_frames.png", anim.strip())
    w, h = anim.size
    console.print(f"wrote {gif} ({len(anim.frames)} frames, {w}x{h} px) and {strip}")
