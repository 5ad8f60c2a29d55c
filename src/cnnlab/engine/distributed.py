"""Data-parallel training with PyTorch's own engine: DDP over a process group that torchrun sets up.

Launch with ``torchrun --nproc-per-node N -m cnnlab train ...`` (or ``cnnlab train --nproc N ...``, which
runs the same launcher in-process). Each process holds the whole (device-resident) training split and draws
the same global batches from the epoch's permutation; it augments the global batch (so augmentation is the
one a single process would draw) and trains on its disjoint contiguous shard of it. ``batch_size`` stays the
global batch, and each rank's mean loss is weighted by its share of the batch, so the averaged gradient is
the one a single process computes on the same global batch. gloo on CPU, NCCL on
CUDA (with a small gloo group for control messages). Rank 0 alone logs, checkpoints and writes the run.

Several machines: start the same command on each with torchrun's rendezvous options, e.g.
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29400 --rdzv-id JOB \
        -m cnnlab train ... --out /shared/runs/x
(or the static form: --nnodes 2 --node-rank 0|1 --master-addr HOST --master-port 29500). --out must be a
folder every node sees (rank 0 writes the checkpoints; every rank reads one when resuming), and each node
needs the data (--data-dir). CNNLAB_DIST_TIMEOUT (seconds, default 600) bounds a collective that waits on a
peer; a dead worker normally ends the job at once, since torchrun stops the rest.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from cnnlab.errors import CnnlabError


@dataclass
class Distributed:
    """This process's place in the job (rank 0 of 1 when not distributed) and the few collectives fit uses."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None
    control: Any = None  # process group for small CPU messages (None: the default group)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @classmethod
    def current(cls) -> Distributed:
        """The job torch.distributed is part of (a collective call on every rank when the backend is NCCL)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return cls()
        backend = dist.get_backend()
        control = None if backend == "gloo" else dist.new_group(backend="gloo")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return cls(dist.get_rank(), dist.get_world_size(), local, backend, control)

    def shard(self, t: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous part of a global batch (sizes differ by at most one)."""
        return t.tensor_split(self.world)[self.rank] if self.active else t

    def shard_rows(self, n: int) -> slice:
        """Where this rank's part of a global batch of ``n`` lies (the rows ``shard`` takes)."""
        if not self.active:
            return slice(0, n)
        sizes = [len(part) for part in torch.arange(n).tensor_split(self.world)]
        start = sum(sizes[: self.rank])
        return slice(start, start + sizes[self.rank])

    def loss_share(self, local: int, global_batch: int) -> float:
        """Weight of this rank's mean loss so the DDP gradient average equals the global batch mean."""
        return local * self.world / global_batch if self.active else 1.0

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        if not self.active:
            return model
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def agree(self, bad: bool, signum: int) -> tuple[bool, int]:
        """Every rank learns whether any rank saw a non-finite loss or a signal, so all stop at one step."""
        if not self.active:
            return bad, signum
        t = torch.tensor([float(bad), float(signum)])
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.control)
        return bool(t[0]), int(t[1])

    def sum(self, *tensors: torch.Tensor) -> None:
        """All-reduce (sum) in place, on the tensors' device."""
        if self.active:
            for t in tensors:
                dist.all_reduce(t)

    def gather_json(self, obj) -> list | None:
        """Every rank's JSON-able ``obj``, in rank order, on rank 0 (None elsewhere)."""
        if not self.active:
            return [obj]
        data = torch.tensor(list(json.dumps(obj).encode()), dtype=torch.uint8)
        sizes = [torch.zeros(1, dtype=torch.long) for _ in range(self.world)]
        dist.all_gather(sizes, torch.tensor([len(data)]), group=self.control)
        longest = int(max(sizes))
        padded = torch.zeros(longest, dtype=torch.uint8)
        padded[: len(data)] = data
        parts = [torch.zeros(longest, dtype=torch.uint8) for _ in range(self.world)]
        dist.all_gather(parts, padded, group=self.control)
        if not self.is_main:
            return None
        return [json.loads(bytes(p[: int(s)].tolist())) for p, s in zip(parts, sizes, strict=True)]

    def barrier(self) -> None:
        if self.active:
            dist.barrier(group=self.control)


def launched() -> bool:
    """Whether this process is a worker started by torchrun (or an equivalent launcher)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_from_env(device: torch.device) -> Distributed:
    """Join the job torchrun describes in the environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT,
    LOCAL_RANK). A no-op for a single process, or when the process group already exists."""
    if not launched() or int(os.environ["WORLD_SIZE"]) < 2 or dist.is_initialized():
        return Distributed.current()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        if local >= torch.cuda.device_count():
            raise CnnlabError(
                f"{os.environ.get('LOCAL_WORLD_SIZE', local + 1)} processes on this machine but only "
                f"{torch.cuda.device_count()} GPU(s); use at most one process per GPU"
            )
        torch.cuda.set_device(local)
    # a dead peer makes collectives fail, and torchrun stops the job; the timeout is a last resort
    timeout = timedelta(seconds=float(os.environ.get("CNNLAB_DIST_TIMEOUT", "600")))
    dist.init_process_group(backend, timeout=timeout)
    return Distributed.current()


def shutdown() -> None:
    """Leave the job (the CLI calls this when a command ends)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def launch(nproc: int, args: Sequence[str]) -> int:
    """Run ``python ARGS`` as ``nproc`` workers on this machine via torchrun's launcher (what
    ``torchrun --standalone --nproc-per-node NPROC`` does); returns the first failing worker's exit code
    (128 + signal when a worker was killed), else 0."""
    # deferred: torch builds without distributed support lack these; only the launcher needs them
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.1,
    )
    threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = threads or str(max(1, (os.cpu_count() or 1) // nproc))
    try:
        elastic_launch(config, sys.executable)("-u", *args)
        return 0
    except ChildFailedError as exc:
        code = exc.get_first_failure()[1].exitcode
        return code if code > 0 else 128 - code
    except SignalException as exc:
        return 128 + int(exc.sigval)
    finally:
        if threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = threads
