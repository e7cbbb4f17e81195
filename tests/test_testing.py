"""xaicourse.testing itself: the tiny models are the PyTorch idiom they replace, and the snapshot names each change."""
import pytest
import torch
from torch import nn

from xaicourse.testing import assert_unchanged, changes, snapshot, tiny_cnn, tiny_mlp, unchanged


def test_seeded_models_are_the_manual_seed_idiom_and_leave_the_global_state_alone():
    torch.manual_seed(7)
    state = torch.random.get_rng_state()
    cnn = tiny_cnn((4, 5), 3, strides=1, paddings=(1, 0), norm=(True, False), pool=(nn.MaxPool2d(2), None),
                   head_pool=2, hidden=(6,), norm_init="all", dtype=torch.float64, seed=3)
    mlp = tiny_mlp((6, 8, 3), bias=False, dtype=torch.float64, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.manual_seed(3)
    idiom = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(4, 5, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(20, 6),
                          nn.ReLU(), nn.Linear(6, 3)).double().eval()
    idiom[1].running_mean.normal_()
    idiom[1].running_var.uniform_(0.5, 2.0)
    idiom[1].weight.data.uniform_(0.5, 1.5)
    idiom[1].bias.data.normal_()
    torch.manual_seed(3)
    idiom_mlp = nn.Sequential(nn.Linear(6, 8, bias=False), nn.ReLU(), nn.Linear(8, 3, bias=False)).double()
    for ours, theirs in ((cnn, idiom), (mlp, idiom_mlp)):
        assert repr(ours) == repr(theirs) and not ours.training
        assert ours.state_dict().keys() == theirs.state_dict().keys()
        assert all(torch.equal(v, theirs.state_dict()[k]) for k, v in ours.state_dict().items())


def test_flattened_head_is_sized_from_the_input_and_bad_settings_are_refused():
    model = tiny_cnn((4, 4), 3, act=(nn.ReLU, nn.Tanh), head_pool=None, side=8, seed=0)
    assert model[-1].in_features == 4 * 3 * 3 and isinstance(model[3], nn.Tanh)
    assert model(torch.zeros(2, 3, 8, 8)).shape == (2, 3)
    with pytest.raises(ValueError, match="give side"):
        tiny_cnn((4, 4), head_pool=None)
    with pytest.raises(ValueError, match="one per conv layer"):
        tiny_cnn((4, 4), strides=(1, 1, 1))
    with pytest.raises(ValueError, match="not both"):
        tiny_mlp(seed=0, generator=torch.Generator())


def test_snapshot_names_every_change():
    model = tiny_cnn((4, 4), 3, norm=(True, False), seed=0)
    model[0].weight.grad = torch.ones_like(model[0].weight)
    before = snapshot(model)
    assert changes(model, before) == []
    assert_unchanged(model, before)
    model.train()
    model[0].weight.grad = None
    model[1].running_mean[0] = float("nan")
    with torch.no_grad():
        model[3].weight[0, 0, 0, 0] += 1
    model[-1].weight.requires_grad_(False)
    model[-1].bias = nn.Parameter(model[-1].bias.detach().clone())
    model.register_forward_hook(lambda *args: None)
    found = changes(model, before)
    assert found == [
        "parameter '7.bias': replaced by another Parameter object",
        "parameter value '3.weight': values changed (largest difference 1)",
        "requires_grad of '7.weight': True -> False",
        ".grad of '0.weight': (4, 3, 3, 3) torch.float32 on cpu -> None",
        "buffer '1.running_mean': values changed (largest difference inf)",
        "training mode False -> True on 9 module(s): '', '0', '1', '2' and 5 more",
        "hooks registered: 0 -> 1",
    ]
    with pytest.raises(AssertionError, match=r"not left as found:\n  parameter '7.bias'"):
        assert_unchanged(model, before)
    nan = snapshot(model)  # NaN equals NaN: a model with a NaN buffer is still left as found
    assert changes(model, nan) == []


def test_unchanged_checks_the_model_when_the_block_ends_also_after_a_caught_error():
    model = tiny_mlp(seed=0)
    with unchanged(model) as before, pytest.raises(RuntimeError, match="boom"):
        raise RuntimeError("boom")
    assert before.hooks == 0 and before.training == {"": False, "0": False, "1": False, "2": False}
    with pytest.raises(AssertionError, match="training mode False -> True on 4 module"):
        with unchanged(model):
            model.train()
