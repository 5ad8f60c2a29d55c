"""Checkpoints on disk: written atomically, verified before use, loaded without running any code.

    <run>/checkpoints/step-000001234/
      model.safetensors   the model's weights (loadable on their own, like a run's model.safetensors)
      state.safetensors   every other tensor: optimizer moments, EMA and best weights, running sums
      state.json          everything else (position, config, history, schedule, RNG states); a tensor
                          appears as {"$tensor": "<name in state.safetensors>"}
      manifest.json       format, version, step, the epoch it ends (if any), size and sha256 of each
                          file, and the sha256 of the manifest itself (so a flipped bit anywhere shows)

A checkpoint is written into a hidden temp folder beside its final name (each file fsynced), then renamed
into place and the parent folder fsynced: a reader sees a whole checkpoint or none. Loading parses
safetensors and JSON only; nothing is unpickled, so a crafted file cannot run code.

Every read is bounded: a checkpoint is a real folder (a ``step-N`` link is not one), its files are opened
as regular files only (`cnnlab.userfiles`: a link to /dev/zero or a FIFO is refused at once), the manifest
is at most `MANIFEST_MAX_BYTES`, and each other file must have the size the manifest records (at most
`FILE_MAX_BYTES`) before a byte of it is read.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from cnnlab.errors import CnnlabError
from cnnlab.tensorfiles import TensorFileError, check_bytes
from cnnlab.userfiles import (
    UserFileError,
    UserFileNotFound,
    check_user_file,
    open_user_file,
    read_user_bytes,
)

FORMAT = "cnnlab-checkpoint"
VERSION = 1
MODEL, STATE_TENSORS, STATE_JSON, MANIFEST = (
    "model.safetensors",
    "state.safetensors",
    "state.json",
    "manifest.json",
)
FILES = (MODEL, STATE_TENSORS, STATE_JSON)
_NAME = re.compile(r"^step-(\d+)$")
MANIFEST_MAX_BYTES = 64 * 1024
FILE_MAX_BYTES = 64 << 30  # weights + optimizer moments of the largest model a run may build, and more


class CheckpointError(CnnlabError):
    """A checkpoint that is missing, corrupt, unwritable or not a cnnlab checkpoint. Exit code 1."""


@dataclass
class Checkpoint:
    path: Path
    step: int  # optimizer steps done
    epoch_end: int | None  # the epoch this checkpoint closes (validated, callbacks run), else None
    model: dict[str, torch.Tensor]
    state: dict  # nested; tensors in place

    @property
    def meta(self) -> dict:
        return self.state.get("meta") or {}


def folder_name(step: int) -> str:
    return f"step-{step:09d}"


# ---- nested state <-> (JSON, tensors) ------------------------------------------------------------------


def encode(obj, tensors: dict[str, torch.Tensor], path: str = "s"):
    """A JSON-able copy of ``obj`` with every tensor moved into ``tensors`` (named by its path). Tuples and
    dicts with non-string keys (an optimizer's per-parameter state) are tagged so they come back as such."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        if any(t.data_ptr() == u.data_ptr() and t.numel() for u in tensors.values()):
            t = t.clone()  # safetensors refuses tensors sharing memory
        tensors[path] = t
        return {"$tensor": path}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in obj):
            return {k: encode(v, tensors, f"{path}.{k}") for k, v in obj.items()}
        if not all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in obj):
            raise TypeError(f"cannot store dict keys of types {sorted({type(k).__name__ for k in obj})}")
        return {"$items": [[k, encode(v, tensors, f"{path}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"$tuple": [encode(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint (at {path})")


def decode(obj, tensors: dict[str, torch.Tensor]):
    """The inverse of ``encode``; anything it does not recognise is a ``CheckpointError``."""
    if isinstance(obj, dict):
        if len(obj) == 1 and next(iter(obj)).startswith("$"):
            ((tag, value),) = obj.items()
            if tag == "$tensor" and isinstance(value, str) and value in tensors:
                return tensors[value]
            if tag == "$tuple" and isinstance(value, list):
                return tuple(decode(v, tensors) for v in value)
            if (
                tag == "$items"
                and isinstance(value, list)
                and all(isinstance(kv, list) and len(kv) == 2 for kv in value)
            ):
                return {k: decode(v, tensors) for k, v in value}
            raise CheckpointError(f"state.json holds an unknown or dangling entry {tag!r}")
        return {k: decode(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(v, tensors) for v in obj]
    return obj


# ---- writing -------------------------------------------------------------------------------------------


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _digest(entries: dict) -> str:
    return hashlib.sha256(json.dumps(entries, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_checkpoint(
    root: str | os.PathLike, step: int, model_state: dict, state: dict, *, epoch_end: int | None = None
) -> Path:
    """Write one checkpoint atomically as ``root/step-<step>`` (replacing one of that name) and return it.

    A failure (disk full, no permission) raises ``CheckpointError`` and leaves every earlier checkpoint
    as it was; the half-written temp folder is removed.
    """
    root = Path(root)
    final = root / folder_name(step)
    tmp = root / f".tmp-{final.name}-{secrets.token_hex(4)}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, torch.Tensor] = {}
        state_json = json.dumps(encode(state, tensors), separators=(",", ":")).encode()
        weights = {k: v.detach().cpu().contiguous() for k, v in model_state.items()}
        blobs = {
            MODEL: save(weights, metadata={"format": FORMAT}),
            STATE_TENSORS: save(tensors, metadata={"format": FORMAT}),
            STATE_JSON: state_json,
        }
        os.mkdir(tmp)
        for name, data in blobs.items():
            _write_file(tmp / name, data)
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "step": step,
            "epoch_end": epoch_end,
            "files": {
                n: {"bytes": len(d), "sha256": hashlib.sha256(d).hexdigest()} for n, d in blobs.items()
            },
        }
        manifest["sha256"] = _digest(manifest)
        _write_file(tmp / MANIFEST, json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())
        _fsync_dir(tmp)
        if final.exists():  # the same step again (e.g. after resuming): swap, then drop the old one
            old = root / f".old-{final.name}-{secrets.token_hex(4)}"
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
        _fsync_dir(root)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(
            f"Could not write checkpoint {final}: {exc.strerror or exc}; earlier checkpoints are untouched"
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


# ---- reading -------------------------------------------------------------------------------------------


def _read(path: Path, *, max_bytes: int, exact: int | None = None) -> bytes:
    """A checkpoint file's bytes: a regular file (after links) of at most ``max_bytes`` (exactly ``exact``
    when given, checked before reading); `CheckpointError` otherwise."""
    try:
        size = check_user_file(path, what=path.name).st_size
        if exact is not None and size != exact:
            raise CheckpointError(f"{path} is truncated or padded ({size} bytes, the manifest says {exact})")
        return read_user_bytes(path, max_bytes=max_bytes, what=path.name)
    except UserFileNotFound:
        raise CheckpointError(f"{path.parent} is incomplete: {path.name} is missing") from None
    except UserFileError as exc:
        raise CheckpointError(f"{path} cannot be read: {exc.reason}") from None


def _not_a_folder(path: Path) -> CheckpointError:
    try:
        with open_user_file(path, max_bytes=FILE_MAX_BYTES, what="checkpoint") as f:
            head = f.read(4)
    except UserFileError as exc:
        return CheckpointError(f"{path} is not a checkpoint folder: {exc.reason}")
    what = (
        "a pickle (torch.save) file"
        if head[:1] == b"\x80" or head[:2] == b"PK"
        else "a file, not a checkpoint folder"
    )
    return CheckpointError(
        f"{path} is {what}; cnnlab loads only its own checkpoint folders (manifest.json, safetensors, "
        "JSON) and never unpickles, because unpickling a file can run any code in it"
    )


def _count(value) -> bool:
    """A step or epoch number: a non-negative int (JSON ``true`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def verify(path: str | os.PathLike) -> tuple[dict, dict[str, bytes]]:
    """Check a checkpoint folder: manifest well-formed and self-consistent, every file present with the
    recorded size and sha256. Returns (manifest, file contents); raises ``CheckpointError``."""
    p = Path(path)
    if os.path.lexists(p) and not p.is_dir():
        raise _not_a_folder(p)
    if not p.is_dir():
        raise CheckpointError(f"Checkpoint {p} does not exist")
    if not os.path.lexists(p / MANIFEST):
        raise CheckpointError(f"{p} is not a complete cnnlab checkpoint: {MANIFEST} is missing")
    raw = _read(p / MANIFEST, max_bytes=MANIFEST_MAX_BYTES)
    try:
        manifest = json.loads(raw)
    except (ValueError, RecursionError):
        raise CheckpointError(f"{p / MANIFEST} is corrupt (not valid JSON)") from None
    ok = (
        isinstance(manifest, dict)
        and manifest.get("format") == FORMAT
        and manifest.get("version") == VERSION
        and _count(manifest.get("step"))
        and (manifest.get("epoch_end") is None or _count(manifest.get("epoch_end")))
        and isinstance(manifest.get("files"), dict)
        and sorted(manifest["files"]) == sorted(FILES)
        and all(
            isinstance(e, dict) and isinstance(e.get("bytes"), int) and isinstance(e.get("sha256"), str)
            for e in manifest["files"].values()
        )
    )
    if not ok:
        raise CheckpointError(
            f"{p / MANIFEST} is not a cnnlab checkpoint manifest (format {FORMAT} v{VERSION})"
        )
    if _digest({k: v for k, v in manifest.items() if k != "sha256"}) != manifest.get("sha256"):
        raise CheckpointError(f"{p / MANIFEST} is corrupt (its own sha256 does not match)")
    named = _NAME.match(p.name)
    if named and int(named.group(1)) != manifest["step"]:
        raise CheckpointError(
            f"{p / MANIFEST} is corrupt (it says step {manifest['step']}, the folder is named {p.name})"
        )
    contents = {}
    for name, entry in manifest["files"].items():
        if not 0 <= entry["bytes"] <= FILE_MAX_BYTES:
            raise CheckpointError(f"{p / MANIFEST} is corrupt (it gives {name} {entry['bytes']} bytes)")
        data = _read(p / name, max_bytes=entry["bytes"], exact=entry["bytes"])
        if len(data) != entry["bytes"]:
            raise CheckpointError(
                f"{p / name} is truncated or padded ({len(data)} bytes, the manifest says {entry['bytes']})"
            )
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise CheckpointError(f"{p / name} is corrupt (sha256 does not match the manifest)")
        contents[name] = data
    return manifest, contents


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Verify and parse a checkpoint folder (CPU tensors). Raises ``CheckpointError`` with the reason.

    Example:
        >>> ckpt = load_checkpoint("runs/cnn2/checkpoints/step-000001407")  # doctest: +SKIP
        >>> ckpt.step, ckpt.state["position"]
    """
    p = Path(path)
    manifest, contents = verify(p)
    try:
        for name in (MODEL, STATE_TENSORS):  # headers capped and checked before safetensors parses them
            check_bytes(contents[name])
        model = load(contents[MODEL])
        tensors = load(contents[STATE_TENSORS])
    except (SafetensorError, ValueError, RuntimeError, TensorFileError) as exc:
        raise CheckpointError(f"{p} holds a file that is not valid safetensors: {exc}") from None
    try:
        raw = json.loads(contents[STATE_JSON])
    except (ValueError, RecursionError):
        raise CheckpointError(f"{p / STATE_JSON} is not valid JSON") from None
    try:
        if not isinstance(raw, dict):
            raise TypeError("not an object")
        state = decode(raw, tensors)
    except (TypeError, ValueError, RecursionError):
        raise CheckpointError(f"{p / STATE_JSON} is not a cnnlab training state") from None
    position = state.get("position")
    if (
        isinstance(position, dict)
        and "global_step" in position
        and position["global_step"] != manifest["step"]
    ):
        # resuming trusts the position: a forged one (negative, say) must not pass for this step's state
        raise CheckpointError(
            f"{p / STATE_JSON} is corrupt (its position is step {position['global_step']!r}, the manifest's "
            f"is {manifest['step']})"
        )
    return Checkpoint(p, manifest["step"], manifest.get("epoch_end"), model, state)


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Checkpoint folders under ``root``, newest (highest step) first; nothing is verified."""
    root = Path(root)
    try:
        entries = list(root.iterdir())
    except (FileNotFoundError, NotADirectoryError):  # none yet, or removed while we looked (a fresh start)
        return []
    found = [
        (int(m.group(1)), d)
        for d in entries
        if (m := _NAME.match(d.name)) and d.is_dir() and not d.is_symlink()  # a link is no checkpoint
    ]
    return [d for _, d in sorted(found, reverse=True)]


def step_of(path: Path) -> int:
    m = _NAME.match(path.name)
    return int(m.group(1)) if m else -1


def find_latest(root: str | os.PathLike) -> tuple[Checkpoint | None, list[str]]:
    """The newest checkpoint under ``root`` that verifies and parses, and one note per newer one that
    did not (why it was passed over)."""
    notes: list[str] = []
    for d in list_checkpoints(root):
        try:
            return load_checkpoint(d), notes
        except CheckpointError as exc:
            notes.append(f"skipping checkpoint {d.name}: {exc}")
    return None, notes


def prune(root: str | os.PathLike, *, keep: int, best_epoch: int | None) -> None:
    """Delete all but the newest ``keep`` checkpoints and the one that closes ``best_epoch``."""
    folders = list_checkpoints(root)
    best = None
    if best_epoch is not None:
        for d in folders:
            try:
                m = json.loads(_read(d / MANIFEST, max_bytes=MANIFEST_MAX_BYTES))
            except (CheckpointError, ValueError, RecursionError):
                continue
            if isinstance(m, dict) and m.get("epoch_end") == best_epoch:
                best = d
                break
    for d in folders[keep:]:
        if d != best:
            shutil.rmtree(d, ignore_errors=True)
