"""The training loop in plain sight: per epoch, per step — batch, forward, loss, backward, step — and
callbacks at the edges (progress, checkpoints and graceful stop, the non-finite guard, EMA, history,
early stopping).

``fit`` trains any ``nn.Module`` on any object with ``.train`` and ``.val`` splits (each with uint8
``images`` (N, C, H, W) and int64 ``labels``); it knows no model or dataset names. The data stay on the
device as uint8; batches are index gathers; augmentation runs on the device per batch.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import torch
from torch import nn

from cnnlab.config import TrainConfig, TrainOptions, training_options
from cnnlab.engine.augment import Augment
from cnnlab.engine.batches import DeviceBatches, StreamBatches
from cnnlab.engine.callbacks import Callback, CallbackList, TrainState
from cnnlab.engine.checkpoint import Checkpoint
from cnnlab.engine.checkpointing import Checkpointing
from cnnlab.engine.distributed import Distributed
from cnnlab.engine.ema import EMA, FreezeBackbone
from cnnlab.engine.graphs import GraphedStep, use_graphs
from cnnlab.engine.guard import NonFiniteGuard
from cnnlab.engine.history import History
from cnnlab.engine.inference import evaluate
from cnnlab.engine.placement import check_stream_memory, choose_placement
from cnnlab.engine.progress import ProgressBar
from cnnlab.engine.rewrite import step_rewrites
from cnnlab.engine.setup import held_memory, resolve_device
from cnnlab.engine.snapshot import Checkpointer
from cnnlab.engine.step import TrainStep
from cnnlab.seeds import derive_seed

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # typing.Unpack is 3.11+; typing_extensions comes with torch
    from typing_extensions import Unpack


def fit(
    model: nn.Module,
    data,
    config: TrainConfig | None = None,
    *,
    callbacks: Sequence[Callback] = (),
    device: str | torch.device | None = None,
    progress: bool = True,
    validate: bool = True,
    checkpoints: Checkpointer | None = None,
    resume: Checkpoint | None = None,
    **overrides: Unpack[TrainOptions],
) -> History:
    """Train ``model`` on ``data.train``, validating on ``data.val`` after every epoch.

    The training options (``epochs``, ``batch_size``, ``lr``, ``optimizer``, ``schedule``,
    ``label_smoothing``, ``clip_grad_norm``, ``augment_*``, ``ema``, ``amp``, ``compile``,
    ``channels_last``, ``seed``...) come from ``config`` (a ``TrainConfig``; its other groups are not fit's
    concern) and then ``overrides``, keyword by keyword. Both are typed, so an IDE completes the names and
    mypy catches ``fit(model, data, epohcs=3)`` (the overrides are a ``TrainOptions``, kept in step with
    the option table by a test); at run time each override is still checked against the table as ``cnnlab
    train`` checks its flags (an unknown name is an error that suggests the nearest). Cross-entropy on logits. Returns the ``History``; with
    ``EarlyStopping(restore_best_weights=True)`` the model ends holding the best epoch's weights, with
    ``ema`` the averaged ones.

    With ``checkpoints`` (a ``Checkpointer``) the whole training state is saved every N steps and at the end
    of every epoch, and the first SIGINT/SIGTERM finishes the step, saves and raises ``Interrupted``. With
    ``resume`` (from ``load_checkpoint``) training continues exactly where that checkpoint stopped. Inside a
    ``torch.distributed`` job (torchrun) the model trains data-parallel: ``batch_size`` is the global batch.

    Example:
        >>> import cnnlab as cl  # doctest: +SKIP
        >>> data = cl.load_data("fashion_mnist", split="tutorial", limit=2000)
        >>> model = cl.create_model("cnn2", seed=0)
        >>> history = cl.fit(model, data, epochs=2, callbacks=[cl.EarlyStopping(patience=5)])
    """
    cfg = training_options(overrides, config)
    dev, ddp = resolve_device(device), Distributed.current()
    graphs = use_graphs(cfg.cuda_graphs, dev, ddp, cfg)  # fixed shapes: the last short batch is dropped
    train = placed(model, data, cfg, dev, ddp, drop_last=graphs)
    val = getattr(data, "val", None) if validate else None
    step = (GraphedStep if graphs else TrainStep)(
        model, cfg, steps_per_epoch=len(train), device=dev, ddp=ddp, example=train
    )
    augment = augmentation(cfg)
    history = History(compile_seconds=step.compile_seconds)
    state = TrainState(
        model=model,
        epochs=cfg.epochs,
        steps_per_epoch=len(train),
        device=dev,
        ddp=ddp,
        optimizer=step.optimizer,
        schedule=step.schedule,
    )
    edges = side_concerns(cfg, state, history, callbacks, progress, checkpoints, resume)
    loop = state.view()  # what callbacks see: read-only, plus their requests (stop, ...)

    def check(loss: torch.Tensor) -> None:  # inside the step: after backward, before the weights change
        state.loss = loss
        edges.on_before_optimizer_step(loop)  # the non-finite guard

    with held_memory(dev, cfg.hold_memory), step_rewrites(model, dev.type == "cpu"), edges.training(state):
        for epoch in range(state.first_epoch, cfg.epochs + 1):
            state.begin_epoch(epoch)
            edges.on_epoch_begin(loop)
            model.train()
            for x, y, idx in train.epoch(epoch, start_step=state.step):
                edges.on_train_batch_begin(loop)
                if augment is not None:
                    x = augment(x, idx, seed=cfg.seed, epoch=epoch, step=state.step)
                n = len(y)  # the global batch; under DDP this rank trains on its shard of it
                x, y, state.batch_indices = ddp.shard(x), ddp.shard(y), ddp.shard(idx)
                # forward, loss, backward, check, clip, optimizer and lr step (eager, or a graph's replay)
                loss, logits = step(x, y, share=ddp.loss_share(len(y), n), check=check)
                state.sums.add(loss, logits, y)
                state.step, state.global_step = state.step + 1, state.global_step + 1
                edges.on_train_batch_end(loop)  # EMA, checkpoints, progress
            state.logs = epoch_logs(state, train.num_samples, val, cfg)
            edges.on_epoch_end(loop)  # guard, history, progress, early stopping, checkpoints
            if state.stop_training:
                break
    return history


def placed(
    model: nn.Module, data, cfg: TrainConfig, dev: torch.device, ddp: Distributed, *, drop_last: bool
) -> DeviceBatches | StreamBatches:
    """Put ``model`` on ``dev`` in the config's memory layout, seed dropout (per rank), and return the
    training split's batches: resident on ``dev``, or streamed (``cfg.data_placement``, see
    ``cnnlab.engine.placement``); both give the same batches for the same seed."""
    mf = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(device=dev, memory_format=mf)  # type: ignore[call-overload]  # Module.to takes memory_format
    torch.manual_seed(cfg.seed if ddp.rank == 0 else derive_seed(cfg.seed, ddp.rank))  # dropout, per rank
    where, _ = choose_placement(cfg.data_placement, data.train.images, dev)
    settings: dict[str, Any] = dict(
        batch_size=cfg.batch_size, device=dev, shuffle=True, seed=cfg.seed, memory_format=mf
    )
    if where == "stream":  # under DDP each rank reads only its rows of each global batch
        # the cap holds the host's memory: the model's step counts there when it trains on the CPU
        on_host = model if dev.type == "cpu" else None
        check_stream_memory(
            data.train.images, cfg.batch_size, model=on_host, optimizer=cfg.optimizer, amp=cfg.amp
        )
        shard = ddp.shard_rows if ddp.active else None
        return StreamBatches(
            data.train.images, data.train.labels, shard=shard, drop_last=drop_last, **settings
        )
    return DeviceBatches(data.train.images, data.train.labels, drop_last=drop_last, **settings)


def side_concerns(
    cfg: TrainConfig,
    state: TrainState,
    history: History,
    callbacks: Sequence[Callback],
    progress: bool,
    checkpoints: Checkpointer | None,
    resume: Checkpoint | None,
) -> CallbackList:
    """The callbacks around the loop: the built-in ones the config asks for and the user's, run in order of
    their ``priority``."""
    ema = EMA(cfg.ema) if cfg.ema else None
    edges: list[Callback] = [NonFiniteGuard(checkpoints), history, *list(callbacks)]
    edges += [ema] if ema else []
    edges += [FreezeBackbone(cfg.freeze_epochs)] if cfg.freeze_epochs else []
    edges += [ProgressBar()] if progress and state.ddp.is_main else []
    if checkpoints or resume:
        edges.append(
            Checkpointing(
                checkpoints, loop=state, history=history, resume=resume, callbacks=callbacks, ema=ema
            )
        )
    return CallbackList(edges)


def augmentation(cfg: TrainConfig) -> Augment | None:
    """The config's ``augment_<name>`` options as an ``Augment`` (None when it does nothing)."""
    augment = Augment(**{f.name: getattr(cfg, "augment_" + f.name) for f in fields(Augment)})
    return augment if augment.active else None


def epoch_logs(state: TrainState, num_samples: int, val, cfg: TrainConfig) -> dict:
    """The epoch's row: training loss and accuracy over all ranks, validation (its loss measured with the
    training loss function, label smoothing included, as Keras does), lr and seconds."""
    sums = state.sums
    state.ddp.sum(sums.loss_sum, sums.correct)  # over ranks: together they saw each sample once
    row = {"epoch": state.epoch, "loss": sums.loss_sum.item() / num_samples}
    row["accuracy"] = sums.correct.item() / num_samples
    if val is not None and len(val.labels):
        m = evaluate(  # the EMA average when there is one
            state.weights if state.weights is not None else state.model,
            val,
            device=state.device,
            amp=cfg.amp,
            label_smoothing=cfg.label_smoothing,
        )
        row.update(val_loss=m["loss"], val_accuracy=m["accuracy"])
    return {**row, "lr": state.epoch_lr, "seconds": time.perf_counter() - state.epoch_t0}
