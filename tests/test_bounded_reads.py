"""Issue 22, part 2: everything read from a run folder or a checkpoint is bounded and checked before it
costs. The weights' safetensors header is capped in size and entries and must describe exactly the data
the file holds; the model config.json describes is checked against it (shapes only) before it is built;
checkpoint files are regular files of the size their manifest records; set-aside folders are real
folders inside the run; a run that fails to load fails once."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import cnnlab as cl
from cnnlab.engine.checkpoint import CheckpointError, load_checkpoint, write_checkpoint
from cnnlab.engine.snapshot import Checkpointer
from cnnlab.errors import RunFileError
from cnnlab.run.folder import load_run

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture
def run(tmp_path) -> Path:
    from cnnlab.engine.history import History

    model = cl.create_model("conv4-pool-dense8", input_shape=(1, 16, 16), num_classes=3, seed=0)
    config = {"model": "conv4-pool-dense8", "input_shape": [1, 16, 16], "classes": ["a", "b", "c"]}
    with pytest.warns(UserWarning, match="no dataset recorded"):
        return cl.save_run(tmp_path / "run", model, History(), config=config)


def _timed(fn, limit: float = 10.0):
    """fn() in a thread: (seconds, what it raised), or a hang after ``limit`` seconds."""
    box: dict = {}

    def go():
        t0 = time.perf_counter()
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - the caller checks what was raised
            box["error"] = exc
        box["seconds"] = time.perf_counter() - t0

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(limit)
    assert not t.is_alive(), f"still running after {limit} s"
    return box["seconds"], box.get("error")


def _header_file(path: Path, header: dict, data: bytes = b"") -> None:
    head = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(head)) + head + data)


def test_a_header_of_many_entries_is_refused_before_it_is_parsed(run):
    # issue 22: a header of 10^6 entries held the interpreter lock 4.4 s inside safetensors
    entries = {f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(300_000)}
    _header_file(run / "model.safetensors", entries)
    seconds, error = _timed(lambda: load_run(run, verify=False))
    assert isinstance(error, RunFileError) and "header of" in str(error), error
    assert seconds < 0.5, seconds


def test_a_header_of_too_many_tensors_is_refused(run):
    entries = {f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(20_001)}
    _header_file(run / "model.safetensors", entries)
    with pytest.raises(RunFileError, match="20,001 tensors, over the limit"):
        load_run(run, verify=False)


def test_a_header_claiming_more_data_than_the_file_holds_is_refused(run):
    _header_file(
        run / "model.safetensors", {"w": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}
    )
    with pytest.raises(RunFileError, match="describes 4,000 bytes of data, the file holds 0"):
        load_run(run, verify=False)


@pytest.mark.slow  # several seconds: fresh interpreters or real training
def test_a_model_larger_than_its_weights_is_refused_before_it_is_built(tmp_path):
    # issue 22: "flatten-dense65536" on [1, 174, 174] made `eval` take 99 s and 8.1 GB; here a smaller
    # one (1 GB of float32 if built) in a process of its own, whose peak memory is measured
    folder = tmp_path / "huge"
    folder.mkdir()
    config = {"model": "flatten-dense4096", "input_shape": [1, 256, 256], "classes": ["a", "b"]}
    (folder / "config.json").write_text(json.dumps(config))
    save_file({"output.weight": torch.zeros(2, 4)}, folder / "model.safetensors")
    code = (
        "import resource, sys, time\n"
        "from cnnlab.run.folder import load_run\n"
        "from cnnlab.errors import RunFileError\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "t0 = time.perf_counter()\n"
        "try:\n"
        f"    load_run({str(folder)!r}, verify=False)\n"
        "except RunFileError as exc:\n"
        "    print('refused', exc)\n"
        "grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base\n"
        "print(f'grew {grew} seconds {time.perf_counter() - t0:.2f}')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": SRC}
    )
    assert "refused" in out.stdout and "does not match model" in out.stdout, out.stdout + out.stderr
    grew_kib = int(out.stdout.split("grew ")[1].split()[0])
    assert grew_kib < 200_000, out.stdout  # the model (268M parameters, 1 GB) was never allocated


@pytest.fixture
def checkpoints(tmp_path) -> Path:
    folder = tmp_path / "run" / "checkpoints"
    model = {"w": torch.arange(6.0).reshape(2, 3)}
    for step in (1, 2):
        write_checkpoint(folder, step, model, {"position": {"global_step": step}})
    return folder


@pytest.mark.parametrize("name", ["manifest.json", "model.safetensors", "state.json"])
@pytest.mark.parametrize("target", ["/dev/zero", "fifo"])
def test_checkpoint_files_are_regular_files_only(checkpoints, name, target, tmp_path):
    # issue 22: a manifest.json or model.safetensors linked to /dev/zero: 3 GB RSS and climbing; a FIFO
    # manifest hung over 120 s
    if target == "fifo":
        os.mkfifo(tmp_path / "fifo")
        target = str(tmp_path / "fifo")
    victim = checkpoints / "step-000000002" / name
    victim.unlink()
    victim.symlink_to(target)
    seconds, error = _timed(lambda: load_checkpoint(victim.parent))
    assert isinstance(error, CheckpointError), error
    assert "not a regular file" in str(error) and seconds < 1.0, (seconds, error)


def test_a_manifest_over_its_cap_is_refused_unread(checkpoints):
    (checkpoints / "step-000000002" / "manifest.json").write_bytes(b" " * (1 << 20))
    with pytest.raises(CheckpointError, match="over the 64 KiB limit"):
        load_checkpoint(checkpoints / "step-000000002")


def test_a_checkpoint_link_is_not_a_checkpoint(checkpoints, tmp_path):
    from cnnlab.engine.checkpoint import list_checkpoints

    outside = tmp_path / "elsewhere"
    shutil.move(checkpoints / "step-000000002", outside)
    (checkpoints / "step-000000009").symlink_to(outside)
    assert [d.name for d in list_checkpoints(checkpoints)] == ["step-000000001"]


@pytest.mark.parametrize("aside", ["discarded", "superseded"])
def test_set_aside_folders_must_be_real_folders_inside_the_run(checkpoints, tmp_path, aside):
    # issue 22: a `checkpoints/discarded` that is a symlink moved a corrupt checkpoint outside the run
    outside = tmp_path / "outside"
    outside.mkdir()
    (checkpoints / aside).symlink_to(outside)
    if aside == "discarded":  # a corrupt newer checkpoint is discarded; a valid one superseded
        (checkpoints / "step-000000002" / "state.json").write_text("{}")
    with pytest.raises(CheckpointError, match=f"{aside} is a link"):
        Checkpointer(checkpoints).begin(1)
    assert list(outside.iterdir()) == []
    assert (checkpoints / "step-000000002").is_dir()


def test_a_run_that_fails_to_load_fails_once_per_file_version(run, tmp_path):
    # issue 22: failures were not cached; every request rebuilt the model and failed again
    from cnnlab.web.registry import RunRegistry, Unavailable

    shutil.copytree(run, tmp_path / "runs" / "r")
    folder = tmp_path / "runs" / "r"
    good = (folder / "model.safetensors.sha256").read_text()
    (folder / "model.safetensors.sha256").write_text("0" * 64 + "  model.safetensors\n")
    registry = RunRegistry(tmp_path / "runs")
    with pytest.raises(Unavailable, match="does not match its recorded sha256"):
        registry.run("r")
    (folder / "model.safetensors.sha256").write_text(good)  # not one of the files the signature covers
    with pytest.raises(Unavailable, match="does not match its recorded sha256"):
        registry.run("r")  # the remembered failure: nothing was read again
    config = folder / "config.json"
    config.write_text(config.read_text() + "\n")  # a new version of the run's files: tried again
    registry.runs(refresh=True)
    assert registry.run("r").classes == ["a", "b", "c"]
