"""DeepLIFT (xaicourse.deeplift): summation to delta, Captum oracle, rescale rule, batching, hygiene, bad input."""
import warnings

import pytest
import torch
from captum.attr import DeepLift, DeepLiftShap
from torch import nn

from xaicourse import deeplift as dl
from xaicourse.testing import tiny_cnn, unchanged


def cnn(seed=0, pool=None, act=nn.ReLU):
    """Conv -> act -> pool -> conv -> BN -> tanh -> dense -> sigmoid -> dense: every nonlinearity of the rule."""
    return tiny_cnn((4, 5), 3, strides=1, paddings=(1, 0), act=(act, nn.Tanh), pool=(pool or nn.AvgPool2d(2), None),
                    norm=(False, True), head_pool=None, side=8, hidden=(6,), head_act=nn.Sigmoid, norm_init="stats",
                    dtype=torch.float64, seed=seed)


def captum(cls, model, x, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(model).attribute(x, **kwargs).detach()


@pytest.fixture
def x():
    return torch.randn(3, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


def test_rescale_multiplier_by_hand():
    # ReLU from x0 = -1 to x = 3: (3 - 0) / (3 - (-1)) = 0.75; sigmoid secant; equal points: the derivative
    m = dl.rescale_multiplier(torch.relu, torch.tensor([3.0, 2.0, -1.0]), torch.tensor([-1.0, 2.0, -2.0]))
    assert torch.allclose(m, torch.tensor([0.75, 1.0, 0.0]))
    s = dl.rescale_multiplier(torch.sigmoid, torch.tensor([2.0]), torch.tensor([0.0]))
    assert s.item() == pytest.approx((torch.sigmoid(torch.tensor(2.0)).item() - 0.5) / 2)


def test_two_layer_network_by_hand():
    # y = relu(x1 - x2 - 1) ... the saturation case: at x = (3, 1) the gradient wrt x is (1, -1),
    # with x0 = 0: relu(-1) = 0 -> relu(1) = 1, multiplier 1 / 2, attributions (3/2, -1/2), sum 1 = y(x) - y(x0)
    lin = nn.Linear(2, 1)
    lin.weight.data = torch.tensor([[1.0, -1.0]])
    lin.bias.data = torch.tensor([-1.0])
    out = nn.Linear(1, 2)
    out.weight.data = torch.tensor([[1.0], [0.0]])
    out.bias.data.zero_()
    model = nn.Sequential(lin, nn.ReLU(), out).eval()
    attr = dl.deeplift(model, torch.tensor([[3.0, 1.0]]), 0)
    assert torch.allclose(attr, torch.tensor([[1.5, -0.5]]))


@pytest.mark.parametrize("pool", [nn.AvgPool2d(2), nn.MaxPool2d(2)], ids=["avgpool", "maxpool"])
def test_summation_to_delta(x, pool):
    model = cnn(pool=pool)
    baseline = 0.3 * torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    attr = dl.deeplift(model, x, [0, 1, 2], baseline=baseline)
    delta = dl.summation_delta(model, x, attr, [0, 1, 2], baseline=baseline)
    assert delta.abs().max().item() < 1e-12
    assert attr.abs().sum().item() > 0.01


def test_summation_holds_for_relu6_and_inplace_relu(x):
    for act in (nn.ReLU6, lambda: nn.ReLU(inplace=True)):
        model = cnn(act=act)
        attr = dl.deeplift(model, x, 1)
        assert dl.summation_delta(model, x, attr, 1).abs().max().item() < 1e-12


def test_matches_captum_without_maxpool(x):
    model = cnn()
    baseline = torch.full_like(x, 0.2)
    ours = dl.deeplift(model, x, [0, 2, 1], baseline=baseline)
    theirs = captum(DeepLift, model, x, baselines=baseline, target=[0, 2, 1])
    assert torch.allclose(ours, theirs, atol=1e-12)


@pytest.mark.parametrize("act", [nn.ReLU, nn.ReLU6], ids=["relu", "relu6"])
def test_derivative_where_input_equals_baseline_matches_captum(x, act, monkeypatch):
    # where x = x0 at a nonlinearity the secant is undefined and the derivative is used (autograd's own
    # backward of the module); the baseline equals x on the left half, so every layer has such entries
    import captum.attr._core.deep_lift as captum_deeplift

    monkeypatch.setitem(captum_deeplift.SUPPORTED_NON_LINEAR, nn.ReLU6, captum_deeplift.nonlinear)
    model = cnn(act=act)
    baseline = torch.full_like(x, 0.2)
    baseline[..., :5] = x[..., :5]
    with torch.no_grad():
        pre = model[0](torch.cat([x, baseline]))
    assert (pre[:3] == pre[3:]).sum() > 50
    ours = dl.deeplift(model, x, [0, 2, 1], baseline=baseline)
    theirs = captum(DeepLift, model, x, baselines=baseline, target=[0, 2, 1])
    assert torch.allclose(ours, theirs, atol=1e-12)
    assert dl.summation_delta(model, x, ours, [0, 2, 1], baseline=baseline).abs().max() < 1e-12
    assert ours[..., :5].abs().max() < 1e-12 < ours[..., 5:].abs().max()  # no difference there, nothing to explain


def test_derivative_used_where_a_unit_does_not_move():
    # tanh's input is x1 + x2 = 0 for x = (1, -1) and for x0 = 0: no difference there, so the rescale rule
    # takes tanh'(0) = 1, and the inputs get (1, -1) * 1 * 2 (cancelling, as F(x) - F(x0) = 0); Captum agrees
    lin = nn.Linear(2, 1, bias=False)
    lin.weight.data = torch.tensor([[1.0, 1.0]])
    out = nn.Linear(1, 2, bias=False)
    out.weight.data = torch.tensor([[2.0], [0.0]])
    model = nn.Sequential(lin, nn.Tanh(), out).eval()
    x = torch.tensor([[1.0, -1.0]])
    attr = dl.deeplift(model, x, 0)
    assert torch.allclose(attr, torch.tensor([[2.0, -2.0]]))
    assert torch.allclose(attr, captum(DeepLift, model, x, target=0))


def test_inplace_activations_run_out_of_place_and_are_restored(x):
    model = cnn(act=lambda: nn.ReLU(inplace=True))
    dl.deeplift(model, x, 1)
    assert model[1].inplace is True
    with pytest.raises(ValueError, match="cannot run"):
        dl.deeplift(model, torch.randn(2, 5, 8, 8, dtype=torch.float64), 0)
    assert model[1].inplace is True


def test_maxpool_against_captum(x):
    # zero baseline: the same as Captum. A non-zero baseline: Captum's max-pool rule (as of captum 0.9) misses
    # F(x) - F(x0) by about 1e-3 here, ours keeps summation to delta (a documented difference)
    model = cnn(pool=nn.MaxPool2d(2))
    assert torch.allclose(dl.deeplift(model, x, 0), captum(DeepLift, model, x, target=0), atol=1e-12)
    baseline = 0.3 * torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ours = dl.deeplift(model, x, 0, baseline=baseline)
    theirs = captum(DeepLift, model, x, target=0, baselines=baseline)
    assert dl.summation_delta(model, x, ours, 0, baseline=baseline).abs().max() < 1e-12
    assert dl.summation_delta(model, x, theirs, 0, baseline=baseline).abs().max() > 1e-4


def test_deeplift_shap_matches_captum_and_sums_to_mean_baseline(x):
    model = cnn()
    baselines = torch.randn(4, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ours = dl.deeplift_shap(model, x, 2, baselines=baselines, batch_size=5)
    theirs = captum(DeepLiftShap, model, x, baselines=baselines, target=2)
    assert torch.allclose(ours, theirs, atol=1e-12)
    delta = dl.summation_delta(model, x, ours, 2, baseline=baselines)
    assert delta.abs().max().item() < 1e-12


def test_batch_size_and_batch_invariance(x):
    model = cnn(pool=nn.MaxPool2d(2))
    full = dl.deeplift(model, x, [0, 1, 2])
    for size in (1, 2):
        assert torch.allclose(dl.deeplift(model, x, [0, 1, 2], batch_size=size), full, atol=1e-14)
    assert torch.allclose(dl.deeplift(model, x[1:2], 1), full[1:2], atol=1e-14)


def test_shared_activation_module_used_twice():
    # torchvision's BasicBlock calls self.relu twice; Captum refuses such modules, the hooks here pair each call
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.relu, self.out = nn.Linear(4, 4), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)

        def forward(self, x):
            return self.out(self.relu(self.b(self.relu(self.a(x)))))

    torch.manual_seed(0)
    model = Twice().double().eval()
    x = torch.randn(3, 4, dtype=torch.float64)
    attr = dl.deeplift(model, x, 0)
    assert dl.summation_delta(model, x, attr, 0).abs().max() < 1e-12


def test_model_left_as_found_also_after_errors(x):
    model = cnn()
    model.train()
    model[0].weight.grad = torch.ones_like(model[0].weight)
    with unchanged(model), pytest.warns(UserWarning, match="training mode"):
        dl.deeplift(model, x, 0)
    with unchanged(model), pytest.raises(ValueError, match="cannot run"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dl.deeplift(model, torch.randn(2, 5, 8, 8, dtype=torch.float64), 0)
    assert model.training


@pytest.mark.parametrize("kwargs, error, match", [
    ({"baseline": torch.zeros(2, 3, 4, 4)}, ValueError, "baseline shape"),
    ({"baseline": "black"}, TypeError, "baseline must be"),
    ({"target": 7}, ValueError, "out of range"),
])
def test_bad_input(x, kwargs, error, match):
    with pytest.raises(error, match=match):
        dl.deeplift(cnn(), x, **{"target": 0, **kwargs})


def test_bad_baselines(x):
    with pytest.raises(ValueError, match="stack"):
        dl.deeplift_shap(cnn(), x, 0, baselines=torch.zeros(2, 3, 4, 4))
    with pytest.raises(TypeError, match="baselines must be a tensor"):
        dl.deeplift_shap(cnn(), x, 0, baselines=[0.0])


def _resnet18_deduplicated():
    """torchvision's resnet18 (random weights, 10 classes) with each BasicBlock's shared ReLU split in two.

    Captum's DeepLift needs one module per use of a nonlinearity (a shared nn.ReLU's hooks see only its
    last input); ours handles sharing, but the oracle needs the de-duplicated model."""
    from torchvision.models import resnet18
    from torchvision.models.resnet import BasicBlock

    torch.manual_seed(0)
    model = resnet18(num_classes=10).double().eval()
    for block in model.modules():
        if isinstance(block, BasicBlock):
            block.relu2 = nn.ReLU()

            def forward(x, b=block):
                identity = x if b.downsample is None else b.downsample(x)
                return b.relu2(b.bn2(b.conv2(b.relu(b.bn1(b.conv1(x))))) + identity)

            block.forward = forward
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    return model


def test_overlapping_maxpool_adds_the_multipliers_of_every_window():
    # kernel 3 > stride 2: an input that is the maximum of two windows gets both multipliers (max_unpool2d kept one,
    # and the attributions missed F(x) - F(x0)); checked by summation against a random baseline
    model = tiny_cnn((2,), 2, in_channels=1, strides=1, paddings=1, pool=nn.MaxPool2d(3, 2, 1), head_pool=None,
                     side=8, dtype=torch.float64, seed=0)
    x, baseline = torch.randn(2, 2, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    attr = dl.deeplift(model, x, 0, baseline=baseline)
    assert dl.summation_delta(model, x, attr, 0, baseline=baseline).abs().max() < 1e-12
    assert attr.conservation.holds.all()
    assert torch.allclose(dl.deeplift(model, x, 0), captum(DeepLift, model, x, target=0), atol=1e-12)


def test_resnet18_matches_captum_and_sums_to_delta():
    # torchvision's stem pool is 3 x 3 / 2 (overlapping): before the scatter-add fix the sum missed F(x) - F(0)
    model = _resnet18_deduplicated()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    ours = dl.deeplift(model, x, 3)
    theirs = captum(DeepLift, model, x, target=3)
    assert (ours - theirs).abs().max() < 1e-10 * theirs.abs().max()
    assert dl.summation_delta(model, x, ours, 3).abs().max() < 1e-10
