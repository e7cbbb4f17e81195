"""Reading CAMs for shortcut learning: the four warning patterns of chapter 02.

A single heat map proves little; the same pattern over many images is evidence. ``cam_patterns(cams)``
measures, per map, and flags a pattern when it shows up in at least ``min_fraction`` of the batch:

1. ``corners``: the map peaks in one of the image corners (labels, burned-in text, markers,
   scanner annotations);
2. ``uniform``: the map is flat (or empty): nothing localised drives the decision;
3. ``outside``: most of the energy lies outside the object (needs ``masks``): the model relies on
   context, background or a different part of the image;
4. ``one_sided``: the maps' centres of mass lean to one side on average: a position bias.

:func:`diagnose_model` computes the CAMs of a model over several images and diagnoses them, like the
source's ``diagnose_model`` but with numbers instead of a stack of figures. Taught in chapter 02.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from . import cam as cam_methods
from .maps import mask_share
from .numerics import safe_divide

__all__ = ["Diagnosis", "HINTS", "cam_patterns", "corner_masks", "diagnose_model", "dilate"]

HINTS = {
    "corners": "the maps peak in the image corners: look for labels, burned-in text or markers there",
    "uniform": "the maps are flat or empty: the model may not have learned a localised feature",
    "outside": "most of the energy lies outside the object: the model may use background or context",
    "one_sided": "the maps lean to one side on average: check for a position bias in the data",
}


@dataclass
class Diagnosis:
    """Per-map measurements (B,) and the batch-level verdict.

    ``corner_peak``: the map's maximum lies in one of the four corner squares; ``corner_share``:
    share of positive energy in those squares; ``spread``: mean / max
    of the map (1 = uniform; empty maps count as 1); ``object_share``: share inside the (dilated)
    object mask, None without masks; ``centroid``: (B, 2) centre of mass as (x, y) in [-1, 1];
    ``flags``: pattern -> fraction of maps showing it (``one_sided``: the mean centroid offset);
    ``warnings``: the flagged patterns with what to look for.
    """

    corner_peak: torch.Tensor
    corner_share: torch.Tensor
    spread: torch.Tensor
    object_share: torch.Tensor | None
    centroid: torch.Tensor
    flags: dict[str, float]
    warnings: list[str]
    cams: torch.Tensor | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return not self.warnings

    def __str__(self) -> str:
        lines = [f"{len(self.spread)} maps: " + ", ".join(f"{k} {v:.2f}" for k, v in self.flags.items())]
        lines += [f"  WARNING {w}" for w in self.warnings] or ["  no warning pattern found"]
        return "\n".join(lines)


def cam_patterns(cams: torch.Tensor, masks: torch.Tensor | None = None, *, corner: float = 1 / 3,
             uniform_threshold: float = 0.5, object_threshold: float = 0.5,
             side_threshold: float = 0.3, margin: int = 0, min_fraction: float = 0.3) -> Diagnosis:
    """Flag the four warning patterns over a batch of maps ``cams`` (B, H, W) (non-negative, e.g. CAMs).

    ``masks`` (B, H, W) bool: the objects (for ``outside``), dilated by ``margin`` pixels to allow
    for the CAM's coarse resolution. ``corner``: side of each corner square as a fraction of the
    image side (default: the corner cells of a 3 x 3 grid; the four squares cover 4 * corner**2
    of the image, the chance level of a peak there). ``uniform_threshold``: spread above which a map counts as flat; ``object_threshold``:
    object share below which a map counts as outside; ``side_threshold``: mean centroid offset that
    counts as one-sided; ``min_fraction``: share of the maps that must show a pattern to flag it.
    Chapter 02.
    """
    cams = _check_maps(cams)
    if not 0 < corner <= 0.5:
        raise ValueError(f"corner is a fraction of the image side in (0, 0.5], got {corner}")
    b, h, w = cams.shape
    positive = cams.clamp(min=0)
    corners = corner_masks(h, w, corner).to(cams.device)
    corner_share = mask_share(positive, corners)
    peak = positive.flatten(1).amax(dim=1)
    corner_peak = corners.flatten()[positive.flatten(1).argmax(dim=1)] & (peak > 0)
    spread = safe_divide(positive.flatten(1).mean(dim=1), peak, fill=1.0)
    object_share = None
    if masks is not None:
        if masks.shape != cams.shape:
            raise ValueError(f"masks must match the maps' shape {tuple(cams.shape)}, got {tuple(masks.shape)}")
        object_share = mask_share(positive, dilate(masks, margin))
    centroid = _centroid(positive)
    flags = {"corners": corner_peak.float().mean().item(),
             "uniform": (spread > uniform_threshold).float().mean().item()}
    if object_share is not None:
        flags["outside"] = (object_share < object_threshold).float().mean().item()
    flags["one_sided"] = centroid.mean(dim=0).abs().max().item()
    warned = [k for k, v in flags.items() if v >= (side_threshold if k == "one_sided" else min_fraction)]
    warnings = [f"{k} ({_share_text(k, flags[k])}): {HINTS[k]}" for k in warned]
    return Diagnosis(corner_peak, corner_share, spread, object_share, centroid, flags, warnings)


def diagnose_model(model, layer, images: torch.Tensor, target=None, *, masks=None, method=None, **kwargs) -> Diagnosis:
    """CAMs of ``model`` at ``layer`` for ``images`` (B, C, H, W), then :func:`diagnose`.

    ``method``: a CAM function of :mod:`xaicourse.cam` (default ``grad_cam``); ``kwargs`` go to
    :func:`cam_patterns`. The returned diagnosis keeps the maps in ``.cams``. Chapter 02.
    """
    method = method or cam_methods.grad_cam
    cams = method(model, layer, images, target)
    result = cam_patterns(cams, masks, **kwargs)
    result.cams = cams
    return result


def dilate(masks: torch.Tensor, pixels: int) -> torch.Tensor:
    """Grow boolean masks (B, H, W) by ``pixels`` in every direction (a square structuring element). Chapter 02."""
    if pixels < 0:
        raise ValueError(f"pixels must be >= 0, got {pixels}")
    if pixels == 0:
        return masks.bool()
    if not isinstance(masks, torch.Tensor) or masks.ndim != 3:
        raise ValueError(f"masks must be a bool tensor (B, H, W), got {getattr(masks, 'shape', type(masks).__name__)}")
    grown = F.max_pool2d(masks[:, None].float(), kernel_size=2 * pixels + 1, stride=1, padding=pixels)
    return grown[:, 0] > 0


def corner_masks(h: int, w: int, corner: float = 1 / 3) -> torch.Tensor:
    """(H, W) bool: the four corner squares whose side is ``corner`` times the image side. Chapter 02."""
    if not 0 < corner <= 0.5:
        raise ValueError(f"corner is a fraction of the image side in (0, 0.5] (larger corners overlap), got {corner}")
    ch, cw = max(1, round(corner * h)), max(1, round(corner * w))
    rows, cols = torch.zeros(h, dtype=torch.bool), torch.zeros(w, dtype=torch.bool)
    rows[:ch] = rows[-ch:] = True
    cols[:cw] = cols[-cw:] = True
    return rows[:, None] & cols[None, :]


def _centroid(positive: torch.Tensor) -> torch.Tensor:
    """Centre of mass (x, y) of each map in [-1, 1] (0 = the middle); empty maps give (0, 0)."""
    b, h, w = positive.shape
    total = positive.flatten(1).sum(dim=1)
    ys = torch.linspace(-1, 1, h, device=positive.device)
    xs = torch.linspace(-1, 1, w, device=positive.device)
    x = (positive.sum(dim=1) * xs).sum(dim=1)
    y = (positive.sum(dim=2) * ys).sum(dim=1)
    return safe_divide(torch.stack([x, y], dim=1), total[:, None])


def _check_maps(cams) -> torch.Tensor:
    if not isinstance(cams, torch.Tensor):
        raise TypeError(f"cams must be a tensor of shape (batch, height, width), got {type(cams).__name__}")
    if cams.ndim != 3 or cams.shape[0] == 0:
        raise ValueError(f"cams must have shape (batch, height, width) with at least one map, got {tuple(cams.shape)}")
    if not torch.isfinite(cams).all():
        raise ValueError("cams contain NaN or inf")
    return cams.detach().float()


def _share_text(pattern: str, value: float) -> str:
    return f"mean centroid offset {value:.2f}" if pattern == "one_sided" else f"{value:.0%} of the maps"
