"""The fast Dropout/Flatten compute what torch.nn's do."""

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.models.layers import Dropout, Flatten, ReLU


def test_dropout_keeps_the_expected_fraction_and_scales_inverted():
    torch.manual_seed(0)
    x = torch.ones(200_000)
    y = Dropout(0.25).train()(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.005
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.75))


def test_dropout_is_seeded_and_identity_in_eval():
    x = torch.randn(4, 8, 5, 5)
    torch.manual_seed(3)
    a = Dropout(0.5).train()(x)
    torch.manual_seed(3)
    b = Dropout(0.5).train()(x)
    assert torch.equal(a, b)
    assert torch.equal(Dropout(0.5).eval()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))


def test_dropout_gradient_is_the_mask():
    torch.manual_seed(1)
    x = torch.randn(64, 32, requires_grad=True)
    y = Dropout(0.3).train()(x)
    y.sum().backward()
    assert torch.allclose(x.grad, (y.detach() / x.detach()).nan_to_num())


def test_flatten_matches_torch_and_keeps_the_gradient_layout():
    x = torch.randn(3, 4, 5, 6).contiguous(memory_format=torch.channels_last).requires_grad_()
    ref = x.detach().clone().requires_grad_()
    y = Flatten()(x)
    assert torch.equal(y, nn.Flatten()(ref))
    w = torch.randn_like(y)
    (y * w).sum().backward()
    (nn.Flatten()(ref) * w).sum().backward()
    assert torch.equal(x.grad, ref.grad)
    assert x.grad.is_contiguous(memory_format=torch.channels_last)


def test_a_channels_last_cnn_trains_to_the_same_gradients_as_with_torch_layers():
    def net(drop, flat):
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2), drop, flat, nn.Linear(8 * 13 * 13, 10)
        )

    x = torch.rand(16, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (16,))
    grads = []
    for drop, flat in ((nn.Dropout(0.0), nn.Flatten()), (Dropout(0.0), Flatten())):
        m = net(drop, flat).to(memory_format=torch.channels_last)
        F.cross_entropy(m(x), y).backward()
        grads.append([p.grad for p in m.parameters()])
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_scripting_a_model_with_these_layers_works():
    m = nn.Sequential(nn.Conv2d(1, 4, 3), Dropout(0.25), Flatten(), nn.Linear(4 * 26 * 26, 10)).eval()
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(torch.jit.script(m)(x), m(x))


def test_relu_is_in_place_only_while_training():
    x = torch.randn(100)
    r = ReLU()
    y = r.eval()(x)
    assert torch.equal(y, x.clamp_min(0)) and (x < 0).any()  # input untouched in eval mode
    z = r.train()(x)
    assert torch.equal(z, y) and z.data_ptr() == x.data_ptr()


def test_dropout_keeps_bf16_activations_bf16_with_an_unbiased_mask():
    torch.manual_seed(0)
    y = Dropout(0.25).train()(torch.ones(400_000, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16
    assert abs((y != 0).float().mean().item() - 0.75) < 0.003
