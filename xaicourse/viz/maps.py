"""Photos and pixel maps on screen: one display convention for the whole course. Chapters 00-09.

Maps are (H, W) or (B, H, W) arrays or tensors; photos are (H, W, 3) floats in [0, 1] or uint8.

The convention: a pixel map (gradients, IG, SmoothGrad, DeepLIFT, ...) is shown after
:func:`clip_map` (scaled by its 99th percentile of |value|, as the SmoothGrad paper does: a few
extreme pixels would otherwise make everything else black), with the "hot" colour map for
unsigned maps and "bwr" centred at 0 for signed ones. A CAM (already in [0, 1]) is shown with
"jet" over the photo. :func:`map_panel` draws either, with a colour bar of the colour map it used.
"""
from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..maps import upsample
from ..numerics import safe_divide
from .checks import MIN_OPACITY, FigureWarning

__all__ = ["clip_map", "map_panel", "overlay", "show_maps", "to_numpy", "topk_bar"]


def to_numpy(a) -> np.ndarray:
    """A tensor, array or nested list of numbers as a NumPy array (tensors detached, on the CPU). Chapter 00."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().float().numpy()
    array = np.asarray(a)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"expected an array of numbers (a tensor, NumPy array or photo), got a {type(a).__name__}")
    return array


def clip_map(maps, percentile: float = 99.0) -> torch.Tensor:
    """Scale each map of (B, H, W) (or one (H, W) map) for display, saturating above its ``percentile``. Chapter 01.

    Unsigned maps go to [0, 1]; signed maps are scaled by their absolute value to [-1, 1]. An
    all-zero map stays zero (no NaN).
    """
    if isinstance(maps, np.ndarray):
        maps = torch.from_numpy(maps)
    if not isinstance(maps, torch.Tensor):
        raise TypeError(f"maps must be a tensor (B, H, W) or (H, W) or an array, got {type(maps).__name__}")
    if maps.ndim not in (2, 3):
        raise ValueError(f"maps must be a tensor of shape (B, H, W) or (H, W), e.g. from to_map, got "
                         f"{getattr(maps, 'shape', type(maps).__name__)}")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    single = maps.ndim == 2
    maps = maps.detach().float().cpu().reshape(-1, *maps.shape[-2:])
    scale = maps.abs().flatten(1).quantile(percentile / 100, dim=1).view(-1, 1, 1)
    out = safe_divide(maps, scale).clamp(-1, 1)
    return out[0] if single else out


def overlay(img, heat, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """A photo (H, W, 3) with a map in [0, 1] blended on top: (H, W, 3) floats in [0, 1]. Chapter 02.

    ``heat`` is (h, w) or (1, h, w); a map of another size is resized to the photo (bilinear). Values
    are clipped to [0, 1] (a CAM, or a map after :func:`clip_map`). The colour's weight grows with the
    value (``alpha`` at 1, nothing at 0), so the photo shows through where the map is low instead of
    being tinted by the colour map's lowest colour (dark blue for "jet").
    """
    img = to_numpy(img).astype(np.float32)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"img must be a photo (H, W, 3), got shape {img.shape}")
    if img.max() > 1.0:
        img = img / 255.0
    heat = torch.as_tensor(to_numpy(heat)).float()
    if heat.ndim < 2:
        raise ValueError(f"heat must be one map (H, W) or (1, H, W), got shape {tuple(heat.shape)}")
    heat = heat.reshape(-1, *heat.shape[-2:])[:1]
    strongest = float(heat.clamp(0, 1).max())   # before resizing, which may soften the peak
    if 0 < alpha * strongest < MIN_OPACITY:
        warnings.warn(f"the overlay is nearly invisible: its strongest pixel is {alpha * strongest:.2f} opaque "
                      f"(alpha {alpha} x map maximum {strongest:.2f}); scale the map to [0, 1] first, e.g. with "
                      "clip_map, or raise alpha", FigureWarning, stacklevel=2)
    if tuple(heat.shape[-2:]) != img.shape[:2]:
        heat = upsample(heat, img.shape[:2])
    values = heat[0].clamp(0, 1).numpy()
    coloured = plt.get_cmap(cmap)(values)[..., :3]
    weight = alpha * values[..., None]
    return np.clip((1 - weight) * img + weight * coloured, 0, 1)


def map_panel(ax, heat, *, image=None, kind: str = "pixels", title: str | None = None, colorbar: bool = True,
              cmap: str | None = None, label: str | None = None):
    """One labelled panel in the course's convention, with the colour bar of the colour map it uses. Chapter 01.

    ``kind``: "pixels" (an unsigned pixel map, clipped at its 99th percentile, "hot"), "signed" (a
    signed map, "bwr" centred at zero) or "cam" (a map in [0, 1] in "jet", over ``image`` if given: the
    map's opacity grows with its value, 0.6 at 1). ``cmap`` and ``label`` replace a "cam" panel's colour
    map and colour-bar label (e.g. "hot" and "attention / map maximum" for attention over a photo).
    """
    heat = to_numpy(heat)
    if kind == "cam":
        if image is not None:  # the map's weight grows with its value: no blue tint where it is low
            ax.imshow(image)
        weight = 0.6 * np.clip(heat, 0, 1) if image is not None else None
        shown = ax.imshow(heat, cmap=cmap or "jet", alpha=weight, vmin=0, vmax=1)
        label = label or "CAM (scaled to [0, 1])"
    elif kind in ("pixels", "signed"):
        scaled = clip_map(torch.from_numpy(np.ascontiguousarray(heat, dtype=np.float32))).numpy()
        signed = kind == "signed"
        shown = ax.imshow(scaled, cmap="bwr" if signed else "hot", vmin=-1 if signed else 0, vmax=1)
        label = label or "value / 99th percentile of |value|"
    else:
        raise ValueError(f"kind must be 'pixels', 'signed' or 'cam', got {kind!r}")
    if title:
        ax.set_title(title, fontsize=9)
    ax.axis("off")
    if colorbar:
        ax.figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label=label)
    return shown


def show_maps(image, maps: dict, title: str | None = None, kind: str = "pixels", size: float = 3.2):
    """The photo followed by one :func:`map_panel` per named map (each with its colour bar). Chapter 01.

    ``kind`` applies to every map (see :func:`map_panel`); "cam" maps are drawn over the photo.
    """
    if not maps:
        raise ValueError("maps is empty: give a dict of name -> (H, W) map to show next to the photo")
    fig, axes = plt.subplots(1, len(maps) + 1, figsize=(size * (len(maps) + 1), size))
    axes[0].imshow(to_numpy(image))
    axes[0].set_title("input")
    axes[0].axis("off")
    for ax, (name, heat) in zip(axes[1:], maps.items()):
        map_panel(ax, heat, image=to_numpy(image) if kind == "cam" else None, kind=kind, title=name)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def topk_bar(predictions: list[tuple[str, float]], title: str = "top-5 predictions", ax=None):
    """Horizontal bar chart of (label, probability) pairs, best at the top. Chapter 00."""
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
