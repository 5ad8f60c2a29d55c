"""Checkpoint files: round trip, atomic writes, pruning, corruption caught fast, pickles refused unrun,
config mismatches refused with the keys named."""

from __future__ import annotations

import dataclasses
import pickle
import random
import shutil
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import cnnlab as cl
from cnnlab.engine.checkpoint import (
    FILES,
    MANIFEST,
    CheckpointError,
    decode,
    encode,
    find_latest,
    list_checkpoints,
    load_checkpoint,
    prune,
    verify,
    write_checkpoint,
)
from cnnlab.engine.snapshot import Checkpointer


@pytest.fixture
def two_checkpoints(tiny, tmp_path, one_thread) -> Path:
    """A real training state, checkpointed after each of 4 steps; the newest two are kept."""
    folder = tmp_path / "checkpoints"
    model = cl.create_model("conv8-pool-dense16", seed=0)
    cl.fit(
        model,
        tiny,
        epochs=1,
        batch_size=50,
        progress=False,
        checkpoints=Checkpointer(folder, every=1, keep=2),
    )
    assert [p.name for p in list_checkpoints(folder)] == ["step-000000004", "step-000000003"]
    return folder


def test_encode_decode_round_trip():
    state = {
        "tuple": (0.9, 0.999),
        "by_param": {0: {"step": torch.tensor(3.0), "m": torch.randn(2, 3)}, 1: {}},
        "floats": [float("inf"), -float("inf"), 1e-300, 0.1],
        "half": torch.randn(4).to(torch.bfloat16),
        "ints": torch.arange(5),
        "$odd": None,
        "nested": [{"a": None, "b": True, "c": "x"}],
    }
    tensors = {}
    back = decode(encode(state, tensors), tensors)
    assert back["tuple"] == (0.9, 0.999) and list(back["by_param"]) == [0, 1] and "$odd" in back
    assert back["floats"] == state["floats"] and back["nested"] == state["nested"]
    for a, b in [(back["half"], state["half"]), (back["by_param"][0]["m"], state["by_param"][0]["m"])]:
        assert a.dtype == b.dtype and torch.equal(a, b)
    with pytest.raises(TypeError, match="cannot store"):
        encode({"f": print}, {})
    with pytest.raises(CheckpointError, match="unknown"):
        decode({"$exec": "print(1)"}, {})


def test_write_is_atomic_replaces_and_round_trips(tmp_path):
    w = {"w": torch.randn(3, 3)}
    path = write_checkpoint(tmp_path, 7, w, {"x": 1}, epoch_end=2)
    write_checkpoint(tmp_path, 7, w, {"x": 2})  # the same step again: swapped in whole
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp folder left behind
    ckpt = load_checkpoint(path)
    assert ckpt.step == 7 and ckpt.epoch_end is None and ckpt.state == {"x": 2}
    assert torch.equal(ckpt.model["w"], w["w"])
    assert sorted(p.name for p in path.iterdir()) == sorted([*FILES, MANIFEST])


def test_prune_keeps_newest_k_and_the_best_epoch(tmp_path):
    for step, epoch_end in [(10, 1), (15, None), (20, 2), (25, None), (30, 3)]:
        write_checkpoint(tmp_path, step, {}, {}, epoch_end=epoch_end)
    prune(tmp_path, keep=2, best_epoch=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "step-000000030",
        "step-000000025",
        "step-000000010",
    ]


@pytest.mark.parametrize("damage", ["truncate", "bitflip"])
def test_50_damaged_checkpoints_each_detected_under_1s_and_auto_falls_back(two_checkpoints, damage):
    newest, previous = list_checkpoints(two_checkpoints)
    files = [*FILES, MANIFEST]
    originals = {f: (newest / f).read_bytes() for f in files}
    rng = random.Random(damage)
    for trial in range(50):
        name = files[trial % len(files)]
        data = bytearray(originals[name])
        if damage == "truncate":
            data = data[: rng.randrange(len(data))]
        else:
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        (newest / name).write_bytes(bytes(data))
        t0 = time.perf_counter()
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(newest)
        assert time.perf_counter() - t0 < 1.0
        assert newest.name in str(err.value) and "\n" not in str(err.value)
        ckpt, notes = find_latest(two_checkpoints)
        assert ckpt.path == previous and len(notes) == 1 and newest.name in notes[0]
        (newest / name).write_bytes(originals[name])
    assert load_checkpoint(newest).step == 4  # undamaged again


