"""Helpers every metric family shares: input checks, the model's logits, rank similarity. Chapter 07.

Not public: the families (:mod:`~xaicourse.metrics.faithfulness`, ``localisation``, ``randomisation``,
``robustness``, ``complexity``, ``axiomatic``) import from here, and :func:`pixel_map` and
:class:`NoMapWarning` are re-exported by :mod:`xaicourse.metrics`.

The rules that make a metric an instrument live here, once:

* **Ties are averaged** (:func:`tie_groups`, :func:`top_share`). "The top c pixels" of a map with
  ties is ambiguous; each pixel gets its *expected* membership under uniformly random
  tie-breaking: 1 above the tied group that straddles c, 0 below it, and (c - above) / size inside
  it. Nothing depends on the pixel index, so rotating or flipping map and image together changes
  no score, exactly; a map without ties gets the usual 0/1 selection.
* **An empty or constant map is no map** (:func:`no_map`): it ranks no pixel above another, so the
  metric returns NaN for that sample and a :class:`NoMapWarning` names the sample and says why.
* **Patch maps are scored at their native resolution** (:func:`native_masks`, :func:`expand_map`):
  a (B, h, w) map whose size divides the image's (H, W) is a map of (H/h) x (W/w) patches; a mask
  becomes each patch's share of object pixels, a perturbation removes whole patches.
"""
from __future__ import annotations

import inspect
import warnings

import numpy as np
import torch
from torch import nn

from ..batching import batched
from ..inputs import check_model, model_input, run_model
from ..maps import as_maps, minmax, to_map

__all__ = ["NoMapWarning", "pixel_map"]


class NoMapWarning(UserWarning):
    """A metric met an empty (all-zero) or constant map: that sample scores NaN ("no map"). Chapter 07."""


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
    """A finite (B, H, W) float map matching x (B, C, H, W), or a ValueError that says how to make one.

    A patch map (B, h, w) whose size divides (H, W) is expanded to (H, W), each value over its patch
    (:func:`expand_map`): with ties averaged it scores as the patch map itself.
    """
    attribution = native_map(attribution, (x.shape[0], *x.shape[-2:]), name)
    return expand_map(attribution, x.shape[-2:])


def native_map(attribution, expected: tuple, name: str = "attribution") -> torch.Tensor:
    """A finite float map (B, h, w) with h and w dividing ``expected`` = (B, H, W), or a ValueError."""
    b, h, w = expected
    shape = tuple(attribution.shape) if isinstance(attribution, torch.Tensor) else None
    if shape is None or len(shape) != 3 or shape[0] != b:
        got = shape if shape is not None else type(attribution).__name__
        raise ValueError(f"{name} must be one score per pixel, shape {tuple(expected)} (B, H, W), got {got}; "
                         "reduce a (B, C, H, W) attribution with xc.metrics.pixel_map(a)")
    if shape[1:] != (h, w) and (shape[1] > h or shape[2] > w or h % shape[1] or w % shape[2]):
        raise ValueError(f"{name} of shape {shape} must be one score per pixel, shape {tuple(expected)} (B, H, W), "
                         f"or a patch map whose size divides {h} x {w} (e.g. 14 x 14 for 224 x 224), "
                         f"but {shape[1]} x {shape[2]} does not divide it: resize the map to the image's size")
    attribution = attribution.detach().float()
    if not torch.isfinite(attribution).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return attribution


