"""Building blocks fit() puts together: device, optimizer, schedule, autocast, compile."""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import NamedTuple, cast

import torch
from torch import nn

from cnnlab.config import OPTIMIZERS, SCHEDULES
from cnnlab.errors import CnnlabError

__all__ = ["OPTIMIZERS", "SCHEDULES", "autocast", "make_optimizer", "make_schedule", "resolve_device"]


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


class ParamGroups(NamedTuple):
    """A model's parameters split for fine-tuning: the classifier (``head``) and the rest."""

    backbone: list[nn.Parameter]
    head: list[nn.Parameter]


def param_groups(model: nn.Module) -> ParamGroups:
    """The last stage that has parameters (the classifier, ``output``) vs all the others: works for any
    model that is a sequence of stages, so the engine needs no model names.

    Example:
        >>> groups = param_groups(cl.create_model("timm:resnet18", num_classes=3))  # doctest: +SKIP
        >>> opt = torch.optim.AdamW([{"params": groups.backbone, "lr": 1e-4}, {"params": groups.head, "lr": 1e-3}])  # doctest: +SKIP
    """
    with_params = [m for m in model.children() if any(True for _ in m.parameters())]
    if not with_params:
        return ParamGroups([], [])
    head_ids = {id(p) for p in with_params[-1].parameters()}
    params = list(model.parameters())
    return ParamGroups([p for p in params if id(p) not in head_ids], [p for p in params if id(p) in head_ids])


def make_optimizer(
    model: nn.Module,
    name: str,
    lr: float | torch.Tensor,
    weight_decay: float,
    device: torch.device,
    *,
    capturable: bool = False,
    backbone_lr: float = 1.0,
) -> torch.optim.Optimizer:
    """The named optimizer over the trainable parameters. ``capturable``: safe to capture in a CUDA graph
    (step counters on the device; pass ``lr`` as a device tensor the graph updates). ``backbone_lr``: the
    learning rate of everything but the classifier, as a fraction of ``lr`` (fine-tuning)."""
    params: list = [p for p in model.parameters() if p.requires_grad]
    if backbone_lr != 1.0:
        groups = param_groups(model)
        params = [{"params": groups.backbone, "lr": lr * backbone_lr}, {"params": groups.head, "lr": lr}]
    # fused kernels: one pass over all parameters, on CUDA and on the CPU (cnn1's Adam step: 4.5 ms with
    # foreach, 1.0 ms fused, one thread)
    if name == "adam":  # Keras' Adam defaults: betas (0.9, 0.999), eps 1e-7
        return torch.optim.Adam(
            params, lr=lr, eps=1e-7, weight_decay=weight_decay, fused=True, capturable=capturable
        )
    if name == "adamw":
        return torch.optim.AdamW(
            params, lr=lr, eps=1e-7, weight_decay=weight_decay, fused=True, capturable=capturable
        )
    if name in ("sgd", "nesterov"):
        return torch.optim.SGD(
            params, lr=lr, momentum=0.9, nesterov=name == "nesterov", weight_decay=weight_decay, fused=True
        )  # SGD keeps no step count: graph-safe as it is
    raise CnnlabError(f"Unknown optimizer {name!r}. Available: {', '.join(OPTIMIZERS)}")


def make_schedule(
    opt: torch.optim.Optimizer, name: str, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    if name == "constant":
        return None
    if name == "onecycle":  # warm up over the first 25%, then anneal to ~0
        lr, total = [g["lr"] for g in opt.param_groups], max(total_steps, 1)
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=lr, total_steps=total, pct_start=warmup_fraction(total)
        )
    if name == "linear":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / max(total_steps, 1)))
    raise CnnlabError(f"Unknown schedule {name!r}. Available: {', '.join(SCHEDULES)}")


def warmup_fraction(total_steps: int) -> float:
    """One-cycle's warm-up share: 25%, longer for very short runs (OneCycleLR divides by
    pct_start * total - 1, zero for 4 steps)."""
    return max(0.25, min(0.9, 1.5 / max(total_steps, 1)))


def autocast(device: torch.device, amp: str, *, cache: bool = True):
    """bf16/fp16 autocast on CUDA (BatchNorm runs in fp32 under autocast); off on CPU unless asked."""
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "off"
    if amp == "off":
        return nullcontext()
    if amp not in ("bf16", "fp16"):
        raise CnnlabError(f"Unknown --amp {amp!r}. Available: auto, off, bf16, fp16")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype, cache_enabled=cache)  # no cache inside a CUDA graph


def check_compile_available(device: torch.device) -> None:
    if device.type == "cpu" and not (shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")):
        raise CnnlabError(
            "--compile needs a C compiler (cc/gcc/clang) on the CPU, and none was found; drop --compile"
        )
    if device.type == "cuda":
        try:
            import triton  # noqa: F401  # deferred: an optional CUDA dependency, checked only for --compile
        except ImportError:
            raise CnnlabError(
                "--compile on CUDA needs Triton, which is not installed; drop --compile"
            ) from None


def compile_model(model: nn.Module, device: torch.device, warmup) -> tuple[nn.Module, float]:
    """``torch.compile`` the model and run ``warmup(compiled)`` once outside the timed run, restoring every
    weight and buffer afterwards so the warm-up leaves no trace. Returns (compiled, warm-up seconds)."""
    check_compile_available(device)
    compiled = cast(nn.Module, torch.compile(model))
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


# glibc's mallopt parameter numbers (malloc.h), and its own defaults' end state (the dynamic mmap threshold's 64-bit ceiling,
# trimming at twice it), which ``held_memory`` restores
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_GLIBC_MMAP_CEILING = 32 * 2**20


def _glibc():
    """The C library when it is glibc (Linux), else None: other allocators need none of this."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 — glibc only (musl has mallopt too, with other meanings)
    except (OSError, AttributeError):
        return None
    return libc


@contextmanager
def held_memory(device: torch.device, enabled: bool = True) -> Iterator[None]:
    """While training on a CPU: freed memory stays with the process for the next step.

    By default glibc gives large freed blocks back to the kernel (mmap'd blocks at once, the heap's top when
    it exceeds an adaptive threshold), so a step's activations (fastcnn at batch 256: 22 MB a tensor) come
    back as fresh pages, faulted in and zeroed 4 KiB at a time: 700-12,000 page faults and 1-21 ms of kernel
    time per step of the fast recipe, depending on where the threshold settled. With allocations served
    from the heap and no trimming, ~250 (benchmarks/profile_phases.py counts them). Afterwards the
    thresholds return to where glibc's own adjustment ends and the held memory is trimmed.
    ``enabled=False``: glibc's defaults as they are."""
    libc = _glibc() if enabled and device.type == "cpu" else None
    if libc is None:
        yield
        return
    libc.mallopt(_M_MMAP_THRESHOLD, 2**30)
    libc.mallopt(_M_TRIM_THRESHOLD, -1)  # -1: never trim (mallopt(3))
    try:
        yield
    finally:
        libc.mallopt(_M_MMAP_THRESHOLD, _GLIBC_MMAP_CEILING)
        libc.mallopt(_M_TRIM_THRESHOLD, 2 * _GLIBC_MMAP_CEILING)
        libc.malloc_trim(0)
