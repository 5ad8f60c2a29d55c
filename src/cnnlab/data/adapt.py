"""Image options every loader takes: validating image_size/channels/resize/bad_images, and resizing and
converting a dataset's uint8 images to the asked size and channel count."""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F

from cnnlab.data.types import Dataset
from cnnlab.errors import CnnlabError

RESIZE_MODES = ("pad", "crop", "stretch")
BAD_IMAGE_MODES = ("skip", "strict")


def check_image_options(image_size: object, channels: object, resize: object, bad_images: object) -> None:
    """Validate the image options every loader takes; raises CnnlabError naming what would work."""
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or not 1 <= image_size <= 4096
    ):
        raise CnnlabError(f"image_size must be an integer from 1 to 4096, got {image_size!r}.")
    if channels is not None and (isinstance(channels, bool) or channels not in (1, 3)):
        raise CnnlabError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}.")
    if resize not in RESIZE_MODES:
        raise CnnlabError(f"Unknown resize mode {resize!r}. Available: {', '.join(RESIZE_MODES)}.")
    if bad_images not in BAD_IMAGE_MODES:
        raise CnnlabError(f"Unknown bad_images mode {bad_images!r}. Available: {', '.join(BAD_IMAGE_MODES)}.")


def adapt_dataset(data: Dataset, *, image_size: int | None, channels: int | None) -> Dataset:
    """`data` with every split resized to `image_size` and converted to `channels` (None: unchanged)."""
    c, h, w = data.input_shape
    if (image_size is None or (h, w) == (image_size, image_size)) and channels in (None, c):
        return data
    splits = {
        k: replace(getattr(data, k), images=adapt_images(getattr(data, k).images, image_size, channels))
        for k in ("train", "val", "test")
    }
    return replace(data, **splits)


def adapt_images(
    images: torch.Tensor, image_size: int | None, channels: int | None, *, chunk: int = 4096
) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, channels, image_size, image_size), in chunks to bound memory.

    Resizing is bilinear with antialiasing (no aliasing when shrinking); 1 -> 3 channels repeats the
    gray channel, 3 -> 1 takes the luma 0.299 R + 0.587 G + 0.114 B.
    """
    out = []
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk]
        if channels == 1 and x.shape[1] == 3:
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            x = (x.float() * weights).sum(1, keepdim=True)
        if image_size is not None and tuple(x.shape[2:]) != (image_size, image_size):
            x = F.interpolate(x.float(), size=(image_size, image_size), mode="bilinear", antialias=True)
        if x.dtype != torch.uint8:
            x = x.round_().clamp_(0, 255).to(torch.uint8)
        if channels == 3 and x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        out.append(x.contiguous())
    if not out:
        c = channels or images.shape[1]
        size = (image_size, image_size) if image_size else tuple(images.shape[2:])
        return torch.empty((0, c, *size), dtype=torch.uint8)
    return torch.cat(out)
