"""Flags shared by `train` and `compare`: data options, recipe flags (each overriding the recipe's value),
and how they become a TrainConfig."""

from __future__ import annotations

import argparse

from cnnlab.commands.args import number, positive_float, positive_int


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
        "--monitor",
        choices=("val_loss", "val_accuracy", "loss", "accuracy"),
        help="what early stopping and model selection watch: val_loss or val_accuracy; loss or accuracy watch "
        "the training split instead [val_loss]",
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
