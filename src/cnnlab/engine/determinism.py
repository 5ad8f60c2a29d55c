"""Reproducibility switches for one training run, applied on entry and put back on exit.

``--deterministic`` seeds Python, numpy and torch, turns on ``torch.use_deterministic_algorithms`` (an op
with no deterministic kernel then fails loudly instead of varying), turns off cuDNN autotuning, sets the
cuBLAS workspace that deterministic CUDA matmuls need, and pins the thread count (CPU reductions split
across threads differently with another count). What was set is returned for env.json.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


@contextmanager
def reproducibility(*, seed: int, deterministic: bool = False, threads: int | None = None) -> Iterator[dict]:
    """Apply the settings inside the ``with`` block; yield a dict describing them.

    Example:
        >>> with reproducibility(seed=0, deterministic=True, threads=2) as info:  # doctest: +SKIP
        ...     fit(model, data, seed=0)
    """
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.get_num_threads(),
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    )
    try:
        if threads:
            torch.set_num_threads(threads)
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.manual_seed(seed)
        yield {
            "deterministic": deterministic,
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "torch_threads": torch.get_num_threads(),
            "threads_pinned": bool(threads) or deterministic,
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
            "pythonhashseed": os.environ.get("PYTHONHASHSEED"),
            "seeded": ["python", "numpy", "torch"] if deterministic else ["torch"],
        }
    finally:
        algorithms, warn_only, benchmark, cudnn_det, n_threads, cublas = saved
        torch.use_deterministic_algorithms(algorithms, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark
        torch.backends.cudnn.deterministic = cudnn_det
        torch.set_num_threads(n_threads)
        if cublas is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = cublas
