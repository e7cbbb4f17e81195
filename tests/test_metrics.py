"""Metrics of chapter 07 on hand-computable cases: tiny fixed-weight models, known curves and AUCs."""
import itertools

import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from xaicourse import metrics
from xaicourse.testing import assert_unchanged, snapshot, tiny_cnn


class SumProbability(nn.Module):
    """P(class 0) = sum of the pixels / 2 exactly (pixels sum to at most 1)."""

    def forward(self, x):
        p = x.flatten(1).sum(dim=1) / 2
        return torch.stack([p.log(), (1 - p).log()], dim=1)


PIXELS = torch.tensor([[0.4, 0.3], [0.2, 0.1]]).view(1, 1, 2, 2)
PERFECT = PIXELS[:, 0]  # the map that ranks pixels by their true contribution
INVERTED = -PERFECT


# --------------------------------------------------------------------------------------------
# deletion / insertion
# --------------------------------------------------------------------------------------------
def test_deletion_by_hand():
    # remaining sums 1, .6, .3, .1, 0 -> p = .5, .3, .15, .05, 0 -> trapezoid with dx = 1/4
    curve = metrics.deletion_auc(SumProbability(), PIXELS, PERFECT, 0, n_steps=4, baseline=0.0)
    assert torch.allclose(curve.fractions, torch.tensor([0, 0.25, 0.5, 0.75, 1.0]))
    assert torch.allclose(curve.scores, torch.tensor([[0.5, 0.3, 0.15, 0.05, 0.0]]))
    assert curve.auc.item() == pytest.approx(0.1875)
    assert curve.targets.tolist() == [0]


def test_perfect_and_inverted_maps_give_the_extremes():
    model = SumProbability()
    best = metrics.deletion_auc(model, PIXELS, PERFECT, 0, n_steps=4, baseline=0.0).auc.item()
    worst = metrics.deletion_auc(model, PIXELS, INVERTED, 0, n_steps=4, baseline=0.0).auc.item()
    assert (best, worst) == pytest.approx((0.1875, 0.3125))
    ins_best = metrics.insertion_auc(model, PIXELS, PERFECT, 0, n_steps=4, baseline=0.0).auc.item()
    ins_worst = metrics.insertion_auc(model, PIXELS, INVERTED, 0, n_steps=4, baseline=0.0).auc.item()
    assert (ins_best, ins_worst) == pytest.approx((0.3125, 0.1875))
    for perm in itertools.permutations(range(4)):  # every ranking lies between the extremes
        ranking = torch.tensor(perm, dtype=torch.float).view(1, 2, 2)
        auc = metrics.deletion_auc(model, PIXELS, ranking, 0, n_steps=4, baseline=0.0).auc.item()
        assert best - 1e-6 <= auc <= worst + 1e-6


def test_insertion_curve_is_deletion_in_reverse_for_an_additive_model():
    model = SumProbability()
    deletion = metrics.deletion_auc(model, PIXELS, PERFECT, 0, n_steps=4, baseline=0.0)
    insertion = metrics.insertion_auc(model, PIXELS, INVERTED, 0, n_steps=4, baseline=0.0)
    assert torch.allclose(deletion.scores, insertion.scores.flip(1))


def test_constant_model_gives_flat_curves():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([1.0, 2.0, 3.0, 0.0]))
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    expected = torch.tensor([1.0, 2.0, 3.0, 0.0]).softmax(0)[2]
    attr = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(1))
    for fn in (metrics.deletion_auc, metrics.insertion_auc):
        curve = fn(model, x, attr, None, n_steps=7)
        assert torch.allclose(curve.scores, expected.expand(3, 8))
        assert torch.allclose(curve.auc, expected.expand(3))


def test_blur_baseline_leaves_a_uniform_image_unchanged():
    model = SumProbability()
    x = torch.full((1, 1, 6, 6), 1 / 72)  # p = 0.25 everywhere along the curve
    curve = metrics.deletion_auc(model, x, torch.rand(1, 6, 6), 0, n_steps=6, baseline="blur")
    assert torch.allclose(curve.scores, torch.full((1, 7), 0.25), atol=1e-6)


