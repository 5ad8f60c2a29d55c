"""cnnlab.explain: activations per stage for every registered model, the JSON schema, conv and pooling
detail against PyTorch, softmax, input preparation, Grad-CAM / saliency (with a sanity check on a model
that can only look at the left half), and the dataset report's numbers."""

from __future__ import annotations

import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnlab as cl
from cnnlab.errors import CnnlabError
from cnnlab.explain import schema
from cnnlab.explain.detail import conv_position, pool_window
from cnnlab.explain.reports import DatasetReport
from cnnlab.models.normalize import Normalize


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # one image is tiny work; a single thread is faster and steady on a busy 2-core machine
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _image(seed: int = 0, shape=(28, 28)) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


# ---- activations for every registered model -------------------------------------------------------


@pytest.mark.parametrize("info", cl.list_models(), ids=lambda m: m.name)
def test_every_registered_model_stage_by_stage(info):
    model = cl.create_model(info.name, seed=0).eval()
    img = _image(1)
    acts = cl.explain.activations(model, img, classes=[f"c{i}" for i in range(10)], model_name=info.name)
    stages = [n for n, _ in model.named_children()]
    assert [s.name for s in acts.layers] == ["input", *stages, "softmax"]
    kinds = {n: cl.explain.stage_kind(m) for n, m in model.named_children()}
    assert all(s.kind == kinds[s.name] for s in acts.layers[1:-1])
    # the stage loop is the model's own forward: logits bit-identical to model(x)
    with torch.no_grad():
        logits = model(torch.from_numpy(img)[None, None])[0].numpy()
    assert np.array_equal(acts.layers[-2].values, logits)
    assert np.array_equal(acts.prediction.logits, logits)
    assert np.isclose(acts.layers[-1].values.sum(), 1.0, atol=1e-6)
    assert acts.prediction.index == int(np.argmax(logits))
    # the compact document validates against the one schema and decodes back to within its stated
    # precision; the exact one decodes back bit-exactly
    doc = acts.to_json()
    assert doc["schema"] == cl.explain.SCHEMA_VERSION
    parsed = schema.ActivationsDoc.model_validate(doc)
    decoded = schema.decode_layers(parsed)
    errors = schema.stated_errors(parsed)
    for layer, stage in zip(parsed.layers, acts.layers, strict=True):
        assert layer.shape == list(stage.shape)
        bound = errors[stage.name]
        assert np.abs(decoded[stage.name] - stage.values).max() <= bound * (1 + 1e-6) + 1e-7, stage.name
        assert decoded[stage.name].dtype == np.float32 and decoded[stage.name].shape == stage.shape
    for name in ("input", parsed.layers[-2].name, "softmax"):  # the image, the logits, the probabilities
        assert np.array_equal(decoded[name], acts[name].values)
    exact = schema.ActivationsDoc.model_validate(acts.to_json(precision="exact"))
    for layer, stage in zip(exact.layers, acts.layers, strict=True):
        assert np.array_equal(schema.decode_tensor(layer.values), stage.values)


def test_compact_wire_format_is_small_and_within_its_stated_precision():
    acts = cl.explain.activations(cl.create_model("cnn2", seed=0), _image(5))
    compact, exact = acts.to_schema(), acts.to_schema(precision="exact")
    size = len(compact.model_dump_json(by_alias=True))
    assert size < 0.2 * len(exact.model_dump_json(by_alias=True)) and size < 150_000
    kinds = {x.name: (x.values.dtype if x.values else x.derived.op) for x in compact.layers}
    assert kinds["input"] == "float32" and kinds["conv1"] == "uint8" and kinds["output"] == "float32"
    assert kinds["relu1"] == "relu" and kinds["drop1"] == "identity" and kinds["flatten"] == "identity"
    conv = compact.layers[1].values
    assert len(conv.scale) == len(conv.zero_point) == 64  # one step per feature map
    # per map: every decoded value within half that map's step of PyTorch's float32, and 0 exact
    got = schema.decode_tensor(conv)
    want = acts["conv1"].values
    steps = np.asarray(conv.scale)[:, None, None]
    assert (np.abs(got - want) <= steps / 2 * (1 + 1e-9) + 1e-7).all()
    relu = schema.decode_layers(compact)["relu1"]
    assert (relu[acts["relu1"].values == 0] == 0).all()  # what ReLU zeroed is exactly 0 on the page too


