"""LRP (xaicourse.lrp): the rules by hand, zennit as the oracle with and without BatchNorm, conservation,
canonisation, hygiene, bad input."""
import warnings

import pytest
import torch
from torch import nn

from xaicourse import lrp as L
from xaicourse.testing import tiny_cnn, tiny_mlp, unchanged

zennit = pytest.importorskip("zennit")
from zennit.attribution import Gradient  # noqa: E402
from zennit.canonizers import SequentialMergeBatchNorm  # noqa: E402
from zennit.composites import EpsilonAlpha2Beta1, EpsilonGammaBox, EpsilonPlus, EpsilonPlusFlat  # noqa: E402
from zennit.rules import Epsilon, Flat, Gamma, WSquare, ZPlus  # noqa: E402


def cnn(bn=False, seed=0):
    """Conv -> [BN] -> ReLU -> max pool -> conv -> ReLU -> average pool -> dense -> ReLU -> dense, float64."""
    return tiny_cnn((4, 5), 3, strides=1, paddings=(1, 0), norm=(bn, False), pool=(nn.MaxPool2d(2), None),
                    head_pool=2, hidden=(6,), norm_init="all", dtype=torch.float64, seed=seed)


@pytest.fixture
def x():
    return torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


def zennit_lrp(model, x, targets, composite):
    """zennit's idiom for "the target logit as the output relevance": a function of the model's output."""
    rows = torch.arange(len(x))

    def target_logit(out):
        grad = torch.zeros_like(out)
        grad[rows, targets] = out[rows, targets]
        return grad

    with Gradient(model, composite) as attributor:
        _, relevance = attributor(x, target_logit)
    return relevance


def one_layer_zennit(layer, rule, a, relevance):
    """zennit's rule on a single layer: the relevance of its input for the given output relevance."""
    from zennit.composites import LayerMapComposite

    model = nn.Sequential(layer)
    with Gradient(model, LayerMapComposite([((nn.Linear, nn.Conv2d), rule)])) as attributor:
        _, rel = attributor(a, relevance)
    return rel


# ---------------------------------------------------------------------------------------------- one layer, by hand
def test_epsilon_rule_by_hand():
    layer = nn.Linear(2, 2)
    layer.weight.data = torch.tensor([[1.0, 2.0], [-1.0, 1.0]])
    layer.bias.data = torch.tensor([1.0, 0.0])
    a = torch.tensor([[1.0, 1.0]])
    # z = (1 + 2 + 1, -1 + 1) = (4, 0); R = (2, 1): R_j = a_j sum_k w_kj R_k / (z_k + eps sign z_k)
    rel = L.lrp_epsilon(layer, a, torch.tensor([[2.0, 1.0]]), epsilon=0.5)
    expected = torch.tensor([[1 * 2 / 4.5 + (-1) * 1 / 0.5, 2 * 2 / 4.5 + 1 * 1 / 0.5]])
    assert torch.allclose(rel, expected)


