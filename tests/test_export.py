"""Export to ONNX and TorchScript: parity with PyTorch on 1,000 real test images, metadata, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import cnnlab.export as export_mod
from cnnlab.engine import History, fit
from cnnlab.errors import CnnlabError
from cnnlab.export import export_run
from cnnlab.models import create_model
from cnnlab.run.folder import Run, load_run, save_run

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, fmnist_small, fmnist_dir) -> Path:
    """A small CNN trained for one epoch on 2,000 real Fashion-MNIST images, saved as a run."""
    model = create_model("conv16-pool-conv32-pool-dense64", input_shape=(1, 28, 28), num_classes=10, seed=0)
    history = fit(model, fmnist_small, epochs=1, batch_size=64, progress=False, seed=0, device="cpu")
    path = tmp_path_factory.mktemp("export") / "run"
    config = {
        "model": "conv16-pool-conv32-pool-dense64",
        "data": "fashion_mnist",
        "split": "tutorial",
        "seed": 0,
        "limit": 2000,
        "data_dir": str(fmnist_dir),
        "input_shape": [1, 28, 28],
        "classes": list(fmnist_small.classes),
    }
    save_run(path, model.cpu(), history, config=config)
    return path


def test_onnx_parity_on_1000_test_images_and_metadata(trained_run, tmp_path):
    out = tmp_path / "m.onnx"
    r = export_run(trained_run, format="onnx", out=out, parity_images=1000)
    p = r.parity
    assert p["n"] == 1000 and p["source"] == "1000 test images of fashion_mnist"
    assert p["max_abs_diff"] <= 1e-4 and p["argmax_agreement"] == 1.0
    proto = onnx.load(str(out))
    meta = {e.key: e.value for e in proto.metadata_props}
    assert json.loads(meta["classes"])[0] == "T-shirt/top" and meta["channels"] == "1"
    assert json.loads(meta["input_shape"]) == ["batch", 1, 28, 28] and meta["input_name"] == "pixels"
    assert "divide by 255" in meta["preprocessing"] and "grayscale" in meta["preprocessing"]
    # as predict prepares images for a Fashion-MNIST run: border-coloured padding, dark-on-light inverted
    assert "border colour" in meta["preprocessing"] and "inverted" in meta["preprocessing"]
    # the batch axis is dynamic: 1 and 7 images both run
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    run = load_run(trained_run)
    for n in (1, 7):
        x = torch.rand(n, 1, 28, 28)
        got = session.run(None, {"pixels": x.numpy()})[0]
        with torch.no_grad():
            np.testing.assert_allclose(got, run.model(x).numpy(), atol=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no temp files left


def test_normalize_stage_is_inside_the_graph(tmp_path):
    model = create_model(
        "conv4-pool-dense8",
        input_shape=(3, 16, 16),
        num_classes=3,
        seed=1,
        mean=[0.2, 0.4, 0.6],
        std=[0.1, 0.2, 0.3],
    )
    run = Run(
        tmp_path,
        model.eval(),
        {
            "model": "conv4-pool-dense8",
            "input_shape": [3, 16, 16],
            "classes": ["a", "b", "c"],
            "data": "nowhere/",
        },
        History(),
        {},
    )
    r = export_run(run, format="onnx", out=tmp_path / "n.onnx", parity_images=64)
    assert json.loads(r.metadata["mean"]) == pytest.approx([0.2, 0.4, 0.6])
    assert "applied inside the model" in r.metadata["preprocessing"]
    assert r.parity["source"].startswith("random pixels") and r.notes
    assert r.parity["max_abs_diff"] <= 1e-4 and r.parity["argmax_agreement"] == 1.0


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_export_with_metadata(trained_run, tmp_path):
    out = tmp_path / "m.pt"
    r = export_run(trained_run, format="torchscript", out=out, parity_images=200)
    assert r.parity["max_abs_diff"] <= 1e-5 and r.parity["argmax_agreement"] == 1.0
    extra = {"cnnlab.json": ""}
    loaded = torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(extra["cnnlab.json"])["classes"] == r.metadata["classes"]
    assert loaded(torch.rand(5, 1, 28, 28)).shape == (5, 10)
    # written atomically, yet with the mode any new file gets (not mkstemp's private 0600)
    from cnnlab.atomic import _umask

    for f in (out, trained_run / "model.safetensors", trained_run / "config.json"):
        assert f.stat().st_mode & 0o777 == 0o666 & ~_umask(), f


def test_bad_input_leaves_nothing(trained_run, tmp_path, monkeypatch):
    with pytest.raises(CnnlabError, match=r"Unknown export format 'tflite'\. Available: onnx, torchscript"):
        export_run(trained_run, format="tflite")
    out = tmp_path / "m.onnx"
    out.write_text("keep me")
    with pytest.raises(CnnlabError, match="already exists; pass --overwrite"):
        export_run(trained_run, format="onnx", out=out)
    assert out.read_text() == "keep me"
    with pytest.raises(CnnlabError, match="is a folder"):
        export_run(trained_run, format="onnx", out=tmp_path)
    with pytest.raises(CnnlabError, match="Cannot write /proc/cnnlab-nowhere/m.pt"):
        export_run(trained_run, format="torchscript", out=Path("/proc/cnnlab-nowhere/m.pt"))

    # a parity failure writes nothing, not even a temp file
    monkeypatch.setattr(
        export_mod, "parity", lambda *a, **k: {"n": 10, "max_abs_diff": 0.5, "argmax_agreement": 0.9}
    )
    with pytest.raises(
        CnnlabError, match=r"disagrees with PyTorch on 10 images: max abs logit difference 0\.5"
    ):
        export_run(trained_run, format="onnx", out=tmp_path / "new.onnx", parity_images=10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_cli_export(trained_run, tmp_path, run_cli):
    code, out, err = run_cli(
        "export", trained_run, "--format", "onnx", "--out", tmp_path / "cli.onnx", "--parity-images", "300"
    )
    assert code == 0, err
    assert (
        "Parity vs PyTorch on 300 test images of fashion_mnist" in out and "argmax agreement 100.00%" in out
    )
    code, out, err = run_cli(
        "export",
        trained_run,
        "--format",
        "onnx",
        "--out",
        tmp_path / "cli.onnx",
        "--parity-images",
        "0",
        "--json",
    )
    assert code == 1 and "already exists" in err
    code, out, err = run_cli("export", trained_run, "--format", "tflite")
    assert code == 2 and "invalid choice: 'tflite'" in err and "Traceback" not in err
    code, out, err = run_cli("export", tmp_path / "nope", "--format", "onnx")
    assert code == 1 and "does not exist" in err


def test_folder_run_parity_uses_every_split_when_the_test_split_is_small(tmp_path, monkeypatch):
    from PIL import Image

    from cnnlab.config import TrainConfig
    from cnnlab.experiment import train

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for cls, channel in (("red", 0), ("blue", 2)):
        (tmp_path / "pics" / cls).mkdir(parents=True)
        for i in range(10):
            arr = rng.integers(0, 80, (16, 20, 3), dtype=np.uint8)
            arr[..., channel] = 230
            Image.fromarray(arr).save(tmp_path / "pics" / cls / f"{i}.png")
    cfg = TrainConfig(
        data=str(tmp_path / "pics"),
        image_size=12,
        model="conv4-pool-dense8",
        epochs=1,
        batch_size=8,
        normalize=True,
    )
    train(cfg, out=tmp_path / "run", progress=False)
    r = export_run(tmp_path / "run", format="onnx", parity_images=1000)
    assert r.parity["n"] == 20 and r.parity["source"].startswith("20 images (4 test + 4 val + 12 train) of ")
    assert r.parity["max_abs_diff"] <= 1e-4 and r.parity["argmax_agreement"] == 1.0
    assert json.loads(r.metadata["mean"]) is not None and "inside the model" in r.metadata["preprocessing"]
    assert (tmp_path / "run" / "model.onnx").is_file()