@pytest.mark.parametrize(
    "values",
    [
        np.zeros(2000, np.float32),
        np.full(2000, 3.5, np.float32),
        -np.linspace(0.001, 7, 3000, dtype=np.float32),
        np.random.default_rng(0).standard_normal((5, 40, 40)).astype(np.float32)
        * [[[1e-6]], [[1]], [[1e3]], [[0]], [[5]]],
    ],
    ids=["zeros", "constant", "negative", "mixed-scales"],
)
def test_encode_compact_never_clips(values):
    t = cl.explain.encode_compact(values)
    got = schema.decode_tensor(t)
    steps = np.asarray(t.scale).reshape(-1, *([1] * (values.ndim - 1)))
    assert (np.abs(got - values) <= steps / 2 * (1 + 1e-9) + 1e-12).all()
    assert np.abs(got - values).max() <= t.max_error * (1 + 1e-9) + 1e-12


def test_non_finite_values_stay_float32():
    values = np.linspace(-1, 1, 2000, dtype=np.float32)
    values[7] = np.nan
    t = cl.explain.encode_compact(values)
    assert t.dtype == "float32" and t.max_error == 0
    assert np.array_equal(schema.decode_tensor(t), values, equal_nan=True)


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"shape": [2], "encoding": "base64", "data": [1.0, 2.0]}, "must be a string"),
        (
            {"dtype": "uint8", "shape": [2], "encoding": "base64", "data": "AAE="},
            "needs scale and zero_point",
        ),
    ],
)
def test_decode_tensor_refuses_inconsistent_documents_in_one_line(doc, message):
    with pytest.raises(ValueError, match=message):
        schema.decode_tensor(doc)


def test_list_encoding_and_no_values():
    acts = cl.explain.activations(cl.create_model("cnn1", seed=0), _image(2))
    listed = acts.to_json(encoding="list")
    conv = next(layer for layer in listed["layers"] if layer["name"] == "conv1")
    assert conv["values"]["encoding"] == "list" and len(conv["values"]["data"]) == 64 * 26 * 26
    assert np.array_equal(schema.decode_tensor(conv["values"]), acts["conv1"].values)
    bare = acts.to_json(encoding=None)
    assert all(layer["values"] is None for layer in bare["layers"])
    assert bare["layers"][1]["params"]["kernel_size"] == [3, 3]
    assert "layers" in cl.explain.json_schema()["properties"]


def test_kinds_come_from_isinstance_not_names():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            return x + self.conv(x)

    stages = OrderedDict(
        normalize=Normalize([0.5], [0.25]),
        relu=nn.Conv2d(1, 4, 3, padding="same"),  # a conv called "relu"
        bn=nn.BatchNorm2d(4),
        act=nn.GELU(),
        block=Residual(),
        avg=nn.AvgPool2d(2),
        drop=nn.Dropout2d(0.1),
        gap=nn.AdaptiveAvgPool2d(1),
        flat=nn.Flatten(),
        dense=nn.Linear(4, 3),
    )
    model = nn.Sequential(stages).eval()
    acts = cl.explain.activations(model, _image(3, (12, 12)))
    kinds = [s.kind for s in acts.layers]
    assert kinds == [
        "input", "normalize", "conv", "batchnorm", "activation", "block", "avgpool",
        "dropout", "globalpool", "flatten", "dense", "softmax",
    ]  # fmt: skip
    assert acts["normalize"].params == {"mean": [0.5], "std": [0.25]}
    assert acts["relu"].params["padding"] == [1, 1, 1, 1]
    with torch.no_grad():
        assert np.array_equal(
            acts["dense"].values, model(torch.from_numpy(_image(3, (12, 12)))[None, None])[0]
        )


def test_training_mode_model_is_explained_in_eval_and_restored():
    model = cl.create_model("cnn1", seed=0)  # dropout active in train mode
    model.train()
    a = cl.explain.activations(model, _image(4))
    b = cl.explain.activations(model, _image(4))
    assert model.training
    assert np.array_equal(a["drop1"].values, a["pool1"].values)  # dropout at eval is the identity
    assert np.array_equal(a.prediction.logits, b.prediction.logits)


