"""Where the training images live while a model trains: on the device (the default, and the speed on small
data) or streamed from host memory or the folder cache on disk (data larger than the device's memory).

``--data-placement auto`` keeps the training split on the device while its decoded size fits
``FIT_FRACTION`` of the memory free there (the GPU's free memory on CUDA, the host's available memory on the
CPU, or what a cgroup's memory cap leaves, if less), else streams it; ``device`` and ``stream`` force one.
The plan line says which, and why.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError

__all__ = [
    "FIT_FRACTION",
    "check_stream_memory",
    "choose_placement",
    "free_memory",
    "memory_cap",
    "step_memory",
]

FIT_FRACTION = 0.5
"""The share of free device (or host) memory the training split may take and still be kept resident: the
rest is for the model, its activations, the optimizer state and the validation batches."""


def free_memory(device: torch.device) -> tuple[int, str] | None:
    """(bytes free, what was measured) on ``device``, or None when it cannot be told: on the CPU the
    host's available memory, or what the process's memory cap (a cgroup's limit) leaves, if less."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free), "free GPU memory"
    host = _host_available()
    cap = memory_cap()
    if cap is not None and (host is None or cap[0] - cap[1] < host):
        return max(0, cap[0] - cap[1]), f"memory left under the {_gb(cap[0])} memory cap"
    return None if host is None else (host, "available memory")


_V2 = ("memory.max", "memory.current", "inactive_file")
_V1 = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")


def memory_cap() -> tuple[int, int] | None:
    """(limit, usage) in bytes of this process's cgroup memory cap (v2 ``memory.max``, v1
    ``memory.limit_in_bytes``), or None: no cap, or none that can be read. The usage leaves out the
    inactive file pages (``memory.stat``), which the kernel reclaims before it kills anything: after a
    large folder is decoded or read, they are gigabytes that would otherwise look taken."""
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2
            names, roots = _V2, ["/sys/fs/cgroup" + path, "/sys/fs/cgroup"]
        elif "memory" in controllers.split(","):
            names, roots = _V1, ["/sys/fs/cgroup/memory" + path, "/sys/fs/cgroup/memory"]
        else:
            continue
        for root in roots:
            try:
                return cgroup_memory(Path(root), names)
            except OSError:
                continue
    return None


def cgroup_memory(root: Path, names: tuple[str, str, str]) -> tuple[int, int] | None:
    """(limit, usage less inactive file pages) read from the cgroup folder ``root``; None: no limit there.

    Raises:
        OSError: ``root``'s limit or usage cannot be read."""
    limit_file, usage_file, inactive_key = names
    limit, usage = (Path(root, n).read_text(encoding="ascii").strip() for n in (limit_file, usage_file))
    if not (limit.isdigit() and int(limit) < 1 << 60 and usage.isdigit()):
        return None
    inactive = 0
    try:
        for line in Path(root, "memory.stat").read_text(encoding="ascii").splitlines():
            key, _, value = line.partition(" ")
            if key == inactive_key and value.strip().isdigit():
                inactive = int(value)
    except OSError:
        pass
    return int(limit), max(0, int(usage) - inactive)


def _host_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def choose_placement(option: str, images, device: torch.device) -> tuple[str, str]:
    """``("device" | "stream", why)`` for training images ``images`` (uint8 (N, C, H, W)) on ``device``.

    Example:
        >>> choose_placement("stream", torch.zeros(10, 1, 8, 8, dtype=torch.uint8), torch.device("cpu"))
        ('stream', 'as --data-placement stream asks')
    """
    if option in ("device", "stream"):
        return option, f"as --data-placement {option} asks"
    need = int(len(images)) * int(torch.Size(images.shape[1:]).numel())
    free = free_memory(device)
    if free is None:
        return "device", f"the training images take {_gb(need)}; free memory unknown"
    have, what = free
    where = "on the GPU" if device.type == "cuda" else "in memory"
    if need <= FIT_FRACTION * have:
        return "device", (
            f"the training images ({_gb(need)}) fit in {FIT_FRACTION:.0%} of the {_gb(have)} {what}; kept {where}"
        )
    return "stream", (
        f"the training images ({_gb(need)}) exceed {FIT_FRACTION:.0%} of the {_gb(have)} {what}; "
        "streamed from the cache in batches"
    )


def check_stream_memory(
    images,
    batch_size: int,
    prefetch: int = 4,
    *,
    model: nn.Module | None = None,
    optimizer: str = "adam",
    amp: str = "off",
) -> None:
    """Refuse, in one line, a memory cap too small to stream and train: less left under it than the batches
    in flight need (``prefetch`` read ahead, one being copied, one training: uint8, plus the float32 batch
    and its gradient-sized twin), plus, given the ``model`` training on the CPU, its step (``step_memory``:
    the activations kept for backward, the gradients and the optimizer's state). Bounds from below, so it
    refuses only what cannot work; a model whose step cannot be estimated counts only the batches."""
    cap = memory_cap()
    if cap is None:
        return
    per_image = int(torch.Size(images.shape[1:]).numel())
    batches = batch_size * per_image * ((prefetch + 2) + 2 * 4)
    left = cap[0] - cap[1]
    shape = "x".join(map(str, images.shape[1:]))
    room = f"The memory cap ({_gb(cap[0])}, {_gb(max(0, left))} left)"
    if batches > left:
        raise CnnlabError(
            f"{room} is too small even to stream batches of {batch_size} images of {shape}: they need at "
            f"least {_gb(batches)}. Raise the cap, or lower --batch-size or --image-size."
        )
    step = None if model is None else step_memory(model, tuple(images.shape[1:]), batch_size, optimizer, amp)
    if step is not None and batches + sum(step) > left:
        acts, state = step
        raise CnnlabError(
            f"{room} is too small to train this model on batches of {batch_size} images of {shape}: a step "
            f"needs at least {_gb(batches + acts + state)} ({_gb(acts)} of activations kept for backward, "
            f"{_gb(state)} of gradients and {optimizer} state, {_gb(batches)} of batches in flight). Lower "
            "--batch-size or --image-size, choose a smaller model, or raise the cap."
        )


def step_memory(
    model: nn.Module, input_shape: tuple[int, ...], batch_size: int, optimizer: str = "adam", amp: str = "off"
) -> tuple[int, int] | None:
    """(activations, gradients + optimizer state) in bytes that one training step of ``model`` on the CPU
    adds to what is already allocated (the weights), from below, or None when it cannot be told.

    The activations are the tensors autograd keeps for backward in a forward of the whole batch, run on
    the ``meta`` device (shapes only: no memory, no arithmetic; a few milliseconds) on a copy of the model
    without its hooks, counted once each and without the input batch (the streamed batches count it); half
    that under ``amp`` bf16/fp16. The transient gradients of activations during backward come on top.

    Example:
        >>> acts, state = step_memory(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), (1, 2, 2), 8)
        >>> acts, state  # nothing saved but the input's view; 10 parameters x (grad + Adam's 2) x 4 bytes
        (0, 120)
    """
    try:
        acts = _saved_activation_bytes(model, (batch_size, *input_shape))
    except Exception:  # a forward meta tensors cannot run (.item(), data-dependent shapes, ...): not told
        return None
    acts = acts // 2 if amp in ("bf16", "fp16") else acts
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return acts, trainable * (1 + OPTIMIZER_STATE.get(optimizer, 0))


OPTIMIZER_STATE = {"adam": 2, "adamw": 2, "sgd": 1, "nesterov": 1}
"""Tensors the size of the parameters each optimizer keeps (Adam's two moments, SGD's momentum)."""


def _saved_activation_bytes(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Bytes autograd saves for backward in a training forward of a ``shape`` batch, on a meta copy of
    ``model``; each tensor counted once (a view as its base), parameters and the input left out."""
    meta = _meta_copy(model)
    x = torch.empty(shape, device="meta")
    skip = {id(t) for t in meta.parameters()} | {id(x)}
    saved: dict[int, torch.Tensor] = {}  # held, so that no id is reused while counting

    def pack(t: torch.Tensor) -> torch.Tensor:
        base = t if t._base is None else t._base
        if id(base) not in skip:
            saved[id(base)] = base
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        meta.train()(x)  # as the step runs it: dropout's masks, BatchNorm's batch statistics
    return sum(t.untyped_storage().nbytes() for t in saved.values())


def _meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with its parameters and buffers on the ``meta`` device (nothing copied) and no
    hooks: the user's hooks observe real steps, not this estimate."""
    memo: dict[int, Any] = {}
    for m in model.modules():
        for name, value in vars(m).items():
            if "hooks" in name and isinstance(value, dict):
                memo[id(value)] = type(value)()
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = torch.empty_like(b, device="meta")
    return copy.deepcopy(model, memo)


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"
