"""Building blocks fit() puts together: device, optimizer, schedule, autocast, compile, EMA."""

from __future__ import annotations

import shutil
import time
from contextlib import nullcontext

import torch
from torch import nn

from cnnlab.errors import CnnlabError

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
    model: nn.Module, name: str, lr: float, weight_decay: float, device: torch.device
) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    # fused kernels: one pass over all parameters, on CUDA and on the CPU (cnn1's Adam step: 4.5 ms with
    # foreach, 1.0 ms fused, one thread)
    fast = {"fused": True}
    if name == "adam":  # Keras' Adam defaults: betas (0.9, 0.999), eps 1e-7
        return torch.optim.Adam(params, lr=lr, eps=1e-7, weight_decay=weight_decay, **fast)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, eps=1e-7, weight_decay=weight_decay, **fast)
    if name in ("sgd", "nesterov"):
        return torch.optim.SGD(
            params, lr=lr, momentum=0.9, nesterov=name == "nesterov", weight_decay=weight_decay, **fast
        )
    raise CnnlabError(f"Unknown optimizer {name!r}. Available: {', '.join(OPTIMIZERS)}")


def make_schedule(
    opt: torch.optim.Optimizer, name: str, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    if name == "constant":
        return None
    if name == "onecycle":  # warm up over the first 25%, then anneal to ~0
        lr, total = opt.param_groups[0]["lr"], max(total_steps, 1)
        # OneCycleLR divides by (pct_start * total - 1): zero for 4 steps. Very short runs warm up longer.
        pct = max(0.25, min(0.9, 1.5 / total))
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=pct)
    if name == "linear":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / max(total_steps, 1)))
    raise CnnlabError(f"Unknown schedule {name!r}. Available: {', '.join(SCHEDULES)}")


def native_bf16_cpu() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX). There, bf16 autocast makes
    convolutions ~1.6x faster; elsewhere it is emulated and slower, so CPU recipes only ask for it here."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private: absent means no
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def autocast(device: torch.device, amp: str):
    """bf16/fp16 autocast on CUDA (BatchNorm runs in fp32 under autocast); off on CPU unless asked."""
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "off"
    if amp == "off":
        return nullcontext()
    if amp not in ("bf16", "fp16"):
        raise CnnlabError(f"Unknown --amp {amp!r}. Available: auto, off, bf16, fp16")
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def check_compile_available(device: torch.device) -> None:
    if device.type == "cpu" and not (shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")):
        raise CnnlabError(
            "--compile needs a C compiler (cc/gcc/clang) on the CPU, and none was found; drop --compile"
        )
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            raise CnnlabError(
                "--compile on CUDA needs Triton, which is not installed; drop --compile"
            ) from None


def compile_model(model: nn.Module, device: torch.device, warmup) -> tuple[nn.Module, float]:
    """``torch.compile`` the model and run ``warmup(compiled)`` once outside the timed run, restoring every
    weight and buffer afterwards so the warm-up leaves no trace. Returns (compiled, warm-up seconds)."""
    check_compile_available(device)
    compiled = torch.compile(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    t0 = time.perf_counter()
    warmup(compiled)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    model.load_state_dict(state)
    for p in model.parameters():
        p.grad = None
    return compiled, seconds


def make_ema(model: nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """An exponential moving average of the weights (and BN buffers), updated after every step.

    The decay warms up as min(decay, (1 + n) / (10 + n)) after n updates, so short runs are not dominated
    by the random initial weights (a fixed 0.999 would keep ~37% of them after 1,000 steps)."""
    from torch.optim.swa_utils import AveragedModel

    updates: int | None = None

    def ema(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged) -> None:
        nonlocal updates
        if updates is None:  # from the saved count, so a resumed run continues the same warm-up
            updates = int(num_averaged) - 1  # AveragedModel counts its first plain copy too
        d = min(decay, (1 + updates) / (10 + updates))
        updates += 1
        floats = [(a, c) for a, c in zip(averaged, current, strict=True) if a.is_floating_point()]
        if floats:
            torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], 1.0 - d)
        for a, c in zip(averaged, current, strict=True):  # integer buffers (BN's num_batches_tracked)
            if not a.is_floating_point():
                a.copy_(c)

    return AveragedModel(model, multi_avg_fn=ema, use_buffers=True)
