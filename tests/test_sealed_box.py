"""Issue 22, part 3: a dataset folder and a run folder are sealed boxes. Folder scans never follow a link
out of the class folder nor around a loop; names that are not UTF-8 are refused at train time (class
folders), skipped (image files), or carried without breaking any JSON answer (runs made before)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

import cnnlab as cl
from cnnlab.data.folder_source import scan_source
from cnnlab.engine.history import History
from cnnlab.errors import CnnlabError

CAFE = os.fsdecode(b"caf\xe9")  # a folder name of Latin-1 bytes: not UTF-8


def _images(folder: Path, n: int = 3, colour: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (16, 16), (colour, 40 * i, 90)).save(folder / f"{i}.png")


@pytest.fixture
def dataset(tmp_path) -> Path:
    root = tmp_path / "shapes"
    _images(root / "circle", colour=10)
    _images(root / "square", colour=200)
    return root


def test_a_link_out_of_the_dataset_is_never_followed(dataset, tmp_path):
    # issue 22: `ln -s / folder/circle/all` trained on 6,233 foreign images
    _images(tmp_path / "elsewhere", n=5)
    (dataset / "circle" / "all").symlink_to(tmp_path / "elsewhere")
    (dataset / "circle" / "one.png").symlink_to(tmp_path / "elsewhere" / "0.png")
    src = scan_source(dataset)
    assert sorted(src.files) == sorted(
        [f"circle{os.sep}{i}.png" for i in range(3)] + [f"square{os.sep}{i}.png" for i in range(3)]
    )
    assert any("all" in x and "link out" in x for x in src.ignored)
    assert any("one.png" in x and "link out" in x for x in src.ignored)


def test_a_loop_is_walked_once_and_no_image_counts_under_two_classes(dataset):
    # issue 22: a loop `circle/up -> ..` counted the same images under two classes
    (dataset / "circle" / "up").symlink_to("..")
    (dataset / "circle" / "self").symlink_to(".")
    src = scan_source(dataset)
    real = [os.path.realpath(dataset / f) for f in src.files]
    assert len(real) == len(set(real)) == 6
    assert list(src.labels) == [0, 0, 0, 1, 1, 1]


def test_a_link_inside_its_class_folder_is_followed(dataset):
    _images(dataset / "circle" / ".more", n=2, colour=30)  # hidden: reached only through the link
    (dataset / "circle" / "more").symlink_to(".more")
    assert len(scan_source(dataset).files) == 8


def test_a_class_folder_linked_out_of_the_dataset_is_one_error(dataset, tmp_path):
    _images(tmp_path / "triangles")
    (dataset / "triangle").symlink_to(tmp_path / "triangles")
    with pytest.raises(CnnlabError, match="'triangle' .* is a link out of the dataset folder"):
        scan_source(dataset)


def test_a_class_folder_name_that_is_not_utf8_is_refused_in_one_line(dataset, run_cli, tmp_path):
    # issue 22: `train` succeeded, then /api/models and /api/predict answered 500 for every run
    _images(dataset / CAFE)
    with pytest.raises(CnnlabError, match=r"caf\\udce9.* not UTF-8"):
        scan_source(dataset)
    code, out, err = run_cli("train", "--data", dataset, "--out", tmp_path / "r", "--epochs", "1")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and "not UTF-8" in lines[0] and "Traceback" not in err, err


def test_an_image_name_that_is_not_utf8_is_skipped_and_listed_printably(dataset):
    shutil.copy(dataset / "circle" / "0.png", dataset / "circle" / os.fsdecode(b"\xff.png"))
    src = scan_source(dataset)
    assert len(src.files) == 6
    assert any("not UTF-8" in x for x in src.ignored)
    json.dumps(src.ignored).encode("utf-8")  # printable: no lone surrogate


@pytest.fixture
def runs(tmp_path) -> Path:
    """Two runs: a good one, and one an older cnnlab trained on a class folder named in Latin-1."""
    root = tmp_path / "runs"
    classes = [str(i) for i in range(10)]
    config = {"model": "conv4-pool-dense8", "input_shape": [1, 28, 28], "classes": classes,
              "data": "fashion_mnist", "split": "tutorial", "seed": 0, "limit": None}  # fmt: skip
    for name in ("good", "latin"):
        cl.save_run(root / name, cl.create_model("conv4-pool-dense8", seed=0), History(), config=config)
    cfg = root / "latin" / "config.json"
    doc = json.loads(cfg.read_text())
    cfg.write_text(json.dumps({**doc, "classes": [CAFE, *classes[1:]]}))  # written as "caf\udce9"
    return root


def _png() -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("L", (28, 28), 100).save(buf, format="PNG")
    return buf.getvalue()


def test_runs_with_non_utf8_names_never_break_the_others(runs):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from cnnlab.web import create_app

    (runs / "good" / "results.json").write_text('{"summary": {"layers": [{"name": "c\\ud800"}]}}')
    shutil.copytree(runs / "good", runs / CAFE)  # a run folder whose own name is not UTF-8
    with TestClient(create_app(runs, warm=False), raise_server_exceptions=False) as c:
        listing = c.get("/api/models")
        assert listing.status_code == 200, listing.text
        doc = listing.json()
        assert [m["id"] for m in doc["models"]] == ["good"]
        unavailable = {u["id"]: u["error"] for u in doc["unavailable"]}
        assert "not UTF-8" in unavailable["latin"] and "caf\\xe9" in unavailable
        files = {"file": ("x.png", _png(), "image/png")}
        assert c.post("/api/predict", data={"model": "good"}, files=files).status_code == 200
        bad = c.post("/api/predict", data={"model": "latin"}, files=files)
        assert bad.status_code == 409 and "UTF-8" in bad.json()["error"]


def test_explain_of_a_run_with_non_utf8_classes_is_one_line(runs, run_cli):
    # issue 22: `cnnlab explain RUN` printed a traceback
    code, out, err = run_cli("explain", runs / "latin")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and "UTF-8" in lines[0] and "Traceback" not in err, err
