"""cnnlab's ``--recipe fast`` (CPU settings) written in PyTorch Lightning: a peer for its time to 91%.

The same model and recipe as cnnlab's fast CPU recipe, written the way a Lightning user would:

* a ``LightningModule`` holding the ``fastcnn`` network in plain ``torch.nn``: Conv2d(1, 32, 3)-BatchNorm-ReLU-
  MaxPool(2), Conv2d(32, 64, 3)-BatchNorm-ReLU-MaxPool(2), Flatten, Linear(1600, 128)-ReLU, Dropout(0.2),
  Linear(128, 10) logits (3x3 'valid' convolutions; 225,226 parameters, asserted);
* ``configure_optimizers``: Adam(lr ``LR`` (6e-3), eps 1e-7) and OneCycleLR(max_lr ``LR``, pct_start 0.25, total steps
  from ``trainer.estimated_stepping_batches``) stepped every batch (``interval="step"``), as cnnlab's
  ``make_schedule``; torch's defaults elsewhere (beta_1 cycled 0.95 -> 0.85 -> 0.95, as in cnnlab);
* cross-entropy with label smoothing 0.1; batch ``BATCH_SIZE`` (256), the last batch of an epoch smaller (as cnnlab's);
* data: the training split normalised once with its own per-channel mean and std (as cnnlab's
  ``channel_stats``) into a float32 ``TensorDataset(images, labels, indices)`` and a shuffling
  ``DataLoader`` (``num_workers=0``: the machine has 2 cores and the data are already in memory);
* with ``FLIP`` (off, as the CPU recipe), alternating horizontal flips with cnnlab's rule, applied per batch in ``on_after_batch_transfer`` (the
  Lightning hook for on-device batch augmentation): training image ``i`` is flipped in epoch ``e``
  (1-based) when ``((((i + seed * 1000003) * 2654435761) % 2**32) >> 16) & 1`` XOR ``e % 2`` is set;
* ``Trainer(accelerator="cpu", devices=1, max_epochs=E, logger=False, enable_checkpointing=False,
  enable_progress_bar=False, enable_model_summary=False)``.
* with ``--bf16`` (speedrun_peers.py passes it when cnnlab's fast recipe runs in bf16 on this CPU): ``Trainer(precision="bf16-mixed")`` (CPU autocast, BatchNorm in float32).

Data split: cnnlab's ``default`` split with seed 0, the split ``benchmarks/speedrun.py`` trains on (see
keras_fast.py, whose NumPy data helpers this script shares, so both peers train on the same 55,000 images in
the same index order and flip the same images). The 5,000 validation images are held out and unused (no
validation loop, as speedrun.py's ``fit(validate=False)``).

Timing: a ``Callback`` takes ``time.perf_counter()`` at ``on_train_epoch_start`` and ``on_train_epoch_end``
(``epoch_seconds``: the training epoch only), then evaluates the official 10,000 test images off the clock
(measurement only, nothing is selected on them). ``train_seconds`` is cumulative; ``time_to`` gives it at
the first epoch whose test accuracy reaches 91% / 93% (null if none does).

Runs in the project's .venv with ``lightning`` installed beside torch (requirements-lightning.txt); imports
nothing from cnnlab's training code (only, where PyPI's torchvision cannot load beside a CPU-only torch,
cnnlab's one-function import shim, so that torchmetrics imports).
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import time
import warnings

try:
    import lightning as L
except RuntimeError:  # torchmetrics imports PyPI's CUDA-built torchvision, which fails beside a CPU torch
    from cnnlab.models.timm_import import import_torchvision  # the same narrow shim cnnlab uses for timm

    import_torchvision()
    import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from keras_fast import (
    ADAM_EPS,
    BATCH_SIZE,
    EVAL_BATCH,
    FLIP,
    LABEL_SMOOTHING,
    LR,
    PCT_START,
    TRAINABLE_PARAMS,
    fast_data,
    parse_args,
    print_epoch,
    print_summary,
    recipe_config,
    time_to,
)
from keras_tutorial import available_cores, cpu_model, write_json_atomic
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def fastcnn() -> nn.Sequential:
    model = nn.Sequential(
        nn.Conv2d(1, 32, kernel_size=3),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, kernel_size=3),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 5 * 5, 128),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(128, 10),
    )
    params = sum(p.numel() for p in model.parameters())
    if params != TRAINABLE_PARAMS:
        raise AssertionError(f"fastcnn: {params:,} params, cnnlab's has {TRAINABLE_PARAMS:,}")
    return model


class FastCNN(L.LightningModule):
    def __init__(self, seed: int):
        super().__init__()
        self.seed = seed
        self.net = fastcnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if not self.trainer.training:
            return batch
        x, y, idx = batch
        if not FLIP:
            return x, y
        # cnnlab's alternating flips: a fixed bit per training index, XOR the (1-based) epoch's parity
        bits = ((((idx + self.seed * 1_000_003) * 2654435761) % 4294967296) >> 16) & 1
        flip = bits.bool() ^ bool((self.current_epoch + 1) % 2)
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x), y

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=LABEL_SMOOTHING)
        self.log("loss", loss, on_step=False, on_epoch=True)
        self.log("accuracy", (logits.argmax(1) == y).float().mean(), on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=LR, eps=ADAM_EPS)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=LR, total_steps=self.trainer.estimated_stepping_batches, pct_start=PCT_START
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class TestProbe(L.Callback):
    """Times each training epoch, then evaluates the test set off the clock."""

    def __init__(self, x_test: torch.Tensor, y_test: torch.Tensor, epochs: int):
        self.x_test, self.y_test, self.epochs = x_test, y_test, epochs
        self.rows: list[dict] = []
        self.train_seconds = 0.0

    def on_train_epoch_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        seconds = time.perf_counter() - self.start
        self.train_seconds += seconds
        t0 = time.perf_counter()
        pl_module.eval()
        correct = 0
        with torch.inference_mode():
            for i in range(0, len(self.y_test), EVAL_BATCH):
                logits = pl_module(self.x_test[i : i + EVAL_BATCH])
                correct += int((logits.argmax(1) == self.y_test[i : i + EVAL_BATCH]).sum())
        pl_module.train()
        metrics = trainer.callback_metrics
        self.rows.append(
            {
                "epoch": trainer.current_epoch + 1,
                "epoch_seconds": seconds,
                "train_seconds": self.train_seconds,
                "loss": float(metrics["loss"]),
                "accuracy": float(metrics["accuracy"]),
                "test_accuracy": correct / len(self.y_test),
                "test_eval_seconds": time.perf_counter() - t0,
            }
        )
        print_epoch("lightning", self.rows[-1], self.epochs)


def normalized(images: np.ndarray, mean: float, std: float) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28), (x / 255 - mean) / std."""
    return ((torch.tensor(images).float() / 255.0 - mean) / std).unsqueeze(1)


