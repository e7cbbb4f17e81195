"""Token attributions on screen: coloured HTML spans and bar charts. Chapters 05 and 09."""
from __future__ import annotations

import html as html_lib

import matplotlib.pyplot as plt
import numpy as np

from .maps import to_numpy

__all__ = ["token_bars", "token_html"]


def token_html(tokens: list[str], attributions, caption: str = "") -> str:
    """Tokens as HTML spans on a green (positive) / red (negative) background. Chapter 05.

    The strength of the colour is |attribution| / max |attribution|; hovering shows the value.
    """
    values = to_numpy(attributions).astype(float)
    if values.shape != (len(tokens),):
        raise ValueError(f"{values.size} attributions for {len(tokens)} tokens: give one value per token")
    scale = np.abs(values).max()
    spans = []
    for token, value in zip(tokens, values):
        strength = abs(value) / scale if scale > 0 else 0.0
        rgb = "40, 160, 60" if value >= 0 else "210, 50, 50"
        spans.append(f'<span title="{value:+.3f}" style="background: rgba({rgb}, {strength:.2f}); '
                     f'padding: 1px 3px; margin: 1px; border-radius: 3px">{html_lib.escape(token)}</span>')
    head = f"<div><small>{html_lib.escape(caption)}</small></div>" if caption else ""
    return f'<div style="font-family: monospace; line-height: 1.9">{head}{" ".join(spans)}</div>'


def token_bars(tokens: list[str], attributions, *, ylabel: str = "attribution", title: str = "", ax=None):
    """Bar chart of one value per token (green: towards the target class, red: against). Chapter 05."""
    values = to_numpy(attributions).astype(float)
    if values.shape != (len(tokens),):
        raise ValueError(f"{values.size} attributions for {len(tokens)} tokens: give one value per token")
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(tokens) + 1.5), 3.2))
    ax.bar(range(len(values)), values, color=np.where(values >= 0, "tab:green", "tab:red"))
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(values)), tokens, rotation=60, ha="right")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    ax.figure.tight_layout()
    return ax.figure
