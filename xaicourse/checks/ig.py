"""Check of chapter 03's exercise: Integrated Gradients with the trapezoid rule.

Graded on :func:`xaicourse.testing.ig_case`: on the linear model any correct rule is exact
(w * (x - baseline)), so the factor and the step size show; on the tanh net the quadrature rule
shows, against ``xc.ig.integrated_gradients(..., method="riemann_trapezoid")``.
"""
from __future__ import annotations

import warnings

import torch

from .. import ig, testing
from ..guarantees import ConservationWarning
from .core import Mistake, ModelState, compare, expect_as_found, expect_unchanged, grader

__all__ = ["check_integrated_gradients"]

_SOFTMAX_HINT = ("the IG of the model's probabilities: explain the logit (the raw output), not softmax(output); the "
                 "softmax saturates and mixes in the other classes")
_CLOSE = dict(rtol=1e-5, atol=1e-7)
_SHAPE = "return one attribution per input feature: average the path gradients over the steps (dimension 0), keeping " \
         "the batch dimension"


def _ig_variant(model, x, baseline, target, alphas, weights, *, probability=False):
    """A (possibly mistaken) IG: (x - baseline) times sum_k weights_k * grad(alpha_k)."""
    points = (baseline + torch.as_tensor(alphas, dtype=x.dtype).view(-1, 1) * (x - baseline)).requires_grad_(True)
    out = model(points)
    score = (out.softmax(-1) if probability else out)[:, target].sum()
    (grads,) = torch.autograd.grad(score, points)
    avg = (torch.as_tensor(weights, dtype=x.dtype).view(-1, 1) * grads).sum(0, keepdim=True)
    return (x - baseline) * avg


def _trapezoid(n):
    weights = torch.full((n,), 1.0 / (n - 1), dtype=torch.float64)
    weights[[0, -1]] /= 2
    return torch.linspace(0, 1, n, dtype=torch.float64), weights


def _on_the_linear_model(got, case, target, n) -> None:
    linear, x, baseline = case.linear, case.x, case.baseline
    w = linear.weight.detach()[target].view(1, -1)
    exact = w * (x - baseline)
    with torch.no_grad():
        change = (linear(x) - linear(baseline))[0, target].item()

    def otherwise(got):
        if abs(got.sum().item() - change) >= 1e-5 * max(1.0, abs(change)):
            return (f"completeness fails on a linear model: your attributions sum to {got.sum().item():.4f} but "
                    f"F(x) - F(baseline) = {change:.4f}; on a linear model any correct rule is exact")
        return ("the attributions sum correctly but differ from w * (x - baseline) feature by feature: keep one "
                "attribution per feature (no sum or mean over features)")

    compare(got, exact, [
        Mistake("on a linear model you returned the gradient itself: the average gradient along the path must be "
                "multiplied by (x - baseline), feature by feature", w),
        Mistake("you multiplied by x: IG multiplies the average gradient by (x - baseline), the path's length", w * x),
        Mistake("the attributions have the wrong sign: the path runs from the baseline (alpha = 0) to x (alpha = 1) "
                "and the factor is (x - baseline), not (baseline - x)", -exact),
        Mistake(f"your attributions sum to (n-1)/n = {(n - 1) / n:.2f} of F(x) - F(baseline): with n_steps points on "
                "[0, 1] the step is 1 / (n_steps - 1), not 1 / n_steps (Captum's riemann_trapezoid has this shortfall)",
                exact * (n - 1) / n),
        Mistake(f"your result equals {_SOFTMAX_HINT}",
                lambda: _ig_variant(linear, x, baseline, target, *_trapezoid(n), probability=True)),
    ], **_CLOSE, shape_hint=_SHAPE, otherwise=otherwise)


