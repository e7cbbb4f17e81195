"""Helpers every metric family shares: input checks, the model's logits, rank similarity. Chapter 07.

Not public: the families (:mod:`~xaicourse.metrics.faithfulness`, ``localisation``, ``randomisation``,
``robustness``, ``complexity``, ``axiomatic``) import from here, and :func:`pixel_map` is re-exported
by :mod:`xaicourse.metrics`.
"""
from __future__ import annotations

import inspect

import numpy as np
import torch
from torch import nn

from ..batching import batched
from ..inputs import check_model, model_input, run_model
from ..maps import as_maps, minmax, to_map

__all__ = ["pixel_map"]


def pixel_map(attribution: torch.Tensor, absolute: bool = True) -> torch.Tensor:
    """One score per pixel, (B, H, W): channels summed (of ``|a|`` when ``absolute``). Chapter 07.

    A (B, H, W) map is returned as is (or its absolute value).
    """
    if not isinstance(attribution, torch.Tensor):
        raise TypeError(f"attribution must be a torch.Tensor, got {type(attribution).__name__}")
    if attribution.ndim not in (3, 4):
        raise ValueError(f"attribution must be (B, H, W) or (B, C, H, W), got shape {tuple(attribution.shape)}")
    if attribution.ndim == 4:
        return to_map(attribution.detach(), "abs_sum" if absolute else "sum")
    return attribution.detach().abs() if absolute else attribution.detach()


def check_images(model, x) -> torch.Tensor:
    """``x`` (B, C, H, W) checked, on the model's device and dtype."""
    return model_input(check_model(model), x)


def check_map(attribution, x: torch.Tensor, name: str = "attribution") -> torch.Tensor:
    """A finite (B, H, W) float map matching x (B, C, H, W), or a ValueError that says how to make one."""
    expected = (x.shape[0], *x.shape[-2:])
    if not isinstance(attribution, torch.Tensor) or tuple(attribution.shape) != expected:
        got = tuple(attribution.shape) if isinstance(attribution, torch.Tensor) else type(attribution).__name__
        raise ValueError(f"{name} must be one score per pixel, shape {expected} (B, H, W), got {got}; "
                         "reduce a (B, C, H, W) attribution with xc.metrics.pixel_map(a)")
    attribution = attribution.detach().float()
    if not torch.isfinite(attribution).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return attribution


def check_maps(maps, name: str = "maps") -> torch.Tensor:
    """A finite (B, H, W) float map stack, or a clear error (map-level metrics)."""
    maps = as_maps(maps, name)
    if maps.dtype == torch.bool:
        maps = maps.float()
    if not torch.isfinite(maps).all():
        raise ValueError(f"{name} contains NaN or inf values: fix the attribution before measuring it")
    return maps


def check_masks(attribution, masks) -> tuple[torch.Tensor, torch.Tensor]:
    """(maps (B, H, W), bool masks (B, H, W)) on the maps' device; every mask has an object pixel."""
    if not isinstance(masks, torch.Tensor) or masks.ndim != 3:
        raise ValueError("masks must be a bool tensor (B, H, W)")
    attribution = check_map(attribution, masks.unsqueeze(1))
    masks = masks.bool().to(attribution.device)
    empty = (~masks.flatten(1).any(dim=1)).nonzero()
    if len(empty):
        raise ValueError(f"mask {empty[0].item()} is empty: every sample needs at least one object pixel")
    return attribution, masks


@torch.no_grad()
def logits(model: nn.Module, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """The model's logits (B, classes) for x, in memory-bounded chunks."""
    return torch.cat([chunk for _, chunk in batched(len(x), lambda items: run_model(model, x[items]).float(),
                                                    model=model, batch_size=batch_size, grad=False)])


def call_method(method, model: nn.Module, x: torch.Tensor, targets: torch.Tensor, seed: int | None = None):
    """``method(model, x, targets)``, with ``seed=seed`` when the method takes a seed."""
    if seed is not None and takes_seed(method):
        return method(model, x, targets, seed=seed)
    return method(model, x, targets)


def takes_seed(method) -> bool:
    """Does ``method`` accept a ``seed`` keyword (a random method: SmoothGrad, a random map)?"""
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False
    return "seed" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def check_method(method) -> None:
    """TypeError unless ``method`` is callable as method(model, x, targets)."""
    if not callable(method):
        raise TypeError(f"method must be a function method(model, x, targets) returning an attribution, "
                        f"got {type(method).__name__}")


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two maps (flattened); a constant map has no ranking and gives 0."""
    from scipy.stats import spearmanr

    a, b = a.detach().flatten().cpu().double().numpy(), b.detach().flatten().cpu().double().numpy()
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """SSIM of two (H, W) maps, each min-max scaled to [0, 1]."""
    from skimage.metrics import structural_similarity

    side = min(a.shape)
    win = min(7, side if side % 2 else side - 1)
    a, b = (minmax(m.detach().cpu().float()[None])[0].numpy() for m in (a, b))
    return float(structural_similarity(a, b, data_range=1.0, win_size=win))
