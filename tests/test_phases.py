"""The engine's phase marks (benchmarks/profile_phases.py): free when off, exclusive times when on, and
every phase of a real fit() is counted."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cnnlab as cl
from cnnlab.engine.phases import PhaseTimer, phase

ROOT = Path(__file__).resolve().parents[1]


def test_a_mark_outside_a_timer_is_one_shared_no_op():
    assert phase("forward") is phase("backward")  # the same do-nothing context, nothing allocated
    with phase("forward"):
        pass


def test_nested_phases_count_their_time_once():
    with PhaseTimer() as timer:
        t0 = time.perf_counter()
        with phase("outer"):
            time.sleep(0.03)
            with phase("inner"):
                time.sleep(0.05)
            time.sleep(0.02)
        wall = time.perf_counter() - t0
    assert timer.seconds["inner"] == pytest.approx(0.05, abs=0.03)
    assert timer.seconds["outer"] == pytest.approx(0.05, abs=0.03)  # its own 30 + 20 ms, not the inner 50
    assert timer.total() == pytest.approx(wall, abs=0.005)
    assert dict(timer.calls) == {"outer": 1, "inner": 1}
    assert phase("outer") is phase("x")  # the timer is gone after its block


def test_fit_marks_every_phase_of_its_epoch(tiny):
    model = cl.create_model("fastcnn", seed=0)
    with PhaseTimer() as timer:
        cl.fit(model, tiny, epochs=2, batch_size=50, augment_flip="random", progress=True, device="cpu")
    steps = 2 * 4  # 200 images in batches of 50
    for name in ("gather", "augmentation", "forward", "backward"):
        assert timer.calls[name] == steps, name
    assert timer.calls["optimizer"] == 2 * steps  # zero_grad before the forward, the step after backward
    assert timer.calls["evaluation"] == 2  # validation after each epoch
    assert timer.calls["guard"] >= steps and timer.calls["progress"] >= steps
    assert all(timer.seconds[name] > 0 for name in ("forward", "backward", "optimizer", "evaluation"))


@pytest.mark.slow
def test_profile_phases_prints_a_table_and_writes_shares_that_add_up(fmnist_dir, tmp_path):
    out = tmp_path / "phases.json"
    cmd = [sys.executable, str(ROOT / "benchmarks/profile_phases.py"), "--limit", "600", "--device", "cpu"]
    cmd += ["--data-dir", str(fmnist_dir), "--out", str(out), "--set", "compile=false"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "| forward |" in r.stdout and "kernels" in r.stdout  # the table, the machine's kernels named
    record = json.loads(out.read_text())
    shares = [p["share"] for p in record["phases"].values()]
    assert sum(shares) == pytest.approx(1.0, abs=1e-6)
    assert record["steps"] == 3  # 600 images, batch 256 (the last one short)


def test_profile_phases_refuses_an_unknown_option_in_one_line(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks/profile_phases.py"), "--set", "bogus=1"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "--set takes OPTION=VALUE" in r.stderr


def test_the_live_bar_draws_at_updates_with_no_thread_beside_the_step(tiny):
    import io
    import threading

    from cnnlab.engine import Callback, ProgressBar

    class Threads(Callback):
        def on_train_batch_end(self, loop):
            self.names = {type(t).__name__ for t in threading.enumerate()}

    out, seen = io.StringIO(), Threads()
    bar = ProgressBar(stream=out, live=True, every_steps=2)
    cl.fit(
        cl.create_model("fastcnn", seed=0),
        tiny,
        epochs=1,
        batch_size=50,
        callbacks=[bar, seen],
        progress=False,
    )
    assert "_RefreshThread" not in seen.names  # rich's redrawing thread
    assert "epoch 1/1" in out.getvalue()  # the bar's task was drawn, and the epoch's line printed


@pytest.mark.parametrize(
    "env",
    [{"ATEN_CPU_CAPABILITY": "avx2"}, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, {"ATEN_CPU_CAPABILITY": "default"}],
)
def test_kernels_forced_below_avx512_count_as_emulated_bf16(monkeypatch, env):
    from cnnlab.hardware import native_bf16_cpu
    from cnnlab.recipes import get_recipe

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert native_bf16_cpu() is False
    assert get_recipe("fast").settings("cpu")["amp"] == "off"  # the recipe then trains in float32


@pytest.mark.slow
def test_speedrun_peers_names_the_kernels_and_runs_lightning_beside(fmnist_dir, tmp_path):
    pytest.importorskip(
        "lightning_utilities"
    )  # Lightning installed (benchmarks/peers/requirements-lightning.txt)
    out = tmp_path / "peers.json"
    cmd = [sys.executable, str(ROOT / "benchmarks/speedrun_peers.py"), "--peers", "cnnlab,Lightning"]
    cmd += ["--capability", "avx2", "--limit", "600", "--epochs", "1", "--data-dir", str(fmnist_dir)]
    r = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "kernels AVX2, oneDNN AVX2, bf16 emulated" in r.stdout and "| Lightning |" in r.stdout
    record = json.loads(out.read_text())
    assert set(record["results"]) == {"cnnlab", "Lightning"} and record["bf16"] is False


def test_held_memory_and_the_phase_timer_change_no_number(tiny, one_thread):
    import torch

    def trained(hold: bool, timed: bool):
        model = cl.create_model("fastcnn", seed=0)
        with PhaseTimer() if timed else __import__("contextlib").nullcontext():
            h = cl.fit(model, tiny, epochs=2, batch_size=50, hold_memory=hold, progress=False, device="cpu")
        return h.rows, model.state_dict()

    rows0, w0 = trained(True, False)
    for hold, timed in ((False, False), (True, True)):
        rows, w = trained(hold, timed)
        assert [r["loss"] for r in rows] == [r["loss"] for r in rows0]
        assert all(torch.equal(w[k], w0[k]) for k in w0)


@pytest.mark.slow
def test_step_rewrites_benchmark_finds_pool_first_bit_identical():
    script = ROOT / "benchmarks" / "step_rewrites.py"
    r = subprocess.run(
        [sys.executable, str(script), "--rounds", "1", "--steps", "1"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr + r.stdout
    assert "bit-identical to the step as written: True" in r.stdout and "| and BN folded |" in r.stdout
