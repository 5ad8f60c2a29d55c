"""The names a user types, checked without loading PyTorch: built-in datasets and models, layer specs,
and dataset folders. `cnnlab train --model resnet_ff` or `--data mypic` fails in a fraction of a second,
with the close matches, before any import of torch or any image is decoded.

The catalogue's names are listed here as data; a test holds them equal to the registry and the loaders.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from cnnlab.errors import CnnlabError, NotFoundError, did_you_mean

BUILTIN_DATASETS = ("fashion_mnist", "mnist", "cifar10")
BUILTIN_MODELS = (
    "mlp", "cnn1", "cnn2", "cnn4", "fastcnn", "speednet", "resnet_s", "resnet_w", "resnet_f",
)  # fmt: skip
ACTIVATION_NAMES = ("relu", "gelu", "silu", "elu", "tanh", "sigmoid", "leakyrelu", "linear")
TIMM_PREFIX = "timm:"

GRAMMAR = (
    "conv<C>[k<K>][s<S>][p<P>|psame], dense<N>, pool[<K>][s<S>], maxpool<K>, avgpool<K>, gap, "
    "drop<P> (e.g. drop.25), bn, flatten, and activations " + ", ".join(ACTIVATION_NAMES)
)

MAX_PARAMS = 2_000_000_000  # 8 GB of float32 weights
MAX_WIDTH = 65536  # channels or units per layer: beyond any real network, well before memory runs out
_CONV = re.compile(r"conv(\d+)((?:[ksp](?:\d+|same))*)")
_CONV_OPT = re.compile(r"([ksp])(\d+|same)")
_POOL = re.compile(r"(max|avg)?pool(\d+)?(?:s(\d+))?")
_DROP = re.compile(r"drop(\d*\.\d+|\d+(?:\.\d+)?)")
_DENSE = re.compile(r"dense(\d+)")


@dataclass(frozen=True)
class Token:
    kind: str  # conv, dense, pool, gap, drop, bn, flatten, act
    args: tuple = ()


def _fail(spec: str, token: str, why: str) -> CnnlabError:
    return CnnlabError(f"Invalid layer spec {spec!r}: {why} in token {token!r}. Allowed tokens: {GRAMMAR}")


def spec_error(spec: str, why: str) -> CnnlabError:
    return CnnlabError(f"Invalid layer spec {spec!r}: {why}. Allowed tokens: {GRAMMAR}")


def parse_spec(spec: str) -> list[Token]:
    """Parse a spec string into tokens, checking each value. Raises CnnlabError naming the bad token."""
    if not spec or not spec.strip():
        raise CnnlabError(f"Empty layer spec. Allowed tokens: {GRAMMAR}")
    tokens: list[Token] = []
    for raw in spec.strip().lower().split("-"):
        if not raw:
            raise _fail(spec, raw, "empty token (two '-' in a row?)")
        if m := _CONV.fullmatch(raw):
            opts = dict(_CONV_OPT.findall(m[2]))
            if "same" in (opts.get("k"), opts.get("s")) or len(_CONV_OPT.findall(m[2])) != len(opts):
                raise _fail(spec, raw, "each of k, s, p at most once; only p may be 'same'")
            channels, k, s = int(m[1]), int(opts.get("k", 3)), int(opts.get("s", 1))
            pad = opts.get("p", "0")
            if channels < 1 or k < 1 or s < 1:
                raise _fail(spec, raw, "channels, kernel and stride must be positive")
            if channels > MAX_WIDTH or k > 64:
                raise _fail(spec, raw, f"at most {MAX_WIDTH:,} channels and a 64x64 kernel")
            if pad == "same" and s != 1:
                raise _fail(spec, raw, "'same' padding needs stride 1")
            tokens.append(Token("conv", (channels, k, s, pad if pad == "same" else int(pad))))
        elif m := _DENSE.fullmatch(raw):
            if not 1 <= int(m[1]) <= MAX_WIDTH:
                raise _fail(spec, raw, f"a dense layer needs 1 to {MAX_WIDTH:,} units")
            tokens.append(Token("dense", (int(m[1]),)))
        elif m := _POOL.fullmatch(raw):
            k = int(m[2] or 2)
            s = int(m[3] or k)
            if k < 1 or s < 1:
                raise _fail(spec, raw, "pool size and stride must be positive")
            tokens.append(Token("pool", (m[1] or "max", k, s)))
        elif m := _DROP.fullmatch(raw):
            p = float(m[1])
            if not 0.0 <= p < 1.0:
                raise _fail(spec, raw, "dropout rate must be in [0, 1)")
            tokens.append(Token("drop", (p,)))
        elif raw in ("gap", "bn", "flatten"):
            tokens.append(Token(raw))
        elif raw in ACTIVATION_NAMES:
            tokens.append(Token("act", (raw,)))
        else:
            hint = f" ('{raw}' needs a size, e.g. {raw}32)" if raw in ("conv", "dense") else ""
            words = ("conv", "dense", "pool", "maxpool", "avgpool", "gap", "drop", "bn", "flatten")
            close = did_you_mean(raw, (*words, *ACTIVATION_NAMES))
            raise spec_error(spec, f"unknown token {raw!r}{close}{hint}")
    return tokens


def check_dataset_name(name: object) -> None:
    """Refuse, before anything is read, a dataset that is neither a built-in name nor an existing path:
    a typo of a built-in or of a folder beside it gets the close matches."""
    if isinstance(name, str) and name in BUILTIN_DATASETS:
        return
    if not isinstance(name, (str, os.PathLike)) or not os.path.exists(name):
        raise unknown_dataset(name)


def unknown_dataset(name: object) -> CnnlabError:
    """The one error for a dataset that cannot be loaded by name: a file, a missing path, a typo."""
    if isinstance(name, (str, os.PathLike)) and os.path.isfile(name):
        return CnnlabError(
            f"'{name}' is a file, not a dataset: pass a folder with one sub-folder per class or a CSV of path,label."
        )
    available = f"Available: {', '.join(BUILTIN_DATASETS)}, or a folder with one sub-folder per class, or a CSV of path,label"
    if not isinstance(name, (str, os.PathLike)) or not str(name).strip():
        return CnnlabError(f"Unknown dataset {name!r}. {available}.")
    text = str(name)
    parent, base = os.path.split(text.rstrip("/" + os.sep))
    try:
        beside = [e.name for e in os.scandir(parent or ".") if e.is_dir() or e.name.endswith(".csv")]
    except OSError:
        beside = []
    folder_hint = did_you_mean(base, beside, what=" beside it")
    if folder_hint or os.sep in text or "/" in text or text.endswith(".csv"):
        return CnnlabError(f"Dataset folder or CSV '{text}' does not exist{folder_hint}.")
    hint = did_you_mean(text, BUILTIN_DATASETS)
    return CnnlabError(f"Unknown dataset {text!r}{hint}. {available} (there is no folder '{text}' here).")


def check_model_name(name: object, registered: tuple[str, ...] = BUILTIN_MODELS) -> None:
    """Refuse a model that is no ``registered`` name and no layer spec, with the close matches. A timm name
    passes here (timm itself knows its names: `cnnlab.models.check_model_name` asks it)."""
    if not isinstance(name, str):
        raise CnnlabError(f"A model is a name or a layer spec, got {name!r}")
    if name in registered or TIMM_PREFIX in name:
        return
    try:
        parse_spec(name)
    except CnnlabError as exc:
        if "-" in name or "unknown token" not in str(exc):
            raise
        raise NotFoundError(
            f"Unknown model {name!r}{did_you_mean(name, registered)}. Available: {', '.join(registered)}; "
            "timm:NAME for a timm backbone; or a layer spec such as 'conv32-pool-dense64'"
        ) from None
