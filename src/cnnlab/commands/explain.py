"""The `explain` subcommand: reports on a run, per image or on its test set, as files and tables."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from cnnlab.commands.args import INVERT, add_invert, positive_int
from cnnlab.errors import CnnlabError


def cmd_explain(args: argparse.Namespace) -> int:
    # deferred: torch (~1 s): `cnnlab --help` and name checks answer before it loads
    from cnnlab.run.folder import load_run

    run = load_run(args.run)
    out = Path(args.out) if args.out else run.path / "plots" / "explain"
    if args.layer is not None:  # fail before any work on a layer that is not there
        # deferred: torch (~1 s): `cnnlab --help` and name checks answer before it loads
        from cnnlab.explain.stages import find_stage

        find_stage(run.model, args.layer)
    if not args.images:
        return _explain_test_set(args, run, out)
    return _explain_images(args, run, out)


def _explain_test_set(args: argparse.Namespace, run, out: Path) -> int:
    """The dataset report: the run's test split through the model, confusion and per-class scores."""
    # deferred: torch (~1 s): `cnnlab --help` and name checks answer before it loads
    from cnnlab.explain.data import recorded_test_files, run_test_split
    from cnnlab.explain.files import write_dataset_report

    recorded = recorded_test_files(run.path)  # a folder run's test files, to name its images
    _check_writable(out)  # before any work: a report that cannot be written is one line, now
    split, classes = run_test_split(run.config, data_dir=args.data_dir, download=True)
    report, files = write_dataset_report(
        run.model, split, out / "dataset", classes=classes, recorded_files=recorded
    )
    summary = {"run": str(run.path), "out": str(out / "dataset"), **report.summary()}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    _dataset_table(summary)
    print(f"Wrote {len(files)} files to {out / 'dataset'}")
    return 0


def _explain_images(args: argparse.Namespace, run, out: Path) -> int:
    """One report folder per image (activations, kernels, Grad-CAM, saliency), and its top classes."""
    # deferred: torch (~1 s): `cnnlab --help` and name checks answer before it loads
    from cnnlab.explain.files import image_report, safe_name
    from cnnlab.explain.inputs import prepare_input

    invert = INVERT[args.invert]
    prepared = []  # read every image first: a bad file fails before anything is written
    for path in args.images:
        prepared.append(
            (path, prepare_input(path, run.input_shape, invert=invert, source=str(path), **run.image_options))
        )
    _check_writable(out)  # after the images (a bad one leaves nothing behind), before any work
    results = []
    taken: set[str] = set()
    for path, image in prepared:
        stem = safe_name(Path(path).stem)
        folder, i = stem, 2
        while folder in taken:
            folder, i = f"{stem}-{i}", i + 1
        taken.add(folder)
        rep = image_report(
            run.model,
            image,
            out / folder,
            classes=run.classes,
            layer=args.layer,
            top_k=args.top_k,
            model_name=str(run.config.get("model", "model")),
        )
        results.append((path, rep))
    if args.json:
        docs = [json.loads((rep.folder / "prediction.json").read_text()) for _, rep in results]
        print(json.dumps(docs[0] if len(docs) == 1 else docs))
        return 0
    for path, rep in results:
        _topk_table(str(path), rep.acts.prediction.top(args.top_k), rep.acts.input)
        where = f" Grad-CAM on {rep.gradcam.layer};" if rep.gradcam else ""
        print(f"{len(rep.files)} files in {rep.folder} ({len(rep.acts.layers)} stages;{where} saliency)")
    return 0


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CnnlabError(
            f"Cannot write the report to {out}: {exc.strerror or exc}; choose another --out"
        ) from None
    if not os.access(out, os.W_OK):
        raise CnnlabError(f"Cannot write the report to {out}: permission denied; choose another --out")


def _topk_table(title: str, top, image) -> None:
    # deferred: rich (~80 ms) is not needed by `cnnlab --help`
    from rich.console import Console
    from rich.table import Table

    notes = []
    if image.resized:
        notes.append(f"resized from {image.original_size[1]}x{image.original_size[0]}")
    if image.inverted:
        notes.append("inverted")
    if notes:
        print(f"{title}: {', '.join(notes)}")
    t = Table(title=Path(title).name)
    t.add_column("#", justify="right")
    t.add_column("class")
    t.add_column("probability", justify="right")
    for rank, (_, label, p) in enumerate(top, start=1):
        t.add_row(str(rank), label, f"{p:.2%}")
    Console().print(t)


def _dataset_table(summary: dict) -> None:
    # deferred: rich (~80 ms) is not needed by `cnnlab --help`
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(title=f"{summary['run']}: {summary['n']:,} test images, error {summary['error_pct']:.2f}%")
    for c in ("class", "precision", "recall", "f1", "support"):
        t.add_column(c, justify="left" if c == "class" else "right")
    for r in summary["per_class"]:
        t.add_row(
            r["class"], f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", str(r["support"])
        )
    console.print(t)
    m = Table(title="most confused (true -> predicted)")
    for c in ("true", "predicted", "count", "share of true"):
        m.add_column(c, justify="right" if c in ("count", "share of true") else "left")
    for r in summary["most_confused"][:5]:
        m.add_row(r["true"], r["predicted"], str(r["count"]), f"{r['share_of_true']:.1%}")
    console.print(m)
    wrong = summary["confidently_wrong"][:5]
    if wrong:
        by_file = wrong[0]["file"] is not None  # folder and CSV runs name files; built-ins, split indices
        w = Table(title="most confidently wrong")
        w.add_column("file" if by_file else "test index", justify="left" if by_file else "right")
        for c in ("true", "predicted", "probability"):
            w.add_column(c, justify="right" if c == "probability" else "left")
        for r in wrong:
            w.add_row(
                r["file"] if by_file else str(r["index"]),
                r["true"],
                r["predicted"],
                f"{r['probability']:.1%}",
            )
        console.print(w)
    for note in summary["notes"]:
        print(f"Note: {note}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="reports on a run: per image (activations, kernels, Grad-CAM, saliency) or, without images, "
        "on its test set (confusion matrix, most confused, per-class F1)",
    )
    p.add_argument("run", metavar="RUN", help="run folder (written by `cnnlab train`)")
    p.add_argument("images", metavar="IMAGE", nargs="*", help="images to explain; none: the dataset report")
    p.add_argument("--out", default=None, help="folder for the files [RUN/plots/explain]")
    p.add_argument("--layer", default=None, help="stage for Grad-CAM [the last conv stage, after its ReLU]")
    p.add_argument("--top-k", type=positive_int, default=5, help="classes to list [5]")
    add_invert(p)
    p.add_argument("--data-dir", default=None, help="dataset folder for the test-set report")
    p.add_argument("--json", action="store_true", help="print the activations JSON (or the dataset summary)")
    p.set_defaults(handler=cmd_explain)
