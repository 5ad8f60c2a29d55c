"""Data-parallel training with gloo on CPU: two processes stay identical step by step and match one process
on the same global batch; `cnnlab train --nproc 2` and `torchrun -m cnnlab train` work, a killed rank ends
the job within 60 s, and a distributed run resumes bit-exactly."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import cnnlab as cl
from cnnlab.web.live import free_port
from test_resume import _cli, assert_same_run, cnnlab_process, forkserver, newest_step  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


def rank_env(rank: int, world: int, port: int) -> dict:
    """What torchrun puts in each worker's environment."""
    return {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world),
        "LOCAL_WORLD_SIZE": str(world),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }


def tiny(data_dir):
    """395 training images: batch 50 gives 7 full global batches and one of 45 (shards of 23 and 22)."""
    from cnnlab.data import load_data

    d = load_data("fashion_mnist", split="tutorial", seed=0, data_dir=data_dir, limit=400)
    return dataclasses.replace(d, train=d.train.head(395), val=d.val.head(100))


def params_per_step(data, placement: str = "device") -> list[torch.Tensor]:
    """fit() 2 epochs; the flattened parameters before every training forward, and at the end."""
    model = cl.create_model("conv8-pool-dense16", seed=0)
    seen = []

    def record(module, inputs):
        if module.training:
            seen.append(torch.cat([p.detach().flatten() for p in module.parameters()]).clone())

    model.register_forward_pre_hook(record)
    kw = dict(
        epochs=2, batch_size=50, lr=3e-3, schedule="onecycle", augment_translate=1, augment_flip="random"
    )
    kw["data_placement"] = placement
    cl.fit(model, data, progress=False, **kw)
    return [*seen, torch.cat([p.detach().flatten() for p in model.parameters()])]


def _params_worker(rank: int, port: int, data_dir: str, out: str, placement: str = "device") -> None:
    """One rank of a 2-process gloo job (in a forked child)."""
    os.environ.update(rank_env(rank, 2, port))
    torch.set_num_threads(1)
    from cnnlab.engine.distributed import init_from_env, shutdown

    init_from_env(torch.device("cpu"))
    steps = params_per_step(tiny(data_dir), placement)
    save_file({f"s{i:03d}": t for i, t in enumerate(steps)}, out)
    shutdown()


@pytest.mark.slow  # several seconds: fresh interpreters or real training
@pytest.mark.parametrize("placement", ["device", "stream"])
def test_two_ranks_identical_every_step_and_equal_to_one_process(forkserver, fmnist_dir, tmp_path, placement):  # noqa: F811
    """Streamed, each rank reads only its rows of every global batch: the same steps all the same."""
    port = free_port()
    args = [(r, port, str(fmnist_dir), str(tmp_path / f"rank{r}"), placement) for r in (0, 1)]
    procs = [forkserver.Process(target=_params_worker, args=a) for a in args]
    for p in procs:
        p.start()
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = params_per_step(tiny(fmnist_dir))
    finally:
        torch.set_num_threads(n)
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    r0, r1 = (load_file(tmp_path / f"rank{r}") for r in (0, 1))
    assert len(r0) == len(single) == 2 * 8 + 1
    for i, one in enumerate(single):
        a, b = r0[f"s{i:03d}"], r1[f"s{i:03d}"]
        assert torch.equal(a, b), f"ranks differ after step {i}"
        assert torch.allclose(a, one, rtol=0, atol=1e-6), f"step {i}: {(a - one).abs().max()}"
    assert not torch.equal(single[0], single[-1])


def train_args(fmnist_dir, out: Path, *extra) -> list:
    """600 training images, global batch 50: 12 steps per epoch, 3 epochs."""
    return [
        "train",
        "--model",
        "conv8-pool-dense16",
        "--data-dir",
        fmnist_dir,
        "--limit",
        "600",
        "--epochs",
        "3",
        "--batch-size",
        "50",
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


def worker_pids(launcher: int) -> dict[int, int]:
    """rank -> pid of the workers a torchrun process started."""
    pids = {}
    for task in Path(f"/proc/{launcher}/task").iterdir():
        for pid in (task / "children").read_text().split():
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            rank = [int(e[5:]) for e in env if e.startswith(b"RANK=")]
            if rank:
                pids[rank[0]] = int(pid)
    return pids


@pytest.mark.slow  # four processes and a torchrun launcher: ~13 s
def test_nproc_torchrun_killed_rank_and_distributed_resume(cnnlab_process, fmnist_dir, tmp_path):  # noqa: F811
    # 1. `cnnlab train --nproc 2`: the launcher wraps torchrun's; rank 0 alone writes the run
    whole = tmp_path / "whole"
    p = cnnlab_process(*train_args(fmnist_dir, whole, "--nproc", "2"))
    p.join(300)
    assert p.exitcode == 0
    env = (whole / "env.json").read_text()
    assert '"world_size": 2' in env and '"backend": "gloo"' in env
    assert newest_step(whole) == 36

    # 2. `torchrun -m cnnlab train`; kill rank 1 mid-run: the job ends non-zero within 60 s
    cut = tmp_path / "cut"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "cnnlab",
    ]
    job = subprocess.Popen([*cmd, *map(str, train_args(fmnist_dir, cut))], cwd=ROOT, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while job.poll() is None and newest_step(cut) < 5 and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(worker_pids(job.pid)[1], signal.SIGKILL)
    killed = time.monotonic()
    _, err = job.communicate(timeout=90)
    assert job.returncode != 0 and time.monotonic() - killed < 60
    assert 5 <= newest_step(cut) < 36, err.decode()[-2000:]

    # 3. resume the distributed run (2 ranks, as torchrun starts them): bit-identical to the whole run
    port = free_port()
    ranks = [
        cnnlab_process(*train_args(fmnist_dir, cut, "--resume", "auto"), env=rank_env(r, 2, port))
        for r in (0, 1)
    ]
    for r in ranks:
        r.join(120)
        assert r.exitcode == 0
    assert_same_run(whole, cut, steps=36)
