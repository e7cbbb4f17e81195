"""Integrated Gradients: attributions that add up to the change of the model's output.

For an input ``x``, a baseline ``x'`` and the straight path ``x' + alpha (x - x')``,

    IG_i(x) = (x_i - x'_i) * integral_0^1 dF(x' + alpha (x - x')) / dx_i  d alpha

and the attributions sum to ``F(x) - F(x')`` (*completeness*). The integral is approximated by a
quadrature rule: nodes ``alpha_k`` with weights ``w_k``. Taught in chapter 03.

* :func:`integrated_gradients` evaluates the path in chunks sized from a memory budget and sums the
  weighted gradients in a fixed order, so the result does not depend on the chunk size.
* :func:`completeness_delta` measures how far the sum of the attributions is from ``F(x) - F(x')``;
  :func:`steps_for_tolerance` finds the smallest step count that brings it under a tolerance.
* Baselines (:func:`black_baseline`, :func:`white_baseline`, :func:`noise_baseline`,
  :func:`blur_baseline`, :func:`make_baseline`) live in the model's *input space*: for a model that
  normalises pixels with ``(p - mean) / std``, a black pixel is ``-mean / std``, not 0.
  :func:`multi_baseline_ig` averages IG over several baselines (expected-gradients style).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from . import batching
from .baselines import as_baseline
from .batching import batched
from .guarantees import check_conservation
from .inputs import check_choice, check_int, check_types, explainer, generator, has_values, model_input, run_model
from .models import ImageModel, Normalization, VisionTransformer
from .numerics import safe_divide
from .targets import resolve_targets, select

__all__ = ["BASELINES", "RULES", "black_baseline", "blur_baseline", "completeness_delta",
           "from_pixels", "integrated_gradients", "make_baseline", "multi_baseline_ig", "noise_baseline", "path",
           "path_derivative", "quadrature", "steps_for_tolerance", "white_baseline"]

RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")
BASELINES = ("black", "white", "noise", "blur", "zero")


# --------------------------------------------------------------------------------------------
# Quadrature rules and the path
# --------------------------------------------------------------------------------------------
def quadrature(method: str, n_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes ``alphas`` (n_steps,) in [0, 1] and weights (n_steps,) summing to 1, float64. Chapter 03.

    ``riemann_trapezoid`` uses the textbook trapezoid rule: nodes ``linspace(0, 1, n)``, step
    ``1 / (n - 1)`` with half weight at both ends, so the weights sum to 1. Captum's
    ``riemann_trapezoid`` uses step ``1 / n`` on the same nodes: its weights sum to ``(n - 1) / n``
    and its attributions are ``(n - 1) / n`` times ours (2% short at 50 steps).
    """
    check_choice("method", method, RULES)
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)):
        raise TypeError(f"n_steps must be an int, got {type(n_steps).__name__}")
    least = 2 if method == "riemann_trapezoid" else 1
    if n_steps < least:
        raise ValueError(f"n_steps must be at least {least} for {method}, got {n_steps}")
    n = int(n_steps)
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return torch.from_numpy(0.5 * (nodes + 1)), torch.from_numpy(0.5 * weights)
    k = torch.arange(n, dtype=torch.float64)
    weights = torch.full((n,), 1.0 / n, dtype=torch.float64)
    if method == "riemann_left":
        alphas = k / n
    elif method == "riemann_right":
        alphas = (k + 1) / n
    elif method == "riemann_middle":
        alphas = (k + 0.5) / n
    else:
        alphas = k / (n - 1)
        weights = torch.full((n,), 1.0 / (n - 1), dtype=torch.float64)
        weights[[0, -1]] /= 2
    return alphas, weights


@check_types
def path(x: torch.Tensor, baseline: torch.Tensor, alphas) -> torch.Tensor:
    """The interpolated inputs ``baseline + alpha * (x - baseline)``: shape (len(alphas), *x.shape). Chapter 03.

    ``alphas`` is a sequence or 1-D tensor; alpha = 0 gives the baseline, alpha = 1 the input.
    """
    if baseline.shape != x.shape:
        raise ValueError(f"baseline shape {tuple(baseline.shape)} does not match x {tuple(x.shape)}")
    alphas = torch.as_tensor(alphas, dtype=x.dtype, device=x.device).reshape(-1, *([1] * x.ndim))
    return baseline.unsqueeze(0) + alphas * (x - baseline).unsqueeze(0)


