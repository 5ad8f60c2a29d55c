"""The training loop in plain sight: forward, loss, backward, step, log.

``fit`` trains any ``nn.Module`` on any object with ``.train`` and ``.val`` splits (each with uint8
``images`` (N, C, H, W) and int64 ``labels``); it knows no model or dataset names.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.engine.batches import DeviceBatches, to_float
from cnnlab.engine.callbacks import Callback, TrainState
from cnnlab.engine.history import History
from cnnlab.errors import CnnlabError, NonFiniteLossError

OPTIMIZERS = ("adam", "adamw", "sgd", "nesterov")
SCHEDULES = ("constant", "onecycle", "linear")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` picks CUDA when present, else CPU; an absent device is a clear error."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise CnnlabError(f"Unknown device {device!r}. Available: auto, cpu, cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CnnlabError(
            "--device cuda was asked for, but no CUDA GPU is available here; use --device cpu or auto"
        )
    if dev.type not in ("cpu", "cuda"):
        raise CnnlabError(f"Unknown device {device!r}. Available: auto, cpu, cuda")
    return dev


def make_optimizer(
    model: nn.Module, name: str, lr: float, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "adam":  # Keras' Adam defaults: betas (0.9, 0.999), eps 1e-7
        return torch.optim.Adam(params, lr=lr, eps=1e-7, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, eps=1e-7, weight_decay=weight_decay)
    if name in ("sgd", "nesterov"):
        return torch.optim.SGD(
            params, lr=lr, momentum=0.9, nesterov=name == "nesterov", weight_decay=weight_decay
        )
    raise CnnlabError(f"Unknown optimizer {name!r}. Available: {', '.join(OPTIMIZERS)}")


def make_schedule(
    opt: torch.optim.Optimizer, name: str, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    if name == "constant":
        return None
    if name == "onecycle":
        lr = opt.param_groups[0]["lr"]
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=lr, total_steps=max(total_steps, 1), pct_start=0.25
        )
    if name == "linear":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / max(total_steps, 1)))
    raise CnnlabError(f"Unknown schedule {name!r}. Available: {', '.join(SCHEDULES)}")


def _progress(enabled: bool, total: int, description: str):
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
    callbacks: Sequence[Callback] = (),
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    channels_last: bool = False,
) -> History:
    """Train ``model`` on ``data.train``, validating on ``data.val`` after every epoch.

    Cross-entropy on logits (the model ends in logits; no double softmax). Returns a ``History``; with an
    ``EarlyStopping(restore_best_weights=True)`` callback the model ends holding the best epoch's weights.

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
    mf = torch.channels_last if channels_last else torch.contiguous_format
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    torch.manual_seed(seed)  # dropout masks
    train = DeviceBatches(
        data.train.images,
        data.train.labels,
        batch_size=batch_size,
        device=dev,
        shuffle=True,
        seed=seed,
        memory_format=mf,
    )
    val = getattr(data, "val", None)
    opt = make_optimizer(model, optimizer, lr, weight_decay)
    sched = make_schedule(opt, schedule, epochs * len(train))
    history = History()
    state = TrainState(model=model)
    for cb in callbacks:
        cb.on_train_begin(state)
    with _progress(progress, len(train), "") as bar:
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            model.train()
            lr_now = opt.param_groups[0]["lr"]
            loss_sum = torch.zeros((), device=dev)
            correct = torch.zeros((), device=dev, dtype=torch.long)
            seen = 0
            task = bar.add_task(f"epoch {epoch}/{epochs}", total=len(train), metrics="") if bar else None
            for step, (x, y) in enumerate(train.epoch(epoch)):
                logits = model(x)  # (B, num_classes)
                loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                loss_d = loss.detach()
                if not math.isfinite(loss_d.item()):
                    raise NonFiniteLossError(
                        f"loss became {loss_d.item()} at epoch {epoch}, step {step + 1} (lr {lr_now:g}); lower --lr"
                    )
                loss_sum += loss_d * len(y)
                correct += (logits.detach().argmax(1) == y).sum()
                seen += len(y)
                if bar and (step % 25 == 0 or step == len(train) - 1):
                    bar.update(
                        task,
                        completed=step + 1,
                        metrics=f"loss {loss_sum.item() / seen:.4f} acc {correct.item() / seen:.4f}",
                    )
            row = {"epoch": epoch, "loss": loss_sum.item() / seen, "accuracy": correct.item() / seen}
            if val is not None and len(val.labels):
                m = evaluate(model, val, device=dev)
                row.update(val_loss=m["loss"], val_accuracy=m["accuracy"])
            row.update(lr=lr_now, seconds=time.perf_counter() - t0)
            history.append(row)
            if bar:
                bar.remove_task(task)
                bar.console.print(_format_row(row, epochs))
            state.epoch, state.logs = epoch, row
            for cb in callbacks:
                cb.on_epoch_end(state)
            if state.stop_training:
                history.stopped_early = True
                break
    for cb in callbacks:
        cb.on_train_end(state)
    history.best_epoch = state.best_epoch
    return history


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


@torch.no_grad()
def evaluate(
    model: nn.Module, split, *, batch_size: int = 1000, device: str | torch.device | None = None
) -> dict:
    """Loss, accuracy and error % of ``model`` on a split (``.images`` uint8, ``.labels``).

    Example:
        >>> cl.evaluate(model, data.test)  # doctest: +SKIP
        {'loss': 0.25, 'accuracy': 0.91, 'error_pct': 9.0, 'n': 10000}
    """
    dev = resolve_device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss_sum, correct, n = 0.0, 0, len(split.labels)
    try:
        for start in range(0, n, batch_size):
            x = to_float(split.images[start : start + batch_size].to(dev))
            y = split.labels[start : start + batch_size].to(dev)
            logits = model(x)
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
    finally:
        model.train(was_training)
    acc = correct / max(n, 1)
    return {"loss": loss_sum / max(n, 1), "accuracy": acc, "error_pct": 100.0 * (1.0 - acc), "n": n}


@torch.no_grad()
def predict(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 1000,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Class probabilities (N, num_classes) for uint8 or 0..1 float images (N, C, H, W)."""
    dev = resolve_device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, len(images), batch_size):
            x = to_float(images[start : start + batch_size].to(dev))
            out.append(torch.softmax(model(x), dim=1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)
