"""profile_phases.py's pieces that need torch and cnnlab (imported after the CPU capability is set)."""

from __future__ import annotations

import resource
import time

import torch

from cnnlab.engine import Callback
from cnnlab.engine.phases import PHASES, PhaseTimer

REST = "loop (unmarked)"  # the loop's own lines between the marks: epoch bookkeeping, running sums


class Window(Callback):
    """Marks the profiled epochs: phase seconds are read at the first epoch's start and the last one's end
    (so set-up, compile warm-up and later epochs stay out), then asks the loop to stop."""

    priority = 99  # after every built-in callback's on_epoch_end: its time is inside the window
    phase = "callbacks"

    def __init__(self, epochs: int):
        self.epochs = epochs
        self.timer: PhaseTimer | None = None
        self.t0 = self.t1 = 0.0
        self.start: dict = {}
        self.end: dict = {}
        self.os0 = self.os1 = (0, 0.0)  # (minor page faults, kernel CPU seconds) of the process
        self.steps = 0

    def on_epoch_begin(self, loop) -> None:
        if loop.epoch == loop.first_epoch and self.timer is not None:
            self.t0, self.start, self.os0 = time.perf_counter(), self._snapshot(), _os_counts()

    def on_train_batch_end(self, loop) -> None:
        self.steps += 1

    def on_epoch_end(self, loop) -> None:
        if loop.epoch - loop.first_epoch + 1 >= self.epochs:
            self.t1, self.end, self.os1 = time.perf_counter(), self._snapshot(), _os_counts()
            loop.request_stop()

    def _snapshot(self) -> dict:
        assert self.timer is not None
        return {k: (self.timer.seconds[k], self.timer.calls[k]) for k in self.timer.seconds}

    def result(self, history, fit_wall: float) -> dict:
        """Seconds, share and calls per phase inside the window, and the loop's unmarked rest."""
        wall = self.t1 - self.t0
        phases = {}
        for name in (*PHASES, *sorted(set(self.end) - set(PHASES))):
            s0, c0 = self.start.get(name, (0.0, 0))
            s1, c1 = self.end.get(name, (0.0, 0))
            if c1 - c0:
                phases[name] = {"seconds": s1 - s0, "calls": c1 - c0}
        phases[REST] = {"seconds": max(wall - sum(p["seconds"] for p in phases.values()), 0.0), "calls": 0}
        for p in phases.values():
            p["share"] = p["seconds"] / wall if wall > 0 else 0.0
        return {
            "window_seconds": wall,
            "steps": self.steps,
            "ms_per_step": 1000 * wall / max(self.steps, 1),
            "compile_seconds": history.compile_seconds,
            "fit_wall_seconds": fit_wall,
            "threads": torch.get_num_threads(),
            # deterministic where seconds are not (a shared machine): the kernel's share of the work
            "page_faults_per_step": (self.os1[0] - self.os0[0]) / max(self.steps, 1),
            "kernel_cpu_ms_per_step": 1000 * (self.os1[1] - self.os0[1]) / max(self.steps, 1),
            "phases": phases,
        }


def _os_counts() -> tuple[int, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_minflt, r.ru_stime


def table(result: dict) -> str:
    """The phases as a Markdown table, then the totals."""
    steps = max(result["steps"], 1)
    lines = ["| phase | seconds | % | ms per step | calls |", "|---|---:|---:|---:|---:|"]
    for name, p in result["phases"].items():
        lines.append(
            f"| {name} | {p['seconds']:.2f} | {100 * p['share']:.1f} | {1000 * p['seconds'] / steps:.2f} "
            f"| {p['calls']} |"
        )
    lines.append(f"| **epoch** | **{result['window_seconds']:.2f}** | 100 | {result['ms_per_step']:.2f} | |")
    compile_s = result["compile_seconds"]
    lines.append(
        f"\n{result['steps']} steps, {result['threads']} threads; torch.compile warm-up "
        + (f"{compile_s:.1f} s (outside the epoch)" if compile_s is not None else "off")
        + f"; fit() wall {result['fit_wall_seconds']:.1f} s; {result['page_faults_per_step']:,.0f} page faults "
        f"and {result['kernel_cpu_ms_per_step']:.1f} ms of kernel CPU time per step"
    )
    return "\n".join(lines)
