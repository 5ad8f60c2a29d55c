"""Shared by the benchmark scripts: what machine they ran on, as a dict and as one line."""

from __future__ import annotations

import os
import platform

from cnnlab.run.folder import cpu_name


def machine(**versions: str) -> dict:
    """CPU, cores, Python, torch (and any ``versions`` given, e.g. numpy=...), platform, GPU if any."""
    import torch

    import cnnlab

    info = {
        "cpu": cpu_name(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cnnlab": cnnlab.__version__,
        **versions,
        "platform": platform.platform(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def machine_line() -> str:
    m = machine()
    gpu = f", GPU {m['gpu']}" if "gpu" in m else ", no GPU"
    return f"{m['cpu']}, {m['cores']} cores{gpu}; Python {m['python']}, torch {m['torch']}"
