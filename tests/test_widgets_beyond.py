"""Chapter 08's explorers: a slider move redraws, settings are cached, the status line reports the numbers."""
import re

import pytest

import xaicourse as xc


def test_perturbation_explorer_redraws_caches_and_reports_efficiency(cnn):
    explorer = xc.widgets.perturbation_explorer(cnn, xc.data.image("coffee"), n_samples=32, n_segments=8)
    first = explorer.image.value
    gap = float(re.search(r"= ([+-][0-9]+\.[0-9]+)", explorer.status.value).group(1))
    assert abs(gap) < 1e-3  # KernelSHAP: the superpixel values add up to F(x) - F(black)
    explorer.method.value = "LIME"
    assert explorer.image.value != first and len(explorer.cache) == 2
    explorer.method.value = "KernelSHAP"
    assert "from the cache" in explorer.status.value and xc.hooks.hooks_left(cnn.model) == 0


def test_perturbation_explorer_raises_too_few_samples(cnn):
    explorer = xc.widgets.perturbation_explorer(cnn, xc.data.image("coffee"), n_samples=32, n_segments=32)
    m = int(re.search(r"(\d+) superpixels", explorer.status.value).group(1))
    if 2 * m > 32:
        assert f"raised to {2 * m}" in explorer.status.value


def test_lrp_explorer_switches_composites(cnn):
    explorer = xc.widgets.lrp_explorer(cnn, xc.data.image("coffee"))
    first = explorer.image.value
    assert "relevance sum" in explorer.status.value and "logit" in explorer.status.value
    explorer.composite.value = "epsilon_gamma_box"
    assert explorer.image.value != first and len(explorer.cache) == 2
    with pytest.raises(ValueError, match="epsilon_plus_flat"):
        xc.widgets.lrp_explorer(cnn, xc.data.image("coffee"), composite="alpha_beta_9")