# ---- conv and pooling detail -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(1, 6, 3),
        nn.Conv2d(1, 6, 5, stride=2, padding=2),
        nn.Conv2d(1, 4, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
        nn.Conv2d(1, 4, 3, padding="same", padding_mode="reflect"),
    ],
    ids=["valid", "stride-pad", "rect-dilated", "reflect"],
)
def test_conv_position_is_the_dot_product_pytorch_computes(conv):
    torch.manual_seed(0)
    model = nn.Sequential(
        OrderedDict(conv1=conv, relu1=nn.ReLU(), conv2=nn.Conv2d(conv.out_channels, 4, 3, groups=2))
    )
    model.append(nn.Flatten()).eval()
    img = _image(5, (13, 11))
    acts = cl.explain.activations(model, img)
    rng = np.random.default_rng(0)
    for layer in ("conv1", "conv2"):
        c, h, w = acts[layer].shape
        for _ in range(10):
            ch, y, x = int(rng.integers(c)), int(rng.integers(h)), int(rng.integers(w))
            d = conv_position(model, acts, layer, ch, y, x)
            assert d.total == pytest.approx(d.output, abs=1e-5)
            assert d.output == acts[layer].values[ch, y, x]
    # cross-correlation, not convolution: the patch times the unflipped kernel
    d = conv_position(model, acts, "conv1", 0, 0, 0)
    ref = F.conv2d(torch.from_numpy(d.patch)[None], torch.from_numpy(d.kernel)[None])[0, 0, 0, 0]
    assert float(ref) + d.bias == pytest.approx(d.total, abs=1e-9)
    if conv.padding != (0, 0) and conv.padding != "valid":
        assert min(d.top_left) < 0  # the window starts inside the padding
    assert len(conv_position(model, acts, "conv2", 3, 0, 0).channels) == conv.out_channels // 2  # groups=2


def test_position_errors():
    model = cl.create_model("cnn1", seed=0).eval()
    acts = cl.explain.activations(model, _image(6))
    with pytest.raises(CnnlabError, match="outside"):
        conv_position(model, acts, "conv1", 64, 0, 0)
    with pytest.raises(CnnlabError, match="not a conv"):
        conv_position(model, acts, "pool1", 0, 0, 0)
    with pytest.raises(CnnlabError, match="Unknown layer 'nope'. Available: conv1"):
        conv_position(model, acts, "nope", 0, 0, 0)


@pytest.mark.parametrize(
    "pool",
    [
        nn.MaxPool2d(2),
        nn.MaxPool2d(3, 2, padding=1),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.AvgPool2d(3, 2, 1),
        nn.AdaptiveAvgPool2d(2),
    ],
    ids=["max2", "max3s2p1", "ceil", "avg3s2p1", "adaptive"],
)
def test_pool_window_matches_the_layer(pool):
    model = nn.Sequential(OrderedDict(conv1=nn.Conv2d(1, 3, 3), pool1=pool, flatten=nn.Flatten())).eval()
    acts = cl.explain.activations(model, _image(7, (13, 13)))
    c, h, w = acts["pool1"].shape
    for ch in range(c):
        for y in range(h):
            for x in range(w):
                d = pool_window(model, acts, "pool1", ch, y, x)
                finite = d.window[np.isfinite(d.window)]
                if d.op == "max":
                    assert d.window[d.chosen] == d.output
                else:
                    divisor = d.window.size if isinstance(pool, nn.AvgPool2d) else finite.size
                    assert finite.sum() / divisor == pytest.approx(d.output, abs=1e-6)
    assert pool_window(model, acts, "pool1", 0, 0, 0).to_json()["op"] in ("max", "avg")


def test_softmax_matches_torch():
    z = np.array([2.0, -1.0, 0.5, 30.0], dtype=np.float32)
    assert np.array_equal(cl.explain.softmax(z), torch.softmax(torch.from_numpy(z), 0).numpy())
    steps = cl.explain.softmax_steps(z)
    assert steps["max"] == 30.0 and np.allclose(steps["probabilities"], cl.explain.softmax(z), atol=1e-7)


