"""One way to derive the seed of a random stream from the run's seed and a key (epoch, step, rank,
sample index), so that every stream is a pure function of (seed, key) and a run can be repeated or resumed
anywhere without replaying what came before."""

from __future__ import annotations

from typing import TYPE_CHECKING, overload

if TYPE_CHECKING:
    import torch

STRIDE = 1_000_003  # a prime larger than any key used: (seed, key) pairs give distinct streams


@overload
def derive_seed(seed: int, key: int) -> int: ...
@overload
def derive_seed(seed: int, key: torch.Tensor) -> torch.Tensor: ...  # per-sample streams
def derive_seed(seed: int, key: int | torch.Tensor) -> int | torch.Tensor:
    """The seed of stream ``key`` under the run's ``seed``: ``seed * STRIDE + key``.

    Example:
        >>> derive_seed(0, 5), derive_seed(1, 5)
        (5, 1000008)
    """
    return seed * STRIDE + key
