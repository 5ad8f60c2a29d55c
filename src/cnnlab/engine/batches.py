"""Batches without per-sample Python: the whole split lives on the training device as one uint8 tensor,
and each batch is an index gather from a seeded permutation, scaled to 0..1 on the device
(``DeviceBatches``); or, for data larger than the device's memory, the same batches gathered from host
memory or the folder cache on disk by a background prefetcher (``StreamBatches``)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch

from cnnlab.engine.phases import phase
from cnnlab.seeds import derive_seed


def epoch_permutation(n: int, *, seed: int, epoch: int) -> torch.Tensor:
    """The order of samples in ``epoch``: a pure function of (seed, epoch), so a run can be repeated
    or resumed mid-epoch without replaying earlier epochs."""
    g = torch.Generator().manual_seed(derive_seed(seed, epoch))
    return torch.randperm(n, generator=g)


class _Batches:
    """What both kinds of batches share: the labels on the device, the batch settings, and each epoch's
    order cut into batches (a pure function of seed and epoch, so both give the same batches)."""

    def __init__(
        self,
        labels: torch.Tensor,
        *,
        batch_size: int,
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        seed: int = 0,
        memory_format: torch.memory_format = torch.contiguous_format,
        drop_last: bool = False,
    ):
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

    def batch_indices(self, epoch: int, *, start_step: int = 0, device=None) -> list[torch.Tensor]:
        """The dataset indices of each batch of ``epoch`` from batch ``start_step`` on, on ``device``."""
        n = len(self.labels)
        order = epoch_permutation(n, seed=self.seed, epoch=epoch) if self.shuffle else torch.arange(n)
        order = order.to(device) if device is not None else order
        bounds = range(start_step * self.batch_size, len(self) * self.batch_size, self.batch_size)
        return [order[start : start + self.batch_size] for start in bounds]


class DeviceBatches(_Batches):
    """Iterate (x, y) batches of a uint8 image tensor that was moved to ``device`` once.

    Args:
        images: uint8 (N, C, H, W); labels: int64 (N,).
        batch_size: samples per batch; the last batch may be smaller (like Keras) unless ``drop_last``.
        shuffle: draw the order from ``epoch_permutation(seed, epoch)``; else keep the order.
        drop_last: leave out the last short batch (fixed shapes, as a captured CUDA graph needs).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, **settings):
        if images.dtype != torch.uint8:
            raise TypeError(f"images must be uint8 (N, C, H, W), got {images.dtype}")
        super().__init__(labels, **settings)
        self.images = images.to(self.labels.device, non_blocking=True)

    def epoch(
        self, epoch: int, *, start_step: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(x, y, idx) batches of ``epoch`` from batch ``start_step`` on (for resuming mid-epoch); ``idx``
        are the samples' dataset indices (for per-sample augmentation state such as alternating flips)."""
        for idx in self.batch_indices(epoch, start_step=start_step, device=self.labels.device):
            with phase("gather"):
                batch = to_float(self.images[idx], self.memory_format), self.labels[idx], idx
            yield batch


def to_float(x: torch.Tensor, memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """uint8 pixels -> float32 in 0..1 (what every model takes)."""
    if x.dtype == torch.uint8:
        x = x.float().mul_(1.0 / 255.0)
    return x.contiguous(memory_format=memory_format) if x.dim() == 4 else x


class StreamBatches(_Batches):
    """The batches ``DeviceBatches`` gives, read from host memory or the folder cache on disk, one batch at a
    time: the second gear for data too large to keep on the device.

    The order is the same ``epoch_permutation``, cut into the same batches, so batch composition,
    augmentation (which sees the same ``idx``) and resume mid-epoch are bit-identical to the device-resident
    path for the same seed. A background thread gathers each batch (``images[idx]``: a ``MappedImages``
    view reads its rows in sorted order from the file) up to ``prefetch`` batches ahead into a bounded
    queue, in pinned memory on CUDA so the copy to the device overlaps the step; memory in use is about
    ``prefetch + 2`` batches, whatever the split's size. Labels (8 bytes an image) live on the device.
    """

    def __init__(
        self,
        images,
        labels: torch.Tensor,
        *,
        prefetch: int = 4,
        shard: Callable[[int], slice] | None = None,
        **settings,
    ):
        if images.dtype != torch.uint8:
            raise TypeError(f"images must be uint8 (N, C, H, W), got {images.dtype}")
        super().__init__(labels, **settings)
        self.images = images  # a tensor on the CPU or a MappedImages view: never copied whole
        self.device = self.labels.device
        self.prefetch = max(1, prefetch)
        self.shard = shard

    def epoch(
        self, epoch: int, *, start_step: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(x, y, idx) batches of ``epoch`` from batch ``start_step`` on, as ``DeviceBatches.epoch``."""
        batches = self.batch_indices(epoch, start_step=start_step)
        with Prefetcher(self._read, batches, depth=self.prefetch) as ahead:
            for idx, x in ahead:
                x = x.to(self.device, non_blocking=True)
                idx = idx.to(self.device, non_blocking=True)
                yield to_float(x, self.memory_format), self.labels[idx], idx

    def _read(self, idx: torch.Tensor) -> torch.Tensor:
        """The batch's images; with ``shard`` (a DDP rank's rows of a global batch, ``Distributed.shard_rows``)
        only those rows are read and the others left black: augmentation draws its random values for the
        whole global batch, so each rank still augments a batch of the global size, and then trains on
        its rows alone, exactly as if it had read them all."""
        if self.shard is None:
            x = self.images[idx]
        else:
            rows = self.shard(len(idx))
            part = self.images[idx[rows]]
            x = torch.zeros((len(idx), *part.shape[1:]), dtype=part.dtype)
            x[rows] = part
        return x.pin_memory() if self.device.type == "cuda" else x


class Prefetcher:
    """Run ``read(item)`` for each of ``items`` in a background thread, at most ``depth`` results ahead;
    iterate (item, result) in order. An error in the thread is raised in the consumer; leaving the
    ``with`` block early (a break, an exception, a stop) ends the thread."""

    def __init__(self, read, items: list, *, depth: int = 4):
        self.read, self.items = read, items
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="cnnlab-prefetch", daemon=True)

    def _run(self) -> None:
        for item in self.items:
            out: tuple[Any, Any, BaseException | None]
            try:
                out = (item, self.read(item), None)
            except BaseException as exc:  # handed to the consumer, which raises it
                out = (item, None, exc)
            while not self.stop.is_set() and threading.main_thread().is_alive():
                try:
                    self.queue.put(out, timeout=0.1)
                    break
                except queue.Full:
                    continue  # the consumer is busy (or gone: stopped when its generator is closed)
            if self.stop.is_set() or out[2] is not None or not threading.main_thread().is_alive():
                return

    def __enter__(self) -> Iterator[tuple]:
        self.thread.start()
        return self._results()

    def _results(self) -> Iterator[tuple]:
        for _ in self.items:
            item, result, error = self.queue.get()
            if error is not None:
                raise error
            yield item, result

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
