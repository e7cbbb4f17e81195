"""Chapter 11: the toy model of superposition (the phase change) and sparse autoencoders (planted features recovered).

Values, not shapes: hand-computed metrics, the feature counts at low and high sparsity, the share of
planted features an SAE finds, the decoder constraint, and the marker latents of the shapes CNNs.
"""
import math

import pytest
import torch

from xaicourse import sae, superposition as sp


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------
# The toy model of superposition
# --------------------------------------------------------------------------------------------
def test_metrics_on_a_hand_made_weight():
    r = 1 / math.sqrt(2)
    W = torch.tensor([[1.0, 0.0, r, 0.0], [0.0, 1.0, r, 0.0]])  # two axes, one diagonal, one dropped feature
    assert torch.allclose(sp.feature_norms(W), torch.tensor([1.0, 1.0, 1.0, 0.0]))
    # feature 0 shares (e0 . w2)^2 = 1/2 with the diagonal; the diagonal shares 1/2 with each axis
    assert torch.allclose(sp.superposition(W), torch.tensor([0.5, 0.5, 1.0, 0.0]), atol=1e-6)
    assert int(sp.features_represented(W)) == 3
    assert float(sp.dimensions_per_feature(W)) == pytest.approx(2 / 3)


def test_sparse_features_are_on_with_probability_one_minus_s_and_seeded():
    x = sp.sparse_features(20000, 10, 0.9, seed=3)
    assert float((x > 0).float().mean()) == pytest.approx(0.1, abs=0.005)
    assert float(x.max()) <= 1.0 and float(x.min()) == 0.0
    assert float(x[x > 0].mean()) == pytest.approx(0.5, abs=0.01)  # uniform in [0, 1] when on
    assert torch.equal(x, sp.sparse_features(20000, 10, 0.9, seed=3))
    per_instance = sp.sparse_features(20000, 10, [0.0, 0.99], seed=3)
    assert per_instance.shape == (20000, 2, 10)
    assert float((per_instance[:, 0] > 0).float().mean()) > 0.99
    assert float((per_instance[:, 1] > 0).float().mean()) == pytest.approx(0.01, abs=0.003)


@pytest.mark.parametrize("n, m", [(5, 2), (20, 5)])
def test_the_phase_change_dense_features_get_m_dimensions_sparse_ones_share_them(n, m):
    # measured (seed 0): n=5/m=2 -> 2 features at S=0, 5 at S=0.95; n=20/m=5 -> 5 at S=0, 19 at S=0.99
    result = sp.sparsity_sweep((0.0, 0.95 if n == 5 else 0.99), n_features=n, n_hidden=m)
    dense, sparse = result["represented"].tolist()
    assert dense == m
    assert sparse > m + (2 if n == 5 else 10)
    assert float(result["dimensions_per_feature"][0]) == pytest.approx(1.0, abs=0.05)  # one dimension each
    assert float(result["dimensions_per_feature"][1]) < 0.5
    # dense: the m kept features are orthogonal (no superposition) and the most important ones
    kept = result["norms"][0] > 0.5
    assert torch.equal(kept, torch.arange(n) < m)
    assert float(result["superposition"][0][kept].max()) < 0.05
    assert float(result["superposition"][1][result["norms"][1] > 0.5].mean()) > 0.3


def test_toy_training_is_deterministic_with_a_seed():
    a = sp.train_toy_model(5, 2, 0.9, steps=200, seed=4)
    b = sp.train_toy_model(5, 2, 0.9, steps=200, seed=4)
    c = sp.train_toy_model(5, 2, 0.9, steps=200, seed=5)
    assert torch.equal(a.model.W, b.model.W) and a.loss == b.loss
    assert not torch.equal(a.model.W, c.model.W)


@pytest.mark.parametrize("bad, words", [(1.0, "in \\[0, 1\\)"), (-0.1, "probability that a feature is zero"), ([], "in")])
def test_a_sparsity_out_of_range_is_refused(bad, words):
    with pytest.raises(ValueError, match=words):
        sp.sparse_features(10, 5, bad)


def test_toy_model_refuses_features_of_another_width():
    with pytest.raises(ValueError, match="sparse_features"):
        sp.ToyModel(5, 2)(torch.zeros(3, 6))


# --------------------------------------------------------------------------------------------
# The sparse autoencoder
# --------------------------------------------------------------------------------------------
def test_sae_loss_by_hand():
    x = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    x_hat = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    f = torch.tensor([[1.0, 0.0, 3.0], [0.0, 0.0, 0.0]])
    # per example: ||x - x_hat||^2 = 1 and 2; ||f||_1 = 4 and 0; with l1 = 0.5: 3 and 2 -> mean 2.5
    assert float(sae.sae_loss(x, x_hat, f, 0.5)) == pytest.approx(2.5)
    assert float(sae.sae_loss(x, x_hat, f, 0.0)) == pytest.approx(1.5)


