"""Check of chapter 00's warm-up exercise: softmax over the last dimension."""
from __future__ import annotations

import torch

from .core import Mistake, compare, expect_unchanged, grader

__all__ = ["check_softmax"]


def _rows_sum_to_one(p: torch.Tensor) -> bool:
    return torch.allclose(p.sum(dim=-1), torch.ones(p.shape[:-1], dtype=p.dtype), atol=1e-5)


@grader
def check_softmax(softmax) -> str:
    """Grade ``softmax(logits) -> probabilities`` over the last dimension of a (B, C) tensor. Chapter 00."""
    logits = torch.tensor([[2.0, 1.0, 0.1], [0.0, 0.0, 0.0]])
    before = logits.clone()
    got = softmax(logits)
    expect_unchanged("your function changed the logits passed in (an in-place operation such as -=, exp_() or "
                     "sub_()): compute new tensors, z = logits - max, and leave the input as it was", (logits, before))
    compare(got, before.softmax(dim=-1), [
        Mistake("each row should sum to 1: normalise by the sum over the classes (dim=-1), not over the batch or "
                "everything", when=lambda p: p.shape == before.shape and not _rows_sum_to_one(p)),
    ], otherwise="the values differ from torch.softmax: exponentiate first, then divide by the row sum",
        atol=1e-5, shape_hint="the output should keep the input's shape (one probability per logit)")
    big = torch.tensor([[1000.0, 999.0], [0.0, -1.0]])  # two rows far apart: a shift by the batch's max fails row 2
    got = softmax(big.clone())
    compare(got, big.softmax(dim=-1), [
        Mistake("logits of 1000 give inf/NaN: subtract each row's max before exp (it cancels out)",
                when=lambda p: p.shape == big.shape and not torch.isfinite(p[0]).all()),
        Mistake("you subtracted one max for the whole batch (logits.max()), so the row [0, -1] underflows to 0 / 0: "
                "subtract each row's own max, logits.max(dim=-1, keepdim=True).values",
                when=lambda p: p.shape == big.shape and not torch.isfinite(p[1]).all()),
    ], otherwise="for logits [[1000, 999], [0, -1]] expected [[0.731, 0.269], [0.731, 0.269]]: subtract each row's "
                 "max before exp", atol=1e-5)
    return "rows sum to 1, values match torch.softmax, and large logits are stable"
