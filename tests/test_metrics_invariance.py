"""Metrics are instruments (chapter 07): the pixel scan order, ties and the map's resolution never decide a score.

* Rotating or flipping image, map and mask together changes no score (on maps full of ties).
* Ties are averaged: a tied group counts by its expected share under random tie-breaking.
* An empty or constant map is "no map": NaN for that sample and a warning that names it.
* A patch map scores the same at its native resolution as upsampled to the image (block-constant).
"""
import math

import pytest
import torch
from scipy.stats import pearsonr, rankdata
from torch import nn

import xaicourse as xc
from xaicourse.metrics import _common

TRANSFORMS = {
    "rot90": lambda t: torch.rot90(t, 1, dims=(-2, -1)),
    "rot180": lambda t: torch.rot90(t, 2, dims=(-2, -1)),
    "rot270": lambda t: torch.rot90(t, 3, dims=(-2, -1)),
    "transpose": lambda t: t.transpose(-2, -1),
    "flip rows": lambda t: t.flip(-2),
    "flip columns": lambda t: t.flip(-1),
}


def tied_maps(n=3, side=16, block=4, seed=0):
    """Block-constant maps with three levels (many tied blocks), and a zero corner: ties everywhere."""
    g = torch.Generator().manual_seed(seed)
    coarse = (torch.rand(n, side // block, side // block, generator=g) * 3).floor()
    maps = coarse.repeat_interleave(block, 1).repeat_interleave(block, 2)
    maps[:, :3, :3] = 0.0
    return maps


def masks_for(n=3, side=16):
    masks = torch.zeros(n, side, side, dtype=torch.bool)
    masks[0, 2:9, 5:12] = True
    masks[1, 8:, :7] = True
    masks[2, 3:5, 3:14] = True
    return masks[:n]


class PixelwiseNet(nn.Module):
    """A per-pixel network + global average pooling: its output does not depend on where a pixel is."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 1), nn.Tanh(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))

    def forward(self, x):
        return self.body(x)


def images(n=3, side=16, seed=1):
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ rotation and flips change nothing
MASK_METRICS = {
    "pointing_game": lambda m, s: xc.metrics.pointing_game(m, s),
    "pointing_game, tolerance 2.5": lambda m, s: xc.metrics.pointing_game(m, s, tolerance=2.5),
    "mask_energy": xc.metrics.mask_energy,
    "relevance_mass_accuracy": xc.metrics.relevance_mass_accuracy,
    "relevance_rank_accuracy": xc.metrics.relevance_rank_accuracy,
}
MAP_METRICS = {
    "sparseness": xc.metrics.sparseness,
    "entropy_complexity": xc.metrics.entropy_complexity,
    "effective_complexity": xc.metrics.effective_complexity,
}


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("metric", [*MASK_METRICS, *MAP_METRICS])
def test_map_metrics_do_not_depend_on_the_scan_order(metric, transform):
    maps, masks, turn = tied_maps(), masks_for(), TRANSFORMS[transform]
    if metric in MASK_METRICS:
        before, after = MASK_METRICS[metric](maps, masks), MASK_METRICS[metric](turn(maps), turn(masks))
    else:
        before, after = MAP_METRICS[metric](maps), MAP_METRICS[metric](turn(maps))
    torch.testing.assert_close(after, before, rtol=1e-6, atol=1e-7)
    assert torch.isfinite(before).all()


CURVES = {
    "deletion, zero fill": lambda model, x, m: xc.metrics.deletion_auc(model, x, m, 0, n_steps=7, baseline=0.0),
    "deletion, blur": lambda model, x, m: xc.metrics.deletion_auc(model, x, m, 0, n_steps=7, baseline="blur"),
    "insertion": lambda model, x, m: xc.metrics.insertion_auc(model, x, m, 0, n_steps=7, baseline=0.0),
    "ROAD MoRF": lambda model, x, m: xc.metrics.road(model, x, m, 0, noise=0.0, fractions=(0.0, 0.2, 0.45, 0.7)),
    "ROAD LeRF": lambda model, x, m: xc.metrics.road(model, x, m, 0, order="lerf", noise=0.0,
                                                     fractions=(0.0, 0.2, 0.45, 0.7)),
}


@pytest.mark.parametrize("transform", ["rot90", "transpose", "flip columns"])
@pytest.mark.parametrize("curve", CURVES)
def test_perturbation_curves_do_not_depend_on_the_scan_order(curve, transform):
    """The model does not care where a pixel is, so only the scan order could change the curve: it must not."""
    model, x, maps, turn = PixelwiseNet(), images(), tied_maps(), TRANSFORMS[transform]
    before, after = CURVES[curve](model, x, maps), CURVES[curve](model, turn(x), turn(maps))
    torch.testing.assert_close(after.scores, before.scores, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(after.auc, before.auc, rtol=1e-5, atol=1e-6)
    assert before.scores[:, 1:-1].std() > 0  # the curves move: the test can see a difference


def test_roar_removal_does_not_depend_on_the_scan_order(monkeypatch):
    """ROAR's removal (fill or imputation); the imputation's noise (drawn in pixel order) is switched off."""
    from xaicourse.metrics import faithfulness, retraining
    from xaicourse.metrics.retraining import _remove

    monkeypatch.setattr(retraining, "impute_weighted",
                        lambda x, w, noise, seed: faithfulness.impute_weighted(x, w, noise=0.0, seed=seed))
    x, maps, turn = images(), tied_maps(), TRANSFORMS["rot90"]
    for fill in (torch.tensor([0.1, 0.2, 0.3]), "impute"):
        for fraction in (0.1, 0.35, 0.6):
            removed = _remove(x, maps, fraction, fill)
            torch.testing.assert_close(_remove(turn(x), turn(maps), fraction, fill), turn(removed))
            assert (removed != x).any()


def test_road_when_the_tied_group_leaves_nothing_to_impute_from():
    """A two-level map: past its top region the zero group straddles every count, so no pixel is left intact."""
    model, x, turn = PixelwiseNet(), images(n=2), TRANSFORMS["rot90"]
    maps = torch.zeros(2, 16, 16)
    maps[:, 4:10, 3:12] = 1.0                              # 54 of 256 pixels, about 21 %
    curve = xc.metrics.road(model, x, maps, 0, noise=0.0, fractions=(0.0, 0.1, 0.5, 0.9))
    turned = xc.metrics.road(model, turn(x), turn(maps), 0, noise=0.0, fractions=(0.0, 0.1, 0.5, 0.9))
    assert torch.isfinite(curve.scores).all()
    torch.testing.assert_close(turned.scores, curve.scores, rtol=1e-5, atol=1e-6)
    # the removed share is the fraction: the imputed image moved away from x at 50 % and 90 %
    assert (curve.scores[:, 2:] != curve.scores[:, :1]).all()


# ------------------------------------------------------------------ ties are averaged
@pytest.mark.parametrize("transform", [None, *TRANSFORMS])
def test_two_tied_maxima_one_on_the_object_score_one_half(transform):
    maps = torch.zeros(1, 6, 6)
    masks = torch.zeros(1, 6, 6, dtype=torch.bool)
    masks[0, :2, :2] = True
    maps[0, 0, 0] = maps[0, 5, 5] = 1.0   # one maximum on the object, one far away
    maps[0, 3, 1] = 0.5
    if transform is not None:
        maps, masks = TRANSFORMS[transform](maps), TRANSFORMS[transform](masks)
    assert xc.metrics.pointing_game(maps, masks).tolist() == [0.5]
    assert xc.metrics.pointing_game(maps, masks, tolerance=8).tolist() == [1.0]


def test_relevance_rank_accuracy_counts_a_tied_group_by_its_expected_share():
    # K = 2 mask pixels; the top group has 4 tied pixels, 2 of them on the mask: expected hits 2 * 2/4 = 1
    # (the first two in row-major order are both on the mask: index order would say 1.0)
    maps = torch.tensor([[[1.0, 1.0, 0.0], [1.0, 1.0, 0.5], [0.2, 0.1, 0.3]]])
    masks = torch.zeros(1, 3, 3, dtype=torch.bool)
    masks[0, 0, 0] = masks[0, 0, 1] = True
    for turn in [lambda t: t, *TRANSFORMS.values()]:
        assert xc.metrics.relevance_rank_accuracy(turn(maps), turn(masks)).tolist() == [0.5]


class SumProbability(nn.Module):
    """P(class 0) = sum of the pixels / 2 exactly."""

    def forward(self, x):
        p = x.flatten(1).sum(dim=1) / 2
        return torch.stack([p.log(), (1 - p).log()], dim=1)


def test_deletion_of_a_tied_group_is_its_expectation_under_random_tie_breaking():
    pixels = torch.tensor([[0.4, 0.3], [0.2, 0.1]]).view(1, 1, 2, 2)
    ties = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    # step 1 deletes one of the two tied top pixels: remaining 1 - (0.4 + 0.3) / 2 = 0.65, p = 0.325;
    # step 3 deletes one of the two tied bottom pixels: remaining (0.2 + 0.1) / 2 = 0.15, p = 0.075
    curve = xc.metrics.deletion_auc(SumProbability(), pixels, ties, 0, n_steps=4, baseline=0.0)
    torch.testing.assert_close(curve.scores, torch.tensor([[0.5, 0.325, 0.15, 0.075, 0.0]]))
    # the same number as averaging the deletion over every order of the tied pixels
    orders = [torch.tensor([[[a, b], [c, d]]])
              for a, b in ((4.0, 3.0), (3.0, 4.0)) for c, d in ((2.0, 1.0), (1.0, 2.0))]
    mean = torch.stack([xc.metrics.deletion_auc(SumProbability(), pixels, o, 0, n_steps=4, baseline=0.0).scores
                        for o in orders]).mean(0)
    torch.testing.assert_close(curve.scores, mean)


def test_spearman_uses_average_ranks_for_ties():
    a, b = tied_maps(n=1)[0], torch.rand(16, 16, generator=torch.Generator().manual_seed(3))
    expected = pearsonr(rankdata(a.flatten().numpy(), "average"), rankdata(b.flatten().numpy(), "average")).statistic
    assert _common.spearman(a, b) == pytest.approx(expected, abs=1e-12)


# ------------------------------------------------------------------ an empty or constant map is no map
def with_constant(maps, value):
    maps = maps.clone()
    maps[1] = value
    return maps


NO_MAP = {
    "pointing_game": lambda m: xc.metrics.pointing_game(m, masks_for()),
    "mask_energy": lambda m: xc.metrics.mask_energy(m, masks_for()),
    "relevance_mass_accuracy": lambda m: xc.metrics.relevance_mass_accuracy(m, masks_for()),
    "relevance_rank_accuracy": lambda m: xc.metrics.relevance_rank_accuracy(m, masks_for()),
    "sparseness": xc.metrics.sparseness,
    "entropy_complexity": xc.metrics.entropy_complexity,
    "effective_complexity": xc.metrics.effective_complexity,
    "deletion_auc": lambda m: xc.metrics.deletion_auc(PixelwiseNet(), images(), m, 0, n_steps=4).auc,
    "insertion_auc": lambda m: xc.metrics.insertion_auc(PixelwiseNet(), images(), m, 0, n_steps=4).auc,
    "road": lambda m: xc.metrics.road(PixelwiseNet(), images(), m, 0, fractions=(0.0, 0.5)).auc,
}


@pytest.mark.parametrize("value", [0.0, 0.3], ids=["empty", "constant"])
@pytest.mark.parametrize("metric", NO_MAP)
def test_an_empty_or_constant_map_is_no_map(metric, value):
    maps = with_constant(tied_maps() + 0.5, value)
    with pytest.warns(UserWarning, match=r"(?s)sample 1\b.*(constant|no map)"):
        scores = NO_MAP[metric](maps)
    assert math.isnan(scores[1].item())
    assert torch.isfinite(scores[[0, 2]]).all()


def gradient(model, x, targets):
    return xc.saliency.vanilla_gradient(model, x, targets)


def test_rank_correlations_of_a_constant_map_are_nan_with_a_warning():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3)).eval()
    x = images(n=2)

    def half_empty(m, x, t):
        a = gradient(m, x, t)
        a[1] = 0.0
        return a

    with pytest.warns(UserWarning, match=r"(?s)sample 1\b.*(constant|no map)"):
        sanity = xc.metrics.randomization_sanity_check(model, half_empty, x, layers=["4"])
    assert torch.isfinite(sanity.spearman[:, 0]).all() and torch.isnan(sanity.spearman[:, 1]).all()
    assert torch.isnan(sanity.ssim[:, 1]).all()
    with pytest.warns(UserWarning, match=r"(?s)sample 1\b.*(constant|no map)"):
        floor = xc.metrics.noise_floor(model, half_empty, x)
    assert floor[0].item() == pytest.approx(1.0) and math.isnan(floor[1].item())
    assert xc.metrics.randomization_passed(sanity.spearman[0], floor).tolist()[1] is False


def test_max_sensitivity_of_an_all_zero_attribution_is_nan_with_a_warning():
    def first_empty(m, x, t):
        a = gradient(m, x, t)
        a[0] = 0.0
        return a

    with pytest.warns(UserWarning, match=r"(?s)sample 0 has an all-zero attribution"):
        scores = xc.metrics.max_sensitivity(PixelwiseNet(), first_empty, images(n=2), n_samples=2)
    assert math.isnan(scores[0].item()) and 0 < scores[1].item() < math.inf


# ------------------------------------------------------------------ patch maps at their native resolution
def patch_case(side=224, grid=14, n=2, seed=5):
    g = torch.Generator().manual_seed(seed)
    native = (torch.rand(n, grid, grid, generator=g) * 4).floor() + torch.rand(n, grid, grid, generator=g).round()
    block = side // grid
    upsampled = native.repeat_interleave(block, 1).repeat_interleave(block, 2)
    masks = torch.zeros(n, side, side, dtype=torch.bool)
    masks[0, 37:150, 20:101] = True          # edges inside patches: a patch can be partly on the object
    masks[1, 90:211, 130:190] = True
    return native, upsampled, masks


@pytest.mark.parametrize("metric", MASK_METRICS)
def test_a_patch_map_scores_the_same_at_its_native_resolution(metric):
    native, upsampled, masks = patch_case()
    fn = MASK_METRICS[metric]
    torch.testing.assert_close(fn(native, masks), fn(upsampled, masks), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(xc.metrics.pointing_game(native, masks, tolerance=15),
                               xc.metrics.pointing_game(upsampled, masks, tolerance=15), rtol=0, atol=1e-12)


def test_complexity_of_a_patch_map_at_its_native_resolution():
    native, upsampled, _ = patch_case()
    torch.testing.assert_close(xc.metrics.sparseness(native), xc.metrics.sparseness(upsampled))  # Gini: same
    # entropy and counts are per pixel: an upsampled map has 16 x 16 pixels per patch
    torch.testing.assert_close(xc.metrics.entropy_complexity(upsampled),
                               xc.metrics.entropy_complexity(native) + math.log(256), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(xc.metrics.effective_complexity(upsampled),
                               xc.metrics.effective_complexity(native) * 256)


@pytest.mark.parametrize("kind", ["deletion", "insertion", "road"])
def test_perturbation_curves_of_a_patch_map_at_its_native_resolution(kind):
    side = 56 if kind == "road" else 224
    native, upsampled, _ = patch_case(side=side)
    model, x = PixelwiseNet(), images(n=2, side=side)
    run = {"deletion": lambda m: xc.metrics.deletion_auc(model, x, m, 1, n_steps=10, baseline=0.0),
           "insertion": lambda m: xc.metrics.insertion_auc(model, x, m, 1, n_steps=10),
           "road": lambda m: xc.metrics.road(model, x, m, 1, noise=0.0, fractions=(0.0, 0.3, 0.55, 0.8))}[kind]
    coarse, fine = run(native), run(upsampled)
    torch.testing.assert_close(coarse.scores, fine.scores, rtol=1e-5, atol=1e-6)


def test_a_map_whose_size_does_not_divide_the_image_is_refused():
    with pytest.raises(ValueError, match="divide"):
        xc.metrics.pointing_game(torch.rand(1, 5, 5), masks_for()[:1])
    with pytest.raises(ValueError, match="divide"):
        xc.metrics.deletion_auc(PixelwiseNet(), images(n=1), torch.rand(1, 5, 5), 0)
