"""Pretrained weights for timm backbones: found in the Hugging Face cache (or downloaded when online), or
read from a local safetensors file, and checked tensor by tensor before any is loaded.

A file may use timm's names (a ``model.safetensors`` from the hub) or cnnlab's stage names (the
``weights.safetensors`` of a cnnlab run of the same backbone). The classifier may differ (another
number of classes): it is then left freshly initialised. A 3-channel input convolution is adapted to
grey images the way timm does it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from cnnlab.errors import CnnlabError, NotFoundError
from cnnlab.models.timm_config import PREFIX, BackboneConfig
from cnnlab.models.timm_import import import_timm
from cnnlab.tensorfiles import TensorFileError, read_header
from cnnlab.userfiles import UserFileError, UserFileNotFound

HUB_FILE = "model.safetensors"
Pretrained = bool | str | os.PathLike | None  # True: the ImageNet weights; a path: a local file


def pretrained_file(cfg: BackboneConfig, *, note: Callable[[str], None] | None = None) -> Path:
    """The local path of a backbone's ImageNet weights: from the Hugging Face cache, else downloaded
    (``note`` is told first, so a slow or failing network is never a silent wait).

    Offline without them in the cache: one error naming the cache folder and ``--pretrained PATH``.
    """
    # deferred: huggingface_hub is the optional `timm` extra
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url

    if not cfg.hf_hub_id:
        raise NotFoundError(
            f"timm has no downloadable weights for {PREFIX}{cfg.name}; pass --pretrained PATH with a "
            "safetensors file, or choose a backbone that has them (python -c 'import timm; print(timm.list_pretrained())')"
        )
    try:
        return Path(hf_hub_download(cfg.hf_hub_id, HUB_FILE, local_files_only=True))
    except Exception:  # not in the cache (LocalEntryNotFoundError), or the cache is unreadable
        pass
    why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else ""
    if not why and note is not None:
        note(
            f"{PREFIX}{cfg.name}: ImageNet weights not in the Hugging Face cache; downloading {cfg.hf_hub_id}"
        )
    if not why:
        try:  # one quick look first: offline, the download itself retries for half a minute
            get_hf_file_metadata(hf_hub_url(cfg.hf_hub_id, HUB_FILE), timeout=10)
            return Path(hf_hub_download(cfg.hf_hub_id, HUB_FILE))
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:200]
    raise CnnlabError(
        f"No pretrained weights for {PREFIX}{cfg.name}: {cfg.hf_hub_id}/{HUB_FILE} is not in the Hugging Face "
        f"cache ({constants.HF_HUB_CACHE}) and could not be downloaded ({why}). Run once where you are online "
        "(the file lands in that cache, which you can copy here), or pass --pretrained PATH with a local "
        "safetensors file"
    )


def timm_names(net: nn.Module) -> dict[int, str]:
    """timm's name of each tensor of ``net``, by identity (taken before the network becomes stages)."""
    return {id(t): k for k, t in net.state_dict(keep_vars=True).items()}


def load_weights(
    model: nn.Sequential,
    path: str | os.PathLike,
    *,
    names: dict[int, str],
    cfg: BackboneConfig,
    in_chans: int,
) -> None:
    """Load the safetensors file at ``path`` into ``model`` (a backbone's stages; ``names`` from
    `timm_names`). Every tensor must fit, except the classifier's, which is skipped when it does not."""
    state = _read(Path(path))
    own = model.state_dict(keep_vars=True)  # cnnlab's stage names (a cnnlab run's weights file uses them)
    from_timm = {names[id(t)]: k for k, t in own.items() if id(t) in names}  # timm's (a hub file's)
    to_timm = {v: k for k, v in from_timm.items()}
    classifier = {k for k in own if k.startswith("output.")}
    first_conv = from_timm.get(f"{cfg.first_conv}.weight")
    loaded: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    misfit: dict[str, str] = {}
    for key, tensor in state.items():
        if key.startswith("normalize."):  # a cnnlab run's normalisation: set from the config, not here
            continue
        name = key if key in own else from_timm.get(key)
        if name is None:
            unexpected.append(key)
            continue
        want = own[name].shape
        if name == first_conv and tensor.ndim == 4 and tensor.shape[1] != want[1]:
            tensor = _adapt_input_conv(tensor, in_chans)
        if tensor.shape == want:
            loaded[name] = tensor
        elif name not in classifier:  # a new classifier for other classes is expected; nothing else is
            misfit[name] = f"{key} is {tuple(tensor.shape)} in the file, {tuple(want)} in the model"
    missing = [to_timm.get(k, k) for k in own if k not in loaded and k not in classifier and k not in misfit]
    _check(Path(path), cfg, list(misfit.values()), missing, unexpected)
    with torch.no_grad():
        for name, tensor in loaded.items():
            own[name].copy_(tensor)


MAX_PRETRAINED_BYTES = 16 << 30  # the largest backbone weights file read


def _read(path: Path) -> dict[str, torch.Tensor]:
    try:  # a regular file (a FIFO or /dev/zero is named as such), its header capped and checked first
        read_header(path, max_bytes=MAX_PRETRAINED_BYTES)
    except UserFileNotFound:
        raise NotFoundError(
            f"Pretrained weights {str(path)!r} do not exist (--pretrained takes a safetensors file)"
        ) from None
    except UserFileError as exc:
        raise CnnlabError(f"--pretrained {str(path)!r}: {exc.reason}; it takes a safetensors file") from None
    except TensorFileError as exc:
        raise CnnlabError(f"{str(path)!r} is not a readable safetensors file: {exc}") from None
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CnnlabError(
            f"{path} is not a readable safetensors file ({exc}); --pretrained takes a .safetensors file"
        ) from None


def _adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    timm = import_timm()
    return timm.models.adapt_input_conv(in_chans, weight.float()).to(weight.dtype)


def _check(
    path: Path, cfg: BackboneConfig, misfit: list[str], missing: list[str], unexpected: list[str]
) -> None:
    if not (misfit or missing or unexpected):
        return
    parts = []
    if misfit:
        parts.append(f"{_tensors(len(misfit))} of another shape ({'; '.join(misfit[:2])})")
    if missing:
        parts.append(f"{_tensors(len(missing))} of the model missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{_tensors(len(unexpected))} the model lacks (e.g. {', '.join(unexpected[:3])})")
    raise CnnlabError(
        f"{path} does not fit {PREFIX}{cfg.name}: {'; '.join(parts)}. Is it the weights of another model?"
    )


def _tensors(n: int) -> str:
    return f"{n} tensor" if n == 1 else f"{n} tensors"
