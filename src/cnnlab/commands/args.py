"""Argument types shared by the subcommands: each turns bad text into argparse's one-line usage error."""

from __future__ import annotations

import argparse
import json
import math


def _int_in(text: str, low: int, high: int | None, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < low or (high is not None and value > high):
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _int_in(text, 1, None, "a positive integer")


def non_negative_int(text: str) -> int:
    return _int_in(text, 0, None, "an integer >= 0")


def port(text: str) -> int:
    return _int_in(text, 0, 65535, "a port number 0..65535")


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def positive_float(text: str) -> float:
    value = number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def int_between(low: int, high: int):
    """A type for integers in `low..high` inclusive, e.g. `type=int_between(10, 600)` for a dpi."""

    def check(text: str) -> int:
        return _int_in(text, low, high, f"an integer {low}..{high}")

    check.__name__ = f"int_between_{low}_{high}"
    return check


def finite_float(text: str) -> float:
    value = number(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_finite_float(text: str) -> float:
    value = finite_float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def table(title: str, columns: list[str], rows: list[list]) -> None:
    # deferred: rich (~80 ms) is not needed by `cnnlab --help`
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for c in columns:
        t.add_column(
            c,
            justify="right"
            if c in ("params", "train s", "error %", "accuracy", "epochs", "best")
            else "left",
        )
    for r in rows:
        t.add_row(*(str(x) for x in r))
    Console().print(t)


# ---- handlers -------------------------------------------------------------------------------------


INVERT: dict[str, bool | str] = {"auto": "auto", "yes": True, "no": False}


def add_invert(p: argparse.ArgumentParser) -> None:
    """``--invert auto|yes|no``, the same for predict and explain (read it with ``INVERT[args.invert]``)."""
    p.add_argument(
        "--invert",
        default="auto",
        choices=list(INVERT),
        help="invert images; auto: for a grayscale model trained on light-on-black images (Fashion-MNIST, "
        "MNIST), an image with a bright border (a dark object on white) is inverted [auto]",
    )
