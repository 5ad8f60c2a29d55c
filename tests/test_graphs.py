"""The CUDA-graph step's structure, checked on the CPU: the same step body run eagerly gives the eager
step's weights; its device-tensor schedules give torch's learning rates; a failed capture falls back to
eager steps with the state untouched; --cuda-graphs on without a GPU is one clear error."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch

import cnnlab as cl
from cnnlab.config import TrainConfig, training_options
from cnnlab.engine.batches import DeviceBatches
from cnnlab.engine.distributed import Distributed
from cnnlab.engine.graphs import DeviceSchedule, GraphedStep, use_graphs
from cnnlab.engine.setup import make_schedule
from cnnlab.engine.step import TrainStep
from cnnlab.errors import UsageError

MODEL = "conv8-bn-pool-dense16-drop.0"


def _steps(kind, tiny, cfg, n=6, **kw):
    torch.manual_seed(0)
    model = cl.create_model(MODEL, input_shape=tiny.input_shape, num_classes=10, seed=0)
    batches = DeviceBatches(tiny.train.images, tiny.train.labels, batch_size=50, shuffle=True, drop_last=True)
    step = kind(
        model,
        cfg,
        steps_per_epoch=len(batches),
        device=torch.device("cpu"),
        ddp=Distributed(),
        example=batches,
        **kw,
    )
    losses = []
    for x, y, _ in itertools.islice(batches.epoch(1), n):
        loss, _ = step(x, y)
        losses.append(float(loss.detach()))
    return model, losses, step


@pytest.mark.parametrize(
    "optimizer,schedule", [("adam", "constant"), ("adamw", "linear"), ("nesterov", "linear")]
)
def test_graph_step_body_matches_the_eager_step(tiny, one_thread, optimizer, schedule):
    cfg = training_options(dict(optimizer=optimizer, schedule=schedule, lr=0.01, epochs=1, weight_decay=1e-4))
    eager, eager_losses, _ = _steps(TrainStep, tiny, cfg)
    graphed, graphed_losses, _ = _steps(GraphedStep, tiny, cfg, capture=False)
    assert graphed_losses == pytest.approx(eager_losses, rel=1e-6)
    for (k, a), b in zip(eager.state_dict().items(), graphed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.parametrize("name,total", [("onecycle", 40), ("onecycle", 4), ("linear", 30), ("constant", 10)])
def test_device_schedule_gives_torchs_learning_rates(name, total):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.2, momentum=0.9)
    sched = make_schedule(opt, name, total)
    dev = DeviceSchedule(name, 0.2, total, torch.device("cpu"))
    for _ in range(total):
        assert float(dev.lr) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-5, abs=1e-9)
        opt.step()
        if sched is not None:
            sched.step()
        dev.advance()
        dev.set_lr()


def test_device_schedule_state_round_trips():
    a = DeviceSchedule("onecycle", 0.1, 50, torch.device("cpu"))
    for _ in range(17):
        a.advance()
    b = DeviceSchedule("onecycle", 0.1, 50, torch.device("cpu"))
    b.load_state_dict(a.state_dict())
    a.set_lr()
    assert float(b.lr) == float(a.lr) and a.state_dict() == {"step": 17}


def test_failed_capture_falls_back_to_eager_with_one_warning_and_the_same_result(tiny, one_thread, capsys):
    cfg = training_options(dict(optimizer="adam", lr=0.01, epochs=1))
    eager, eager_losses, _ = _steps(GraphedStep, tiny, cfg, capture=False)
    fallback, losses, step = _steps(GraphedStep, tiny, cfg, capture=True)  # no CUDA here: capture fails
    assert step.graph is None
    err = capsys.readouterr().err
    assert err.count("CUDA graph capture failed") == 1 and "training with eager steps" in err
    assert losses == pytest.approx(eager_losses, rel=1e-6)
    for a, b in zip(eager.state_dict().values(), fallback.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_drop_last_keeps_shapes_fixed():
    b = DeviceBatches(
        torch.zeros(230, 1, 4, 4, dtype=torch.uint8),
        torch.zeros(230, dtype=torch.int64),
        batch_size=50,
        drop_last=True,
    )
    sizes = [len(y) for _, y, _ in b.epoch(1)]
    assert sizes == [50] * 4 and len(b) == 4 and b.num_samples == 200
    assert (
        len(
            DeviceBatches(
                torch.zeros(30, 1, 4, 4, dtype=torch.uint8),
                torch.zeros(30, dtype=torch.int64),
                batch_size=50,
                drop_last=True,
            )
        )
        == 1
    )


def test_use_graphs_decides_by_device_and_mode():
    cpu, one = torch.device("cpu"), Distributed()
    assert not use_graphs("auto", cpu, one) and not use_graphs("off", cpu, one)
    with pytest.raises(UsageError, match="needs a CUDA GPU"):
        use_graphs("on", cpu, one)
    two = copy.copy(one)
    two.world = 2
    with pytest.raises(UsageError, match="does not combine with several processes"):
        use_graphs("on", torch.device("cuda"), two)
    assert not use_graphs("auto", torch.device("cuda"), two)


def test_cuda_graphs_on_without_a_gpu_is_one_clear_line(run_cli, tmp_path, tiny, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(UsageError, match="--cuda-graphs on needs a CUDA GPU") as err:
        cl.fit(cl.create_model("mlp"), tiny, epochs=1, cuda_graphs="on", progress=False)
    assert err.value.exit_code == 2
    with pytest.raises(cl.CnnlabError, match="Unknown --cuda-graphs 'maybe'"):
        TrainConfig(cuda_graphs="maybe").validate()


@pytest.mark.parametrize("kind", [TrainStep, GraphedStep])
def test_clip_grad_norm_clips_in_the_one_step_body(tiny, one_thread, kind):
    """--clip-grad-norm is one line of the step body: both paths move the weights exactly as
    torch.nn.utils.clip_grad_norm_ on a copy does (plain first SGD step: a move of lr * max_norm)."""
    cfg = training_options(dict(optimizer="sgd", lr=0.1, epochs=1, clip_grad_norm=1e-3))
    model = cl.create_model(MODEL, input_shape=tiny.input_shape, num_classes=10, seed=0)
    reference = copy.deepcopy(model)
    batches = DeviceBatches(tiny.train.images, tiny.train.labels, batch_size=50, drop_last=True)
    x, y, _ = next(iter(batches.epoch(1)))
    kw = dict(capture=False) if kind is GraphedStep else {}
    step = kind(
        model, cfg, steps_per_epoch=1, device=torch.device("cpu"), ddp=Distributed(), example=batches, **kw
    )
    before = [p.detach().clone() for p in model.parameters()]
    step(x, y)

    opt = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    torch.nn.functional.cross_entropy(reference(x).float(), y).backward()
    raw = torch.nn.utils.clip_grad_norm_(reference.parameters(), 1e-3)
    opt.step()
    assert raw > 1e-2  # the clipping bites
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)
    moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before, strict=True)])
    assert float(moved.norm()) == pytest.approx(0.1 * 1e-3, rel=1e-4)


def test_clip_grad_norm_is_one_option_of_the_table():
    assert TrainConfig().clip_grad_norm is None  # off by default
    with pytest.raises(cl.CnnlabError, match="--clip-grad-norm must be a positive number"):
        training_options(dict(clip_grad_norm=0.0))
