"""The training loop in plain sight: forward, loss, backward, step, log.

``fit`` trains any ``nn.Module`` on any object with ``.train`` and ``.val`` splits (each with uint8
``images`` (N, C, H, W) and int64 ``labels``); it knows no model or dataset names. The data stay on the
device as uint8; batches are index gathers; augmentation runs on the device per batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.engine.augment import Augment
from cnnlab.engine.batches import DeviceBatches
from cnnlab.engine.callbacks import Callback, TrainState
from cnnlab.engine.checkpoint import Checkpoint
from cnnlab.engine.distributed import Distributed
from cnnlab.engine.history import History
from cnnlab.engine.inference import evaluate
from cnnlab.engine.setup import (
    autocast,
    compile_model,
    make_ema,
    make_optimizer,
    make_schedule,
    resolve_device,
)
from cnnlab.engine.signals import GracefulStop, Interrupted, signal_name
from cnnlab.engine.snapshot import Checkpointer, capture, rank_state, restore
from cnnlab.errors import CnnlabError, NonFiniteLossError
from cnnlab.seeds import derive_seed


def _progress(enabled: bool):
    if not enabled:
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[metrics]}"),
        TimeRemainingColumn(),
        transient=True,
    )


def fit(
    model: nn.Module,
    data,
    *,
    epochs: int = 100,
    batch_size: int = 32,
    lr: float = 1e-3,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    schedule: str = "constant",
    label_smoothing: float = 0.0,
    augment: Augment | None = None,
    ema: float | None = None,
    amp: str = "auto",
    compile: bool = False,
    callbacks: Sequence[Callback] = (),
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    channels_last: bool = False,
    validate: bool = True,
    checkpoints: Checkpointer | None = None,
    resume: Checkpoint | None = None,
) -> History:
    """Train ``model`` on ``data.train``, validating on ``data.val`` after every epoch.

    Cross-entropy on logits (the model ends in logits; no double softmax). Returns a ``History``; with an
    ``EarlyStopping(restore_best_weights=True)`` callback the model ends holding the best epoch's weights.
    With ``ema`` (a decay such as 0.999) validation uses, and the model ends with, the averaged weights.

    With ``checkpoints`` (a ``Checkpointer``) the whole training state is saved every N steps and at the end
    of every epoch, and the first SIGINT/SIGTERM finishes the step, saves and raises ``Interrupted``. With
    ``resume`` (from ``load_checkpoint``) training continues exactly where that checkpoint stopped, mid-epoch
    included. Inside a ``torch.distributed`` job of several processes (torchrun) the model trains
    data-parallel (DDP): ``batch_size`` is the global batch and each rank trains on its shard of it.

    Example:
        >>> import cnnlab as cl  # doctest: +SKIP
        >>> data = cl.load_data("fashion_mnist", split="tutorial", limit=2000)
        >>> model = cl.create_model("cnn2", seed=0)
        >>> history = cl.fit(model, data, epochs=2, callbacks=[cl.EarlyStopping(patience=5)])
    """
    if epochs < 1:
        raise CnnlabError(f"epochs must be a positive integer, got {epochs}")
    if batch_size < 1:
        raise CnnlabError(f"batch size must be a positive integer, got {batch_size}")
    dev = resolve_device(device)
    ddp = Distributed.current()
    mf = torch.channels_last if channels_last else torch.contiguous_format
    model.to(device=dev, memory_format=mf)
    torch.manual_seed(seed if ddp.rank == 0 else derive_seed(seed, ddp.rank))  # dropout masks, per rank
    train = DeviceBatches(
        data.train.images,
        data.train.labels,
        batch_size=batch_size,
        device=dev,
        shuffle=True,
        seed=seed,
        memory_format=mf,
    )
    val = getattr(data, "val", None) if validate else None
    opt = make_optimizer(model, optimizer, lr, weight_decay, dev)
    sched = make_schedule(opt, schedule, epochs * len(train))
    averaged = make_ema(model, ema) if ema else None
    cast = autocast(dev, amp)
    augment = augment if augment is not None and augment.active else None

    def loss_of(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with cast:
            logits = net(x)  # (B, num_classes)
            return F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing), logits

    net, compile_seconds = model, None
    if compile:
        x0, y0, _ = next(iter(train.epoch(1)))
        net, compile_seconds = compile_model(model, dev, lambda c: loss_of(c, x0, y0)[0].backward())
    net = ddp.wrap(net, dev)  # DDP averages the gradients over ranks during backward

    history = History(compile_seconds=compile_seconds)
    # with EMA, early stopping snapshots (and the run ends with) the averaged weights
    state = TrainState(model=model, weights=averaged.module if averaged is not None else model)
    for cb in callbacks:
        cb.on_train_begin(state)
    parts = dict(
        model=model, optimizer=opt, schedule=sched, ema=averaged, callbacks=callbacks, history=history
    )
    at, sums = {"epoch": 1, "step": 0, "global_step": 0, "done": False}, None
    if resume is not None:
        at, sums = restore(resume, **parts, rank=ddp.rank)
        state.best_epoch, history.stopped_early = at.get("best_epoch"), bool(at.get("stopped_early"))
    if checkpoints is not None and ddp.is_main:
        checkpoints.begin(at["global_step"])

    def save(position: dict, sums: dict | None, epoch_end: int | None = None) -> None:
        ranks = ddp.gather_json(rank_state(sums))  # every rank's RNG and running sums, on rank 0
        if ddp.is_main:
            position = {**position, "best_epoch": state.best_epoch, "stopped_early": state.stop_training}
            weights, contents = capture(**parts, position=position, ranks=ranks, meta=checkpoints.meta)
            checkpoints.save(
                position["global_step"], weights, contents, epoch_end=epoch_end, best_epoch=state.best_epoch
            )

    global_step = at["global_step"]
    stop = GracefulStop(debounce=1.0 if ddp.active else 0.0)  # a launcher repeats a Ctrl-C
    with _progress(progress and ddp.is_main) as bar, stop if checkpoints is not None else nullcontext():
        for epoch in range(epochs + 1 if at.get("stopped_early") else at["epoch"], epochs + 1):
            resumed = sums if epoch == at["epoch"] and sums else None  # this epoch was cut short before
            first = at["step"] if epoch == at["epoch"] else 0
            t0 = time.perf_counter() - (at["seconds"] if resumed else 0.0)
            model.train()
            lr_now = at["lr"] if resumed else opt.param_groups[0]["lr"]
            loss_sum = torch.tensor(resumed["loss_sum"] if resumed else 0.0, device=dev)
            correct = torch.tensor(resumed["correct"] if resumed else 0, device=dev)
            seen = resumed["seen"] if resumed else 0
            task = bar.add_task(f"epoch {epoch}/{epochs}", total=len(train), metrics="") if bar else None
            for step, (x, y, idx) in enumerate(train.epoch(epoch, start_step=first), start=first):
                if augment is not None:
                    x = augment(x, idx, seed=seed, epoch=epoch, step=step)
                n = len(y)  # the global batch; under DDP this rank trains on its shard of it
                x, y, idx = ddp.shard(x), ddp.shard(y), ddp.shard(idx)
                loss, logits = loss_of(net, x, y)
                loss_d = loss.detach()
                # a non-finite loss stops the run before it reaches the weights; on CUDA, look only every
                # 50 steps (a sync) and before each checkpoint
                look = (
                    dev.type == "cpu" or step % 50 == 0 or (checkpoints and checkpoints.due(global_step + 1))
                )
                bad, signum = ddp.agree(bool(look) and not math.isfinite(loss_d.item()), stop.signum)
                if bad:
                    raise _non_finite(ddp, checkpoints, loss_d.item(), epoch, step, global_step, opt, idx)
                opt.zero_grad(set_to_none=True)
                (loss * ddp.loss_share(len(y), n)).backward()
                opt.step()
                if sched is not None:
                    sched.step()
                if averaged is not None:
                    averaged.update_parameters(model)
                loss_sum += loss_d * len(y)
                correct += (logits.detach().argmax(1) == y).sum()
                seen += len(y)
                global_step += 1
                # checkpoints and signals at the edge of the step (an epoch's last step saves at its end)
                if checkpoints is not None and (
                    signum or checkpoints.due(global_step) and step + 1 < len(train)
                ):
                    position = {"epoch": epoch, "step": step + 1, "global_step": global_step, "done": False}
                    position.update(lr=lr_now, seconds=time.perf_counter() - t0)
                    save(position, {"loss_sum": loss_sum.item(), "correct": correct.item(), "seen": seen})
                if signum:
                    raise _interrupted(ddp, checkpoints, signum, f"epoch {epoch}, step {step + 1}")
                if bar and (step % 25 == 0 or step == len(train) - 1):
                    bar.update(
                        task,
                        completed=step + 1,
                        metrics=f"loss {loss_sum.item() / seen:.4f} acc {correct.item() / seen:.4f}",
                    )
            ddp.sum(loss_sum, correct)  # over ranks: together they saw each sample once
            train_loss = loss_sum.item() / train.num_samples
            if not math.isfinite(train_loss):
                raise NonFiniteLossError(
                    f"loss became non-finite in epoch {epoch} (lr {lr_now:g}); lower --lr"
                )
            row = {"epoch": epoch, "loss": train_loss, "accuracy": correct.item() / train.num_samples}
            if val is not None and len(val.labels):
                m = evaluate(averaged.module if averaged is not None else model, val, device=dev, amp=amp)
                row.update(val_loss=m["loss"], val_accuracy=m["accuracy"])
            row.update(lr=lr_now, seconds=time.perf_counter() - t0)
            history.append(row)
            if bar:
                bar.remove_task(task)
                bar.console.print(_format_row(row, epochs))
            state.epoch, state.logs = epoch, row
            for cb in callbacks:
                cb.on_epoch_end(state)
            if checkpoints is not None:
                done = state.stop_training or epoch == epochs
                save({"epoch": epoch + 1, "step": 0, "global_step": global_step, "done": done}, None, epoch)
                _, signum = ddp.agree(False, stop.signum)
                if signum:
                    raise _interrupted(ddp, checkpoints, signum, f"epoch {epoch}")
            if state.stop_training:
                history.stopped_early = True
                break
    if averaged is not None:
        model.load_state_dict(averaged.module.state_dict())
    for cb in callbacks:
        cb.on_train_end(state)
    history.best_epoch = state.best_epoch
    return history


def _non_finite(ddp, checkpoints, loss, epoch, step, global_step, opt, idx) -> NonFiniteLossError:
    """Write a short report into the run folder (rank 0) and build the error every rank raises."""
    lr_now = opt.param_groups[0]["lr"]
    where = f"at epoch {epoch}, step {step + 1} (lr {lr_now:g})"
    what = f"loss became {loss}" if not math.isfinite(loss) else "loss became non-finite on another rank"
    ranks = ddp.gather_json({"loss": str(loss), "batch_indices": idx.tolist()})
    msg = f"{what} {where}; lower --lr"
    if ddp.is_main and checkpoints is not None:
        report = {
            "error": "non-finite loss",
            "epoch": epoch,
            "step": step + 1,  # 1-based within the epoch
            "global_step": global_step + 1,
            "lr": lr_now,
            "loss": ranks[0]["loss"] if len(ranks) == 1 else [r["loss"] for r in ranks],
            "batch_indices": [i for r in ranks for i in r["batch_indices"]],  # training-split indices
            "last_good_checkpoint": str(checkpoints.last) if checkpoints.last else None,
        }
        path = checkpoints.write_report("nonfinite_loss.json", report)
        msg += f". Report: {path}; last good checkpoint: {report['last_good_checkpoint'] or 'none yet'}"
    ddp.barrier()  # let rank 0 finish writing before any rank exits
    return NonFiniteLossError(msg)


def _interrupted(ddp, checkpoints, signum: int, where: str) -> Interrupted:
    ddp.barrier()  # let rank 0 finish saving before any rank exits
    saved = f"; saved {checkpoints.last}, continue with --resume auto" if checkpoints.last else ""
    return Interrupted(f"{signal_name(signum)}: stopped after {where}{saved}", signum)


def _format_row(row: dict, epochs: int) -> str:
    parts = [
        f"epoch {row['epoch']}/{epochs}",
        f"{row['seconds']:.1f}s",
        f"loss {row['loss']:.4f}",
        f"acc {row['accuracy']:.4f}",
    ]
    if "val_loss" in row:
        parts += [f"val_loss {row['val_loss']:.4f}", f"val_acc {row['val_accuracy']:.4f}"]
    return "  ".join(parts)
