"""Which output to explain: the one place target arguments are checked and resolved.

``target`` may be None (each sample's top class), an int (the same class for every sample), or a
sequence / 1-D tensor / NumPy array with one class per sample (NumPy integers are ints). Taught in
chapter 01.
"""
from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Union

import torch
from torch import nn

from .inputs import check_types, has_values, run_model

__all__ = ["Baseline", "Target", "check_targets", "chunk_targets", "resolve_targets", "score_gradient", "select"]

#: What to explain: None (each sample's top class), a class index, or one index per sample.
Target = Union[None, int, Sequence[int], torch.Tensor]
#: A reference input: None (zeros), a number, or a tensor shaped like x or like one sample.
Baseline = Union[None, float, torch.Tensor]


def resolve_targets(target, logits: torch.Tensor) -> torch.Tensor:
    """The target class of each sample as a LongTensor (B,) on ``logits``' device.

    ``logits`` is the model output (B, C); it provides the argmax for None and the valid range.
    Chapter 01.
    """
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be the model's output tensor (batch, classes), got {type(logits).__name__}")
    if logits.ndim != 2:
        raise ValueError(f"expected model outputs of shape (batch, classes), got {tuple(getattr(logits, 'shape', ()))}")
    checked = check_targets(target, *logits.shape, device=logits.device)
    return logits.argmax(dim=1) if checked is None else checked


def check_targets(target, batch: int, n_classes: int, *, device=None) -> torch.Tensor | None:
    """``target`` checked against a batch of ``batch`` samples and ``n_classes`` classes. Chapter 01.

    Returns one class per sample (LongTensor (batch,)), or None when ``target`` is None (each
    sample's top class: the caller takes it from the logits it computes anyway, see
    :func:`chunk_targets`). This is the check of every method whose own forward pass gives the logits
    (DeepLIFT, LRP): no extra pass of the model is needed to know the number of classes once it has
    run on the first chunk.
    """
    if target is None:
        return None
    if isinstance(target, bool):
        raise TypeError("target must be None, an int class index or one index per sample, not a bool")
    if hasattr(target, "ndim") and not isinstance(target, torch.Tensor):  # a NumPy array or scalar
        target = torch.as_tensor(target)
    if isinstance(target, torch.Tensor) and target.ndim == 0 and (target.is_floating_point() or target.dtype == torch.bool):
        raise TypeError(f"target must be an integer class index, got a tensor of dtype {target.dtype}")
    if isinstance(target, numbers.Integral) or (isinstance(target, torch.Tensor) and target.ndim == 0):
        targets = torch.full((batch,), int(target), dtype=torch.long, device=device)
    elif isinstance(target, (Sequence, torch.Tensor)) and not isinstance(target, str):
        targets = torch.as_tensor(target, device=device)
        if targets.ndim != 1 or len(targets) != batch:
            raise ValueError(f"give one target per sample: the batch has {batch} samples, got target of shape {tuple(targets.shape)}")
        if targets.is_floating_point() or targets.dtype == torch.bool:
            raise TypeError(f"targets must be integer class indices, got dtype {targets.dtype}")
        targets = targets.long()
    else:
        raise TypeError(f"target must be None, an int or one int per sample, got {type(target).__name__}")
    bad = (targets < 0) | (targets >= n_classes)
    if has_values(bad) and bad.any():
        raise ValueError(f"target {targets[bad][0].item()} is out of range: the model has {n_classes} classes, valid targets are 0..{n_classes - 1}")
    return targets


def chunk_targets(target, logits: torch.Tensor, items: slice, batch: int, memo: dict) -> torch.Tensor:
    """The targets of the samples ``items`` of a batch of ``batch``, from the chunk's own ``logits``. Chapter 01.

    ``target`` as the caller gave it; it is checked once (on the first chunk, which gives the
    number of classes) and kept in ``memo`` (an empty dict the caller owns for one call). None gives
    each sample's top class from ``logits``. No extra pass of the model.
    """
    if "checked" not in memo:
        memo["checked"] = check_targets(target, batch, logits.shape[1], device=logits.device)
    checked = memo["checked"]
    return logits.detach().argmax(dim=1) if checked is None else checked[items]


@check_types
def select(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The score of each sample's target class, shape (B,). Chapter 01."""
    if len(targets) != len(logits):
        raise ValueError(f"{len(targets)} targets for {len(logits)} samples: give one target per sample")
    return logits.gather(1, targets.view(-1, 1)).squeeze(1)


@check_types
def score_gradient(model: nn.Module, x: torch.Tensor, target) -> torch.Tensor:
    """d(logit of each sample's target) / d(x), shape like ``x``, without touching the parameters' ``.grad``.

    The samples are independent, so the gradient of the sum of their scores is each sample's own
    gradient. ``target`` as in :func:`resolve_targets`. Chapter 01.
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        out = run_model(model, x)
        (grad,) = torch.autograd.grad(select(out, resolve_targets(target, out)).sum(), x)
    return grad
