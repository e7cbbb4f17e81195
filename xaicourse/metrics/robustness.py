"""Robustness: does the explanation stay put when the input barely moves? Chapter 07.

* :func:`max_sensitivity`: the largest relative change of the attribution under uniform noise of a
  given radius, max_i ||a(x + d_i) - a(x)|| / ||a(x)||. This is Quantus's MaxSensitivity (its
  defaults: uniform noise in [-0.2, 0.2], Frobenius norms, the change divided by the norm of the clean
  attribution), a normalised form of Yeh et al. (2019)'s SENS_MAX, which is the unnormalised
  max_i ||a(x + d_i) - a(x)||: dividing by ||a(x)|| makes methods of different scale comparable.
* :func:`local_lipschitz` (Alvarez-Melis & Jaakkola 2018): the largest ratio of the attribution's
  change to the input's change, max_i ||a(x) - a(x_i)|| / ||x - x_i|| under Gaussian noise, as
  Quantus's LocalLipschitzEstimate (with ``normalise=False``).

Both take ``method(model, x, targets)`` and keep the targets of the clean input. Lower is more
robust; a random method scores high, a constant map 0 (robust and useless: read these next to a
faithfulness measure).
"""
from __future__ import annotations

import torch
from torch import nn

from ..hooks import eval_mode
from ..inputs import check_int, check_number, generator
from ..targets import resolve_targets
from ._common import call_method, check_images, check_method, logits, warn_no_map

__all__ = ["local_lipschitz", "max_sensitivity"]


def _explain(method, model, x, targets) -> torch.Tensor:
    a = call_method(method, model, x, targets)
    if not isinstance(a, torch.Tensor) or a.shape[0] != x.shape[0]:
        raise ValueError(f"method must return one attribution per sample, a tensor ({x.shape[0]}, ...), got "
                         f"{tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__}")
    return a.detach().flatten(1).double()


def _perturbed_ratios(model, method, x, target, n_samples, seed, draw, denominator, zero=None) -> torch.Tensor:
    """max over the copies of ||a(x + d) - a(x)|| / denominator(a(x), d), (B,); with ``zero`` (the metric's name)
    a sample whose clean attribution is all zero scores NaN with a NoMapWarning."""
    check_method(method)
    x = check_images(model, x)
    n_samples = check_int("n_samples", n_samples)
    noise_source = generator(seed, x.device)
    with eval_mode(model):
        targets = resolve_targets(target, logits(model, x))
        original = _explain(method, model, x, targets)
        ratios = []
        for _ in range(n_samples):
            delta = draw(noise_source, x)
            changed = _explain(method, model, x + delta, targets) - original
            ratios.append(changed.norm(dim=1) / denominator(original, delta))
    ratios = torch.stack(ratios, dim=1).amax(dim=1).float().cpu()
    if zero is not None:
        empty = (original == 0).all(dim=1).cpu()
        warn_no_map(zero, empty, "an all-zero attribution: no size to compare its changes with")
        ratios = torch.where(empty, torch.nan, ratios)
    return ratios


def max_sensitivity(model: nn.Module, method, x: torch.Tensor, target=None, *, radius: float = 0.2,
                    n_samples: int = 10, seed: int = 0) -> torch.Tensor:
    """max_i ||a(x + d_i) - a(x)|| / ||a(x)|| over ``n_samples`` noisy copies, (B,). Chapter 07.

    d_i is uniform in [-``radius``, ``radius``] for every input value (one ``torch.rand(x.shape)`` per
    copy from a generator seeded with ``seed`` on x's device, mapped to [-radius, radius]); norms
    are Frobenius norms of each sample's attribution as the method returns it. An all-zero
    attribution has no size to be relative to: NaN, with a :class:`~xaicourse.metrics.NoMapWarning`.
    The targets stay those of x. Norms do not depend on the scan order.
    """
    radius = check_number("radius", radius, above=0, hint=" (the half-width of the uniform noise)")

    def draw(noise_source, x):
        return (torch.rand(x.shape, generator=noise_source, device=x.device, dtype=x.dtype) * 2 - 1) * radius

    return _perturbed_ratios(model, method, x, target, n_samples, seed, draw, lambda a, d: a.norm(dim=1),
                             zero="max_sensitivity")


def local_lipschitz(model: nn.Module, method, x: torch.Tensor, target=None, *, sigma: float = 0.1,
                    n_samples: int = 10, seed: int = 0) -> torch.Tensor:
    """max_i ||a(x) - a(x + d_i)|| / ||d_i|| over ``n_samples`` Gaussian perturbations, (B,). Chapter 07.

    d_i ~ N(0, ``sigma``^2) for every input value (one ``torch.randn(x.shape)`` per copy, seeded with
    ``seed``); Euclidean norms of each sample's flattened attribution and perturbation. The
    targets stay those of x.
    """
    sigma = check_number("sigma", sigma, above=0, hint=" (the standard deviation of the noise)")

    def draw(noise_source, x):
        return torch.randn(x.shape, generator=noise_source, device=x.device, dtype=x.dtype) * sigma

    return _perturbed_ratios(model, method, x, target, n_samples, seed, draw,
                             lambda a, d: d.flatten(1).double().norm(dim=1))
