"""The `serve` subcommand: the explainer page and its JSON API for the runs in a folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnlab.commands.args import port, positive_int
from cnnlab.errors import CnnlabError


def cmd_serve(args: argparse.Namespace) -> int:
    # deferred: fastapi and torch (~1.3 s): only `serve` needs them
    from cnnlab.web.server import serve

    runs = Path(args.runs_dir)
    if not runs.is_dir():
        raise CnnlabError(
            f"runs folder {runs} does not exist; train a model first (cnnlab train --out runs/cnn2)"
        )
    serve(
        runs,
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        threads=args.threads,
        workers=args.workers,
        max_concurrent=args.max_concurrent,
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="the explainer page and JSON API for the runs in a folder")
    p.add_argument("runs_dir", metavar="RUNS_DIR", nargs="?", default="runs", help="folder of runs [runs]")
    p.add_argument("--host", default="127.0.0.1", help="address to bind [127.0.0.1: this machine only]")
    p.add_argument("--port", type=port, default=8000, help="[8000]")
    p.add_argument("--data-dir", default=None, help="dataset folder, for random test images")
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads per request [1]")
    p.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="server processes (e.g. one per core for many users) [1]",
    )
    p.add_argument(
        "--max-concurrent",
        type=positive_int,
        default=4,
        help="requests computed at once; more wait briefly, then 503 [4]",
    )
    p.set_defaults(handler=cmd_serve)
