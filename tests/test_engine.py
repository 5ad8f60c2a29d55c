"""fit / evaluate / predict and EarlyStopping semantics, on the real Fashion-MNIST subset."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import cnnlab as cl
from cnnlab.engine import DeviceBatches, EarlyStopping, TrainState, epoch_permutation
from cnnlab.errors import CnnlabError, NonFiniteLossError


def _feed(es: EarlyStopping, model: nn.Module, values: list[float]) -> TrainState:
    """Drive the callback as fit does, changing the weights each epoch so restores are visible."""
    state = TrainState(model=model)
    es.on_train_begin(state.view())
    for epoch, v in enumerate(values, start=1):
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float(epoch))
        state.epoch, state.logs = epoch, {"val_loss": v, "val_accuracy": -v}
        es.on_epoch_end(state.view())
        if state.stop_training:
            break
    es.on_train_end(state.view())
    return state


def test_early_stopping_stops_after_patience_and_restores_best():
    model = nn.Linear(2, 2)
    es = EarlyStopping("val_loss", patience=2)
    state = _feed(es, model, [1.0, 0.5, 0.6, 0.7, 0.4])
    assert state.stop_training and es.stopped_epoch == 4 and state.epoch == 4
    assert state.best_epoch == 2
    assert torch.all(model.weight == 2.0)  # weights of epoch 2 are back


def test_early_stopping_restores_best_also_at_the_epoch_limit():
    model = nn.Linear(2, 2)
    es = EarlyStopping("val_loss", patience=5)
    state = _feed(es, model, [1.0, 0.3, 0.5, 0.6])  # never stops early
    assert not state.stop_training and state.best_epoch == 2
    assert torch.all(model.weight == 2.0)


def test_early_stopping_modes_and_min_delta():
    es = EarlyStopping("val_accuracy", patience=1)
    assert es.mode == "max"
    state = _feed(es, nn.Linear(1, 1), [-0.5, -0.6, -0.55])  # accuracy 0.5, 0.6, 0.55
    assert state.best_epoch == 2 and state.stop_training
    es = EarlyStopping("val_loss", patience=1, min_delta=0.1)
    state = _feed(es, nn.Linear(1, 1), [1.0, 0.95, 0.5])
    assert es.stopped_epoch == 2 and state.best_epoch == 1  # 0.95 is not better by 0.1


def _feed_logs(es: EarlyStopping, model: nn.Module, logs: list[dict]) -> TrainState:
    state = TrainState(model=model)
    es.on_train_begin(state.view())
    for epoch, row in enumerate(logs, start=1):
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float(epoch))
        state.epoch, state.logs = epoch, row
        es.on_epoch_end(state.view())
    es.on_train_end(state.view())
    return state


def test_accuracy_ties_are_broken_by_the_loss_of_the_same_split():
    # a 24-image validation split: accuracy 1.0 from epoch 2 on, the loss still falling until epoch 4
    logs = [
        {"val_accuracy": 0.9583, "val_loss": 0.60},
        {"val_accuracy": 1.0, "val_loss": 0.43},
        {"val_accuracy": 1.0, "val_loss": 0.20},
        {"val_accuracy": 1.0, "val_loss": 0.13},
        {"val_accuracy": 1.0, "val_loss": 0.15},
    ]
    model = nn.Linear(2, 2)
    es = EarlyStopping("val_accuracy", patience=None)
    assert es.tie_break == "val_loss" and "ties broken by the lower val_loss" in es.describe()
    state = _feed_logs(es, model, logs)
    assert state.best_epoch == 4 and torch.all(model.weight == 4.0)
    # the old rule (the first epoch at the best value) is still there when asked for
    state = _feed_logs(EarlyStopping("val_accuracy", patience=None, tie_break=None), model, logs)
    assert state.best_epoch == 2
    # a tie that lowers the loss also resets the patience; a loss monitor has no tie-break
    es = EarlyStopping("val_accuracy", patience=2)
    assert _feed_logs(es, model, logs).best_epoch == 4 and not es.stopped_epoch
    assert EarlyStopping("val_loss").tie_break is None


def test_tie_break_state_survives_a_checkpoint():
    logs = [{"val_accuracy": 1.0, "val_loss": 0.3}, {"val_accuracy": 1.0, "val_loss": 0.4}]
    es = EarlyStopping("val_accuracy", patience=None)
    _feed_logs(es, nn.Linear(1, 1), logs[:1])
    again = EarlyStopping("val_accuracy", patience=None)
    again.load_state_dict(es.state_dict())
    state = TrainState(model=nn.Linear(1, 1))
    state.epoch, state.logs = 2, logs[1]
    again.on_epoch_end(state.view())
    assert again.best_epoch == 1  # 0.4 is not lower than the restored 0.3


def test_a_window_compares_trailing_means_so_one_lucky_epoch_does_not_win():
    # a small split's loss: one low epoch (3) in a noisy stretch, then a run that has settled lower on average
    losses = [0.9, 0.6, 0.30, 0.55, 0.50, 0.36, 0.35, 0.34, 0.38, 0.40]
    state = _feed_logs(
        EarlyStopping("val_loss", patience=None), nn.Linear(1, 1), [{"val_loss": v} for v in losses]
    )
    assert state.best_epoch == 3  # each epoch on its own: the lucky one
    es = EarlyStopping("val_loss", patience=None, window=3)
    model = nn.Linear(1, 1)
    state = _feed_logs(es, model, [{"val_loss": v} for v in losses])
    assert state.best_epoch == 8 and torch.all(model.weight == 8.0)  # mean of epochs 6-8 is the lowest
    assert "averaged over the 3 epochs ending there" in es.describe()
    # the window's values travel in a checkpoint: continuing after epoch 7 keeps the same choice
    first = EarlyStopping("val_loss", patience=None, window=3)
    _feed_logs(first, nn.Linear(1, 1), [{"val_loss": v} for v in losses[:7]])
    again = EarlyStopping("val_loss", patience=None, window=3)
    again.load_state_dict(first.state_dict())
    state = TrainState(model=nn.Linear(1, 1))
    for epoch, v in enumerate(losses[7:], start=8):
        state.epoch, state.logs = epoch, {"val_loss": v}
        again.on_epoch_end(state.view())
    assert again.best_epoch == 8
    with pytest.raises(ValueError, match="window"):
        EarlyStopping(window=0)


def test_early_stopping_without_restore_keeps_last_weights():
    model = nn.Linear(2, 2)
    _feed(EarlyStopping(patience=1, restore_best_weights=False), model, [1.0, 2.0])
    assert torch.all(model.weight == 2.0)


def test_device_batches_cover_each_sample_once_per_epoch():
    images = torch.arange(103, dtype=torch.uint8).view(103, 1, 1, 1)
    labels = torch.arange(103)
    b = DeviceBatches(images, labels, batch_size=10, shuffle=True, seed=3)
    seen = torch.cat([y for _, y, _ in b.epoch(1)])
    assert len(b) == 11 and sorted(seen.tolist()) == list(range(103))
    assert not torch.equal(seen, torch.cat([y for _, y, _ in b.epoch(2)]))  # a new order each epoch
    x, y, idx = next(iter(b.epoch(1)))
    assert x.dtype == torch.float32 and torch.allclose(x.flatten() * 255, y.float()) and torch.equal(idx, y)
    assert torch.equal(epoch_permutation(50, seed=1, epoch=2), epoch_permutation(50, seed=1, epoch=2))
    rest = [y for _, y, _ in b.epoch(1, start_step=4)]  # resuming mid-epoch gives the same tail
    assert torch.equal(torch.cat(rest), seen[40:])


@pytest.mark.slow
def test_fit_lowers_loss_and_restores_best_on_real_data(fmnist_small):
    model = cl.create_model("cnn2", seed=0)
    before = cl.evaluate(model, fmnist_small.val)
    es = EarlyStopping(patience=5)
    h = cl.fit(model, fmnist_small, epochs=3, batch_size=64, callbacks=[es], progress=False)
    after = cl.evaluate(model, fmnist_small.val)
    assert h["loss"][-1] < h["loss"][0] and after["loss"] < before["loss"] - 0.5
    assert after["accuracy"] > 0.7
    assert set(h.rows[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"}
    # the model holds the best epoch's weights: its val loss is the best one logged
    assert h.best_epoch == 1 + min(range(3), key=lambda i: h["val_loss"][i])
    assert after["loss"] == pytest.approx(h["val_loss"][h.best_epoch - 1], rel=1e-5)


def test_seeded_fit_is_repeatable(fmnist_small):
    def run(seed):
        model = cl.create_model("conv8-pool-dense32-drop.5", seed=seed)
        cl.fit(model, fmnist_small, epochs=1, batch_size=128, seed=seed, progress=False)
        return torch.cat([p.flatten() for p in model.parameters()])

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_evaluate_and_predict(fmnist_small):
    model = cl.create_model("mlp", seed=0)
    m = cl.evaluate(model, fmnist_small.test)
    assert set(m) == {"loss", "accuracy", "error_pct", "n"} and m["n"] == len(fmnist_small.test)
    assert m["error_pct"] == pytest.approx(100 * (1 - m["accuracy"]))
    probs = cl.predict(model, fmnist_small.test.images[:7])
    assert probs.shape == (7, 10) and torch.allclose(probs.sum(1), torch.ones(7), atol=1e-5)
    assert torch.allclose(cl.predict(model, fmnist_small.test.images[:7].float() / 255), probs, atol=1e-6)


def test_schedules_and_optimizers_train(fmnist_small):
    for opt, sched in [("sgd", "onecycle"), ("nesterov", "linear"), ("adamw", "constant")]:
        model = cl.create_model("mlp", seed=0)
        h = cl.fit(
            model,
            fmnist_small,
            epochs=2,
            batch_size=128,
            lr=0.01,
            optimizer=opt,
            schedule=sched,
            progress=False,
        )
        assert h["loss"][1] < h["loss"][0], (opt, sched)
    h = cl.fit(cl.create_model("mlp"), fmnist_small, epochs=2, lr=0.01, schedule="linear", progress=False)
    assert h["lr"][1] < h["lr"][0]
    for steps in range(1, 9):  # one-cycle over very few steps (4 used to divide by zero)
        data = dataclasses.replace(fmnist_small, train=fmnist_small.train.head(10 * steps))
        h = cl.fit(cl.create_model("mlp"), data, epochs=1, batch_size=10, schedule="onecycle", progress=False)
        assert len(h["loss"]) == 1, steps


def test_non_finite_loss_stops_with_exit_code_3(fmnist_small):
    model = cl.create_model("mlp", seed=0)
    model.output.register_forward_hook(lambda m, i, o: o * float("nan"))
    with pytest.raises(NonFiniteLossError, match="epoch 1, step 1") as e:
        cl.fit(model, fmnist_small, epochs=1, progress=False)
    assert e.value.exit_code == 3


@pytest.mark.parametrize(
    "kwargs,msg",
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch-size"),
        ({"optimizer": "lbfgs"}, "Unknown --optimizer"),
        ({"schedule": "cosine"}, "Unknown --schedule"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_bad_fit_arguments(fmnist_small, kwargs, msg):
    with pytest.raises((CnnlabError, RuntimeError), match=msg):
        cl.fit(cl.create_model("mlp"), fmnist_small, **{"epochs": 1, "progress": False, **kwargs})


def test_cuda_requested_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(CnnlabError, match="no CUDA GPU"):
        cl.fit(cl.create_model("mlp"), SimpleNamespace(train=None, val=None), device="cuda")


def test_predict_takes_what_evaluate_takes(tiny):
    model = cl.create_model("mlp", seed=0)
    probs = cl.predict(model, tiny.test)  # a split, as cl.evaluate(model, data.test)
    assert probs.shape == (len(tiny.test), 10)
    torch.testing.assert_close(probs.sum(1), torch.ones(len(tiny.test)))
    torch.testing.assert_close(cl.predict(model, tiny.test.images[3]), probs[3:4])  # one image (C, H, W)
    acc = (probs.argmax(1) == tiny.test.labels).float().mean().item()
    assert acc == pytest.approx(cl.evaluate(model, tiny.test)["accuracy"])
    with pytest.raises(CnnlabError, match="predict takes images"):
        cl.predict(model, [1, 2, 3])


def test_callbacks_run_by_priority_see_a_read_only_view_and_may_ask_to_stop(tiny):
    order: list[str] = []

    class Probe(cl.engine.Callback):
        def __init__(self, name: str, priority: int = 0):
            self.name, self.priority = name, priority

        def on_epoch_end(self, loop):
            order.append(self.name)
            with pytest.raises(AttributeError):
                loop.epoch = 7  # a view: callbacks change the loop only through its requests
            with pytest.raises(TypeError):
                loop.logs["loss"] = 0.0
            assert loop.model is model and loop.optimizer is not None and loop.step == loop.steps_per_epoch
            if self.name == "stopper":
                loop.request_stop()

    model = cl.create_model("mlp", input_shape=tiny.input_shape, num_classes=10, seed=0)
    h = cl.fit(model, tiny, epochs=5, batch_size=50, progress=False,
               callbacks=[Probe("late", 5), Probe("stopper"), Probe("early", -5)])  # fmt: skip
    assert order == ["early", "stopper", "late"] and h.epochs == 1 and h.stopped_early


def test_fit_takes_a_config_then_checked_overrides(tiny):
    config = cl.TrainConfig(epochs=3, batch_size=50, lr=0.01)
    h = cl.fit(cl.create_model("mlp", seed=0), tiny, config, epochs=1, progress=False)
    assert h.epochs == 1
    with pytest.raises(CnnlabError, match=r"Unknown training option 'batchsize' \(did you mean 'batch_size'"):
        cl.fit(cl.create_model("mlp"), tiny, batchsize=10, progress=False)
