"""Augmentation on the training device, per batch, with no per-sample Python.

All randomness comes from a generator seeded by (seed, epoch), so a run repeats exactly and a resumed
epoch sees the same augmented batches. Labels are never changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cnnlab.seeds import derive_seed


@dataclass(frozen=True)
class Augment:
    """What to do to each training batch.

    Args:
        translate: random shift of up to this many pixels in x and y (reflect-pad then random crop).
        flip: ``"none"``, ``"random"`` (each image flipped with p=0.5) or ``"alternating"`` (a random half
            of the images flipped in even epochs and the other half in odd epochs: every image is seen
            both ways every two epochs, with less variance than random flips).
        erasing: probability of erasing one random rectangle (2-33% of the area, aspect 0.3-3.3) per image,
            filled with zeros (random erasing, as in the best published Fashion-MNIST results).

    Example:
        >>> aug = Augment(translate=2, flip="alternating")
    """

    translate: int = 0
    flip: str = "none"
    erasing: float = 0.0

    def __post_init__(self) -> None:
        if self.flip not in ("none", "random", "alternating"):
            raise ValueError(f"flip must be none, random or alternating, got {self.flip!r}")
        if self.translate < 0 or not 0.0 <= self.erasing <= 1.0:
            raise ValueError("translate must be >= 0 and erasing in [0, 1]")

    @property
    def active(self) -> bool:
        return self.translate > 0 or self.flip != "none" or self.erasing > 0

    def __call__(
        self, x: torch.Tensor, idx: torch.Tensor, *, seed: int, epoch: int, step: int
    ) -> torch.Tensor:
        """Augment a float batch ``x`` (B, C, H, W) whose dataset indices are ``idx``."""
        g = torch.Generator(device=x.device).manual_seed(derive_seed(seed, epoch) * 100_003 + step)
        if self.flip != "none":
            x = torch.where(
                self.flip_mask(idx, seed=seed, epoch=epoch, generator=g).view(-1, 1, 1, 1), x.flip(3), x
            )
        if self.translate:
            x = random_translate(x, self.translate, g)
        if self.erasing:
            x = random_erase(x, self.erasing, g)
        return x

    def flip_mask(
        self, idx: torch.Tensor, *, seed: int, epoch: int, generator: torch.Generator
    ) -> torch.Tensor:
        if self.flip == "random":
            return torch.rand(len(idx), generator=generator, device=idx.device) < 0.5
        # alternating: a fixed pseudo-random bit per dataset index (an integer hash, the same on any
        # device), XOR the epoch's parity
        bits = ((derive_seed(seed, idx) * 2654435761) % 4294967296 >> 16) & 1
        return bits.bool() ^ bool(epoch % 2)


def random_translate(x: torch.Tensor, pad: int, g: torch.Generator) -> torch.Tensor:
    """Shift each image by up to ``pad`` pixels: reflect-pad once, then gather one crop per image."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=g, device=x.device)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=g, device=x.device)
    rows = (dy.view(b, 1) + torch.arange(h, device=x.device)).view(b, 1, h, 1).expand(b, c, h, w + 2 * pad)
    out = padded.gather(2, rows)  # (B, C, H, W + 2 pad)
    cols = (dx.view(b, 1) + torch.arange(w, device=x.device)).view(b, 1, 1, w).expand(b, c, h, w)
    return out.gather(3, cols).contiguous(memory_format=_format_of(x))


def random_erase(x: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    """Zero one random rectangle in each image with probability ``p`` (vectorised with masks)."""
    b, _, h, w = x.shape
    dev = x.device
    area = torch.empty(b, device=dev).uniform_(0.02, 0.33, generator=g) * h * w
    log_ratio = torch.empty(b, device=dev).uniform_(-1.2, 1.2, generator=g)  # aspect 0.3..3.3
    eh = (area * log_ratio.exp()).sqrt().round().clamp(1, h)
    ew = (area / log_ratio.exp()).sqrt().round().clamp(1, w)
    top = (torch.rand(b, generator=g, device=dev) * (h - eh + 1)).floor()
    left = (torch.rand(b, generator=g, device=dev) * (w - ew + 1)).floor()
    apply = torch.rand(b, generator=g, device=dev) < p
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    box = (
        (ys >= top.view(b, 1, 1))
        & (ys < (top + eh).view(b, 1, 1))
        & (xs >= left.view(b, 1, 1))
        & (xs < (left + ew).view(b, 1, 1))
    )
    mask = (box & apply.view(b, 1, 1)).unsqueeze(1)  # (B, 1, H, W)
    return x.masked_fill(mask, 0.0)


def _format_of(x: torch.Tensor) -> torch.memory_format:
    return (
        torch.channels_last
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        else torch.contiguous_format
    )
