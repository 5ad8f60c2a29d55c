"""Where the training images live while a model trains: on the device (the default, and the speed on small
data) or streamed from host memory or the folder cache on disk (data larger than the device's memory).

``--data-placement auto`` keeps the training split on the device while its decoded size fits
``FIT_FRACTION`` of the memory free there (the GPU's free memory on CUDA, the host's available memory on the
CPU), else streams it; ``device`` and ``stream`` force one. The plan line says which, and why.
"""

from __future__ import annotations

import os

import torch

__all__ = ["FIT_FRACTION", "choose_placement", "free_memory"]

FIT_FRACTION = 0.5
"""The share of free device (or host) memory the training split may take and still be kept resident: the
rest is for the model, its activations, the optimizer state and the validation batches."""


def free_memory(device: torch.device) -> tuple[int, str] | None:
    """(bytes free, what was measured) on ``device``, or None when it cannot be told."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free), "free GPU memory"
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "available memory"
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "available memory"
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


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"
