"""benchmarks/own_data.py: its folders are what it says, and the script runs end to end (tiny, slow-marked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import own_data  # noqa: E402


@pytest.mark.parametrize("name", list(own_data.DATASETS))
def test_each_generated_folder_has_its_classes_and_image_sizes(name, tmp_path):
    maker, _ = own_data.DATASETS[name]
    if name == "handwritten":
        pytest.importorskip("sklearn")  # its bundled UCI scans are the handwriting
    maker(tmp_path / name, 4, np.random.default_rng(0))
    classes = sorted(p.name for p in (tmp_path / name).iterdir())
    expected = {"shapes": ["circle", "square", "triangle"], "photos": sorted(own_data.PHOTOS)}
    assert classes == expected.get(name, [str(d) for d in range(10)])
    sizes = set()
    for c in classes:
        files = sorted((tmp_path / name / c).iterdir())
        assert len(files) == 4
        for f in files:
            with Image.open(f) as im:
                assert im.width == im.height
                sizes.add(im.width)
                arr = np.asarray(im)
            assert arr.std() > 10  # an image with content, not a blank
    low, high = {"shapes": (40, 90), "photos": (48, 96), "digits": (24, 80), "handwritten": (24, 72)}[name]
    assert min(sizes) >= low and max(sizes) <= high and len(sizes) > 1


def test_digits_come_in_both_polarities(tmp_path):
    own_data.make_digits(tmp_path, 12, np.random.default_rng(1))
    means = [np.asarray(Image.open(f)).mean() for f in tmp_path.rglob("*.png")]
    assert min(means) < 80 and max(means) > 170  # light on dark and dark on light


@pytest.mark.slow
def test_the_benchmark_runs_and_writes_its_table(tmp_path):
    out = tmp_path / "own.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "own_data.py"), "--smoke", "--datasets", "shapes"]
    cmd += ["--variant", "fast=--recipe fast", "--no-augment-cost", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [row["variant"] for row in rows] == ["default", "finetune", "fast"]
    for row in (rows[0], rows[2]):
        assert "error" not in row, row
        assert 0 <= row["test_accuracy"] <= 1 and row["wall_s"] > 0 and row["images"] == 30
        assert row["command"].startswith("cnnlab train --data shapes --out R")
    assert "skipped" in rows[1] or "test_accuracy" in rows[1]
    assert "Machine:" in r.stdout and "test acc" in r.stdout
