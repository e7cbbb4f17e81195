"""Localisation: does the map agree with a ground-truth object mask? Chapter 07.

Map-level metrics: ``maps`` (B, H, W) and bool ``masks`` (B, H, W) in, one float per sample out.

* :func:`pointing_game` (Zhang et al. 2016): does the maximum fall on the object?
* :func:`mask_energy` (Wang et al. 2020, Score-CAM's energy-based pointing game): the share of the
  *positive* mass inside the mask.
* :func:`relevance_mass_accuracy` (Arras et al. 2022, CLEVR-XAI): the share of the map's total
  (signed) mass inside the mask, as Quantus's RelevanceMassAccuracy.
* :func:`relevance_rank_accuracy` (Arras et al. 2022): of the K highest-ranked pixels, K the mask's
  size, the share that lies inside the mask.

Three rules hold for all four (see :mod:`xaicourse.metrics._common`):

* **No scan order.** Tied pixels are averaged: a score is its expectation under random
  tie-breaking, so rotating or flipping map and mask together changes nothing.
* **No map, no score.** A constant map (all-zero included) scores NaN with a
  :class:`~xaicourse.metrics.NoMapWarning` naming the sample; average with ``torch.nanmean``.
* **Patch maps at their native resolution.** ``maps`` may be (B, h, w) with h, w dividing the
  masks' H, W (a ViT's 14 x 14 patches, Grad-CAM's 7 x 7 cells): each patch counts by its share
  of object pixels. The score equals that of the map upsampled to the masks' size by whole blocks.
"""
from __future__ import annotations

import numpy as np
import torch

from ..inputs import check_number
from ._common import check_masks, native_masks, no_map, tie_groups, top_share, warn_no_map

__all__ = ["mask_energy", "pointing_game", "relevance_mass_accuracy", "relevance_rank_accuracy"]


def _within(masks: torch.Tensor, tolerance: float) -> torch.Tensor:
    """Bool (B, H, W): pixels at most ``tolerance`` pixels (Euclidean) from a mask pixel."""
    if tolerance == 0:
        return masks
    from scipy.ndimage import distance_transform_edt

    near = [distance_transform_edt(~m) <= tolerance for m in masks.cpu().numpy()]
    return torch.from_numpy(np.stack(near)).to(masks.device)


def pointing_game(attribution: torch.Tensor, masks: torch.Tensor, tolerance: float = 0.0) -> torch.Tensor:
    """Does the map's maximum fall on the object? Float (B,) in [0, 1]; ``torch.nanmean`` is the hit rate. Chapter 07.

    ``attribution`` (B, H, W) or a patch map (B, h, w) whose size divides the masks'; ``masks``
    (B, H, W) bool. A maximum hits when it lies within ``tolerance`` pixels (Euclidean, at the
    masks' resolution) of a mask pixel; Zhang et al. use 15 pixels at 224.

    Ties are averaged, never decided by the scan order: the score is the share of the maximal
    pixels that hit, the expected hit when one of the tied maxima is picked at random (one maximum:
    1.0 or 0.0, as Quantus's PointingGame; two, one on the object: 0.5). A patch map's patch hits by
    the share of its pixels within ``tolerance`` of the object, so a patch map scores what its
    block-upsampled version scores; with ``tolerance`` at least the patch diagonal (22.7 for 16 x 16
    patches) every patch that touches the object hits fully. A constant map points nowhere: NaN and
    a :class:`~xaicourse.metrics.NoMapWarning`.
    """
    attribution, masks = check_masks(attribution, masks)
    tolerance = check_number("tolerance", tolerance, minimum=0, hint=" (pixels from the object)")
    near = native_masks(_within(masks, tolerance), attribution.shape[-2:]).flatten(1)
    flat = attribution.flatten(1)
    peaks = (flat == flat.amax(dim=1, keepdim=True)).double()
    hit = (peaks * near).sum(dim=1) / peaks.sum(dim=1)
    return torch.where(no_map("pointing_game", attribution), torch.nan, hit).float()


def mask_energy(attribution: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of the positive attribution that falls inside the mask, (B,) in [0, 1]. Chapter 07.

    The energy-based pointing game (Score-CAM, Wang et al. 2020). ``attribution`` (B, H, W) or a
    patch map (B, h, w) (each patch weighted by its share of object pixels); ``masks`` (B, H, W).
    A constant map, and a map with no positive value (no evidence for the class), scores NaN with a
    :class:`~xaicourse.metrics.NoMapWarning`. (A uniform map would score the mask's area share, the
    chance level: compare with a random map instead.)
    """
    attribution, masks = check_masks(attribution, masks)
    share = native_masks(masks, attribution.shape[-2:])
    positive = attribution.double().clamp(min=0)
    total = positive.flatten(1).sum(dim=1)
    inside = (positive * share).flatten(1).sum(dim=1)
    empty = no_map("mask_energy", attribution)
    none = (total == 0) & ~empty
    warn_no_map("mask_energy", none, "no positive value: no evidence for the class to locate")
    return torch.where(empty | none, torch.nan, inside / torch.where(total > 0, total, 1.0)).float()


def relevance_mass_accuracy(attribution: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Relevance inside the mask over the relevance of the whole map, (B,). Chapter 07.

    Arras et al. (2022): sum(R * mask) / sum(R), with the map's values as given (pass
    :func:`~xaicourse.metrics.pixel_map`'s absolute map for a share in [0, 1]; signed values can
    give a share outside [0, 1], as in Quantus). A patch map (B, h, w) weights each patch by its
    share of object pixels. A constant map, and a map summing to 0, score NaN with a
    :class:`~xaicourse.metrics.NoMapWarning`.
    """
    attribution, masks = check_masks(attribution, masks)
    share = native_masks(masks, attribution.shape[-2:])
    values = attribution.double()
    total = values.flatten(1).sum(dim=1)
    inside = (values * share).flatten(1).sum(dim=1)
    empty = no_map("relevance_mass_accuracy", attribution)
    zero = (total == 0) & ~empty
    warn_no_map("relevance_mass_accuracy", zero, "a map that sums to 0: no relevance to share out")
    return torch.where(empty | zero, torch.nan, inside / torch.where(total != 0, total, 1.0)).float()


def relevance_rank_accuracy(attribution: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Of the K top-ranked pixels (K = the mask's size), the share inside the mask, (B,) in [0, 1]. Chapter 07.

    Arras et al. (2022). Ties are averaged: a tied group that straddles rank K counts by its
    expected share under random tie-breaking. A patch map (B, h, w) ranks patches: K is the mask's
    size in patches (fractional), each patch counts by its share of object pixels. A constant map
    scores NaN with a :class:`~xaicourse.metrics.NoMapWarning`; a random map's expected score is the
    mask's area share.
    """
    attribution, masks = check_masks(attribution, masks)
    share = native_masks(masks, attribution.shape[-2:]).flatten(1)
    size = share.sum(dim=1, keepdim=True)                     # K, in patches (pixels for a full-size map)
    above, tied = tie_groups(attribution)
    hits = (top_share(above, tied, size) * share).sum(dim=1)
    return torch.where(no_map("relevance_rank_accuracy", attribution), torch.nan, hits / size[:, 0]).float()
