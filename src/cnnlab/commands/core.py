"""Core subcommands: datasets, models, summary, train, eval, compare."""

from __future__ import annotations

import argparse
import os

from cnnlab.commands.args import non_negative_int, number, positive_float, positive_int, print_json
from cnnlab.errors import CnnlabError


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        default="fashion_mnist",
        help="built-in dataset (see `cnnlab datasets`), a folder with one sub-folder per class, or a CSV of path,label",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder holding the dataset's files (else $CNNLAB_DATA_DIR, else download to the user cache)",
    )
    p.add_argument(
        "--split",
        default=None,
        help="tutorial (45,000/15,000/10,000, the post's protocol) or default (55,000/5,000/10,000 stratified)",
    )
    p.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        help="cap each split at N images (quick runs; the final set is then not the full official test)",
    )
    p.add_argument(
        "--image-size",
        type=positive_int,
        default=None,
        help="square input size in pixels [folders: 64; built-ins: native, else resized]",
    )
    p.add_argument(
        "--channels",
        type=int,
        choices=(1, 3),
        default=None,
        help="1 (grayscale) or 3 (RGB) [folders: 3; built-ins: native]",
    )
    p.add_argument(
        "--resize",
        choices=("pad", "crop", "stretch"),
        default="pad",
        help="folders: keep the aspect ratio and pad, centre-crop, or stretch to the square [pad]",
    )
    p.add_argument(
        "--bad-images",
        choices=("skip", "strict"),
        default="skip",
        help="folders: skip unreadable images and list them, or fail at the first one [skip]",
    )


def _patience(text: str) -> int | None:
    if text.lower() == "none":
        return "none"  # not None: None means "flag not given, take the recipe's"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'none', got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 or 'none', got {value}")
    return value


# Flags a recipe sets when they are not given (argparse default None means "not given").
RECIPE_FLAGS = (
    "model",
    "split",
    "epochs",
    "batch_size",
    "lr",
    "optimizer",
    "weight_decay",
    "schedule",
    "label_smoothing",
    "patience",
    "monitor",
    "channels_last",
    "normalize",
    "augment_translate",
    "augment_flip",
    "augment_erasing",
    "ema",
    "amp",
    "compile",
    "tta",
)


def add_recipe_args(p: argparse.ArgumentParser) -> None:
    from cnnlab.config import TrainConfig
    from cnnlab.recipes import RECIPES

    d = TrainConfig()
    p.add_argument(
        "--recipe",
        default="tutorial",
        help="named defaults for the flags below: "
        + "; ".join(f"{r.name}: {r.description}" for r in RECIPES.values())
        + " [tutorial]",
    )
    g = p.add_argument_group("recipe flags (each overrides the recipe's value)")
    g.add_argument("--epochs", type=positive_int, help=f"maximum epochs [{d.epochs}]")
    g.add_argument("--batch-size", type=positive_int, help=f"[{d.batch_size}]")
    g.add_argument("--lr", type=positive_float, help=f"learning rate (peak lr for onecycle) [{d.lr:g}]")
    g.add_argument("--optimizer", help="adam, adamw, sgd or nesterov [adam]")
    g.add_argument("--weight-decay", type=number)
    g.add_argument("--schedule", help="constant, onecycle or linear [constant]")
    g.add_argument("--label-smoothing", type=number)
    g.add_argument(
        "--patience",
        type=_patience,
        help="early-stopping patience in epochs, or 'none'; the best epoch's weights are always restored [5]",
    )
    g.add_argument(
        "--monitor", help="what early stopping and model selection watch: val_loss or val_accuracy [val_loss]"
    )
    g.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="NHWC memory layout (faster convolutions) [on]",
    )
    g.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="per-channel mean/std of the training split inside the model [off]",
    )
    g.add_argument(
        "--augment-translate", type=int, metavar="PIXELS", help="random shifts of up to PIXELS [0]"
    )
    g.add_argument("--augment-flip", help="none, random or alternating [none]")
    g.add_argument("--augment-erasing", type=number, metavar="P", help="random-erasing probability [0]")
    g.add_argument(
        "--ema",
        type=number,
        metavar="DECAY",
        help="keep an exponential moving average of the weights, e.g. 0.999",
    )
    g.add_argument("--amp", help="autocast: auto (bf16 on CUDA, off on CPU), off, bf16, fp16 [auto]")
    g.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile (warm-up timed separately) [off]",
    )
    g.add_argument("--tta", help="test-time views for the final evaluation, e.g. identity,flip []")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, help="auto, cpu or cuda [auto]")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print machine-readable results")


