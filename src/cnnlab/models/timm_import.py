"""The one place cnnlab imports timm (the optional pretrained backbones, ``pip install 'cnnlab[timm]'``).

It is called only when a ``timm:`` model is first used, never when cnnlab is imported, so the rest of
cnnlab works (and starts as fast) without timm, torchvision or huggingface_hub.
"""

from __future__ import annotations

import contextlib
import sys
from types import ModuleType

import torch

from cnnlab.errors import CnnlabError

INSTALL_HINT = "timm backbones need the optional dependencies: pip install 'cnnlab[timm]'"

# torchvision's ops that its Python side registers "fake" (meta) kernels for at import
_TORCHVISION_OPS = ("nms", "qnms")
_NMS_SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"


def import_timm() -> ModuleType:
    """``import timm``, or one clear error naming the extra to install.

    Example:
        >>> timm = import_timm()  # doctest: +SKIP
        >>> timm.create_model("resnet18", num_classes=3)  # doctest: +SKIP
    """
    try:
        import_torchvision()
        # deferred: timm is the optional `timm` extra (see the module's docstring)
        import timm
    except CnnlabError:
        raise
    except Exception as exc:  # not installed, or installed but broken: the same remedy
        raise CnnlabError(f"{INSTALL_HINT} ({type(exc).__name__}: {exc})") from None
    return timm


def import_torchvision() -> None:
    """Import torchvision (timm imports it for a few layers and transforms).

    A narrow compatibility shim: PyPI's torchvision wheels are built against the CUDA build of torch.
    Beside a CPU-only torch of the same version their compiled ops library does not load, which
    torchvision tolerates, but its ``_meta_registrations`` then registers fake kernels for
    ``torchvision::nms`` and ``torchvision::qnms``, operators that only that library declares, and the
    import fails with "operator torchvision::nms does not exist". Declaring the two schemas (not their
    kernels: timm's classifiers never call nms) lets the pure-Python rest of torchvision import. This
    runs only after that exact failure; where torchvision imports normally it does nothing.
    """
    try:
        # deferred: torchvision is the optional `timm` extra
        import torchvision  # noqa: F401
    except RuntimeError as exc:
        if not any(f"operator torchvision::{op} does not exist" in str(exc) for op in _TORCHVISION_OPS):
            raise
        for op in _TORCHVISION_OPS:
            with contextlib.suppress(RuntimeError):  # already declared: nothing to add
                torch.library.define(f"torchvision::{op}", _NMS_SCHEMA)
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]  # the half-imported package, so the retry starts clean
        # deferred: the retry of the optional import above
        import torchvision  # noqa: F401, F811
