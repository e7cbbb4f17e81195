"""LIME (xaicourse.lime): its three steps by hand, Captum on the same samples, additive models, seeding,
superpixels, hygiene, bad input."""
import warnings

import numpy as np
import pytest
import torch
from captum.attr import Lime
from captum._utils.models.linear_model import SkLearnLinearRegression, SkLearnRidge
from torch import nn

from xaicourse import lime as lm
from xaicourse.testing import tiny_cnn, unchanged
from xaicourse.shapley import feature_values


def cnn(seed=0):
    """Conv -> ReLU -> strided conv -> tanh -> dense on 8 x 8 images, float64."""
    return tiny_cnn((4, 4), 3, act=(nn.ReLU, nn.Tanh), head_pool=None, side=8, dtype=torch.float64, seed=seed)


def strips(n=6, size=8):
    """n features: bands of consecutive pixels (row-major) of an 8 x 8 image, as (H, W) ids."""
    return (torch.arange(size * size).view(size, size) * n // (size * size)).long()


@pytest.fixture
def x():
    return torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


def test_samples_weights_by_hand():
    masks = lm.lime_samples(5, 200, seed=2)
    assert masks[0].all() and torch.equal(masks, lm.lime_samples(5, 200, seed=2))
    assert 0.4 < masks[1:].double().mean().item() < 0.6
    z = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    d = torch.tensor([0.0, 1 - 1 / 2, 1.0], dtype=torch.float64)  # cosine distance to all-ones: 1 - 1/(1*2)
    assert torch.allclose(lm.lime_weights(z), torch.exp(-d ** 2 / 0.25 ** 2).sqrt())


def test_weighted_ridge_matches_sklearn():
    sklearn = pytest.importorskip("sklearn.linear_model")
    g = torch.Generator().manual_seed(0)
    z = (torch.rand(30, 4, generator=g) < 0.5).double()
    y = torch.randn(30, generator=g, dtype=torch.float64)
    w = torch.rand(30, generator=g, dtype=torch.float64)
    coef, intercept = lm.weighted_ridge(z, y, w, alpha=0.7)
    ref = sklearn.Ridge(alpha=0.7).fit(z.numpy(), y.numpy(), sample_weight=w.numpy())
    assert np.allclose(coef.numpy(), ref.coef_) and intercept == pytest.approx(ref.intercept_)


def captum_on_our_samples(model, x, target, mask_hw, n_samples, seed, interpretable_model):
    masks = lm.lime_samples(int(mask_hw.max()) + 1, n_samples, seed=seed)

    def perturb(_original, **_kwargs):
        for row in masks:
            yield row.long().unsqueeze(0)

    def similarity(_original, _perturbed, interpretable, **_kwargs):
        return lm.lime_weights(interpretable.bool()).item()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = Lime(model, interpretable_model=interpretable_model, similarity_func=similarity, perturb_func=perturb).attribute(
            x, target=target, feature_mask=mask_hw[None, None].expand(1, *x.shape[1:]), n_samples=n_samples,
            perturbations_per_eval=16)
    idx = mask_hw.flatten()
    return torch.stack([out[0, 0].flatten()[idx == j][0] for j in range(int(idx.max()) + 1)]).double()


def test_matches_captum_lime_on_the_same_samples(x):
    model = cnn()
    ours = feature_values(lm.lime(model, x[:1], 1, feature_mask=strips(), n_samples=60, seed=3), strips())[0]
    theirs = captum_on_our_samples(model, x[:1], 1, strips(), 60, 3, SkLearnRidge(alpha=1.0))
    assert torch.allclose(ours, theirs, atol=1e-6)  # Captum fits in float32


def test_additive_model_exact_with_alpha_zero(x):
    class Additive(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4)))

        def forward(self, x):
            return torch.stack([(self.w * x).flatten(1).sum(1), -x.flatten(1).sum(1)], 1)

    model = Additive().eval()
    attr = lm.lime(model, x, 0, feature_mask=strips(), n_samples=60, alpha=0.0)
    idx = strips().flatten()
    contrib = (model.w * x).sum(1).flatten(1)  # (B, 64)
    expected = torch.stack([torch.stack([contrib[i][idx == j].sum() for j in range(6)]) for i in range(2)])
    assert torch.allclose(feature_values(attr, strips()), expected.detach(), atol=1e-9)
    theirs = captum_on_our_samples(model, x[:1], 0, strips(), 60, 0, SkLearnLinearRegression())
    assert torch.allclose(theirs, expected[0].detach(), atol=1e-4)


def test_sparse_explanation_keeps_n_features(x):
    attr = lm.lime(cnn(), x, 0, feature_mask=strips(), n_samples=80, n_features=2)
    values = feature_values(attr, strips())
    assert ((values != 0).sum(1) == 2).all()
    full = feature_values(lm.lime(cnn(), x, 0, feature_mask=strips(), n_samples=80), strips())
    # the kept features are the two largest |coefficients| of the full fit
    assert torch.equal((values != 0), torch.zeros_like(full, dtype=torch.bool).scatter_(1, full.abs().topk(2).indices, True))


def test_seeded_batch_invariant_and_seed_dependent(x):
    model = cnn()
    a = lm.lime(model, x, 0, feature_mask=strips(), n_samples=40, seed=1)
    assert torch.allclose(a, lm.lime(model, x, 0, feature_mask=strips(), n_samples=40, seed=1, batch_size=3), atol=1e-12)
    assert not torch.allclose(a, lm.lime(model, x, 0, feature_mask=strips(), n_samples=40, seed=2))


def test_superpixels():
    skimage = pytest.importorskip("skimage")
    img = skimage.data.chelsea()[::4, ::4]  # (75, 113, 3)
    seg = lm.superpixels(img, n_segments=30)
    assert seg.shape == img.shape[:2] and seg.dtype == torch.long and seg.min() == 0
    assert 15 <= seg.unique().numel() <= 45
    x = torch.tensor(img).permute(2, 0, 1).double()[None] / 127.5 - 1
    batch = lm.superpixels(torch.cat([x, x]), n_segments=30)
    assert batch.shape == (2, 1, *img.shape[:2]) and torch.equal(batch[0, 0], seg)  # rescaling makes them agree
    with pytest.raises(ValueError, match="n_segments"):
        lm.superpixels(img, n_segments=1)
    with pytest.raises(ValueError, match="shape"):
        lm.superpixels(torch.zeros(8, 8))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"n_samples": 6}, ValueError, "too small for 6 features"),
    ({"kernel_width": 0}, ValueError, "kernel_width"),
    ({"alpha": -1}, ValueError, "alpha"),
    ({"feature_mask": torch.zeros(8, 8, dtype=torch.long)}, ValueError, "single feature"),
    ({"feature_mask": torch.zeros(3, 3, dtype=torch.long)}, ValueError, "does not fit"),
])
def test_bad_input(x, kwargs, error, match):
    with pytest.raises(error, match=match):
        lm.lime(cnn(), x, 0, **{"feature_mask": strips(), **kwargs})


def test_model_left_as_found(x):
    model = cnn()
    model.train()
    with unchanged(model), pytest.warns(UserWarning, match="training mode"):
        lm.lime(model, x, 0, feature_mask=strips(), n_samples=20)
    assert model.training and all(p.grad is None for p in model.parameters())
