"""The metric families added in chapter 07's second part: values by hand on tiny fixed cases."""
import math

import pytest
import torch

import xaicourse as xc
from xaicourse.hooks import hooks_left
from xaicourse.testing import tiny_cnn, tiny_mlp


def cnn(seed=0):
    return tiny_cnn((4, 4), 3, strides=1, paddings=1, seed=seed)


def linear(seed=0, side=6):
    return tiny_mlp((3 * side * side, 2), flatten=True, seed=seed)


# ------------------------------------------------------------------ complexity
def test_complexity_by_hand():
    uniform = torch.ones(1, 4, 4)
    one = torch.zeros(1, 4, 4)
    one[0, 1, 2] = -3.0                                   # the sign does not matter
    spread = torch.ones(1, 4, 4)
    spread[0, 0, 0] = 3.0
    maps = torch.cat([spread, one, uniform, torch.zeros(1, 4, 4)])
    # Gini: sorted ascending 15 ones then 3, total 18: (sum_{i<=15} (2i - 17) + 15 * 3) / (16 * 18)
    with pytest.warns(xc.metrics.NoMapWarning, match="samples 2, 3 have a constant map"):
        gini = xc.metrics.sparseness(maps)
    torch.testing.assert_close(gini[:2], torch.tensor([30 / 288, 15 / 16]))
    p = torch.tensor([3.0] + [1.0] * 15) / 18
    with pytest.warns(xc.metrics.NoMapWarning, match="samples 2, 3"):
        entropy = xc.metrics.entropy_complexity(maps)
    torch.testing.assert_close(entropy[:2], torch.tensor([-(p * p.log()).sum().item(), 0.0]))
    with pytest.warns(xc.metrics.NoMapWarning, match="samples 2, 3"):
        count = xc.metrics.effective_complexity(maps)
    assert count[:2].tolist() == [16, 1]
    assert gini[2:].isnan().all() and entropy[2:].isnan().all() and count[2:].isnan().all()
    half = torch.tensor([[[1.0, 0.4], [0.6, 0.0]]])
    assert xc.metrics.effective_complexity(half, eps=0.5).tolist() == [2]
    assert xc.metrics.effective_complexity(half * 10, eps=0.5, relative=False).tolist() == [3]


# ------------------------------------------------------------------ localisation
def test_relevance_mass_and_rank_accuracy_by_hand():
    maps = torch.tensor([[[4.0, 3.0], [2.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]]])
    masks = torch.tensor([[[True, False], [True, False]], [[False, False], [False, True]]])
    maps[1, 1, 0] = 2.0                                    # sample 1: 1 1 / 2 1, total 5, one pixel of mass 1 inside
    torch.testing.assert_close(xc.metrics.relevance_mass_accuracy(maps, masks), torch.tensor([0.6, 0.2]))
    # top-2 of sample 0 are 4 (in) and 3 (out); sample 1's K = 1 is its 2 (out): 0, whatever the scan order
    torch.testing.assert_close(xc.metrics.relevance_rank_accuracy(maps, masks), torch.tensor([0.5, 0.0]))
    masks[1, 0, 0] = True                                  # K = 2: the 2 (out), then one of three tied 1s, 2 of them in
    torch.testing.assert_close(xc.metrics.relevance_rank_accuracy(maps, masks), torch.tensor([0.5, 1 / 3]))
    with pytest.raises(ValueError, match="empty"):
        xc.metrics.relevance_rank_accuracy(maps, torch.zeros(2, 2, 2, dtype=torch.bool))


# ------------------------------------------------------------------ robustness
def test_robustness_of_a_linear_model_by_hand():
    model = linear()
    x = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1])
    assert xc.metrics.max_sensitivity(model, xc.saliency.vanilla_gradient, x, y).tolist() == [0.0, 0.0]
    w = model[1].weight.detach()[y].view(2, 3, 6, 6)
    g = torch.Generator().manual_seed(7)
    deltas = [(torch.rand(x.shape, generator=g) * 2 - 1) * 0.1 for _ in range(3)]
    expected = torch.stack([(w * d).flatten(1).norm(dim=1) / (w * x).flatten(1).norm(dim=1) for d in deltas]).amax(0)
    got = xc.metrics.max_sensitivity(model, xc.saliency.gradient_x_input, x, y, radius=0.1, n_samples=3, seed=7)
    torch.testing.assert_close(got, expected)
    g = torch.Generator().manual_seed(7)
    deltas = [torch.randn(x.shape, generator=g) * 0.05 for _ in range(3)]
    expected = torch.stack([(w * d).flatten(1).norm(dim=1) / d.flatten(1).norm(dim=1) for d in deltas]).amax(0)
    got = xc.metrics.local_lipschitz(model, xc.saliency.gradient_x_input, x, y, sigma=0.05, n_samples=3, seed=7)
    torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="radius"):
        xc.metrics.max_sensitivity(model, xc.saliency.vanilla_gradient, x, radius=0)


