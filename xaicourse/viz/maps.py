"""Plotting helpers shared by the chapters (matplotlib). Taught in chapter 00.

Maps are (H, W) arrays or tensors; photos are (H, W, 3) floats in [0, 1] or uint8.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch


def to_numpy(a) -> np.ndarray:
    """A tensor, array or nested list of numbers as a NumPy array (tensors detached, on the CPU)."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().float().numpy()
    array = np.asarray(a)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"expected an array of numbers (a tensor, NumPy array or photo), got a {type(a).__name__}")
    return array


def normalize(heat) -> np.ndarray:
    """Scale a map to [0, 1]; a constant map becomes zeros (never NaN)."""
    heat = to_numpy(heat).astype(np.float32)
    low, span = heat.min(), np.ptp(heat)
    return (heat - low) / span if span > 0 else np.zeros_like(heat)


def overlay(img, heat, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Blend a heat map over a photo of the same height and width: (H, W, 3) floats in [0, 1]."""
    img = to_numpy(img).astype(np.float32)
    if img.max() > 1.0:
        img = img / 255.0
    heat = normalize(heat)
    if heat.shape != img.shape[:2]:
        raise ValueError(f"the map {heat.shape} and the photo {img.shape[:2]} must have the same height and width")
    coloured = plt.get_cmap(cmap)(heat)[..., :3]
    return np.clip((1 - alpha) * img + alpha * coloured, 0, 1)


def show_maps(image, maps: dict, title: str | None = None, cmap: str = "hot", size: float = 3.2):
    """The photo followed by one panel per named map, each with a title and a colour bar."""
    if not maps:
        raise ValueError("maps is empty: give a dict of name -> (H, W) map to show next to the photo")
    fig, axes = plt.subplots(1, len(maps) + 1, figsize=(size * (len(maps) + 1), size))
    axes[0].imshow(to_numpy(image))
    axes[0].set_title("input")
    for ax, (name, heat) in zip(axes[1:], maps.items()):
        im = ax.imshow(to_numpy(heat), cmap=cmap)
        ax.set_title(name)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def topk_bar(predictions: list[tuple[str, float]], title: str = "top-5 predictions", ax=None):
    """Horizontal bar chart of (label, probability) pairs, best at the top."""
    if not predictions:
        raise ValueError("no predictions to plot: give (label, probability) pairs, e.g. image_model.predict(img)")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 0.45 * len(predictions) + 1))
    labels = [label for label, _ in predictions][::-1]
    probs = [p for _, p in predictions][::-1]
    ax.barh(labels, probs, color="tab:blue")
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability")
    ax.set_title(title)
    for y, p in enumerate(probs):
        ax.text(min(p + 0.01, 0.85), y, f"{p:.2f}", va="center")
    return ax
