"""The grading core: how every ``check_*`` of the course grades your function.

A check runs your function on a small fixed case (:mod:`xaicourse.testing`) and hands the answer to
:func:`compare`, the one grading routine: it reads the answer like the reference (any dtype or
device, a tensor or a plain number), passes when the two agree, and otherwise walks the check's
catalogue of known mistakes (:class:`Mistake`) once (:func:`expect_none_of`) and fails with the
hint of the first mistake the answer matches, or with the check's general hint. Whatever the answer
is (None, a list, a float64 tensor on a GPU), the learner gets a :class:`CheckFailed` with a hint,
never a crash of the check itself. :func:`expect_as_found` and :func:`expect_unchanged` add the hygiene part: no hooks,
no ``.grad``, the model's mode and weights and the caller's tensors as they were.

:func:`grader` turns a check body into a check: an untouched stub is reported as "not implemented
yet" (no traceback), a pass prints one line, and each outcome is recorded for
``python -m xaicourse.notebooks grade`` (see :func:`record`). In a notebook a failed check shows
its hint, not a traceback through the package (:meth:`CheckFailed._render_traceback_`).
Taught in chapter 00.
"""
from __future__ import annotations

import functools
import json
import numbers
import os
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import hooks

__all__ = [
    "CheckFailed", "Mistake", "ModelState", "RESULTS_ENV", "as_answer", "compare", "expect", "expect_as_found",
    "expect_no_hooks", "expect_none_of", "expect_returned", "expect_unchanged", "grader", "hooks_left", "record",
]

RESULTS_ENV = "XAICOURSE_GRADE_FILE"
hooks_left = hooks.hooks_left


class CheckFailed(AssertionError):
    """Your function ran but its answer is wrong; the message says what to look at. Chapter 00.

    ``check`` is the name of the check that failed (set by :func:`grader`).
    """

    check: str | None = None

    def _render_traceback_(self) -> list[str]:
        """The lines IPython shows instead of a traceback: the hint first, no frames of the package."""
        title = f"{self.check} failed" if self.check else "the check failed"
        hint = textwrap.wrap(str(self), 100) or [""]
        return [f"\x1b[1;31mCheckFailed\x1b[0m: {title}: {hint[0]}", *hint[1:], "",
                "(The check ran your function on a small fixed case: fix the function, run its cell again, then "
                "run the check.)"]


def expect(condition: bool, hint: str) -> None:
    """Raise :class:`CheckFailed` with ``hint`` unless ``condition`` holds. Chapter 00."""
    if not condition:
        raise CheckFailed(hint)


def record(check: str, status: str, message: str) -> None:
    """Append one outcome as a JSON line to the file named by $XAICOURSE_GRADE_FILE, if set. Chapter 00.

    ``python -m xaicourse.notebooks grade`` sets it to collect every check a notebook runs.
    """
    path = os.environ.get(RESULTS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"check": check, "status": status, "message": message}) + "\n")


def grader(func):
    """Turn a check body into a check: stub -> "not implemented yet", pass -> one line, else raise. Chapter 00.

    The body receives the learner's function and returns a short description of what passed. The
    check returns True (passed) or False (not implemented yet); each outcome is also recorded.
    """
    @functools.wraps(func)
    def wrapper(learner_fn, *args, **kwargs):
        name = func.__name__
        try:
            expect(callable(learner_fn), f"pass your function itself, {name}(my_function), not {_describe(learner_fn)}")
            detail = func(learner_fn, *args, **kwargs)
        except NotImplementedError:
            print(f"[not implemented yet] {name}: write your solution in the exercise cell, run it, then run this "
                  "check again.")
            record(name, "not attempted", "the stub still raises NotImplementedError")
            return False
        except CheckFailed as err:
            err.check = name
            record(name, "failed", str(err))
            raise
        except Exception as err:
            record(name, "failed", f"{type(err).__name__}: {err}")
            raise
        print(f"[passed] {name}: {detail}")
        record(name, "passed", detail)
        return True

    return wrapper


