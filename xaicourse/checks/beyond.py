"""Checks of chapter 08's exercises: the Shapley kernel weight, DeepLIFT's rescale multiplier, LRP-epsilon.

Each check runs your function on a small fixed case and compares it with the package's reference
(:func:`xaicourse.shapley.shapley_kernel_weight`, :func:`xaicourse.deeplift.rescale_multiplier`,
:func:`xaicourse.lrp.lrp_epsilon`); a wrong answer is matched against a catalogue of typical
mistakes, and the hint names the one you made.
"""
from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from .. import deeplift, lrp, shapley
from .core import Mistake, ModelState, as_answer, compare, expect, expect_as_found, expect_unchanged, grader

__all__ = ["check_lrp_epsilon", "check_rescale_multiplier", "check_shapley_kernel_weight"]

_GRID = [(m, s) for m in range(2, 9) for s in range(1, m)]


def _on_grid(fn) -> torch.Tensor:
    return torch.tensor([fn(m, s) for m, s in _GRID], dtype=torch.float64)


@grader
def check_shapley_kernel_weight(kernel_weight) -> str:
    """Grade ``kernel_weight(n_features, size) -> float``, the Shapley kernel pi(M, s) for 0 < s < M. Chapter 08.

    pi(M, s) = (M - 1) / (C(M, s) * s * (M - s)): the weight KernelSHAP's regression gives one
    coalition of ``size`` features out of M.
    """
    answers = []
    for m, s in _GRID:
        got = kernel_weight(m, s)
        # a Python number is read as is: as_answer goes through a float32 tensor for plain floats
        exact = isinstance(got, numbers.Real) and not isinstance(got, bool)
        answers.append(float(got) if exact else float(as_answer(got, like=1.0)))
    got = torch.tensor(answers, dtype=torch.float64)
    want = _on_grid(shapley.shapley_kernel_weight)
    comb = _on_grid(lambda m, s: math.comb(m, s))
    compare(got, want, [
        Mistake("you left out the binomial C(M, s): (M - 1) / (s (M - s)) is how likely a coalition *size* is; each "
                "of the C(M, s) coalitions of that size gets 1 / C(M, s) of it",
                _on_grid(lambda m, s: (m - 1) / (s * (m - s)))),
        Mistake("that is the weight s! (M - s - 1)! / M! of the Shapley formula (one marginal contribution), not the "
                "kernel of KernelSHAP's regression: pi(M, s) = (M - 1) / (C(M, s) s (M - s))",
                _on_grid(lambda m, s: math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m))),
        Mistake("you inverted the weight: the binomial and s (M - s) go in the denominator",
                _on_grid(lambda m, s: math.comb(m, s) * s * (m - s) / (m - 1))),
        Mistake("the numerator is M - 1, not M", _on_grid(lambda m, s: m / (math.comb(m, s) * s * (m - s)))),
        Mistake("off by one in a factor: the denominator is C(M, s) * s * (M - s)",
                when=lambda g: any(torch.allclose(g, alt) for alt in (
                    _on_grid(lambda m, s: (m - 1) / (math.comb(m, s) * s * (m - s + 1))),
                    _on_grid(lambda m, s: (m - 1) / (math.comb(m, s) * (s + 1) * (m - s)))))),
        Mistake("your weights are proportional to the kernel but scaled: pi(M, s) = (M - 1) / (C(M, s) s (M - s)) "
                "exactly, no normalisation", when=lambda g: _proportional(g, want) or _proportional(g * comb, want * comb)),
    ], rtol=1e-6, atol=1e-12,
        otherwise=lambda g: f"pi(M, s) is (M - 1) / (C(M, s) * s * (M - s)); for M = 4, s = 1 that is 0.25, you "
                            f"return {g[_GRID.index((4, 1))].item():.4g}")
    return f"pi(M, s) right for all {len(_GRID)} pairs with 2 <= M <= 8, 0 < s < M"


def _proportional(got, want) -> bool:
    ratio = got / want
    return bool(torch.isfinite(ratio).all()) and bool(torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-6))


def _rescale_case():
    x = torch.tensor([2.0, -1.0, 0.5, 3.0, -2.0, 0.25], dtype=torch.float64)
    x0 = torch.tensor([-1.0, -3.0, 0.5, 1.0, 1.0, 0.25], dtype=torch.float64)  # positions 2 and 5: x == x0
    return x, x0


def _slope(f, x):
    leaf = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(leaf).sum(), leaf)
    return g


