"""Subcommands for your own images: `predict` (top-k classes of files/folders) and `export` (ONNX/TorchScript)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys

from cnnlab.commands.args import INVERT, add_invert, non_negative_int, positive_int
from cnnlab.userfiles import printable


def cmd_predict(args: argparse.Namespace) -> int:
    # deferred: torch (~1 s): `cnnlab --help` and name checks answer before it loads
    from cnnlab.prediction import predict_files
    from cnnlab.run.folder import load_run

    run = load_run(args.run)
    result = predict_files(
        run, args.paths, top_k=args.top_k, batch_size=args.batch_size, invert=INVERT[args.invert]
    )
    for path, why in result.bad:
        print(f"skipped {path}: {why}", file=sys.stderr)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    k = len(result.predictions[0].top)
    if args.format == "json":
        print(json.dumps({"run": str(run.path), **result.as_dict()}, indent=2))
    elif args.format == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")  # RFC 4180: a field holding CR or LF is quoted
        w.writerow(["path"] + [f"{name}_{i}" for i in range(1, k + 1) for name in ("class", "probability")])
        for p in result.predictions:
            w.writerow([printable(p.path)] + [v for c, prob in p.top for v in (c, f"{prob:.6f}")])
        sys.stdout.write(buf.getvalue())
    else:
        # deferred: rich (~80 ms) is not needed by `cnnlab --help`
        from rich.console import Console
        from rich.table import Table

        t = Table(title=f"{run.path}: top {k} of {len(run.classes)} classes")
        t.add_column("file", overflow="fold")
        for i in range(1, k + 1):
            t.add_column(f"#{i}")
            t.add_column("p", justify="right")
        for p in result.predictions:
            t.add_row(printable(p.path), *[v for c, prob in p.top for v in (c, f"{prob:.3f}")])
        Console().print(t)
        skipped = f", {len(result.bad)} skipped" if result.bad else ""
        print(f"{len(result.predictions)} images predicted{skipped}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    # deferred: torch (~1 s): `cnnlab --help` and name checks answer before it loads
    from cnnlab.export import export_run

    r = export_run(
        args.run,
        format=args.format,
        out=args.out,
        parity_images=args.parity_images,
        data_dir=args.data_dir,
        overwrite=args.overwrite,
    )
    if args.json:
        print(json.dumps(r.as_dict(), indent=2))
        return 0
    for note in r.notes:
        print(f"note: {note}", file=sys.stderr)
    m = r.metadata
    print(f"Exported {m['model']} to {r.path} ({r.format}, dynamic batch axis, {r.seconds:.1f} s)")
    print(f"  input  {m['input_name']}: float32 {json.loads(m['input_shape'])}, pixels 0..1")
    print(f"  output {m['output_name']}: {m['output']}")
    print(f"  preprocessing: {m['preprocessing']}")
    if r.parity:
        p = r.parity
        print(
            f"Parity vs PyTorch on {p['source']}: max abs logit difference {p['max_abs_diff']:.2e}, "
            f"argmax agreement {p['argmax_agreement']:.2%}"
        )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="top-k classes of image files or folders with a trained run")
    p.add_argument("run", metavar="RUN", help="run folder (from cnnlab train)")
    p.add_argument(
        "paths", metavar="PATH", nargs="+", help="image files and/or folders (searched recursively)"
    )
    p.add_argument("--top-k", type=positive_int, default=3, help="classes per image [3]")
    p.add_argument(
        "--format", choices=("table", "csv", "json"), default="table", help="output format [table]"
    )
    p.add_argument("--batch-size", type=positive_int, default=256, help="images per forward pass [256]")
    add_invert(p)
    p.set_defaults(handler=cmd_predict)

    p = sub.add_parser("export", help="export a run to ONNX or TorchScript, with a parity check")
    p.add_argument("run", metavar="RUN", help="run folder (from cnnlab train)")
    p.add_argument("--format", choices=("onnx", "torchscript"), required=True, help="onnx or torchscript")
    p.add_argument("--out", default=None, help="file to write [RUN/model.onnx or RUN/model.torchscript.pt]")
    p.add_argument(
        "--parity-images",
        type=non_negative_int,
        default=1000,
        help="test images to compare with PyTorch (0 skips the check) [1000]",
    )
    p.add_argument("--data-dir", default=None, help="where the run's built-in dataset lives, if moved")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--json", action="store_true", help="print machine-readable results")
    p.set_defaults(handler=cmd_export)


__all__ = ["cmd_export", "cmd_predict", "register"]
