"""What this machine's processor can do (a leaf module: recipes ask it without importing the engine)."""

from __future__ import annotations

import os

import torch

# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) under which it still multiplies bf16 natively
_BF16_ISAS = ("BF16", "AMX", "FP16", "AVX10", "ALL", "DEFAULT")


def native_bf16_cpu() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX). There, bf16 autocast makes
    convolutions ~1.6x faster; elsewhere it is emulated and slower, so CPU recipes only ask for it here.

    Kernels forced down to AVX2 (``ATEN_CPU_CAPABILITY=avx2`` and/or ``ONEDNN_MAX_CPU_ISA=AVX2``, how an
    AVX512 machine stands in for an AVX2-only one) count as not native: they emulate bf16."""
    if os.environ.get("ATEN_CPU_CAPABILITY", "").lower() in ("default", "avx2"):
        return False
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    if not any(key in isa for key in _BF16_ISAS):
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private: absent means no
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)
