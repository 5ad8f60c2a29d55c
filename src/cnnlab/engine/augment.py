"""Augmentation on the training device, per batch, with no per-sample Python.

All randomness comes from a generator seeded by (seed, epoch, step), so a run repeats exactly and a
resumed epoch sees the same augmented batches. Labels are never changed.

Geometry (random-resized crop and rotation) is one affine matrix per image and one batched
``affine_grid`` + ``grid_sample``: resampling a 64 px batch costs a small fraction of a forward pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from cnnlab.config import check_value, options
from cnnlab.engine.phases import phase
from cnnlab.seeds import derive_seed


@dataclass(frozen=True)
class Augment:
    """What to do to each training batch (every default means "off").

    Args:
        translate: random shift of up to this many pixels in x and y (reflect-pad then random crop).
        flip: ``"none"``, ``"random"`` (each image flipped with p=0.5) or ``"alternating"`` (a random half
            of the images flipped in even epochs and the other half in odd epochs: every image is seen
            both ways every two epochs, with less variance than random flips).
        erasing: probability of erasing one random rectangle (2-33% of the area, aspect 0.3-3.3) per image,
            filled with zeros (random erasing, as in the best published Fashion-MNIST results).
        crop: random-resized crop: each image shows a random window of ``crop`` to 100% of its area
            (0 = off), resampled to the input size. 0.35 suits small photo folders.
        crop_ratio: the window's aspect ratio (width/height) is drawn log-uniformly from
            ``1/crop_ratio .. crop_ratio`` [4/3, as torchvision]; used only when ``crop`` is on.
        rotate: rotation by a uniform random angle in ``-rotate .. rotate`` degrees around the window's
            centre (0 = off); the corners are filled by reflection.
        jitter: colour jitter strength s: brightness, contrast and (3-channel images only) saturation are
            each scaled by a random factor in ``1-s .. 1+s`` (0 = off).

    Example:
        >>> aug = Augment(translate=2, flip="alternating")
        >>> photo = Augment(crop=0.35, rotate=10, jitter=0.3, flip="random")
    """

    translate: int = 0
    flip: str = "none"
    erasing: float = 0.0
    crop: float = 0.0
    crop_ratio: float = 4 / 3
    rotate: float = 0.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        # each field is the training option augment_<field>: one declaration (cnnlab.config) checks both
        for f in fields(self):
            name = "augment_" + f.name
            opt, _, annotation = options()[name]
            check_value(name, getattr(self, f.name), annotation, opt)

    @property
    def active(self) -> bool:
        return (
            self.geometric or self.translate > 0 or self.flip != "none" or self.erasing > 0 or self.jitter > 0
        )

    @property
    def geometric(self) -> bool:
        """Whether a crop or a rotation resamples the images."""
        return self.crop > 0 or self.rotate > 0

    def __call__(
        self, x: torch.Tensor, idx: torch.Tensor, *, seed: int, epoch: int, step: int
    ) -> torch.Tensor:
        """Augment a float batch ``x`` (B, C, H, W) of pixels in 0..1 whose dataset indices are ``idx``."""
        with phase("augmentation"):
            return self._apply(x, idx, seed=seed, epoch=epoch, step=step)

    def _apply(self, x: torch.Tensor, idx: torch.Tensor, *, seed: int, epoch: int, step: int) -> torch.Tensor:
        g = torch.Generator(device=x.device).manual_seed(derive_seed(seed, epoch) * 100_003 + step)
        # The draws come in a fixed order, and a stage that is off draws nothing, so adding a stage to a
        # recipe never changes the others' draws when it is off.
        if self.flip != "none":
            x = torch.where(
                self.flip_mask(idx, seed=seed, epoch=epoch, generator=g).view(-1, 1, 1, 1), x.flip(3), x
            )
        if self.geometric:
            x = random_resized_crop(x, self.crop, self.crop_ratio, self.rotate, g)
        if self.translate:
            x = random_translate(x, self.translate, g)
        if self.jitter:
            x = color_jitter(x, self.jitter, g)
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


def _uniform(n: int, low: float, high: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.empty(n, device=device).uniform_(low, high, generator=g)


def crop_rotate_theta(
    n: int, h: int, w: int, crop: float, ratio: float, degrees: float, g: torch.Generator, device
) -> torch.Tensor:
    """One (2, 3) affine matrix per image, mapping output coordinates (-1..1) to input coordinates: a
    random window (area ``crop``..1, aspect ``1/ratio``..``ratio``, inside the image) turned by up to
    ``degrees`` around its centre."""
    if crop > 0:
        area = _uniform(n, crop, 1.0, g, device)
        log_r = _uniform(n, -math.log(ratio), math.log(ratio), g, device)
        sx = (area * log_r.exp()).sqrt().clamp(max=1.0)  # the window's width as a fraction of the image
        sy = (area / log_r.exp()).sqrt().clamp(max=1.0)
        cx = (torch.rand(n, generator=g, device=device) * 2 - 1) * (1 - sx)  # the window stays inside
        cy = (torch.rand(n, generator=g, device=device) * 2 - 1) * (1 - sy)
    else:
        sx = sy = torch.ones(n, device=device)
        cx = cy = torch.zeros(n, device=device)
    angle = _uniform(n, -math.radians(degrees), math.radians(degrees), g, device)
    cos, sin = angle.cos(), angle.sin()
    # Rotate in pixel units (normalised x and y have different pixel sizes when h != w):
    # input = centre + S^-1 R S diag(sx, sy) output, with S = diag(w, h) / 2.
    theta = torch.stack(
        [
            torch.stack([cos * sx, -sin * sy * h / w, cx], 1),
            torch.stack([sin * sx * w / h, cos * sy, cy], 1),
        ],
        1,
    )
    return theta  # (B, 2, 3)


def random_resized_crop(
    x: torch.Tensor, crop: float, ratio: float, degrees: float, g: torch.Generator
) -> torch.Tensor:
    """Random-resized crop and rotation in one bilinear resampling of the whole batch."""
    b, c, h, w = x.shape
    theta = crop_rotate_theta(b, h, w, crop, ratio, degrees, g, x.device)
    grid = F.affine_grid(theta.to(x.dtype), [b, c, h, w], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out.clamp_(0.0, 1.0).contiguous(memory_format=_format_of(x))


def _gray(x: torch.Tensor) -> torch.Tensor:
    """Luma (ITU-R 601, as PIL's "L"), (B, 1, H, W)."""
    if x.shape[1] != 3:
        return x.mean(1, keepdim=True)
    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


def color_jitter(x: torch.Tensor, strength: float, g: torch.Generator) -> torch.Tensor:
    """Scale brightness, contrast and (3 channels only) saturation of each image by random factors in
    ``1-strength .. 1+strength``, as torchvision's ColorJitter does (in a fixed order), clamped to 0..1."""
    b, dev = x.shape[0], x.device
    factor = [_uniform(b, 1 - strength, 1 + strength, g, dev).view(b, 1, 1, 1).to(x.dtype) for _ in range(3)]
    x = (x * factor[0]).clamp_(0.0, 1.0)  # brightness: blend with black
    mean = _gray(x).mean((2, 3), keepdim=True)  # contrast: blend with the image's mean grey
    x = (x * factor[1] + mean * (1 - factor[1])).clamp_(0.0, 1.0)
    if x.shape[1] == 3:  # saturation: blend with the image's own grey version
        x = (x * factor[2] + _gray(x) * (1 - factor[2])).clamp_(0.0, 1.0)
    return x


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
