"""What a checkpoint holds and when fit() takes one.

``Checkpointer`` is the policy (where, how often, how many to keep); ``capture``/``restore`` turn the
training objects (model, optimizer, schedule, EMA, callbacks, history, the epoch's running sums and every
RNG state) into a checkpoint's contents and back, so a resumed run continues bit for bit.
"""

from __future__ import annotations

import base64
import json
import os
import random
import secrets
import shutil
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from cnnlab.atomic import write_json
from cnnlab.engine.checkpoint import (
    Checkpoint,
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    prune,
    step_of,
    write_checkpoint,
)
from cnnlab.engine.history import History


class Stateful(Protocol):
    """What a checkpoint saves and loads besides tensors' owners: ``state_dict`` / ``load_state_dict``."""

    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict, /) -> Any: ...


def _set_aside_as(folder: Path) -> str:
    """Where a checkpoint newer than the resumed one goes: ``discarded`` if corrupt, else ``superseded``."""
    try:
        load_checkpoint(folder)
    except CheckpointError:
        return "discarded"
    return "superseded"


def _aside_folder(folder: Path, name: str) -> Path:
    """``folder/name`` as a real folder inside the checkpoints folder, made when missing: a link there (to
    anywhere) or a file is refused, so a set-aside checkpoint never leaves the run."""
    path = folder / name
    if os.path.islink(path) or (os.path.lexists(path) and not path.is_dir()):
        raise CheckpointError(
            f"{path} is {'a link' if os.path.islink(path) else 'not a folder'}; checkpoints are set aside "
            f"only in a real {name}/ folder inside the run: remove it and resume again"
        )
    path.mkdir(exist_ok=True)
    return path


class Checkpointer:
    """Where and how often ``fit`` saves its full state.

    Args:
        folder: the checkpoints folder (``<run>/checkpoints``); reports go to its parent, the run folder.
        every: also save every this many optimizer steps (0: only at the end of each epoch).
        keep: keep the newest ``keep`` checkpoints, plus the one that ends the best epoch.
        meta: JSON-able facts stored with each checkpoint (the run's config), compared on resume.

    Example:
        >>> ckpt = Checkpointer("runs/cnn2/checkpoints", every=500, keep=3)  # doctest: +SKIP
        >>> cl.fit(model, data, epochs=10, checkpoints=ckpt)
    """

    def __init__(self, folder: str | os.PathLike, *, every: int = 0, keep: int = 3, meta: dict | None = None):
        if every < 0 or keep < 1:
            raise ValueError("every must be >= 0 and keep >= 1")
        self.folder = Path(folder)
        self.every = every
        self.keep = keep
        self.meta = meta or {}
        self.last: Path | None = None

    def due(self, global_step: int) -> bool:
        return self.every > 0 and global_step % self.every == 0

    def check_writable(self) -> None:
        """Fail now, clearly, if checkpoints cannot be written (not after an hour of training). Folders
        made for the probe are removed again, so a run that fails later leaves nothing behind."""
        missing, p = [], self.folder
        while not p.exists() and p != p.parent:
            missing.append(p)
            p = p.parent
        created = []
        try:
            for d in reversed(missing):
                d.mkdir()
                created.append(d)
            probe = self.folder / f".probe-{secrets.token_hex(4)}"
            probe.write_bytes(b"cnnlab")
            probe.unlink()
        except OSError as exc:
            raise CheckpointError(
                f"Cannot write checkpoints to {self.folder}: {exc.strerror or exc}; choose a writable --out"
            ) from None
        finally:
            for d in reversed(created):
                d.rmdir()

    def begin(self, global_step: int) -> None:
        """Before the first save of a (resumed) run: drop temp folders a crash left behind, and set aside
        checkpoints newer than ``global_step`` so ``--resume auto`` never picks them again: corrupt ones
        (passed over when resuming) into ``discarded/``, valid ones (a timeline abandoned by resuming from
        an older checkpoint on purpose) into ``superseded/``. Checkpoints up to ``global_step`` are never
        moved."""
        if global_step < 0:
            raise CheckpointError(f"Cannot continue from step {global_step}: steps are never negative")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for d in self.folder.iterdir():
                if d.is_dir() and d.name.startswith((".tmp-", ".old-")):
                    shutil.rmtree(d, ignore_errors=True)
            for d in list_checkpoints(self.folder):
                if step_of(d) > global_step:
                    aside = _aside_folder(self.folder, _set_aside_as(d)) / f"{d.name}-{secrets.token_hex(4)}"
                    os.rename(d, aside)
        except OSError as exc:
            raise CheckpointError(f"Cannot prepare {self.folder}: {exc.strerror or exc}") from None
        existing = list_checkpoints(self.folder)
        self.last = existing[0] if existing else None

    def save(
        self,
        global_step: int,
        model_state: dict,
        state: dict,
        *,
        epoch_end: int | None,
        best_epoch: int | None,
    ) -> Path:
        self.last = write_checkpoint(self.folder, global_step, model_state, state, epoch_end=epoch_end)
        prune(self.folder, keep=self.keep, best_epoch=best_epoch)
        return self.last

    def write_report(self, name: str, report: dict) -> Path:
        """A small JSON report in the run folder (e.g. why training stopped)."""
        path = self.folder.parent / name
        write_json(path, report)
        return path


