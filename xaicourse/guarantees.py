"""Guarantees a method checks on its own result, on every call (chapters 03, 08).

Several attribution methods promise that their attributions add up to something the model itself
computes:

* Integrated Gradients, **completeness**: ``sum(a) = F(x) - F(x')`` (in the limit of many steps);
* DeepLIFT, **summation to delta**: ``sum(a) = F(x) - F(x')`` exactly, when the rescale rule knows
  every nonlinearity; DeepLiftShap and GradientSHAP against the baselines' mean ``F(x) - mean F(b)``;
* KernelSHAP, **efficiency**: ``sum(phi) = F(x) - F(baseline)`` (a constraint of the fit);
* LRP, **conservation**: the input relevance sums to *at most* the output relevance (biases and
  the stabiliser absorb some); more than that means the rules created relevance.

Such a promise costs nothing to check (the method has computed both sides), and a silent miss
teaches the wrong map. :func:`check_conservation` is the one check they all call: it records a
:class:`Conservation` on the result (``attributions.conservation``) and warns with a
:class:`ConservationWarning` naming the worst sample, the size of the miss and its likely causes
when a sample misses by more than :data:`TOLERANCE` (5 %, chapter 03's rule) of the expected total.
A chapter that prints the errors itself may silence the warning with
``warnings.simplefilter("ignore", xc.guarantees.ConservationWarning)``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from .inputs import check_model, check_types
from .numerics import safe_divide

__all__ = ["TOLERANCE", "Conservation", "ConservationWarning", "check_conservation", "leaf_modules_except", "name_list"]

#: Relative miss above which a guarantee counts as broken (chapter 03's 5 % rule for IG).
TOLERANCE = 0.05


class ConservationWarning(UserWarning):
    """A method's attributions miss the total they promise (see the module docstring). Chapter 03."""


@dataclass(frozen=True)
class Conservation:
    """The check of one call: ``total`` (B,) the attributions' sums, ``expected`` (B,) what they should be. Chapter 03.

    ``bound`` is "equal" (the sums must equal ``expected`` within ``tolerance``) or "at_most" (the
    sums' size must not exceed ``|expected|`` by more than ``tolerance``: LRP). ``delta`` is
    ``total - expected``; ``relative`` the miss as a share of ``|expected|`` (for "at_most", only the
    excess counts); ``holds`` (B,) whether each sample keeps the promise.
    """

    property: str
    method: str
    total: torch.Tensor
    expected: torch.Tensor
    bound: str = "equal"
    tolerance: float = TOLERANCE

    @property
    def delta(self) -> torch.Tensor:
        return self.total - self.expected

    @property
    def relative(self) -> torch.Tensor:
        scale = self.expected.abs()
        miss = self.delta.abs() if self.bound == "equal" else (self.total.abs() - scale).clamp_min(0)
        # float rounding of a sum of many attributions is not a miss
        miss = torch.where(miss <= 1e-6 * (1 + scale), torch.zeros_like(miss), miss)
        return safe_divide(miss, scale, fill=float("inf")).where(miss > 0, torch.zeros_like(miss))

    @property
    def holds(self) -> torch.Tensor:
        return self.relative <= self.tolerance


@check_types
def check_conservation(result: torch.Tensor, total: torch.Tensor, expected: torch.Tensor, *, method: str,
                       property: str, causes: str, bound: str = "equal", tolerance: float = TOLERANCE,
                       unsupported: list[str] | None = None, stacklevel: int = 3) -> torch.Tensor:
    """Record ``result.conservation`` and warn when a sample misses its promised total. Chapter 03.

    ``total`` and ``expected`` are (B,) (any float dtype; compared in float64). ``causes`` is the
    sentence the warning ends with: what usually breaks this method's guarantee and what to do.
    ``unsupported``: modules the method's rules do not cover (they fall back to plain gradients or
    pass-through); a fallback is never silent, so they are named in a warning even when the promise
    holds. Returns ``result`` itself (the same tensor, with the attribute set).
    """
    if bound not in ("equal", "at_most"):
        raise ValueError(f"bound must be 'equal' or 'at_most', got {bound!r}")
    check = Conservation(property, method, total.detach().double().reshape(-1), expected.detach().double().reshape(-1),
                         bound, tolerance)
    result.conservation = check
    if result.device.type == "meta":
        return result
    broken = ~check.holds
    if broken.any():
        relative = check.relative
        worst = int(relative.argmax())
        which = broken.nonzero().flatten().tolist()
        size = "more than" if bound == "at_most" else "off from"
        warnings.warn(
            f"{method}: {property} broken for sample(s) {which[:8]}: the attributions sum to "
            f"{check.total[worst].item():.4g}, {size} the {check.expected[worst].item():.4g} it promises by "
            f"{relative[worst].item():.1%} (tolerance {tolerance:.0%}). {causes} The check is on the result: "
            f"attributions.conservation", ConservationWarning, stacklevel=stacklevel)
    elif unsupported:
        warnings.warn(f"{method}: {len(unsupported)} module(s) its rules do not cover fall back to plain gradients or "
                      f"pass-through ({name_list(unsupported)}); {property} still holds within "
                      f"{check.relative.max().item():.2%} here", ConservationWarning, stacklevel=stacklevel)
    return result


def leaf_modules_except(model: nn.Module, covered: tuple) -> list[str]:
    """The leaf modules of ``model`` that are not instances of ``covered``, as "name (Type)". Chapter 08.

    What DeepLIFT's and LRP's rules do not cover (:func:`xaicourse.deeplift.unknown_modules`,
    :func:`xaicourse.lrp.unfitting_modules`): those modules fall back to plain gradients or pass-through.
    """
    check_model(model)
    return [f"{name} ({type(m).__name__})" for name, m in model.named_modules()
            if next(m.children(), None) is None and m is not model and not isinstance(m, covered)]


def name_list(names: list[str], limit: int = 6) -> str:
    """"a, b, c and 4 more": the first ``limit`` names for a message. Chapter 08."""
    if not isinstance(names, (list, tuple)):
        raise TypeError(f"name_list takes a list of names, got {type(names).__name__}")
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
