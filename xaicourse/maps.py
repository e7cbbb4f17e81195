"""Operations on attribution maps, shared by every method and metric (chapters 01-09).

A *map* is one score per pixel (or per patch): a tensor (B, H, W). An *attribution* is one score
per input value: (B, C, H, W). Each operation exists once, here:

* :func:`to_map`: attribution (B, C, H, W) -> map (B, H, W) by a channel reduction.
* :func:`minmax`: scale each map to [0, 1]; a constant map becomes zeros (never NaN).
* :func:`upsample`: (B, h, w) -> (B, H, W), bilinear with half-pixel centres (as cv2.resize),
  optionally min-max scaled (the CAM convention).
* :func:`mask_share`: the share of a map's positive mass inside a mask (mask energy, the share of
  a CAM in a corner, attention mass on an object: one definition).
* :func:`top_region` / :func:`top_overlap`: the top fraction of a map's pixels, and the IoU of two maps'
  top regions.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .inputs import check_types
from .numerics import safe_divide

__all__ = ["MAP_REDUCTIONS", "as_maps", "minmax", "mask_share", "to_map", "top_overlap", "top_region", "upsample"]

MAP_REDUCTIONS = ("max_abs", "abs_sum", "sum")


def as_maps(maps, name: str = "maps", ndim: int = 3) -> torch.Tensor:
    """``maps`` as a float tensor of ``ndim`` dimensions ((B, H, W) by default), or a clear error. Chapter 07."""
    if not isinstance(maps, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, H, W), got {type(maps).__name__}")
    if maps.ndim != ndim:
        hint = " (one map? add the batch dimension: m[None])" if maps.ndim == ndim - 1 else ""
        raise ValueError(f"{name} must have {ndim} dimensions {'(B, H, W)' if ndim == 3 else ''}, "
                         f"got shape {tuple(maps.shape)}{hint}")
    return maps.detach().float() if not maps.dtype == torch.bool else maps.detach()


def to_map(attribution: torch.Tensor, reduce: str = "max_abs") -> torch.Tensor:
    """Collapse the channels of an attribution (B, C, H, W) into a map (B, H, W). Chapter 01.

    * "max_abs": the largest |value| over the colour channels (Simonyan et al.): a pixel is
      important if any of its channels is.
    * "abs_sum": the sum of |values|: the total sensitivity of the pixel.
    * "sum": the signed sum: positive where the pixel raises the class score, negative where it
      lowers it; meaningful for gradient x input and IG, whose channel contributions add up.
    """
    if not isinstance(attribution, torch.Tensor):
        raise TypeError(f"attribution must be a torch.Tensor, got {type(attribution).__name__}")
    if attribution.ndim != 4:
        raise ValueError(f"attribution must have shape (B, C, H, W), got {tuple(attribution.shape)}")
    if reduce == "max_abs":
        return attribution.abs().amax(dim=1)
    if reduce == "abs_sum":
        return attribution.abs().sum(dim=1)
    if reduce == "sum":
        return attribution.sum(dim=1)
    raise ValueError(f"unknown reduce {reduce!r}: choose one of {MAP_REDUCTIONS}")


@check_types
def minmax(maps: torch.Tensor) -> torch.Tensor:
    """Scale each map of (B, ...) to [0, 1]; a constant map becomes zeros, never NaN. Chapter 02."""
    if not isinstance(maps, torch.Tensor) or maps.ndim < 2:
        raise ValueError(f"maps must be a tensor (B, ...) with one map per row, got "
                         f"{tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__}")
    flat = maps.flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    scaled = safe_divide(flat - low, span)
    return scaled.view_as(maps)


@check_types
def upsample(maps: torch.Tensor, size, *, normalize: bool = False, align_corners: bool = False) -> torch.Tensor:
    """(B, h, w) maps -> (B, H, W), bilinear with half-pixel centres (as cv2.resize). Chapter 02.

    ``size``: (H, W) or one int for a square. ``normalize=True`` then min-max scales each map to
    [0, 1] (the CAM convention; a constant map becomes zeros). ``align_corners=True`` maps the
    corner pixels onto each other instead (``nn.UpsamplingBilinear2d``, which pytorch-grad-cam's
    Score-CAM uses for its masks).
    """
    if not isinstance(maps, torch.Tensor) or maps.dim() != 3:
        shape = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise ValueError(f"maps must be a stack of maps (B, h, w), got shape {shape} (one map? add [None])")
    size = (size, size) if isinstance(size, int) else tuple(size)
    out = F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=align_corners)[:, 0]
    return minmax(out) if normalize else out


def mask_share(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of each map's positive mass inside its mask: sum(m+ * mask) / sum(m+), (B,) in [0, 1]. Chapter 07.

    ``maps`` (B, H, W); ``masks`` (B, H, W) or (H, W), boolean or fractional (a patch's share of the
    object). Negative values count as zero. A map with no positive value scores 0; a uniform map
    scores the mask's area share (the chance level).
    """
    maps = as_maps(maps)
    if not isinstance(masks, torch.Tensor):
        raise TypeError(f"masks must be a tensor (B, H, W) or (H, W), got {type(masks).__name__}")
    masks = masks.to(device=maps.device, dtype=maps.dtype)
    if masks.shape[-2:] != maps.shape[-2:] or masks.ndim not in (2, 3) or (masks.ndim == 3 and len(masks) != len(maps)):
        raise ValueError(f"masks of shape {tuple(masks.shape)} must match the maps' shape {tuple(maps.shape)}: one "
                         "(H, W) mask per map or one for all")
    positive = maps.clamp(min=0)
    total = positive.flatten(1).sum(dim=1)
    inside = (positive * masks).flatten(1).sum(dim=1)
    return safe_divide(inside, total)


@check_types
def top_region(maps: torch.Tensor, top: float = 0.2) -> torch.Tensor:
    """The pixels of each map in its top ``top`` fraction (and > 0), as bool masks. Chapter 05.

    ``maps``: (B, H, W) or one (H, W) map; the result has the same shape. The threshold is the
    (1 - ``top``) quantile of each map; a map without positive values has an empty region.
    """
    if not isinstance(maps, torch.Tensor):
        maps = torch.as_tensor(maps)
    if maps.ndim not in (2, 3):
        raise ValueError(f"maps must be (B, H, W) or one (H, W) map, got shape {tuple(maps.shape)}")
    if not 0 < top <= 1:
        raise ValueError(f"top is a fraction of the pixels in (0, 1], got {top}")
    heat = maps.detach().float().reshape(-1, *maps.shape[-2:])
    threshold = torch.quantile(heat.flatten(1), 1 - top, dim=1).view(-1, 1, 1)
    return ((heat >= threshold) & (heat > 0)).view(maps.shape)


@check_types
def top_overlap(a: torch.Tensor, b: torch.Tensor, top: float = 0.2) -> torch.Tensor:
    """Intersection over union of the ``top`` regions of two maps (or stacks of maps). Chapter 05.

    Returns one value per map pair in [0, 1] (a 0-d tensor for two (H, W) maps); 0 when both
    regions are empty.
    """
    if a.shape != b.shape:
        raise ValueError(f"the maps must have the same shape to overlap, got {tuple(a.shape)} and {tuple(b.shape)}")
    ra, rb = top_region(a, top), top_region(b, top)
    union = (ra | rb).flatten(-2).sum(-1)
    both = (ra & rb).flatten(-2).sum(-1)
    return safe_divide(both.float(), union.float())