# ---- input preparation -------------------------------------------------------------------------------


def test_prepare_input_resizes_inverts_and_converts():
    prep = cl.explain.prepare_input
    white_bg = np.ones((56, 40), dtype=np.float32)
    white_bg[20:36, 10:30] = 0.0  # a dark object on white, like a photo
    p = prep(white_bg, (1, 28, 28))
    assert p.resized and p.inverted and p.original_size == (56, 40)
    assert (
        tuple(p.tensor.shape) == (1, 1, 28, 28) and float(p.tensor.min()) >= 0 and float(p.tensor.max()) <= 1
    )
    assert float(p.tensor[0, 0, 0, 0]) == 0.0  # the background became black
    assert not prep(white_bg, (1, 28, 28), invert=False).inverted
    rgb = np.zeros((28, 28, 3), dtype=np.float32)
    rgb[..., 0] = 1.0
    assert float(prep(rgb, (1, 28, 28), invert=False).tensor[0, 0, 5, 5]) == pytest.approx(0.299)
    assert tuple(prep(np.zeros((28, 28), np.uint8), (3, 32, 32)).tensor.shape) == (1, 3, 32, 32)
    u8 = torch.full((1, 28, 28), 255, dtype=torch.uint8)
    assert float(prep(u8, (1, 28, 28), invert=False).tensor.max()) == 1.0
    with pytest.raises(CnnlabError):
        prep(np.zeros((2, 3, 4, 5)), (1, 28, 28))
    with pytest.raises(CnnlabError, match="NaN"):
        prep(np.full((28, 28), np.nan), (1, 28, 28))


@pytest.mark.parametrize("resize", ["pad", "crop", "stretch"])
@pytest.mark.parametrize("fill", ["black", "border"])
def test_an_array_is_fitted_as_its_file_is(tmp_path, resize, fill):
    """One image geometry (`cnnlab.data.fit`): the array of an image and its PNG file, prepared for the
    same model, differ by the file's uint8 rounding at most (the array is resized in float)."""
    from PIL import Image

    rng = np.random.default_rng(3)
    a = np.full((30, 44, 3), 235, dtype=np.uint8)  # a light border around a textured object
    a[6:26, 9:35] = rng.integers(0, 160, (20, 26, 3))
    path = tmp_path / "x.png"
    Image.fromarray(a).save(path)
    for shape in [(1, 16, 16), (3, 12, 12)]:
        opts = {"invert": False, "resize": resize, "fill": fill}
        from_file = cl.explain.prepare_input(path, shape, **opts).tensor
        from_array = cl.explain.prepare_input(a, shape, **opts).tensor
        assert from_file.shape == from_array.shape == (1, *shape)
        assert float((from_file - from_array).abs().max()) <= 1.01 / 255, (shape, resize, fill)


# ---- Grad-CAM and saliency ---------------------------------------------------------------------------


def test_gradcam_and_saliency_basics():
    model = cl.create_model("cnn2", seed=0).eval()
    img = _image(8)
    cam = cl.explain.gradcam(model, img, classes=[str(i) for i in range(10)])
    assert cam.layer == "relu2" and cam.values.shape == (28, 28)  # the last conv, after its ReLU
    assert cam.values.min() >= 0.0 and cam.values.max() <= 1.0
    on_conv1 = cl.explain.gradcam(model, img, layer="conv1", class_index=3)
    assert on_conv1.class_index == 3 and on_conv1.raw.shape == (26, 26)
    with pytest.raises(CnnlabError, match="feature maps"):
        cl.explain.gradcam(model, img, layer="dense1")
    with pytest.raises(CnnlabError, match="out of range"):
        cl.explain.gradcam(model, img, class_index=10)
    with pytest.raises(CnnlabError, match="needs a conv layer"):
        cl.explain.gradcam(cl.create_model("mlp", seed=0), img)
    sal = cl.explain.saliency(model, img)
    assert sal.values.shape == (28, 28) and sal.values.max() == 1.0
    assert not any(p.grad is not None for p in model.parameters())  # nothing accumulated on the model


