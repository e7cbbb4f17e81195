"""Our metrics against Quantus 0.6.0 (the oracle) on fixed cases. Chapter 07.

Each test computes the same quantity both ways and states the settings under which the two
definitions coincide (documented differences in the test's docstring). Quantus takes numpy arrays
(B, C, H, W) for inputs and (B, 1, H, W) for maps.
"""
import warnings

import numpy as np
import pytest
import torch

import xaicourse as xc
from xaicourse.metrics import randomisation
from xaicourse.testing import tiny_cnn

quantus = pytest.importorskip("quantus")


def cnn(seed=0, channels=3):
    return tiny_cnn((4, 4), 3, in_channels=channels, strides=1, paddings=1, seed=seed)


@pytest.fixture(autouse=True)
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.fixture
def case():
    """Four 8 x 8 maps with distinct values (no ties), masks of different sizes, inputs and labels.

    No ties on purpose: ours averages tied pixels (a tied group counts by its expected share under
    random tie-breaking) where Quantus takes numpy's argmax / argsort order, so the two agree on
    continuous maps only (tests/test_metrics_invariance.py covers the ties).
    """
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(4, 8, 8, generator=g) + torch.arange(64).view(8, 8) * 1e-4
    masks = torch.zeros(4, 8, 8, dtype=torch.bool)
    masks[0, 2:5, 2:5] = True
    masks[1, :, :3] = True
    masks[2, 6, 6] = True
    masks[3, 1:7, 4:8] = True
    x = torch.rand(4, 3, 8, 8, generator=g)
    return maps, masks, x, torch.tensor([0, 1, 2, 1])


def np4(t):
    return t.detach().numpy().astype(np.float64)[:, None] if t.ndim == 3 else t.detach().numpy()


def test_pointing_game(case):
    """Quantus's PointingGame (weighted=False) == ours with tolerance 0 on maps without ties: the maximum inside
    the mask (with ties Quantus takes the first maximum, ours the share of the tied maxima that hit)."""
    maps, masks, x, y = case
    theirs = quantus.PointingGame(disable_warnings=True)(model=None, x_batch=np4(x), y_batch=y.numpy(),
                                                          a_batch=np4(maps), s_batch=np4(masks))
    assert xc.metrics.pointing_game(maps, masks).tolist() == [float(v) for v in theirs]
    assert any(theirs) and not all(theirs)


def test_relevance_mass_accuracy(case):
    """RelevanceMassAccuracy: sum inside / sum of the map; Quantus's max-normalisation cancels in the ratio."""
    maps, masks, x, y = case
    signed = maps - 0.3                                   # negative values too: the signed definition
    for a in (maps, signed):
        theirs = quantus.RelevanceMassAccuracy(disable_warnings=True)(model=None, x_batch=np4(x), y_batch=y.numpy(),
                                                                      a_batch=np4(a), s_batch=np4(masks))
        torch.testing.assert_close(xc.metrics.relevance_mass_accuracy(a, masks), torch.tensor(theirs).float(),
                                   rtol=1e-5, atol=1e-6)


def test_relevance_rank_accuracy(case):
    """RelevanceRankAccuracy on maps without ties (Quantus's argsort order decides ties; ours averages them)."""
    maps, masks, x, y = case
    theirs = quantus.RelevanceRankAccuracy(disable_warnings=True)(model=None, x_batch=np4(x), y_batch=y.numpy(),
                                                                  a_batch=np4(maps), s_batch=np4(masks))
    ours = xc.metrics.relevance_rank_accuracy(maps, masks)
    torch.testing.assert_close(ours, torch.tensor(theirs).float())
    assert len(set(ours.tolist())) > 1