# --------------------------------------------------------------------------------------------
# The grading routine
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mistake:
    """One entry of a check's catalogue: a typical wrong answer and the hint that names it. Chapter 00.

    ``answer`` is what the mistake gives (a tensor, a number, or a function of no arguments that
    computes it, called only when the catalogue gets that far); or ``when`` is a test of the
    learner's answer (a float64 CPU tensor). A test that does not apply to the answer (e.g. another
    shape) does not match.
    """
    hint: str
    answer: Any = None
    when: Callable[[torch.Tensor], bool] | None = None

    def matches(self, got: torch.Tensor, rtol: float, atol: float) -> bool:
        if self.when is not None:
            try:
                return bool(self.when(got))
            except (RuntimeError, IndexError, ValueError):
                return False
        wrong = self.answer() if callable(self.answer) else self.answer
        return _agrees(got, _values(wrong), rtol, atol)


def compare(got, want, mistakes: Iterable[Mistake] = (), *, otherwise: str | Callable[[torch.Tensor], str],
            rtol: float = 1e-5, atol: float = 1e-6, shape_hint: str = "") -> torch.Tensor:
    """Grade ``got`` against the reference ``want``; return it as a float64 CPU tensor when they agree. Chapter 00.

    Otherwise raise :class:`CheckFailed` with the hint of the first mistake in ``mistakes`` that
    ``got`` matches; if none does, with the expected shape (and ``shape_hint``) when the shapes
    differ, else with ``otherwise`` (a string, or a function of the answer that writes one).
    ``want`` is a tensor or a number; ``got`` is read by :func:`as_answer`.
    """
    got, want = as_answer(got, like=want), _values(want)
    if _agrees(got, want, rtol, atol):
        return got
    expect_none_of(got, mistakes, rtol=rtol, atol=atol)
    if got.shape != want.shape:
        hint = f": {shape_hint}" if shape_hint else ""
        raise CheckFailed(f"expected shape {tuple(want.shape)}, got {tuple(got.shape)}{hint}")
    raise CheckFailed(otherwise(got) if callable(otherwise) else otherwise)


