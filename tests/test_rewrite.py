"""Each max-pool before the ReLU that feeds it while fit trains on the CPU (engine/rewrite.py): exact, and
invisible to hooks on the model, to its state dict and to the model after training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import cnnlab as cl
from cnnlab.engine.rewrite import pool_before_relu, swappable_pairs
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


def _pair(conv: torch.nn.Conv2d) -> torch.nn.Sequential:
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(conv.out_channels)
    with torch.no_grad():
        bn.weight.uniform_(-1.5, 1.5)  # negative scales too
        bn.bias.uniform_(-0.5, 0.5)
        bn.running_var.fill_(2.0)
    return torch.nn.Sequential(conv, bn, torch.nn.ReLU())


@pytest.mark.parametrize(
    "conv",
    [
        lambda: torch.nn.Conv2d(1, 32, 3),  # fastcnn's first layer
        lambda: torch.nn.Conv2d(1, 24, 3, padding=2, stride=2, dilation=2),
        lambda: torch.nn.Conv2d(2, 24, (2, 3), padding=(1, 0), bias=False),
    ],
    ids=["fastcnn", "padded-strided-dilated", "two-channels-no-bias"],
)
def test_a_folded_batch_norm_trains_as_conv_then_batch_norm(conv):
    """Outputs, every gradient and the running statistics agree to float rounding over two steps."""
    from cnnlab.engine.rewrite import fold_batch_norm

    written, folded = _pair(conv()), _pair(conv())
    folded.load_state_dict(written.state_dict())
    x = torch.randn(6, written[0].in_channels, 13, 15) * 2 + 0.5
    for _ in range(2):
        outs = []
        for model, fold in ((written, False), (folded, True)):
            with fold_batch_norm(model, fold) as pairs:
                assert pairs == ([("0", "1")] if fold else [])
                out = model(x)
                (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
            outs.append(out)
        torch.testing.assert_close(outs[1], outs[0], rtol=1e-4, atol=1e-5)
    scale = float(written[0].weight.grad.abs().max())
    for (name, a), b in zip(written.named_parameters(), folded.parameters(), strict=True):
        # a conv bias before batch norm has no effect: its gradient is 0 up to rounding either way
        tol = dict(rtol=0, atol=1e-4 * scale) if name == "0.bias" else dict(rtol=1e-4, atol=1e-5 * scale)
        torch.testing.assert_close(b.grad, a.grad, **tol, msg=name)
    for (name, a), b in zip(written.named_buffers(), folded.buffers(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)
    assert not {"forward", "_cnnlab_folded_into"} & set(vars(folded[0]) | vars(folded[1]))
    assert list(folded.state_dict()) == list(written.state_dict())


def test_a_fold_runs_as_written_in_eval_mode_for_an_input_needing_its_gradient_and_with_hooks():
    from cnnlab.engine.rewrite import fold_batch_norm, foldable_pairs

    model = _pair(torch.nn.Conv2d(1, 32, 3))
    x = torch.randn(4, 1, 10, 10)
    with torch.no_grad():
        want = model.eval()(x)
    with fold_batch_norm(model):
        assert torch.equal(model(x), want)  # the running statistics, as written
        model.train()
        xg = x.clone().requires_grad_()
        model(xg).sum().backward()
        assert xg.grad is not None and xg.grad.abs().sum() > 0  # through batch norm's own statistics
        copy = __import__("copy").deepcopy(model)
    assert copy[0].forward.__self__ is copy[0] and vars(copy[0])["_cnnlab_folded_into"][0] is copy[1]
    model[1].register_forward_hook(lambda m, i, o: None)
    assert foldable_pairs(model) == []
    assert foldable_pairs(_pair(torch.nn.Conv2d(8, 32, 3))) == []  # 72 values a patch: dearer than the pass
    assert foldable_pairs(cl.create_model("fastcnn")) == [("conv1", "bn1")]


def test_a_folded_batch_norm_under_bf16_autocast_is_as_close_to_float32_as_the_layers_written():
    from cnnlab.engine.rewrite import fold_batch_norm

    x = torch.randn(8, 1, 12, 12)
    grads = {}
    for name, fold, amp in (("float32", False, "off"), ("written", False, "bf16"), ("folded", True, "bf16")):
        model = _pair(torch.nn.Conv2d(1, 32, 3))  # the same seed: the same weights each time
        with fold_batch_norm(model, fold), autocast(torch.device("cpu"), amp):
            out = model(x)
        assert out.dtype == (torch.float32 if amp == "off" else torch.bfloat16)
        out.float().square().mean().backward()
        grads[name] = torch.cat([p.grad.flatten() for p in (model[0].weight, model[1].weight, model[1].bias)])
    error = {
        k: float((grads[k] - grads["float32"]).norm() / grads["float32"].norm())
        for k in ("written", "folded")
    }
    assert error["folded"] <= 1.5 * error["written"], error  # bf16 rounding either way, no more


@pytest.mark.parametrize(
    "pool",
    [
        lambda: torch.nn.MaxPool2d(2),  # fastcnn's
        lambda: torch.nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
    ],
    ids=["2x2", "3x3-padded-ceil"],
)
@pytest.mark.parametrize("channels_last", [True, False], ids=["channels_last", "contiguous"])
def test_a_folded_pair_pools_with_the_max_pool_after_it_a_chunk_at_a_time(pool, channels_last):
    """conv -> bn -> max-pool folded and pooled in chunks of images (70 images: 32 + 32 + 6) trains as
    the three layers written: outputs, gradients and running statistics to float rounding."""
    from cnnlab.engine.rewrite import fold_batch_norm

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    models = []
    for _ in range(2):
        model = _pair(torch.nn.Conv2d(1, 32, 3))
        model[2] = pool()  # conv, bn, pool
        models.append(model.to(memory_format=fmt))
    models[1].load_state_dict(models[0].state_dict())
    x = (torch.randn(70, 1, 17, 19) * 2 + 0.5).contiguous(memory_format=fmt)
    outs = []
    for model, fold in zip(models, (False, True), strict=True):
        with fold_batch_norm(model, fold) as pairs:
            assert {"forward"} <= set(vars(model[2])) if fold else not pairs
            out = model(x)
            (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
        outs.append(out)
        assert "forward" not in vars(model[2])  # the pool as written again
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-4, atol=1e-5)
    for (name, a), b in zip(models[0].named_parameters(), models[1].parameters(), strict=True):
        if name != "0.bias":  # before batch norm: no effect, a gradient of 0 up to rounding either way
            scale = float(
                a.grad.abs().max()
            )  # sums over 70 images: float32 rounding, relative to the largest
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-4 * scale, msg=name)
    for a, b in zip(models[0].buffers(), models[1].buffers(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_the_step_rewrites_train_fastcnn_as_written():
    """Pools moved first, then the first pair folded and pooled with its max-pool: one step of fastcnn on 70
    images gives the loss and every gradient of the model as written, to float rounding."""
    from cnnlab.engine.rewrite import step_rewrites

    x = torch.rand(70, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (70,))
    grads, losses = [], []
    for enabled in (False, True):
        model = cl.create_model("fastcnn", seed=0).to(memory_format=torch.channels_last).train()
        with step_rewrites(model, enabled):
            torch.manual_seed(1)  # the same dropout
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            names = [n for n, m in model.named_children() if "forward" in vars(m)]
            assert names == (["conv1", "bn1", "pool1"] if enabled else [])
        losses.append(loss.detach())
        # (a convolution's bias before batch norm has no effect: a gradient of 0 up to rounding either way)
        grads.append(
            {n: p.grad for n, p in model.named_parameters() if n not in ("conv1.bias", "conv2.bias")}
        )
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, rtol=1e-4, atol=1e-4 * float(g.abs().max()), msg=name)
