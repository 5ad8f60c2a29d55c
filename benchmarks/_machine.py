"""Shared by the benchmark scripts: what machine they ran on, as a dict and as one line, with the CPU's
vector and matrix capabilities (what the hardware has, and which kernels this process runs)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from cnnlab.run.folder import cpu_name

# /proc/cpuinfo flag -> how the table names it
CPU_FLAGS = {"avx2": "AVX2", "avx512f": "AVX512", "avx512_bf16": "AVX512-BF16", "amx_tile": "AMX"}


def cpu_flags() -> list[str]:
    """The capabilities in ``CPU_FLAGS`` that this CPU reports (Linux; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    have = set(line.split(":", 1)[-1].split())
    return [name for flag, name in CPU_FLAGS.items() if flag in have]


def capabilities() -> dict:
    """The CPU's capabilities, the ATen kernels this process dispatches to (``ATEN_CPU_CAPABILITY`` lowers
    them), oneDNN's cap (``ONEDNN_MAX_CPU_ISA``) and whether bf16 counts as native (cnnlab's recipes train
    in bf16 only then)."""
    import torch

    from cnnlab.hardware import native_bf16_cpu

    return {
        "cpu_flags": cpu_flags(),
        "aten_kernels": torch.backends.cpu.get_cpu_capability(),
        "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL"),
        "native_bf16": native_bf16_cpu(),
    }


def machine(**versions: str) -> dict:
    """CPU, cores, capabilities, Python, torch (and any ``versions`` given, e.g. numpy=...), platform, GPU."""
    import torch

    import cnnlab

    info = {
        "cpu": cpu_name(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        **capabilities(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cnnlab": cnnlab.__version__,
        **versions,
        "platform": platform.platform(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def capability_line(m: dict | None = None) -> str:
    """e.g. ``AVX2/AVX512/AVX512-BF16, kernels AVX2, oneDNN ALL, bf16 emulated``."""
    m = m or capabilities()
    flags = "/".join(m["cpu_flags"]) or "no AVX2"
    bf16 = "bf16 native" if m["native_bf16"] else "bf16 emulated"
    return f"{flags}, kernels {m['aten_kernels']}, oneDNN {m['onednn_max_isa']}, {bf16}"


def machine_line() -> str:
    m = machine()
    gpu = f", GPU {m['gpu']}" if "gpu" in m else ", no GPU"
    return f"{m['cpu']}, {m['cores']} cores ({capability_line(m)}){gpu}; Python {m['python']}, torch {m['torch']}"
