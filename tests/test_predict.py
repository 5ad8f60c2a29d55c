"""`cnnlab predict`: files and folders, mixed good and bad files, resizing with a note, output formats."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.engine import History
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.prediction import collect_images, predict_files
from cnnlab.run.folder import load_run, save_run


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def make_run(
    path: Path, *, shape=(3, 12, 12), classes=("cat", "dog", "fox"), resize="pad", normalize=True, data=None
):
    """An (untrained, seeded) run folder: predict only needs the model, its input shape and classes."""
    c = shape[0]
    mean, std = ([0.5] * c, [0.25] * c) if normalize else (None, None)
    model = create_model(
        "conv4-pool-dense8", input_shape=shape, num_classes=len(classes), seed=0, mean=mean, std=std
    )
    config = {
        "model": "conv4-pool-dense8",
        "input_shape": list(shape),
        "classes": list(classes),
        "resize": resize,
        "data": data or str(path / "some-folder"),
        "mean": mean,
        "std": std,
    }
    save_run(path, model, History(), config=config)
    return load_run(path)


@pytest.fixture
def images(tmp_path) -> Path:
    """good.png (exactly 12x12), big.jpg (40x30), corrupt.jpg, a folder of two images and a text file."""
    d = tmp_path / "imgs"
    (d / "more" / ".hidden").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(d / "good.png")
    Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(d / "big.jpg")
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a whole JPEG")
    Image.new("L", (12, 12), 200).save(d / "more" / "gray.png")
    Image.new("P", (20, 10), 5).save(d / "more" / "palette.gif")
    (d / "more" / "notes.txt").write_text("ignored in folders")
    Image.new("RGB", (12, 12)).save(d / "more" / ".hidden" / "x.png")
    return d


def test_mixed_good_and_bad_files(tmp_path, images):
    run = make_run(tmp_path / "run")
    (tmp_path / "empty").mkdir()
    paths = [
        images / "good.png",
        images / "big.jpg",
        images / "corrupt.jpg",
        tmp_path / "missing.png",
        images / "more",
        tmp_path / "empty",
    ]
    r = predict_files(run, paths, top_k=2)
    got = [Path(p.path).name for p in r.predictions]
    assert got == ["good.png", "big.jpg", "gray.png", "palette.gif"]
    bad = {Path(p).name: why for p, why in r.bad}
    assert set(bad) == {"corrupt.jpg", "missing.png", "empty"}
    assert "no such file" in bad["missing.png"] and "holds no images" in bad["empty"]
    assert r.resized == 2 and "2 of 4 images were not 12x12" in r.notes[0]
    for p in r.predictions:
        probs = [prob for _, prob in p.top]
        assert len(p.top) == 2 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert json.loads(json.dumps(r.as_dict()))["skipped"][0]["reason"]


def test_matches_the_model_and_is_independent_of_batching(tmp_path, images):
    run = make_run(tmp_path / "run")
    r = predict_files(run, [images / "good.png"], top_k=3)
    x = torch.from_numpy(np.asarray(Image.open(images / "good.png")).transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        expected = torch.softmax(run.model(x.float() / 255), dim=1)[0]
    top = dict(r.predictions[0].top)
    for i, cls in enumerate(run.classes):
        assert top[cls] == pytest.approx(float(expected[i]), abs=1e-6)
    a = predict_files(run, [images], batch_size=1, chunk=1)
    b = predict_files(run, [images], batch_size=256)
    assert [p.path for p in a.predictions] == [p.path for p in b.predictions]
    for pa, pb in zip(a.predictions, b.predictions, strict=True):
        assert [c for c, _ in pa.top] == [c for c, _ in pb.top]
        np.testing.assert_allclose([p for _, p in pa.top], [p for _, p in pb.top], atol=1e-5)


@pytest.mark.parametrize(
    "data,shape,resize",
    [("folder", (3, 12, 12), "pad"), ("folder", (1, 12, 12), "crop"), ("fashion_mnist", (1, 28, 28), "pad")],
)
def test_predict_explain_and_the_page_prepare_a_file_alike(tmp_path, data, shape, resize):
    from cnnlab.explain import prepare_input

    run = make_run(tmp_path / "run", shape=shape, resize=resize, data=None if data == "folder" else data)
    path = tmp_path / "object.png"  # a dark object on white, not square: resized, perhaps inverted
    a = np.full((30, 44, 3), 250, dtype=np.uint8)
    a[8:24, 10:30] = np.random.default_rng(1).integers(0, 90, (16, 20, 3))
    Image.fromarray(a).save(path)
    predicted = dict(predict_files(run, [path], top_k=len(run.classes)).predictions[0].top)
    from_file = prepare_input(path, run.input_shape, **run.image_options)  # cnnlab explain
    from_upload = prepare_input(path.read_bytes(), run.input_shape, **run.image_options)  # the page
    assert torch.equal(from_file.tensor, from_upload.tensor) and from_file.resized
    with torch.no_grad():
        probs = torch.softmax(run.model(from_file.tensor), dim=1)[0]
    for i, cls in enumerate(run.classes):
        assert predicted[cls] == pytest.approx(float(probs[i]), abs=1e-6)
    # folders train on black bars and are never auto-inverted; Fashion-MNIST is light on black
    assert from_file.inverted == (data == "fashion_mnist")
    if data == "folder" and resize == "pad":
        assert from_file.tensor[0, :, 0, :].max() == 0  # the padded rows are black, as in training
    if data == "fashion_mnist":
        assert from_file.tensor[0, 0, 0, :].max() < 0.05  # border-coloured padding, then inverted: black
        kept = predict_files(run, [path], top_k=len(run.classes), invert=False)
        assert kept.inverted == 0 and dict(kept.predictions[0].top) != predicted


def test_grayscale_model_gets_converted_images(tmp_path, images):
    run = make_run(tmp_path / "run", shape=(1, 28, 28), classes=tuple("0123456789"), normalize=False)
    r = predict_files(run, [images / "big.jpg", images / "good.png"], top_k=10)
    assert len(r.predictions) == 2 and len(r.predictions[0].top) == 10
    assert r.resized == 2


def test_invert_given_as_1_or_0_is_read_as_true_or_false(tmp_path, images):
    # 1 == True passes the argument check; the inversion mask must still be a bool mask
    run = make_run(tmp_path / "run", shape=(1, 12, 12), normalize=False)
    files = [images / "good.png", images / "big.jpg"]
    for number, flag in ((1, True), (0, False)):
        got = predict_files(run, files, top_k=3, invert=number)
        want = predict_files(run, files, top_k=3, invert=flag)
        assert got.inverted == want.inverted == (2 if flag else 0)
        assert [p.top for p in got.predictions] == [p.top for p in want.predictions]


def test_errors(tmp_path, images):
    run = make_run(tmp_path / "run")
    with pytest.raises(CnnlabError, match=r"No readable image to predict \(2 skipped"):
        predict_files(run, [images / "corrupt.jpg", tmp_path / "nope.png"])
    with pytest.raises(CnnlabError, match="top_k must be a positive integer"):
        predict_files(run, [images], top_k=0)
    with pytest.raises(CnnlabError, match="No images given"):
        predict_files(run, [])


def test_collect_images_sorted_recursive(images):
    files, bad = collect_images([images])
    assert [Path(f).name for f in files] == ["big.jpg", "corrupt.jpg", "good.png", "gray.png", "palette.gif"]
    assert bad == []


# --- the CLI ------------------------------------------------------------------------------------


def test_cli_formats(tmp_path, images, run_cli):
    make_run(tmp_path / "run")
    code, out, err = run_cli("predict", tmp_path / "run", images, "--top-k", "2")
    assert code == 0, err
    assert "good.png" in out and "4 images predicted, 1 skipped" in out
    assert "skipped" in err and "corrupt.jpg" in err and "note: 2 of 4 images" in err

    code, out, err = run_cli("predict", tmp_path / "run", images, "--format", "csv", "--batch-size", "2")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 4 and list(rows[0]) == [
        "path",
        *[f"{k}_{i}" for i in (1, 2, 3) for k in ("class", "probability")],
    ]
    assert rows[0]["class_1"] in ("cat", "dog", "fox") and 0 < float(rows[0]["probability_1"]) <= 1

    code, out, err = run_cli(
        "predict", tmp_path / "run", images / "good.png", "--format", "json", "--top-k", "9"
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["input_shape"] == [3, 12, 12] and len(doc["predictions"][0]["top"]) == 3


@pytest.mark.parametrize(
    "args,code,message",
    [
        (["{run}", "{bad}"], 1, "No readable image to predict"),
        (["{run}", "{good}", "--top-k", "0"], 2, "expected a positive integer"),
        (["{run}", "{good}", "--format", "xml"], 2, "invalid choice"),
        (["{tmp}/no_run", "{good}"], 1, "does not exist"),
    ],
)
def test_cli_errors(tmp_path, images, run_cli, args, code, message):
    make_run(tmp_path / "run")
    subst = {
        "run": tmp_path / "run",
        "bad": images / "corrupt.jpg",
        "good": images / "good.png",
        "tmp": tmp_path,
    }
    got, out, err = run_cli("predict", *[a.format(**subst) for a in args])
    assert got == code and message in err and "Traceback" not in err


def test_the_public_predict_function_is_not_shadowed():
    import cnnlab
    import cnnlab.prediction  # noqa: F401  (a submodule named `predict` would replace cnnlab.predict)

    assert callable(cnnlab.predict)


def test_a_run_whose_config_and_weights_disagree_is_one_clear_error(tmp_path, run_cli):
    import json

    make_run(tmp_path / "run")
    cfg_path = tmp_path / "run" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**cfg, "classes": ["cat", "dog"]}))  # the weights have 3 outputs
    with pytest.raises(CnnlabError, match="does not match the model config.json describes"):
        load_run(tmp_path / "run")
    code, _, err = run_cli("predict", tmp_path / "run", tmp_path)
    assert code == 1 and "Traceback" not in err and "does not match" in err
    cfg_path.write_text(json.dumps({"classes": ["cat"]}))
    with pytest.raises(CnnlabError, match="lacks model, input_shape"):
        load_run(tmp_path / "run")


def test_equal_weights_give_byte_identical_files(tmp_path):
    files = {(make_run(tmp_path / str(i)).path / "model.safetensors").read_bytes() for i in range(6)}
    assert len(files) == 1  # (two metadata keys came out in either order: 6 saves nearly always differed)
