"""Checkpoints, resuming and graceful stop as a callback: the whole training state is saved every N steps
and at the end of every epoch; the first SIGINT/SIGTERM finishes the step, saves and raises
``Interrupted``; a resumed run is put back exactly where its checkpoint stopped, mid-epoch included.

This callback owns both: the resume (it tells the loop where to start) and the signal state (the
``GracefulStop`` it opens, and under DDP one agreement per step so every rank stops at the same step)."""

from __future__ import annotations

from collections.abc import Sequence

from cnnlab.engine.callbacks import LAST, Callback, LoopView, TrainState
from cnnlab.engine.checkpoint import Checkpoint
from cnnlab.engine.history import History
from cnnlab.engine.signals import GracefulStop, Interrupted, signal_name
from cnnlab.engine.snapshot import Checkpointer, Stateful, capture, rank_state, restore


class Checkpointing(Callback):
    """Save to ``checkpoints`` (a ``Checkpointer``) and/or continue from ``resume`` (a loaded checkpoint).

    ``fit`` builds it with what a checkpoint holds besides the model, optimizer and schedule: ``ema`` (the
    EMA callback, or None), ``callbacks`` (the user's, each saved through its ``state_dict``: early
    stopping's best weights, say) and ``history``; and with ``loop``, the loop's state, whose start it
    sets when resuming. It runs last (``priority = LAST``): it saves what the others did in the same hook.
    """

    priority = LAST

    def __init__(
        self,
        checkpoints: Checkpointer | None,
        *,
        loop: TrainState,
        history: History,
        resume: Checkpoint | None = None,
        callbacks: Sequence[Callback] = (),
        ema: Stateful | None = None,
    ):
        self.checkpoints = checkpoints
        self.resume = resume
        self.loop = loop
        self.callbacks = list(callbacks)
        self.history = history
        self.ema = ema
        self.stop: GracefulStop | None = None  # the first SIGINT/SIGTERM received, while checkpointing

    def _parts(self, loop: LoopView) -> dict:
        return dict(
            model=loop.model,
            optimizer=loop.optimizer,
            schedule=loop.schedule,
            ema=self.ema,
            callbacks=self.callbacks,
            history=self.history,
        )

    def on_train_begin(self, loop: LoopView) -> None:
        if self.resume is not None:
            at, sums = restore(self.resume, **self._parts(loop), rank=loop.ddp.rank)
            loop.select_epoch(at.get("best_epoch"))
            if at.get("stopped_early"):  # nothing left to train
                loop.request_stop()
            cut = {"step": at["step"], "sums": sums, "lr": at.get("lr"), "seconds": at.get("seconds")}
            epoch = loop.epochs + 1 if at.get("stopped_early") else at["epoch"]
            self.loop.start_at(epoch=epoch, global_step=at["global_step"], cut=cut)
        if self.checkpoints is not None:
            if loop.ddp.is_main:
                self.checkpoints.begin(loop.global_step)
            # a launcher repeats a Ctrl-C to every worker: a repeat within a second is the same request
            self.stop = loop.keep_open(GracefulStop(debounce=1.0 if loop.ddp.active else 0.0))

    def _save(self, loop: LoopView, *, epoch_end: bool) -> None:
        checkpoints = self.checkpoints
        assert checkpoints is not None  # only called when checkpointing
        sums = None if epoch_end else loop.sums.as_dict()
        ranks = loop.ddp.gather_json(rank_state(sums))  # every rank's RNG and running sums, on rank 0
        if loop.ddp.is_main:
            position = self.loop.position(epoch_end=epoch_end)
            weights, contents = capture(
                **self._parts(loop), position=position, ranks=ranks, meta=checkpoints.meta
            )
            checkpoints.save(
                loop.global_step,
                weights,
                contents,
                epoch_end=loop.epoch if epoch_end else None,
                best_epoch=loop.best_epoch,
            )

    def _agreed_signal(self, loop: LoopView) -> int:
        """The signal any rank received (0: none); the same answer on every rank."""
        return loop.ddp.agree(False, self.stop.signum if self.stop is not None else 0)[1]

    def on_train_batch_end(self, loop: LoopView) -> None:
        if self.checkpoints is None:
            return
        signum = self._agreed_signal(loop)
        mid_epoch = loop.step < loop.steps_per_epoch  # an epoch's last step saves at its end
        if signum or (self.checkpoints.due(loop.global_step) and mid_epoch):
            self._save(loop, epoch_end=False)
        if signum:
            raise self._interrupted(loop, signum, f"epoch {loop.epoch}, step {loop.step}")

    def on_epoch_end(self, loop: LoopView) -> None:
        if self.checkpoints is None:
            return
        self._save(loop, epoch_end=True)
        signum = self._agreed_signal(loop)
        if signum:
            raise self._interrupted(loop, signum, f"epoch {loop.epoch}")

    def _interrupted(self, loop: LoopView, signum: int, where: str) -> Interrupted:
        loop.ddp.barrier()  # let rank 0 finish saving before any rank exits
        last = self.checkpoints.last if self.checkpoints is not None else None
        saved = f"; saved {last}" if last else ""
        how = "--resume auto" if last else None
        return Interrupted(f"{signal_name(signum)}: stopped after {where}{saved}", signum, continue_with=how)