@grader
def check_rescale_multiplier(rescale_multiplier) -> str:
    """Grade ``rescale_multiplier(f, x, x0) -> Tensor`` shaped like ``x``: DeepLIFT's rescale rule. Chapter 08.

    (f(x) - f(x0)) / (x - x0) elementwise, and the derivative f'(x) where x == x0. Graded with
    ReLU, sigmoid and tanh on six points, two of them with x == x0.
    """
    x, x0 = _rescale_case()
    same = x == x0
    # sigmoid first: for ReLU, f(x) / x and the gradient coincide, so its hints could not tell them apart
    for name, f in (("sigmoid", torch.sigmoid), ("tanh", torch.tanh), ("relu", torch.relu)):
        x_before, x0_before = x.clone(), x0.clone()
        got = rescale_multiplier(f, x, x0)
        expect_unchanged("your function changed x or x0 in place: compute in new tensors", (x, x_before), (x0, x0_before))
        want = deeplift.rescale_multiplier(f, x, x0)
        secant = (f(x) - f(x0)) / torch.where(same, torch.ones_like(x), x - x0)
        compare(got, want, [
            Mistake("your result has NaN (or inf) where x == x0: the secant is 0 / 0 there; DeepLIFT uses the "
                    "derivative f'(x) at those points (torch.where(small, slope, secant))",
                    when=lambda g: not bool(torch.isfinite(g).all())),
            Mistake(f"for {name} you returned the gradient f'(x): DeepLIFT's multiplier is the slope of the secant from "
                    "the reference, (f(x) - f(x0)) / (x - x0)", _slope(f, x)),
            Mistake(f"for {name} you returned the gradient at the reference, f'(x0): the multiplier is the secant "
                    "(f(x) - f(x0)) / (x - x0)", _slope(f, x0)),
            Mistake("you divided f(x) by x: the rescale rule works with differences from the reference, "
                    "(f(x) - f(x0)) / (x - x0)", lambda: f(x) / torch.where(x == 0, torch.ones_like(x), x)),
            Mistake("the sign is flipped: (f(x) - f(x0)) / (x - x0), both differences taken in the same order",
                    -want),
            Mistake("where x == x0 you returned 0 (or 1): there the secant is undefined and DeepLIFT uses the "
                    "derivative f'(x)", when=lambda g: bool(torch.allclose(g[~same], want[~same]))
                    and bool(((g[same] == 0) | (g[same] == 1)).all())),
            Mistake("the multiplier is right where x != x0 but not at x == x0: use the derivative f'(x) there "
                    "(e.g. torch.autograd.grad of f on a copy of x)",
                    when=lambda g: bool(torch.allclose(g[~same], secant[~same]))),
        ], rtol=1e-6, atol=1e-9, shape_hint="return one multiplier per element of x",
            otherwise=f"for {name} your multipliers differ from (f(x) - f(x0)) / (x - x0): check the differences "
                      "and that the division is elementwise")
    return "the secant slope for sigmoid, tanh and ReLU, and the derivative where x == x0"


def _epsilon_cases():
    """Two layers, as (name, layer, a, relevance): post-ReLU activations (a >= 0, one of them 0, no z = 0), then
    a first layer's input (negative values too) where one output is exactly z = 0 (dyadic numbers: exact
    arithmetic), so that neither ``a.abs()`` for ``a`` nor ``torch.sign(z)`` (0 at z = 0) can pass."""
    g = torch.Generator().manual_seed(8)
    hidden = nn.Linear(5, 3).double()
    with torch.no_grad():
        hidden.weight.copy_(torch.randn(3, 5, generator=g, dtype=torch.float64))
        hidden.bias.copy_(torch.tensor([0.3, -0.4, 0.1], dtype=torch.float64))
    a = torch.rand(4, 5, generator=g, dtype=torch.float64)  # post-ReLU activations: >= 0
    a[0, 0] = 0.0
    relevance = torch.randn(4, 3, generator=g, dtype=torch.float64)

    first = nn.Linear(4, 3).double()
    x = torch.tensor([[0.5, -1.25, 0.75, -0.5], [-0.75, 1.0, -0.25, 1.5], [1.25, 0.25, -1.0, -0.75]],
                     dtype=torch.float64)             # a normalised image: inputs below 0 too
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[0.5, -0.25, 1.0, 0.75], [-1.0, 0.5, 0.25, -0.5], [0.75, 1.0, -0.5, 0.25]],
                                        dtype=torch.float64))
        first.bias.copy_(torch.tensor([0.25, -0.5, 0.0], dtype=torch.float64))
        first.bias[2] = -(x[1] @ first.weight[2])     # sample 1, output 2: z = 0 exactly
    r_first = torch.tensor([[0.8, -0.6, 1.1], [-0.7, 0.9, 1.3], [0.4, 1.2, -0.5]], dtype=torch.float64)
    return [("a hidden layer (post-ReLU inputs)", hidden.eval(), a, relevance),
            ("the first layer (inputs below 0, and an output with z = 0)", first.eval(), x, r_first)]


