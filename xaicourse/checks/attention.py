"""Check of chapter 04's exercise: attention rollout.

Graded on :func:`xaicourse.testing.attention_case` against :func:`xaicourse.attention.rollout`;
:func:`rollout_with` rebuilds each known mistake (one step done wrong) to recognise it.
"""
from __future__ import annotations

import torch

from .. import attention, testing
from .core import Mistake, compare, expect_unchanged, grader

__all__ = ["check_attention_rollout", "rollout_with"]

_MISTAKES = {
    "the residual connection is missing: use 0.5 * A + 0.5 * I for each layer (the identity stands for the skip "
    "connection around attention)": dict(residual="none"),
    "you add the identity without halving or re-normalising: rows then sum to 2, 4, 8 ... over the layers; use "
    "0.5 * A + 0.5 * I and divide each row by its sum": dict(residual="plus", renormalise=False),
    "the rows are not re-normalised: after fusing heads with max (or min) and adding the identity, divide each "
    "row by its sum so that every layer stays a mixing matrix": dict(renormalise=False),
    "the multiplication order is reversed: later layers act on the result of earlier ones, so the product is "
    "R = A_L @ ... @ A_2 @ A_1 (result = a @ result, layer by layer)": dict(last_on_left=False),
    "the heads were fused over the wrong axis: attentions are (layers, heads, T, T), so fuse dim 1 (the heads), "
    "not dim 0 (the layers)": dict(heads_dim=0),
}


def rollout_with(attentions: torch.Tensor, head_fusion: str = "mean", residual: str = "half", renormalise: bool = True,
                 last_on_left: bool = True, heads_dim: int = 1) -> torch.Tensor:
    """Rollout with each step done right (the defaults) or wrong, to recognise the typical mistakes. Chapter 04.

    ``residual``: "half" (0.5 A + 0.5 I), "plus" (A + I) or "none"; ``renormalise`` the rows after
    adding the identity; ``last_on_left``: R = A_L ... A_1; ``heads_dim``: the axis fused.
    """
    fused = attentions.mean(heads_dim) if head_fusion == "mean" else attentions.amax(heads_dim)
    eye = torch.eye(attentions.shape[-1], dtype=attentions.dtype)
    result = eye
    for a in fused:
        a = {"half": 0.5 * a + 0.5 * eye, "plus": a + eye, "none": a}[residual]
        if renormalise:
            a = a / a.sum(dim=-1, keepdim=True)
        result = a @ result if last_on_left else result @ a
    return result


def _otherwise(head_fusion: str):
    def hint(got: torch.Tensor) -> str:
        sums = got.sum(dim=-1)
        if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
            return (f"with head_fusion={head_fusion!r} the rows of your rollout sum to "
                    f"{[round(float(v), 3) for v in sums]}, not 1: re-normalise each layer's matrix after adding the "
                    "identity")
        return (f"with head_fusion={head_fusion!r} your rollout differs from the reference xc.attention.rollout: fuse "
                "heads, 0.5 * A + 0.5 * I, re-normalise rows, R = A_L ... A_1")
    return hint


@grader
def check_attention_rollout(rollout) -> str:
    """Grade ``rollout(attentions, head_fusion="mean") -> (T, T)`` for attentions (layers, heads, T, T). Chapter 04.

    Expected: fuse the heads ("mean" or "max" over the heads axis), add the residual as
    0.5 * A + 0.5 * I, re-normalise each row to sum to 1, and multiply with the last layer on the
    left, R = A_L ... A_1 (as ``xaicourse.attention.rollout``).
    """
    attentions = testing.attention_case()
    for head_fusion in ("mean", "max"):
        original = attentions.clone()
        got = rollout(attentions, head_fusion=head_fusion)
        expect_unchanged("your function changed the attentions passed in: work on a copy (avoid in-place operations "
                         "such as += or fill_diagonal_)", (attentions, original))
        compare(got, attention.rollout(attentions, head_fusion=head_fusion), [
            Mistake(f"with head_fusion={head_fusion!r}: {hint}", lambda kw=kw: rollout_with(attentions, head_fusion, **kw))
            for hint, kw in _MISTAKES.items()
        ], atol=1e-5, otherwise=_otherwise(head_fusion),
            shape_hint="for attentions of shape (3 layers, 4 heads, 5, 5) the rollout is (5, 5): fuse the heads axis "
                       "(dim 1), then multiply the 3 layer matrices")
    return "mean and max head fusion, residual identity, row re-normalisation and layer order all match the reference"
