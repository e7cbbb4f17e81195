"""Graders for the exercises: ``check_*(your_function)``.

Each check builds a small fixed case, compares your function with the package's reference, and
prints one line when it passes. An untouched stub is reported as "not implemented yet" (no
traceback); a wrong answer raises :class:`CheckFailed` with a hint aimed at the likely mistake.
Every check also verifies that no hooks were left on the model. Taught in chapter 00.
"""
from __future__ import annotations

import functools

import torch
from torch import nn


class CheckFailed(AssertionError):
    """Your function ran but its answer is wrong; the message says what to look at."""


def expect(condition: bool, hint: str) -> None:
    if not condition:
        raise CheckFailed(hint)


def grader(func):
    """Turn a check body into a check: stub -> "not implemented yet", pass -> one line, else raise.

    The body receives the learner's function and returns a short description of what passed.
    Returns True (passed) or False (not implemented yet).
    """
    @functools.wraps(func)
    def wrapper(learner_fn, *args, **kwargs):
        try:
            detail = func(learner_fn, *args, **kwargs)
        except NotImplementedError:
            print(f"[not implemented yet] {func.__name__}: write your solution in the exercise cell, run it, then run this check again.")
            return False
        print(f"[passed] {func.__name__}: {detail}")
        return True

    return wrapper


def hooks_left(model: nn.Module) -> int:
    """How many forward/backward hooks are registered anywhere in ``model``."""
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return sum(len(getattr(m, kind, {})) for m in model.modules() for kind in kinds)


def expect_no_hooks(model: nn.Module) -> None:
    n = hooks_left(model)
    expect(n == 0, f"{n} hook(s) are still registered on the model after your function returned: "
                   "keep the handle that register_*_hook returns and call handle.remove() in a finally block")


# --------------------------------------------------------------------------------------------
# Chapter 00: the warm-up exercise
# --------------------------------------------------------------------------------------------
@grader
def check_softmax(softmax) -> str:
    """Grade ``softmax(logits) -> probabilities`` over the last dimension of a (B, C) tensor."""
    logits = torch.tensor([[2.0, 1.0, 0.1], [0.0, 0.0, 0.0]])
    got = softmax(logits)
    expect(isinstance(got, torch.Tensor), f"return a torch.Tensor, not {type(got).__name__}")
    expect(got.shape == logits.shape, f"the output should keep the input shape {tuple(logits.shape)}, got {tuple(got.shape)}")
    expect(torch.allclose(got.sum(dim=1), torch.ones(2), atol=1e-5),
           "each row should sum to 1: normalise by the sum over the classes (dim=-1), not over the batch or everything")
    expect(torch.allclose(got, logits.softmax(dim=1), atol=1e-5),
           "the values differ from torch.softmax: exponentiate first, then divide by the row sum")
    big = softmax(torch.tensor([[1000.0, 999.0]]))
    expect(torch.isfinite(big).all(), "logits of 1000 give inf/NaN: subtract each row's max before exp (it cancels out)")
    return "rows sum to 1, values match torch.softmax, and large logits are stable"