def test_decoder_columns_stay_unit_norm_and_the_gradient_along_them_is_removed():
    acts = sp.sparse_features(2000, 8, 0.8, seed=1) @ torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    model = sae.train_sae(acts, 16, 0.05, 300).model
    assert torch.allclose(model.W_dec.norm(dim=0), torch.ones(16), atol=1e-5)
    x_hat, f = model(acts[:64])
    sae.sae_loss(acts[:64], x_hat, f, 0.05).backward()
    model.project_gradient()
    assert float((model.W_dec.grad * model.W_dec.detach()).sum(0).abs().max()) < 1e-6


def test_sae_training_is_deterministic_with_a_seed():
    acts = torch.randn(500, 4, generator=torch.Generator().manual_seed(2))
    a, b = (sae.train_sae(acts, 8, 0.1, 100, seed=3) for _ in range(2))
    assert torch.equal(a.model.W_dec, b.model.W_dec) and a.loss == b.loss
    assert not torch.equal(a.model.W_dec, sae.train_sae(acts, 8, 0.1, 100, seed=4).model.W_dec)


def test_dead_and_dense_latents_l0_and_variance_explained_on_a_constructed_sae():
    x = torch.zeros(100, 2)
    x[:5, 0] = 1.0                       # latent 2 reads x[:, 0]: active on 5 % of the inputs
    x[:, 1] = torch.linspace(-1, 1, 100)
    model = sae.SparseAutoencoder(2, 3)
    with torch.no_grad():
        model.W_enc.copy_(torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0]]))
        model.b_dec.copy_(x.mean(0))
        model.b_enc.copy_(torch.tensor([-100.0, 100.0, 0.0]))  # latent 2: x0 - mean(x0) > 0 on the 5 rows
        model.W_dec.zero_()              # x_hat = b_dec = the mean: nothing explained
    stats = sae.sae_stats(model, x)
    assert (stats.dead, stats.dense) == (1, 1)   # latent 0 never fires, latent 1 always (> 10 %)
    assert stats.frequency.tolist() == pytest.approx([0.0, 1.0, 0.05])
    assert stats.l0 == pytest.approx(1.05)
    assert stats.variance_explained == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        model.W_dec.copy_(torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]))
    explained = sae.sae_stats(model, x)          # now the 5 active rows of x[:, 0] are rebuilt, x[:, 1] is not
    total = ((x - x.mean(0)) ** 2).sum()
    x_hat, _ = model(x)
    assert explained.variance_explained == pytest.approx(float(1 - ((x - x_hat) ** 2).sum() / total), abs=1e-6)
    assert 0 < explained.variance_explained < 1


def test_latent_auroc_and_feature_matching_by_hand():
    f = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [0.0, 0.0]])
    auroc = sae.latent_auroc(f, torch.tensor([False, True, True, False]))
    assert auroc.tolist() == pytest.approx([1.0, 0.5])          # a constant latent is chance (ties count 1/2)
    directions = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    decoder = torch.tensor([[0.0, 0.6, 0.0], [1.0, 0.8, -1.0]])  # feature 1 found exactly, feature 0 at cosine 0.6
    assert sae.match_features(directions, decoder).tolist() == pytest.approx([0.6, 1.0])
    with pytest.raises(ValueError, match="both True and False"):
        sae.latent_auroc(f, torch.ones(4, dtype=torch.bool))


def test_train_sae_refuses_activations_that_are_not_a_matrix():
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        sae.train_sae(torch.zeros(10), 4)
    with pytest.raises(ValueError, match="NaN"):
        sae.train_sae(torch.full((10, 2), float("nan")), 4)


def test_an_sae_on_the_toy_model_recovers_its_planted_features():
    # measured: 40/40 features at cosine > 0.9 for seeds 0-4 (min cosine 0.983), 6-9 s each
    result = sae.recover_toy_features(seed=0)
    print(f"recovered {result.recovered}/{len(result.cosines)} planted features at cosine > {result.threshold}")
    assert result.represented == 40
    assert result.recovered >= 36
    assert result.stats.variance_explained > 0.8
    assert result.stats.dense <= 2
    assert result.stats.l0 < 4 * result.true_l0


def test_the_shortcut_models_sae_has_marker_latents_and_the_clean_models_has_none():
    # measured (seeds 0-2): shortcut best latent AUROC >= 0.997 for the three class corners, clean <= 0.59
    shortcut = sae.shapes_marker_sae("shortcut")
    clean = sae.shapes_marker_sae("clean")
    assert float(shortcut.marker_auroc[:3].min()) > 0.95
    assert float(clean.marker_auroc.max()) < 0.7
    assert float(clean.shape_auroc.min()) > 0.85  # the clean model's latents see shapes instead
