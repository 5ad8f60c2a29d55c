"""Model registry, layer specs and summary: every registered model gets these tests for free."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnlab as cl
from cnnlab.errors import CnnlabError
from cnnlab.models import build_from_spec, list_models, parse_spec

TUTORIAL_PARAMS = {"mlp": 101_770, "cnn1": 1_386_506, "cnn2": 485_514, "cnn4": 522_570}
ALL = [m.name for m in list_models()]


@pytest.mark.parametrize("name,params", TUTORIAL_PARAMS.items())
def test_tutorial_param_counts(name, params):
    assert cl.count_params(cl.create_model(name)) == params


def test_tutorial_structure_matches_the_post():
    stages = dict(cl.create_model("cnn4").named_children())
    convs = [m for m in stages.values() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128]
    assert all(c.kernel_size == (3, 3) and c.padding == (0, 0) for c in convs)
    assert [m.p for m in stages.values() if isinstance(m, nn.Dropout)] == [0.25, 0.25]
    assert isinstance(list(stages.values())[-1], nn.Linear)  # logits: no softmax inside the model


@pytest.mark.parametrize("name", ALL)
def test_every_model_forward_backward_and_summary(name):
    model = cl.create_model(name, seed=0)
    x = torch.rand(4, 1, 28, 28)
    logits = model(x)
    assert logits.shape == (4, 10)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    # summary shapes equal a real forward pass, stage by stage
    s = cl.summary(model, (1, 28, 28))
    y = x[:1]
    model.eval()
    with torch.no_grad():
        for row, (stage_name, stage) in zip(s.rows, model.named_children(), strict=True):
            y = stage(y)
            assert row.name == stage_name
            assert row.output_shape == tuple(y.shape[1:])
    assert s.total_params == cl.count_params(model)
    assert s.flops > 0


@pytest.mark.parametrize("name", ALL)
def test_models_adapt_to_channels_size_and_classes(name):
    model = cl.create_model(name, input_shape=(3, 32, 32), num_classes=7)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 7)


def test_seed_gives_identical_weights():
    a, b, c = (cl.create_model("cnn2", seed=s) for s in (1, 1, 2))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(next(a.parameters()), next(c.parameters()))


def test_cnn2_summary_values():
    s = cl.summary(cl.create_model("cnn2"), (1, 28, 28))
    shapes = {r.name: r.output_shape for r in s.rows}
    assert shapes["conv1"] == (64, 26, 26) and shapes["pool2"] == (128, 5, 5) and shapes["flatten"] == (3200,)
    assert (s.total_params, s.trainable_params, s.non_trainable_params) == (485_514, 485_514, 0)
    # conv2: 2 * (64*3*3) * (128*11*11) multiply-adds
    assert next(r for r in s.rows if r.name == "conv2").flops == 2 * 64 * 9 * 128 * 11 * 11
    text = str(s)
    assert "Total params: 485,514" in text and "conv1 (Conv2d)" in text and "(None, 64, 26, 26)" in text


def test_summary_counts_batchnorm_buffers_as_non_trainable_params_only_if_parameters():
    m = cl.create_model("conv8-bn-pool-dense16")
    s = cl.summary(m, (1, 28, 28))
    assert s.total_params == cl.count_params(m)
    for p in m.conv1.parameters():
        p.requires_grad_(False)
    s2 = cl.summary(m, (1, 28, 28))
    assert s2.non_trainable_params == 80 and s2.trainable_params == s.total_params - 80


@pytest.mark.parametrize(
    "spec,names",
    [
        (
            "conv64-conv64-pool-drop.25-conv128-pool-drop.25-flatten-dense128",
            [
                "conv1",
                "relu1",
                "conv2",
                "relu2",
                "pool1",
                "drop1",
                "conv3",
                "relu3",
                "pool2",
                "drop2",
                "flatten",
                "dense1",
                "relu4",
                "output",
            ],
        ),
        ("conv16k5p2s1-bn-gelu-avgpool-gap", ["conv1", "bn1", "gelu1", "pool1", "gap", "flatten", "output"]),
        (
            "conv8psame-linear-maxpool3s2-dense32-tanh-drop0.5",
            ["conv1", "pool1", "flatten", "dense1", "tanh1", "drop1", "output"],
        ),
        ("dense64-bn-silu", ["flatten", "dense1", "bn1", "silu1", "output"]),
    ],
)
def test_valid_specs(spec, names):
    m = build_from_spec(spec, input_shape=(1, 28, 28), num_classes=10)
    assert list(dict(m.named_children())) == names
    assert m(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_spec_options_reach_the_layers():
    m = build_from_spec("conv16k5s2p2-avgpool3s1", input_shape=(1, 28, 28), num_classes=10)
    assert (m.conv1.kernel_size, m.conv1.stride, m.conv1.padding) == ((5, 5), (2, 2), (2, 2))
    assert isinstance(m.pool1, nn.AvgPool2d) and m.pool1.kernel_size == 3 and m.pool1.stride == 1
    same = build_from_spec("conv4psame", input_shape=(1, 28, 28), num_classes=10)
    assert cl.summary(same, (1, 28, 28)).rows[0].output_shape == (4, 28, 28)


@pytest.mark.parametrize(
    "spec,message",
    [
        ("", "Empty layer spec"),
        ("conv64--dense10", "empty token"),
        ("conv64-foo", "unknown token 'foo'"),
        ("conv-1", "'conv' needs a size, e.g. conv32"),
        ("conv99999999999999", "at most 65,536 channels"),
        ("dense99999999999", "1 to 65,536 units"),
        ("conv60000-conv60000-dense10", "over 2 billion parameters"),
        ("drop1.5", "dropout rate must be in [0, 1)"),
        ("conv0", "must be positive"),
        ("conv8s2psame", "'same' padding needs stride 1"),
        ("relu-conv8", "must follow a conv or dense layer"),
        ("dense8-conv8", "needs an image-shaped input"),
        ("conv8k29", "does not fit"),
        ("flatten-flatten", "flatten appears twice"),
    ],
)
def test_invalid_specs_say_what_is_allowed(spec, message):
    with pytest.raises(CnnlabError) as e:
        cl.create_model(spec) if spec else parse_spec(spec)
    assert message in str(e.value)
    assert "conv<C>" in str(e.value)  # the grammar is part of every message


def test_unknown_model_lists_available():
    with pytest.raises(
        CnnlabError,
        match=r"Unknown model 'cnn5' \(did you mean 'cnn4' or 'cnn2' or 'cnn1'\?\)\. Available: mlp, cnn1, cnn2, cnn4",
    ):
        cl.create_model("cnn5")


@pytest.mark.parametrize("info", [m for m in list_models() if m.spec], ids=lambda m: m.name)
def test_a_spec_and_its_registered_name_build_the_same_stages(info):
    """With the same mean/std, a registered spec model and its spec string are the same network: the
    same stage names and kinds (a ``normalize`` stage first for both) and, from one seed, the same weights."""
    kwargs = dict(input_shape=(3, 32, 32), num_classes=5, seed=3, mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.25])
    by_name, by_spec = cl.create_model(info.name, **kwargs), cl.create_model(info.spec, **kwargs)
    kinds = [(n, type(m)) for n, m in by_name.named_children()]
    assert kinds == [(n, type(m)) for n, m in by_spec.named_children()]
    assert kinds[0][0] == "normalize"
    a, b = by_name.state_dict(), by_spec.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_registry_is_full_whatever_module_is_imported_first():
    import subprocess
    import sys

    code = "from cnnlab.models.registry import list_models; print(','.join(m.name for m in list_models()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ",".join(ALL)


def test_list_models_can_name_the_timm_family_without_listing_it():
    assert all(not m.family and ":" not in m.name for m in list_models())  # every name here builds
    extra = list_models(families=True)
    assert [m.name for m in extra[:-1]] == ALL
    family = extra[-1]
    assert family.name == "timm:NAME" and family.family and "timm:resnet18" in family.description
    with pytest.raises(CnnlabError, match="timm:NAME stands for any timm backbone"):
        cl.create_model("timm:NAME")