def _sign_zero_is_zero(got: torch.Tensor, z: torch.Tensor) -> bool:
    """Non-finite exactly in the samples that have an output with z == 0 (torch.sign(0) = 0 divides by 0)."""
    at_zero = (z == 0).any(dim=1)
    bad = ~torch.isfinite(got).all(dim=1)
    return bool(at_zero.any()) and bool(torch.equal(bad, at_zero))


def _epsilon_mistakes(layer, a, relevance, eps) -> list[Mistake]:
    w, b = layer.weight.detach(), layer.bias.detach()
    z = a @ w.T + b
    sign = torch.where(z >= 0, torch.ones_like(z), -torch.ones_like(z))
    share = (relevance / (z + eps * sign)) @ w
    z_abs = a.abs() @ w.T + b
    return [
        Mistake("torch.sign(z) is 0 where z = 0, so z + eps * torch.sign(z) is 0 there and you divide by 0 (NaN or "
                "inf for that sample): LRP-epsilon takes sign(0) = +1, e.g. torch.where(z >= 0, 1.0, -1.0)",
                when=lambda g: _sign_zero_is_zero(g, z)),
        Mistake("you did not multiply by the activations: R_j = a_j * sum_k w_kj * s_k, where s = R / (z + eps sign z)",
                share),
        Mistake("you multiplied by |a| (a.abs()): R_j = a_j * sum_k w_kj * s_k with the activation's own sign; an "
                "input below 0 (a first layer reads a normalised image) passes relevance of the opposite sign",
                a.abs() * share),
        Mistake("you used |a| (a.abs()) for the activations: z = a W^T + b and R_j = a_j * ..., with the signs of a; "
                "an input below 0 (a first layer reads a normalised image) counts with its sign",
                lambda: a.abs() * ((relevance / (z_abs + eps * torch.where(z_abs >= 0, 1.0, -1.0))) @ w)),
        Mistake("eps must carry the sign of z: z + eps * sign(z), so that a small negative z grows away from zero "
                "instead of crossing it", a * ((relevance / (z + eps)) @ w)),
        Mistake("you left out epsilon (that is LRP-0): divide by z + eps * sign(z)", a * ((relevance / z) @ w)),
        Mistake("z must include the bias: z = a W^T + b is the layer's output",
                lambda: a * ((relevance / (a @ w.T + eps * torch.where(a @ w.T >= 0, 1.0, -1.0))) @ w)),
        Mistake("you did not divide by z: the relevance of each output is shared in proportion to z_jk / z_k",
                a * (relevance @ w)),
        Mistake("you used |z| + eps: keep the sign of z, the denominator is z + eps * sign(z)",
                a * ((relevance / (z.abs() + eps)) @ w)),
    ]


@grader
def check_lrp_epsilon(lrp_epsilon) -> str:
    """Grade ``lrp_epsilon(layer, a, relevance, epsilon) -> Tensor`` shaped like ``a``: LRP-epsilon, one Linear.
    Chapter 08.

    R_j = a_j * sum_k w_kj * R_k / (z_k + epsilon * sign(z_k)) with z = a W^T + b (the layer's
    output, bias included), sign(0) = +1. Graded on a hidden layer (inputs >= 0) and on a first
    layer whose inputs go below 0 and where one output is exactly z = 0.
    """
    eps = 0.5
    for name, layer, a, relevance in _epsilon_cases():
        state = ModelState.of(layer)
        a_before, r_before = a.clone(), relevance.clone()
        got = lrp_epsilon(layer, a, relevance, eps)
        expect_as_found(layer, state, grad_of="a")
        expect_unchanged("your function changed a or relevance in place: compute in new tensors", (a, a_before),
                         (relevance, r_before))
        want = lrp.lrp_epsilon(layer, a, relevance, epsilon=eps)
        compare(got, want, _epsilon_mistakes(layer, a, relevance, eps), rtol=1e-6, atol=1e-9,
                shape_hint="return one relevance per input of the layer, shaped like a",
                otherwise=f"on {name} your relevances differ from a_j * sum_k w_kj R_k / (z_k + eps sign(z_k)); check "
                          "the transpose (the weight is (out, in)) and the sum over the outputs k")
        expect(torch.isfinite(got).all(), f"your result has NaN or inf values on {name}")
    return ("LRP-epsilon through a Linear layer (bias, the sign of eps, sign(0) = +1 and inputs below 0 included), "
            "the layer left as found")
