"""cnnlab's ``--recipe fast`` (CUDA settings) as a plain PyTorch script: the eager peer on a GPU.

What a practitioner writes in a hundred lines, with the same model, data and recipe as cnnlab's fast CUDA
recipe (cnnlab/recipes.py), and every common speed habit of an eager script:

* model ``speednet`` in plain ``torch.nn``: three stages of two (Conv2d 3x3 'same' - BatchNorm - GELU) and a
  MaxPool(2), widths 64/128/256, global average pool, Linear(256, 10); the training split's mean and std
  applied first (as cnnlab's ``normalize`` stage);
* the data on the GPU once as uint8; each batch an index gather from a seeded permutation, scaled to 0..1,
  channels_last; alternating horizontal flips with cnnlab's rule and random translation by up to
  ``TRANSLATE`` pixels (reflect padding), both per batch on the GPU;
* SGD (Nesterov, momentum 0.9, weight decay 5e-4, ``fused=True``) under ``OneCycleLR`` stepped every batch,
  cross-entropy with label smoothing 0.1, bf16 autocast, batch 512, the last short batch kept (eager needs no
  fixed shapes);
* after every epoch the official 10,000 test images are evaluated off the clock (flip TTA as the recipe);
  ``time_to`` is the cumulative training time at the first epoch reaching each target.

Imports nothing from cnnlab. Runs on a CPU too (``--device cpu --limit 2000 --epochs 1``: a smoke test).

    python benchmarks/peers/gpu_plain.py --seed 0 --out /tmp/plain.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from keras_fast import fast_data, flip_bits
from keras_tutorial import DEFAULT_DATA_DIR, write_json_atomic
from torch import nn

EPOCHS, BATCH_SIZE, LR, WEIGHT_DECAY = 10, 512, 0.2, 5e-4
LABEL_SMOOTHING, TRANSLATE = 0.1, 2
WIDTHS = (64, 128, 256)
TARGETS = (0.91, 0.93, 0.94, 0.95)


class Normalize(nn.Module):
    def __init__(self, mean: float, std: float):
        super().__init__()
        self.register_buffer("mean", torch.tensor([mean]).view(1, 1, 1, 1))
        self.register_buffer("std", torch.tensor([std]).view(1, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def speednet(mean: float, std: float) -> nn.Sequential:
    layers: list[nn.Module] = [Normalize(mean, std)]
    c_in = 1
    for width in WIDTHS:
        for _ in range(2):
            layers += [nn.Conv2d(c_in, width, 3, padding="same"), nn.BatchNorm2d(width), nn.GELU()]
            c_in = width
        layers.append(nn.MaxPool2d(2))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, 10)]
    return nn.Sequential(*layers)


def translate(x: torch.Tensor, pixels: int, g: torch.Generator) -> torch.Tensor:
    """Shift each image by up to ``pixels`` in x and y: reflect-pad, then crop a random window."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pixels,) * 4, mode="reflect")
    dy = torch.randint(0, 2 * pixels + 1, (n,), device=x.device, generator=g)
    dx = torch.randint(0, 2 * pixels + 1, (n,), device=x.device, generator=g)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


@torch.inference_mode()
def test_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    correct = 0
    with torch.autocast(images.device.type, dtype=torch.bfloat16):
        for start in range(0, len(labels), 1000):
            x = (images[start : start + 1000].float() / 255).contiguous(memory_format=torch.channels_last)
            p = model(x).float().softmax(1) + model(x.flip(3)).float().softmax(1)  # flip TTA
            correct += int((p.argmax(1) == labels[start : start + 1000]).sum())
    model.train()
    return correct / len(labels)


def on_device(data: dict, seed: int, dev: torch.device) -> tuple[torch.Tensor, ...]:
    """uint8 images (N, 1, 28, 28) and labels of train and test on ``dev``, and each training image's
    alternating-flip bit."""
    x_train, y_train = (torch.tensor(a, device=dev) for a in data["train"])
    x_test, y_test = (torch.tensor(a, device=dev) for a in data["test"])
    bits = torch.tensor(flip_bits(np.arange(len(y_train)), seed), device=dev).bool()
    return x_train[:, None], y_train, x_test[:, None], y_test, bits


def train(args: argparse.Namespace) -> dict:
    dev = torch.device(args.device)
    data = fast_data(Path(args.data_dir), args.limit)
    x_train, y_train, x_test, y_test, bits = on_device(data, args.seed, dev)
    torch.manual_seed(args.seed)
    model = speednet(data["mean"], data["std"]).to(dev, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, nesterov=True, weight_decay=WEIGHT_DECAY,
                          fused=True)  # fmt: skip
    steps = -(-len(y_train) // BATCH_SIZE)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=LR, total_steps=args.epochs * steps, pct_start=0.25
    )
    g = torch.Generator(device=dev).manual_seed(args.seed)
    epochs, total = [], 0.0
    for epoch in range(1, args.epochs + 1):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        order = torch.randperm(len(y_train), device=dev, generator=g)
        for start in range(0, len(order), BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            x = x_train[idx].float().div_(255).contiguous(memory_format=torch.channels_last)
            flip = bits[idx] ^ bool(epoch % 2)
            x = translate(torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x), TRANSLATE, g)
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                loss = F.cross_entropy(model(x).float(), y_train[idx], label_smoothing=LABEL_SMOOTHING)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        total += time.perf_counter() - t0
        acc = test_accuracy(model, x_test, y_test)
        epochs.append({"epoch": epoch, "train_seconds": round(total, 3), "test_accuracy": acc})
        print(f"epoch {epoch}: {total:.2f} s, test accuracy {acc:.4f}", flush=True)
    time_to = {
        f"{t:.2f}": next((e["train_seconds"] for e in epochs if e["test_accuracy"] >= t), None)
        for t in TARGETS
    }
    return {
        "peer": "plain PyTorch (eager)",
        "seed": args.seed,
        "device": str(dev),
        "epochs": epochs,
        "time_to": time_to,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--device", default="cuda")
    p.add_argument("--limit", type=int, default=None, help="smoke runs only: cap each split")
    p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    p.add_argument("--out", required=True)
    args = p.parse_args()
    record = train(args)
    if args.device == "cuda":
        record["gpu_max_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    write_json_atomic(Path(args.out), record)


if __name__ == "__main__":
    main()
