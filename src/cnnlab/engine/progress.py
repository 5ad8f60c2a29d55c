"""Progress while training: a live rich bar on a terminal, plain lines otherwise (a log file, a pipe,
CI), so a long first epoch is never silent. In a notebook the bar is a display that is updated in place
and ends as one line of text (`ProgressLine`): no widget is left behind."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from html import escape
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cnnlab.engine.callbacks import Callback, LoopView


def format_row(row: Mapping[str, Any], epochs: int) -> str:
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
        live: a live bar (rich on a terminal, `ProgressLine` in Jupyter) — None: when
            ``stream`` is a terminal or a notebook.
        every_seconds: without a live bar, print a line at most this often within an epoch.
        every_steps: the live bar is refreshed every this many steps (each refresh reads the running
            loss, a device sync on a GPU).
    """

    priority = -10  # after the history, before your callbacks: an epoch's line prints before they run
    phase = "progress"

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
        self._line: Any = None  # a ProgressLine while training in Jupyter
        self._t0 = 0.0

    def on_train_begin(self, loop: LoopView) -> None:
        console = Console(file=self.stream)
        self._t0 = time.perf_counter()
        self._bar = self._line = None
        self._jupyter = console.is_jupyter
        live = self.live if self.live is not None else console.is_terminal or self._jupyter
        if live and self._jupyter:
            # not rich's Jupyter bar: it is an ipywidgets Output that stays behind, empty, once closed
            self._line = ProgressLine()
            loop.at_exit(self._line.close)  # an error or Ctrl-C leaves the last line shown
        elif live:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[metrics]}"),
                TimeRemainingColumn(),
                console=console,
                transient=True,
                auto_refresh=False,  # drawn at our updates only: no thread redrawing 10x a second beside the step
            )
            loop.keep_open(self._bar)

    def on_epoch_begin(self, loop: LoopView) -> None:
        self._last = time.monotonic()
        if self._bar is not None:
            desc = f"epoch {loop.epoch}/{loop.epochs}"
            self._task = self._bar.add_task(desc, total=loop.steps_per_epoch, completed=loop.step, metrics="")
            self._bar.refresh()

    def _metrics(self, loop: LoopView) -> str:
        seen = max(loop.sums.seen, 1)
        return f"loss {loop.sums.loss_sum.item() / seen:.4f} acc {loop.sums.correct.item() / seen:.4f}"

    def on_train_batch_end(self, loop: LoopView) -> None:
        last = loop.step == loop.steps_per_epoch
        if self._bar is not None:
            if loop.step % self.every_steps == 1 or last:
                self._bar.update(self._task, completed=loop.step, metrics=self._metrics(loop))
                self._bar.refresh()
        elif self._line is not None:
            if loop.step % self.every_steps == 1 or last:
                self._line.update(
                    f"epoch {loop.epoch}/{loop.epochs}  step {loop.step}/{loop.steps_per_epoch}  "
                    f"{self._metrics(loop)}",
                    loop.step / max(loop.steps_per_epoch, 1),
                )
        elif not last and time.monotonic() - self._last >= self.every_seconds:
            self._last = time.monotonic()
            seconds = time.perf_counter() - loop.epoch_t0
            print(
                f"epoch {loop.epoch}/{loop.epochs}  step {loop.step}/{loop.steps_per_epoch}  "
                f"{seconds:.0f}s  {self._metrics(loop)}",
                file=self.stream,
                flush=True,
            )

    def on_epoch_end(self, loop: LoopView) -> None:
        line = format_row(loop.logs, loop.epochs)
        if self._bar is not None:
            self._bar.remove_task(self._task)
            self._bar.console.print(line)
            return
        print(line, file=self.stream, flush=True)  # plain text: no escape codes in a log or a notebook

    def on_train_end(self, loop: LoopView) -> None:
        if self._line is not None:
            epochs = loop.epoch - loop.first_epoch + 1
            self._line.close(
                f"trained {epochs} epoch{'s' * (epochs != 1)} in {time.perf_counter() - self._t0:.1f} s"
            )


class ProgressLine:
    """One line of live progress in Jupyter that leaves plain text behind, never a widget.

    A display handle (IPython's ``display_id``) is updated in place: while work runs it shows a bar and
    a line of text (HTML, with the text as the plain-text fallback); `close` replaces it with a final
    line of text. A saved or converted notebook then holds that line, not an empty ``Output()`` widget
    (what rich's live display leaves once it closes its ipywidgets ``Output``). It needs IPython only,
    not ipywidgets, and outside IPython it does nothing.

    Example:
        >>> line = ProgressLine()
        >>> line.update("epoch 1/2  step 10/30", 10 / 30)  # shown on first use, updated after
        >>> line.close("2 epochs in 3.1 s")  # the text that stays; later calls do nothing
    """

    def __init__(self) -> None:
        self._handle: Any = None
        self._text = ""
        self._closed = False

    @staticmethod
    def _bundle(text: str, fraction: float | None) -> dict[str, str]:
        html = f'<pre style="margin:0">{escape(text)}</pre>'
        if fraction is not None:
            done = min(max(float(fraction), 0.0), 1.0)
            bar = f'<progress value="{done:.4f}" max="1" style="width:16em;vertical-align:middle"></progress>'
            html = f'<div style="display:flex;gap:0.8em;align-items:center">{bar}{html}</div>'
        return {"text/plain": text, "text/html": html}

    def update(self, text: str, fraction: float | None = None) -> None:
        """Show ``text`` (and a bar at ``fraction`` of 0..1, when given)."""
        if self._closed:
            return
        self._text = text
        try:  # deferred: IPython is there only in a notebook
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:  # no IPython: nothing to show
            return
        if get_ipython() is None:  # plain Python: display() would print the bundle
            return
        bundle = self._bundle(text, fraction)
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)

    def close(self, text: str | None = None) -> None:
        """Leave ``text`` as plain text in place of the bar (None: the last text shown). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._handle is not None:
            self._handle.update({"text/plain": self._text if text is None else text}, raw=True)
