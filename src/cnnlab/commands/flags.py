"""Command-line flags derived from the one table of options (`cnnlab.config.TrainConfig`): each field
becomes ``--its-name`` with its help, type and allowed values; a recipe option's flag has no default of
its own (not given: the recipe's value). ``config_from_args`` turns the parsed flags back into a config."""

from __future__ import annotations

import argparse
from typing import Any

from cnnlab.commands.args import non_negative_int, number, positive_int

NONE = "none"  # what a flag such as --patience none parses to (argparse's None means "not given")


def _parser_for(name: str, base: type, opt) -> Any:
    if base is int:
        parse = positive_int if opt.low == 1 else non_negative_int if opt.low == 0 else int
    elif base is float:
        parse = number
    else:
        parse = str
    if opt.none is None:
        return parse

    def with_none(text: str):
        return NONE if text.lower() == opt.none else parse(text)

    with_none.__name__ = getattr(parse, "__name__", name)
    return with_none


def _help(opt, default: Any) -> str:
    allowed = f"; items of {','.join(opt.each)}" if opt.each else ""
    shown = opt.none if default is None and opt.none else default
    shown = "" if default is None else ("on" if shown is True else "off" if shown is False else shown)
    return f"{opt.help}{allowed}" + (f" [{shown}]" if shown != "" else "")


def add_option_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, names: list[str]) -> None:
    """One flag per option in ``names``, as the table declares it."""
    from cnnlab.config import _kind, flag, options

    table = options()
    for name in names:
        opt, default, annotation = table[name]
        base, _ = _kind(annotation)
        kw: dict[str, Any] = {"dest": name, "help": _help(opt, default)}
        kw["default"] = None if opt.recipe else default
        if base is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = _parser_for(name, base, opt)
            choices = "|".join(map(str, opt.choices)) if opt.choices else None
            kw["metavar"] = opt.metavar or choices or ("N" if base is int else name.upper())
        parser.add_argument(flag(name), **kw)


def add_data_args(p: argparse.ArgumentParser) -> None:
    from cnnlab.config import options_in

    g = p.add_argument_group("data")
    add_option_flags(g, options_in("data"))
    g.add_argument(
        "--data-dir",
        default=None,
        help="folder holding the dataset's files (else $CNNLAB_DATA_DIR, else download to the user cache)",
    )


def add_recipe_args(p: argparse.ArgumentParser, *, model_flag: bool = True) -> None:
    """--recipe and the recipe flags, --seed and --device; ``model_flag``: include --model."""
    from cnnlab.config import options_in
    from cnnlab.recipes import RECIPES

    p.add_argument(
        "--recipe",
        default="tutorial",
        help="named defaults for the recipe flags: "
        + "; ".join(f"{r.name}: {r.description}" for r in RECIPES.values())
        + " [tutorial]",
    )
    g = p.add_argument_group("recipe flags (each overrides the recipe's value)")
    names = options_in("model", "training", "selection", recipe=True)
    add_option_flags(g, [n for n in names if model_flag or n != "model"])
    add_option_flags(p, ["seed", "device"])
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--json", action="store_true", help="print machine-readable results")


def config_from_args(args: argparse.Namespace, model: str | None):
    """TrainConfig defaults <- the recipe's settings for the device <- options given on the command line."""
    from cnnlab.config import TrainConfig, options
    from cnnlab.engine import resolve_device

    table = options()
    given = {k: getattr(args, k) for k in table if getattr(args, k, None) is not None}
    given.pop("recipe", None)
    if model is not None:
        given["model"] = model
    given = {k: (None if table[k][0].none and v == NONE else v) for k, v in given.items()}
    device_type = resolve_device(given.get("device", "auto")).type
    return TrainConfig.from_recipe(args.recipe, device_type=device_type, **given).validate()
