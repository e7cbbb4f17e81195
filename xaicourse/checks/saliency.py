"""Checks of the gradient exercises: vanilla gradients (chapter 01) and SmoothGrad (chapter 06, exercise 2).

Both grade against :mod:`xaicourse.saliency` on fixed cases of :mod:`xaicourse.testing`. SmoothGrad
runs on :class:`~xaicourse.testing.CubicScores`, whose gradient reveals the noise: the averaged map
gives each sample's noise variance, and one noisy copy gives the noise values themselves.
"""
from __future__ import annotations

import torch

from .. import saliency, testing
from ..numerics import safe_divide
from ..targets import select
from .core import (Mistake, ModelState, as_answer, compare, expect, expect_as_found, expect_no_hooks, expect_none_of,
                   expect_unchanged, grader)

__all__ = ["check_smoothgrad", "check_vanilla_gradient"]


# --------------------------------------------------------------------------------------------
# Chapter 01: vanilla gradients
# --------------------------------------------------------------------------------------------
def _gradient_of(model, x: torch.Tensor, score) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    return torch.autograd.grad(score(model(x)).sum(), x)[0]


def _vanilla_mistakes(model, x, targets, want) -> list[Mistake]:
    def picked(chosen, transform=lambda out: out):
        return lambda: _gradient_of(model, x, lambda out: select(transform(out), chosen(out)))

    given = lambda out: targets  # noqa: E731
    return [Mistake(f"your result is {hint}", answer=answer) for hint, answer in [
        ("the absolute value of the gradient: keep its sign (the source takes abs() only to display the map)", want.abs()),
        ("the gradient of the softmax probability: differentiate the logit (the model's raw output), whose gradient "
         "does not depend on the other classes", picked(given, lambda out: out.softmax(1))),
        ("the gradient of the log-probability (a cross-entropy loss): differentiate the logit itself",
         picked(given, lambda out: out.log_softmax(1))),
        ("the gradient of the top class, ignoring target: use the target you were given", picked(lambda out: out.argmax(1))),
        ("every sample explained for sample 0's target: take target[i] for sample i",
         picked(lambda out: targets[:1].expand(len(x)))),
        ("the gradient of the batch's mean score: .mean() divides each sample's gradient by the batch size; sum the "
         "selected scores instead", want / len(x)),
    ]]


@grader
def check_vanilla_gradient(vanilla_gradient) -> str:
    """Grade ``vanilla_gradient(model, x, target=None) -> Tensor (B, C, H, W)``: d logit[target] / d x. Chapter 01.

    ``target`` is None (each sample's top class), an int, or one class per sample.
    """
    model, _, x, targets = testing.gradient_case()
    as_list = [int(t) for t in targets]
    targets = torch.tensor(as_list)
    x_before, state = x.clone(), ModelState.of(model)
    want = saliency.vanilla_gradient(model, x, targets)
    got = vanilla_gradient(model, x, as_list)   # a plain list, as the exercise allows
    expect_no_hooks(model)
    expect_unchanged("your function changed the caller's x (requires_grad, .grad or its values): work on a copy, "
                     "x = x.detach().clone().requires_grad_(True)", (x, x_before))
    expect_as_found(model, state)
    close = dict(rtol=1e-4, atol=1e-6)
    compare(got, want, _vanilla_mistakes(model, x, targets, want), **close,
            shape_hint="return one gradient per input value (B, C, H, W): keep the batch and the channels (to_map "
                       "reduces channels for display)",
            otherwise="your gradients differ from xc.saliency.vanilla_gradient: select logits[i, target[i]] for each "
                      "sample, sum them, and differentiate with respect to x")
    compare(vanilla_gradient(model, x, targets), want, **close, otherwise="a second call gives a different answer: "
            "gradients accumulated in .grad; compute them on a fresh tensor each call")
    compare(vanilla_gradient(model, x, None), saliency.vanilla_gradient(model, x), **close,
            otherwise="with target=None explain each sample's top class: target = logits.argmax(dim=1)")
    compare(vanilla_gradient(model, x, 2), saliency.vanilla_gradient(model, x, 2), **close,
            otherwise="with an int target explain that class for every sample")
    return "signed logit gradients with one target per sample (list, None or int); model, hooks and x left as found"


# --------------------------------------------------------------------------------------------
# Chapter 06: SmoothGrad (exercise 2)
# --------------------------------------------------------------------------------------------
_SHAPE = "return one gradient per input value, the shape of x"


def _leaves_as_found(model, state, x, x_before) -> None:
    expect_no_hooks(model)
    expect_unchanged("your function changed the input tensor in place: add noise to a copy (x + noise), never "
                     "x += noise", (x, x_before))
    expect_as_found(model, state, grad_of="x_noisy")


def _zero_noise(smoothgrad, model, x, target) -> None:
    """With noise_level=0 SmoothGrad is the plain gradient 3 w x^2 + v of each sample's own target."""
    w, v = model.w.detach(), model.v.detach()
    exact = 3 * w[target] * x**2 + v[target]
    compare(smoothgrad(model, x, target, n_samples=8, noise_level=0.0, seed=0), exact, [
        Mistake("with no noise you return 8 x the gradient: divide the sum by n_samples (average, do not sum)", 8 * exact),
        Mistake("your map has no negative values: SmoothGrad averages the signed gradients; take abs() (if at all) "
                "after averaging, for display", exact.abs()),
        Mistake("you explained the wrong class: each sample has its own target (target[i] for sample i)",
                3 * w[target[::-1]] * x**2 + v[target[::-1]]),
    ], rtol=1e-4, atol=1e-4, shape_hint=_SHAPE,
        otherwise="with noise_level=0 the result should equal the plain gradient d score[target] / d x of each sample: "
                  "check how you select the score and what you differentiate")


