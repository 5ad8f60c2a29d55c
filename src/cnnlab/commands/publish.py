"""The `publish` subcommand: runs -> a static site that explains them in the browser (see cnnlab.publish)."""

from __future__ import annotations

import argparse

from cnnlab.commands.args import positive_int


def cmd_publish(args: argparse.Namespace) -> int:
    # deferred: numpy and scipy (~0.2 s): `cnnlab --help` does not need them
    from cnnlab.publish import publish

    site = publish(args.runs, args.out, gallery=args.gallery, data_dir=args.data_dir)
    print(
        f"Wrote {site.out} ({site.bytes / 1e6:.2f} MB): {', '.join(site.models)}. "
        f"View it with `python -m http.server -d {site.out}` and open http://localhost:8000/"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "publish",
        help="a static site (any static host, no Python at view time) that explains runs in the browser",
    )
    p.add_argument("runs", metavar="RUN", nargs="+", help="run folders (written by `cnnlab train`)")
    p.add_argument("--out", required=True, help="a new or empty folder for the site")
    p.add_argument(
        "--gallery", type=positive_int, default=100, help="test images per run, with true labels [100]"
    )
    p.add_argument("--data-dir", default=None, help="dataset folder, for the runs' test splits")
    p.set_defaults(handler=cmd_publish)
