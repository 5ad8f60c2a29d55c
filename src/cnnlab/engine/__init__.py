"""Training engine: fit/evaluate/predict on device-resident data, augmentation, TTA, callbacks, history."""

from cnnlab.engine.augment import Augment
from cnnlab.engine.batches import DeviceBatches, epoch_permutation, to_float
from cnnlab.engine.callbacks import Callback, CallbackList, EarlyStopping, LoopView, TrainState
from cnnlab.engine.checkpointing import Checkpointing
from cnnlab.engine.ema import EMA
from cnnlab.engine.guard import NonFiniteGuard
from cnnlab.engine.history import History
from cnnlab.engine.inference import evaluate, predict
from cnnlab.engine.loop import fit
from cnnlab.engine.progress import ProgressBar
from cnnlab.engine.setup import OPTIMIZERS, SCHEDULES, ParamGroups, param_groups, resolve_device
from cnnlab.engine.tta import VIEWS, tta_probs

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "VIEWS",
    "Augment",
    "EMA",
    "Callback",
    "CallbackList",
    "Checkpointing",
    "DeviceBatches",
    "EarlyStopping",
    "History",
    "LoopView",
    "NonFiniteGuard",
    "ParamGroups",
    "ProgressBar",
    "TrainState",
    "epoch_permutation",
    "evaluate",
    "fit",
    "param_groups",
    "predict",
    "resolve_device",
    "to_float",
    "tta_probs",
]
