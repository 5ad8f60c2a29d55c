"""Each max-pool before the ReLU that feeds it while fit trains on the CPU (engine/reorder.py): exact, and
invisible to hooks on the model, to its state dict and to the model after training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import cnnlab as cl
from cnnlab.engine.reorder import pool_before_relu, swappable_pairs
from cnnlab.engine.setup import autocast


def _kinds(model) -> list[str]:
    return [type(m).__name__ for m in model.children()]


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_pool_first_gives_bit_identical_losses_and_gradients(amp):
    """Ties in a window included: integer inputs make many."""
    model = cl.create_model("fastcnn", seed=0).train()
    x = torch.randint(0, 4, (16, 1, 28, 28)).float()
    y = torch.randint(0, 10, (16,))
    grads = []
    for reorder in (False, True):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)  # the same dropout mask
        with pool_before_relu(model, reorder) as pairs, autocast(torch.device("cpu"), amp):
            assert bool(pairs) == reorder
            if reorder:
                assert _kinds(model)[:4] == ["Conv2d", "BatchNorm2d", "MaxPool2d", "ReLU"]
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    (l0, g0), (l1, g1) = grads
    assert torch.equal(l0, l1) and all(torch.equal(a, b) for a, b in zip(g0, g1, strict=True))


def test_the_order_comes_back_after_the_block_even_on_an_error_and_hooked_pairs_stay():
    model = cl.create_model("fastcnn", seed=0)
    written = list(model._modules)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(KeyboardInterrupt), pool_before_relu(model) as pairs:
        assert pairs == [("relu1", "pool1"), ("relu2", "pool2")]
        assert list(model._modules) != written and list(model.state_dict()) == list(state)
        raise KeyboardInterrupt
    assert list(model._modules) == written
    seen = []
    handle = model.relu2.register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    assert swappable_pairs(model) == [("relu1", "pool1")]  # relu2's hook would see other values
    with pool_before_relu(model):
        model(torch.zeros(2, 1, 28, 28))
    assert seen == [torch.Size([2, 64, 11, 11])]  # before its pool, as written
    handle.remove()
    handle = torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: None)
    try:
        assert swappable_pairs(model) == []  # global hooks see every layer
    finally:
        handle.remove()
    assert (
        swappable_pairs(cl.create_model("resnet_s")) == [] and swappable_pairs(cl.create_model("mlp")) == []
    )


def test_fit_runs_pool_first_with_the_models_own_hooks_seeing_every_step(tiny):
    model = cl.create_model("cnn2", seed=0)
    written = list(model._modules)
    calls, orders = [], []

    def hook(m, args, out):
        calls.append(1)
        orders.append(list(m._modules))

    model.register_forward_hook(hook)
    cl.fit(model, tiny, epochs=1, batch_size=20, progress=False, validate=False)
    assert len(calls) == -(-len(tiny.train) // 20)  # every training step, through the model's own forward
    assert all(o.index("pool1") < o.index("relu1") for o in orders)
    assert list(model._modules) == written  # as written again after fit