def test_batches_chunks_and_targets():
    torch.manual_seed(0)
    model = tiny_cnn((4,), 5, strides=1, paddings=1, head_pool=None, side=8)  # the global stream, which x continues
    before = snapshot(model)
    x, attr = torch.randn(3, 3, 8, 8), torch.randn(3, 8, 8)
    full = metrics.deletion_auc(model, x, attr, [4, 0, 2], n_steps=5, batch_size=None)
    one = metrics.deletion_auc(model, x, attr, [4, 0, 2], n_steps=5, batch_size=1)
    assert torch.allclose(full.scores, one.scores, atol=1e-6)
    assert full.targets.tolist() == [4, 0, 2]
    alone = metrics.deletion_auc(model, x[1:2], attr[1:2], 0, n_steps=5)
    assert torch.allclose(alone.scores[0], full.scores[1], atol=1e-6)
    # step 0 of deletion is x itself; the last step of insertion too
    probs = model(x).softmax(1)[torch.arange(3), torch.tensor([4, 0, 2])]
    assert torch.allclose(full.scores[:, 0], probs, atol=1e-6)
    inserted = metrics.insertion_auc(model, x, attr, [4, 0, 2], n_steps=5)
    assert torch.allclose(inserted.scores[:, -1], probs, atol=1e-6)
    # deterministic, and the model is left as found
    again = metrics.deletion_auc(model, x, attr, [4, 0, 2], n_steps=5)
    assert torch.equal(again.scores, full.scores)
    assert_unchanged(model, before)
    assert not model.training and all(p.grad is None for p in model.parameters())


def test_curve_errors_name_the_problem():
    model = SumProbability()
    with pytest.raises(ValueError, match="pixel_map"):
        metrics.deletion_auc(model, PIXELS, PIXELS, 0)
    with pytest.raises(ValueError, match="n_steps"):
        metrics.deletion_auc(model, PIXELS, PERFECT, 0, n_steps=0)
    with pytest.raises(ValueError, match="baseline"):
        metrics.deletion_auc(model, PIXELS, PERFECT, 0, baseline="noise")
    with pytest.raises(ValueError, match="out of range"):
        metrics.deletion_auc(model, PIXELS, PERFECT, 5)
    with pytest.raises(ValueError, match="NaN"):
        metrics.deletion_auc(model, PIXELS, PERFECT * float("nan"), 0)


def test_pixel_map():
    a = torch.tensor([[[[1.0, -2.0]], [[-3.0, 4.0]]]])  # (1, 2, 1, 2)
    assert torch.equal(metrics.pixel_map(a), torch.tensor([[[4.0, 6.0]]]))
    assert torch.equal(metrics.pixel_map(a, absolute=False), torch.tensor([[[-2.0, 2.0]]]))
    assert torch.equal(metrics.pixel_map(a[:, 0], absolute=False), a[:, 0])


# --------------------------------------------------------------------------------------------
# pointing game and mask energy
# --------------------------------------------------------------------------------------------
def test_pointing_game_by_hand():
    masks = torch.zeros(3, 5, 5, dtype=torch.bool)
    masks[:, 1:3, 1:3] = True
    maps = torch.zeros(3, 5, 5)
    maps[0, 2, 2] = 1.0  # on the object
    maps[1, 4, 4] = 1.0  # 2 rows and 2 columns away from (2, 2): distance sqrt(8)
    # maps[2] is constant: points nowhere, no map
    with pytest.warns(metrics.NoMapWarning, match="sample 2 has a constant map"):
        hits = metrics.pointing_game(maps, masks)
    assert hits.dtype == torch.float32 and hits[:2].tolist() == [1.0, 0.0] and hits[2].isnan()
    with pytest.warns(metrics.NoMapWarning):
        assert metrics.pointing_game(maps, masks, tolerance=2.9)[:2].tolist() == [1.0, 1.0]
    with pytest.warns(metrics.NoMapWarning):
        assert metrics.pointing_game(maps, masks, tolerance=2.8)[:2].tolist() == [1.0, 0.0]
    # three tied maxima, one on the object and two within 2.9 of it: 1/3, then 3/3 (no first-maximum rule)
    maps[2, 0, 0] = maps[2, 2, 1] = maps[2, 4, 4] = 1.0
    assert metrics.pointing_game(maps[2:], masks[2:]).tolist() == [pytest.approx(1 / 3)]
    assert metrics.pointing_game(maps[2:], masks[2:], tolerance=2.9).tolist() == [1.0]
    with pytest.raises(ValueError, match="tolerance"):
        metrics.pointing_game(maps, masks, tolerance=-1)


def test_mask_energy_by_hand():
    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[:, :2, :2] = True  # a quarter of the image
    perfect = masks.float()
    uniform = torch.ones(3, 4, 4)
    mixed = torch.zeros(3, 4, 4)
    mixed[:, 0, 0], mixed[:, 3, 3], mixed[:, 3, 2] = 3.0, 1.0, -5.0  # negatives are ignored
    assert metrics.mask_energy(perfect, masks).tolist() == [1.0] * 3
    assert metrics.mask_energy(mixed, masks).tolist() == [0.75] * 3
    with pytest.warns(metrics.NoMapWarning, match="samples 0, 1, 2 have a constant map"):
        assert metrics.mask_energy(uniform, masks).isnan().all()  # a uniform map ranks nothing: no map
    negative = -mixed.abs()
    with pytest.warns(metrics.NoMapWarning, match="no positive value"):  # no evidence for the class: NaN, not 0
        assert metrics.mask_energy(negative, masks).isnan().all()
    with pytest.raises(ValueError, match="empty"):
        metrics.mask_energy(uniform, torch.zeros(3, 4, 4, dtype=torch.bool))