# ------------------------------------------------------------------ faithfulness: ROAD
def test_imputation_keeps_linear_ramps_and_constants():
    ramp = (torch.arange(8.0).view(1, 1, 8) + 2 * torch.arange(8.0).view(1, 8, 1)).expand(1, 3, 8, 8).clone()
    removed = torch.zeros(1, 8, 8, dtype=torch.bool)
    removed[0, 2:6, 3:6] = True                            # an interior block: every pixel has 8 neighbours
    torch.testing.assert_close(xc.metrics.noisy_linear_imputation(ramp, removed, noise=0.0), ramp)
    constant = torch.full((1, 3, 8, 8), 0.3)
    removed = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.7
    torch.testing.assert_close(xc.metrics.noisy_linear_imputation(constant, removed, noise=0.0), constant)
    noisy = xc.metrics.noisy_linear_imputation(constant, removed, noise=0.1, seed=1)
    assert 0.05 < (noisy - constant)[removed[:, None].expand_as(constant)].std() < 0.15
    assert torch.equal(noisy, xc.metrics.noisy_linear_imputation(constant, removed, noise=0.1, seed=1))
    with pytest.raises(ValueError, match="every pixel"):
        xc.metrics.noisy_linear_imputation(constant, torch.ones(1, 8, 8, dtype=torch.bool))


def test_road_morf_falls_faster_than_lerf_for_the_model_s_own_weights():
    model = linear(side=6)
    x = torch.rand(4, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    y = xc.inputs.logits(model(x)).argmax(1)
    contribution = xc.metrics.pixel_map(xc.saliency.gradient_x_input(model, x, y), absolute=False)
    morf = xc.metrics.road(model, x, contribution, y, order="morf", noise=0.0)
    lerf = xc.metrics.road(model, x, contribution, y, order="lerf", noise=0.0)
    assert morf.scores.shape == (4, 10) and torch.allclose(morf.scores[:, 0], lerf.scores[:, 0])
    assert (morf.auc < lerf.auc).all()
    with pytest.raises(ValueError, match="order"):
        xc.metrics.road(model, x, contribution, y, order="random")


# ------------------------------------------------------------------ randomisation
def test_noise_floor_and_the_pass_rule():
    model = cnn()
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert xc.metrics.noise_floor(model, xc.saliency.vanilla_gradient, x).tolist() == [1.0, 1.0]

    def random_map(m, x, t, seed=0):
        return torch.rand(len(x), 8, 8, generator=torch.Generator().manual_seed(seed))

    floor = xc.metrics.noise_floor(model, random_map, x, seeds=(0, 1, 2))
    assert floor.abs().max() < 0.3
    passed = xc.metrics.randomization_passed(torch.tensor([0.2, 0.6, 0.2, 1.0]), torch.tensor([0.5, 1.0, 0.3, 1.0]))
    assert passed.tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match="two or more"):
        xc.metrics.noise_floor(model, random_map, x, seeds=(0,))


def test_data_randomization_on_a_small_split():
    train = xc.data.shapes(n=240, seed=3, marker=None, **xc.models.SHAPES_CNN_DATA)
    test = xc.data.shapes(n=60, seed=4, marker=None, **xc.models.SHAPES_CNN_DATA)
    x = test.images[:4]
    models = xc.metrics.permuted_label_models(train, test, epochs=3)
    result = xc.metrics.data_randomization(xc.saliency.vanilla_gradient, x, test.labels[:4], models=models)
    again = xc.metrics.data_randomization(xc.saliency.vanilla_gradient, x, test.labels[:4], train=train, test=test,
                                          epochs=3)
    assert torch.equal(again.randomized, result.randomized) and again.accuracy == result.accuracy
    assert result.original.shape == result.randomized.shape == (4, 32, 32)
    assert not torch.allclose(result.original, result.randomized)
    assert (result.spearman < 0.99).all()
    assert result.accuracy["permuted labels"]["test"] < result.accuracy["true labels"]["test"] + 0.2


# ------------------------------------------------------------------ axioms: input invariance
def test_shifted_model_computes_the_same_function_and_exposes_x_times_gradient():
    model = xc.models.shapes_cnn("clean")
    x = xc.data.shapes(n=3, seed=12, marker=0.0, **xc.models.SHAPES_CNN_DATA).images
    moved = xc.metrics.shifted_model(model, -0.5)
    with torch.no_grad():
        torch.testing.assert_close(moved(x - 0.5), model(x), rtol=1e-4, atol=1e-4)
    gradient = xc.metrics.input_invariance(model, xc.saliency.vanilla_gradient, x, shift=-0.5)
    times_input = xc.metrics.input_invariance(model, xc.saliency.gradient_x_input, x, shift=-0.5)
    assert gradient["output_change"].max() < 1e-4
    assert gradient["attribution_change"].max() < 1e-4
    assert times_input["attribution_change"].min() > 0.1
    assert hooks_left(model) == 0


# ------------------------------------------------------------------ report
def test_report_badges_a_method_and_fails_a_map_that_ignores_the_model():
    model = cnn()
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[:, 2:6, 2:6] = True
    badge = xc.metrics.report(model, xc.saliency.vanilla_gradient, x, masks=masks, n_samples=2)
    sanity = xc.metrics.randomization_sanity_check(model, xc.saliency.vanilla_gradient, x, layers=["6", "0"])
    per_sample = (sanity.spearman.abs().mean(dim=0) <= 0.5).float().mean().item()
    assert badge.noise_floor == 1.0 and badge.randomisation_pass_rate == per_sample
    assert badge.randomisation_passed == (per_sample >= 0.5)
    assert badge.completeness_error is not None and badge.pointing_game is not None
    assert 0 <= badge.deletion_auc <= 1 and "randomisation" in str(badge)
    fixed = xc.metrics.report(model, lambda m, x, t: x.sum(1).abs(), x, n_samples=2)
    assert fixed.randomisation_similarity == pytest.approx(1.0) and not fixed.randomisation_passed
    assert fixed.completeness_error is None and fixed.max_sensitivity > 0 and fixed.mask_energy is None
