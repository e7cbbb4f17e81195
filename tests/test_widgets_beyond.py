"""Chapters 08 and 10: explorers redraw on a slider move, cache settings, and report the numbers."""
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


def test_circuit_explorer_moves_with_its_sliders():
    import torch
    from xaicourse import patching

    gpt = xc.models.tiny_gpt()
    clean = gpt.sequences(8, seed=1000)
    corrupt = clean.clone()
    corrupt[:, 1:gpt.half + 1] = gpt.sequences(8, seed=2000)[:, 1:gpt.half + 1]
    metric = patching.next_token_metric(clean, range(gpt.half + 1, 2 * gpt.half))
    effects = patching.activation_patching(gpt.model, clean, corrupt, metric, gpt.heads, per_position=True)
    names = [f"blocks.{l}.attn.hook_pattern" for l in range(gpt.n_layers)]
    patterns = torch.stack(list(patching.cache(gpt.model, clean[:1], names).values()), 1)[0]
    T = clean.shape[1]
    explorer = xc.widgets.circuit_explorer(patterns, effects.view(2, 4, T), [str(i) for i in range(T)])
    first = explorer.image.value
    assert "L1H0" in explorer.ax_map.get_title() and "effect" in explorer.ax_bar.get_title()
    explorer.head.value = 2
    assert explorer.image.value != first and "L1H2" in explorer.ax_bar.get_title()
    explorer.layer.value, explorer.head.value, explorer.position.value = 1, 0, 15
    key = int(re.search(r"attends most to (\d+)", explorer.ax_map.get_title()).group(1))
    assert key == 15 - gpt.half + 1           # the induction head looks at the source
    both = xc.widgets.circuit_explorer(patterns, {"denoising": effects.view(2, 4, T), "noising": -effects.view(2, 4, T)},
                                       [str(i) for i in range(T)])
    before = both.image.value
    both.table.value = "noising"
    assert both.image.value != before and both.ax_bar.get_title().startswith("noising")
    with pytest.raises(ValueError, match="effects must be"):
        xc.widgets.circuit_explorer(patterns, effects, [str(i) for i in range(T)])


def test_tcav_explorer_moves_with_its_controls():
    import torch
    from xaicourse.concepts import TCAVResult

    def result(mean, p):
        return TCAVResult(torch.full((4,), mean), torch.tensor([0.4, 0.5, 0.6]), torch.full((4,), 0.9), p, 0.01)
    grid = {(layer, concept, t): result(0.9 if (concept == "marker" and layer == "late") else 0.5, 1e-4 if concept == "marker" else 0.5)
            for layer in ("early", "late") for concept in ("marker", "random") for t in range(3)}
    explorer = xc.widgets.tcav_explorer(grid, class_names=["circle", "square", "triangle"])
    first = explorer.image.value
    assert explorer.layer.value == "late" and "'marker' at late" in explorer.ax.get_title()
    assert explorer.notes[0].get_text() == "0.90 vs 0.50, p 0.0001*"
    explorer.concept.value = "random"
    assert explorer.image.value != first and explorer.notes[2].get_text() == "0.50 vs 0.50, p 0.5"
    explorer.layer.value = "early"
    assert "'random' at early" in explorer.ax.get_title()
    assert len(explorer.dots.get_offsets()) == 12 and len(explorer.null_dots.get_offsets()) == 9   # 3 classes x 4 and x 3
    with pytest.raises(ValueError, match="missing 1 cells"):
        xc.widgets.tcav_explorer({k: v for k, v in list(grid.items())[:-1]})
    with pytest.raises(ValueError, match="class_names must name the grid's 3 targets"):
        xc.widgets.tcav_explorer(grid, class_names=["a"])


def test_influence_explorer_moves_with_its_controls():
    import torch

    g = torch.Generator().manual_seed(0)
    train, test = torch.rand(12, 3, 8, 8, generator=g), torch.rand(4, 3, 8, 8, generator=g)
    truth = torch.randn(4, 12, generator=g, dtype=torch.float64)
    scores = {"exact": truth.clone(), "reversed": -truth}
    explorer = xc.widgets.influence_explorer(test, train, scores, truth, test_labels=[0, 1, 2, 0],
                                             train_labels=[k % 3 for k in range(12)], class_names=["a", "b", "c"], k=3)
    first = explorer.image.value
    assert "Spearman +1.00" in explorer.status.value and "3 of its top 3" in explorer.status.value
    top = int(truth[0].argmax())
    assert explorer.panels[0][1].get_text() == f"#{top} {'abc'[top % 3]}\n{truth[0, top].item():+.3g}"
    explorer.method.value = "reversed"
    assert explorer.image.value != first and "Spearman -1.00" in explorer.status.value and "0 of its top 3" in explorer.status.value
    explorer.test.value = 3
    assert explorer.test_title.get_text() == "test #3: a"
    with pytest.raises(ValueError, match=r"\(n_test, n_train\) = \(4, 12\)"):
        xc.widgets.influence_explorer(test, train, {"x": torch.zeros(4, 11)}, truth, test_labels=[0] * 4, train_labels=[0] * 12)
    with pytest.raises(ValueError, match="non-empty dict"):
        xc.widgets.influence_explorer(test, train, {}, truth, test_labels=[0] * 4, train_labels=[0] * 12)