def _noise_values(smoothgrad, model, x, target) -> torch.Tensor:
    """The noise e of one noisy copy per sample, read back from the gradient 3 w (x + e)^2 + v (x + e > 0)."""
    got = as_answer(smoothgrad(model, x, target, n_samples=1, noise_level=0.15, seed=0), x, shape_hint=_SHAPE)
    w, v = model.w.detach().double()[target], model.v.detach().double()[target]
    return ((got - v) / (3 * w)).clamp(min=0).sqrt() - x.double()


def _standardised(e: torch.Tensor) -> torch.Tensor:
    return safe_divide(e - e.mean(1, keepdim=True), e.std(1, keepdim=True))


_NOISE_MISTAKES = [  # tests of the noise values e (one row per sample) that one noisy copy reveals
    Mistake("the result does not depend on noise_level: add Gaussian noise to the input before the forward pass, and "
            "differentiate with respect to the noisy input", when=lambda e: bool(e.abs().amax() <= 1e-3)),
    Mistake("your noise is uniform (torch.rand draws from [0, 1)): SmoothGrad adds Gaussian noise N(0, sigma^2), "
            "torch.randn(x.shape, generator=g) times sigma",
            when=lambda e: float(_standardised(e).pow(4).mean()) < 2.2),   # kurtosis: 3 Gaussian, 1.8 uniform
    Mistake("your noise is not centred on 0: draw it from torch.randn (mean 0), scaled by sigma, and add it to x",
            when=lambda e: bool((e.mean(1).abs() >= 0.3 * e.std(1)).any())),
    Mistake("every sample of the batch got the same noise: draw noise of the full batch shape, torch.randn(x.shape, "
            "generator=g), not one (C, H, W) draw broadcast over the batch",
            when=lambda e: torch.allclose(*_standardised(e)[:2], atol=1e-3)),
]


def _noise_shape(smoothgrad) -> None:
    """One noisy copy per sample: the noise must be Gaussian, centred, and drawn anew for every sample."""
    model, _, x, target = testing.noise_probe_case()
    x_before, state = x.clone(), ModelState.of(model)
    e = _noise_values(smoothgrad, model, x, target).flatten(1)
    _leaves_as_found(model, state, x, x_before)
    expect_none_of(e, _NOISE_MISTAKES)


def _noise_scale(smoothgrad, model, x, target) -> None:
    """Averaged over 400 copies, the map gives each sample's noise variance: sigma = 0.15 * (max - min)."""
    w, v = model.w.detach().double()[target], model.v.detach().double()[target]
    got = as_answer(smoothgrad(model, x, target, n_samples=400, noise_level=0.15, seed=0), x, shape_hint=_SHAPE)
    residual = (got - v) / (3 * w) - x.double() ** 2        # per value: mean of 2 x e + e^2 over the noisy copies
    spread = (residual - residual.flatten(1).mean(1).view(-1, 1, 1, 1)).std()
    expect(spread < 0.3, "the map is as noisy as a single noisy gradient: average the gradients of all n_samples "
                         "noisy copies")
    sigma = residual.flatten(1).mean(1).clamp(min=0).sqrt()
    span = x.flatten(1).amax(1) - x.flatten(1).amin(1)
    compare(sigma, 0.15 * span, [
        Mistake("the result does not depend on noise_level: add Gaussian noise to the input before the forward pass, "
                "and differentiate with respect to the noisy input", torch.zeros(2)),
        Mistake("the noise has sigma = noise_level itself, but these inputs span [-2, 2] and [-1, 1]: scale it to the "
                "input range, sigma = noise_level * (x.max() - x.min()) of each sample (here 0.6 and 0.3)",
                torch.full((2,), 0.15)),
        Mistake("you used one noise scale for the whole batch (its overall range): each sample gets its own sigma = "
                "noise_level * (max - min) of that sample, amax/amin over dims 1, 2, 3, shaped (B, 1, 1, 1)",
                torch.full((2,), 0.15 * float(x.max() - x.min()))),
    ], atol=0.06, otherwise=lambda s: f"the noise should have sigma = noise_level * (x.max() - x.min()) of each sample "
                                      f"= [0.6, 0.3] here, measured {[round(float(v), 2) for v in s]}")


@grader
def check_smoothgrad(smoothgrad) -> str:
    """Grade ``smoothgrad(model, x, target, n_samples, noise_level, seed) -> Tensor`` (same shape as x). Chapter 06.

    It must average the plain (signed) gradients of ``n_samples`` noisy copies x + N(0, sigma^2) with
    sigma = noise_level * (x.max() - x.min()) per sample, fresh noise for every sample, drawn from a
    generator seeded with ``seed``.
    """
    model, _, x, target = testing.smoothgrad_case()
    x_before, state = x.clone(), ModelState.of(model)
    _zero_noise(smoothgrad, model, x, target)
    _leaves_as_found(model, state, x, x_before)
    _noise_shape(smoothgrad)
    _noise_scale(smoothgrad, model, x, target)
    _leaves_as_found(model, state, x, x_before)

    def run(seed):
        return as_answer(smoothgrad(model, x, target, n_samples=16, noise_level=0.15, seed=seed), x, shape_hint=_SHAPE)

    again = run(0)
    expect(torch.allclose(again, run(0)), "two calls with seed=0 give different maps: draw the noise from "
                                          "torch.Generator().manual_seed(seed) (pass generator= to torch.randn)")
    expect(not torch.allclose(again, run(1)), "seed=0 and seed=1 give the same map: the seed must choose the noise")
    _leaves_as_found(model, state, x, x_before)
    return "zero noise gives the gradient, Gaussian noise scaled to each input's range, fresh per sample, averaged, " \
           "seeded, model left as found"
