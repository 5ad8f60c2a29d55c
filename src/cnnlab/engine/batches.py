"""Batches without per-sample Python: the whole split lives on the training device as one uint8 tensor,
and each batch is an index gather from a seeded permutation, scaled to 0..1 on the device."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from cnnlab.engine.phases import phase
from cnnlab.seeds import derive_seed


def epoch_permutation(n: int, *, seed: int, epoch: int) -> torch.Tensor:
    """The order of samples in ``epoch``: a pure function of (seed, epoch), so a run can be repeated
    or resumed mid-epoch without replaying earlier epochs."""
    g = torch.Generator().manual_seed(derive_seed(seed, epoch))
    return torch.randperm(n, generator=g)


class DeviceBatches:
    """Iterate (x, y) batches of a uint8 image tensor that was moved to ``device`` once.

    Args:
        images: uint8 (N, C, H, W); labels: int64 (N,).
        batch_size: samples per batch; the last batch may be smaller (like Keras) unless ``drop_last``.
        shuffle: draw the order from ``epoch_permutation(seed, epoch)``; else keep the order.
        drop_last: leave out the last short batch (fixed shapes, as a captured CUDA graph needs).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        seed: int = 0,
        memory_format: torch.memory_format = torch.contiguous_format,
        drop_last: bool = False,
    ):
        if images.dtype != torch.uint8:
            raise TypeError(f"images must be uint8 (N, C, H, W), got {images.dtype}")
        self.images = images.to(device, non_blocking=True)
        self.labels = labels.to(device, non_blocking=True)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.memory_format = memory_format
        self.drop_last = drop_last and len(labels) >= batch_size  # never drop the only batch

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.labels) // self.batch_size
        return (len(self.labels) + self.batch_size - 1) // self.batch_size

    @property
    def num_samples(self) -> int:
        """Samples trained on per epoch."""
        return len(self) * self.batch_size if self.drop_last else len(self.labels)

    def epoch(
        self, epoch: int, *, start_step: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(x, y, idx) batches of ``epoch`` from batch ``start_step`` on (for resuming mid-epoch); ``idx``
        are the samples' dataset indices (for per-sample augmentation state such as alternating flips)."""
        n = len(self.labels)
        dev = self.labels.device
        order = (
            epoch_permutation(n, seed=self.seed, epoch=epoch).to(dev)
            if self.shuffle
            else torch.arange(n, device=dev)
        )
        for start in range(start_step * self.batch_size, len(self) * self.batch_size, self.batch_size):
            with phase("gather"):
                idx = order[start : start + self.batch_size]
                batch = to_float(self.images[idx], self.memory_format), self.labels[idx], idx
            yield batch


def to_float(x: torch.Tensor, memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """uint8 pixels -> float32 in 0..1 (what every model takes)."""
    if x.dtype == torch.uint8:
        x = x.float().mul_(1.0 / 255.0)
    return x.contiguous(memory_format=memory_format) if x.dim() == 4 else x