def config_from_args(args: argparse.Namespace, model: str | None):
    """TrainConfig defaults <- the recipe's settings for the device <- flags given explicitly."""
    from cnnlab.config import TrainConfig
    from cnnlab.engine import resolve_device

    device_type = resolve_device(args.device).type
    given = {k: getattr(args, k) for k in RECIPE_FLAGS if getattr(args, k, None) is not None}
    if model is not None:
        given["model"] = model
    if given.get("patience") == "none":
        given["patience"] = None
    data = {k: getattr(args, k) for k in ("data", "limit", "image_size", "channels", "resize", "bad_images")}
    return TrainConfig.from_recipe(
        args.recipe, device_type=device_type, **data, **given, seed=args.seed, device=args.device
    ).validate()


def _table(title: str, columns: list[str], rows: list[list]) -> None:
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


def cmd_datasets(args: argparse.Namespace) -> int:
    from cnnlab.data import list_datasets

    ds = list_datasets()
    if args.json:
        print_json(ds)
        return 0
    rows = [
        [
            d["name"],
            "x".join(map(str, d["input_shape"])),
            len(d["classes"]),
            d.get("train_size", ""),
            d.get("test_size", ""),
            d.get("description", ""),
        ]
        for d in ds
    ]
    _table("Built-in datasets", ["name", "input", "classes", "train", "test", "description"], rows)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from cnnlab.models import GRAMMAR, count_params, create_model, list_models

    infos = list_models()
    rows = [
        [m.name, f"{count_params(create_model(m.name)):,}", m.spec or "(code)", m.description] for m in infos
    ]
    if args.json:
        print_json(
            [dict(zip(["name", "params_28x28x1", "spec", "description"], r, strict=True)) for r in rows]
        )
        return 0
    _table(
        "Registered models (params for 28x28x1, 10 classes)", ["name", "params", "spec", "description"], rows
    )
    print(f"Or pass a layer spec to --model: {GRAMMAR}")
    return 0


def _input_shape_for(data: str) -> tuple[tuple[int, int, int], int]:
    from cnnlab.data import list_datasets

    infos = {d["name"]: d for d in list_datasets()}
    if data not in infos:
        raise CnnlabError(f"Unknown dataset {data!r}. Available: {', '.join(infos)}")
    info = infos[data]
    return tuple(info["input_shape"]), len(info["classes"])


def cmd_summary(args: argparse.Namespace) -> int:
    from cnnlab.models import create_model
    from cnnlab.summarize import summary

    shape, classes = _input_shape_for(args.data)
    s = summary(create_model(args.model, input_shape=shape, num_classes=classes), shape)
    if args.json:
        print_json(s.as_dict())
    else:
        print(f'Model: "{args.model}" on {args.data} ({"x".join(map(str, shape))})')
        print(s)
    return 0


