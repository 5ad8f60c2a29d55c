"""The `cnnlab` command line. Each handler parses, calls the public API, prints.

Heavy libraries (torch, matplotlib) are imported inside handlers so `cnnlab --help` and the filter
commands start fast. Errors a user can cause are `CnnlabError`s: printed as one line, exit code 1
(2 for usage errors, 3 for a non-finite loss, 130 on Ctrl-C/SIGINT, 143 on SIGTERM: training saves a
checkpoint first, see cnnlab.engine.signals).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from cnnlab.errors import CnnlabError
from cnnlab.version import __version__

# Modules that add subcommands: each has `register(subparsers)`; handlers are set with set_defaults.
_COMMAND_MODULES = (
    "cnnlab.commands.core",
    "cnnlab.commands.train",
    "cnnlab.commands.filters",
    "cnnlab.commands.images",
    "cnnlab.commands.explain",
    "cnnlab.commands.serve",
    "cnnlab.commands.publish",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line and exit 2, not argparse's usage dump
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cnnlab",
        description="Convolutional networks on images: hand-made kernels, the MLP-vs-CNN tutorial, fast recipes, "
        "your own image folders, and an explainer for any trained model.",
    )
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except CnnlabError as exc:
        print(f"cnnlab {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (
        OSError
    ) as exc:  # a file system refusing a write (full disk, read-only, a file where a folder goes)
        where = f": {exc.filename}" if exc.filename else ""
        print(f"cnnlab {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"cnnlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `cnnlab models | head`
        return 0
