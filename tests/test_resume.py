"""Exact resume: `cnnlab train` processes killed with SIGKILL at random steps (and stopped with SIGTERM),
resumed with --resume auto, end bit-identical to one uninterrupted run.

The processes are real (`python -m cnnlab train`, killed from outside), started from a forkserver that has
torch and cnnlab imported already, so each start costs a fork instead of a 5-second import.
"""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cnnlab.engine.checkpoint import list_checkpoints, load_checkpoint, step_of

PRELOAD = ["cnnlab.cli", "cnnlab.experiment", "cnnlab.plots", "torch._dynamo", "safetensors.torch"]


def _cli(argv: list[str], env: dict) -> None:
    """In the child: what `python -m cnnlab ARGV` does (exit code included)."""
    os.environ.update(env)
    from cnnlab.cli import main

    sys.exit(main(argv))


@pytest.fixture(scope="session")
def forkserver():
    """A multiprocessing context whose processes fork from a server with torch and cnnlab imported."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


@pytest.fixture(scope="session")
def cnnlab_process(forkserver):
    """`cnnlab_process(*argv, env={})` -> a started multiprocessing.Process running `cnnlab ARGV`."""

    def start(*argv, env: dict | None = None) -> mp.Process:
        p = forkserver.Process(target=_cli, args=([str(a) for a in argv], env or {}), daemon=True)
        p.start()
        return p

    return start


def train_args(fmnist_dir, out: Path, *extra) -> list:
    """A small deterministic run with dropout, random flips, shifts and a one-cycle schedule:
    400 training images, batch 25 -> 16 steps per epoch, 3 epochs, a checkpoint after every step."""
    return [
        "train",
        "--model",
        "conv8-pool-dense16-drop.5",
        "--data-dir",
        fmnist_dir,
        "--limit",
        "400",
        "--epochs",
        "3",
        "--batch-size",
        "25",
        "--schedule",
        "onecycle",
        "--augment-flip",
        "random",
        "--augment-translate",
        "1",
        "--checkpoint-every",
        "1",
        "--keep",
        "2",
        "--threads",
        "1",
        "--deterministic",
        "--quiet",
        "--json",
        "--out",
        out,
        *extra,
    ]


TOTAL_STEPS = 48


def newest_step(run: Path) -> int:
    found = list_checkpoints(run / "checkpoints")
    return step_of(found[0]) if found else 0


def metrics_without_seconds(run: Path) -> list[dict]:
    """metrics.csv, every column but `seconds` (wall time, which no rerun can repeat)."""
    with open(run / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def assert_same_run(a: Path, b: Path, steps: int = TOTAL_STEPS) -> None:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), "final weights differ"
    assert metrics_without_seconds(a) == metrics_without_seconds(b)
    ca, cb = (
        load_checkpoint(list_checkpoints(a / "checkpoints")[0]),
        load_checkpoint(list_checkpoints(b / "checkpoints")[0]),
    )
    assert ca.step == cb.step == steps
    sa, sb = ca.state, cb.state
    for key in ("optimizer", "schedule", "callbacks", "ranks"):
        assert _equal(sa[key], sb[key]), key


def _equal(x, y) -> bool:
    if isinstance(x, torch.Tensor):
        return isinstance(y, torch.Tensor) and x.dtype == y.dtype and torch.equal(x, y)
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(_equal(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)):
        return type(x) is type(y) and len(x) == len(y) and all(map(_equal, x, y))
    return x == y


@pytest.fixture(scope="module")
def reference(cnnlab_process, fmnist_dir, tmp_path_factory) -> Path:
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("resume") / "reference"
    p = cnnlab_process(*train_args(fmnist_dir, out))
    p.join(120)
    assert p.exitcode == 0
    return out


@pytest.mark.slow  # ten killed processes: ~11 s
def test_kill_9_at_ten_random_steps_then_resume_is_bit_identical(
    cnnlab_process, fmnist_dir, tmp_path, reference
):
    out = tmp_path / "killed"
    rng = random.Random(6)
    kills = []
    while len(kills) < 10:
        done = newest_step(out)
        if done >= TOTAL_STEPS - 1:
            break
        target = min(done + rng.randint(1, 4), TOTAL_STEPS - 1)
        p = cnnlab_process(*train_args(fmnist_dir, out, "--resume", "auto"))
        deadline = time.monotonic() + 120
        while p.is_alive() and newest_step(out) < target and time.monotonic() < deadline:
            time.sleep(0.002)
        if p.is_alive():
            os.kill(p.pid, signal.SIGKILL)  # anywhere: mid-step, mid-checkpoint-write, ...
            kills.append(newest_step(out))
        p.join(30)
        assert p.exitcode in (0, -signal.SIGKILL)
    assert len(kills) == 10, kills
    p = cnnlab_process(*train_args(fmnist_dir, out, "--resume", "auto"))
    p.join(120)
    assert p.exitcode == 0
    assert_same_run(reference, out)
    assert not [d for d in (out / "checkpoints").iterdir() if d.name.startswith((".tmp", ".old"))]


def test_sigterm_finishes_the_step_saves_exits_143_and_resumes_exactly(
    cnnlab_process, fmnist_dir, tmp_path, reference
):
    out = tmp_path / "stopped"
    p = cnnlab_process(*train_args(fmnist_dir, out, "--checkpoint-every", "0"))
    deadline = time.monotonic() + 120
    while p.is_alive() and newest_step(out) < 16 and time.monotonic() < deadline:  # epoch 1 ended
        time.sleep(0.002)
    time.sleep(0.01)  # most likely mid-epoch 2 now; with --checkpoint-every 0 only SIGTERM saves there
    os.kill(p.pid, signal.SIGTERM)
    p.join(60)
    assert p.exitcode == 143
    assert 16 <= newest_step(out) < TOTAL_STEPS
    p = cnnlab_process(*train_args(fmnist_dir, out, "--resume", "auto"))
    p.join(120)
    assert p.exitcode == 0
    assert_same_run(reference, out)


def test_same_seed_same_weights_other_seed_not(cnnlab_process, fmnist_dir, tmp_path, reference):
    out = tmp_path / "seed1"
    p = cnnlab_process(*train_args(fmnist_dir, out, "--seed", "1", "--checkpoint-every", "0"))
    p.join(120)
    assert p.exitcode == 0
    a, b = load_file(reference / "model.safetensors"), load_file(out / "model.safetensors")
    assert not all(torch.equal(a[k], b[k]) for k in a)
    env = json.loads((reference / "env.json").read_text())  # --deterministic --threads 1, recorded
    assert env["deterministic"] and env["deterministic_algorithms"] and env["torch_threads"] == 1
    assert env["seeded"] == ["python", "numpy", "torch"] and env["seed"] == 0 and env["world_size"] == 1


@pytest.mark.parametrize(
    "ema",
    [
        None,
        0.9,
    ],
)
def test_resume_from_any_step_with_ema_early_stopping_and_schedule(fmnist_small, tmp_path, ema):
    """In-process: resuming from the checkpoint of any step (mid-epoch or an epoch's end) ends exactly
    where the run that wrote it ended, EMA weights and early-stopping state included."""
    import dataclasses

    import cnnlab as cl
    from cnnlab.engine import EarlyStopping
    from cnnlab.engine.snapshot import Checkpointer

    d = fmnist_small
    data = dataclasses.replace(d, train=d.train.head(200), val=d.val.head(100))

    def run(resume=None, folder=None):
        # two convs: the second weight is (8, 4, 3, 3), whose channels_last strides differ from contiguous
        model = cl.create_model("conv4-conv8-pool-dense16-drop.5", seed=0 if resume is None else 5)
        history = cl.fit(
            model,
            data,
            epochs=3,
            batch_size=50,
            schedule="onecycle",
            ema=ema,
            channels_last=True,  # the optimizer's moments must come back in the weights' layout
            augment_translate=1,
            augment_flip="random",
            augment_erasing=0.5,
            callbacks=[EarlyStopping(patience=1)],
            progress=False,
            checkpoints=Checkpointer(folder, every=1, keep=100) if folder else None,
            resume=resume,
        )
        return model.state_dict(), [{k: v for k, v in r.items() if k != "seconds"} for r in history.rows]

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        weights, rows = run(folder=tmp_path)
        for k in (4, 6):  # an epoch's end, mid-epoch
            w, r = run(resume=load_checkpoint(tmp_path / f"step-{k:09d}"))
            assert r == rows, k
            assert all(torch.equal(v, w[name]) for name, v in weights.items()), k
    finally:
        torch.set_num_threads(n)


def _python_cnnlab(*argv, timeout=120, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cnnlab", *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


@pytest.mark.slow  # several seconds: fresh interpreters or real training
def test_resume_auto_needs_only_the_run_folder_and_ctrl_c_prints_the_command(fmnist_dir, tmp_path, reference):
    """A run started with many flags, stopped by SIGTERM, continues with `--resume auto --out RUN` alone:
    data, model, recipe and options come from the run's checkpoints, and the result is the same run."""
    out = tmp_path / "my run"  # a space: the printed command must quote it
    p = _python_cnnlab(*train_args(fmnist_dir, out, "--checkpoint-every", "0"))
    deadline = time.monotonic() + 120
    while p.poll() is None and newest_step(out) < 16 and time.monotonic() < deadline:
        time.sleep(0.002)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143, err
    assert f"continue with `cnnlab train --resume auto --out '{out}'`" in err
    step = newest_step(out)
    # a flag that would change what is trained is refused, naming it; one that may change is taken
    bad = _python_cnnlab("train", "--resume", "auto", "--out", out, "--model", "cnn2")
    _, err = bad.communicate(timeout=60)
    assert bad.returncode == 1 and "--model 'conv8-pool-dense16-drop.5' -> 'cnn2'" in err
    assert newest_step(out) == step
    q = _python_cnnlab("train", "--resume", "auto", "--out", out, "--threads", "1")
    stdout, err = q.communicate(timeout=120)
    assert q.returncode == 0, err
    assert stdout.splitlines()[0] == f"resuming {out} from step {step:,} of {TOTAL_STEPS}"
    assert_same_run(reference, out)
