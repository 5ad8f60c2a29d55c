"""`cnnlab filters`, `cnnlab kernels` and `cnnlab conv-arith`.

Only argparse and the shared argument types (cnnlab.commands.args) are imported at module level:
`cnnlab --help` must not pay for numpy, scipy or matplotlib. Malformed or out-of-range numbers are
argparse usage errors (exit 2).
Each handler validates everything it can before it writes anything, and writes through a staging
folder, so a failure leaves no partial outputs.
"""

from __future__ import annotations

import argparse
import json

from cnnlab.commands.args import finite_float, int_between, positive_finite_float, positive_int

DEFAULT_OUT = "figs/filters"

_OP_HELP = """\
conv: true convolution, as scipy.signal.convolve2d and the tutorial compute it: the kernel is flipped
(rotated 180 degrees) before it slides, so out[i,j] = sum k[a,b] * img[i-a, j-b].
corr: cross-correlation, what CNN layers (torch Conv2d, Keras Conv2D) compute: no flip,
out[i,j] = sum k[a,b] * img[i+a, j+b]. Symmetric kernels (blur, outline, gaussian) give the same
result either way; sobel_left under corr equals sobel_right under conv. Default: conv."""

_FILTERS_EPILOG = """\
kernels: a name from `cnnlab kernels`, a matrix "[[1,0,-1],[2,0,-2],[1,0,-1]]" or "1 0 -1; 2 0 -2; 1 0 -1",
or a .json/.csv/.txt/.npy file; NAME=SPEC names a custom kernel. Any size up to 63x63. Even sizes in
'same' mode are anchored as in SciPy: conv pads k//2 before and (k-1)//2 after, corr the reverse.
Without --kernel the tutorial's four are used, each on the image size the tutorial uses (outline on the
full image, the others on the half-size copy).

outputs per image, in OUT/<image name>/: <kernel>.png (the tutorial's figure: input and feature map),
<kernel>_map.png (the feature map, min-max normalised), <kernel>.npy (raw float32), grid.png (all kernels).

examples:
  cnnlab filters                                  # the tutorial's four figures on the bundled cat photo
  cnnlab filters photo.jpg -k outline -k sobel_left -k gaussian5 --out figs/
  cnnlab filters -k "edge=[[1,0,-1],[2,0,-2],[1,0,-1]]" --op corr --stride 2 --padding 1
"""


def _ints(text: str, counts: tuple[int, ...], minimum: int, expected: str) -> tuple[int, ...]:
    """`text` as integers separated by ',' or 'x': `counts` of them, each >= `minimum`, else a usage error."""
    try:
        values = tuple(int(p) for p in text.lower().replace("x", ",").replace("*", ",").split(","))
    except ValueError:
        values = ()
    if len(values) not in counts or min(values) < minimum:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return values


def _stride(text: str) -> tuple[int, ...]:
    return _ints(text, (1, 2), 1, "S or SH,SW with integers >= 1, like 2 or 2,1")


def _padding(text: str) -> tuple[int, ...]:
    return _ints(text, (1, 2, 4), 0, "P, PH,PW or TOP,BOTTOM,LEFT,RIGHT with integers >= 0, like 1 or 1,2")


def _arith_size(text: str) -> tuple[int, int]:
    """conv-arith's sizes: `5` -> (5, 5), `5x7` -> (5, 7); each >= 1."""
    values = _ints(text, (1, 2), 1, "a positive integer or HxW like 5x7")
    return values[0], values[-1]


