"""The dataset report names files for folder runs (issue 14): `cnnlab explain RUN` on a tiny folder run
trained here lists its most confidently wrong test images by file, as recorded in the run's splits.json,
in the table, the CSV, report.json and --json; built-in datasets keep split indices; a dataset changed
since training is said; a damaged splits.json is one line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab as cl
from cnnlab.explain.reports import DatasetReport

CLASSES = ("bars", "dots", "plain")


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory) -> Path:
    """A folder of 3 x 10 generated 16x16 images and a one-epoch run on it (a few seconds)."""
    from cnnlab.cli import main

    root = tmp_path_factory.mktemp("report-files")
    rng = np.random.default_rng(0)
    for k, name in enumerate(CLASSES):
        (root / "data" / name).mkdir(parents=True)
        for i in range(10):
            a = rng.integers(0, 60, (16, 16, 3), dtype=np.uint8)
            if k == 0:
                a[::3] = 220
            if k == 1:
                a[4:12, 4:12] = 200
            Image.fromarray(a).save(root / "data" / name / f"{name}_{i:02d}.png")
    args = ["train", "--data", root / "data", "--image-size", 12, "--model", "conv4-pool-dense8",
            "--epochs", 1, "--min-steps", 0, "--out", root / "R"]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    return root / "R"


def test_a_folder_runs_report_names_its_files(folder_run, run_cli, tmp_path):
    test_files = json.loads((folder_run / "splits.json").read_text())["test"]
    code, out, err = run_cli("explain", folder_run, "--out", tmp_path / "o")
    assert code == 0, err
    folder = tmp_path / "o" / "dataset"
    rows = list(csv.DictReader((folder / "confidently_wrong.csv").open()))
    report = json.loads((folder / "report.json").read_text())
    assert len(rows) == len(report["confidently_wrong"]) >= 1  # an epoch on 21 images: some are wrong
    for row, case in zip(rows, report["confidently_wrong"], strict=True):
        assert row["file"] == case["file"] == test_files[int(row["index"])] == test_files[case["index"]]
        assert row["true"] == case["true"] == row["file"].split("/")[0]  # the class folder is the label
    assert "most confidently wrong" in out and rows[0]["file"] in out and report["notes"] == []
    code, out, _ = run_cli("explain", folder_run, "--out", tmp_path / "o2", "--json")
    assert code == 0 and json.loads(out)["confidently_wrong"][0]["file"] == rows[0]["file"]


def test_a_changed_dataset_is_said_and_a_damaged_record_is_one_line(folder_run, run_cli, tmp_path):
    import shutil

    run = tmp_path / "R"
    shutil.copytree(folder_run, run)
    splits = json.loads((run / "splits.json").read_text())
    splits["test"] = splits["test"][::-1]  # as if the folder had been split otherwise
    (run / "splits.json").write_text(json.dumps(splits))
    code, out, err = run_cli("explain", run, "--out", tmp_path / "o")
    assert code == 0, err
    assert "Note: the test split is not the one this run was tested on" in out and "another order" in out
    (run / "splits.json").write_text('{"test": [1, 2]}')
    code, _, err = run_cli("explain", run, "--out", tmp_path / "o2")
    assert code == 1 and "splits.json is damaged" in err and len(err.strip().splitlines()) == 1


def test_built_in_datasets_keep_indices_and_a_split_with_files_is_named():
    labels = np.array([0, 1, 1, 0])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]], dtype=np.float32)
    wrong = DatasetReport(["a", "b"], labels, probs).confidently_wrong()
    assert [(w["index"], w["file"]) for w in wrong] == [(1, None), (3, None)]
    model = cl.create_model("conv4-pool-dense8", input_shape=(1, 12, 12), num_classes=2, seed=0)
    files = ("a/0.png", "b/1.png", "b/2.png", "a/3.png")
    split = cl.data.Split(
        torch.randint(0, 256, (4, 1, 12, 12), dtype=torch.uint8), torch.from_numpy(labels), files
    )
    rep = cl.explain.dataset_report(model, split, classes=["a", "b"], recorded_files=files)
    assert rep.notes == [] and all(w["file"] == files[w["index"]] for w in rep.confidently_wrong())
    moved = cl.explain.dataset_report(model, split, classes=["a", "b"], recorded_files=["a/0.png", "c/9.png"])
    assert "3 new and 1 missing files" in moved.notes[0]
