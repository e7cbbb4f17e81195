"""Attention on screen: heatmaps with token labels, head grids, and bertviz with no network. Chapter 04.

bertviz loads require.js, d3 and jQuery from a CDN, so offline its views are blank.
:func:`bertviz_offline` inlines require.js and points the d3/jQuery paths at data: URLs built from
the copies ``make setup`` fetched (``python -m xaicourse.environment setup``).
"""
from __future__ import annotations

import base64
import html as html_lib
import re

import matplotlib.pyplot as plt
import numpy as np
import torch

from .. import paths
from ..inputs import check_types

__all__ = ["BERTVIZ_ASSETS", "bertviz_offline", "head_grid", "heatmap", "offline_html"]

BERTVIZ_ASSETS = {"d3": "d3.min.js", "jquery": "jquery.min.js"}


def heatmap(attention, tokens: list[str], title: str | None = None, ax=None, colorbar: bool = True):
    """One (T, T) attention matrix with token labels: rows are queries, columns are keys. Chapter 04."""
    if not isinstance(attention, (torch.Tensor, np.ndarray)):
        raise TypeError(f"attention must be a (T, T) tensor or array, got {type(attention).__name__}")
    if tuple(attention.shape) != (len(tokens), len(tokens)):
        raise ValueError(f"attention of shape {tuple(attention.shape)} does not match {len(tokens)} tokens: "
                         "give one (T, T) matrix, e.g. attentions[layer, head], and its T tokens")
    if ax is None:
        _, ax = plt.subplots(figsize=(0.45 * len(tokens) + 2.5, 0.45 * len(tokens) + 1.5))
    matrix = attention.detach().cpu().numpy() if isinstance(attention, torch.Tensor) else np.asarray(attention)
    im = ax.imshow(matrix, cmap="viridis", vmin=0)
    ax.set_xticks(range(len(tokens)), tokens, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(tokens)), tokens, fontsize=8)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="attention weight")
    return ax


@check_types
def head_grid(layer_attentions: torch.Tensor, tokens: list[str], title: str | None = None, cols: int = 4):
    """All heads of one layer, (heads, T, T), as a grid of heatmaps on a shared colour scale. Chapter 04."""
    if layer_attentions.dim() != 3 or layer_attentions.shape[-1] != len(tokens):
        raise ValueError(f"layer_attentions must be one layer's (heads, T, T) with T = {len(tokens)} tokens, got shape "
                         f"{tuple(layer_attentions.shape)}: index the layer, e.g. attentions[layer]")
    heads = layer_attentions.shape[0]
    rows = -(-heads // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 3.0 * rows), squeeze=False)
    vmax = float(layer_attentions.max())
    for head, ax in enumerate(axes.flat):
        if head >= heads:
            ax.axis("off")
            continue
        im = ax.imshow(layer_attentions[head].cpu().numpy(), cmap="viridis", vmin=0, vmax=vmax)
        ax.set_title(f"head {head}", fontsize=9)
        ax.set_xticks(range(len(tokens)), tokens if head // cols == rows - 1 else [], rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(tokens)), tokens if head % cols == 0 else [], fontsize=7)
    fig.colorbar(im, ax=axes, fraction=0.02, pad=0.02, label="attention weight")
    if title:
        fig.suptitle(title)
    return fig


# --------------------------------------------------------------------------------------------
# bertviz with no network
# --------------------------------------------------------------------------------------------
def bertviz_offline(attentions: torch.Tensor, tokens: list[str], kind: str = "head", **options):
    """bertviz's ``head_view`` or ``model_view`` (``kind``) that renders with no network.

    bertviz loads require.js, d3 and jQuery from a CDN. Here require.js is inlined and the d3/jQuery
    paths become data: URLs, built from the copies ``make setup`` fetched into ``.assets/``; no
    http(s) URL is left in the HTML. Without those files, prints a one-line notice and returns the
    notice that names the missing file and the course's own explorer. ``attentions``: (layers, heads, T, T); ``options`` go to
    bertviz (e.g. ``layer=2, heads=[0, 1]``). Returns an IPython ``HTML`` object. Taught in chapter 04.
    """
    import bertviz
    from IPython.display import HTML

    views = {"head": bertviz.head_view, "model": bertviz.model_view}
    if kind not in views:
        raise ValueError(f"kind must be 'head' or 'model', got {kind!r}")
    try:
        require_js = paths.asset("require.js").read_text()
        libraries = {key: paths.asset(name).read_bytes() for key, name in BERTVIZ_ASSETS.items()}
    except paths.MissingAsset as missing:
        return HTML(f"<p><b>bertviz offline needs its JavaScript</b>: {html_lib.escape(str(missing))}. Meanwhile "
                    "<code>xc.widgets.attention_explorer(attentions, tokens)</code> shows the same weights.</p>")
    html = views[kind](tuple(a.unsqueeze(0) for a in attentions), tokens, html_action="return", **options).data
    return HTML(offline_html(html, require_js, libraries))


def offline_html(html: str, require_js: str, libraries: dict[str, bytes]) -> str:
    """Rewrite bertviz's HTML to need no network (see :func:`bertviz_offline`). Chapter 04."""
    html = re.sub(r'<script src="[^"]*require[^"]*"></script>', lambda _: f"<script>\n{require_js}\n</script>", html)
    for key, source in libraries.items():
        url = "data:text/javascript;base64," + base64.b64encode(source).decode("ascii")
        html, found = re.subn(rf"{key}: '[^']*'", lambda _: f"{key}: '{url}'", html)
        if found != 1:
            raise RuntimeError(f"bertviz's HTML changed: no path for {key!r} to rewrite (bertviz version?)")
    # What is left are URLs in JavaScript comments and XML namespace strings, which fetch nothing;
    # ":\/\/" is the same string in JavaScript, so the page needs and shows no network address.
    return html.replace("://", r":\/\/")