class Payload:
    """Unpickling this creates a marker file: stands for any code a crafted pickle could run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_crafted_pickles_are_refused_and_never_run(tmp_path, run_cli, two_checkpoints):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"model": Payload(marker)})
    pickle.loads(evil)  # the payload is live: unpickling runs it
    assert marker.exists()
    marker.unlink()

    plain = tmp_path / "checkpoint.pt"
    plain.write_bytes(evil)
    zipped = tmp_path / "torch_save.pt"
    torch.save({"model": Payload(marker)}, zipped)  # torch.save's zip container around a pickle
    for f in (plain, zipped):
        with pytest.raises(CheckpointError, match="pickle .*never unpickles"):
            load_checkpoint(f)

    # a folder that looks like a checkpoint, holding only a pickle: passed over by auto
    fake = two_checkpoints / "step-000000099"
    fake.mkdir()
    shutil.copy(plain, fake / "checkpoint.pt")
    ckpt, notes = find_latest(two_checkpoints)
    assert ckpt.step == 4 and "manifest.json is missing" in notes[0]
    shutil.rmtree(fake)

    # a forged checkpoint whose manifest vouches for pickled files: the parsers reject them
    forged = two_checkpoints / "step-000000100"
    for target in ("model.safetensors", "state.json"):
        shutil.copytree(list_checkpoints(two_checkpoints)[-1], forged)
        (forged / target).write_bytes(evil)
        _reseal(forged)
        verify(forged)  # hashes match: the attacker controls the manifest too
        with pytest.raises(CheckpointError, match="not valid"):
            load_checkpoint(forged)
        shutil.rmtree(forged)

    code, _, err = run_cli(
        "train", "--model", "mlp", "--resume", plain, "--out", tmp_path / "run", "--epochs", "1"
    )
    assert code == 1 and "pickle" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists()


def _reseal(folder: Path, **manifest) -> None:
    """Make ``folder``'s manifest vouch for its files as they are now (what a forger can do), naming the
    folder's own step unless ``manifest`` says otherwise."""
    import hashlib
    import json

    from cnnlab.engine.checkpoint import _digest, step_of

    m = json.loads((folder / MANIFEST).read_bytes())
    m.update({"step": step_of(folder), **manifest})
    for name in FILES:
        data = (folder / name).read_bytes()
        m["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    m.pop("sha256")
    m["sha256"] = _digest(m)
    (folder / MANIFEST).write_text(json.dumps(m))


def test_resume_refuses_a_different_config_naming_keys_unless_forced(tiny, tmp_path, one_thread):
    out = tmp_path / "run"
    cfg = cl.TrainConfig(model="conv8-pool-dense16", epochs=1, batch_size=50, threads=1, checkpoint_every=2)
    first = cl.train(cfg, out=out, data=tiny, progress=False)
    changed = dataclasses.replace(cfg, lr=0.01, batch_size=40, epochs=2, keep=5)  # keep may change
    with pytest.raises(CheckpointError, match=r"batch_size 50 -> 40; epochs 1 -> 2; lr 0\.001 -> 0\.01\. "):
        cl.train(changed, out=out, data=tiny, progress=False, resume="auto")
    forced = cl.train(changed, out=out, data=tiny, progress=False, resume="auto", force=True)
    assert forced.history.epochs == 2 and forced.history.rows[0] == first.history.rows[0]
    with pytest.raises(cl.CnnlabError, match="already holds a run"):
        cl.train(cfg, out=out, data=tiny, progress=False)  # no silent overwrite without --resume


def _checkpointed_training(out: Path, data_dir: Path, epochs: int) -> list:
    """`cnnlab train` arguments for a tiny real run with a checkpoint after every step."""
    args = ["train", "--model", "conv8-pool-dense16", "--limit", "200", "--epochs", str(epochs)]
    args += ["--batch-size", "50", "--checkpoint-every", "1", "--threads", "1", "--quiet"]
    return [*args, "--data-dir", data_dir, "--out", out]


def test_auto_passes_over_a_corrupt_newest_checkpoint_with_a_note(run_cli, fmnist_dir, tmp_path):
    out = tmp_path / "run"
    args = _checkpointed_training(out, fmnist_dir, epochs=2)
    code, _, err = run_cli(*args)
    assert code == 0, err
    finished = load_file(out / "model.safetensors")
    newest = list_checkpoints(out / "checkpoints")[0]
    data = bytearray((newest / "state.safetensors").read_bytes())
    data[len(data) // 2] ^= 0x10
    (newest / "state.safetensors").write_bytes(bytes(data))
    code, _, err = run_cli(*args, "--resume", "auto")
    assert code == 0, err
    assert err.splitlines() == [
        f"cnnlab: skipping checkpoint {newest.name}: {newest / 'state.safetensors'} is corrupt "
        "(sha256 does not match the manifest)"
    ]
    redone = load_file(out / "model.safetensors")  # (compared as tensors: safetensors orders metadata freely)
    assert all(
        torch.equal(redone[k], v) for k, v in finished.items()
    )  # the last step, redone, came out the same
    assert [p.name for p in (out / "checkpoints" / "discarded").iterdir()][0].startswith(newest.name)


def _forge_state(folder: Path, **position) -> None:
    import json

    state = json.loads((folder / "state.json").read_bytes())
    state["position"].update(position)
    (folder / "state.json").write_text(json.dumps(state))


def test_forged_steps_are_corrupt(two_checkpoints, tmp_path):
    newest = list_checkpoints(two_checkpoints)[0]
    cases = {
        "negative manifest step": ({"step": -1}, {}, "not a cnnlab checkpoint manifest"),
        "bool manifest step": ({"step": True}, {}, "not a cnnlab checkpoint manifest"),
        "negative epoch_end": ({"epoch_end": -2}, {}, "not a cnnlab checkpoint manifest"),
        "step other than the folder's": ({"step": 3}, {}, "the folder is named step-000000004"),
        "negative position": ({}, {"global_step": -1}, "its position is step -1"),
        "position of another step": ({}, {"global_step": 99}, "its position is step 99"),
    }
    for name, (manifest, position, message) in cases.items():
        forged = tmp_path / "forged" / newest.name
        shutil.copytree(newest, forged)
        if position:
            _forge_state(forged, **position)
        _reseal(forged, **manifest)
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(forged)
        assert find_latest(forged.parent)[0] is None, name
        shutil.rmtree(forged)
    with pytest.raises(CheckpointError, match="never negative"):
        Checkpointer(two_checkpoints).begin(-1)


@pytest.mark.slow
def test_only_corrupt_checkpoints_are_discarded_when_resuming(run_cli, fmnist_dir, tmp_path):
    out = tmp_path / "run"
    args = _checkpointed_training(out, fmnist_dir, epochs=1)
    code, _, err = run_cli(*args)
    assert code == 0, err
    folder = out / "checkpoints"
    valid = [p.name for p in list_checkpoints(folder)]
    # a newer checkpoint whose resealed state says it is at step -1: before, resuming from it moved every
    # valid checkpoint (all "newer" than -1) to discarded/
    forged = folder / "step-000000009"
    shutil.copytree(folder / valid[0], forged)
    _forge_state(forged, global_step=-1)
    _reseal(forged)
    code, _, err = run_cli(*args, "--resume", "auto")
    assert code == 0, err
    assert "skipping checkpoint step-000000009" in err and "its position is step -1" in err
    assert [p.name for p in (folder / "discarded").iterdir()][0].startswith("step-000000009")
    assert len(list((folder / "discarded").iterdir())) == 1 and not (folder / "superseded").exists()
    assert [p.name for p in list_checkpoints(folder)] == valid  # the valid ones stayed where they were

    # resuming on purpose from an older valid checkpoint: the newer valid ones are set aside, not discarded
    code, _, err = run_cli(*args, "--resume", folder / valid[-1])
    assert code == 0, err
    assert sorted(p.name.rsplit("-", 1)[0] for p in (folder / "superseded").iterdir()) == sorted(valid[:-1])
    assert len(list((folder / "discarded").iterdir())) == 1


def test_auto_refuses_when_every_checkpoint_is_damaged_as_help_says(run_cli, two_checkpoints, tmp_path):
    code, out, _ = run_cli("train", "--help")
    assert code == 0 and "refuse when every one is damaged" in " ".join(out.split())
    for d in list_checkpoints(two_checkpoints):
        (d / "state.json").write_bytes(b"{damaged")
    run = two_checkpoints.parent
    code, _, err = run_cli("train", "--model", "conv8-pool-dense16", "--out", run, "--resume", "auto")
    assert code == 1 and "all 2 are damaged" in err.strip().splitlines()[-1]
    assert len(list_checkpoints(two_checkpoints)) == 2  # nothing moved, nothing deleted
