"""Guarded arithmetic: the one division the course uses where a denominator can be zero (chapters 01-09).

A map normalised by its maximum, a share of relevance inside a mask, a cosine of two vectors: each
divides by something that is zero for an empty map, a constant map or a zero vector. Dividing
anyway gives NaN or inf that then spreads through a figure or a mean. :func:`safe_divide` returns
a chosen fill value (0 unless told otherwise) where the denominator is zero, and the plain quotient
everywhere else; nothing is added to the denominator, so the quotient is exact where it is defined.
"""
from __future__ import annotations

import torch

__all__ = ["safe_divide"]


def safe_divide(numerator: torch.Tensor, denominator: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """``numerator / denominator`` where the denominator is non-zero, ``fill`` where it is zero. Chapter 01.

    Both tensors broadcast against each other; the result has the broadcast shape and the
    numerator's floating dtype. No epsilon is added: where the denominator is non-zero the quotient
    is exact. No NaN or inf comes from a zero denominator (a NaN in the inputs stays NaN).
    """
    if not isinstance(numerator, torch.Tensor) or not isinstance(denominator, torch.Tensor):
        raise TypeError(f"safe_divide takes two tensors, got {type(numerator).__name__} and {type(denominator).__name__}")
    zero = denominator == 0
    quotient = numerator / torch.where(zero, torch.ones_like(denominator), denominator)
    return torch.where(zero, torch.full_like(quotient, fill), quotient)
