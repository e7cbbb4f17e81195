"""Check of chapter 05's exercise: the numbers behind a misclassification report.

Graded on :func:`xaicourse.testing.misclassification_case` against
:func:`xaicourse.interpret.misclassification_stats`, for a class ranked third and for the predicted
class itself.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch

from .. import interpret, testing
from .core import Mistake, ModelState, compare, expect, expect_as_found, expect_returned, grader

__all__ = ["check_misclassification_stats"]

KEYS = ("predicted", "predicted_probability", "true_rank", "true_probability", "cam_overlap")


def _as_dict(stats) -> dict | None:
    """A dict, a dataclass (the package's MisclassificationStats) or a mapping as a plain dict; None otherwise."""
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        return dataclasses.asdict(stats)
    return dict(stats) if isinstance(stats, Mapping) else None


def _reference(model, layer, x, true_class) -> dict[str, float]:
    stats = _as_dict(interpret.misclassification_stats(model, layer, x, true_class))
    return {key: float(stats[key]) for key in KEYS}


def _learners(got) -> dict[str, object]:
    expect_returned(got)
    stats = _as_dict(got)
    expect(stats is not None, f"return a dict, not {type(got).__name__}")
    missing = [key for key in KEYS if key not in stats]
    expect(not missing, f"the dict is missing the key(s) {missing}")
    return {key: stats[key] for key in KEYS}


def _grade_one(got: dict, want: dict, logits: torch.Tensor, true_class: int) -> None:
    compare(got["predicted"], want["predicted"], atol=0, otherwise=f"predicted should be the top class "
            f"{int(want['predicted'])}, got {got['predicted']!r}: logits.argmax()")
    for key, index in (("predicted_probability", int(want["predicted"])), ("true_probability", true_class)):
        compare(got[key], want[key], [
            Mistake(f"{key} is the raw logit: turn the logits into probabilities with softmax first", float(logits[index])),
        ], rtol=0, atol=1e-4, otherwise=lambda g, key=key: f"{key} should be {want[key]:.4f}, got {float(g):.4f}")
    compare(got["true_rank"], want["true_rank"], [
        Mistake("ranks start at 1 (the top class has rank 1): count the classes with a higher probability, then add 1",
                want["true_rank"] - 1),
    ], atol=0, otherwise=lambda g: f"true_rank should be {int(want['true_rank'])} for class {true_class}, got {float(g):g}")
    compare(got["cam_overlap"], want["cam_overlap"], [
        Mistake("cam_overlap is 1: you compared the predicted class's Grad-CAM with itself; compute a second Grad-CAM "
                "with target=true_class", 1.0),
    ], rtol=0, atol=1e-4, otherwise=lambda g: f"cam_overlap should be {want['cam_overlap']:.3f}, got {float(g):.3f}: "
        "keep the top 20% pixels of each map (xc.interpret.top_region) and return |A and B| / |A or B| (intersection "
        "over union)")


@grader
def check_misclassification_stats(misclassification_stats) -> str:
    """Grade ``misclassification_stats(model, target_layer, x, true_class) -> dict`` against
    :func:`xaicourse.interpret.misclassification_stats` (keys predicted, predicted_probability,
    true_rank, true_probability, cam_overlap). Chapter 05."""
    model, layer, x, _ = testing.misclassification_case()
    state = ModelState.of(model)
    with torch.no_grad():
        logits = model(x)[0]
    ranking = logits.argsort(descending=True).tolist()
    for true_class in (ranking[2], ranking[0]):  # a class ranked third, then the predicted class itself
        want = _reference(model, layer, x, true_class)
        got = _learners(misclassification_stats(model, layer, x.clone(), true_class))
        expect_as_found(model, state)
        _grade_one(got, want, logits, true_class)
    stats = _reference(model, layer, x, ranking[2])
    return (f"rank {int(stats['true_rank'])}, p={stats['true_probability']:.3f}, Grad-CAM IoU {stats['cam_overlap']:.2f} "
            "for a class ranked third; rank 1 and IoU 1 for the predicted class; no hooks left")