# --------------------------------------------------------------------------------------------
# Integrated Gradients
# --------------------------------------------------------------------------------------------
@explainer
def integrated_gradients(model: nn.Module, x: torch.Tensor, target=None, *, baseline=None, n_steps: int = 50,
                         method: str = "gausslegendre", batch_size: int | None = None, return_delta: bool = False):
    """Integrated Gradients of ``model``'s target logit: a tensor shaped like ``x`` (B, ...).

    ``target``: None (each sample's top class), an int, or one class per sample. ``baseline``: None
    (the all-zero input), a number, or a tensor shaped like ``x`` or like one sample (one baseline
    per sample or one for all). ``method``: one of :data:`RULES`. ``batch_size``: how many path points
    of one sample go through the model at once; None sizes chunks from :data:`xaicourse.batching.DEFAULT_BUDGET_BYTES`
    (the first node is run alone while counting the bytes autograd keeps).

    ``return_delta=True`` returns ``(attributions, delta)`` as Captum does, where ``delta`` (B,) is
    :func:`completeness_delta`. Completeness is checked on every call: the result carries
    ``attributions.conservation`` (:class:`xaicourse.guarantees.Conservation`), and a sample whose
    relative error exceeds 5 % gets a :class:`~xaicourse.guarantees.ConservationWarning` (one
    forward pass of the baseline, about 1 % of the cost of 50 steps). Explain the logit, not the probability:
    the softmax saturates, and IG of a probability mixes in every other class. The model is left as
    found (mode, ``requires_grad``, ``.grad``); no hooks are used. Taught in chapter 03.
    """
    x = model_input(model, x, image=False)
    baseline = as_baseline(baseline, x)
    alphas, weights = quadrature(method, n_steps)
    if batch_size is not None:
        check_int("batch_size", batch_size)
    with torch.no_grad():
        logits = run_model(model, x)
        targets = resolve_targets(target, logits)
        change = (select(logits, targets) - select(run_model(model, baseline), targets)).double()
    total = torch.zeros_like(x, dtype=torch.float64)
    for chunk, grads in _chunked_path_gradients(model, x, baseline, targets, alphas, batch_size):
        total += torch.tensordot(weights[chunk].to(x.device), grads.double(), dims=1)
    attributions = ((x - baseline).double() * total).to(x.dtype)
    check_conservation(attributions, attributions.detach().double().flatten(1).sum(1), change,
                       method="integrated_gradients", property="completeness", stacklevel=4,
                       causes=f"Too few steps for this input ({n_steps} {method}): raise n_steps, or find enough with "
                              "xc.ig.steps_for_tolerance (chapter 03); a model that is not differentiable almost "
                              "everywhere (a hard threshold, an argmax) cannot converge.")
    if return_delta:
        return attributions, attributions.conservation.delta.to(x.device)
    return attributions


def _chunked_path_gradients(model, x, baseline, targets, alphas, batch_size):
    """Yield (slice of alphas, their gradients (k, *x.shape)) in order, in memory-bounded chunks."""
    def gradients(chunk: slice):
        points = path(x, baseline, alphas[chunk]).reshape(-1, *x.shape[1:]).detach().requires_grad_(True)
        with torch.enable_grad():
            score = select(run_model(model, points), targets.repeat(chunk.stop - chunk.start)).sum()
            (grads,) = torch.autograd.grad(score, points)
        return grads.reshape(chunk.stop - chunk.start, *x.shape)

    yield from batched(len(alphas), gradients, model=model, batch_size=batch_size, budget=batching.DEFAULT_BUDGET_BYTES,
                       desc="IG path points")


