"""The non-finite guard: a NaN or infinite loss stops training before it reaches the weights, with a
report in the run folder. It also carries the run's stop requests (SIGINT/SIGTERM, see
``cnnlab.engine.signals``), so that under DDP every rank learns both in one agreement per step."""

from __future__ import annotations

import math

from cnnlab.engine.callbacks import Callback, TrainState
from cnnlab.errors import NonFiniteLossError

CUDA_LOOK_EVERY = 50  # on CUDA reading the loss is a device sync: look every N steps and before checkpoints


class NonFiniteGuard(Callback):
    """Raise ``NonFiniteLossError`` (exit code 3) at the first step whose loss is not finite.

    Args:
        checkpoints: the run's ``Checkpointer``, if any: the report ``nonfinite_loss.json`` goes to its run
            folder and names the last good checkpoint.
    """

    def __init__(self, checkpoints=None):
        self.checkpoints = checkpoints

    def on_before_optimizer_step(self, state: TrainState) -> None:
        due = self.checkpoints is not None and self.checkpoints.due(state.global_step + 1)
        look = state.device.type == "cpu" or state.step % CUDA_LOOK_EVERY == 0 or due
        bad = look and not math.isfinite(state.loss.item())
        bad, state.signum = state.ddp.agree(bad, state.stop.signum if state.stop else 0)
        if bad:
            raise self._report(state)

    def on_epoch_end(self, state: TrainState) -> None:
        if not math.isfinite(state.logs["loss"]):
            raise NonFiniteLossError(
                f"loss became non-finite in epoch {state.epoch} (lr {state.epoch_lr:g}); lower --lr"
            )

    def _report(self, state: TrainState) -> NonFiniteLossError:
        """Write a short report into the run folder (rank 0) and build the error every rank raises."""
        ddp, loss = state.ddp, state.loss.item()
        lr_now = float(state.optimizer.param_groups[0]["lr"])
        where = f"at epoch {state.epoch}, step {state.step + 1} (lr {lr_now:g})"
        what = f"loss became {loss}" if not math.isfinite(loss) else "loss became non-finite on another rank"
        ranks = ddp.gather_json({"loss": str(loss), "batch_indices": state.batch_indices.tolist()})
        msg = f"{what} {where}; lower --lr"
        if ddp.is_main and self.checkpoints is not None:
            last = self.checkpoints.last
            report = {
                "error": "non-finite loss",
                "epoch": state.epoch,
                "step": state.step + 1,  # 1-based within the epoch
                "global_step": state.global_step + 1,
                "lr": lr_now,
                "loss": ranks[0]["loss"] if len(ranks) == 1 else [r["loss"] for r in ranks],
                "batch_indices": [i for r in ranks for i in r["batch_indices"]],  # training-split indices
                "last_good_checkpoint": str(last) if last else None,
            }
            path = self.checkpoints.write_report("nonfinite_loss.json", report)
            msg += f". Report: {path}; last good checkpoint: {report['last_good_checkpoint'] or 'none yet'}"
        ddp.barrier()  # let rank 0 finish writing before any rank exits
        return NonFiniteLossError(msg)
