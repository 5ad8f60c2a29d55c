"""The non-finite guard: a NaN or infinite loss stops training before it reaches the weights, with a
report in the run folder. Under DDP every rank learns of a bad loss on any rank in one agreement."""

from __future__ import annotations

import math

from cnnlab.engine.callbacks import Callback, LoopView
from cnnlab.errors import NonFiniteLossError

CUDA_LOOK_EVERY = 50  # on CUDA reading the loss is a device sync: look every N steps and before checkpoints


class NonFiniteGuard(Callback):
    """Raise ``NonFiniteLossError`` (exit code 3) at the first step whose loss is not finite.

    Args:
        checkpoints: the run's ``Checkpointer``, if any: the report ``nonfinite_loss.json`` goes to its run
            folder and names the last good checkpoint.
    """

    priority = -50  # first: nothing else should see a non-finite epoch
    phase = "guard"

    def __init__(self, checkpoints=None):
        self.checkpoints = checkpoints

    def on_before_optimizer_step(self, loop: LoopView) -> None:
        due = self.checkpoints is not None and self.checkpoints.due(loop.global_step + 1)
        look = loop.device.type == "cpu" or loop.step % CUDA_LOOK_EVERY == 0 or due  # the same on every rank
        if not look:
            return
        bad, _ = loop.ddp.agree(not math.isfinite(loop.loss.item()), 0)
        if bad:
            raise self._report(loop)

    def on_epoch_end(self, loop: LoopView) -> None:
        if not math.isfinite(loop.logs["loss"]):
            raise NonFiniteLossError(
                f"loss became non-finite in epoch {loop.epoch} (lr {loop.epoch_lr:g}); lower --lr"
            )

    def _report(self, loop: LoopView) -> NonFiniteLossError:
        """Write a short report into the run folder (rank 0) and build the error every rank raises."""
        ddp, loss = loop.ddp, loop.loss.item()
        lr_now = float(loop.optimizer.param_groups[0]["lr"])
        where = f"at epoch {loop.epoch}, step {loop.step + 1} (lr {lr_now:g})"
        what = f"loss became {loss}" if not math.isfinite(loss) else "loss became non-finite on another rank"
        ranks = ddp.gather_json({"loss": str(loss), "batch_indices": loop.batch_indices.tolist()})
        msg = f"{what} {where}; lower --lr"
        if ddp.is_main and self.checkpoints is not None:
            last = self.checkpoints.last
            report = {
                "error": "non-finite loss",
                "epoch": loop.epoch,
                "step": loop.step + 1,  # 1-based within the epoch
                "global_step": loop.global_step + 1,
                "lr": lr_now,
                "loss": ranks[0]["loss"] if len(ranks) == 1 else [r["loss"] for r in ranks],
                "batch_indices": [i for r in ranks for i in r["batch_indices"]],  # training-split indices
                "last_good_checkpoint": str(last) if last else None,
            }
            path = self.checkpoints.write_report("nonfinite_loss.json", report)
            msg += f". Report: {path}; last good checkpoint: {report['last_good_checkpoint'] or 'none yet'}"
        ddp.barrier()  # let rank 0 finish writing before any rank exits
        return NonFiniteLossError(msg)
