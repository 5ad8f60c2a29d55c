"""--tensorboard: the callback's event files read back, training unchanged by it, and the missing package."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import cnnlab as cl
from cnnlab.config import TrainConfig
from cnnlab.engine.tensorboard import TensorBoard, image_grid, run_callbacks
from cnnlab.errors import CnnlabError

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def test_logs_every_step_every_epoch_misclassified_images_and_hparams(tiny, tmp_path, one_thread):
    weights = {}
    for logged in (False, True):
        model = cl.create_model("cnn2", seed=0)
        tb = [
            TensorBoard(
                tmp_path / "tb", val=tiny.val, classes=tiny.classes, hparams={"lr": 1e-3, "model": "cnn2"}
            )
        ]
        cl.fit(model, tiny, epochs=2, batch_size=50, progress=False, callbacks=tb if logged else [])
        weights[logged] = model.state_dict()
    assert all(torch.equal(weights[False][k], weights[True][k]) for k in weights[False])  # a view, no effect
    acc = event_accumulator.EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert [e.step for e in acc.Scalars("step/loss")] == list(range(1, 9))  # 4 steps x 2 epochs
    assert len(acc.Scalars("step/lr")) == 8
    assert [e.step for e in acc.Scalars("epoch/val_loss")] == [1, 2]
    assert {"epoch/loss", "epoch/accuracy", "epoch/val_accuracy", "epoch/lr"} <= set(tags["scalars"])
    assert "val/misclassified" in tags["images"]  # an untrained-ish net misclassifies plenty
    hparams = acc.PluginTagToContent("hparams")  # the run's hyper-parameters, with its final metrics
    assert "_hparams_/session_start_info" in hparams and b"cnn2" in hparams["_hparams_/session_start_info"]


def test_image_grid_tiles_in_rows():
    x = np.arange(5, dtype=np.uint8)[:, None, None, None] * np.ones((5, 3, 4, 4), dtype=np.uint8)
    grid = image_grid(x, columns=2, gap=1)
    assert grid.shape == (3, 3 * 4 + 2, 2 * 4 + 1)
    assert grid[0, 5, 5] == 3 and grid[0, 10, 0] == 4 and grid[0, 10, 5] == 0  # the 5th alone on row 3


def test_missing_package_is_one_line_and_no_out_is_refused(monkeypatch, tiny, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    with pytest.raises(
        CnnlabError, match=r"needs the tensorboard package: pip install 'cnnlab\[tensorboard\]'"
    ):
        TensorBoard(tmp_path / "tb")
    cfg = TrainConfig(tensorboard=True)
    with pytest.raises(CnnlabError, match="give --out"):
        run_callbacks(cfg, None, tiny)
    assert run_callbacks(TrainConfig(), None, tiny) == []
