"""Chapter 09's explorers: a method x layer view of a Transformer's relevance, for a ViT image or a sentence.

The attentions and their gradients are recorded once (one forward and one backward pass,
:func:`xaicourse.relevance.record_attentions`); every (method, layer) map is computed from them on
first use by :func:`xaicourse.relevance.class_token_rows` and cached, so a slider move only redraws.
"""
from __future__ import annotations

import ipywidgets
import numpy as np
import torch
from matplotlib.figure import Figure

from ..cam import prefix_tokens
from ..maps import minmax, upsample
from ..models import VisionTransformer
from ..relevance import RELEVANCE_METHODS, class_token_rows, prepare_inputs, record_attentions
from ..viz import overlay, to_numpy
from .frame import BlitFigure, patch_grid_figure

__all__ = ["RelevanceExplorer", "TextRelevanceExplorer", "relevance_explorer", "text_relevance_explorer"]

_LABELS = {"gradient_rollout": "relevance (gradient rollout) up to layer", "rollout": "rollout up to layer",
           "attention": "attention of layer", "attention_x_gradient": "attention x gradient of layer"}


class _Cached:
    """Recorded attentions and gradients of one input, and the (method, layer) rows computed from them."""

    def __init__(self, attentions: torch.Tensor, gradients: torch.Tensor):
        self.attentions, self.gradients, self.rows = attentions.cpu(), gradients.cpu(), {}

    def row(self, method: str, layer: int) -> torch.Tensor:
        key = (method, layer)
        if key not in self.rows:
            self.rows[key] = class_token_rows(self.attentions, self.gradients, method, layer)[0]
        return self.rows[key]


def _controls(n_layers: int):
    method = ipywidgets.Dropdown(description="method", options=[(_LABELS[m], m) for m in RELEVANCE_METHODS],
                                 value="gradient_rollout", layout=ipywidgets.Layout(width="380px"))
    layer = ipywidgets.IntSlider(description="layer", min=0, max=n_layers - 1, value=n_layers - 1)
    return method, layer


class RelevanceExplorer(ipywidgets.VBox):
    """Method and layer controls over one ViT image's relevance: the map on the patch grid and over the image.

    ``image`` (H, W, 3) in [0, 1]; ``attentions``, ``gradients`` (1, layers, heads, T, T);
    ``n_prefix`` tokens (class, distillation, register) are dropped before the ``grid`` x ``grid``
    patches. Taught in chapter 09.
    """

    def __init__(self, image, attentions: torch.Tensor, gradients: torch.Tensor, grid: int, n_prefix: int = 1,
                 title: str = ""):
        n_tokens = n_prefix + grid * grid
        if attentions.dim() != 5 or attentions.shape[-1] != n_tokens or gradients.shape != attentions.shape:
            raise ValueError(f"attentions and gradients must both be (1, layers, heads, T, T) with T = {n_prefix} + "
                             f"{grid}x{grid}, got {tuple(attentions.shape)} and {tuple(gradients.shape)}")
        self.picture = to_numpy(image).astype(np.float32)
        self.cached, self.grid, self.n_prefix = _Cached(attentions, gradients), grid, n_prefix
        self.method, self.layer = _controls(attentions.shape[1])
        self.image = ipywidgets.Image(format="png")
        fig, self.ax_grid, self.map, self.blend = patch_grid_figure(self.picture, grid, "score / its max",
                                                                    title or "over the image")
        self.figure = BlitFigure(fig, [self.map, self.blend, self.ax_grid.title])
        for control in (self.method, self.layer):
            control.observe(self.update, names="value")
        super().__init__([ipywidgets.HBox([self.method, self.layer]), self.image])
        self.update()

    def heat(self) -> torch.Tensor:
        """The current (grid, grid) map."""
        row = self.cached.row(self.method.value, self.layer.value)
        return row[self.n_prefix:].reshape(self.grid, self.grid)

    def update(self, *_):
        heat = self.heat()
        self.map.set_data(minmax(heat[None])[0].numpy())
        self.ax_grid.set_title(f"{_LABELS[self.method.value]} {self.layer.value} (max {float(heat.max()):.3g})",
                               fontsize=9)
        self.blend.set_data(overlay(self.picture, minmax(upsample(heat[None], self.picture.shape[:2]))[0], alpha=0.5))
        self.image.value = self.figure.png()