def _left_half_task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class = orientation of a bar somewhere in the LEFT half, on faint noise; the right half is noise
    only and carries no information. A model can only solve this by looking left."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=g) * 0.1
    y = torch.randint(0, 2, (n,), generator=g)
    for i in range(n):
        r, c = (int(v) for v in torch.randint(4, 10, (2,), generator=g))
        if y[i]:  # vertical
            x[i, 0, r - 3 : r + 4, c] = 1.0
        else:  # horizontal
            x[i, 0, r + 7, c - 3 : c + 4] = 1.0
    return x, y


def test_gradcam_sanity_model_that_looks_left():
    torch.manual_seed(0)
    model = cl.create_model("conv8-pool-conv16-pool-dense32", num_classes=2, seed=0)
    x, y = _left_half_task(1200, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(4):
        for i in range(0, len(y), 64):
            loss = F.cross_entropy(model(x[i : i + 64]), y[i : i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    tx, ty = _left_half_task(100, seed=1)
    with torch.no_grad():
        acc = (model(tx).argmax(1) == ty).float().mean().item()
    assert acc > 0.9, f"the tiny model did not learn the task ({acc:.2f})"
    left = []
    for i in range(40):
        cam = cl.explain.gradcam(model, tx[i], layer="relu2").values
        if cam.sum() > 0:
            left.append(cam[:, :14].sum() / cam.sum())
    assert np.mean(left) > 0.7, f"Grad-CAM mass in the left half: {np.mean(left):.2f}"


# ---- dataset report ----------------------------------------------------------------------------------


def test_dataset_report_numbers():
    classes = ["a", "b", "c"]
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    pred = np.array([0, 1, 1, 1, 0, 2, 2, 1, 2])
    probs = np.full((9, 3), 0.1, dtype=np.float32)
    probs[np.arange(9), pred] = np.linspace(0.5, 0.9, 9)
    rep = DatasetReport(classes, labels, probs)
    cm = rep.confusion()
    assert cm.tolist() == [[1, 2, 0], [1, 1, 0], [0, 1, 3]]
    assert np.allclose(rep.confusion(normalize=True).sum(1), 1.0)
    assert rep.most_confused(2) == [
        {"true": "a", "predicted": "b", "count": 2, "share_of_true": 0.6667},
        {"true": "b", "predicted": "a", "count": 1, "share_of_true": 0.5},
    ]
    wrong = rep.confidently_wrong()
    assert [w["index"] for w in wrong] == [7, 4, 2, 1]  # most confident mistake first
    per = {r["class"]: r for r in rep.per_class()}
    assert per["b"]["precision"] == pytest.approx(1 / 4, abs=1e-4) and per["b"]["recall"] == 0.5
    assert per["c"]["f1"] == pytest.approx(2 * 1.0 * 0.75 / 1.75, abs=1e-4)
    assert rep.per_class_csv().splitlines()[0] == "class,precision,recall,f1,support"
    assert rep.confusion_csv().splitlines()[1] == "a,1,2,0"
    assert rep.accuracy == pytest.approx(5 / 9)


def test_dataset_report_on_a_split_matches_a_forward_pass():
    model = cl.create_model("cnn1", seed=0).eval()
    images = torch.randint(0, 256, (50, 1, 28, 28), dtype=torch.uint8)
    split = cl.data.Split(images, torch.randint(0, 10, (50,)))
    rep = cl.explain.dataset_report(model, split, classes=[str(i) for i in range(10)])
    with torch.no_grad():
        expected = torch.softmax(model(images.float() / 255), 1).argmax(1).numpy()
    assert np.array_equal(rep.predictions, expected)
    assert rep.confusion().sum() == 50


@pytest.mark.slow  # several seconds: fresh interpreters or real training
def test_explain_never_imports_the_engine():
    code = (
        "import sys, numpy as np, cnnlab as cl\n"
        "from cnnlab.explain import files, heatmaps, detail, reports, figures, data, schema\n"
        "m = cl.create_model('cnn1', seed=0)\n"
        "cl.explain.activations(m, np.zeros((28, 28)))\n"
        "cl.explain.gradcam(m, np.zeros((28, 28)))\n"
        "bad = [k for k in sys.modules if k.startswith('cnnlab.engine') or k == 'cnnlab.run.folder']\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
