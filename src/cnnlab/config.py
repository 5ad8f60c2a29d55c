"""TrainConfig: one source for the CLI's flags, what ``train`` does, and the config saved with each run."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from cnnlab.errors import CnnlabError


@dataclass
class TrainConfig:
    # what to train on
    data: str = (
        "fashion_mnist"  # a built-in dataset name, a folder of class sub-folders, or a CSV of path,label
    )
    split: str = "tutorial"  # "tutorial" (45,000/15,000/10,000) or "default" (55,000/5,000/10,000 stratified)
    limit: int | None = None  # cap each split at this many images, for quick runs
    # how images become tensors (folders: decoded once into a cache; built-ins: resized/converted if asked)
    image_size: int | None = None  # square input size; None: 64 for folders, native for built-ins
    channels: int | None = None  # 1 (grayscale) or 3 (RGB); None: 3 for folders, native for built-ins
    resize: str = "pad"  # folders: "pad" (keep aspect, pad), "crop" (centre-crop) or "stretch"
    bad_images: str = (
        "skip"  # folders: "skip" unreadable files with a report, or "strict" (fail at the first)
    )
    # what to train
    model: str = "cnn2"  # a registered model name or a layer spec
    recipe: str = "tutorial"  # named defaults for everything below (see cnnlab.recipes); flags override
    # how (the tutorial's recipe by default: Keras' Adam, batch 32, early stopping on val_loss, patience 5)
    epochs: int = 100  # at most this many epochs
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"  # adam, adamw, sgd, nesterov
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant, onecycle, linear
    label_smoothing: float = 0.0
    patience: int | None = 5  # early-stopping patience in epochs; None trains all epochs, keeping the best
    monitor: str = "val_loss"  # what early stopping and model selection watch
    seed: int = 0  # weights, batch order and dropout
    device: str = "auto"  # auto (CUDA when present), cpu, cuda
    channels_last: bool = True  # NHWC memory layout: faster convolutions on CPU (oneDNN) and GPU
    normalize: bool = False  # put the training split's per-channel mean/std in a normalize stage
    augment_translate: int = 0  # random shifts of up to N pixels, on the device
    augment_flip: str = "none"  # none, random or alternating horizontal flips
    augment_erasing: float = 0.0  # probability of random erasing per image
    ema: float | None = None  # EMA decay of the weights (e.g. 0.999); validation and the saved model use it
    amp: str = "auto"  # autocast: auto (bf16 on CUDA, off on CPU), off, bf16, fp16
    compile: bool = False  # torch.compile (its warm-up is timed separately)
    tta: str = ""  # test-time views for the final evaluation, e.g. "identity,flip"
    # checkpoints and reproducibility (not recipe settings; resuming ignores the first three)
    checkpoint_every: int = 1000  # also checkpoint every N optimizer steps (0: only at each epoch's end)
    keep: int = 3  # checkpoints kept: the newest K, plus the best epoch's
    threads: int | None = None  # CPU threads for torch (None: torch's default)
    deterministic: bool = False  # seeds, deterministic algorithms, pinned threads (recorded in env.json)

    def validate(self) -> TrainConfig:
        if self.epochs is None or self.epochs < 1:
            raise CnnlabError(f"--epochs must be a positive integer, got {self.epochs}")
        if self.batch_size < 1:
            raise CnnlabError(f"--batch-size must be a positive integer, got {self.batch_size}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise CnnlabError(f"--lr must be a positive number, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise CnnlabError(f"--weight-decay must be a number >= 0, got {self.weight_decay}")
        if self.patience is not None and self.patience < 0:
            raise CnnlabError(f"--patience must be >= 0, got {self.patience}")
        if self.limit is not None and self.limit < 1:
            raise CnnlabError(f"--limit must be a positive integer, got {self.limit}")
        if self.monitor not in ("val_loss", "val_accuracy", "loss", "accuracy"):
            raise CnnlabError(
                f"Unknown monitor {self.monitor!r}. Available: val_loss, val_accuracy, loss, accuracy"
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise CnnlabError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.image_size is not None and (
            isinstance(self.image_size, bool) or not isinstance(self.image_size, int) or self.image_size < 1
        ):
            raise CnnlabError(f"--image-size must be a positive integer, got {self.image_size!r}")
        if self.channels not in (None, 1, 3):
            raise CnnlabError(f"--channels must be 1 (grayscale) or 3 (RGB), got {self.channels!r}")
        if self.resize not in ("pad", "crop", "stretch"):
            raise CnnlabError(f"Unknown resize mode {self.resize!r}. Available: pad, crop, stretch")
        if self.augment_flip not in ("none", "random", "alternating"):
            raise CnnlabError(
                f"Unknown --augment-flip {self.augment_flip!r}. Available: none, random, alternating"
            )
        if self.augment_translate < 0 or not 0.0 <= self.augment_erasing <= 1.0:
            raise CnnlabError("--augment-translate must be >= 0 and --augment-erasing in [0, 1]")
        if self.ema is not None and not 0.0 < self.ema < 1.0:
            raise CnnlabError(f"--ema must be a decay in (0, 1), e.g. 0.999, got {self.ema}")
        if self.amp not in ("auto", "off", "bf16", "fp16"):
            raise CnnlabError(f"Unknown --amp {self.amp!r}. Available: auto, off, bf16, fp16")
        from cnnlab.engine.tta import VIEWS

        bad = [v for v in self.tta_views if v not in VIEWS]
        if bad:
            raise CnnlabError(f"Unknown --tta view {bad[0]!r}. Available: {', '.join(VIEWS)}")
        if self.bad_images not in ("skip", "strict"):
            raise CnnlabError(f"Unknown --bad-images mode {self.bad_images!r}. Available: skip, strict")
        if self.checkpoint_every is None or self.checkpoint_every < 0:
            raise CnnlabError(
                f"--checkpoint-every must be >= 0 (0: only at epoch ends), got {self.checkpoint_every}"
            )
        if self.keep is None or self.keep < 1:
            raise CnnlabError(f"--keep must be a positive integer, got {self.keep}")
        if self.threads is not None and self.threads < 1:
            raise CnnlabError(f"--threads must be a positive integer, got {self.threads}")
        return self

    @property
    def tta_views(self) -> tuple[str, ...]:
        return tuple(v.strip() for v in self.tta.split(",") if v.strip())

    @classmethod
    def from_recipe(cls, recipe: str = "tutorial", *, device_type: str = "cpu", **overrides) -> TrainConfig:
        """Defaults, then the recipe's settings for this device type, then ``overrides`` (explicit flags)."""
        from cnnlab.recipes import get_recipe

        settings = get_recipe(recipe).settings(device_type)
        return cls(**{**settings, **overrides, "recipe": recipe})

    def fit_options(self) -> dict:
        """The keyword options ``fit`` takes from this config (the recipe's knobs)."""
        from cnnlab.engine.augment import Augment

        return {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "optimizer": self.optimizer,
            "weight_decay": self.weight_decay,
            "schedule": self.schedule,
            "label_smoothing": self.label_smoothing,
            "augment": Augment(self.augment_translate, self.augment_flip, self.augment_erasing),
            "ema": self.ema,
            "amp": self.amp,
            "compile": self.compile,
            "seed": self.seed,
            "channels_last": self.channels_last,
        }

    def data_options(self) -> dict:
        """The keyword options ``load_data`` takes besides name/split/seed/limit."""
        return {
            "image_size": self.image_size,
            "channels": self.channels,
            "resize": self.resize,
            "bad_images": self.bad_images,
        }

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