@pytest.mark.parametrize("name, ours, theirs", [
    ("epsilon", lambda l, a, r: L.lrp_epsilon(l, a, r, epsilon=0.1), Epsilon(epsilon=0.1)),
    ("zplus", L.lrp_zplus, ZPlus()),
    ("gamma", lambda l, a, r: L.lrp_gamma(l, a, r, gamma=0.5), Gamma(gamma=0.5)),
    ("flat", L.lrp_flat, Flat()),
    ("wsquare", L.lrp_wsquare, WSquare()),
])
@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_each_rule_matches_zennit(name, ours, theirs, kind):
    torch.manual_seed(3)
    if kind == "linear":
        layer, a = nn.Linear(5, 4).double(), torch.randn(3, 5, dtype=torch.float64)
    else:
        layer, a = nn.Conv2d(2, 3, 3, padding=1).double(), torch.randn(2, 2, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        relevance = torch.randn(layer(a).shape, dtype=torch.float64)
    assert torch.allclose(ours(layer, a, relevance), one_layer_zennit(layer, theirs, a, relevance), atol=1e-10)


def test_zplus_conserves_on_positive_inputs_without_bias():
    torch.manual_seed(0)
    layer = nn.Linear(6, 4, bias=False).double()
    a = torch.rand(2, 6, dtype=torch.float64)
    relevance = torch.rand(2, 4, dtype=torch.float64)
    assert torch.allclose(L.lrp_zplus(layer, a, relevance).sum(1), relevance.sum(1))


def test_merge_batchnorm():
    model = cnn(bn=True)
    a = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    merged = L.merge_batchnorm(model[0], model[1])
    with torch.no_grad():
        assert torch.allclose(merged(a), model[1](model[0](a)), atol=1e-12)
    assert merged is not model[0]
    with pytest.raises(TypeError, match="merges a BatchNorm"):
        L.merge_batchnorm(model[1], model[0])


# ---------------------------------------------------------------------------------------------- whole models vs zennit
COMPOSITE_CASES = [
    ("epsilon_plus_flat", lambda: EpsilonPlusFlat(canonizers=[SequentialMergeBatchNorm()])),
    ("epsilon_plus", lambda: EpsilonPlus(canonizers=[SequentialMergeBatchNorm()])),
    ("epsilon_alpha2_beta1", lambda: EpsilonAlpha2Beta1(canonizers=[SequentialMergeBatchNorm()])),
]


@pytest.mark.parametrize("bn", [False, True], ids=["plain", "batchnorm"])
@pytest.mark.parametrize("composite, make", COMPOSITE_CASES, ids=[c for c, _ in COMPOSITE_CASES])
def test_lrp_matches_zennit(x, bn, composite, make):
    model = cnn(bn=bn)
    ours = L.lrp(model, x, [0, 2], composite=composite)
    theirs = zennit_lrp(model, x, [0, 2], make())
    # zennit keeps a BN with eps that scales by 1/sqrt(1 + eps): 5e-6 relative
    assert torch.allclose(ours, theirs, rtol=1e-8, atol=1e-12)
    assert ours.abs().sum() > 0


def test_epsilon_gamma_box_matches_zennit(x):
    model = cnn(bn=True)
    ours = L.lrp(model, x, 1, composite="epsilon_gamma_box", low=-3.0, high=3.0, batch_size=1)
    low, high = torch.full_like(x, -3.0), torch.full_like(x, 3.0)
    theirs = zennit_lrp(model, x, [1, 1], EpsilonGammaBox(low=low, high=high, canonizers=[SequentialMergeBatchNorm()]))
    assert torch.allclose(ours, theirs, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("bn", [False, True], ids=["plain", "batchnorm"])
@pytest.mark.parametrize("composite", ["epsilon", "epsilon_plus", "epsilon_plus_flat"])
def test_by_hand_layer_relevances_match_lrp(x, bn, composite):
    model = cnn(bn=bn)
    layers = L.layer_relevances(model, x, [0, 2], composite=composite)
    assert layers[0][0] == "output" and layers[-1][1].shape == x.shape
    # canonised BN inside zennit differs by 1/sqrt(1 + eps) per BN: about 5e-6 relative
    assert torch.allclose(layers[-1][1], L.lrp(model, x, [0, 2], composite=composite), rtol=1e-4, atol=1e-9)
    if bn:
        assert any("+" in name for name, _ in layers)  # the merged conv + BN


def test_conservation_layer_by_layer_without_biases(x):
    # LRP-0 (epsilon = 0) on a bias-free ReLU network conserves relevance at every layer (exactly through
    # the dense and conv layers; the average pool's 1e-6 stabiliser absorbs a few millionths)
    model = cnn()
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            m.bias = None
    layers = L.layer_relevances(model, x, 0, composite="epsilon", epsilon=0.0)
    sums = [r.flatten(1).sum(1) for _, r in layers]
    for (name, _), s in zip(layers[1:], sums[1:]):
        assert torch.allclose(s, sums[0], rtol=1e-9 if name in ("9", "8", "7") else 1e-4)
    with torch.no_grad():
        assert torch.allclose(sums[0], model(x)[:, 0])


def test_lrp0_equals_gradient_times_input_on_relu_net(x):
    model = tiny_mlp((192, 16, 3), dtype=torch.float64, seed=0)
    flat = x.flatten(1)
    rel = L.layer_relevances(model, flat, 1, composite="epsilon", epsilon=0.0)[-1][1]
    xi = flat.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(xi)[:, 1].sum(), xi)
    # with biases, LRP-0 = gradient x input exactly (biases only absorb relevance)
    assert torch.allclose(rel, grad * flat, atol=1e-12)


def test_model_left_as_found_and_hooks_removed_after_errors(x):
    model = cnn(bn=True)
    model.train()
    model[0].weight.grad = torch.ones_like(model[0].weight)
    with unchanged(model), pytest.warns(UserWarning, match="training mode"):
        L.lrp(model, x, 0)
    with unchanged(model), pytest.raises(ValueError, match="cannot run"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        L.lrp(model, torch.randn(2, 5, 8, 8, dtype=torch.float64), 0)
    assert model.training and torch.equal(model[0].weight.grad, torch.ones_like(model[0].weight))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"composite": "alpha_beta"}, ValueError, "unknown composite"),
    ({"composite": "epsilon_gamma_box"}, ValueError, "needs low= and high="),
    ({"epsilon": -1.0}, ValueError, "epsilon"),
    ({"target": 3}, ValueError, "out of range"),
])
def test_bad_input(x, kwargs, error, match):
    with pytest.raises(error, match=match):
        L.lrp(cnn(), x, **{"target": 0, **kwargs})


def test_layer_relevances_bad_input(x):
    with pytest.raises(TypeError, match="nn.Sequential"):
        L.layer_relevances(nn.Module(), x)
    with pytest.raises(TypeError, match="no rule for"):
        L.layer_relevances(nn.Sequential(nn.Conv2d(3, 2, 3), nn.Softmax(1), nn.Flatten(), nn.Linear(72, 2)).double(), x)
    with pytest.raises(ValueError, match="unknown composite"):
        L.layer_relevances(cnn(), x, composite="epsilon_gamma_box")


def test_models_built_of_resnet_blocks_get_zennits_resnet_canonizer():
    # any model with torchvision BasicBlocks (not only a torchvision ResNet) gets the residual + made explicit
    from zennit.torchvision import ResNetCanonizer

    from xaicourse.models import ShapesResNet

    torch.manual_seed(0)
    model = ShapesResNet().double().eval()
    images = torch.rand(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ours = L.lrp(model, images, [0, 2])
    theirs = zennit_lrp(model, images, [0, 2], EpsilonPlusFlat(canonizers=[ResNetCanonizer()]))
    assert torch.allclose(ours, theirs, rtol=1e-8, atol=1e-12)
    plain = zennit_lrp(model, images, [0, 2], EpsilonPlusFlat(canonizers=[SequentialMergeBatchNorm()]))
    assert not torch.allclose(ours, plain, rtol=1e-3)