def _on_the_tanh_net(got, case, target, n) -> None:
    net, x, baseline = case.tanh_net, case.x, case.baseline
    nodes, weights = _trapezoid(n)
    mean = torch.full((n,), 1.0 / n, dtype=torch.float64)
    variants = {
        _SOFTMAX_HINT: dict(alphas=nodes, weights=weights, probability=True),
        "a plain mean of the gradients at the n_steps points: the trapezoid rule gives the two end points half the "
        "weight of the others": dict(alphas=nodes, weights=mean),
        "a left Riemann sum (alpha = k / n_steps for k = 0 .. n_steps - 1): the trapezoid uses torch.linspace(0, 1, "
        "n_steps), both ends included": dict(alphas=torch.arange(n) / n, weights=mean),
        "a right Riemann sum (alpha = k / n_steps for k = 1 .. n_steps): the trapezoid uses torch.linspace(0, 1, "
        "n_steps), both ends included": dict(alphas=torch.arange(1, n + 1) / n, weights=mean),
    }
    with warnings.catch_warnings():   # the reference at 5 steps misses completeness: its warning is not the learner's
        warnings.simplefilter("ignore", ConservationWarning)
        reference = ig.integrated_gradients(net, x, target, baseline=baseline, n_steps=n, method="riemann_trapezoid")
    compare(got, reference,
            [Mistake(f"your result equals {hint}", lambda kw=kw: _ig_variant(net, x, baseline, target, **kw))
             for hint, kw in variants.items()], **_CLOSE, shape_hint=_SHAPE,
            otherwise="on a small tanh network your attributions differ from xc.ig.integrated_gradients(..., "
                      f"method='riemann_trapezoid', n_steps={n}): check the nodes (torch.linspace(0, 1, n_steps)), the "
                      "weights (1 / (n_steps - 1), halved at both ends) and which output you differentiate")


@grader
def check_integrated_gradients(ig_trapezoid) -> str:
    """Grade ``ig_trapezoid(model, x, target, baseline, n_steps) -> Tensor`` shaped like ``x`` (1, D). Chapter 03.

    The trapezoid rule on nodes alpha_k = k / (n_steps - 1), k = 0 .. n_steps - 1, with step
    1 / (n_steps - 1) and half weight at both ends; explain the target's logit.
    """
    case = testing.ig_case()
    x_before, b_before = case.x.clone(), case.baseline.clone()
    n, target = 5, 2
    for model, grade in ((case.linear, _on_the_linear_model), (case.tanh_net, _on_the_tanh_net)):
        state = ModelState.of(model)
        got = ig_trapezoid(model, case.x, target, case.baseline, n)
        expect_as_found(model, state, grad_of="path")
        expect_unchanged("your function changed x or baseline in place: build the path in new tensors",
                         (case.x, x_before), (case.baseline, b_before))
        grade(got, case, target, n)
    model, _, _, _ = testing.resolution_case()     # an image: (1, 3, 5, 6) with n_steps = 5 = the height, where
    image = torch.rand(1, 3, 5, 6, generator=torch.Generator().manual_seed(3))  # alphas[:, None] broadcasts silently
    black = torch.zeros_like(image)
    state = ModelState.of(model)
    got = ig_trapezoid(model, image, 1, black, 5)
    expect_as_found(model, state, grad_of="path")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConservationWarning)
        reference = ig.integrated_gradients(model, image, 1, baseline=black, n_steps=5, method="riemann_trapezoid")
    compare(got, reference,
            atol=1e-5, rtol=1e-4, shape_hint="on an image (1, 3, 5, 6) return one attribution per pixel and channel",
            otherwise="on an image (1, 3, 5, 6) your attributions differ from the reference although the flat case "
                      "passed: shape alpha as (n_steps, 1, 1, 1), i.e. alphas.view(-1, *[1] * (x.dim() - 1)), so that "
                      "it scales whole images, not one axis of them")
    return (f"exact on a linear model, equal to the reference trapezoid IG on a tanh network ({n} steps) and on "
            "an image, no hooks or .grad left behind")
