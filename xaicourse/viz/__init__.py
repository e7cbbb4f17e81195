"""Views: every matplotlib figure and HTML view of the course (chapters 00-09).

Compute code never imports this package; views take tensors that methods returned.

* :mod:`xaicourse.viz.maps`: photos and pixel maps: the one display normalisation
  (:func:`clip_map`, percentile clipping), overlays, map panels with their own colour bars,
  side-by-side maps, prediction bars.
* :mod:`xaicourse.viz.attention`: attention heatmaps, head grids, bertviz rendered offline.
* :mod:`xaicourse.viz.text`: token attributions as coloured HTML and as bar charts.
* :mod:`xaicourse.viz.checks`: figures checked by the machine (overlapping text, invisible
  overlays, maps without their colour bar), in every chapter run of the tests.
"""
from .attention import BERTVIZ_ASSETS, bertviz_offline, head_grid, heatmap, offline_html
from .checks import FigureWarning, figure_problems, no_colorbar, watch_figures
from .maps import clip_map, map_panel, overlay, show_maps, to_numpy, topk_bar
from .text import token_bars, token_html

__all__ = ["BERTVIZ_ASSETS", "FigureWarning", "bertviz_offline", "clip_map", "figure_problems", "head_grid", "heatmap",
           "map_panel", "no_colorbar", "offline_html", "overlay", "show_maps", "to_numpy", "token_bars", "token_html",
           "topk_bar", "watch_figures"]
