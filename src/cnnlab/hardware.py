"""What this machine's processor can do (a leaf module: recipes ask it without importing the engine)."""

from __future__ import annotations

import torch


def native_bf16_cpu() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX). There, bf16 autocast makes
    convolutions ~1.6x faster; elsewhere it is emulated and slower, so CPU recipes only ask for it here."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private: absent means no
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)
