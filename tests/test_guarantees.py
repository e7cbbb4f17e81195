"""Guarantees checked on every call (xaicourse.guarantees): completeness, summation to delta, conservation, efficiency.

Each method records ``attributions.conservation`` and warns (ConservationWarning) when a sample misses its
promise by more than 5 %, naming the cause: too few IG steps, modules DeepLIFT or LRP do not know, a
nonlinearity called as a function, too few GradientSHAP draws.
"""
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xaicourse import deeplift as dl
from xaicourse import ig, lrp, shapley
from xaicourse.guarantees import Conservation, ConservationWarning, check_conservation


def relu_net(seed=0, bias=True):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8, bias=bias), nn.ReLU(), nn.Linear(8, 8, bias=bias), nn.ReLU(),
                         nn.Linear(8, 3, bias=bias)).double().eval()


class FunctionalReLU(nn.Module):
    """A ReLU called as a function: invisible to DeepLIFT's module hooks."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(6, 8), nn.Linear(8, 3)

    def forward(self, x):
        return self.b(F.relu(self.a(x)))


@pytest.fixture
def x():
    return torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2


def no_conservation_warning(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConservationWarning)
        return fn()


def test_conservation_record_by_hand():
    check = Conservation("completeness", "m", torch.tensor([1.0, 2.1, 0.0]), torch.tensor([1.0, 2.0, 0.0]))
    assert torch.allclose(check.delta, torch.tensor([0.0, 0.1, 0.0], dtype=check.delta.dtype), atol=1e-7)
    assert torch.allclose(check.relative, torch.tensor([0.0, 0.05, 0.0], dtype=check.relative.dtype), atol=1e-6)
    assert check.holds.tolist() == [True, True, True]
    # a miss of a zero total is an infinite relative miss; "at_most" counts only the excess
    assert not Conservation("c", "m", torch.tensor([0.5]), torch.tensor([0.0])).holds.item()
    below = Conservation("conservation", "lrp", torch.tensor([0.6, -3.0]), torch.tensor([1.0, 1.0]), bound="at_most")
    assert below.holds.tolist() == [True, False] and below.relative[1].item() == pytest.approx(2.0)


def test_check_warns_once_with_the_worst_sample_and_the_cause():
    result = torch.zeros(3, 2)
    with pytest.warns(ConservationWarning, match=r"sample\(s\) \[1, 2\].*sum to 3, off from the 2 .*50.0%.*raise n_steps"):
        out = check_conservation(result, torch.tensor([1.0, 3.0, 1.1]), torch.tensor([1.0, 2.0, 1.0]), method="m",
                                 property="completeness", causes="raise n_steps.")
    assert out is result and out.conservation.holds.tolist() == [True, False, False]
    with pytest.raises(ValueError, match="bound"):
        check_conservation(result, torch.ones(3), torch.ones(3), method="m", property="p", causes="", bound="less")


def test_integrated_gradients_is_checked_on_every_call(x):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double().eval()  # smooth: IG converges fast
    attr = no_conservation_warning(lambda: ig.integrated_gradients(model, x, 0, n_steps=256))
    assert attr.conservation.relative.max() < 0.05
    assert torch.allclose(attr.conservation.delta, ig.completeness_delta(model, x, attr, 0), atol=1e-12)
    with pytest.warns(ConservationWarning, match=r"integrated_gradients: completeness broken.*\(1 gausslegendre\)"):
        bad = ig.integrated_gradients(model, x, 0, n_steps=1)
    assert not bad.conservation.holds.all()
    _, delta = ig.integrated_gradients(model, x, 0, n_steps=256, return_delta=True)
    assert torch.allclose(delta, attr.conservation.delta)


def test_deeplift_names_the_modules_it_does_not_know(x):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 8), nn.Softmax(dim=1),
                          nn.Linear(8, 3)).double().eval()
    with pytest.warns(ConservationWarning, match=r"1 \(LayerNorm\), 4 \(Softmax\)"):
        attr = dl.deeplift(model, x, 0)
    assert attr.conservation.relative.max() > 0  # plain gradients through LayerNorm and softmax miss the sum
    assert dl.unknown_modules(model) == ["1 (LayerNorm)", "4 (Softmax)"]


def test_deeplift_catches_a_functional_nonlinearity(x):
    model = FunctionalReLU().double().eval()
    with pytest.warns(ConservationWarning, match="called as a function inside forward"):
        attr = dl.deeplift(model, x, 1)
    assert not attr.conservation.holds.all()
    exact = no_conservation_warning(lambda: dl.deeplift(relu_net(), x, 1))
    assert exact.conservation.relative.max() < 1e-9


def test_deeplift_shap_is_checked_against_the_baselines_mean(x):
    model = relu_net()
    refs = torch.randn(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    attr = no_conservation_warning(lambda: dl.deeplift_shap(model, x, 2, baselines=refs))
    assert torch.allclose(attr.conservation.delta, dl.summation_delta(model, x, attr, 2, baseline=refs), atol=1e-12)
    assert attr.conservation.relative.max() < 1e-9


def test_lrp_without_biases_conserves_and_mobilenet_v3_is_flagged():
    model = relu_net(bias=False)
    x = torch.rand(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    attr = no_conservation_warning(lambda: lrp.lrp(model, x, 0, composite="epsilon"))
    assert attr.conservation.relative.max() < 1e-6
    # Hardswish (MobileNetV3's activation) passes relevance unchanged: here it sums to -14x the logit. (A randomly
    # initialised torchvision MobileNetV3 has logits of 1e-7 and relevance of 1e-15: nothing to see there.)
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Hardswish(), nn.Conv2d(8, 8, 3), nn.Hardswish(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(8, 3)).eval()
    image = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    with pytest.warns(ConservationWarning, match=r"rules do not fit 1 \(Hardswish\), 3 \(Hardswish\)"):
        flagged = lrp.lrp(net, image, 0)
    assert flagged.conservation.relative.max() > 5
    assert lrp.unfitting_modules(net) == ["1 (Hardswish)", "3 (Hardswish)"]


def test_a_fallback_is_named_even_when_the_sum_holds(x):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout1d(0.0), nn.Linear(8, 3), nn.Identity()).double().eval()
    no_conservation_warning(lambda: dl.deeplift(model, x, 0))  # every module known: silent
    quiet = nn.Sequential(nn.Linear(6, 3), nn.Softmax(dim=1), nn.Identity()).double().eval()
    with pytest.warns(ConservationWarning, match=r"1 \(Softmax\)\); summation to delta still holds"):
        dl.deeplift(quiet, torch.zeros(2, 6, dtype=torch.float64), 0)  # x = baseline: nothing to miss


def test_kernel_shap_efficiency_and_gradient_shap_on_a_linear_model(x):
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Linear(6, 3)).double().eval()
    mask = torch.arange(6).repeat(len(x), 1) // 2
    ks = no_conservation_warning(lambda: shapley.kernel_shap(linear, x, 1, feature_mask=mask, n_samples=6))
    assert ks.conservation.relative.max() < 1e-9
    # one baseline: a linear model's gradient is constant, so every draw is exact
    refs = torch.randn(1, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    gs = no_conservation_warning(lambda: shapley.gradient_shap(linear, x, 1, baselines=refs, n_samples=8))
    assert gs.conservation.property == "expected completeness" and gs.conservation.relative.max() < 1e-9


def test_gradient_shap_with_few_draws_names_its_sampling_error(x):
    model = relu_net()
    refs = 3 * torch.randn(8, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    with pytest.warns(ConservationWarning, match=r"Monte-Carlo estimate with 2 draws: its sampling error"):
        shapley.gradient_shap(model, x, 0, baselines=refs, n_samples=2)
