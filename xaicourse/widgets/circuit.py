"""Chapter 10's explorer: a head's attention pattern next to what patching that head does, per position.

Everything is computed before the explorer is built (attention patterns and a per-position patching
table); a slider move only indexes them and redraws the changed artists.
"""
from __future__ import annotations

import ipywidgets
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .frame import BlitFigure

__all__ = ["CircuitExplorer", "circuit_explorer"]


class CircuitExplorer(ipywidgets.VBox):
    """Layer / head / position sliders over attention patterns and per-position patching effects. Chapter 10.

    ``patterns`` (n_layers, n_heads, T, T): one sequence's attention weights; ``effects``
    (n_layers, n_heads, T): the normalised effect of patching one head at one position
    (:func:`xaicourse.patching.activation_patching` with ``per_position=True``), or a dict of such
    tables by name (e.g. {"denoising": ..., "noising": ...}: a dropdown switches); ``tokens``: T labels.
    Left: the head's pattern, the selected query position framed; right: the head's patching effect
    at every position, the selected one in red; the title gives the numbers.
    """

    def __init__(self, patterns: torch.Tensor, effects, tokens: list[str]):
        tables = effects if isinstance(effects, dict) else {"patching": effects}
        if not tables:
            raise ValueError("effects must hold at least one table")
        for name, value, dims in (("patterns", patterns, 4), *(("effects" if len(tables) == 1 else f"effects[{k!r}]", v, 3)
                                                              for k, v in tables.items())):
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{name} must be a tensor with {dims} dimensions, got {type(value).__name__}")
            if value.dim() != dims:
                raise ValueError(f"{name} must be a tensor with {dims} dimensions, got shape {tuple(value.shape)}")
        if not isinstance(tokens, (list, tuple)):
            raise TypeError(f"tokens must be a list of T labels, got {type(tokens).__name__}")
        n_layers, n_heads, T, _ = patterns.shape
        for name, table in tables.items():
            if tuple(table.shape) != (n_layers, n_heads, T) or len(tokens) != T:
                raise ValueError(f"effects must be (n_layers, n_heads, T) = {(n_layers, n_heads, T)} and tokens {T} labels, "
                                 f"got effects[{name!r}] {tuple(table.shape)} and {len(tokens)} tokens")
        self.patterns = patterns.detach().cpu().float()
        self.tables = {name: table.detach().cpu().float() for name, table in tables.items()}
        self.tokens = list(tokens)
        self.layer = ipywidgets.IntSlider(description="layer", min=0, max=n_layers - 1, value=n_layers - 1)
        self.head = ipywidgets.IntSlider(description="head", min=0, max=n_heads - 1)
        self.position = ipywidgets.IntSlider(description="position", min=0, max=T - 1, value=T - 2)
        self.table = ipywidgets.Dropdown(description="patching", options=list(self.tables))
        self.image = ipywidgets.Image(format="png")
        fig = Figure(figsize=(11, 4.6), dpi=72)
        self.ax_map, self.ax_bar = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.3]})
        self.map = self.ax_map.imshow(self.patterns[0, 0].numpy(), cmap="viridis", vmin=0, vmax=1)
        fig.colorbar(self.map, ax=self.ax_map, fraction=0.046, label="attention weight")
        ticks = range(T)
        self.ax_map.set_xticks(ticks, self.tokens, fontsize=7, rotation=90)
        self.ax_map.set_yticks(ticks, self.tokens, fontsize=7)
        self.ax_map.set_xlabel("key (attended to)")
        self.ax_map.set_ylabel("query position")
        self.row = self.ax_map.add_patch(Rectangle((-0.5, -0.5), T, 1, fill=False, edgecolor="red", linewidth=2))
        self.bars = self.ax_bar.bar(ticks, np.zeros(T), color="tab:blue")
        low = min(float(t.min()) for t in self.tables.values())
        high = max(float(t.max()) for t in self.tables.values())
        self.ax_bar.set_ylim(min(low, 0) - 0.05, max(high, 0) + 0.05)
        self.ax_bar.axhline(0, color="black", linewidth=0.8)
        self.ax_bar.set_xticks(ticks, self.tokens, fontsize=7, rotation=90)
        self.ax_bar.set_xlabel("position patched (this head only)")
        self.ax_bar.set_ylabel("normalised effect")
        self.ax_map.set_title(" ")
        self.ax_bar.set_title(" ")
        fig.tight_layout()
        self.figure = BlitFigure(fig, [self.map, self.row, *self.bars, self.ax_map.title, self.ax_bar.title])
        controls = [self.layer, self.head, self.position] + ([self.table] if len(self.tables) > 1 else [])
        for control in controls:
            control.observe(self.update, names="value")
        super().__init__([ipywidgets.HBox(controls), self.image])
        self.update()

    def update(self, *_):
        layer, head, position = self.layer.value, self.head.value, self.position.value
        pattern, effects = self.patterns[layer, head], self.tables[self.table.value][layer, head]
        self.map.set_data(pattern.numpy())
        self.row.set_y(position - 0.5)
        key = int(pattern[position].argmax())
        self.ax_map.set_title(f"L{layer}H{head}: position {position} ({self.tokens[position]!r}) attends most to "
                              f"{key} ({self.tokens[key]!r}), {float(pattern[position, key]):.2f}", fontsize=9)
        for i, (bar, value) in enumerate(zip(self.bars, effects.tolist())):
            bar.set_height(value)
            bar.set_color("tab:red" if i == position else "tab:blue")
        self.ax_bar.set_title(f"{self.table.value} L{layer}H{head}: effect {float(effects[position]):.3f} at position {position}, "
                              f"{float(effects.sum()):.3f} summed over positions", fontsize=9)
        self.image.value = self.figure.png()


def circuit_explorer(patterns: torch.Tensor, effects, tokens: list[str]) -> CircuitExplorer:
    """A :class:`CircuitExplorer` over one sequence's attention patterns and a per-position patching table. Chapter 10."""
    return CircuitExplorer(patterns, effects, tokens)
