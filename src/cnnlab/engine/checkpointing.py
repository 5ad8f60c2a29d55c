"""Checkpoints and graceful stop as a callback: the whole training state is saved every N steps and at
the end of every epoch; the first SIGINT/SIGTERM finishes the step, saves and raises ``Interrupted``; a
resumed run is put back exactly where its checkpoint stopped, mid-epoch included."""

from __future__ import annotations

from collections.abc import Sequence

from cnnlab.engine.callbacks import Callback, TrainState
from cnnlab.engine.checkpoint import Checkpoint
from cnnlab.engine.signals import GracefulStop, Interrupted, signal_name
from cnnlab.engine.snapshot import Checkpointer, capture, rank_state, restore


class Checkpointing(Callback):
    """Save to ``checkpoints`` (a ``Checkpointer``) and/or continue from ``resume`` (a loaded checkpoint).

    ``callbacks`` are the user's callbacks whose ``state_dict`` each checkpoint carries (early stopping's
    best weights, say). Put this callback last: it saves what the others did at the end of an epoch.
    """

    def __init__(
        self,
        checkpoints: Checkpointer | None,
        *,
        resume: Checkpoint | None = None,
        callbacks: Sequence[Callback] = (),
        history=None,
    ):
        self.checkpoints = checkpoints
        self.resume = resume
        self.callbacks = list(callbacks)
        self.history = history

    def _parts(self, state: TrainState) -> dict:
        return dict(
            model=state.model,
            optimizer=state.optimizer,
            schedule=state.schedule,
            ema=state.ema,
            callbacks=self.callbacks,
            history=self.history,
        )

    def on_train_begin(self, state: TrainState) -> None:
        if self.resume is not None:
            at, sums = restore(self.resume, **self._parts(state), rank=state.ddp.rank)
            state.resumed = {**at, "sums": sums}
            state.global_step, state.best_epoch = at["global_step"], at.get("best_epoch")
            state.first_epoch = state.epochs + 1 if at.get("stopped_early") else at["epoch"]
            self.history.stopped_early = bool(at.get("stopped_early"))
        if self.checkpoints is not None:
            if state.ddp.is_main:
                self.checkpoints.begin(state.global_step)
            # a launcher repeats a Ctrl-C to every worker: a repeat within a second is the same request
            state.stop = state.resources.enter_context(
                GracefulStop(debounce=1.0 if state.ddp.active else 0.0)
            )

    def _save(self, state: TrainState, *, epoch_end: bool) -> None:
        checkpoints = self.checkpoints
        assert checkpoints is not None  # only called when checkpointing
        sums = None if epoch_end else state.sums.as_dict()
        ranks = state.ddp.gather_json(rank_state(sums))  # every rank's RNG and running sums, on rank 0
        if state.ddp.is_main:
            position = state.position(epoch_end=epoch_end)
            weights, contents = capture(
                **self._parts(state), position=position, ranks=ranks, meta=checkpoints.meta
            )
            checkpoints.save(
                state.global_step,
                weights,
                contents,
                epoch_end=state.epoch if epoch_end else None,
                best_epoch=state.best_epoch,
            )

    def on_train_batch_end(self, state: TrainState) -> None:
        if self.checkpoints is None:
            return
        mid_epoch = state.step < state.steps_per_epoch  # an epoch's last step saves at its end
        if state.signum or (self.checkpoints.due(state.global_step) and mid_epoch):
            self._save(state, epoch_end=False)
        if state.signum:
            raise self._interrupted(state, state.signum, f"epoch {state.epoch}, step {state.step}")

    def on_epoch_end(self, state: TrainState) -> None:
        if self.checkpoints is None:
            return
        self._save(state, epoch_end=True)
        _, signum = state.ddp.agree(False, state.stop.signum)
        if signum:
            raise self._interrupted(state, signum, f"epoch {state.epoch}")

    def _interrupted(self, state: TrainState, signum: int, where: str) -> Interrupted:
        state.ddp.barrier()  # let rank 0 finish saving before any rank exits
        last = self.checkpoints.last if self.checkpoints is not None else None
        saved = f"; saved {last}" if last else ""
        how = "--resume auto" if last else None
        return Interrupted(f"{signal_name(signum)}: stopped after {where}{saved}", signum, continue_with=how)