# ---- RNG states ----------------------------------------------------------------------------------------


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.numpy().tobytes()).decode()


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)


def rng_state() -> dict:
    """This process's RNG states as JSON: torch CPU (dropout on CPU), CUDA (dropout on GPU), numpy,
    Python ``random``. (Batch order and augmentation are seeded by (seed, epoch, step) and need none.)"""
    np_state = np.random.get_state(legacy=False)
    return {
        "torch": _b64(torch.get_rng_state()),
        "cuda": [_b64(s.cpu()) for s in torch.cuda.get_rng_state_all()]
        if torch.cuda.is_available()
        else None,
        "numpy": {**np_state, "state": {**np_state["state"], "key": np_state["state"]["key"].tolist()}},
        "python": json.loads(json.dumps(random.getstate())),
    }


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(_unb64(s["torch"]))
    if s.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_unb64(c) for c in s["cuda"]])
    np_state = s["numpy"]
    key = np.asarray(np_state["state"]["key"], dtype=np.uint32)
    np.random.set_state({**np_state, "state": {**np_state["state"], "key": key}})
    version, internal, gauss = s["python"]
    random.setstate((version, tuple(internal), gauss))


# ---- capture / restore ---------------------------------------------------------------------------------


def rank_state(sums: dict | None) -> dict:
    """What differs between ranks: the RNG states and the running sums of the epoch in progress."""
    return {"rng": rng_state(), "sums": sums}


def capture(
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule,
    ema: Stateful | None,
    callbacks,
    history: History,
    position: dict,
    ranks: list[dict],
    meta: dict,
) -> tuple[dict, dict]:
    """(model weights, everything else) for ``write_checkpoint``.

    ``position``: epoch (1-based, the next one to train), step (its batches already done), global_step,
    done, best_epoch, stopped_early, and the epoch's start lr and seconds so far. ``ranks``: one
    ``rank_state()`` per rank, in rank order.
    """
    state = {
        "meta": meta,
        "position": position,
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict() if schedule is not None else None,
        "ema": ema.state_dict() if ema is not None else None,
        "callbacks": [cb.state_dict() if hasattr(cb, "state_dict") else None for cb in callbacks],
        "history": history.rows,
        "ranks": ranks,
    }
    return model.state_dict(), state


def _match_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give each loaded moment its parameter's memory layout. Saved tensors come back contiguous, while a
    channels_last model's conv weights are not; fused and foreach optimizers walk a parameter and its
    moments as flat memory, so a layout mismatch pairs the wrong elements."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == p.shape and value.stride() != p.stride():
                    state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def restore(
    ckpt: Checkpoint,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule,
    ema: Stateful | None,
    callbacks,
    history: History,
    rank: int = 0,
) -> tuple[dict, dict | None]:
    """Load ``ckpt`` into the training objects and this rank's RNGs; returns (position, this rank's sums)."""
    s = ckpt.state
    try:
        model.load_state_dict(ckpt.model)
        optimizer.load_state_dict(s["optimizer"])
        _match_layouts(optimizer)
        if (schedule is None) != (s["schedule"] is None) or (ema is None) != (s["ema"] is None):
            raise ValueError("the schedule or EMA setting differs from the checkpoint's")
        if schedule is not None:
            schedule.load_state_dict(s["schedule"])
        if ema is not None:
            ema.load_state_dict(s["ema"])
        if len(s["callbacks"]) != len(callbacks):
            raise ValueError(f"{len(s['callbacks'])} callbacks were saved, {len(callbacks)} are given")
        for cb, cb_state in zip(callbacks, s["callbacks"], strict=True):
            if cb_state is not None and hasattr(cb, "load_state_dict"):
                cb.load_state_dict(cb_state)
        history.rows = [dict(r) for r in s["history"]]
        mine = s["ranks"][rank % len(s["ranks"])]
        set_rng_state(mine["rng"])
        position = dict(s["position"])
        for key in ("epoch", "step", "global_step"):
            position[key] = int(position[key])
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{ckpt.path} does not fit this model and training setup: {first}") from None
    return position, mine["sums"]
