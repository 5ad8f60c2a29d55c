"""The filter playground: named kernels, `apply` (boundary modes, stride, padding), figures and the
arithmetic of convolution and pooling.

Example:
    >>> import cnnlab as cl
    >>> img = cl.filters.sample_image(gray=True)          # the bundled cat, (300, 451)
    >>> edges = cl.filters.apply(img, "outline")          # scipy's convolve2d(img, k, 'symm', 'same')
    >>> edges.shape
    (300, 451)
    >>> cl.filters.output_size(5, 3, padding=1, stride=2)
    3

Names are imported on first use (PEP 562), so `cnnlab --help` (which imports `cnnlab.commands.filters`)
does not load numpy or scipy.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it
_EXPORTS = {
    "apply": "conv",
    "BOUNDARIES": "conv",
    "MODES": "conv",
    "OPS": "conv",
    "METHODS": "conv",
    "choose_method": "conv",
    "mode_padding": "conv",
    "KERNELS": "kernels",
    "KERNEL_INFO": "kernels",
    "TUTORIAL_KERNELS": "kernels",
    "MAX_KERNEL_SIZE": "kernels",
    "get_kernel": "kernels",
    "list_kernels": "kernels",
    "parse_kernel": "kernels",
    "resolve_kernel": "kernels",
    "normalize_kernel": "kernels",
    "load_kernel_file": "kernels",
    "output_size": "arith",
    "conv_arith": "arith",
    "same_padding": "arith",
    "sample_image": "preprocess",
    "downsample": "preprocess",
    "prepare": "preprocess",
    "tutorial_figure": "figures",
    "grid_figure": "figures",
    "animate": "animation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cnnlab.filters' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"cnnlab.filters.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
