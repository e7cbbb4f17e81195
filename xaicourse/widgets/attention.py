"""Chapter 04's explorers over cached attentions: BERT heads and ViT CLS maps. A slider move only
indexes the cached tensor and redraws the changed artists: no forward pass."""
from __future__ import annotations

import ipywidgets
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..attention import layer_map
from ..maps import minmax, upsample
from ..viz import heatmap, overlay, to_numpy
from .frame import BlitFigure, patch_grid_figure

__all__ = ["AttentionExplorer", "ViTAttentionExplorer", "attention_explorer", "vit_attention_explorer"]


class AttentionExplorer(ipywidgets.VBox):
    """Layer / head sliders and a token selector over cached attentions (layers, heads, T, T).

    Left: the selected head's (T, T) heatmap with token labels, on one colour scale for all heads;
    right: the selected token's attention row as bars (for "all tokens": the attention each token
    receives, averaged over the queries). A slider move only indexes the cached tensor and redraws
    the changed artists: no forward pass. Taught in chapter 04.
    """

    def __init__(self, attentions, tokens: list[str]):
        if not isinstance(attentions, torch.Tensor):
            raise TypeError(f"attentions must be a tensor (layers, heads, T, T), got {type(attentions).__name__}")
        if attentions.dim() != 4 or attentions.shape[-1] != len(tokens):
            raise ValueError(f"attentions must be (layers, heads, T, T) with T = {len(tokens)} tokens, got shape "
                             f"{tuple(attentions.shape)}")
        self.attentions, self.tokens = attentions.detach().cpu().float(), list(tokens)
        layers, heads, n, _ = self.attentions.shape
        self.layer = ipywidgets.IntSlider(description="layer", min=0, max=layers - 1)
        self.head = ipywidgets.IntSlider(description="head", min=0, max=heads - 1)
        self.token = ipywidgets.Dropdown(description="token", value=-1, options=[("all tokens", -1)] + [
            (f"{i}: {t}", i) for i, t in enumerate(self.tokens)])
        self.image = ipywidgets.Image(format="png")
        fig = Figure(figsize=(4.0 + 0.6 * n, 0.35 * n + 2.6), dpi=72)
        self.ax_map, self.ax_row = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.2, 1]})
        heatmap(self.attentions[0, 0], self.tokens, ax=self.ax_map)
        self.map = self.ax_map.images[0]
        self.map.set_clim(0, float(self.attentions.max()))
        self.row = self.ax_map.add_patch(Rectangle((-0.5, -0.5), n, 1, fill=False, edgecolor="red", linewidth=2))
        self.bars = self.ax_row.bar(range(n), np.zeros(n), color="tab:blue")
        self.ax_row.set_xticks(range(n), self.tokens, rotation=60, ha="right", fontsize=8)
        self.ax_row.set_ylim(0, 1)
        self.ax_row.set_ylabel("attention weight")
        self.ax_map.set_title(" ")
        self.ax_row.set_title(" ")
        fig.tight_layout()
        self.figure = BlitFigure(fig, [self.map, self.row, *self.bars, self.ax_map.title, self.ax_row.title])
        for control in (self.layer, self.head, self.token):
            control.observe(self.update, names="value")
        super().__init__([ipywidgets.HBox([self.layer, self.head, self.token]), self.image])
        self.update()

    def update(self, *_):
        matrix = self.attentions[self.layer.value, self.head.value]
        query = self.token.value
        values = matrix[query] if query >= 0 else matrix.mean(dim=0)
        self.map.set_data(matrix.numpy())
        self.ax_map.set_title(f"layer {self.layer.value}, head {self.head.value}")
        for bar, value in zip(self.bars, values.tolist()):
            bar.set_height(value)
        self.ax_row.set_title(f"what {self.tokens[query]!r} attends to" if query >= 0
                              else "attention received (mean over queries)")
        self.row.set_visible(query >= 0)
        self.row.set_y(query - 0.5)
        self.image.value = self.figure.png()


def attention_explorer(attentions, tokens: list[str]) -> AttentionExplorer:
    """An :class:`AttentionExplorer` for (layers, heads, T, T) attentions, e.g. from
    ``attention.get_attentions(bert, text)``. Taught in chapter 04."""
    return AttentionExplorer(attentions, tokens)


class ViTAttentionExplorer(ipywidgets.VBox):
    """Layer / head sliders over a ViT's cached attentions (layers, heads, T, T) for one image.

    The "map" selector shows one head, the mean of the layer's heads, or the rollout up to the
    layer; panels: the CLS token's map on the patch grid (scaled to its maximum, which the title
    gives) and the same map over the image. Taught in chapter 04.
    """

    MODES = (("one head", "head"), ("mean of heads", "mean"), ("rollout up to layer", "rollout"))

    def __init__(self, image, attentions, grid: int):
        self.picture = to_numpy(image).astype(np.float32)
        self.attentions, self.grid = attentions.detach().cpu().float(), grid
        layers, heads = self.attentions.shape[:2]
        self.layer = ipywidgets.IntSlider(description="layer", min=0, max=layers - 1, value=layers - 1)
        self.head = ipywidgets.IntSlider(description="head", min=0, max=heads - 1)
        self.mode = ipywidgets.Dropdown(description="map", options=self.MODES, value="head")
        self.image = ipywidgets.Image(format="png")
        fig, self.ax_grid, self.map, self.blend = patch_grid_figure(self.picture, grid, "CLS attention / its max")
        self.figure = BlitFigure(fig, [self.map, self.blend, self.ax_grid.title])
        for control in (self.layer, self.head, self.mode):
            control.observe(self.update, names="value")
        super().__init__([ipywidgets.HBox([self.layer, self.head, self.mode]), self.image])
        self.update()

    def update(self, *_):
        head = self.head.value if self.mode.value == "head" else self.mode.value
        heat = layer_map(self.attentions, self.grid, self.layer.value, head)
        self.map.set_data(minmax(heat[None])[0].numpy())
        label = {"head": f"head {self.head.value}", "mean": "mean of heads", "rollout": "rollout"}[self.mode.value]
        self.ax_grid.set_title(f"layer {self.layer.value}, {label} (max {float(heat.max()):.3f})")
        self.head.disabled = self.mode.value != "head"
        self.blend.set_data(overlay(self.picture, minmax(upsample(heat[None], self.picture.shape[:2]))[0], alpha=0.5))
        self.image.value = self.figure.png()


def vit_attention_explorer(image, attentions, grid: int) -> ViTAttentionExplorer:
    """A :class:`ViTAttentionExplorer` for one image (H, W, 3) and its attentions (layers, heads, T, T). Chapter 04."""
    return ViTAttentionExplorer(image, attentions, grid)
