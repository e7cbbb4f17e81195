import pytest
import torch
from torch import nn

from xaicourse.checks import hooks_left
from xaicourse.hooks import find_layer, record_layer


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


def test_records_activations_and_gradients_exactly():
    net, x = small_net(), torch.randn(2, 3, 5, 5)
    with record_layer(net, net[1]) as rec:
        out = net(x)
        out[:, 1].sum().backward()
    act = net[1](net[0](x))
    assert torch.allclose(rec.activations, act)
    # d out[:,1] / d act = w[1, c] / (H * W), the same at every position
    expected = net[4].weight[1].view(1, 4, 1, 1).expand(2, 4, 5, 5) / 25
    assert torch.allclose(rec.gradients, expected)
    net.zero_grad()


def test_layer_by_name_and_errors():
    net = small_net()
    assert find_layer(net, "1") == ("1", net[1])
    with pytest.raises(ValueError, match="no layer named 'conv9'"):
        find_layer(net, "conv9")
    with pytest.raises(ValueError, match="not part of this model"):
        find_layer(net, nn.ReLU())
    with pytest.raises(TypeError, match="nn.Module"):
        find_layer(net, 3)


def test_no_hooks_left_after_success_or_exception():
    net = small_net()
    with record_layer(net, net[0]):
        net(torch.randn(1, 3, 5, 5)).sum().backward()
    assert hooks_left(net) == 0
    with pytest.raises(RuntimeError, match="boom"):
        with record_layer(net, net[0]):
            net(torch.randn(1, 3, 5, 5))
            raise RuntimeError("boom")
    assert hooks_left(net) == 0
    with pytest.raises(RuntimeError):  # a forward that fails inside the model
        with record_layer(net, net[0]):
            net(torch.randn(1, 5, 5, 5))
    assert hooks_left(net) == 0


def test_model_state_untouched():
    net = small_net().eval()
    net[4].weight.requires_grad_(False)
    with record_layer(net, net[0]) as rec:
        net(torch.randn(1, 3, 5, 5))
    assert not net.training and not net[4].weight.requires_grad
    assert all(p.grad is None for p in net.parameters())
    assert rec.gradients is None  # no backward ran
