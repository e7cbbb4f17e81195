"""Checks of the evaluation exercises: the share of attribution inside a region (chapter 06, exercise 6,
the shortcut detector) and the deletion AUC (chapter 07).

References: :func:`xaicourse.metrics.mask_energy` and :func:`xaicourse.metrics.deletion_auc`, on
the fixed cases :func:`xaicourse.testing.region_case` and :func:`xaicourse.testing.deletion_case`.
"""
from __future__ import annotations

import torch

from .. import metrics, testing
from .core import Mistake, ModelState, compare, expect_as_found, expect_unchanged, grader

__all__ = ["check_deletion_auc", "check_shortcut_detector"]


# --------------------------------------------------------------------------------------------
# Chapter 06: the share of positive attribution inside a region
# --------------------------------------------------------------------------------------------
def _rounded(values: torch.Tensor) -> list[float]:
    return [round(float(v), 3) for v in values]


@grader
def check_shortcut_detector(share_in_region) -> str:
    """Grade ``share_in_region(attribution, region) -> (B,)``: the share of positive attribution mass in a region.
    Chapter 06.

    ``attribution`` is (B, H, W) (one value per pixel), ``region`` a bool mask (B, H, W). Only positive
    attribution counts (evidence *for* the class); a sample with none gives 0. The reference is
    :func:`xaicourse.metrics.mask_energy`.
    """
    attribution, region = testing.region_case()
    expected = metrics.mask_energy(attribution, region)
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
        otherwise=lambda g: f"expected shares {_rounded(expected)}, got {_rounded(g)}: inside = (positive * "
                            "region).sum((1, 2)), total = positive.sum((1, 2))")
    moved = region.clone()
    moved[0] = False
    moved[0, -2:, -2:] = True                            # each sample has its own region
    compare(share_in_region(attribution.clone(), moved), metrics.mask_energy(attribution, moved), atol=1e-4,
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
    for seed, target, n_steps in ((0, 2, 4), (1, 0, 16)):
        case = testing.deletion_case(seed)
        model, x, saliency = case
        x_before, saliency_before, state = x.clone(), saliency.clone(), ModelState.of(model)
        got = deletion_auc(model, x, saliency, target, n_steps)
        expect_as_found(model, state)
        expect_unchanged("your function changed x (or the saliency) in place: delete pixels in a copy (x.clone())",
                         (x, x_before), (saliency, saliency_before))
        want = metrics.deletion_auc(model, x, saliency[None], target, n_steps=n_steps, baseline=0.0).auc.item()
        compare(got, want, _deletion_mistakes(case, target, n_steps), rtol=0, atol=1e-4,
                otherwise=lambda g: f"with target={target} and n_steps={n_steps} your AUC is {float(g):.4f}, expected "
                                    f"{want:.4f}: at step k set the first k*N//n_steps pixels (most salient first) to 0, "
                                    "read the target's softmax probability, then integrate over the fractions 0, "
                                    "1/n_steps, ..., 1")
    return "matches xc.metrics.deletion_auc on two cases (4 and 16 steps, targets that are not the top class)"