# --------------------------------------------------------------------------------------------
# completeness
# --------------------------------------------------------------------------------------------
def test_completeness_is_exact_for_gradient_times_input_of_a_linear_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 3 * 3, 4))
    x = torch.randn(2, 2, 3, 3)
    weight = model[1].weight.detach()[[1, 3]].view(2, 2, 3, 3)
    exact = weight * x  # IG of a linear model with a zero baseline
    assert torch.allclose(metrics.completeness(model, x, exact, [1, 3]).float(), torch.zeros(2), atol=1e-5)
    gap = metrics.completeness(model, x, exact + 0.01, [1, 3]).float()
    assert torch.allclose(gap, torch.full((2,), 0.18), atol=1e-5)
    change = (exact.flatten(1).sum(1)).abs()
    relative = metrics.completeness(model, x, exact + 0.01, [1, 3], relative=True).float()
    assert torch.allclose(relative, 0.18 / change, atol=1e-5)
    # a baseline equal to x: zero change, so only an all-zero attribution is complete
    assert metrics.completeness(model, x, torch.zeros_like(x), [1, 3], baseline=x, relative=True).tolist() == [0.0, 0.0]


# --------------------------------------------------------------------------------------------
# randomisation sanity check
# --------------------------------------------------------------------------------------------
def gradient(model, x, targets):
    x = x.clone().requires_grad_(True)
    score = model(x).gather(1, targets.view(-1, 1)).sum()
    (grad,) = torch.autograd.grad(score, x)
    return grad


def one_channel_cnn():
    """Two same-size convs with ReLUs and a dense layer (modules 0, 2, 5) on one-channel 8 x 8 images."""
    return tiny_cnn((4, 4), 3, in_channels=1, strides=1, paddings=1, head_pool=None, side=8, seed=0)


def test_sanity_check_on_a_linear_model_by_hand():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    x = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    result = metrics.randomization_sanity_check(model, gradient, x, 2, seed=5)
    assert result.layers == ["1"]
    # the gradient is the target row of the weights; the layer is module 0 of the owners -> seed 5
    torch.manual_seed(5)
    fresh = nn.Linear(64, 3)
    assert torch.allclose(result.original[0], model[1].weight[2].detach().abs().view(8, 8))
    assert torch.allclose(result.randomized[0, 0], fresh.weight[2].detach().abs().view(8, 8))
    expected = spearmanr(model[1].weight[2].abs().detach().numpy(), fresh.weight[2].abs().detach().numpy()).statistic
    assert result.spearman[0, 0].item() == pytest.approx(expected, abs=1e-6)


def test_sanity_check_cascade_versus_independent_and_model_untouched():
    model = one_channel_cnn()
    before = snapshot(model)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    cascade = metrics.randomization_sanity_check(model, gradient, x, cascade=True)
    single = metrics.randomization_sanity_check(model, gradient, x, cascade=False)
    assert cascade.layers == single.layers == ["5", "2", "0"]  # top down
    assert cascade.spearman.shape == cascade.ssim.shape == (3, 2)
    assert cascade.randomized.shape == (3, 2, 8, 8)
    # the top layer alone is the same in both modes; below it the cascade has changed more
    assert torch.allclose(cascade.randomized[0], single.randomized[0])
    assert not torch.allclose(cascade.randomized[2], single.randomized[2])
    # fully randomised: the gradient no longer resembles the original
    assert cascade.spearman[-1].abs().max() < 0.5 and cascade.ssim[-1].max() < 0.5
    assert_unchanged(model, before)
    assert not model.training and all(p.grad is None for p in model.parameters())


def test_sanity_check_flags_a_map_that_ignores_the_model():
    model = one_channel_cnn()
    x = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    edges = metrics.randomization_sanity_check(model, lambda m, x, t: x, x, layers=[model[0], "5"])
    assert edges.layers == ["5", "0"]
    assert torch.allclose(edges.spearman, torch.ones(2, 1)) and torch.allclose(edges.ssim, torch.ones(2, 1))
    with pytest.warns(metrics.NoMapWarning, match="sample 0 has a constant map on the intact model"):
        zeros = metrics.randomization_sanity_check(model, lambda m, x, t: torch.zeros_like(x), x, layers=["5"])
    assert zeros.spearman.isnan().all() and zeros.ssim.isnan().all()  # a constant map has no ranking: no map
    with pytest.raises(ValueError, match="no parameters"):
        metrics.randomization_sanity_check(model, gradient, x, layers=["1"])
    with pytest.raises(ValueError, match="no layer named"):
        metrics.randomization_sanity_check(model, gradient, x, layers=["head"])
