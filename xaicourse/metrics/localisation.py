"""Localisation: does the map agree with a ground-truth object mask? Chapter 07.

Map-level metrics: ``maps`` (B, H, W) and bool ``masks`` (B, H, W) in, one value per sample out.

* :func:`pointing_game` (Zhang et al. 2016): does the maximum fall on the object?
* :func:`mask_energy` (Wang et al. 2020, Score-CAM's energy-based pointing game): the share of the
  *positive* mass inside the mask.
* :func:`relevance_mass_accuracy` (Arras et al. 2022, CLEVR-XAI): the share of the map's total
  (signed) mass inside the mask, as Quantus's RelevanceMassAccuracy.
* :func:`relevance_rank_accuracy` (Arras et al. 2022): of the K highest-ranked pixels, K the mask's
  size, the share that lies inside the mask.
"""
from __future__ import annotations

import torch

from ..maps import mask_share
from ._common import check_masks

__all__ = ["mask_energy", "pointing_game", "relevance_mass_accuracy", "relevance_rank_accuracy"]


def pointing_game(attribution: torch.Tensor, masks: torch.Tensor, tolerance: float = 0.0) -> torch.Tensor:
    """Does the map's maximum fall on the object? Bool (B,); ``.float().mean()`` is the hit rate. Chapter 07.

    ``attribution`` and ``masks`` are (B, H, W). A hit is a maximum within ``tolerance`` pixels
    (Euclidean) of a mask pixel; Zhang et al. use 15 pixels at 224. Ties go to the first maximum in
    row-major order; a constant map points nowhere and counts as a miss.
    """
    attribution, masks = check_masks(attribution, masks)
    b, h, w = masks.shape
    flat = attribution.reshape(b, -1)
    peak = flat.argmax(dim=1)
    rows, cols = torch.meshgrid(torch.arange(h, device=masks.device), torch.arange(w, device=masks.device), indexing="ij")
    dist2 = (rows - (peak // w).view(-1, 1, 1)) ** 2 + (cols - (peak % w).view(-1, 1, 1)) ** 2
    near = (dist2 <= tolerance**2) & masks
    return near.flatten(1).any(dim=1) & (flat.amax(dim=1) > flat.amin(dim=1))


def mask_energy(attribution: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of the positive attribution that falls inside the mask, (B,) in [0, 1]. Chapter 07.

    The energy-based pointing game (Score-CAM, Wang et al. 2020). A map with no positive value
    scores 0. A uniform map scores the mask's area share, the chance level.
    """
    attribution, masks = check_masks(attribution, masks)
    return mask_share(attribution, masks)


def relevance_mass_accuracy(attribution: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Relevance inside the mask over the relevance of the whole map, (B,). Chapter 07.

    Arras et al. (2022): sum(R * mask) / sum(R), with the map's values as given (pass
    :func:`~xaicourse.metrics.pixel_map`'s absolute map for a share in [0, 1]; signed values can
    give a share outside [0, 1], as in Quantus). A map summing to 0 scores 0. A uniform map scores
    the mask's area share, the chance level.
    """
    attribution, masks = check_masks(attribution, masks)
    total = attribution.flatten(1).sum(dim=1)
    inside = (attribution * masks).flatten(1).sum(dim=1)
    return torch.where(total != 0, inside / torch.where(total != 0, total, torch.ones_like(total)), torch.zeros_like(total))


def relevance_rank_accuracy(attribution: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Of the K top-ranked pixels (K = the mask's size), the share inside the mask, (B,) in [0, 1]. Chapter 07.

    Arras et al. (2022). Ties are broken in row-major order (a stable sort). A uniform map ranks
    pixels in index order, so compare with a random map, whose expected score is the mask's area
    share.
    """
    attribution, masks = check_masks(attribution, masks)
    b = attribution.shape[0]
    order = attribution.reshape(b, -1).sort(dim=1, descending=True, stable=True).indices
    flat = masks.reshape(b, -1)
    sizes = flat.sum(dim=1)
    top = torch.arange(flat.shape[1], device=flat.device)[None] < sizes[:, None]
    hits = (flat.gather(1, order) & top).sum(dim=1)
    return hits.float() / sizes.float()
