"""cnnlab's ``--recipe fast`` (CUDA settings) in PyTorch Lightning: the Lightning peer on a GPU.

The same model, data, augmentation and recipe as ``gpu_plain.py`` (whose pieces it imports), written as a
Lightning user would: a ``LightningModule`` with ``training_step`` and ``configure_optimizers`` (fused Nesterov
SGD, ``OneCycleLR`` with ``interval="step"``), the flips and translation in ``on_after_batch_transfer``, and
``Trainer(accelerator=..., devices=1, precision="bf16-mixed", max_epochs=E, logger=False,
enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)``. To be fair to it, the
training data are on the GPU already: the loader is an iterable of index-gathered batches (no host copies),
exactly what the plain script does. A callback times each training epoch and evaluates the test set off the
clock.

    python benchmarks/peers/gpu_lightning.py --seed 0 --out /tmp/lightning.json
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from pathlib import Path

try:
    import lightning as L
except RuntimeError:  # torchmetrics imports PyPI's CUDA-built torchvision, which fails beside a CPU torch
    from cnnlab.models.timm_import import import_torchvision  # the same narrow shim cnnlab uses for timm

    import_torchvision()
    import lightning as L
import torch
import torch.nn.functional as F
from gpu_plain import (
    BATCH_SIZE,
    EPOCHS,
    LABEL_SMOOTHING,
    LR,
    TARGETS,
    TRANSLATE,
    WEIGHT_DECAY,
    on_device,
    speednet,
    test_accuracy,
    translate,
)
from keras_fast import fast_data
from keras_tutorial import DEFAULT_DATA_DIR, write_json_atomic


class Batches:
    """An epoch of (x, y, idx) batches gathered from device-resident uint8 data in a seeded order."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, seed: int):
        self.images, self.labels = images, labels
        self.g = torch.Generator(device=images.device).manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.labels) // BATCH_SIZE)

    def __iter__(self):
        order = torch.randperm(len(self.labels), device=self.labels.device, generator=self.g)
        for start in range(0, len(order), BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            yield self.images[idx], self.labels[idx], idx


class SpeedNet(L.LightningModule):
    def __init__(self, mean: float, std: float, bits: torch.Tensor, seed: int):
        super().__init__()
        self.net = speednet(mean, std).to(memory_format=torch.channels_last)
        self.bits = bits
        self.g = torch.Generator(device=bits.device).manual_seed(seed + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y, idx = batch
        x = x.float().div_(255).contiguous(memory_format=torch.channels_last)
        flip = self.bits[idx] ^ bool((self.current_epoch + 1) % 2)
        return translate(torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x), TRANSLATE, self.g), y

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x).float(), y, label_smoothing=LABEL_SMOOTHING)

    def configure_optimizers(self):
        opt = torch.optim.SGD(
            self.parameters(), lr=LR, momentum=0.9, nesterov=True, weight_decay=WEIGHT_DECAY, fused=True
        )
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=LR, total_steps=self.trainer.estimated_stepping_batches, pct_start=0.25
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class TestProbe(L.Callback):
    def __init__(self, x_test: torch.Tensor, y_test: torch.Tensor):
        self.x_test, self.y_test, self.rows, self.total, self.t0 = x_test, y_test, [], 0.0, 0.0

    def _sync(self) -> None:
        if self.x_test.device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._sync()
        self.t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._sync()
        self.total += time.perf_counter() - self.t0
        acc = test_accuracy(pl_module.net, self.x_test, self.y_test)
        self.rows.append(
            {"epoch": trainer.current_epoch + 1, "train_seconds": round(self.total, 3), "test_accuracy": acc}
        )
        print(f"epoch {trainer.current_epoch + 1}: {self.total:.2f} s, test accuracy {acc:.4f}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--device", default="cuda")
    p.add_argument("--limit", type=int, default=None, help="smoke runs only: cap each split")
    p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    p.add_argument("--out", required=True)
    args = p.parse_args()
    logging.getLogger("lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    dev = torch.device(args.device)
    data = fast_data(Path(args.data_dir), args.limit)
    x_train, y_train, x_test, y_test, bits = on_device(data, args.seed, dev)
    L.seed_everything(args.seed, verbose=False)
    module = SpeedNet(data["mean"], data["std"], bits, args.seed)
    probe = TestProbe(x_test, y_test)
    trainer = L.Trainer(
        accelerator="gpu" if dev.type == "cuda" else "cpu",
        devices=1,
        precision="bf16-mixed",
        max_epochs=args.epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[probe],
    )
    trainer.fit(module, train_dataloaders=Batches(x_train, y_train, args.seed))
    time_to = {
        f"{t:.2f}": next((r["train_seconds"] for r in probe.rows if r["test_accuracy"] >= t), None)
        for t in TARGETS
    }
    record = {
        "peer": "Lightning (bf16-mixed)",
        "seed": args.seed,
        "device": str(dev),
        "epochs": probe.rows,
        "time_to": time_to,
    }
    if dev.type == "cuda":
        record["gpu_max_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    write_json_atomic(Path(args.out), record)


if __name__ == "__main__":
    main()