def machine_info(threads: int) -> dict:
    return {
        "cpu_model": cpu_model(),
        "cores": available_cores(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "torch": torch.__version__,
        "lightning": L.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def quiet_lightning() -> None:
    """Keep Lightning's start-up notes (GPU/TPU availability, tips) and the num_workers hint out of the log."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    # lightning 2.6.6 calls a torch._pytree API that torch 2.13 deprecates; harmless
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.split("\n\n")[0], argv)
    threads = args.threads or available_cores()
    torch.set_num_threads(threads)
    quiet_lightning()

    data = fast_data(args.data_dir, args.limit)
    (x_train, y_train), (x_test, y_test) = data["train"], data["test"]
    train = TensorDataset(
        normalized(x_train, data["mean"], data["std"]),
        torch.from_numpy(y_train),
        torch.arange(len(y_train)),
    )
    x_test_t = normalized(x_test, data["mean"], data["std"])
    y_test_t = torch.from_numpy(y_test)

    L.seed_everything(args.seed, verbose=False)  # weights, shuffling, dropout
    model = FastCNN(args.seed)
    loader = DataLoader(train, batch_size=BATCH_SIZE, shuffle=True, num_workers=0)
    probe = TestProbe(x_test_t, y_test_t, args.epochs)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=args.epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[probe],
        precision="bf16-mixed" if args.bf16 else "32-true",
    )
    started = time.perf_counter()
    trainer.fit(model, train_dataloaders=loader)
    wall = time.perf_counter() - started

    rows = probe.rows
    payload = {
        "peer": "lightning",
        "config": recipe_config(args, data),
        "machine": machine_info(threads),
        "epochs": rows,
        "final_accuracy": rows[-1]["test_accuracy"],
        "train_seconds": rows[-1]["train_seconds"],
        "time_to": time_to(rows),
        # all of trainer.fit(), test probes included: exposes time spent outside the epochs (set-up, teardown)
        "fit_wall_seconds": wall,
        "test_eval_seconds_total": sum(r["test_eval_seconds"] for r in rows),
    }
    print_summary("lightning", payload)
    if args.out:
        write_json_atomic(args.out, payload)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
