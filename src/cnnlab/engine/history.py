"""History: one row per epoch (epoch, loss, accuracy, val_loss, val_accuracy, lr, seconds), kept by a
callback that ``fit`` always runs and returns."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from cnnlab.engine.callbacks import Callback, LoopView
from cnnlab.notebook import history_html

COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")


@dataclass
class History(Callback):
    rows: list[dict] = field(default_factory=list)
    best_epoch: int | None = None  # the epoch whose weights the model holds at the end (if selected)
    stopped_early: bool = False
    compile_seconds: float | None = None  # torch.compile warm-up, excluded from the epochs' seconds

    def append(self, row: dict) -> None:
        self.rows.append(dict(row))

    priority = -30  # after the guard: a non-finite epoch is never recorded

    def on_epoch_end(self, loop: LoopView) -> None:
        self.append(dict(loop.logs))

    def on_train_end(self, loop: LoopView) -> None:
        self.best_epoch = loop.best_epoch
        self.stopped_early = loop.stop_requested

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: str) -> list:
        """``history["val_loss"]`` -> list over epochs (like Keras' ``history.history``)."""
        return [r.get(key) for r in self.rows]

    @property
    def epochs(self) -> int:
        return len(self.rows)

    @property
    def total_seconds(self) -> float:
        return float(sum(r.get("seconds", 0.0) for r in self.rows))

    def columns(self) -> list[str]:
        keys = [c for c in COLUMNS if any(c in r for r in self.rows)]
        return keys + sorted({k for r in self.rows for k in r} - set(keys))

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.columns(), lineterminator="\n")
        w.writeheader()
        for r in self.rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
        return buf.getvalue()

    @classmethod
    def from_csv(cls, text: str, *, best_epoch: int | None = None) -> History:
        rows = []
        for r in csv.DictReader(io.StringIO(text)):
            rows.append({k: (int(v) if k == "epoch" else float(v)) for k, v in r.items() if v != ""})
        return cls(rows, best_epoch=best_epoch)

    def _repr_html_(self) -> str:
        """In Jupyter: the epochs as a table (the best in bold) and the learning curves."""
        return history_html(self)

    def as_dict(self) -> dict:
        return {
            "rows": self.rows,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "compile_seconds": self.compile_seconds,
        }
