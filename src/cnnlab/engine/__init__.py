"""Training engine: fit/evaluate/predict on device-resident data, callbacks, history."""

from cnnlab.engine.batches import DeviceBatches, epoch_permutation, to_float
from cnnlab.engine.callbacks import Callback, EarlyStopping, TrainState
from cnnlab.engine.history import History
from cnnlab.engine.loop import OPTIMIZERS, SCHEDULES, evaluate, fit, predict, resolve_device

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "Callback",
    "DeviceBatches",
    "EarlyStopping",
    "History",
    "TrainState",
    "epoch_permutation",
    "evaluate",
    "fit",
    "predict",
    "resolve_device",
    "to_float",
]