@explainer(zero_warning=False)
def path_derivative(model: nn.Module, x: torch.Tensor, target=None, *, baseline=None, alphas,
                    batch_size: int | None = None) -> torch.Tensor:
    """``d F(x' + alpha (x - x')) / d alpha`` at each alpha: shape (len(alphas), B).

    This 1-D integrand is the gradient along the path dotted with ``x - x'``. Every rule's sum of
    IG attributions is ``sum_k w_k * path_derivative[k]``, so one evaluation on a fine grid shows
    how each rule converges without recomputing full attributions. Chapter 03.
    """
    x = model_input(model, x, image=False)
    baseline = as_baseline(baseline, x)
    alphas = torch.as_tensor(alphas, dtype=torch.float64).reshape(-1)
    if len(alphas) == 0:
        raise ValueError("alphas is empty: give the points of the path to evaluate, e.g. torch.linspace(0, 1, 101)")
    with torch.no_grad():
        targets = resolve_targets(target, run_model(model, x))
    return torch.cat([(grads * (x - baseline)).flatten(2).sum(2).double()
                      for _, grads in _chunked_path_gradients(model, x, baseline, targets, alphas, batch_size)])


@explainer(zero_warning=False)
def completeness_delta(model: nn.Module, x: torch.Tensor, attributions: torch.Tensor, target=None, *,
                       baseline=None, relative: bool = False) -> torch.Tensor:
    """``sum(attributions) - (F(x) - F(baseline))`` per sample, shape (B,).

    With ``relative=True`` the delta is divided by ``|F(x) - F(baseline)|`` and made absolute (a
    sample whose output does not change keeps its absolute delta). Two forward passes. Chapter 03.
    """
    x = model_input(model, x, image=False)
    baseline = as_baseline(baseline, x)
    if not isinstance(attributions, torch.Tensor):
        raise TypeError(f"attributions must be a tensor shaped like x, got {type(attributions).__name__}")
    if attributions.shape != x.shape:
        raise ValueError(f"attributions {tuple(attributions.shape)} must have the input's shape {tuple(x.shape)}")
    with torch.no_grad():
        logits = run_model(model, x)
        targets = resolve_targets(target, logits)
        change = (select(logits, targets) - select(run_model(model, baseline), targets)).double()
    delta = attributions.detach().double().reshape(len(x), -1).sum(1) - change
    if relative:
        scale = change.abs()
        delta = torch.where(scale > 0, safe_divide(delta.abs(), scale), delta.abs())
    return delta


def steps_for_tolerance(model: nn.Module, x: torch.Tensor, target=None, tol: float = 0.05, *, baseline=None,
                        method: str = "gausslegendre", max_steps: int = 512, batch_size: int | None = None) -> int:
    """The smallest ``n_steps`` whose relative completeness error is below ``tol`` for every sample.

    Doubles the step count from 4 until the error is under ``tol``, then bisects between the last
    failing and the first passing count. The error is not strictly monotone in ``n_steps``, so this
    is the smallest count found by that search. Raises ValueError when ``max_steps`` is not enough.
    Chapter 03.
    """
    if not tol > 0:
        raise ValueError(f"tol is a relative error and must be > 0, got {tol}")
    least = 2 if method == "riemann_trapezoid" else 1

    def error(n):
        attr = integrated_gradients(model, x, target, baseline=baseline, n_steps=n, method=method, batch_size=batch_size)
        return completeness_delta(model, x, attr, target, baseline=baseline, relative=True).max().item()

    low, high = least - 1, max(4, least)
    while (err := error(high)) >= tol:
        if high >= max_steps:
            raise ValueError(f"{method} does not reach a relative completeness error of {tol} within max_steps={max_steps} "
                             f"(error {err:.3g} at {high} steps): raise max_steps or tol")
        low, high = high, min(2 * high, max_steps)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if error(mid) < tol else (mid, high)
    return high


@check_types
def multi_baseline_ig(model: nn.Module, x: torch.Tensor, target=None, *, baselines: torch.Tensor, **ig_kwargs) -> torch.Tensor:
    """IG averaged over several baselines (K, *x.shape[1:]): a tensor shaped like ``x``.

    With random baselines drawn from the data this is the deterministic form of *expected
    gradients*; completeness holds against the mean baseline output,
    ``sum(attr) = F(x) - mean_k F(baseline_k)``. ``ig_kwargs`` go to :func:`integrated_gradients`.
    Chapter 03.
    """
    if baselines.ndim != x.ndim or baselines.shape[1:] != x.shape[1:]:
        raise ValueError(f"baselines must be a stack (K, {', '.join(map(str, x.shape[1:]))}) of single inputs, got {tuple(baselines.shape)}")
    attrs = [integrated_gradients(model, x, target, baseline=b, **ig_kwargs) for b in baselines]
    return torch.stack(attrs).mean(0)


