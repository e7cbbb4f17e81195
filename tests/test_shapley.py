"""Shapley values (xaicourse.shapley): toy-game axioms, KernelSHAP vs the definition, shap and Captum,
GradientSHAP vs Captum and IG, seeding, batching, hygiene, bad input."""
import math
import warnings

import numpy as np
import pytest
import torch
from captum.attr import GradientShap, KernelShap
from torch import nn

from xaicourse import shapley as sh
from xaicourse.testing import tiny_cnn, unchanged


def cnn(seed=0):
    """Conv -> ReLU -> strided conv -> tanh -> dense on 8 x 8 images, float64."""
    return tiny_cnn((4, 4), 3, act=(nn.ReLU, nn.Tanh), head_pool=None, side=8, dtype=torch.float64, seed=seed)


class Additive(nn.Module):
    """logit_c = sum of w_c * x + b_c: linear in every feature, so Shapley values are exact sums."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3 * 8 * 8, 2).double()
        torch.manual_seed(5)
        self.lin.weight.data.normal_()
        self.eval()

    def forward(self, x):
        return self.lin(x.flatten(1))


def quadrants(size=8):
    """4 features: the image quadrants (H, W)."""
    r = torch.arange(size) // (size // 2)
    return (r.view(-1, 1) * 2 + r.view(1, -1)).long()


@pytest.fixture
def x():
    return torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


def game_value(model, x, target, mask_hw, baseline=0.0):
    """v(S) for one sample by brute force: features outside S set to the baseline."""
    idx, _ = sh.feature_index(mask_hw, x)

    def value(coalition):
        keep = coalition[idx[0]]
        with torch.no_grad():
            return model(torch.where(keep, x[:1], torch.full_like(x[:1], baseline)))[0, target].item()
    return value


# ---------------------------------------------------------------------------------------------- toy games
def glove_game(mask):
    """Players 0, 1 hold left gloves, player 2 a right glove; a pair is worth 1. Player 3 is a dummy."""
    return float(min(int(mask[0]) + int(mask[1]), int(mask[2])))


def test_exact_shapley_glove_game_axioms():
    phi = sh.exact_shapley(glove_game, 4)
    assert torch.allclose(phi, torch.tensor([1 / 6, 1 / 6, 2 / 3, 0.0], dtype=torch.float64))
    assert phi.sum().item() == pytest.approx(glove_game(torch.ones(4, dtype=torch.bool)))  # efficiency
    assert phi[0] == phi[1]  # symmetry
    assert phi[3] == 0  # dummy


def test_exact_shapley_additive_game_and_linearity():
    w = torch.tensor([1.0, -2.0, 0.5])
    v1 = lambda m: float((w * m).sum())  # noqa: E731
    v2 = lambda m: float(m[0] and m[1]) * 3  # noqa: E731
    assert torch.allclose(sh.exact_shapley(v1, 3), w.double())
    both = sh.exact_shapley(lambda m: v1(m) + v2(m), 3)
    assert torch.allclose(both, sh.exact_shapley(v1, 3) + sh.exact_shapley(v2, 3))
    assert torch.allclose(sh.exact_shapley(v2, 3), torch.tensor([1.5, 1.5, 0.0], dtype=torch.float64))


def test_shapley_kernel_weight():
    assert sh.shapley_kernel_weight(4, 1) == pytest.approx(3 / (4 * 1 * 3))
    assert sh.shapley_kernel_weight(5, 2) == pytest.approx(4 / (math.comb(5, 2) * 2 * 3))
    assert sh.shapley_kernel_weight(4, 0) == math.inf and sh.shapley_kernel_weight(4, 4) == math.inf
    with pytest.raises(ValueError, match="size must be between"):
        sh.shapley_kernel_weight(4, 5)


def test_kernel_shap_values_exact_with_all_coalitions_and_converges():
    phi = sh.exact_shapley(glove_game, 4)
    assert torch.allclose(sh.kernel_shap_values(glove_game, 4, n_samples=14), phi, atol=1e-12)
    v = lambda m: float(m[:3].sum() ** 2 + 2 * m[3] * m[4] - m[5].float() * m[0])  # noqa: E731
    exact = sh.exact_shapley(v, 6)
    errors = [(sh.kernel_shap_values(v, 6, n_samples=n, seed=1) - exact).abs().max().item() for n in (12, 40)]
    est = sh.kernel_shap_values(v, 6, n_samples=40, seed=1)
    assert est.sum().item() == pytest.approx(exact.sum().item(), abs=1e-12)  # efficiency even when sampled
    assert errors[1] < 0.15


def test_sample_coalitions_seeded_and_paired():
    a, wa = sh.sample_coalitions(10, 50, seed=3)
    b, _ = sh.sample_coalitions(10, 50, seed=3)
    assert torch.equal(a, b) and not torch.equal(a, sh.sample_coalitions(10, 50, seed=4)[0])
    assert torch.equal(a[1::2], ~a[0::2])
    assert (a.sum(1) > 0).all() and (a.sum(1) < 10).all() and torch.equal(wa, torch.ones(50, dtype=torch.float64))
    # sizes follow the Shapley kernel: sizes 1 and 9 are the most likely
    sizes = sh.sample_coalitions(12, 4000, seed=0)[0].sum(1)  # 4000 < 2^12 - 2: sampled
    p = torch.tensor([11 / (s * (12 - s)) for s in range(1, 12)])
    assert torch.allclose(torch.bincount(sizes, minlength=12)[1:] / 4000, p / p.sum(), atol=0.02)
    # with enough samples for every coalition, each comes once with its kernel weight
    every, weights = sh.sample_coalitions(4, 100)
    assert len(every) == 14 and len({tuple(r.tolist()) for r in every}) == 14
    assert weights[0].item() == pytest.approx(sh.shapley_kernel_weight(4, 1))


# ---------------------------------------------------------------------------------------------- KernelSHAP on models
def sixteen(size=8):
    """16 features: 2 x 2 blocks of an 8 x 8 image."""
    return (torch.arange(size).view(-1, 1) // 2 * 4 + torch.arange(size).view(1, -1) // 2).long()


def test_kernel_shap_recovers_exact_shapley_on_additive_model(x):
    model = Additive()
    attr = sh.kernel_shap(model, x, [0, 1], feature_mask=sixteen(), n_samples=100, seed=0)  # sampled, not enumerated
    idx, _ = sh.feature_index(sixteen(), x)
    w = model.lin.weight.detach().view(2, 3, 8, 8)
    for i, t in enumerate([0, 1]):
        expected = torch.zeros(16, dtype=torch.float64).index_add_(0, idx[i].flatten(), (w[t] * x[i]).flatten())
        assert torch.allclose(sh.feature_values(attr, sixteen())[i], expected, atol=1e-10)


def test_kernel_shap_exact_with_all_coalitions_and_efficient_when_sampled(x):
    model = cnn()
    attr = sh.kernel_shap(model, x, 1, feature_mask=quadrants(), n_samples=14)
    exact = sh.exact_shapley(game_value(model, x, 1, quadrants()), 4)
    assert torch.allclose(sh.feature_values(attr, quadrants())[0], exact, atol=1e-10)
    # 16 features, 40 samples: not exact, but efficiency is a constraint
    fine = sixteen()
    sampled = sh.kernel_shap(model, x, 1, feature_mask=fine, n_samples=40, baseline=0.5)
    with torch.no_grad():
        delta = model(x)[:, 1] - model(torch.full_like(x, 0.5))[:, 1]
    assert torch.allclose(sampled.flatten(1).sum(1), delta, atol=1e-10)


def test_kernel_shap_matches_shap_library(x):
    shap = pytest.importorskip("shap")
    model = cnn()
    value = game_value(model, x, 2, quadrants())
    explainer = shap.KernelExplainer(lambda z: np.array([[value(torch.as_tensor(r).bool())] for r in z]), np.zeros((1, 4)))
    theirs = explainer.shap_values(np.ones((1, 4)), nsamples=100, silent=True)
    ours = sh.feature_values(sh.kernel_shap(model, x[:1], 2, feature_mask=quadrants(), n_samples=100), quadrants())[0]
    assert np.allclose(ours.numpy(), np.asarray(theirs).reshape(-1), atol=1e-8)


def test_kernel_shap_close_to_captum(x):
    # Captum samples (global RNG) and approximates the constraint with a 1e6 weight; with 3000 samples
    # of 4 features both are at the exact values within sampling error
    model = cnn()
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = KernelShap(model).attribute(x, target=0, feature_mask=quadrants()[None, None].expand(1, 3, 8, 8),
                                             n_samples=3000, perturbations_per_eval=100)
    ours = sh.feature_values(sh.kernel_shap(model, x, 0, feature_mask=quadrants(), n_samples=14), quadrants())
    idx, _ = sh.feature_index(quadrants(), x)
    captum_values = torch.stack([torch.stack([theirs[i][idx[i] == j][0] for j in range(4)]) for i in range(2)])
    assert torch.allclose(ours, captum_values.double(), atol=0.02 * ours.abs().max().item())


def test_kernel_shap_seeded_and_batch_size_invariant(x):
    model = cnn()
    fine = (torch.arange(64).view(8, 8) // 8).long()
    a = sh.kernel_shap(model, x, 0, feature_mask=fine, n_samples=30, seed=4)
    assert torch.allclose(a, sh.kernel_shap(model, x, 0, feature_mask=fine, n_samples=30, seed=4, batch_size=7), atol=1e-12)
    assert not torch.allclose(a, sh.kernel_shap(model, x, 0, feature_mask=fine, n_samples=30, seed=5))


def test_feature_mask_shapes(x):
    model = cnn()
    ref = sh.kernel_shap(model, x, 0, feature_mask=quadrants(), n_samples=14)
    for mask in (quadrants()[None], quadrants()[None, None], quadrants().expand(2, 3, 8, 8).clone()):
        assert torch.allclose(sh.kernel_shap(model, x, 0, feature_mask=mask, n_samples=14), ref, atol=1e-12)
    # per-element features (each channel its own feature) also work
    channels = torch.arange(3).view(3, 1, 1).expand(3, 8, 8)
    assert sh.feature_values(sh.kernel_shap(model, x, 0, feature_mask=channels, n_samples=6), channels).shape == (2, 3)


@pytest.mark.parametrize("mask, kwargs, error, match", [
    (torch.zeros(5, 5, dtype=torch.long), {}, ValueError, "does not fit x"),
    (torch.zeros(8, 8, dtype=torch.long), {}, ValueError, "single feature"),
    (torch.zeros(8, 8), {}, TypeError, "integer feature ids"),
    ([[0, 1]], {}, TypeError, "feature_mask must be an integer tensor"),
    (None, {"n_samples": 7}, ValueError, "too small for 4 features"),
    (None, {"n_samples": 0}, ValueError, "n_samples must be an int >= 1"),
    (None, {"n_samples": 10.0}, TypeError, "n_samples must be an int"),
    (None, {"baseline": torch.zeros(3, 4, 4)}, ValueError, "baseline shape"),
])
def test_kernel_shap_bad_input(x, mask, kwargs, error, match):
    with pytest.raises(error, match=match):
        sh.kernel_shap(cnn(), x, 0, feature_mask=quadrants() if mask is None else mask, **kwargs)


def test_exact_shapley_bad_input():
    with pytest.raises(ValueError, match="too many"):
        sh.exact_shapley(glove_game, 21)
    with pytest.raises(TypeError, match="value must be a function"):
        sh.exact_shapley([1, 2], 2)


# ---------------------------------------------------------------------------------------------- GradientSHAP
def test_gradient_shap_exact_on_linear_model(x):
    model = Additive().eval()
    baselines = torch.randn(5, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    attr = sh.gradient_shap(model, x, 1, baselines=baselines, n_samples=40)
    w = model.lin.weight.detach()[1].view(3, 8, 8)
    # on a linear model each draw contributes w * (x - b_k) whatever alpha: the result is w * (x - a mix of
    # the baselines), with mixing weights (draw counts / n) that are >= 0 and sum to 1
    drawn = (x - attr / w).flatten(1)  # (B, D): the mixed baseline of each sample
    for i in range(2):
        p = torch.linalg.lstsq(baselines.flatten(1).T, drawn[i]).solution
        assert torch.allclose(baselines.flatten(1).T @ p, drawn[i], atol=1e-9)
        assert p.sum().item() == pytest.approx(1.0) and (p > -1e-9).all()
        assert torch.allclose(p * 40, (p * 40).round(), atol=1e-6)  # whole numbers of draws
    one = sh.gradient_shap(model, x, 1, baselines=baselines[:1], n_samples=3)
    assert torch.allclose(one, w * (x - baselines[0]), atol=1e-12)


def test_gradient_shap_matches_captum_in_expectation(x):
    model = cnn()
    baselines = 0.5 * torch.randn(3, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ours = sh.gradient_shap(model, x, 0, baselines=baselines, n_samples=1500, stdevs=0.05)
    np.random.seed(0)
    torch.manual_seed(0)
    theirs = GradientShap(model).attribute(x, baselines=baselines, target=0, n_samples=1500, stdevs=0.05).detach()
    scale = ours.abs().max().item()
    assert (ours - theirs).abs().max().item() < 0.12 * scale
    assert torch.corrcoef(torch.stack([ours.flatten(), theirs.flatten()]))[0, 1] > 0.98


def test_gradient_shap_seeded_and_batch_size_invariant(x):
    model = cnn()
    baselines = torch.randn(4, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    a = sh.gradient_shap(model, x, 0, baselines=baselines, n_samples=12, stdevs=0.1, seed=3)
    b = sh.gradient_shap(model, x, 0, baselines=baselines, n_samples=12, stdevs=0.1, seed=3, batch_size=5)
    assert torch.allclose(a, b, atol=1e-12)
    assert not torch.allclose(a, sh.gradient_shap(model, x, 0, baselines=baselines, n_samples=12, stdevs=0.1, seed=4))


def test_methods_leave_model_as_found(x):
    model = cnn()
    model.train()
    model[0].weight.grad = torch.full_like(model[0].weight, 2.0)
    with unchanged(model):
        with pytest.warns(UserWarning, match="training mode"):
            sh.kernel_shap(model, x, 0, feature_mask=quadrants(), n_samples=14)
        with pytest.warns(UserWarning, match="training mode"):
            sh.gradient_shap(model, x, 0, baselines=torch.zeros(1, 3, 8, 8, dtype=torch.float64), n_samples=4)
    with unchanged(model), pytest.raises(ValueError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sh.kernel_shap(model, torch.randn(1, 5, 8, 8, dtype=torch.float64), 0, feature_mask=quadrants(), n_samples=14)
    assert model.training and torch.equal(model[0].weight.grad, torch.full_like(model[0].weight, 2.0))
