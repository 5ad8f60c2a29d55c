"""cnnlab: convolutional networks on images, from hand-made kernels to an explainer for any trained model.

Example:
    >>> import cnnlab as cl
    >>> data = cl.load_data("fashion_mnist", split="tutorial", seed=0)  # doctest: +SKIP
    >>> model = cl.create_model("cnn2")
    >>> cl.count_params(model)
    485514

Names are imported on first use (PEP 562), so `cnnlab filters` and `cnnlab --help` start without
loading PyTorch. The public API is exactly `__all__`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cnnlab.version import __version__  # noqa: F401  (in __all__)

if TYPE_CHECKING:  # the same names, eagerly, for IDEs and mypy (``cl.fit``'s options are then typed)
    from cnnlab import data, engine, explain, filters, models  # noqa: F401
    from cnnlab.config import TrainConfig  # noqa: F401
    from cnnlab.data import Dataset, list_datasets, load_data  # noqa: F401
    from cnnlab.engine import EarlyStopping, History, evaluate, fit, predict  # noqa: F401
    from cnnlab.errors import CnnlabError  # noqa: F401
    from cnnlab.experiment import build_model, compare, train  # noqa: F401
    from cnnlab.images import load_image  # noqa: F401
    from cnnlab.models import count_params, create_model, list_models, register_model  # noqa: F401
    from cnnlab.run.folder import load_run, save_run  # noqa: F401
    from cnnlab.summarize import summary  # noqa: F401


# public name -> module that defines it (the TYPE_CHECKING imports above name the same; a test keeps them so)
_EXPORTS = {
    "CnnlabError": "cnnlab.errors",
    "load_data": "cnnlab.data",
    "list_datasets": "cnnlab.data",
    "Dataset": "cnnlab.data",
    "create_model": "cnnlab.models",
    "list_models": "cnnlab.models",
    "register_model": "cnnlab.models",
    "count_params": "cnnlab.models",
    "summary": "cnnlab.summarize",
    "fit": "cnnlab.engine",
    "evaluate": "cnnlab.engine",
    "predict": "cnnlab.engine",
    "EarlyStopping": "cnnlab.engine",
    "History": "cnnlab.engine",
    "TrainConfig": "cnnlab.config",
    "save_run": "cnnlab.run.folder",
    "load_run": "cnnlab.run.folder",
    "train": "cnnlab.experiment",
    "build_model": "cnnlab.experiment",
    "compare": "cnnlab.experiment",
    "load_image": "cnnlab.images",
}
_SUBMODULES = ("filters", "explain", "data", "models", "engine")

__all__ = sorted([*_EXPORTS, *_SUBMODULES, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"cnnlab.{name}")
    else:
        raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