def expect_none_of(got: torch.Tensor, mistakes: Iterable[Mistake], *, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Walk a catalogue once: CheckFailed with the hint of the first mistake that ``got`` matches. Chapter 00.

    :func:`compare` runs it when the answer differs from the reference; a check whose answer has no
    single reference value (e.g. the noise SmoothGrad drew) runs it on its own.
    """
    for mistake in mistakes:
        if mistake.matches(got, rtol, atol):
            raise CheckFailed(mistake.hint)


def as_answer(got, like, *, shape_hint: str | None = None) -> torch.Tensor:
    """The learner's answer as a float64 CPU tensor, read like the reference ``like``. Chapter 00.

    ``like`` a tensor: the answer must be a tensor (any dtype, any device), and with ``shape_hint``
    also have ``like``'s shape and finite values. ``like`` a number: any real number, or a
    tensor/array with one element. Anything else fails with a hint.
    """
    expect_returned(got)
    if isinstance(like, torch.Tensor):
        expect(isinstance(got, torch.Tensor), f"return a torch.Tensor, not {_describe(got)}")
    else:
        single = (isinstance(got, torch.Tensor) and got.numel() == 1) or (isinstance(got, np.ndarray) and got.size == 1)
        expect(single or (isinstance(got, numbers.Real) and not isinstance(got, bool)),
               f"return one number (a float), not {_describe(got)}")
    expect(not (isinstance(got, torch.Tensor) and got.is_complex()), "your result is complex: return real values")
    try:
        # a Python float is float64: read it as such (as_tensor would round it to float32 first)
        value = (torch.tensor(float(got), dtype=torch.float64) if isinstance(got, numbers.Real)
                 else torch.as_tensor(got).detach().to("cpu", torch.float64))
    except Exception as err:  # noqa: BLE001 (a meta tensor, a tensor subclass, ...: the learner sees why)
        raise CheckFailed(f"the values of your result cannot be read ({type(err).__name__}: {err}): return a tensor "
                          "that holds values, on the CPU or a GPU") from None
    if not isinstance(like, torch.Tensor):
        return value.reshape(())
    if shape_hint is not None:
        expect(value.shape == like.shape, f"expected shape {tuple(like.shape)}, got {tuple(value.shape)}: {shape_hint}")
        expect(bool(torch.isfinite(value).all()), "your result has NaN or inf values: look for a division by zero, "
                                                  "or a log or sqrt of a value <= 0")
    return value


def expect_returned(got) -> None:
    """CheckFailed when the learner's function returned None (it has no ``return``). Chapter 00."""
    expect(got is not None, "your function returned None: end it with `return <your result>` (a function without a "
                            "return statement gives None)")


def _values(reference) -> torch.Tensor:
    """A reference value (tensor, number, list) as a float64 CPU tensor."""
    return torch.as_tensor(reference).detach().to("cpu", torch.float64)


def _agrees(got: torch.Tensor, want: torch.Tensor, rtol: float, atol: float) -> bool:
    return got.shape == want.shape and torch.allclose(got, want, rtol=rtol, atol=atol)


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return "a numpy array (torch.from_numpy(...) turns one into a tensor)"
    if isinstance(value, tuple):
        return f"a tuple of {len(value)} values (return only the result itself)"
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"{type(value).__name__} {value!r}"[:80]


# --------------------------------------------------------------------------------------------
# Hygiene: the model and the caller's tensors are left as found
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelState:
    """What :func:`expect_as_found` compares: each module's mode, requires_grad and the parameter and buffer
    values. Take it with ``ModelState.of(model)`` before calling the learner's function. Chapter 00."""
    training: tuple[bool, ...]
    requires_grad: tuple[bool, ...]
    values: tuple[torch.Tensor, ...]

    @classmethod
    def of(cls, model: nn.Module) -> ModelState:
        return cls(tuple(m.training for m in model.modules()), tuple(p.requires_grad for p in model.parameters()),
                   tuple(t.detach().clone() for t in [*model.parameters(), *model.buffers()]))


def expect_no_hooks(model: nn.Module) -> None:
    """CheckFailed when a hook is still registered on ``model``. Chapter 02."""
    hooks.expect_no_hooks(model, error=CheckFailed)


def expect_as_found(model: nn.Module, before: ModelState, *, grad_of: str = "x") -> None:
    """CheckFailed when the learner's function left hooks, ``.grad``, another mode, frozen parameters or other
    weights on ``model``; ``grad_of`` names the tensor to differentiate in the hint. Chapter 00."""
    expect_no_hooks(model)
    params = list(model.parameters())
    expect(tuple(p.requires_grad for p in params) == before.requires_grad,
           "the model's parameters no longer require grad: if you switch requires_grad off, switch it back on in a "
           f"finally block (you do not need to: torch.autograd.grad(score, {grad_of}) only computes that gradient)")
    expect(all(p.grad is None for p in params),
           f"the model's parameters now carry .grad (left by .backward()): use torch.autograd.grad(score, {grad_of}), "
           "which leaves the parameters alone, or set each p.grad back to None")
    now = tuple(m.training for m in model.modules())
    expect(now == before.training, f"the model was in {'training' if any(before.training) else 'eval'} mode and is "
                                   f"now in {'training' if any(now) else 'eval'} mode: leave the mode as you found it")
    expect(all(_same(a, b) for a, b in zip([*params, *model.buffers()], before.values)),
           "your function changed the model's weights or buffers (their values, dtype or device): explain the model, "
           "do not modify it")


def expect_unchanged(hint: str, *pairs: tuple[torch.Tensor, torch.Tensor]) -> None:
    """CheckFailed with ``hint`` unless each ``(tensor, copy_made_before)`` still has the copy's values, no
    ``.grad`` and the copy's requires_grad. Chapter 00."""
    for now, before in pairs:
        expect(now.requires_grad == before.requires_grad and (not now.is_leaf or now.grad is None)
               and _same(now, before), hint)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.device == b.device and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.detach(), b)
