"""Command-line flags derived from the one table of options (`cnnlab.config.TrainConfig`): each field
becomes ``--its-name`` with its help, type and allowed values; a recipe option's flag has no default of
its own (not given: the recipe's value). ``config_from_args`` turns the parsed flags back into a config."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from cnnlab.commands.args import number
from cnnlab.config import TrainConfig, _kind, check_value, flag, options, options_in
from cnnlab.errors import CnnlabError
from cnnlab.recipes import RECIPES

NONE = "none"  # what a flag such as --patience none parses to (argparse's None means "not given")


def _parser_for(name: str, base: type, annotation: Any, opt) -> Any:
    """Text -> value, checked against the option's declaration: a value that does not fit is argparse's
    one-line usage error (exit code 2), as any malformed command line."""
    parse = {int: _int, float: number}.get(base, str)

    def parse_and_check(text: str):
        if opt.none is not None and text.lower() == opt.none:
            return NONE
        value = parse(text)
        try:  # choices are argparse's own check ("invalid choice: ... (choose from ...)")
            check_value(name, value, annotation, replace(opt, choices=None))
        except CnnlabError as exc:
            why = str(exc).removeprefix(flag(name) + " ")  # "must be a positive integer, got 0"
            raise argparse.ArgumentTypeError(why.replace("must be ", "expected ", 1)) from None
        return value

    parse_and_check.__name__ = "value"
    return parse_and_check


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


class _Given:
    """Remembers that the command line gave this flag (``args._given``), even at its default value: a
    resumed run must know ``--data fashion_mnist`` typed from the same value left out."""

    dest: str

    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, values, option_string)
        namespace._given = (getattr(namespace, "_given", None) or set()) | {self.dest}


class _StoreGiven(_Given, argparse._StoreAction):
    pass


class _BoolGiven(_Given, argparse.BooleanOptionalAction):
    pass


def _help(opt, default: Any) -> str:
    allowed = f"; items of {','.join(opt.each)}" if opt.each else ""
    shown = opt.none if default is None and opt.none else default
    shown = "" if default is None else ("on" if shown is True else "off" if shown is False else shown)
    shown = f"{shown:g}" if isinstance(shown, float) else shown
    return f"{opt.help}{allowed}" + (f" [{shown}]" if shown != "" else "")


def add_option_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, names: list[str]) -> None:
    """One flag per option in ``names``, as the table declares it."""
    table = options()
    for name in names:
        opt, default, annotation = table[name]
        base, _ = _kind(annotation)
        kw: dict[str, Any] = {"dest": name, "help": _help(opt, default)}
        kw["default"] = None if opt.recipe else default
        if opt.const is not None:
            kw["nargs"] = "?"
            kw["const"] = opt.const
        if base is bool:
            kw["action"] = _BoolGiven
        else:
            kw["action"] = _StoreGiven
            kw["type"] = _parser_for(name, base, annotation, opt)
            if opt.choices:
                kw["choices"] = opt.choices
            choices = "|".join(map(str, opt.choices)) if opt.choices else None
            kw["metavar"] = opt.metavar or choices or ("N" if base is int else name.upper())
        parser.add_argument(flag(name), **kw)


def add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    add_option_flags(g, options_in("data"))
    g.add_argument(
        "--data-dir",
        default=None,
        help="folder holding the dataset's files (else $CNNLAB_DATA_DIR, else download to the user cache)",
    )


def add_recipe_args(p: argparse.ArgumentParser, *, model_flag: bool = True) -> None:
    """--recipe and the recipe flags, --seed and --device; ``model_flag``: include --model."""
    p.add_argument(
        "--recipe",
        default="auto",
        help="named defaults for the recipe flags. auto: tutorial for the built-in datasets, folder for your "
        "own; " + "; ".join(f"{r.name}: {r.description}" for r in RECIPES.values()) + " [auto]",
    )
    g = p.add_argument_group("recipe flags (each overrides the recipe's value)")
    names = options_in("model", "training", "selection", recipe=True)
    add_option_flags(g, [n for n in names if model_flag or n != "model"])
    add_option_flags(p, ["seed", "device"])
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--json", action="store_true", help="print machine-readable results")


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options the command line set: flags typed (even at their default value), and values a command
    filled in itself (``compare --quick``); ``--patience none`` as None."""
    typed = getattr(args, "_given", None) or set()
    given = {}
    for k, (opt, default, _) in options().items():
        v = getattr(args, k, None)
        if k != "recipe" and v is not None and (opt.recipe or k in typed or v != default):
            given[k] = None if opt.none and v == NONE else v
    return given


def config_from_args(args: argparse.Namespace, model: str | None):
    """TrainConfig defaults <- the recipe's settings for the device <- options given on the command line."""
    # deferred: torch (~1 s): `cnnlab --help` and name checks answer before it loads
    from cnnlab.engine import resolve_device

    given = given_options(args)
    if model is not None:
        given["model"] = model
    if "epochs" in given:  # epochs asked for by name are what the user gets: no floor raises them
        given.setdefault("min_steps", 0)
    device_type = resolve_device(given.get("device", "auto")).type
    return TrainConfig.from_recipe(args.recipe, device_type=device_type, **given).validate()
