"""timm backbones as cnnlab models: named stages, the same numbers as timm, weights from local files
(timm's names or cnnlab's), one clear error for each bad input, ONNX parity. No network: every weights
file here is written by the test (a Hugging Face cache included)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import cnnlab as cl
from cnnlab.engine import param_groups
from cnnlab.errors import CnnlabError, NotFoundError, UsageError
from cnnlab.models import backbone_config, create_model
from cnnlab.models.timm_import import import_timm

try:
    timm = import_timm()  # the extra is in .[test]: CI must have it; elsewhere these tests skip without
except CnnlabError:
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("timm is not installed (pip install 'cnnlab[timm]')", allow_module_level=True)

# efficientnet_b0 is the slowest to build and run: it runs with the slow tests
BACKBONES = ["resnet18", "mobilenetv3_small_100", pytest.param("efficientnet_b0", marks=pytest.mark.slow)]
SHAPE = (3, 64, 64)


def _x(n=2, shape=SHAPE):
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(0))


def _timm_net(arch: str, seed: int, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(arch, **kwargs).eval()


def _norm(x: torch.Tensor, arch: str) -> torch.Tensor:
    mean, std = backbone_config(arch).mean_std(x.shape[1])
    return (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


@pytest.mark.slow  # several seconds: fresh interpreters or real training
def test_importing_cnnlab_or_building_its_own_models_loads_no_timm():
    code = (
        "import sys, cnnlab as cl; cl.create_model('cnn2'); cl.list_models(); "
        "print('timm' in sys.modules, 'torchvision' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize("arch", BACKBONES)
def test_backbone_is_named_stages_computing_what_timm_computes(arch):
    model = create_model(f"timm:{arch}", input_shape=SHAPE, num_classes=3, seed=4).eval()
    names = [n for n, _ in model.named_children()]
    assert names[0] == "normalize" and names[-1] == "output" and len(names) >= 8
    assert isinstance(model.output, nn.Linear) and model.output.out_features == 3
    reference = _timm_net(arch, 4, num_classes=3)  # same seed, same weights
    x = _x()
    with torch.no_grad():
        assert torch.allclose(model(x), reference(_norm(x, arch)), atol=1e-5)
    # summary walks the same stages with the same shapes as a forward pass
    s = cl.summary(model, SHAPE)
    y = x[:1]
    with torch.no_grad():
        for row, (name, stage) in zip(s.rows, model.named_children(), strict=True):
            y = stage(y)
            assert row.name == name and row.output_shape == tuple(y.shape[1:])
    assert s.total_params == cl.count_params(model)
    model.train()
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.slow  # a ViT at 224 px
def test_a_backbone_that_is_not_a_chain_gets_features_pool_output(tmp_path):
    shape = (3, 224, 224)
    vit = create_model("timm:vit_tiny_patch16_224", input_shape=shape, num_classes=3, seed=4).eval()
    assert [n for n, _ in vit.named_children()] == ["normalize", "features", "pool", "output"]
    x = _x(1, shape)
    with torch.no_grad():
        assert torch.allclose(
            vit(x),
            _timm_net("vit_tiny_patch16_224", 4, num_classes=3)(_norm(x, "vit_tiny_patch16_224")),
            atol=1e-5,
        )
    save_file(
        vit.state_dict(), tmp_path / "vit.safetensors"
    )  # each tensor once (safetensors refuses shared ones)
    again = create_model(
        "timm:vit_tiny_patch16_224", input_shape=shape, num_classes=3, pretrained=tmp_path / "vit.safetensors"
    )
    with torch.no_grad():
        assert torch.equal(again.eval()(x), vit(x))


def test_param_groups_split_the_new_classifier_from_the_backbone():
    model = create_model("timm:resnet18", input_shape=SHAPE, num_classes=5)
    groups = param_groups(model)
    assert {id(p) for p in groups.head} == {id(p) for p in model.output.parameters()}
    assert len(groups.backbone) + len(groups.head) == len(list(model.parameters()))
    assert sum(p.numel() for p in groups.head) == 512 * 5 + 5
    cnn2 = cl.create_model("cnn2")  # any cnnlab model: its last stage with weights is the head
    assert {id(p) for p in param_groups(cnn2).head} == {id(p) for p in cnn2.output.parameters()}


def test_backbone_config_and_default_normalisation():
    cfg = backbone_config("timm:resnet18")
    assert cfg.input_size == (3, 224, 224) and cfg.mean == pytest.approx((0.485, 0.456, 0.406))
    assert cfg.hf_hub_id.startswith("timm/resnet18.") and cfg.first_conv == "conv1" and cfg.classifier == "fc"
    assert backbone_config("resnet18").input_size == cfg.input_size  # the prefix is optional here
    grey = create_model("timm:resnet18", input_shape=(1, 48, 48), num_classes=2)
    assert grey.normalize.mean.flatten().tolist() == pytest.approx([sum(cfg.mean) / 3])
    given = create_model("timm:resnet18", input_shape=SHAPE, num_classes=2, mean=[0.5] * 3, std=[0.25] * 3)
    assert given.normalize.std.flatten().tolist() == [0.25] * 3
    assert grey(_x(shape=(1, 48, 48))).shape == (2, 2)


def test_weights_of_a_cnnlab_run_load_back_exactly(tmp_path):
    trained = create_model("timm:mobilenetv3_small_100", input_shape=SHAPE, num_classes=3, seed=1).eval()
    path = tmp_path / "weights.safetensors"
    save_file(trained.state_dict(), path)
    loaded = create_model(
        "timm:mobilenetv3_small_100", input_shape=SHAPE, num_classes=3, seed=2, pretrained=path
    ).eval()
    x = _x()
    with torch.no_grad():
        assert torch.equal(loaded(x), trained(x))


def test_timm_weights_load_with_a_new_classifier(tmp_path):
    imagenet = _timm_net("resnet18", 5)  # 1000 classes, as on the hub
    path = tmp_path / "model.safetensors"
    save_file(imagenet.state_dict(), path)
    model = create_model(
        "timm:resnet18", input_shape=SHAPE, num_classes=3, seed=9, pretrained=str(path)
    ).eval()
    fresh = create_model("timm:resnet18", input_shape=SHAPE, num_classes=3, seed=9)
    x = _x()
    with torch.no_grad():
        features = model[:-1](x)  # everything up to the classifier is the file's
        assert torch.allclose(
            features,
            imagenet.forward_head(imagenet.forward_features(_norm(x, "resnet18")), pre_logits=True),
            atol=1e-5,
        )
    assert torch.equal(model.output.weight, fresh.output.weight)  # the classifier: freshly initialised


def test_three_channel_weights_adapt_to_grey_images(tmp_path):
    imagenet = _timm_net("resnet18", 5)
    path = tmp_path / "model.safetensors"
    save_file(imagenet.state_dict(), path)
    grey = create_model("timm:resnet18", input_shape=(1, 32, 32), num_classes=2, pretrained=path)
    assert torch.allclose(grey.conv1.weight, imagenet.conv1.weight.sum(1, keepdim=True), atol=1e-6)


def test_weights_that_do_not_fit_are_one_clear_error(tmp_path):
    other = tmp_path / "effnet.safetensors"
    save_file(_timm_net("efficientnet_b0", 0).state_dict(), other)
    with pytest.raises(
        CnnlabError, match=r"does not fit timm:resnet18: .*tensors the model lacks.*another model"
    ):
        create_model("timm:resnet18", input_shape=SHAPE, num_classes=3, pretrained=other)
    state = _timm_net("resnet18", 0).state_dict()
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 5, 5)
    del state["layer4.1.bn2.bias"]
    bad = tmp_path / "bad.safetensors"
    save_file(state, bad)
    with pytest.raises(CnnlabError) as e:
        create_model("timm:resnet18", input_shape=SHAPE, num_classes=3, pretrained=bad)
    msg = str(e.value)
    assert (
        "1 tensor of another shape (layer1.0.conv1.weight is (64, 64, 5, 5) in the file, (64, 64, 3, 3)"
        in msg
    )
    assert "1 tensor of the model missing (e.g. layer4.1.bn2.bias)" in msg
    with pytest.raises(NotFoundError, match="do not exist"):
        create_model(
            "timm:resnet18", input_shape=SHAPE, num_classes=3, pretrained=tmp_path / "none.safetensors"
        )
    text = tmp_path / "notes.safetensors"
    text.write_text("not weights")
    with pytest.raises(CnnlabError, match="is not a readable safetensors file"):
        create_model("timm:resnet18", input_shape=SHAPE, num_classes=3, pretrained=text)


def _hub_cache(root: Path, repo: str, state: dict) -> None:
    """The Hugging Face cache layout: refs/main names a snapshot holding the file."""
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    snapshot = folder / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    save_file(state, snapshot / "model.safetensors")


def test_pretrained_true_reads_the_hugging_face_cache_and_says_what_to_do_offline(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CnnlabError) as e:
        create_model("timm:resnet18", input_shape=SHAPE, num_classes=3, pretrained=True)
    msg = str(e.value)
    assert str(tmp_path) in msg and "--pretrained PATH" in msg and "timm/resnet18.a1_in1k" in msg
    imagenet = _timm_net("resnet18", 7)
    _hub_cache(tmp_path, backbone_config("resnet18").hf_hub_id, imagenet.state_dict())
    model = create_model("timm:resnet18", input_shape=SHAPE, num_classes=3, pretrained=True)
    assert torch.equal(model.layer4[1].bn2.weight, imagenet.layer4[1].bn2.weight)


@pytest.mark.parametrize(
    "name,kwargs,error,message",
    [
        ("timm:resnt18", {}, NotFoundError, "Unknown timm backbone 'resnt18'. Close matches: timm:resnet18"),
        ("timm:resnet18-dense10", {}, UsageError, "mixes a timm backbone with a layer spec"),
        ("conv8-timm:resnet18", {}, UsageError, "mixes a timm backbone with a layer spec"),
        ("timm:", {}, UsageError, "timm:NAME stands for any timm backbone: name one"),
        ("timm:resnet18.nope", {}, NotFoundError, "Available for resnet18: resnet18.a1_in1k"),
        (
            "cnn2",
            {"pretrained": True},
            UsageError,
            "--pretrained needs a pretrained backbone, --model timm:NAME",
        ),
        ("conv8-dense4", {"pretrained": "w.safetensors"}, UsageError, "is trained from scratch"),
        ("timm:vit_tiny_patch16_224", {}, CnnlabError, "trained at 224x224: try --image-size 224"),
    ],
)
def test_bad_backbone_requests_get_one_clear_error(name, kwargs, error, message):
    with pytest.raises(error) as e:
        create_model(name, input_shape=SHAPE, num_classes=3, **kwargs)
    assert message in str(e.value)


@pytest.mark.slow  # several seconds: fresh interpreters or real training
def test_without_timm_the_error_names_the_extra():
    code = (
        "import sys; sys.modules['timm'] = None\n"
        "from cnnlab.models import create_model\n"
        "from cnnlab.errors import CnnlabError\n"
        "try:\n    create_model('timm:resnet18')\nexcept CnnlabError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("timm backbones need the optional dependencies: pip install 'cnnlab[timm]'")


def test_explain_sees_every_stage_of_a_backbone():
    model = create_model("timm:resnet18", input_shape=SHAPE, num_classes=3, seed=0)
    acts = cl.explain.activations(model, np.random.default_rng(0).random((64, 64, 3), dtype=np.float32))
    names = [s.name for s in acts.layers]
    assert names[0] == "input" and names[1:-1] == [n for n, _ in model.named_children()]
    cam = cl.explain.gradcam(model, np.random.default_rng(0).random((64, 64, 3), dtype=np.float32))
    assert cam.values.shape == (64, 64) and cam.layer in names


@pytest.mark.parametrize("arch", ["resnet18", pytest.param("mobilenetv3_small_100", marks=pytest.mark.slow)])
def test_onnx_export_matches_pytorch(arch, tmp_path):
    from cnnlab.export import _export_onnx, parity

    model = create_model(f"timm:{arch}", input_shape=SHAPE, num_classes=3, seed=0).eval()
    path = tmp_path / "model.onnx"
    _export_onnx(model, _x(1), path, {"producer": "cnnlab", "preprocessing": "0..1 RGB"})
    check = parity(model, path, "onnx", _x(5), batch=2)
    assert check["max_abs_diff"] < 1e-4 and check["argmax_agreement"] == 1.0
