"""Training subcommands: train, eval, compare."""

from __future__ import annotations

import argparse
import shlex

from cnnlab import names
from cnnlab.commands.args import positive_int, print_json, table
from cnnlab.commands.flags import (
    add_data_args,
    add_option_flags,
    add_recipe_args,
    config_from_args,
    given_options,
)
from cnnlab.config import TrainConfig
from cnnlab.errors import CnnlabError
from cnnlab.recipes import get_recipe


def add_run_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("checkpoints, resuming, reproducibility, processes")
    g.add_argument(
        "--resume",
        metavar="auto|PATH",
        help="continue from the newest valid checkpoint in --out (auto: start afresh when there is none "
        "yet; refuse when every one is damaged, and --overwrite without --resume starts afresh) or from "
        "the checkpoint folder PATH",
    )
    g.add_argument(
        "--force", action="store_true", help="resume even from a checkpoint made with other settings"
    )
    add_option_flags(
        g, ["checkpoint_every", "keep", "deterministic", "threads", "data_placement", "tensorboard"]
    )
    g.add_argument(
        "--nproc",
        type=positive_int,
        default=1,
        help="data-parallel processes on this machine, launched with torchrun's launcher "
        "(gloo on CPU, NCCL on CUDA; --batch-size stays the global batch) [1]",
    )


def _argv_of(parser: argparse.ArgumentParser, args: argparse.Namespace, skip: set[str]) -> list[str]:
    """The flags that reproduce ``args`` (those differing from their defaults), for worker processes."""
    argv = []
    for a in parser._actions:
        value = getattr(args, a.dest, None)
        if (
            not a.option_strings
            or a.dest in skip
            or isinstance(a, argparse._HelpAction)
            or value == a.default
        ):
            continue
        if isinstance(a, argparse.BooleanOptionalAction):
            argv.append(a.option_strings[0] if value else f"--no-{a.option_strings[0][2:]}")
        elif isinstance(a, argparse._StoreTrueAction):
            argv.append(a.option_strings[0])
        else:
            argv += [a.option_strings[0], str(value)]
    return argv


def cmd_train(args: argparse.Namespace) -> int:
    check_names_typed(args, [args.model] if args.model else [])
    # deferred: torch (~1 s): `cnnlab --help` and name checks answer before it loads
    from cnnlab.engine import distributed

    if args.nproc > 1 and not distributed.launched():  # become the launcher: torchrun, in-process
        argv = ["-m", "cnnlab", "train", *_argv_of(args.parser, args, skip={"nproc", "parser", "handler"})]
        return distributed.launch(args.nproc, argv)

    # deferred: as above (torch is loaded by now, but only on this path)
    import torch.distributed

    from cnnlab.engine.signals import Interrupted
    from cnnlab.experiment import train

    cfg = _config(args)
    try:
        r = train(
            cfg,
            out=args.out,
            data_dir=args.data_dir,
            overwrite=args.overwrite,
            progress=not args.quiet and not args.json,
            resume=args.resume,
            force=args.force,
        )
    except Interrupted as exc:  # the exact command that continues the run
        raise exc.continuing_with(
            f"`cnnlab train --resume auto --out {shlex.quote(str(args.out))}`"
        ) from None
    except torch.distributed.DistError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CnnlabError(f"the distributed job lost a process ({first})") from None
    finally:
        distributed.shutdown()
    if not r.primary:  # other ranks of a distributed run: rank 0 reports
        return 0
    row = {**r.row(), "run": str(r.path), "test_loss": round(r.test["loss"], 4), "n_test": r.test["n"]}
    if args.json:
        print_json(row)
    else:
        table(
            f"{row['model']} on {args.data}",
            ["model", "params", "epochs", "best", "train s", "accuracy", "error %"],
            [
                [
                    row["model"],
                    f"{row['params']:,}",
                    row["epochs_run"],
                    row["best_epoch"],
                    row["train_seconds"],
                    row["test_accuracy"],
                    row["error_pct"],
                ]
            ],
        )
        print(f"Error: {r.test['error_pct']:.2f}% on {r.test['n']:,} final-set images. Run saved to {r.path}")
    return 0


def check_names_typed(args: argparse.Namespace, models: list[str]) -> None:
    """The names typed on the command line, checked before PyTorch loads: a typo of a model, recipe,
    dataset or folder fails in a fraction of a second, with the close matches."""
    if args.recipe != "auto":
        get_recipe(args.recipe)
    names.check_dataset_name(args.data)
    for m in models:
        names.check_model_name(m)


def _config(args: argparse.Namespace):
    """The run's config: from the command line, or for ``--resume auto`` from the run folder's own
    checkpoints with the flags given again over it (``cnnlab train --resume auto --out RUN`` alone)."""
    # deferred: torch (~1 s): `cnnlab --help` and name checks answer before it loads
    from cnnlab.experiment import resumed_config

    if args.resume == "auto" and args.out:
        given = given_options(args)
        if args.recipe != "auto":
            given["recipe"] = args.recipe
        cfg = resumed_config(args.out, given, force=args.force)
        if cfg is not None:
            return cfg
    return config_from_args(args, None)