# --------------------------------------------------------------------------------------------
# Baselines, in the model's input space
# --------------------------------------------------------------------------------------------
def _mean_std(normalization, x):
    """Per-channel (mean, std) shaped to broadcast over x (B, C, H, W); identity for None.

    ``normalization``: None, a :class:`xaicourse.models.Normalization`, an image model bundle (its
    ``normalization`` is used) or a (mean, std) pair of per-channel values.
    """
    if normalization is None:
        return 0.0, 1.0
    if isinstance(normalization, (ImageModel, VisionTransformer)):
        normalization = normalization.normalization
    if isinstance(normalization, Normalization):
        mean, std = normalization.mean, normalization.std
    elif isinstance(normalization, (tuple, list)) and len(normalization) == 2:
        mean, std = normalization
    else:
        raise TypeError(f"normalization must be None, a Normalization, an image model or a (mean, std) pair, got "
                        f"{type(normalization).__name__}")
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean, std = (torch.as_tensor(v, dtype=x.dtype, device=x.device).reshape(shape) for v in (mean, std))
    if mean.numel() not in (1, x.shape[1]) or std.numel() not in (1, x.shape[1]):
        raise ValueError(f"the normalisation has {mean.numel()} means and {std.numel()} stds for {x.shape[1]} channels: "
                         "give one per channel, one for all, or an ImageModel")
    return mean, std


def from_pixels(pixels: torch.Tensor, normalization=None) -> torch.Tensor:
    """Pixels in [0, 1] -> the model's input space, ``(p - mean) / std``. Chapter 03.

    ``normalization``: an ImageModel (``cnn``), a (mean, std) pair of per-channel values, or None when
    the model reads raw [0, 1] pixels.
    """
    mean, std = _mean_std(normalization, pixels)
    return (pixels - mean) / std


@check_types
def black_baseline(x: torch.Tensor, normalization=None) -> torch.Tensor:
    """An all-black image (pixels 0) in the model's input space, shaped like ``x``. Chapter 03."""
    return from_pixels(torch.zeros_like(x), normalization)


@check_types
def white_baseline(x: torch.Tensor, normalization=None) -> torch.Tensor:
    """An all-white image (pixels 1) in the model's input space, shaped like ``x``. Chapter 03."""
    return from_pixels(torch.ones_like(x), normalization)


@check_types
def noise_baseline(x: torch.Tensor, normalization=None, *, seed: int = 0) -> torch.Tensor:
    """Uniform noise pixels in [0, 1] (seeded) in the model's input space, shaped like ``x``. Chapter 03."""
    pixels = torch.rand(x.shape, generator=generator(seed, x.device), dtype=x.dtype, device=x.device)
    return from_pixels(pixels, normalization)


@check_types
def blur_baseline(x: torch.Tensor, sigma: float = 10.0) -> torch.Tensor:
    """``x`` (B, C, H, W) blurred with a Gaussian of ``sigma`` pixels: the layout stays, the detail goes. Chapter 03.

    Blurring commutes with per-channel normalisation, so no normalisation is needed.
    """
    from torchvision.transforms.functional import gaussian_blur

    if x.ndim != 4:
        raise ValueError(f"blur_baseline expects images (B, C, H, W), got shape {tuple(x.shape)}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0 pixels, got {sigma}")
    radius = min(math.ceil(3 * sigma), min(x.shape[-2:]) - 1)
    return gaussian_blur(x, kernel_size=[2 * radius + 1] * 2, sigma=[float(sigma)] * 2)


@check_types
def make_baseline(name: str, x: torch.Tensor, normalization=None, *, seed: int = 0, sigma: float = 10.0) -> torch.Tensor:
    """A baseline by name (one of :data:`BASELINES`) shaped like ``x``; "zero" is the all-zero input. Chapter 03."""
    makers = {
        "black": lambda: black_baseline(x, normalization),
        "white": lambda: white_baseline(x, normalization),
        "noise": lambda: noise_baseline(x, normalization, seed=seed),
        "blur": lambda: blur_baseline(x, sigma),
        "zero": lambda: torch.zeros_like(x),
    }
    if name not in makers:
        raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
    return makers[name]()
