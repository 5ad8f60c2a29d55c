"""TrainConfig: the one table of training options.

Every option is declared once, as a field with its default, help text, allowed values and whether recipes
set it. The CLI's flags (`cnnlab.commands.flags`), the recipes' overrides (`cnnlab.recipes`), ``fit``'s
keyword options and their defaults, and validation are all derived from this table, and validation runs
before any data is loaded. ``TrainOptions`` types ``fit``'s keywords for IDEs and mypy; a test keeps it
equal to the table's ``training`` group.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any, TypedDict, get_type_hints

from cnnlab.errors import CnnlabError, did_you_mean
from cnnlab.recipes import choose, get_recipe

OPTIMIZERS = ("adam", "adamw", "sgd", "nesterov")
SCHEDULES = ("constant", "onecycle", "linear")
MONITORS = ("val_loss", "val_accuracy", "loss", "accuracy")
AMP = ("auto", "off", "bf16", "fp16")
FLIPS = ("none", "random", "alternating")
TTA_VIEWS = ("identity", "flip", "left", "right", "up", "down")
RESIZE = ("pad", "crop", "stretch")


@dataclass(frozen=True)
class Option:
    """How one TrainConfig field is shown and checked.

    ``group``: data (what to train on), model, training (how; ``fit`` takes these), selection (which epoch
    wins), run (checkpoints, devices, reproducibility). ``recipe``: recipes may set it, so its flag has no
    default of its own. ``low``/``high``: inclusive bounds unless ``low_open``/``high_open``. ``each``:
    allowed items of a comma-separated value. ``none``: the word that means None on the command line.
    ``resume``: a resumed run may change it (it does not change what is trained). ``report``: how the
    protocol in results.md names it when it is not at its default, a format with ``{}`` for the value
    (None: the protocol's own sentence covers it, or it does not change what is trained).
    """

    help: str
    group: str
    recipe: bool = False
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    each: tuple[str, ...] | None = None
    none: str | None = None
    metavar: str | None = None
    const: str | None = None  # the value of the flag given without one (``--pretrained`` alone)
    resume: bool = False
    report: str | None = None


def option(default: Any, help: str, group: str, **kw: Any) -> Any:
    return field(default=default, metadata={"option": Option(help, group, **kw)})


@dataclass
class TrainConfig:
    # what to train on
    data: str = option(
        "fashion_mnist",
        "a built-in dataset (see `cnnlab datasets`), a folder with one sub-folder per class, or a CSV of path,label",
        "data",
    )
    split: str = option(
        "tutorial",
        "built-ins: tutorial (45,000/15,000/10,000, the post's) or default (55,000/5,000/10,000 stratified); "
        "folders: default (stratified 70/15/15) or train/val/test percentages such as 80/10/10",
        "data",
        recipe=True,
    )
    limit: int | None = option(
        None, "cap each split at N images (quick runs; the final set is then a subset)", "data", low=1
    )
    image_size: int | None = option(
        None, "square input size in pixels [folders: 64; built-ins: native]", "data", low=1
    )
    channels: int | None = option(
        None, "1 (grayscale) or 3 (RGB) [folders: 3; built-ins: native]", "data", choices=(1, 3)
    )
    resize: str = option(
        "pad", "folders: keep the aspect ratio and pad, centre-crop, or stretch", "data", choices=RESIZE
    )
    bad_images: str = option(
        "skip",
        "folders: skip unreadable images and list them, or fail at the first one",
        "data",
        choices=("skip", "strict"),
    )
    # what to train
    model: str = option("cnn2", "a registered model name or a layer spec", "model", recipe=True)
    recipe: str = option(
        "tutorial",
        "named defaults for the recipe options (see cnnlab.recipes); auto: tutorial for the built-in datasets, "
        "folder for your own folders",
        "model",
    )
    normalize: bool = option(
        False, "per-channel mean/std of the training split inside the model", "model", recipe=True
    )
    pretrained: str | None = option(
        None,
        "start a timm:NAME backbone from weights: alone (or 'imagenet') its ImageNet weights from the Hugging "
        "Face cache, or the path of a .safetensors file",
        "model",
        recipe=True,
        const="imagenet",
        none="none",
        metavar="PATH",
    )
    # how (the tutorial's recipe by default: Keras' Adam, batch 32, early stopping on val_loss, patience 5)
    epochs: int = option(100, "maximum epochs", "training", recipe=True, low=1)
    min_steps: int = option(
        0,
        "a floor on the optimizer steps in all: on a small training split, epochs are raised until they give "
        "this many (0: none; an explicit --epochs turns it off)",
        "training",
        recipe=True,
        low=0,
    )
    batch_size: int = option(
        32,
        "images per optimizer step (at most a quarter of the training split)",
        "training",
        recipe=True,
        low=1,
    )
    lr: float = option(
        1e-3, "learning rate (the peak for onecycle)", "training", recipe=True, low=0, low_open=True
    )
    optimizer: str = option("adam", "the optimizer", "training", recipe=True, choices=OPTIMIZERS)
    weight_decay: float = option(0.0, "L2 weight decay", "training", recipe=True, low=0)
    schedule: str = option("constant", "learning-rate schedule", "training", recipe=True, choices=SCHEDULES)
    label_smoothing: float = option(
        0.0,
        "label smoothing of the training loss",
        "training",
        recipe=True,
        low=0,
        high=1,
        high_open=True,
        report="label smoothing {:g}",
    )
    clip_grad_norm: float | None = option(
        None,
        "clip the gradients' global L2 norm to at most this before each optimizer step ('none': no clipping)",
        "training",
        recipe=True,
        low=0,
        low_open=True,
        none="none",
        metavar="NORM",
        report="gradients clipped to norm {:g}",
    )
    augment_translate: int = option(
        0,
        "random shifts of up to N pixels",
        "training",
        recipe=True,
        low=0,
        high=64,
        metavar="PIXELS",
        report="shifts of up to {} pixels",
    )
    augment_flip: str = option(
        "none", "horizontal flips", "training", recipe=True, choices=FLIPS, report="{} horizontal flips"
    )
    augment_erasing: float = option(
        0.0,
        "random-erasing probability per image",
        "training",
        recipe=True,
        low=0,
        high=1,
        metavar="P",
        report="random erasing (p {:g})",
    )
    augment_crop: float = option(
        0.0,
        "random-resized crop: the smallest share of the image's area kept, e.g. 0.4 (0: off)",
        "training",
        recipe=True,
        low=0,
        high=1,
        metavar="AREA",
        report="random-resized crops (at least {:g} of the area)",
    )
    augment_crop_ratio: float = option(
        4 / 3, "random-resized crop: the largest aspect ratio", "training", recipe=True, low=1, high=10,
        metavar="RATIO",
    )  # fmt: skip
    augment_rotate: float = option(
        0.0,
        "random rotation of up to this many degrees",
        "training",
        recipe=True,
        low=0,
        high=180,
        metavar="DEG",
        report="rotations of up to {:g} degrees",
    )
    augment_jitter: float = option(
        0.0,
        "colour jitter strength: brightness, contrast and (RGB) saturation by up to this factor",
        "training",
        recipe=True,
        low=0,
        high=1,
        metavar="S",
        report="colour jitter {:g}",
    )
    backbone_lr: float = option(
        1.0,
        "fine-tuning: the learning rate of everything but the classifier, as a fraction of --lr",
        "training",
        recipe=True,
        low=0,
        high=1,
        low_open=True,
        metavar="FRACTION",
    )
    freeze_epochs: int = option(
        0, "fine-tuning: train only the classifier for the first N epochs", "training", recipe=True, low=0
    )
    ema: float | None = option(
        None,
        "keep an exponential moving average of the weights with this decay, e.g. 0.999; validation and the "
        "saved model use it",
        "training",
        recipe=True,
        low=0,
        high=1,
        low_open=True,
        high_open=True,
        metavar="DECAY",
        report="EMA weights",
    )
    amp: str = option(
        "auto",
        "autocast: auto (bf16 on CUDA, off on CPU), off, bf16, fp16",
        "training",
        recipe=True,
        choices=AMP,
    )
    compile: bool = option(False, "torch.compile (its warm-up is timed separately)", "training", recipe=True)
    cuda_graphs: str = option(
        "auto",
        "capture the whole training step in a CUDA graph and replay it (auto: on a single CUDA GPU)",
        "training",
        choices=("auto", "on", "off"),
    )
    data_placement: str = option(
        "auto",
        "where the training images live: device (resident, the speed on small data), stream (batches read from "
        "the folder cache on disk by a background prefetcher, for data larger than memory), or auto: device "
        "while they fit half the free device (or host) memory, else stream",
        "training",
        choices=("auto", "device", "stream"),
        resume=True,
    )
    channels_last: bool = option(
        True, "NHWC memory layout: faster convolutions on CPU (oneDNN) and GPU", "training", recipe=True
    )
    # CPU speed (issue 27)
    hold_memory: bool = option(
        True,
        "CPU with glibc: freed memory stays with the process while training (no page faults per step); "
        "trimmed afterwards",
        "training",
        resume=True,  # changes no number, only where freed memory goes
    )
    seed: int = option(0, "weights, split, batch order, augmentation and dropout", "training")
    # which epoch's weights the run keeps
    patience: int | None = option(
        5,
        "early-stopping patience in epochs, or 'none' to train every epoch; the best epoch's weights are "
        "always restored",
        "selection",
        recipe=True,
        low=0,
        none="none",
    )
    monitor: str = option(
        "val_loss",
        "what early stopping and model selection watch (loss/accuracy: the training split)",
        "selection",
        recipe=True,
        choices=MONITORS,
    )
    monitor_window: int = option(
        1,
        "epochs averaged before model selection compares them (a trailing mean of the monitor): on a small "
        "validation split one epoch's value is noise",
        "selection",
        recipe=True,
        low=1,
    )
    tta: str = option(
        "",
        "test-time views for the final evaluation, e.g. identity,flip",
        "selection",
        recipe=True,
        resume=True,
        each=TTA_VIEWS,
        report="test-time views {}",
    )
    # where and how the run is kept (not recipe settings; resuming may change the first three)
    device: str = option("auto", "auto (CUDA when present), cpu or cuda", "run", resume=True)
    checkpoint_every: int = option(
        1000,
        "also checkpoint every N optimizer steps (0: only at each epoch's end)",
        "run",
        low=0,
        metavar="STEPS",
        resume=True,
    )
    keep: int = option(3, "checkpoints kept: the newest K, plus the best epoch's", "run", low=1, resume=True)
    threads: int | None = option(None, "CPU threads for torch [torch's default]", "run", low=1, resume=True)
    tensorboard: bool = option(
        False,
        "also write TensorBoard logs to <out>/tensorboard: loss and lr per step, the epoch's metrics, misclassified "
        "validation images, the hyper-parameters (needs the tensorboard package; metrics.csv stays the record)",
        "run",
        resume=True,
    )
    deterministic: bool = option(
        False,
        "seed everything, deterministic algorithms only, pinned thread count (recorded in env.json)",
        "run",
    )

    def validate(self) -> TrainConfig:
        """Check every field against its declaration; the first problem is one clear ``CnnlabError``."""
        hints = get_type_hints(type(self))
        for f in fields(self):
            check_value(f.name, getattr(self, f.name), hints[f.name], f.metadata["option"])
        return self

    @property
    def tta_views(self) -> tuple[str, ...]:
        return tuple(v.strip() for v in self.tta.split(",") if v.strip())

    @classmethod
    def from_recipe(
        cls, recipe: str = "tutorial", *, device_type: str = "cpu", **overrides: Any
    ) -> TrainConfig:
        """Defaults, then the recipe's settings for this device type, then ``overrides`` (explicit flags).
        ``recipe="auto"`` picks one for the data (``cnnlab.recipes.choose``)."""
        if recipe == "auto":
            recipe = choose(overrides.get("data", default_of("data")), pretrained=overrides.get("pretrained"))
        settings = get_recipe(recipe).settings(device_type)
        return cls(**{**settings, **overrides, "recipe": recipe})

    def sized_for(self, n_train: int) -> TrainConfig:
        """This config with the batch size capped by a training split of ``n_train`` images (at most a
        quarter of it, at least 8) and the epochs raised to reach ``min_steps``: enough optimizer steps
        whatever the dataset's size."""
        batch = min(self.batch_size, max(8, n_train // 4))
        steps_per_epoch = max(1, -(-n_train // batch))
        epochs = max(self.epochs, -(-self.min_steps // steps_per_epoch))
        return replace(self, batch_size=batch, epochs=epochs)

    def fit_options(self) -> dict[str, Any]:
        """The options ``fit`` takes from this config (the ``training`` group)."""
        return {name: getattr(self, name) for name in options_in("training")}

    def data_options(self) -> dict[str, Any]:
        """The keyword options ``load_data`` takes from this config: the ``data`` group, but for the
        dataset's name (its first argument)."""
        return {k: getattr(self, k) for k in options_in("data") if k != "data"}

    def reported(self) -> list[str]:
        """The options results.md names, in table order: each declared with a ``report`` and set away
        from its default (``label smoothing 0.1``, ``2 horizontal flips``, ``EMA weights``...)."""
        return [
            opt.report.format(getattr(self, name))
            for name, (opt, default, _) in options().items()
            if opt.report is not None and getattr(self, name) not in (default, None, "", 0)
        ]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class TrainOptions(TypedDict, total=False):
    """``fit``'s keyword options, for IDEs and mypy: the table's ``training`` group, each name with its
    field's type (``cl.fit(model, data, epohcs=3)`` is then a type error before it is a runtime one).

    Written by hand rather than generated: a type checker reads source, so a TypedDict derived from the
    dataclass at import time would be invisible to it, and a generated file would need a build step and
    a check that it is current anyway. ``tests/test_options.py`` fails when this and the table disagree
    in names or types: a new training option is one field above and one line here.
    """

    epochs: int
    min_steps: int
    batch_size: int
    lr: float
    optimizer: str
    weight_decay: float
    schedule: str
    label_smoothing: float
    clip_grad_norm: float | None
    augment_translate: int
    augment_flip: str
    augment_erasing: float
    augment_crop: float
    augment_crop_ratio: float
    augment_rotate: float
    augment_jitter: float
    backbone_lr: float
    freeze_epochs: int
    ema: float | None
    amp: str
    compile: bool
    cuda_graphs: str
    data_placement: str
    channels_last: bool
    hold_memory: bool
    seed: int


def training_options(given: Mapping[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """``base`` (default: the defaults) with the training options ``given`` (``fit``'s keyword overrides)
    over it, each checked as the CLI checks it; an unknown name is one clear error with a suggestion."""
    allowed = options_in("training")
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise CnnlabError(
            f"Unknown training option {unknown[0]!r}{did_you_mean(unknown[0], allowed)}. "
            f"Available: {', '.join(allowed)}"
        )
    cfg = replace(base, **given) if base is not None else TrainConfig(**given)
    table = options()
    for name in allowed:
        opt, _, annotation = table[name]
        check_value(name, getattr(cfg, name), annotation, opt)
    return cfg


def options() -> dict[str, tuple[Option, Any, Any]]:
    """name -> (declaration, default, type annotation), in declaration order."""
    hints = get_type_hints(TrainConfig)
    return {f.name: (f.metadata["option"], f.default, hints[f.name]) for f in fields(TrainConfig)}


def options_in(*groups: str, recipe: bool | None = None) -> list[str]:
    """Names of the options in ``groups`` (all groups when none are given), optionally only recipe ones."""
    return [
        name
        for name, (opt, _, _) in options().items()
        if (not groups or opt.group in groups) and (recipe is None or opt.recipe == recipe)
    ]


def resume_may_change() -> tuple[str, ...]:
    """The options a resumed run may change (declared with ``resume=True``)."""
    return tuple(name for name, (opt, _, _) in options().items() if opt.resume)


def default_of(name: str) -> Any:
    default = options()[name][1]
    return None if default is MISSING else default


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _kind(annotation: Any) -> tuple[type, bool]:
    """(base type, None allowed) of a field's annotation such as ``int | None``."""
    args = getattr(annotation, "__args__", None)
    if args:
        base = next(a for a in args if a is not type(None))
        return base, type(None) in args
    return annotation, False


def describe_bounds(opt: Option, base: type) -> str:
    if base is int and opt.high is None and not opt.low_open and opt.low in (0, 1):
        return "a positive integer" if opt.low == 1 else "an integer >= 0"
    noun = "an integer" if base is int else "a number"
    if opt.high is None:
        if opt.low == 0 and opt.low_open:
            return "a positive number"
        return f"{noun} {'>' if opt.low_open else '>='} {opt.low:g}"
    left, right = "(" if opt.low_open else "[", ")" if opt.high_open else "]"
    return f"{noun} in {left}{opt.low:g}, {opt.high:g}{right}"


def check_value(name: str, value: Any, annotation: Any, opt: Option) -> None:
    """Raise a ``CnnlabError`` naming the flag when ``value`` does not fit ``opt``."""
    base, optional = _kind(annotation)
    if value is None:
        if optional:
            return
        raise CnnlabError(f"{flag(name)} needs a value")
    ok_type = isinstance(value, base) and not (base is not bool and isinstance(value, bool))
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        ok_type = True
    if not ok_type:
        noun = {int: "an integer", float: "a number", bool: "true or false", str: "text"}.get(
            base, base.__name__
        )
        raise CnnlabError(f"{flag(name)} must be {noun}, got {value!r}")
    if opt.choices is not None and value not in opt.choices:
        raise CnnlabError(
            f"Unknown {flag(name)} {value!r}. Available: {', '.join(str(c) for c in opt.choices)}"
        )
    if opt.each is not None:
        bad = [v.strip() for v in value.split(",") if v.strip() and v.strip() not in opt.each]
        if bad:
            raise CnnlabError(f"Unknown {flag(name)} item {bad[0]!r}. Available: {', '.join(opt.each)}")
    if opt.low is None and opt.high is None:
        return
    fails = base is float and not math.isfinite(value)
    if opt.low is not None:
        fails = fails or (value <= opt.low if opt.low_open else value < opt.low)
    if opt.high is not None:
        fails = fails or (value >= opt.high if opt.high_open else value > opt.high)
    if fails:
        raise CnnlabError(f"{flag(name)} must be {describe_bounds(opt, base)}, got {value!r}")
