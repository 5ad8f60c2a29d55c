"""Progress while training: a live rich bar on a terminal, plain lines otherwise (a log file, a pipe,
CI), so a long first epoch is never silent. In a notebook the bar renders as a widget (rich's Jupyter
support)."""

from __future__ import annotations

import importlib.util
import sys
import time
from typing import Any, TextIO

from cnnlab.engine.callbacks import Callback, TrainState


def format_row(row: dict, epochs: int) -> str:
    parts = [
        f"epoch {row['epoch']}/{epochs}",
        f"{row['seconds']:.1f}s",
        f"loss {row['loss']:.4f}",
        f"acc {row['accuracy']:.4f}",
    ]
    if "val_loss" in row:
        parts += [f"val_loss {row['val_loss']:.4f}", f"val_acc {row['val_accuracy']:.4f}"]
    return "  ".join(parts)


class ProgressBar(Callback):
    """Show training progress on ``stream`` (stdout by default).

    Args:
        live: a live bar (rich) — None: when ``stream`` is a terminal or a notebook.
        every_seconds: without a live bar, print a line at most this often within an epoch.
        every_steps: the live bar is refreshed every this many steps (each refresh reads the running
            loss, a device sync on a GPU).
    """

    def __init__(
        self,
        *,
        stream: TextIO | None = None,
        live: bool | None = None,
        every_seconds: float = 30.0,
        every_steps: int = 25,
    ):
        self.stream = stream or sys.stdout
        self.live = live
        self.every_seconds = every_seconds
        self.every_steps = every_steps
        self._bar: Any = None  # a rich Progress while a live bar is shown
        self._task: Any = None
        self._last = 0.0
        self._jupyter = False

    def on_train_begin(self, state: TrainState) -> None:
        from rich.console import Console

        console = Console(file=self.stream)
        # in Jupyter rich draws its live bar as a widget: only with ipywidgets, refreshed by us (its own
        # refresh thread can swallow the epoch lines printed beside it)
        self._jupyter = console.is_jupyter
        widgets = importlib.util.find_spec("ipywidgets") is not None
        live = self.live if self.live is not None else console.is_terminal or (self._jupyter and widgets)
        if live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[metrics]}"),
                TimeRemainingColumn(),
                console=console,
                transient=True,
                auto_refresh=not self._jupyter,
            )
            state.resources.enter_context(self._bar)

    def on_epoch_begin(self, state: TrainState) -> None:
        self._last = time.monotonic()
        if self._bar is not None:
            desc = f"epoch {state.epoch}/{state.epochs}"
            self._task = self._bar.add_task(
                desc, total=state.steps_per_epoch, completed=state.step, metrics=""
            )

    def _metrics(self, state: TrainState) -> str:
        seen = max(state.sums.seen, 1)
        return f"loss {state.sums.loss_sum.item() / seen:.4f} acc {state.sums.correct.item() / seen:.4f}"

    def on_train_batch_end(self, state: TrainState) -> None:
        last = state.step == state.steps_per_epoch
        if self._bar is not None:
            if state.step % self.every_steps == 1 or last:
                self._bar.update(self._task, completed=state.step, metrics=self._metrics(state))
                if self._jupyter:
                    self._bar.refresh()
        elif not last and time.monotonic() - self._last >= self.every_seconds:
            self._last = time.monotonic()
            seconds = time.perf_counter() - state.epoch_t0
            print(
                f"epoch {state.epoch}/{state.epochs}  step {state.step}/{state.steps_per_epoch}  "
                f"{seconds:.0f}s  {self._metrics(state)}",
                file=self.stream,
                flush=True,
            )

    def on_epoch_end(self, state: TrainState) -> None:
        line = format_row(state.logs, state.epochs)
        if self._bar is not None:
            self._bar.remove_task(self._task)
            if self._jupyter:
                self._bar.refresh()
            else:
                self._bar.console.print(line)
                return
        print(line, file=self.stream, flush=True)  # plain text: no escape codes in a log or a notebook