def expand_map(maps: torch.Tensor, size) -> torch.Tensor:
    """(B, h, w) maps repeated over their patches to (B, H, W) (nearest-neighbour upsampling by whole blocks)."""
    h, w = maps.shape[-2:]
    if (h, w) == tuple(size):
        return maps
    return maps.repeat_interleave(size[0] // h, dim=-2).repeat_interleave(size[1] // w, dim=-1)


def native_masks(masks: torch.Tensor, size) -> torch.Tensor:
    """Masks (B, H, W) as each patch's share of object pixels at the map's ``size`` (h, w), float64.

    At the mask's own size this is the mask as 0/1 floats.
    """
    masks = masks.double()
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    block = (masks.shape[-2] // size[0], masks.shape[-1] // size[1])
    return torch.nn.functional.avg_pool2d(masks[:, None], block)[:, 0]


def constant(maps: torch.Tensor) -> torch.Tensor:
    """Bool (B,): is each map (B, ...) constant (all-zero included)?"""
    flat = maps.flatten(1)
    return flat.amax(dim=1) == flat.amin(dim=1)


def warn_no_map(metric: str, empty: torch.Tensor, why: str = "", outcome: str = "scored NaN") -> None:
    """Warn (:class:`NoMapWarning`) that the samples where ``empty`` (B,) is True have no map: why, and the
    ``outcome`` (by default: they scored NaN)."""
    samples = empty.nonzero().flatten().tolist()
    if not samples:
        return
    named = ", ".join(map(str, samples[:10])) + (f" and {len(samples) - 10} more" if len(samples) > 10 else "")
    which = f"sample {named} has" if len(samples) == 1 else f"samples {named} have"
    why = why or ("a constant map (all-zero included): it ranks no pixel above another, so there is no map to "
                  "measure")
    warnings.warn(f"{metric}: {which} {why}; {outcome}. An all-zero map means the method found no evidence "
                  "(dead units, a saturated output, a layer the target cannot reach): look at the map before "
                  "measuring it", NoMapWarning, stacklevel=3)


def no_map(metric: str, maps: torch.Tensor) -> torch.Tensor:
    """Bool (B,): which maps are constant ("no map"); warns once, naming them."""
    empty = constant(maps)
    if empty.any():
        values = sorted({float(v) for v in maps.flatten(1)[empty, 0].tolist()})
        shown = ", ".join(f"{v:g}" for v in values[:3]) + (", ..." if len(values) > 3 else "")
        warn_no_map(metric, empty, f"a constant map (every pixel {shown}): it ranks no pixel above another, so "
                                   "there is no map to measure")
    return empty


def tie_groups(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each pixel of maps (B, ...), flattened to (B, N): (how many pixels rank strictly above it, how many
    share its value, itself included), both int64 (B, N). Higher value = higher rank."""
    flat = maps.flatten(1).contiguous()
    ascending = flat.sort(dim=1).values
    right = torch.searchsorted(ascending, flat, right=True)
    return flat.shape[1] - right, right - torch.searchsorted(ascending, flat, right=False)


def top_share(above: torch.Tensor, tied: torch.Tensor, count) -> torch.Tensor:
    """Each pixel's expected membership in the top ``count`` pixels under random tie-breaking, in [0, 1].

    ``above``, ``tied``: from :func:`tie_groups` (rows chosen by the caller); ``count``: a number or a
    tensor broadcastable against them (e.g. (S, 1)), a whole or fractional number of pixels. The
    shares of one map sum to ``count``; a pixel strictly inside the top gets 1, one below it 0.
    """
    count = torch.as_tensor(count, dtype=torch.float64, device=above.device)
    return ((count - above.double()) / tied.double()).clamp(0.0, 1.0)
def check_maps(maps, name: str = "maps") -> torch.Tensor:
    """A finite (B, H, W) float map stack, or a clear error (map-level metrics)."""
    maps = as_maps(maps, name)
    if maps.dtype == torch.bool:
        maps = maps.float()
    if not torch.isfinite(maps).all():
        raise ValueError(f"{name} contains NaN or inf values: fix the attribution before measuring it")
    return maps


def check_masks(attribution, masks) -> tuple[torch.Tensor, torch.Tensor]:
    """(maps (B, h, w), bool masks (B, H, W)) on the maps' device; every mask has an object pixel.

    The maps are at the masks' size or a patch map whose size divides it (:func:`native_map`).
    """
    if not isinstance(masks, torch.Tensor):
        raise TypeError(f"masks must be a bool tensor (B, H, W), got {type(masks).__name__}")
    if masks.ndim != 3:
        raise ValueError("masks must be a bool tensor (B, H, W)")
    attribution = native_map(attribution, tuple(masks.shape))
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
    """Spearman rank correlation of two maps (flattened), ties given their average rank; NaN when a map is
    constant (it has no ranking: "no map"). The caller warns, naming the sample."""
    from scipy.stats import spearmanr

    a, b = a.detach().flatten().cpu().double().numpy(), b.detach().flatten().cpu().double().numpy()
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """SSIM of two (H, W) maps, each min-max scaled to [0, 1]; NaN when a map is constant ("no map")."""
    from skimage.metrics import structural_similarity

    if bool(constant(a[None])) or bool(constant(b[None])):
        return float("nan")
    side = min(a.shape)
    win = min(7, side if side % 2 else side - 1)
    a, b = (minmax(m.detach().cpu().float()[None])[0].numpy() for m in (a, b))
    return float(structural_similarity(a, b, data_range=1.0, win_size=win))