def _arith_padding(text: str) -> str | tuple[int, int]:
    """conv-arith's padding: 'same', 'valid', 'full', `P` or `PHxPW` (each >= 0)."""
    word = text.strip().lower()
    if word in ("same", "valid", "full"):
        return word
    values = _ints(word, (1, 2), 0, "an integer >= 0, PHxPW like 1x2, same, valid or full")
    return values[0], values[-1]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `filters`, `kernels` and `conv-arith` subcommands."""
    _register_filters(subparsers)
    _register_kernels(subparsers)
    _register_conv_arith(subparsers)


def _register_filters(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "filters",
        help="apply kernels to a photo (the tutorial's filter playground)",
        description="Apply hand-made kernels to photos and save the tutorial's figures.",
        epilog=_FILTERS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files (default: the bundled cat photo)")
    p.add_argument("-k", "--kernel", action="append", metavar="SPEC", help="kernel to apply; repeat for more")
    p.add_argument(
        "--normalize",
        action="store_true",
        help="scale each kernel to sum 1 (positive part 1 if it sums to 0)",
    )
    p.add_argument(
        "--color",
        action="store_true",
        help="keep colour and filter each channel (default: grayscale 0.299/0.587/0.114)",
    )
    p.add_argument(
        "--downsample",
        type=positive_int,
        metavar="N",
        help="keep every N-th pixel, the tutorial's img[::2, ::2] for 2",
    )
    _edge_and_size_args(p)
    _operation_args(p)
    _output_args(p)
    p.set_defaults(handler=_run_filters)


def _edge_and_size_args(p: argparse.ArgumentParser) -> None:
    """How the kernel meets the image's edges, and the output's size: boundary, padding or mode, stride."""
    p.add_argument(
        "--boundary",
        default="symm",
        choices=["symm", "fill", "wrap", "reflect"],
        help="edge handling: symm mirrors including the edge pixel (the tutorial's), reflect without it, wrap is circular, fill pads with --fill-value (default: symm)",
    )
    p.add_argument(
        "--fill-value",
        type=finite_float,
        default=0.0,
        metavar="V",
        help="value outside the image for --boundary fill (default 0)",
    )
    p.add_argument(
        "--mode",
        choices=["same", "valid", "full"],
        help="output size: same as input (default), valid (no padding) or full",
    )
    p.add_argument(
        "--padding",
        type=_padding,
        metavar="P",
        help="explicit padding instead of --mode: P, PH,PW or TOP,BOTTOM,LEFT,RIGHT",
    )
    p.add_argument(
        "--stride", type=_stride, default=(1,), metavar="S", help="kernel step: S or SH,SW (default 1)"
    )


def _operation_args(p: argparse.ArgumentParser) -> None:
    """What sliding the kernel computes (convolution or correlation), and with which engine."""
    p.add_argument("--op", choices=["conv", "corr"], default="conv", help=_OP_HELP)
    p.add_argument("--correlate", dest="op", action="store_const", const="corr", help="same as --op corr")
    p.add_argument(
        "--method",
        choices=["auto", "direct", "fft"],
        default="auto",
        help="engine (default auto: direct below 25 entries, FFT from 5x5 up)",
    )


def _output_args(p: argparse.ArgumentParser) -> None:
    """Where the figures go and how they are drawn; the size of image accepted."""
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument(
        "--dpi",
        type=int_between(10, 600),
        default=80,
        help="resolution of the saved figures, 10..600 (default 80)",
    )
    p.add_argument(
        "--max-megapixels",
        type=positive_finite_float,
        default=50.0,
        metavar="MP",
        help="refuse larger images, a decompression-bomb guard (default 50)",
    )
    p.add_argument(
        "--show", action="store_true", help="also open the figures in a window when a display is available"
    )


def _register_kernels(subparsers: argparse._SubParsersAction) -> None:
    k = subparsers.add_parser(
        "kernels",
        help="list the named kernels with their matrices",
        description="List the named kernels with their matrices.",
    )
    k.add_argument("names", nargs="*", metavar="NAME", help="only these kernels")
    k.add_argument("--json", action="store_true", help="print JSON instead of a table")
    k.set_defaults(handler=_run_kernels)


def _register_conv_arith(subparsers: argparse._SubParsersAction) -> None:
    a = subparsers.add_parser(
        "conv-arith",
        help="output size and input positions of a convolution or pooling; optional animated GIF",
        description="Convolution arithmetic: output size, the formula, and which inputs each output reads.",
        epilog="example: cnnlab conv-arith --input 5 --kernel 3 --padding 1 --stride 2 --animate",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a.add_argument(
        "--input", type=_arith_size, default=(5, 5), metavar="N", help="input size, N or HxW (default 5)"
    )
    a.add_argument(
        "--kernel", type=_arith_size, metavar="K", help="kernel size, K or HxW (default 3; 2 for --pool)"
    )
    a.add_argument(
        "--padding",
        type=_arith_padding,
        default=(0, 0),
        metavar="P",
        help="padding: P, PHxPW, same (stride 1 only), valid or full; with --pool at most half the "
        "window, as in PyTorch (default 0)",
    )
    a.add_argument(
        "--stride",
        type=_arith_size,
        metavar="S",
        help="stride, S or SHxSW (default 1; the kernel size for --pool)",
    )
    a.add_argument(
        "--dilation",
        type=_arith_size,
        default=(1, 1),
        metavar="D",
        help="spacing between kernel taps (default 1)",
    )
    a.add_argument("--pool", choices=["max", "avg"], help="animate pooling instead of convolution")
    a.add_argument(
        "--animate", action="store_true", help="write an animated GIF and a PNG strip of its frames"
    )
    a.add_argument(
        "--out", default=DEFAULT_OUT, metavar="DIR", help=f"folder for --animate (default {DEFAULT_OUT})"
    )
    a.set_defaults(handler=_run_conv_arith)


def _run_filters(args: argparse.Namespace) -> int:
    # deferred: numpy and scipy (~0.2 s): `cnnlab --help` does not need them
    from cnnlab.filters.playground import run_filters

    return run_filters(args)


def _run_kernels(args: argparse.Namespace) -> int:
    # deferred: rich (~80 ms) is not needed by `cnnlab --help`
    from rich.console import Console
    from rich.table import Table

    from cnnlab.filters.kernels import KERNEL_INFO, KERNELS, get_kernel

    names = args.names or list(KERNELS)
    kernels = {n: get_kernel(n) for n in names}  # unknown names fail here, with the list of known ones
    if args.json:
        print(
            json.dumps(
                {
                    n: {
                        "matrix": m.tolist(),
                        "source": KERNEL_INFO[n].source,
                        "description": KERNEL_INFO[n].description,
                    }
                    for n, m in kernels.items()
                },
                indent=1,
            )
        )
        return 0
    table = Table(title="Named kernels (cnnlab filters -k NAME)", show_lines=True)
    for col in ("name", "size", "matrix", "sum", "source", "what it does"):
        table.add_column(col, no_wrap=col in ("name", "matrix"))
    for name, m in kernels.items():
        lines = _matrix_text(m)
        info = KERNEL_INFO[name]
        table.add_row(
            name, f"{m.shape[0]}x{m.shape[1]}", lines, f"{m.sum():g}", info.source, info.description
        )
    Console().print(table)
    return 0


def _matrix_text(m) -> str:
    """Rows of a kernel; fractions such as 1/16 or 1/256 are factored out so the table stays narrow."""
    prefix, values = "", m
    if any(len(f"{v:.4g}") > 5 for v in m.ravel()):
        for d in (9, 16, 256, 100, 1000):
            if abs((m * d) - (m * d).round()).max() < 1e-9:
                prefix, values = f"1/{d} x\n", (m * d).round()
                break
    cells = [[f"{v:.4g}" for v in row] for row in values]
    width = max(len(c) for row in cells for c in row)
    return prefix + "\n".join(" ".join(c.rjust(width) for c in row) for row in cells)


def _run_conv_arith(args: argparse.Namespace) -> int:
    # deferred: numpy and scipy (~0.2 s): `cnnlab --help` does not need them
    from cnnlab.filters.arith_report import run_conv_arith

    return run_conv_arith(args)