def relevance_explorer(vit, image: torch.Tensor, target=None) -> RelevanceExplorer:
    """A :class:`RelevanceExplorer` for a ViT bundle (``tiny_vit()``) and one image (3, S, S) in [0, 1]. Chapter 09.

    ``target``: None (the predicted class) or a class index; one forward and backward pass.
    """
    if not isinstance(vit, VisionTransformer):
        raise TypeError(f"vit must be a VisionTransformer bundle (e.g. xc.models.tiny_vit()), got {type(vit).__name__}")
    x = vit.preprocess(image)
    attentions, gradients, targets = record_attentions(vit.model, x, target)
    n_prefix = prefix_tokens(vit.model, attentions.shape[-1])
    label = vit.labels[int(targets[0])] if getattr(vit, "labels", None) else int(targets[0])
    return RelevanceExplorer(image.permute(1, 2, 0) if image.dim() == 3 else image[0].permute(1, 2, 0),
                             attentions, gradients, vit.grid, n_prefix, title=f"over the image (target: {label})")


class TextRelevanceExplorer(ipywidgets.VBox):
    """Method and layer controls over one sentence's token relevance, as bars. Taught in chapter 09.

    ``attentions``, ``gradients`` (1, layers, heads, T, T) and the T ``tokens``; the class token's own
    entry (position 0) is left out of the bars' scale.
    """

    def __init__(self, tokens: list[str], attentions: torch.Tensor, gradients: torch.Tensor, title: str = ""):
        if attentions.dim() != 5 or attentions.shape[-1] != len(tokens) or gradients.shape != attentions.shape:
            raise ValueError(f"attentions and gradients must both be (1, layers, heads, T, T) with T = {len(tokens)} "
                             f"tokens, got {tuple(attentions.shape)} and {tuple(gradients.shape)}")
        self.tokens, self.cached = list(tokens), _Cached(attentions, gradients)
        self.method, self.layer = _controls(attentions.shape[1])
        self.image = ipywidgets.Image(format="png")
        n = len(tokens)
        fig = Figure(figsize=(3.0 + 0.45 * n, 3.2), dpi=72)
        self.ax = fig.subplots()
        self.bars = self.ax.bar(range(n), np.zeros(n), color="tab:green")
        self.ax.set_xticks(range(n), self.tokens, rotation=60, ha="right", fontsize=8)
        self.ax.set_ylim(0, 1.05)
        self.ax.set_ylabel("score / its max")
        self.ax.set_title(" ")
        fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        self.figure = BlitFigure(fig, [*self.bars, self.ax.title])
        for control in (self.method, self.layer):
            control.observe(self.update, names="value")
        super().__init__([ipywidgets.HBox([self.method, self.layer]), self.image])
        self.update()

    def scores(self) -> torch.Tensor:
        """The current (T,) scores, the class token's own entry set to 0."""
        row = self.cached.row(self.method.value, self.layer.value).clone()
        row[0] = 0.0
        return row

    def update(self, *_):
        scores = self.scores()
        top = float(scores.max())
        for bar, value in zip(self.bars, (scores / top if top > 0 else scores).tolist()):
            bar.set_height(value)
        self.ax.set_title(f"{_LABELS[self.method.value]} {self.layer.value} (max {top:.3g})", fontsize=9)
        self.image.value = self.figure.png()


def text_relevance_explorer(text_model, text: str, target=None) -> TextRelevanceExplorer:
    """A :class:`TextRelevanceExplorer` for a TextModel bundle with eager attention and one text. Chapter 09."""
    module, encodings, _ = prepare_inputs(text_model, text)
    attentions, gradients, targets = record_attentions(module, encodings, target, kind="text")
    tokens = text_model.tokenizer.convert_ids_to_tokens(encodings["input_ids"][0].tolist())
    labels = getattr(text_model, "labels", None)
    label = labels[int(targets[0])] if labels else int(targets[0])
    return TextRelevanceExplorer(tokens, attentions, gradients, title=f"target: {label}")
