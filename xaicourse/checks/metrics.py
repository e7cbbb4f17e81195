"""Checks of the evaluation exercises: the share of attribution inside a region (chapter 06, exercise 6,
the shortcut detector), the deletion AUC and max-sensitivity (chapter 07).

References: :func:`xaicourse.maps.mask_share` (what :func:`xaicourse.metrics.mask_energy` computes,
except that the metric scores a map without positive values NaN, "no map", where the exercise
returns 0), :func:`xaicourse.metrics.deletion_auc` and :func:`xaicourse.metrics.max_sensitivity`,
on the fixed cases :func:`xaicourse.testing.region_case`,
:func:`xaicourse.testing.deletion_case` and a small tanh network built here.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import metrics, saliency, testing
from ..maps import mask_share
from .core import CheckFailed, Mistake, ModelState, as_answer, compare, expect_as_found, expect_unchanged, grader

__all__ = ["check_deletion_auc", "check_max_sensitivity", "check_shortcut_detector"]


# --------------------------------------------------------------------------------------------
# Chapter 06: the share of positive attribution inside a region
# --------------------------------------------------------------------------------------------
def _differing(want: torch.Tensor, got: torch.Tensor, least: int = 3) -> tuple[str, str]:
    """``want`` and ``got`` as lists printed with the fewest decimals (at least ``least``, at most 12) at which
    they differ, so that a failure never reads "expected [0.827], got [0.827]"."""
    want = [float(v) for v in torch.as_tensor(want).flatten()]
    got = [float(v) for v in torch.as_tensor(got).flatten()]
    digits = least
    while digits < 12 and [f"{v:.{digits}f}" for v in want] == [f"{v:.{digits}f}" for v in got]:
        digits += 1
    show = lambda values: "[" + ", ".join(f"{v:.{digits}f}" for v in values) + "]"  # noqa: E731
    return show(want), show(got)


@grader
def check_shortcut_detector(share_in_region) -> str:
    """Grade ``share_in_region(attribution, region) -> (B,)``: the share of positive attribution mass in a region.
    Chapter 06.

    ``attribution`` is (B, H, W) (one value per pixel), ``region`` a bool mask (B, H, W). Only positive
    attribution counts (evidence *for* the class); a sample with none gives 0. The reference is
    :func:`xaicourse.maps.mask_share` (:func:`xaicourse.metrics.mask_energy` scores such a sample
    NaN, "no map", instead of 0).
    """
    attribution, region = testing.region_case()
    expected = mask_share(attribution, region)
    positive = attribution.clamp(min=0)

    def share(values, denominator):
        return (values * region).sum((1, 2)) / denominator

    compare(share_in_region(attribution.clone(), region.clone()), expected, [
        Mistake("you returned one number for the whole batch: sum over the pixels of each sample (dims 1 and 2), not "
                "over the batch", when=lambda g: g.numel() == 1),
        Mistake("a sample with no positive attribution gives NaN (0/0): return 0 there (guard the division, e.g. "
                "torch.where(total > 0, inside / total, 0))", when=lambda g: g.shape == (3,) and bool(torch.isnan(g[1]))),
        Mistake("you used the signed attribution: keep only the positive part (clamp(min=0)) before summing",
                lambda: share(attribution, attribution.sum((1, 2)))),
        Mistake("you used abs(): negative attribution is evidence *against* the class; keep only the positive part "
                "(clamp(min=0))", lambda: share(attribution.abs(), attribution.abs().sum((1, 2)))),
        Mistake("you divided by the region's area: divide the positive mass inside by the positive mass of the whole map",
                lambda: share(positive, region.sum((1, 2)))),
        Mistake("you divided by the positive mass of the whole batch: normalise each sample by its own total",
                lambda: share(positive, positive.sum())),
    ], atol=1e-4, shape_hint="return one share per sample, shape (3,): sum over both pixel dimensions (dim=(1, 2))",
        otherwise=lambda g: "expected shares {}, got {}: inside = (positive * region).sum((1, 2)), total = "
                            "positive.sum((1, 2))".format(*_differing(expected, g)))
    moved = region.clone()
    moved[0] = False
    moved[0, -2:, -2:] = True                            # each sample has its own region
    compare(share_in_region(attribution.clone(), moved), mask_share(attribution, moved), atol=1e-4,
            otherwise="each sample has its own mask region[i]: multiply elementwise, do not use sample 0's mask for "
                      "the whole batch")
    return f"shares {[round(float(v), 2) for v in expected]}: positive mass only, per sample, guarded against 0/0"


# --------------------------------------------------------------------------------------------
# Chapter 07: deletion AUC
# --------------------------------------------------------------------------------------------
def _deletion_logits(model, x, saliency, n_steps, channels=slice(None)):
    """Logits (n_steps + 1, classes) along the deletion path (pixels set to 0, most salient first)."""
    order = saliency.flatten().argsort(descending=True)
    images = x.repeat(n_steps + 1, 1, 1, 1).flatten(2)
    for k in range(n_steps + 1):
        images[k, channels, order[: k * order.numel() // n_steps]] = 0.0
    with torch.no_grad():
        return model(images.view(-1, *x.shape[1:]))


def _deletion_mistakes(case, target, n_steps) -> list[Mistake]:
    model, x, saliency = case
    logits = _deletion_logits(model, x, saliency, n_steps)
    probs = logits.softmax(dim=1)

    def area(scores, dx=1 / n_steps):
        return torch.trapezoid(scores, dx=dx).item()

    late = "your curve starts after the first deletion: include the unperturbed image as the point at fraction 0"
    return [
        Mistake("you deleted the LEAST important pixels first: sort the saliency in descending order",
                lambda: metrics.deletion_auc(model, x, -saliency[None], target, n_steps=n_steps, baseline=0.0).auc.item()),
        Mistake("the x axis should be the FRACTION of pixels deleted, from 0 to 1: use dx = 1 / n_steps, not 1",
                area(probs[:, target], dx=1.0)),
        Mistake("you followed the predicted class of each perturbed image: follow the given target class at every step",
                area(probs.max(dim=1).values)),
        Mistake("you integrated logits: turn them into probabilities with softmax first", area(logits[:, target])),
        Mistake("you deleted the pixels in one channel only: set the pixel to 0 in every channel (x[:, :, rows, cols])",
                lambda: area(_deletion_logits(model, x, saliency, n_steps, channels=0).softmax(1)[:, target])),
        Mistake(late, area(probs[1:, target])),
        Mistake(late, area(probs[1:, target], dx=1 / (n_steps - 1))),
        Mistake("you averaged the scores: integrate with the trapezoidal rule (torch.trapezoid or np.trapezoid with "
                "dx = 1 / n_steps)", probs[:, target].mean().item()),
        *[Mistake(f"you followed class {c}, not the target {target}: read the probability of the target class at every "
                  "step", area(probs[:, c])) for c in range(probs.shape[1]) if c != target],
    ]


@grader
def check_deletion_auc(deletion_auc) -> str:
    """Grade ``deletion_auc(model, x, saliency, target, n_steps) -> float``. Chapter 07.

    x (1, C, H, W); saliency (H, W); pixels (all channels) are set to 0 from the most salient, the
    first k*N//n_steps at step k = 0..n_steps; the AUC of the target's probability over [0, 1].
    """
    for seed, target, n_steps in ((0, 2, 4), (1, 0, 16), (2, 1, 5)):  # 16 pixels in 5 steps: k*N//n_steps rounds down
        case = testing.deletion_case(seed)
        model, x, saliency = case
        x_before, saliency_before, state = x.clone(), saliency.clone(), ModelState.of(model)
        got = deletion_auc(model, x, saliency, target, n_steps)
        expect_as_found(model, state)
        expect_unchanged("your function changed x (or the saliency) in place: delete pixels in a copy (x.clone())",
                         (x, x_before), (saliency, saliency_before))
        curve = metrics.deletion_auc(model, x, saliency[None], target, n_steps=n_steps, baseline=0.0)
        # the exercise integrates over the fractions k / n_steps; the library over the pixels actually removed,
        # floor(k N / n_steps) / N; where n_steps does not divide N (the third case) both answers are accepted
        want = torch.trapezoid(curve.scores[0], dx=1.0 / n_steps).item()
        exact = curve.auc.item()
        try:
            if abs(as_answer(got, exact).item() - exact) < 1e-4:
                want = exact
        except CheckFailed:   # not one number: compare() below says what is wrong with it
            pass
        compare(got, want, _deletion_mistakes(case, target, n_steps), rtol=0, atol=1e-4,
                otherwise=lambda g: f"with target={target} and n_steps={n_steps} your AUC is {float(g):.4f}, expected "
                                    f"{want:.4f}: at step k set the first k*N//n_steps pixels (most salient first) to 0, "
                                    "read the target's softmax probability, then integrate over the fractions 0, "
                                    "1/n_steps, ..., 1")
    return ("matches xc.metrics.deletion_auc on three cases (4, 16 and 5 steps on 16 pixels, targets that are not the "
            "top class)")


# --------------------------------------------------------------------------------------------
# Chapter 07: max-sensitivity
# --------------------------------------------------------------------------------------------
def _sensitivity_case(seed: int):
    """A tanh CNN (its gradient moves with the input), two images (2, 2, 4, 4), targets, and the noise (5, 2, 2, 4, 4)
    that :func:`xaicourse.metrics.max_sensitivity` draws with ``radius=0.3, seed=seed``."""
    g = torch.Generator().manual_seed(100 + seed)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 4 * 4, 3)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    x = torch.rand(2, 2, 4, 4, generator=g)
    targets = torch.tensor([0, 2]) if seed == 0 else torch.tensor([1, 1])
    noise_source = torch.Generator().manual_seed(seed)
    noise = torch.stack([(torch.rand(x.shape, generator=noise_source) * 2 - 1) * 0.3 for _ in range(5)])
    return model, x, targets, noise


def _sensitivity_mistakes(explain, x, noise) -> list[Mistake]:
    a = explain(x)
    changed = [explain(x + d) for d in noise]

    def norms(t):
        return t.flatten(1).norm(dim=1)

    def ratios(numerator, denominator=lambda d, b: norms(a)):
        return torch.stack([numerator(b) / denominator(d, b) for d, b in zip(noise, changed)])

    relative = ratios(lambda b: norms(b - a))
    pixels = metrics.pixel_map
    return [
        Mistake("you returned one number for the whole batch: take the norm over each sample's values (flatten(1), "
                "norm(dim=1)), not over the batch", when=lambda g: g.numel() == 1),
        Mistake("you averaged over the noisy copies: max-sensitivity is the WORST case, the max over the copies",
                relative.mean(dim=0)),
        Mistake("you computed Yeh et al.'s unnormalised SENS_MAX, max ||a(x + d) - a(x)||: this exercise (like Quantus's "
                "MaxSensitivity) divides it by ||a(x)||, the size of the clean attribution, so that methods of different "
                "scale compare",
                ratios(lambda b: norms(b - a), lambda d, b: torch.ones(len(x))).amax(dim=0)),
        Mistake("you divided by the size of the noise ||d||: that is the local Lipschitz estimate; max-sensitivity "
                "divides by ||a(x)||", ratios(lambda b: norms(b - a), lambda d, b: norms(d)).amax(dim=0)),
        Mistake("you divided by ||a(x + d)||, the noisy attribution: divide by the clean one, ||a(x)||",
                ratios(lambda b: norms(b - a), lambda d, b: norms(b)).amax(dim=0)),
        Mistake("you compared the sizes ||a(x + d)|| - ||a(x)||: take the norm of the difference, ||a(x + d) - a(x)||",
                ratios(lambda b: (norms(b) - norms(a)).abs()).amax(dim=0)),
        Mistake("you used squared norms: take the (Frobenius) norm itself, .norm(), not the sum of squares",
                (relative**2).amax(dim=0)),
        Mistake("you compared pixel maps (|a| summed over channels): compare the attributions as explain returns them",
                lambda: torch.stack([norms(pixels(b) - pixels(a)) / norms(pixels(a)) for b in changed]).amax(dim=0)),
    ]


@grader
def check_max_sensitivity(max_sensitivity) -> str:
    """Grade ``max_sensitivity(explain, x, noise) -> (B,)``: max_i ||a(x + noise[i]) - a(x)|| / ||a(x)||. Chapter 07.

    ``explain(x)`` returns an attribution shaped like x; ``noise`` (N, B, C, H, W) holds the N
    perturbations; norms are Frobenius norms per sample. The reference is
    :func:`xaicourse.metrics.max_sensitivity` with the same noise.
    """
    for seed in (0, 1):
        model, x, targets, noise = _sensitivity_case(seed)

        def explain(inputs, model=model, targets=targets):
            return saliency.vanilla_gradient(model, inputs, targets)

        x_before, noise_before, state = x.clone(), noise.clone(), ModelState.of(model)
        got = max_sensitivity(explain, x, noise)
        expect_as_found(model, state)
        expect_unchanged("your function changed x or the noise in place: build the noisy input as a new tensor, "
                         "x + noise[i]", (x, x_before), (noise, noise_before))
        want = metrics.max_sensitivity(model, saliency.vanilla_gradient, x, targets, radius=0.3, n_samples=5, seed=seed)
        compare(got, want, _sensitivity_mistakes(explain, x, noise), rtol=1e-4, atol=1e-5,
                shape_hint="one value per sample, shape (2,): norms over each sample's values, max over the copies",
                otherwise=lambda g: "expected {}, got {}: for each copy i compute ||explain(x + noise[i]) - "
                                    "explain(x)|| / ||explain(x)|| per sample, then take the max over i"
                                    .format(*_differing(want, g)))
    return "matches xc.metrics.max_sensitivity on two cases (5 noisy copies each, two images per batch)"
