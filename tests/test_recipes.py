"""Named recipes: each trains on a small real subset and lowers the loss; bad combinations are refused."""

from __future__ import annotations

import pytest
import torch

import cnnlab as cl
from cnnlab.recipes import RECIPES


@pytest.mark.slow
@pytest.mark.parametrize("recipe", list(RECIPES))
def test_each_recipe_lowers_the_loss_on_real_data(recipe, fmnist_dir):
    fewer = {"min_steps": 150} if recipe == "folder" else {}  # its floor of 700 steps is for real folders
    cfg = cl.TrainConfig.from_recipe(
        recipe, device_type="cpu", epochs=2, limit=800, batch_size=64, model="conv8-bn-pool-dense32", **fewer
    )
    if recipe == "tutorial":
        cfg.lr = 3e-3
    cfg.pretrained = None  # the finetune recipe's schedule on a small net from scratch (no weights offline)
    r = cl.train(cfg, out=None, data_dir=fmnist_dir, progress=False)
    assert r.history["loss"][1] < r.history["loss"][0]
    assert r.test["accuracy"] > 0.5


def test_recipe_settings_and_overrides():
    fast = cl.TrainConfig.from_recipe("fast", device_type="cpu")
    assert (fast.model, fast.split, fast.schedule, fast.augment_flip, fast.normalize) == (
        "fastcnn",
        "default",
        "onecycle",
        "none",
        True,
    )
    assert cl.TrainConfig.from_recipe("fast", device_type="cuda").augment_flip == "alternating"
    assert cl.TrainConfig.from_recipe("fast", device_type="cuda").amp == "bf16"
    assert cl.TrainConfig.from_recipe("fast", device_type="cpu", epochs=9, model="cnn2").epochs == 9
    assert cl.TrainConfig.from_recipe("tutorial") == cl.TrainConfig(recipe="tutorial")
    assert cl.TrainConfig.from_recipe("tutorial").amp == "auto"  # float32 on the CPU, as the post


def test_cpu_recipes_use_bf16_only_where_the_cpu_multiplies_bf16_natively():
    from cnnlab.hardware import native_bf16_cpu

    for name in ("fast", "best"):
        amp = cl.TrainConfig.from_recipe(name, device_type="cpu").amp
        assert amp == ("bf16" if native_bf16_cpu() else "off")


def test_seeded_recipe_run_repeats_bit_exactly(fmnist_small):
    def run():
        cfg = cl.TrainConfig.from_recipe(
            "fast", device_type="cpu", epochs=1, model="conv8-bn-pool-dense16", seed=3
        )
        r = cl.train(cfg, out=None, data=fmnist_small, progress=False)
        return r.history["loss"], r.test

    assert run() == run()


def test_normalize_puts_training_stats_in_the_model(fmnist_small):
    cfg = cl.TrainConfig.from_recipe("fast", device_type="cpu", epochs=1, model="conv8-pool-dense16")
    r = cl.train(cfg, out=None, data=fmnist_small, progress=False)
    assert r.history.epochs == 1
    x = fmnist_small.train.images.double() / 255
    mean = torch.tensor(x.mean().item()).float()
    model = cl.create_model("conv8-pool-dense16", mean=[mean.item()], std=[x.std().item()])
    assert list(dict(model.named_children()))[0] == "normalize"


@pytest.mark.parametrize(
    "args,code,message",
    [
        (["--recipe", "turbo"], 1, "Unknown recipe 'turbo'. Available: auto, tutorial, fast, best"),
        (["--recipe", "best", "--data", "mnist"], 1, "flips images horizontally"),
        (["--device", "cuda"], 1, "no CUDA GPU"),
        (["--augment-flip", "sideways"], 2, "argument --augment-flip: invalid choice: 'sideways'"),
        (["--tta", "identity,spin"], 2, "Unknown --tta item 'spin'"),
        (["--ema", "1.5"], 2, "--ema: expected a number in (0, 1)"),
        (["--amp", "fp8"], 2, "argument --amp: invalid choice"),
    ],
)
def test_bad_recipe_input(run_cli, tmp_path, fmnist_dir, monkeypatch, args, code, message):
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.setenv("CNNLAB_DATA_DIR", str(fmnist_dir))
    got, _, err = run_cli("train", "--out", tmp_path / "r", *args)
    assert got == code and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_compile_without_a_compiler_is_a_clear_error(monkeypatch, run_cli, tmp_path, fmnist_dir):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CNNLAB_DATA_DIR", str(fmnist_dir))
    code, _, err = run_cli(
        "train", "--out", tmp_path / "r", "--compile", "--limit", "100", "--epochs", "1", "--device", "cpu"
    )
    assert code == 1 and "--compile needs a C compiler" in err


def test_auto_fine_tunes_a_pretrained_backbone_on_a_folder():
    from cnnlab.config import TrainConfig

    cfg = TrainConfig.from_recipe("auto", data="my/folder", model="timm:resnet18", pretrained="imagenet")
    assert cfg.recipe == "finetune" and cfg.freeze_epochs == 1
    assert TrainConfig.from_recipe("auto", data="my/folder").recipe == "folder"
    assert TrainConfig.from_recipe("auto", data="fashion_mnist").recipe == "tutorial"
