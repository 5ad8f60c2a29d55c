"""Core subcommands: datasets, models, summary."""

from __future__ import annotations

import argparse

from cnnlab.commands.args import positive_int, print_json, table
from cnnlab.errors import CnnlabError


def cmd_datasets(args: argparse.Namespace) -> int:
    # deferred: torch (~1 s): `cnnlab --help` and name checks answer before it loads
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
    table("Built-in datasets", ["name", "input", "classes", "train", "test", "description"], rows)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    # deferred: torch (~1 s): `cnnlab --help` and name checks answer before it loads
    from cnnlab.models import GRAMMAR, count_params, create_model, list_models

    infos = list_models(families=True)
    # built once: a number for --json; a family (timm:NAME) is many models, built only when named
    params = {m.name: None if m.family else count_params(create_model(m.name)) for m in infos}
    if args.json:
        print_json(
            [
                {
                    "name": m.name,
                    "params_28x28x1": params[m.name],
                    "spec": m.spec,
                    "description": m.description,
                }
                for m in infos
            ]
        )
        return 0
    rows = [
        [
            m.name,
            "-" if m.family else f"{params[m.name]:,}",
            "(timm)" if m.family else m.spec or "(code)",
            m.description,
        ]
        for m in infos
    ]
    table(
        "Registered models (params for 28x28x1, 10 classes)", ["name", "params", "spec", "description"], rows
    )
    print(f"Or pass a layer spec to --model: {GRAMMAR}")
    return 0


def _input_shape_for(args: argparse.Namespace) -> tuple[tuple[int, int, int], int]:
    """(input shape, classes) of a built-in dataset, or of a folder/CSV as `train` would decode it."""
    # deferred: torch (~1 s): `cnnlab --help` and name checks answer before it loads
    from cnnlab.data import list_datasets
    from cnnlab.data.folder import DEFAULT_CHANNELS, DEFAULT_IMAGE_SIZE
    from cnnlab.data.folder_source import is_folder_dataset, scan_source

    infos = {d["name"]: d for d in list_datasets()}
    if args.data in infos:
        info = infos[args.data]
        c, h, w = info["input_shape"]
        size = args.image_size or h
        return (args.channels or c, size, size if args.image_size else w), len(info["classes"])
    if is_folder_dataset(args.data):
        size = args.image_size or DEFAULT_IMAGE_SIZE
        return (args.channels or DEFAULT_CHANNELS, size, size), len(scan_source(args.data).classes)
    raise CnnlabError(
        f"Unknown dataset {args.data!r}. Available: {', '.join(infos)}, or a folder with one sub-folder per "
        "class, or a CSV of path,label"
    )


def cmd_summary(args: argparse.Namespace) -> int:
    # deferred: torch (~1 s): `cnnlab --help` and name checks answer before it loads
    from cnnlab.models import create_model
    from cnnlab.summarize import summary

    shape, classes = _input_shape_for(args)
    s = summary(create_model(args.model, input_shape=shape, num_classes=classes), shape)
    if args.json:
        print_json(s.as_dict())
    else:
        print(f'Model: "{args.model}" on {args.data} ({"x".join(map(str, shape))})')
        print(s)
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
    p.add_argument(
        "--data",
        default="fashion_mnist",
        help="dataset (or your folder/CSV) whose input shape and classes to use",
    )
    p.add_argument(
        "--image-size", type=positive_int, default=None, help="input size, as train's --image-size"
    )
    p.add_argument("--channels", type=int, choices=(1, 3), default=None, help="1 or 3, as train's --channels")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_summary)
