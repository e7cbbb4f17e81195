"""The figure checks (xaicourse.viz.checks) find each kind of unreadable figure, and pass readable ones."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import xaicourse as xc  # noqa: E402
from xaicourse.viz.checks import FigureWarning, figure_problems, no_colorbar  # noqa: E402

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def one_problem(fig, *words):
    problems = figure_problems(fig)
    assert len(problems) >= 1 and all(any(w in p for p in problems) for w in words), problems
    return problems


def test_the_course_panels_pass():
    photo = np.full((32, 32, 3), 0.5)
    fig = xc.viz.show_maps(photo, {"unsigned": RNG.random((32, 32)), "signed": RNG.normal(size=(32, 32))})
    assert figure_problems(fig) == []
    fig = xc.viz.show_maps(photo, {"cam": RNG.random((32, 32))}, kind="cam")
    assert figure_problems(fig) == []


def test_a_map_without_its_colour_bar_is_named_unless_marked():
    fig, ax = plt.subplots()
    ax.imshow(RNG.random((10, 10)), cmap="viridis")
    ax.set_title("attention")
    one_problem(fig, "'attention'", "no colour bar")
    no_colorbar(ax.images[0], "a label map")
    assert figure_problems(fig) == []
    with pytest.raises(ValueError, match="reason"):
        no_colorbar(ax.images[0], " ")


def test_a_colour_bar_of_another_colour_map_does_not_count():
    fig, axes = plt.subplots(1, 2)
    axes[0].imshow(RNG.random((10, 10)), cmap="hot", vmin=0, vmax=1)
    fig.colorbar(axes[1].imshow(RNG.random((10, 10)), cmap="viridis", vmin=0, vmax=1), ax=axes[1])
    problems = figure_problems(fig)
    assert len(problems) == 1 and "hot" in problems[0]


def test_a_shared_colour_bar_serves_every_panel_of_its_colour_map():
    fig, axes = plt.subplots(1, 3)
    for ax in axes:
        ax.imshow(RNG.random((10, 10)), cmap="hot", vmin=0, vmax=1)
        ax.axis("off")      # tick labels between the panels would cover the neighbour's image
    fig.colorbar(plt.cm.ScalarMappable(cmap="hot", norm=plt.Normalize(0, 1)), ax=axes.tolist())
    assert figure_problems(fig) == []


def test_a_map_scaled_by_its_extreme_pixel_is_blank():
    heat = RNG.random((32, 32)) * 0.5
    heat[0, 0] = 100
    fig, ax = plt.subplots()
    fig.colorbar(ax.imshow(heat, cmap="hot"), ax=ax)
    one_problem(fig, "blank")
    fig, ax = plt.subplots()
    fig.colorbar(ax.imshow(xc.viz.clip_map(heat), cmap="hot", vmin=0, vmax=1), ax=ax)   # the course's convention
    assert figure_problems(fig) == []


def test_an_overlay_weighted_by_raw_attention_is_invisible():
    fig, ax = plt.subplots()
    ax.imshow(np.ones((8, 8, 3)))
    shown = ax.imshow(RNG.random((8, 8)), alpha=np.linspace(0, 0.3, 64).reshape(8, 8), cmap="hot")
    fig.colorbar(shown, ax=ax)
    one_problem(fig, "overlay", "0.30")
    shown.set_alpha(np.zeros((8, 8)))          # an empty map shows nothing on purpose
    assert figure_problems(fig) == []


def test_overlay_warns_when_its_strongest_pixel_is_nearly_transparent():
    photo = np.ones((8, 8, 3))
    with pytest.warns(FigureWarning, match="0.10 opaque"):
        xc.viz.overlay(photo, np.full((8, 8), 0.2))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", FigureWarning)
        xc.viz.overlay(photo, np.linspace(0, 1, 64).reshape(8, 8))   # a map in [0, 1]
        xc.viz.overlay(photo, np.zeros((8, 8)))                       # an empty map


def test_overlapping_titles_and_crowded_ticks_are_named():
    fig, axes = plt.subplots(1, 2, figsize=(3, 2))
    for ax in axes:
        ax.plot([0, 1], [0, 1])
        ax.set_title("a very long title that runs into its neighbour")
    one_problem(fig, "overlaps")
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot(range(40))
    ax.set_xticks(range(40), [f"word{i}" for i in range(40)])
    one_problem(fig, "overlaps text 'word")


def test_rotated_tick_labels_that_do_not_touch_pass():
    tokens = "[CLS] the quick brown fox jumps over the lazy dog [SEP]".split()
    import torch

    fig = xc.viz.head_grid(torch.rand(12, 11, 11).softmax(-1), tokens, title="grid")
    assert figure_problems(fig) == []
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot(range(40))
    ax.set_xticks(range(40), [f"word{i}" for i in range(40)], rotation=60, ha="right")
    one_problem(fig, "overlaps")


def test_hidden_axes_and_ticks_outside_the_view_are_not_texts():
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.imshow(np.ones((8, 8, 3)))        # ticks at -1 and 8 lie outside the image's view
    assert figure_problems(fig) == []


def test_a_legend_over_the_data_is_named():
    fig, ax = plt.subplots()
    ax.plot(range(10), range(10), marker="o", label="line")
    ax.legend(loc="upper left")
    assert figure_problems(fig) == []
    fig, ax = plt.subplots()
    ax.plot(range(10), [5] * 10, marker="o", label="flat line through the middle")
    ax.legend(loc="center")
    one_problem(fig, "legend", "covers")


def test_the_wrong_kind_of_argument_is_a_type_error():
    with pytest.raises(TypeError, match="Figure"):
        figure_problems("not a figure")