def test_sparseness(case):
    """Sparseness (Gini): Quantus adds 1e-7 to every value after max-normalising, a difference below 1e-5 here."""
    maps, masks, x, y = case
    peaked = maps.clone()
    peaked[1] = 0.01
    peaked[1, 3, 3] = 5.0
    theirs = quantus.Sparseness(disable_warnings=True)(model=None, x_batch=np4(x), y_batch=y.numpy(),
                                                       a_batch=np4(peaked))
    ours = xc.metrics.sparseness(peaked)
    torch.testing.assert_close(ours, torch.tensor(theirs).float(), rtol=0, atol=1e-5)
    assert ours[1] > 0.8 > 0.5 > ours[0]


def test_entropy_complexity(case):
    """Complexity (Bhatt et al.): entropy of the shares of |a|; Quantus takes log(p + 1e-12)."""
    maps, masks, x, y = case
    theirs = quantus.Complexity(disable_warnings=True)(model=None, x_batch=np4(x), y_batch=y.numpy(), a_batch=np4(maps))
    torch.testing.assert_close(xc.metrics.entropy_complexity(maps), torch.tensor(theirs).float(), rtol=1e-5, atol=1e-5)


def test_effective_complexity(case):
    """EffectiveComplexity: Quantus max-normalises, then counts |a| > eps; ours with relative=True is the same."""
    maps, masks, x, y = case
    sparse = maps * (maps > 0.6)
    for eps in (1e-5, 0.5):
        theirs = quantus.EffectiveComplexity(eps=eps, disable_warnings=True)(
            model=None, x_batch=np4(x), y_batch=y.numpy(), a_batch=np4(sparse))
        assert xc.metrics.effective_complexity(sparse, eps=eps).tolist() == list(theirs)


class Replay:
    """A Quantus perturb_func that adds, call by call, the noise our generator draws."""

    def __init__(self, noises):
        self.noises = iter(noises)

    def __call__(self, arr, indices=None, indexed_axes=None, **kwargs):
        return arr + next(self.noises).reshape(arr.shape)


def gradient_explain(model, inputs, targets, **kwargs):
    x = torch.as_tensor(inputs, dtype=torch.float32)
    return xc.saliency.vanilla_gradient(model, x, torch.as_tensor(targets)).numpy()


def test_max_sensitivity():
    """MaxSensitivity with the same noise (replayed into Quantus): max ||a(x+d) - a(x)|| / ||a(x)||, Frobenius norms.

    Quantus's default noise is uniform in [-0.2, 0.2] from numpy's global generator; ours is
    ``torch.rand`` from a seeded generator, mapped to the same interval. Quantus's
    ``return_nan_when_prediction_changes`` is off by default, as ours (the targets stay fixed).
    """
    model = cnn()
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2])
    g = torch.Generator().manual_seed(5)
    noises = [((torch.rand(x.shape, generator=g) * 2 - 1) * 0.2).numpy() for _ in range(6)]
    metric = quantus.MaxSensitivity(nr_samples=6, perturb_func=Replay(noises), disable_warnings=True)
    theirs = metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=None, explain_func=gradient_explain,
                    device="cpu")
    ours = xc.metrics.max_sensitivity(model, xc.saliency.vanilla_gradient, x, y, radius=0.2, n_samples=6, seed=5)
    torch.testing.assert_close(ours, torch.tensor(theirs).float(), rtol=1e-4, atol=1e-6)
    assert (ours > 0).all()


def test_local_lipschitz():
    """LocalLipschitzEstimate with the same Gaussian noise, ``normalise=False`` (Quantus max-normalises by default)."""
    model = cnn()
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2])
    g = torch.Generator().manual_seed(5)
    noises = [(torch.randn(x.shape, generator=g) * 0.1).numpy() for _ in range(6)]
    metric = quantus.LocalLipschitzEstimate(nr_samples=6, perturb_func=Replay(noises), normalise=False,
                                            disable_warnings=True)
    theirs = metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=None, explain_func=gradient_explain,
                    device="cpu")
    ours = xc.metrics.local_lipschitz(model, xc.saliency.vanilla_gradient, x, y, sigma=0.1, n_samples=6, seed=5)
    torch.testing.assert_close(ours, torch.tensor(theirs).float(), rtol=1e-4, atol=1e-6)


