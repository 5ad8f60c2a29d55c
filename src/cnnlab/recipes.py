"""Named training recipes: ``--recipe tutorial | fast | best``.

A recipe is a set of TrainConfig defaults, per device type; flags given on the command line win. All are
honest: model selection and early stopping look at the validation split only, and the official test set is
evaluated once, at the end.

- tutorial: the post's protocol (45,000/15,000 split, Adam 1e-3, batch 32, early stopping on val_loss with
  patience 5), with the post's two bugs fixed.
- fast: the speed record. A fixed short one-cycle schedule on the 55,000/5,000 split, label smoothing,
  alternating flips, normalisation in the model, channels_last, bf16 autocast (on a CPU only where it
  multiplies bf16 natively); on CUDA a residual net with large batches.
- folder: your own small folder of pictures: enough optimizer steps whatever its size (a floor on the
  total steps, the batch capped by the training split), photo augmentation, the best validation epoch.
- best: the highest accuracy. A wide residual net, Nesterov SGD with one-cycle, translate + flip + random
  erasing, label smoothing, EMA weights, flip/shift test-time augmentation; the best epoch on validation
  accuracy is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cnnlab.errors import CnnlabError, UsageError, did_you_mean


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    common: dict = field(default_factory=dict)
    cpu: dict = field(default_factory=dict)
    cuda: dict = field(default_factory=dict)

    def settings(self, device_type: str) -> dict:
        settings = {**self.common, **(self.cuda if device_type == "cuda" else self.cpu)}
        if device_type == "cpu" and settings.get("amp") == "bf16":
            # deferred: cnnlab.hardware loads torch (as above)
            from cnnlab.hardware import native_bf16_cpu

            if not native_bf16_cpu():  # emulated bf16 would be slower than fp32
                settings["amp"] = "off"
        return settings


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "tutorial", "The post's protocol: Adam 1e-3, batch 32, early stopping on val_loss (patience 5)"
        ),
        Recipe(
            "fast",
            "Speed record: short one-cycle run, label smoothing, normalisation, flips on GPU, no early stopping",
            common=dict(
                split="default",
                schedule="onecycle",
                label_smoothing=0.1,
                augment_flip="alternating",
                normalize=True,
                patience=None,
                monitor="val_accuracy",
            ),
            # on CPU flips cost more than they give in 5 epochs (90.8% with, 91.1% without, seed 0)
            # bf16 where the CPU multiplies it natively (AVX512-BF16/AMX; dropped elsewhere, see settings)
            cpu=dict(
                model="fastcnn",
                optimizer="adam",
                lr=6e-3,
                batch_size=256,
                epochs=5,
                augment_flip="none",
                amp="bf16",
            ),
            # the GPU: a wider VGG-style net (the shape a plain script reaches 93.8% in 10 epochs with), large
            # batches, flip test-time views; the step is captured in a CUDA graph (--cuda-graphs auto)
            cuda=dict(
                model="speednet",
                optimizer="nesterov",
                lr=0.2,
                weight_decay=5e-4,
                batch_size=512,
                epochs=10,
                augment_translate=2,
                tta="identity,flip",
                amp="bf16",
            ),
        ),
        Recipe(
            "best",
            "Highest accuracy: wide residual net, Nesterov SGD one-cycle, translate/flip/erasing, EMA, TTA",
            common=dict(
                split="default",
                model="resnet_w",
                optimizer="nesterov",
                lr=0.1,
                weight_decay=5e-4,
                schedule="onecycle",
                label_smoothing=0.1,
                augment_translate=2,
                augment_flip="random",
                augment_erasing=0.5,
                ema=0.999,
                tta="identity,flip,left,right",
                normalize=True,
                patience=None,
                monitor="val_accuracy",
                batch_size=256,
            ),
            cpu=dict(model="resnet_s", epochs=30, amp="bf16"),
            cuda=dict(epochs=80, amp="bf16"),
        ),
        Recipe(
            "folder",
            "Your own small folder: a small residual net that sees whole objects, AdamW one-cycle over at least 700 steps whatever "
            "the folder's size, label smoothing, normalisation, the epoch with the lowest 5-epoch mean validation loss kept",
            common=dict(
                split="default",
                model="resnet_f",  # resnet_s sees 34 px: at 64 px it could not tell a square from a circle
                optimizer="adamw",
                lr=3e-3,
                weight_decay=5e-4,
                schedule="onecycle",
                label_smoothing=0.1,
                normalize=True,
                patience=None,
                # 24 validation images: accuracy ties for most epochs and one epoch's loss is noise; the
                # lowest 5-epoch mean of the loss kept a model within 1 % of the best checkpoint's test loss
                # on three folders where the best accuracy kept one up to 30 % worse (benchmarks/selection_check.py)
                monitor="val_loss",
                monitor_window=5,
                batch_size=32,
                epochs=10,
                # 700: real handwritten digits (UCI scans, 10 x 32 images) 86% -> 92% over three folders
                # against 400, in ~50 s (benchmarks/own_data.py)
                min_steps=700,
                augment_crop=0.6,
                augment_rotate=10.0,
                augment_jitter=0.2,
            ),
            cpu=dict(amp="bf16"),
            cuda=dict(batch_size=64, min_steps=600, amp="bf16"),
        ),
        Recipe(
            "finetune",
            "Fine-tune a pretrained backbone: ImageNet weights, a new classifier trained alone for an epoch, "
            "then all of it with the backbone at a tenth of the learning rate, photo augmentation",
            common=dict(
                split="default",
                model="timm:resnet18",
                pretrained="imagenet",
                optimizer="adamw",
                lr=1e-3,
                backbone_lr=0.1,
                freeze_epochs=1,
                weight_decay=0.05,
                schedule="onecycle",
                label_smoothing=0.1,
                patience=None,
                monitor="val_accuracy",
                batch_size=32,
                epochs=6,
                min_steps=150,
                augment_crop=0.5,
                augment_rotate=10.0,
                augment_jitter=0.2,
                augment_flip="random",
            ),
            cpu=dict(amp="bf16"),
            cuda=dict(amp="bf16", batch_size=64),
        ),
    )
}

# Datasets whose labels change under a horizontal flip: recipes that flip do not fit them.
FLIP_SENSITIVE = ("mnist",)


def choose(data: object, *, pretrained: object = None) -> str:
    """The recipe ``--recipe auto`` takes: the post's protocol for the built-in datasets, fine-tuning for a
    pretrained backbone, small-data training for your own folders and CSV files."""
    # deferred: cnnlab.data loads torch; `cnnlab train` checks recipe and model names before it does
    from cnnlab.data import list_datasets

    if data in {d["name"] for d in list_datasets()}:
        return "tutorial"
    return "finetune" if pretrained is not None else "folder"


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        hint = did_you_mean(name, ("auto", *RECIPES))
        raise CnnlabError(f"Unknown recipe {name!r}{hint}. Available: auto, {', '.join(RECIPES)}")
    return RECIPES[name]


def check_fits(config) -> None:
    """Refuse combinations that would silently train something wrong (before any data is loaded)."""
    # deferred: cnnlab.models loads torch (as above)
    from cnnlab.models import is_backbone

    if config.pretrained is not None and not is_backbone(config.model):
        raise UsageError(
            f"--pretrained needs a pretrained backbone, --model timm:NAME (e.g. timm:resnet18); "
            f"{config.model!r} is trained from scratch"
        )
    if config.augment_flip != "none" and config.data in FLIP_SENSITIVE:
        raise CnnlabError(
            f"Recipe {config.recipe!r} flips images horizontally, which changes what {config.data} digits mean; "
            "pass --augment-flip none or use --recipe tutorial"
        )
    if config.tta and "flip" in config.tta and config.data in FLIP_SENSITIVE:
        raise CnnlabError(f"Test-time flips do not fit {config.data}; pass --tta identity")
