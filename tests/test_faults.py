"""Faults: a non-finite loss, Ctrl-C/SIGTERM (once and twice), a full disk or unwritable run folder.
Each stops clearly and leaves the last good checkpoint intact."""

from __future__ import annotations

import errno
import json
import os
import signal
import time

import pytest
import torch

import cnnlab as cl
from cnnlab.engine import checkpoint as ckpt_module
from cnnlab.engine.checkpoint import CheckpointError, list_checkpoints, load_checkpoint, step_of
from cnnlab.engine.signals import GracefulStop, Interrupted
from cnnlab.engine.snapshot import Checkpointer
from cnnlab.errors import NonFiniteLossError

MODEL = "conv8-pool-dense16-drop.5"  # dropout: the RNG state matters


pytestmark = pytest.mark.usefixtures("one_thread")  # bit-exact comparisons


def fit(model, data, **kw):
    kw = {
        "epochs": 2,
        "batch_size": 50,
        "progress": False,
        "augment_translate": 1,
        "augment_flip": "random",
        **kw,
    }
    return cl.fit(model, data, **kw)


def at_training_call(model, k: int, action):
    """Run ``action(output)`` in the model's k-th training-mode forward (1-based, i.e. at step k)."""
    calls = []

    def hook(module, inputs, output):
        if module.training:
            calls.append(1)
            if len(calls) == k:
                return action(output)
        return None

    return model.register_forward_hook(hook)


def test_non_finite_loss_at_step_k_stops_at_k_keeps_last_checkpoint_and_reports(tiny, tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    model = cl.create_model(MODEL, seed=0)
    at_training_call(model, 6, lambda out: out * float("nan"))
    with pytest.raises(NonFiniteLossError, match="epoch 2, step 2") as err:
        fit(model, tiny, checkpoints=Checkpointer(folder, every=1))
    assert err.value.exit_code == 3
    report = json.loads((tmp_path / "run" / "nonfinite_loss.json").read_text())
    assert report["global_step"] == 6 and report["step"] == 2 and report["epoch"] == 2
    assert report["loss"] == "nan" and report["lr"] == 1e-3 and len(report["batch_indices"]) == 50
    last = load_checkpoint(list_checkpoints(folder)[0])  # verifies
    assert last.step == 5 and report["last_good_checkpoint"] == str(last.path)
    # stopped before the bad step touched the weights: the model still equals the last checkpoint
    assert all(torch.equal(v, last.model[k]) for k, v in model.state_dict().items())


def test_non_finite_loss_on_the_command_line_exits_3(run_cli, fmnist_dir, tmp_path):
    out = tmp_path / "run"
    code, _, err = run_cli(
        "train", "--model", "conv8-pool-dense16", "--lr", "1e30", "--limit", "300", "--epochs", "1",
        "--threads", "1", "--quiet", "--data-dir", fmnist_dir, "--out", out,
    )  # fmt: skip
    assert code == 3 and "loss became nan" in err and len(err.strip().splitlines()) == 1
    assert json.loads((out / "nonfinite_loss.json").read_text())["error"] == "non-finite loss"


def test_sigint_finishes_the_step_saves_and_resume_matches_uninterrupted(tiny, tmp_path):
    reference = cl.create_model(MODEL, seed=0)
    expected = fit(reference, tiny)

    folder = tmp_path / "checkpoints"
    model = cl.create_model(MODEL, seed=0)
    at_training_call(model, 6, lambda out: os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(Interrupted, match="SIGINT: stopped after epoch 2, step 2") as err:
        fit(model, tiny, checkpoints=Checkpointer(folder, every=0))
    assert err.value.exit_code == 130
    assert [step_of(p) for p in list_checkpoints(folder)] == [6, 4]  # step 6 itself was finished, then saved

    resumed = cl.create_model(MODEL, seed=1)  # other initial weights: all must come from the checkpoint
    got = fit(resumed, tiny, resume=load_checkpoint(list_checkpoints(folder)[0]))
    for k, v in reference.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in expected.rows]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in got.rows] == strip


def test_a_second_signal_stops_at_once_without_saving(tiny, tmp_path):
    folder = tmp_path / "checkpoints"
    model = cl.create_model(MODEL, seed=0)

    def twice(out):
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)

    at_training_call(model, 3, twice)
    with pytest.raises(Interrupted, match="SIGTERM again: stopped at once") as err:
        fit(model, tiny, checkpoints=Checkpointer(folder, every=1))
    assert err.value.exit_code == 143
    assert step_of(list_checkpoints(folder)[0]) == 2  # step 3 was not finished, nothing more saved


def test_graceful_stop_handlers_debounce_and_restore():
    before = signal.getsignal(signal.SIGINT)
    with GracefulStop(debounce=5.0) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # a launcher forwarding the same Ctrl-C: one request
        time.sleep(0.01)
        assert stop.signum == signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_full_disk_or_no_permission_fails_clearly_and_keeps_the_last_checkpoint(
    tiny, tmp_path, monkeypatch, code
):
    folder = tmp_path / "checkpoints"
    real, writes = ckpt_module._write_file, []

    def failing(path, data):
        writes.append(path)
        if len(writes) == 10:  # the 3rd checkpoint's 2nd file
            raise OSError(code, os.strerror(code), str(path))
        real(path, data)

    monkeypatch.setattr(ckpt_module, "_write_file", failing)
    with pytest.raises(CheckpointError, match=os.strerror(code)) as err:
        fit(cl.create_model(MODEL, seed=0), tiny, checkpoints=Checkpointer(folder, every=1))
    assert "earlier checkpoints are untouched" in str(err.value)
    assert [step_of(p) for p in list_checkpoints(folder)] == [2, 1]
    load_checkpoint(list_checkpoints(folder)[0])  # still verifies
    assert sorted(p.name for p in folder.iterdir()) == ["step-000000001", "step-000000002"]  # no temp left


def test_unwritable_run_folder_fails_before_training(run_cli, fmnist_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = run_cli("train", "--model", "mlp", "--data-dir", fmnist_dir, "--out", blocker / "run")
    assert code == 1 and "Cannot write checkpoints" in err and len(err.strip().splitlines()) == 1
