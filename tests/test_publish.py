"""`cnnlab publish`: the site's files (the page, each run's weights with their sha256, its op tree, its
gallery from its own test split) and its refusals (a stage the browser cannot run, a damaged run, an
output folder that holds files, a gallery larger than the test split): one line, exit 1, nothing written."""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict

import numpy as np
import pytest
from torch import nn

import cnnlab as cl
from cnnlab.engine import History
from cnnlab.explain.data import run_test_split
from cnnlab.explain.graph import Unsupported, engine_stages
from cnnlab.models import registry

pytest_plugins = ["site_support"]


def _one_line(code: int, err: str) -> str:
    """The error line of a refused publish (dataset loaders may print progress before it)."""
    lines = err.strip().splitlines()
    assert code == 1 and lines[-1].startswith("cnnlab publish: error: "), err
    assert sum("error" in line for line in lines) == 1, err
    return lines[-1]


def _nothing_left(parent, name="site") -> None:
    assert not (parent / name).exists()
    assert not [p for p in parent.iterdir() if "publishing" in p.name], "a temporary folder was left behind"


def test_publish_writes_a_site(site_runs, tmp_path, run_cli):
    code, out, err = run_cli(
        "publish", site_runs / "cnn2", site_runs / "resnet_f", "--out", tmp_path / "site", "--gallery", "7"
    )
    assert code == 0, err
    site = tmp_path / "site"
    assert "Wrote" in out and "cnn2, resnet_f" in out
    index = (site / "index.html").read_text()
    assert 'name="cnnlab-site"' in index and '"/static/' not in index and "/docs" not in index
    assert (site / "static" / "engine" / "worker.js").is_file() and (site / ".nojekyll").is_file()
    listing = json.loads((site / "site.json").read_text())
    assert [m["id"] for m in listing["models"]] == ["cnn2", "resnet_f"]
    for run_id in ("cnn2", "resnet_f"):
        folder = site / "models" / run_id
        weights = (folder / "model.safetensors").read_bytes()
        assert (folder / "model.safetensors.sha256").read_text().split()[0] == hashlib.sha256(
            weights
        ).hexdigest()
        doc = json.loads((folder / "model.json").read_text())
        run = cl.load_run(site_runs / run_id)
        assert [s["name"] for s in doc["stages"]] == [n for n, _ in run.model.named_children()]
        split, _ = run_test_split(run.config)
        gallery = np.frombuffer((folder / "gallery.bin").read_bytes(), np.uint8).reshape(7, *run.input_shape)
        np.testing.assert_array_equal(gallery, np.asarray(split.images[:7]))
        assert doc["gallery"]["labels"] == [int(v) for v in np.asarray(split.labels[:7])]
    assert json.loads((site / "models/cnn2/model.json").read_text())["stages"][0]["ops"]["op"] == "normalize"


def test_publish_refuses_an_output_folder_with_files(site_runs, tmp_path, run_cli):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "notes.txt").write_text("mine")
    code, _, err = run_cli("publish", site_runs / "cnn2", "--out", tmp_path / "site")
    assert "already holds files" in _one_line(code, err)
    assert [p.name for p in (tmp_path / "site").iterdir()] == ["notes.txt"]


def test_publish_refuses_a_gallery_larger_than_the_test_split(site_runs, tmp_path, run_cli):
    code, _, err = run_cli(
        "publish", site_runs / "mlp", site_runs / "cnn2", "--out", tmp_path / "site", "--gallery", "5000"
    )
    assert "mlp: --gallery 5000 is larger than its test split" in _one_line(code, err)
    _nothing_left(tmp_path)


def test_publish_refuses_a_damaged_run(site_runs, tmp_path, run_cli):
    import shutil

    shutil.copytree(site_runs / "mlp", tmp_path / "mlp")
    weights = tmp_path / "mlp" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    weights.write_bytes(bytes(data))
    code, _, err = run_cli(
        "publish", site_runs / "cnn2", tmp_path / "mlp", "--out", tmp_path / "site", "--gallery", "5"
    )
    assert "sha256" in _one_line(code, err)
    _nothing_left(tmp_path)


class _Odd(nn.Module):
    def forward(self, x):
        return x * 2


@pytest.fixture
def odd_model():
    """A registered model with a stage whose forward the engine cannot know (removed afterwards)."""

    def build(input_shape, num_classes):
        c, h, w = input_shape
        stages = OrderedDict(
            conv1=nn.Conv2d(c, 4, 3),
            odd=_Odd(),
            flatten=nn.Flatten(),
            output=nn.Linear(4 * (h - 2) * (w - 2), num_classes),
        )
        return nn.Sequential(stages)

    registry.register_model("oddnet_test", description="test only")(build)
    yield "oddnet_test"
    registry._REGISTRY.pop("oddnet_test", None)


def test_publish_refuses_a_stage_the_browser_cannot_run(site_runs, tmp_path, run_cli, odd_model):
    data = cl.load_data(str(site_runs.parent / "data" / "gray16"), image_size=16, channels=1)
    net = cl.create_model(odd_model, input_shape=data.input_shape, num_classes=len(data.classes), seed=0)
    cl.save_run(tmp_path / "odd", net, History(), data=data, config={"model": odd_model})
    with pytest.raises(Unsupported, match="stage 'odd' cannot run in the browser: _Odd"):
        engine_stages(net)
    code, _, err = run_cli(
        "publish", site_runs / "mlp", tmp_path / "odd", "--out", tmp_path / "site", "--gallery", "5"
    )
    assert "odd: stage 'odd' cannot run in the browser" in _one_line(code, err)
    _nothing_left(tmp_path)


def test_engine_stages_name_what_they_cannot_run():
    with pytest.raises(Unsupported, match="stage 'norm'.*LayerNorm"):
        engine_stages(nn.Sequential(OrderedDict(norm=nn.LayerNorm(4))))
    with pytest.raises(Unsupported, match="padding_mode='reflect'"):
        engine_stages(nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"))))
    ops = engine_stages(cl.create_model("resnet_s", seed=0))
    block = next(s for s in ops if s["name"] == "block2")["ops"]
    assert block["op"] == "residual" and block["shortcut"]["op"] == "seq"  # 1x1 projection: widths differ
