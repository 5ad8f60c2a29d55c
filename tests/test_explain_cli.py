"""`cnnlab explain` end to end on a small trained run: image reports, the dataset report, --json, and
every bad input as one line with the right exit code; `cnnlab serve` argument checks."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab as cl
from cnnlab.explain import schema

pytestmark = pytest.mark.slow  # end to end on real data: trains a small run (once per session)


def trained_run(tmp_path_factory, fmnist_dir, model: str = "cnn2") -> Path:
    """A small really-trained run, trained once per test session (shared through the base temp dir)."""
    path = tmp_path_factory.getbasetemp() / "trained-runs" / model
    if not (path / "model.safetensors").is_file():
        cfg = cl.TrainConfig(model=model, epochs=1, limit=2000, batch_size=64, patience=None)
        cl.train(cfg, out=path, data_dir=fmnist_dir, progress=False, overwrite=True)
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, fmnist_dir) -> Path:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    copy = tmp_path_factory.mktemp("explain-cli") / "cnn2"
    shutil.copytree(trained_run(tmp_path_factory, fmnist_dir), copy)
    yield copy
    torch.set_num_threads(before)


@pytest.fixture
def images(tmp_path, fmnist_small) -> list[Path]:
    shoe = fmnist_small.test.images[0, 0].numpy()
    a = tmp_path / "shoe.png"
    Image.fromarray(shoe).save(a)
    b = tmp_path / "photo.jpg"  # a dark thing on white, another size, in colour
    rgb = np.full((60, 45, 3), 250, dtype=np.uint8)
    rgb[15:45, 10:35] = (40, 20, 10)
    Image.fromarray(rgb).save(b)
    return [a, b]


def _is_png(p: Path) -> bool:
    return p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_image_report_files_and_table(run_cli, run_dir, images, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = run_cli(
        "explain", run_dir, images[1], "--out", out, "--layer", "conv1", "--top-k", "3"
    )
    assert code == 0, err
    assert (
        "photo.jpg" in stdout and "Grad-CAM on conv1" in stdout and "resized from 45x60, inverted" in stdout
    )
    for name in ("photo",):
        folder = out / name
        doc = schema.ActivationsDoc.model_validate(json.loads((folder / "prediction.json").read_text()))
        assert doc.gradcam.layer == "conv1" and len(doc.prediction.top) == 3
        expected = [
            "topk.png",
            "overview.png",
            "saliency.png",
            "gradcam_conv1.png",
            "kernels_conv1.png",
            "kernels_conv2.png",
        ]
        for f in expected:
            assert _is_png(folder / f), f
        stages = sorted((folder / "stages").iterdir())
        assert len(stages) == len(doc.layers) and all(_is_png(p) for p in stages)
    photo = json.loads((out / "photo" / "prediction.json").read_text())
    assert photo["input"]["inverted"] and photo["input"]["resized"]


def test_json_and_default_folder(run_cli, run_dir, images):
    code, stdout, err = run_cli("explain", run_dir, images[0], "--json")
    assert code == 0, err
    shoe = json.loads(stdout)
    assert shoe["schema"] == cl.explain.SCHEMA_VERSION and shoe["gradcam"]["layer"] == "relu2"
    assert not shoe["input"]["inverted"]  # light on black already, like the dataset
    assert (run_dir / "plots" / "explain" / "shoe" / "overview.png").is_file()
    # the report's prediction is the model's
    run = cl.load_run(run_dir)
    x = torch.from_numpy(schema.decode_tensor(shoe["layers"][0]["values"]))[None]
    with torch.no_grad():
        assert int(run.model(x).argmax()) == shoe["prediction"]["index"]


def test_dataset_report(run_cli, run_dir, fmnist_dir, tmp_path):
    out = tmp_path / "ds"
    code, stdout, err = run_cli("explain", run_dir, "--out", out, "--data-dir", fmnist_dir)
    assert code == 0, err
    assert "most confused" in stdout and "precision" in stdout
    folder = out / "dataset"
    rows = list(csv.DictReader((folder / "per_class.csv").open()))
    assert [r["class"] for r in rows][:2] == ["T-shirt/top", "Trouser"] and len(rows) == 10
    assert sum(int(r["support"]) for r in rows) == 2000
    counts = list(csv.reader((folder / "confusion_matrix.csv").open()))
    assert counts[0][1:] == [r["class"] for r in rows]
    assert sum(int(v) for row in counts[1:] for v in row[1:]) == 2000
    normed = list(csv.reader((folder / "confusion_matrix_normalized.csv").open()))
    assert all(abs(sum(float(v) for v in row[1:]) - 1) < 1e-3 for row in normed[1:])
    report = json.loads((folder / "report.json").read_text())
    results = json.loads((run_dir / "results.json").read_text())
    assert report["accuracy"] == pytest.approx(results["test"]["accuracy"], abs=1e-4)
    assert report["confidently_wrong"][0]["probability"] >= report["confidently_wrong"][-1]["probability"]
    assert _is_png(folder / "confusion_matrix.png") and _is_png(folder / "confidently_wrong.png")


def test_bad_input(run_cli, run_dir, images, tmp_path):
    code, _, err = run_cli("explain", run_dir, images[0], "--layer", "nope")
    assert (
        code == 1 and "Unknown layer 'nope'. Available: conv1" in err and len(err.strip().splitlines()) == 1
    )
    code, _, err = run_cli("explain", run_dir, images[0], "--layer", "dense1")
    assert code == 1 and "feature maps" in err
    code, _, err = run_cli("explain", run_dir, tmp_path / "missing.png")
    assert code == 1 and "no such file" in err
    (tmp_path / "text.png").write_text("not an image")
    code, _, err = run_cli("explain", run_dir, tmp_path / "text.png", "--out", tmp_path / "x")
    assert code == 1 and "not an image" in err and not (tmp_path / "x").exists()
    code, _, err = run_cli("explain", tmp_path, images[0])
    assert code == 1 and "not a cnnlab run" in err
    code, _, err = run_cli("explain", run_dir, images[0], "--top-k", "0")
    assert code == 2
    code, _, err = run_cli("serve", tmp_path / "nope")
    assert code == 1 and "does not exist" in err
    code, _, err = run_cli("serve", "--port", "70000")
    assert code == 2
