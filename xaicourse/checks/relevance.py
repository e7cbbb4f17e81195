"""Check of chapter 09's exercise: gradient-weighted attention rollout (Chefer et al. 2021).

The learner writes ``relevance(attentions, gradients) -> R (T, T)`` for one input, with
attentions and their gradients of shape (layers, heads, T, T): R = I, then for each layer from the
first to the last R <- R + mean_heads((dA * A)^+) @ R. Graded on a fixed case against
:func:`xaicourse.relevance.gradient_rollout`; :func:`relevance_with` rebuilds each known mistake.
"""
from __future__ import annotations

import torch

from .. import relevance, testing
from .core import Mistake, compare, expect_unchanged, grader

__all__ = ["check_attention_relevance", "gradient_case", "relevance_with"]

_MISTAKES = {
    "the negative part is kept: clamp the product at zero, (gradients * attentions).clamp(min=0), before averaging "
    "the heads (Chefer et al. keep only the positive, class-supporting evidence)": dict(relu="none"),
    "you clamp after averaging the heads: take (gradients * attentions).clamp(min=0) per head first, then the mean "
    "over the heads (a head's negative evidence must not cancel another head's positive evidence)": dict(relu="after"),
    "the heads are summed, not averaged: use .mean over the heads axis (dim 1 of (layers, heads, T, T)), so R does "
    "not grow with the number of heads": dict(heads="sum"),
    "the heads are combined with max: the rule averages them, mean over dim 1": dict(heads="max"),
    "the mean was taken over the layers axis (dim 0), not the heads (dim 1): attentions are (layers, heads, T, T)":
        dict(heads="layers"),
    "the identity is missing from the update: R <- R + A_bar @ R (the + R is the residual connection around "
    "attention), not R <- A_bar @ R": dict(identity="none"),
    "the multiplication order is reversed: each layer acts on what the earlier layers gave, so the update is "
    "R = R + A_bar @ R (A_bar on the left), not R + R @ A_bar (which is the same as looping over the layers from "
    "the last to the first)": dict(order="right"),
    "the gradient is missing: weigh each attention weight by its gradient, (gradients * attentions).clamp(min=0); "
    "attention alone is not class-specific": dict(weight="attention"),
    "the attention is missing: multiply the gradient by the attention weight itself, (gradients * "
    "attentions).clamp(min=0), not the gradient alone": dict(weight="gradient"),
}


def gradient_case() -> tuple[torch.Tensor, torch.Tensor]:
    """Attentions (3 layers, 4 heads, 5, 5), row-stochastic, and signed gradients of the same shape. Chapter 09."""
    attentions = testing.attention_case()
    gradients = torch.randn(attentions.shape, generator=torch.Generator().manual_seed(9))
    return attentions, gradients


def relevance_with(attentions: torch.Tensor, gradients: torch.Tensor, *, relu: str = "before", heads: str = "mean",
                   identity: str = "plus", order: str = "left", layers: str = "forward",
                   weight: str = "product") -> torch.Tensor:
    """Gradient-weighted rollout with each step done right (the defaults) or wrong. Chapter 09.

    ``relu``: "before" the head mean, "after" it, "none"; ``heads``: "mean", "sum", "max" or "layers"
    (the mean over the wrong axis); ``identity``: "plus" (R + A_bar R) or "none" (A_bar R);
    ``order``: "left" (A_bar @ R) or "right" (R @ A_bar, which equals "left" over the layers reversed);
    ``layers``: "forward" or "reversed";
    ``weight``: "product" (dA * A), "attention" (A alone) or "gradient" (dA alone).
    """
    product = {"product": gradients * attentions, "attention": attentions, "gradient": gradients}[weight]
    if relu == "before":
        product = product.clamp(min=0)
    if heads == "layers":
        fused = product.mean(dim=0)  # (heads, T, T): the loop below then runs over the heads
    else:
        fused = {"mean": product.mean(dim=1), "sum": product.sum(dim=1), "max": product.amax(dim=1)}[heads]
    if relu == "after":
        fused = fused.clamp(min=0)
    result = torch.eye(attentions.shape[-1], dtype=attentions.dtype)
    for a in (fused if layers == "forward" else fused.flip(0)):
        step = a @ result if order == "left" else result @ a
        result = result + step if identity == "plus" else step
    return result


def _otherwise(got: torch.Tensor) -> str:
    square = got.dim() == 2 and got.shape[0] == got.shape[1]
    if square and not torch.allclose(got.diagonal(), got.diagonal().clamp(min=1)):
        return ("a diagonal entry of your R is below 1: R starts as the identity and only non-negative terms are added "
                "(R = I, then R = R + A_bar @ R with A_bar = mean over heads of (gradients * attentions).clamp(min=0))")
    return ("your R differs from the reference: R = I; for each layer in forward order, A_bar = (gradients * "
            "attentions).clamp(min=0).mean(dim=0) of that layer's (heads, T, T), then R = R + A_bar @ R")


@grader
def check_attention_relevance(relevance_fn) -> str:
    """Grade ``relevance_fn(attentions, gradients) -> R (T, T)`` for (layers, heads, T, T) inputs. Chapter 09.

    Expected (Chefer et al. 2021): R = I; for each layer l from first to last,
    A_bar = mean over heads of (dA_l * A_l)^+ and R <- R + A_bar @ R (as
    ``xaicourse.relevance.gradient_rollout``). Row 0 is then the class token's relevance.
    """
    attentions, gradients = gradient_case()
    saved = attentions.clone(), gradients.clone()
    got = relevance_fn(attentions, gradients)
    expect_unchanged("your function changed the attentions or gradients passed in: work on new tensors (avoid "
                     "in-place operations such as *=, clamp_ or +=)", (attentions, saved[0]), (gradients, saved[1]))
    mistakes = [Mistake(hint, lambda kw=kw: relevance_with(attentions, gradients, **kw))
                for hint, kw in _MISTAKES.items()]
    mistakes.append(Mistake("your R is all zeros: start from the identity, R = torch.eye(T), not from zeros",
                            when=lambda g: g.dim() == 2 and bool((g == 0).all())))
    compare(got, relevance.gradient_rollout(attentions, gradients), mistakes, rtol=1e-4, atol=1e-5,
            otherwise=_otherwise,
            shape_hint="for attentions of shape (3 layers, 4 heads, 5, 5) R is (5, 5): average the heads (dim 1) and "
                       "update one (T, T) matrix layer by layer")
    return ("positive part, head mean, identity start, R + A_bar @ R in forward layer order: R matches the reference; "
            "R[0, 1:] is the class token's relevance")
