"""Chapter 11's explorer: a TCAV grid, one layer and one concept at a time, with the random spread.

The grid (:func:`xaicourse.concepts.tcav_grid`) is computed before the explorer is built; moving the
layer slider or choosing another concept only indexes it and redraws the changed artists.
"""
from __future__ import annotations

import ipywidgets
import numpy as np
from matplotlib.figure import Figure

from .frame import BlitFigure

__all__ = ["TCAVExplorer", "tcav_explorer"]


def _grid_axes(grid: dict) -> tuple[list, list, list]:
    if not isinstance(grid, dict):
        raise TypeError(f"grid must be the dict concepts.tcav_grid returns, got {type(grid).__name__}")
    if not grid:
        raise ValueError("grid must be the non-empty dict concepts.tcav_grid returns: {(layer, concept, target): TCAVResult}")
    keys = list(grid)
    if not all(isinstance(k, tuple) and len(k) == 3 for k in keys):
        raise ValueError(f"grid's keys must be (layer, concept, target) triples as concepts.tcav_grid makes them, got {keys[0]!r}")
    layers, concepts, targets = (list(dict.fromkeys(k[i] for k in keys)) for i in range(3))
    missing = [(l, c, t) for l in layers for c in concepts for t in targets if (l, c, t) not in grid]
    if missing:
        raise ValueError(f"grid is missing {len(missing)} cells, e.g. {missing[0]}: pass a full tcav_grid result")
    return layers, concepts, targets


class TCAVExplorer(ipywidgets.VBox):
    """Layer slider and concept dropdown over a TCAV grid. Chapter 11.

    For each target class: the concept's TCAV score against each random set (coloured dots), the
    scores of random set 0 against the others (grey dots: what a concept of no meaning scores), their
    means (bars), and the p-value of the t-test between them; a star marks the cells significant at the
    grid's Bonferroni-corrected level. ``class_names``: labels of the targets (default: the targets).
    """

    def __init__(self, grid: dict, class_names=None):
        self.layers, self.concepts, self.targets = _grid_axes(grid)
        self.grid = grid
        names = class_names if class_names is not None else [str(t) for t in self.targets]
        if len(names) != len(self.targets):
            raise ValueError(f"class_names must name the grid's {len(self.targets)} targets, got {len(names)} names")
        self.names = [str(n) for n in names]
        self.layer = ipywidgets.SelectionSlider(description="layer", options=self.layers, value=self.layers[-1])
        self.concept = ipywidgets.Dropdown(description="concept", options=self.concepts)
        self.image = ipywidgets.Image(format="png")
        fig = Figure(figsize=(8, 4.4), dpi=72)
        self.ax = fig.subplots()
        n = len(self.targets)
        self.ax.set_xlim(-0.6, n - 0.4)
        self.ax.set_ylim(-0.05, 1.12)
        self.ax.axhline(0.5, color="black", linewidth=0.6, linestyle=":")
        self.ax.set_xticks(range(n), self.names)
        self.ax.set_xlabel("target class (inputs of that class)")
        self.ax.set_ylabel("TCAV score: share of inputs\nwhose logit rises along the CAV")
        self.dots = self.ax.scatter([], [], s=14, color="tab:red", label="concept vs each random set")
        self.null_dots = self.ax.scatter([], [], s=14, color="0.6", label="random vs random (null)")
        self.means = [self.ax.plot([], [], color=c, linewidth=2.5)[0] for _ in range(n) for c in ("tab:red", "0.4")]
        self.notes = [self.ax.text(i, 1.04, "", ha="center", fontsize=9) for i in range(n)]
        self.ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8, frameon=False)
        self.ax.set_title(" ")
        fig.tight_layout()
        self.figure = BlitFigure(fig, [self.dots, self.null_dots, *self.means, *self.notes, self.ax.title])
        for control in (self.layer, self.concept):
            control.observe(self.update, names="value")
        super().__init__([ipywidgets.HBox([self.layer, self.concept]), self.image])
        self.update()

    def update(self, *_):
        layer, concept = self.layer.value, self.concept.value
        dots, null_dots = [], []
        for i, target in enumerate(self.targets):
            result = self.grid[(layer, concept, target)]
            scores, null = result.scores.numpy(), result.null.numpy()
            dots += [(i - 0.12 + 0.08 * (k / max(len(scores) - 1, 1) - 0.5), s) for k, s in enumerate(scores)]
            null_dots += [(i + 0.12 + 0.08 * (k / max(len(null) - 1, 1) - 0.5), s) for k, s in enumerate(null)]
            self.means[2 * i].set_data([i - 0.2, i - 0.04], [scores.mean()] * 2)
            self.means[2 * i + 1].set_data([i + 0.04, i + 0.2], [null.mean()] * 2)
            star = "*" if result.significant else ""
            self.notes[i].set_text(f"{scores.mean():.2f} vs {null.mean():.2f}, p {result.p_value:.1g}{star}")
        self.dots.set_offsets(np.array(dots))
        self.null_dots.set_offsets(np.array(null_dots))
        alpha = self.grid[(layer, concept, self.targets[0])].alpha
        self.ax.set_title(f"{concept!r} at {layer}: * = significant at alpha {alpha:.2g} (Bonferroni over the grid)",
                          fontsize=10)
        self.image.value = self.figure.png()


def tcav_explorer(grid: dict, class_names=None) -> TCAVExplorer:
    """A :class:`TCAVExplorer` over a :func:`xaicourse.concepts.tcav_grid` result. Chapter 11."""
    return TCAVExplorer(grid, class_names)
