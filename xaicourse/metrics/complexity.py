"""Complexity: how concentrated is a map? Chapter 07.

Map-level metrics on ``maps`` (B, H, W), one value per sample, on the absolute values (the sign of
an attribution says nothing about how spread out it is):

* :func:`sparseness` (Chalasani et al. 2020): the Gini index of |map|: 0 for a uniform map, close to
  1 for a single bright pixel.
* :func:`effective_complexity` (Nguyen & Martinez 2020): how many pixels exceed a threshold, relative
  to the map's maximum.
* :func:`entropy_complexity` (Bhatt et al. 2020, Quantus's "Complexity"): the entropy of the pixels'
  shares of the total |map|: log(N) for a uniform map, 0 for one pixel.

A concise map is easier to read; it is not more faithful for that. An empty or constant map has
no shape to measure: it scores NaN with a :class:`~xaicourse.metrics.NoMapWarning` (a uniform map
would otherwise score as "perfectly spread"). None of the three depends on the scan order. A patch
map is best measured at its native resolution (B, h, w): the Gini index is the same for the map
upsampled by whole blocks, but the entropy grows by log(k^2) and the count by k^2 for k x k
blocks, since both count pixels.
"""
from __future__ import annotations

import torch

from ..inputs import check_number
from ._common import check_maps, no_map

__all__ = ["effective_complexity", "entropy_complexity", "sparseness"]


def sparseness(maps: torch.Tensor) -> torch.Tensor:
    """The Gini index of each |map|, (B,) in [0, 1): 0 = uniform, near 1 = one pixel. Chapter 07.

    G = sum_i (2 i - N - 1) a_(i) / (N sum_i a_(i)) over the N pixels sorted ascending (i = 1..N)
    (tied values give the same sum in any order). A map whose |values| are constant (all-zero
    included) scores NaN. Quantus's Sparseness adds 1e-7 to every value first (differences of order
    1e-7 / mean|map|).
    """
    flat = check_maps(maps).flatten(1).abs().double()
    empty = no_map("sparseness", flat)
    n = flat.shape[1]
    ordered = flat.sort(dim=1).values
    weights = 2 * torch.arange(1, n + 1, device=flat.device, dtype=flat.dtype) - n - 1
    total = ordered.sum(dim=1)
    gini = (weights * ordered).sum(dim=1) / (n * torch.where(total > 0, total, torch.ones_like(total)))
    return torch.where(empty, torch.nan, gini).float()


def effective_complexity(maps: torch.Tensor, eps: float = 1e-5, relative: bool = True) -> torch.Tensor:
    """The number of pixels whose |value| exceeds ``eps``, (B,) float (whole numbers, NaN for no map). Chapter 07.

    With ``relative`` the threshold is ``eps`` times the map's largest |value| (as Quantus, which
    divides each map by its maximum first); otherwise ``eps`` itself. A map whose |values| are
    constant (all-zero included) scores NaN.
    """
    eps = check_number("eps", eps, minimum=0, hint=" (the threshold on |value|)")
    flat = check_maps(maps).flatten(1).abs()
    empty = no_map("effective_complexity", flat)
    threshold = eps * flat.amax(dim=1, keepdim=True) if relative else torch.full_like(flat[:, :1], eps)
    return torch.where(empty, torch.nan, (flat > threshold).sum(dim=1).float())


def entropy_complexity(maps: torch.Tensor) -> torch.Tensor:
    """Entropy of each pixel's share of the total |map|, (B,) in nats, from 0 to log(H W). Chapter 07.

    p_i = |a_i| / sum_j |a_j|, H = -sum_i p_i log p_i (0 log 0 = 0). A map whose |values| are
    constant (all-zero included) scores NaN. Quantus's Complexity computes log(p + 1e-12), a
    difference below 1e-10 per pixel.
    """
    flat = check_maps(maps).flatten(1).abs().double()
    empty = no_map("entropy_complexity", flat)
    total = flat.sum(dim=1, keepdim=True)
    p = flat / torch.where(total > 0, total, torch.ones_like(total))
    entropy = -(torch.where(p > 0, p * p.clamp_min(1e-300).log(), torch.zeros_like(p))).sum(dim=1)
    return torch.where(empty, torch.nan, entropy).float()
