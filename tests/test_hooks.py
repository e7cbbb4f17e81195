import pytest
import torch
from torch import nn

from xaicourse.hooks import hooks_left
from xaicourse.hooks import find_layer, record_layer
from xaicourse.testing import assert_unchanged, snapshot, tiny_cnn


def small_net():
    """Conv -> ReLU -> global average pool -> dense (2 classes), in training mode."""
    return tiny_cnn((4,), 2, strides=1, paddings=1, seed=0).train()


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
    before = snapshot(net)
    with record_layer(net, net[0]) as rec:
        net(torch.randn(1, 3, 5, 5))
    assert_unchanged(net, before)
    assert not net.training and not net[4].weight.requires_grad
    assert all(p.grad is None for p in net.parameters())
    assert rec.gradients is None  # no backward ran
