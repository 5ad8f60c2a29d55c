"""Where the training images live while a model trains: on the device (the default, and the speed on small
data) or streamed from host memory or the folder cache on disk (data larger than the device's memory).

``--data-placement auto`` keeps the training split on the device while its decoded size fits
``FIT_FRACTION`` of the memory free there (the GPU's free memory on CUDA, the host's available memory on the
CPU, or what a cgroup's memory cap leaves, if less), else streams it; ``device`` and ``stream`` force one.
The plan line says which, and why.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from cnnlab.errors import CnnlabError

__all__ = ["FIT_FRACTION", "check_stream_memory", "choose_placement", "free_memory", "memory_cap"]

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


def memory_cap() -> tuple[int, int] | None:
    """(limit, usage) in bytes of this process's cgroup memory cap (v2 ``memory.max``, v1
    ``memory.limit_in_bytes``), or None: no cap, or none that can be read."""
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2
            names, roots = ("memory.max", "memory.current"), ["/sys/fs/cgroup" + path, "/sys/fs/cgroup"]
        elif "memory" in controllers.split(","):
            names = ("memory.limit_in_bytes", "memory.usage_in_bytes")
            roots = ["/sys/fs/cgroup/memory" + path, "/sys/fs/cgroup/memory"]
        else:
            continue
        for root in roots:
            try:
                limit, usage = (Path(root, n).read_text(encoding="ascii").strip() for n in names)
            except OSError:
                continue
            if limit.isdigit() and int(limit) < 1 << 60:
                return int(limit), int(usage)
            break
    return None


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


def check_stream_memory(images, batch_size: int, prefetch: int = 4) -> None:
    """Refuse, in one line, a memory cap too small even to stream: less left under it than the batches in
    flight need (``prefetch`` read ahead, one being copied, one training: uint8, plus the float32 batch and
    its gradient-sized twin). A bound from below (the model's activations come on top), so it refuses only
    what cannot work; a cap between this and what the model needs ends in the kernel's OOM kill."""
    cap = memory_cap()
    if cap is None:
        return
    per_image = int(torch.Size(images.shape[1:]).numel())
    need = batch_size * per_image * ((prefetch + 2) + 2 * 4)
    left = cap[0] - cap[1]
    if need > left:
        raise CnnlabError(
            f"The memory cap ({_gb(cap[0])}, {_gb(max(0, left))} left) is too small even to stream batches of "
            f"{batch_size} images of {'x'.join(map(str, images.shape[1:]))}: they need at least {_gb(need)}. "
            "Raise the cap, or lower --batch-size or --image-size."
        )


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"
