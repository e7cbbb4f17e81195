"""Which output to explain: the one place target arguments are checked and resolved.

``target`` may be None (each sample's top class), an int (the same class for every sample), or a
sequence / 1-D tensor with one class per sample. Taught in chapter 01.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch


def resolve_targets(target, logits: torch.Tensor) -> torch.Tensor:
    """The target class of each sample as a LongTensor (B,) on ``logits``' device.

    ``logits`` is the model output (B, C); it provides the argmax for None and the valid range.
    """
    if logits.ndim != 2:
        raise ValueError(f"expected model outputs of shape (batch, classes), got {tuple(logits.shape)}")
    batch, n_classes = logits.shape
    if target is None:
        return logits.argmax(dim=1)
    if isinstance(target, bool):
        raise TypeError("target must be None, an int class index or one index per sample, not a bool")
    if isinstance(target, int) or (isinstance(target, torch.Tensor) and target.ndim == 0):
        targets = torch.full((batch,), int(target), dtype=torch.long)
    elif isinstance(target, (Sequence, torch.Tensor)) and not isinstance(target, str):
        targets = torch.as_tensor(target)
        if targets.ndim != 1 or len(targets) != batch:
            raise ValueError(f"give one target per sample: the batch has {batch} samples, got target of shape {tuple(targets.shape)}")
        if targets.is_floating_point() or targets.dtype == torch.bool:
            raise TypeError(f"targets must be integer class indices, got dtype {targets.dtype}")
        targets = targets.long()
    else:
        raise TypeError(f"target must be None, an int or one int per sample, got {type(target).__name__}")
    bad = (targets < 0) | (targets >= n_classes)
    if bad.any():
        raise ValueError(f"target {targets[bad][0].item()} is out of range: the model has {n_classes} classes, valid targets are 0..{n_classes - 1}")
    return targets.to(logits.device)


def select(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The score of each sample's target class, shape (B,)."""
    if len(targets) != len(logits):
        raise ValueError(f"{len(targets)} targets for {len(logits)} samples: give one target per sample")
    return logits.gather(1, targets.view(-1, 1)).squeeze(1)
