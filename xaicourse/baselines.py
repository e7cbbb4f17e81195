"""Reference inputs checked once, the same way for every method that takes one (chapters 03, 08).

Integrated Gradients, DeepLIFT, KernelSHAP, LIME, GradientSHAP and the relevance methods all
explain ``x`` against a *baseline* (a reference input). Every one of them accepts the same forms,
refuses the same bad values with the same message, and follows ``x``'s device and dtype:

* :func:`as_baseline`: one reference per sample, shaped like ``x``: None (the all-zero input), a
  number, or a tensor shaped like ``x``, like one sample, or (1, ...).
* :func:`as_baselines`: a stack of K references (K, ...) for the methods that average over many
  (DeepLiftShap, GradientSHAP, multi-baseline IG).

NaN or inf is refused in every form (a number, one sample, the full shape): the attributions would
be NaN. On the meta device (shapes only) the value checks are skipped.
"""
from __future__ import annotations

import math
import numbers

import torch

from .inputs import check_types, has_values

__all__ = ["as_baseline", "as_baselines"]

_FINITE_HINT = "the attributions would be NaN; give a finite baseline (e.g. xc.ig.black_baseline(x, model_bundle))"


@check_types
def as_baseline(baseline, x: torch.Tensor) -> torch.Tensor:
    """The baseline of each sample, a tensor shaped like ``x`` on its device and dtype. Chapter 03.

    ``baseline``: None (zeros), a real number, or a tensor shaped like ``x`` (one per sample), like
    one sample ``x.shape[1:]`` or ``(1, *x.shape[1:])`` (one for all). TypeError for another kind of
    value, ValueError for a shape that does not fit or a NaN / inf value.
    """
    if baseline is None:
        return torch.zeros_like(x)
    if isinstance(baseline, numbers.Real) and not isinstance(baseline, bool):
        if not math.isfinite(baseline):
            raise ValueError(f"the baseline must be a finite number, got {baseline!r}: {_FINITE_HINT}")
        return torch.full_like(x, float(baseline))
    if not isinstance(baseline, torch.Tensor):
        raise TypeError(f"baseline must be None (zeros), a number or a tensor shaped like x or like one sample, "
                        f"got {type(baseline).__name__}")
    baseline = baseline.detach().to(device=x.device, dtype=x.dtype)
    if baseline.shape == x.shape[1:] or (baseline.ndim == x.ndim and len(baseline) == 1 and baseline.shape[1:] == x.shape[1:]):
        baseline = baseline.expand_as(x)
    elif baseline.shape != x.shape:
        raise ValueError(f"baseline shape {tuple(baseline.shape)} does not match x {tuple(x.shape)}: give one baseline "
                         f"per sample {tuple(x.shape)}, one for all {tuple(x.shape[1:])} or (1, ...), or a number")
    if has_values(baseline) and not torch.isfinite(baseline).all():
        raise ValueError(f"the baseline contains NaN or inf values: {_FINITE_HINT}")
    return baseline


@check_types
def as_baselines(baselines, x: torch.Tensor) -> torch.Tensor:
    """A stack of K >= 1 baselines (K, *x.shape[1:]) on ``x``'s device and dtype. Chapter 08.

    One baseline shaped like a sample is a stack of one. TypeError for a non-tensor, ValueError for
    a shape that is not (K, *x.shape[1:]) or a NaN / inf value.
    """
    sample = ", ".join(map(str, x.shape[1:]))
    if not isinstance(baselines, torch.Tensor):
        raise TypeError(f"baselines must be a tensor (K, {sample}) of K reference inputs, got {type(baselines).__name__}")
    if baselines.shape == x.shape[1:]:
        baselines = baselines.unsqueeze(0)
    if baselines.ndim != x.ndim or baselines.shape[1:] != x.shape[1:] or len(baselines) == 0:
        raise ValueError(f"baselines must be a stack (K, {sample}) of K >= 1 reference inputs, got shape "
                         f"{tuple(baselines.shape)}")
    baselines = baselines.detach().to(device=x.device, dtype=x.dtype)
    if has_values(baselines) and not torch.isfinite(baselines).all():
        raise ValueError(f"the baselines contain NaN or inf values: {_FINITE_HINT}")
    return baselines