def cmd_eval(args: argparse.Namespace) -> int:
    # deferred: torch (~1 s): `cnnlab --help` and name checks answer before it loads
    from cnnlab.engine import evaluate
    from cnnlab.run.folder import load_run

    run = load_run(args.run)
    cfg = run.config
    config = TrainConfig.from_dict(cfg)
    data = run.load_dataset(data_dir=args.data_dir)
    # as training's own look at the test set: the run's test-time views and autocast
    m = evaluate(run.model, data.test, tta=config.tta_views or None, amp=config.amp)
    if args.json:
        print_json({"run": str(run.path), "model": cfg["model"], **m})
    else:
        print(
            f"{run.path}: {cfg['model']} on {cfg['data']} final set ({m['n']:,} images): loss {m['loss']:.4f}, "
            f"accuracy {m['accuracy']:.4f}, Error: {m['error_pct']:.2f}%"
        )
    return 0


# The quick form of the tutorial's experiment (`compare --quick`, the demo): the post's split and models on
# 10,000 of its training and validation images, cnnlab's fast recipe (one-cycle Adam, label smoothing,
# normalisation) for 4 epochs: about 5 minutes on a 2-core AVX2 CPU in float32, where one epoch of the full
# 45,000 images costs the four models 4.5 minutes (cnn4 alone 2.5). Measured orderings of cnn1 and cnn2 in
# short runs (full data 5 epochs 8.14 / 8.61 %; 15,000 images 8 epochs 9.75 / 10.49 %) differ from the
# converged protocol's, which the demo prints beside its own.
QUICK = {"split": "tutorial", "limit": 10000, "epochs": 4, "batch_size": 128}
QUICK_RECIPE = "fast"


def _quick(args: argparse.Namespace) -> None:
    """Fill in the quick form where the command line left a value out, and say what it is."""
    for k, v in QUICK.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.recipe == "auto":
        args.recipe = QUICK_RECIPE
    if not (args.quiet or args.json):
        print(
            f"Quick form of the tutorial's experiment: the post's models and 45,000 / 15,000 split, of which "
            f"{args.limit:,} training and {args.limit:,} validation images, trained by cnnlab's {args.recipe} recipe "
            f"({args.epochs} epochs, batch {args.batch_size}, one-cycle Adam, label smoothing; the best validation "
            "epoch kept) instead of the post's Adam 1e-3, batch 32 and early stopping after 10-17 epochs on all "
            "of them; error on the official 10,000 test images.",
            flush=True,
        )


def cmd_compare(args: argparse.Namespace) -> int:
    # deferred: torch (~1 s): `cnnlab --help` and name checks answer before it loads
    from cnnlab.experiment import compare, lesson, results_table_md

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    check_names_typed(args, models)
    if args.quick:  # the quick-start main job: a subset and a short schedule, minutes on a laptop CPU
        _quick(args)
    cfg = config_from_args(args, models[0] if models else "mlp")
    quiet = args.quiet or args.json

    def show(r):
        if not quiet:
            print(
                f"  {r.name}: error {r.test['error_pct']:.2f}% after {r.history.epochs} epochs ({r.history.total_seconds:.0f} s)"
            )

    results = compare(
        models,
        cfg,
        out=args.out,
        data_dir=args.data_dir,
        overwrite=args.overwrite,
        progress=not quiet,
        resume=args.resume,
        on_result=show,
    )
    if args.json:
        print_json({"out": str(args.out), "results": [r.row() for r in results]})
    else:
        print(results_table_md(results))
        for line in lesson(results):
            print(line)
        if args.out:
            print(f"Saved results.md, results.csv and learning_curves.png to {args.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one model and write a run folder")
    p.add_argument("--out", required=True, help="run folder to create (never overwritten unless --overwrite)")
    add_data_args(p)
    add_recipe_args(p)
    add_run_args(p)
    p.set_defaults(handler=cmd_train, parser=p)

    p = sub.add_parser("eval", help="evaluate a run on its dataset's final (official test) set")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_eval)

    p = sub.add_parser("compare", help="the tutorial's experiment: several models, same protocol, one table")
    p.add_argument(
        "--models", default="mlp,cnn1,cnn2,cnn4", help="comma-separated names or specs [mlp,cnn1,cnn2,cnn4]"
    )
    p.add_argument(
        "--out", default=None, help="folder for results.md/csv, learning_curves.png and one run per model"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"a few-minute version: recipe {QUICK_RECIPE} with {QUICK} unless given explicitly",
    )
    p.add_argument(
        "--resume",
        choices=("auto",),
        help="continue an interrupted comparison in --out: finished models are kept, an interrupted one "
        "continues from its checkpoints, the rest are trained",
    )
    add_data_args(p)
    add_recipe_args(p, model_flag=False)
    add_option_flags(p, ["data_placement"])  # each model trains as `cnnlab train --data-placement` would
    p.set_defaults(handler=cmd_compare)