def add_run_args(p: argparse.ArgumentParser) -> None:
    from cnnlab.config import TrainConfig

    d = TrainConfig()
    g = p.add_argument_group("checkpoints, resuming, reproducibility, processes")
    g.add_argument(
        "--resume",
        metavar="auto|PATH",
        help="continue from the newest valid checkpoint in --out (auto: start afresh if there is none) "
        "or from the checkpoint folder PATH",
    )
    g.add_argument(
        "--force", action="store_true", help="resume even from a checkpoint made with other settings"
    )
    g.add_argument(
        "--checkpoint-every",
        type=non_negative_int,
        metavar="STEPS",
        default=d.checkpoint_every,
        help=f"checkpoint every STEPS optimizer steps as well as after each epoch (0: epochs only) [{d.checkpoint_every}]",
    )
    g.add_argument(
        "--keep",
        type=positive_int,
        default=d.keep,
        help=f"checkpoints kept: the newest K plus the best [{d.keep}]",
    )
    g.add_argument(
        "--deterministic",
        action="store_true",
        help="seed everything, deterministic algorithms only, pinned thread count (recorded in env.json)",
    )
    g.add_argument("--threads", type=positive_int, help="CPU threads for torch [torch's default]")
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
    from dataclasses import replace

    from cnnlab.engine import distributed

    if args.nproc > 1 and not distributed.launched():  # become the launcher: torchrun, in-process
        argv = ["-m", "cnnlab", "train", *_argv_of(args.parser, args, skip={"nproc", "parser", "handler"})]
        return distributed.launch(args.nproc, argv)

    import torch.distributed

    from cnnlab.experiment import train

    cfg = replace(
        config_from_args(args, args.model),
        checkpoint_every=args.checkpoint_every,
        keep=args.keep,
        threads=args.threads,
        deterministic=args.deterministic,
    ).validate()
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
        _table(
            f"{args.model} on {args.data}",
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


def cmd_eval(args: argparse.Namespace) -> int:
    from cnnlab.config import TrainConfig
    from cnnlab.data import load_data
    from cnnlab.engine import evaluate
    from cnnlab.runs import load_run

    run = load_run(args.run)
    cfg = run.config
    data_dir = args.data_dir or (
        cfg.get("data_dir") if cfg.get("data_dir") and os.path.isdir(cfg["data_dir"]) else None
    )
    data = load_data(
        cfg["data"],
        split=cfg["split"],
        seed=cfg["seed"],
        data_dir=data_dir,
        limit=cfg.get("limit"),
        **TrainConfig.from_dict(cfg).data_options(),
    )
    m = evaluate(run.model, data.test)
    if args.json:
        print_json({"run": str(run.path), "model": cfg["model"], **m})
    else:
        print(
            f"{run.path}: {cfg['model']} on {cfg['data']} final set ({m['n']:,} images): loss {m['loss']:.4f}, "
            f"accuracy {m['accuracy']:.4f}, Error: {m['error_pct']:.2f}%"
        )
    return 0


QUICK = {"limit": 10000, "epochs": 6, "batch_size": 64, "patience": 3}


def cmd_compare(args: argparse.Namespace) -> int:
    from cnnlab.experiment import compare, results_table_md

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.quick:  # the quick-start main job: a subset and a short schedule, minutes on a laptop CPU
        for k, v in QUICK.items():
            if getattr(args, k) is None:
                setattr(args, k, v)
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
        on_result=show,
    )
    if args.json:
        print_json({"out": str(args.out), "results": [r.row() for r in results]})
    else:
        print(results_table_md(results))
        if args.out:
            print(f"Saved results.md, results.csv and learning_curves.png to {args.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("datasets", help="list the built-in datasets")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_datasets)

    p = sub.add_parser("models", help="list the registered models and the layer-spec grammar")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_models)

    p = sub.add_parser("summary", help="Keras-style summary of a model or layer spec")
    p.add_argument("model", metavar="MODEL_OR_SPEC")
    p.add_argument("--data", default="fashion_mnist", help="dataset whose input shape and classes to use")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_summary)

    p = sub.add_parser("train", help="train one model and write a run folder")
    p.add_argument(
        "--model", default=None, help="registered model name or layer spec [cnn2, or the recipe's]"
    )
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
        "--quick", action="store_true", help=f"a few-minute version: {QUICK} unless given explicitly"
    )
    add_data_args(p)
    add_recipe_args(p)
    p.set_defaults(handler=cmd_compare)