def test_pixel_flipping_is_the_deletion_curve():
    """PixelFlipping (softmax scores, a constant 0 fill) == our deletion curve without its step 0.

    A documented difference: Quantus ranks input *values* (a map is broadcast over the channels)
    and flips ``features_in_step`` of them per step, while ours deletes whole pixels (every channel);
    it also requires H W % features_in_step == 0. The two coincide on one-channel images: 4 pixels
    a step is our deletion with baseline=0.0 and n_steps = 64 / 4.
    """
    model = cnn(channels=1)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 1, 8, 8, generator=g)
    maps = torch.rand(2, 8, 8, generator=g)
    y = torch.tensor([1, 2])
    metric = quantus.PixelFlipping(features_in_step=4, perturb_baseline=0.0, normalise=False,
                                   disable_warnings=True)
    theirs = metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=np4(maps), device="cpu",
                    softmax=True)
    ours = xc.metrics.deletion_auc(model, x, maps, y, n_steps=16, baseline=0.0)
    torch.testing.assert_close(ours.scores[:, 1:], torch.tensor(theirs).float(), rtol=1e-5, atol=1e-6)


def test_model_parameter_randomisation(monkeypatch):
    """Quantus's MPRT (cascade from the top, Spearman) == our sanity check when the layers get the same weights.

    A documented difference: Quantus re-initialises every layer under the same seed (seed + 1),
    ours layer i under seed + i; the test makes ours use Quantus's seeds, then the similarities agree.
    Quantus compares the maps as the explanation returns them; ours as pixel maps (|a| summed over
    channels), so the explanation here returns the pixel map.
    """
    model = cnn()
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 1, 2])

    def quantus_seeds(module, seed):
        torch.manual_seed(43)
        module.reset_parameters()

    monkeypatch.setattr(randomisation, "_reinitialise", quantus_seeds)

    def pixel_gradient(model, inputs, targets, **kwargs):
        x = torch.as_tensor(inputs, dtype=torch.float32)
        return xc.metrics.pixel_map(xc.saliency.vanilla_gradient(model, x, torch.as_tensor(targets)))[:, None].numpy()

    metric = quantus.MPRT(similarity_func=quantus.similarity_func.correlation_spearman, seed=42,
                          disable_warnings=True)
    theirs = metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=None, explain_func=pixel_gradient,
                    device="cpu")
    ours = xc.metrics.randomization_sanity_check(model, xc.saliency.vanilla_gradient, x, y)
    theirs.pop("original")                                   # Quantus also reports the intact model (1.0)
    assert ours.layers == list(theirs)
    torch.testing.assert_close(ours.spearman, torch.tensor([theirs[name] for name in ours.layers]).float(),
                               rtol=1e-5, atol=1e-5)


def test_noisy_linear_imputation_without_noise():
    """ROAD's imputation (Quantus's noisy_linear_imputation, adapted from Rong et al.'s code) with noise 0.

    Quantus draws its noise from numpy's global generator; ours from a seeded torch generator, so
    the two are compared without noise. Removed pixels include the border and a block whose
    neighbours are removed too (the unknowns of one linear system).
    """
    from quantus.functions.perturb_func import noisy_linear_imputation

    g = torch.Generator().manual_seed(4)
    x = torch.rand(2, 3, 10, 10, generator=g)
    removed = torch.rand(2, 10, 10, generator=g) < 0.5
    removed[0, 3:7, 3:7] = True
    ours = xc.metrics.noisy_linear_imputation(x, removed, noise=0.0)
    for i in range(2):
        indices = removed[i].flatten().nonzero().flatten().numpy()
        theirs = noisy_linear_imputation(x[i].double().numpy(), indices, noise=0.0)
        torch.testing.assert_close(ours[i].double(), torch.from_numpy(theirs), rtol=1e-5, atol=1e-6)
    assert torch.equal(ours[~removed[:, None].expand_as(x)], x[~removed[:, None].expand_as(x)])
