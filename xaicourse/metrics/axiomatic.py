"""Axioms: properties an attribution should have whatever the model. Chapter 07.

* ``completeness`` (:func:`xaicourse.ig.completeness_delta`, taught in chapter 03): attributions sum to
  the change of the output between the baseline and x (IG's axiom; Quantus: Completeness).
* :func:`input_invariance` (Kindermans et al. 2019, *The (un)reliability of saliency methods*): shift
  every input value by a constant and build the model that undoes the shift in its first layer's
  bias (:func:`shifted_model`). The two models compute the same function on their inputs, so an
  explanation of the function should not change; gradient x input and IG with a zero baseline do
  (Quantus: InputInvariance).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..hooks import eval_mode
from ..ig import completeness_delta as completeness
from ..inputs import check_model, check_number
from ..targets import resolve_targets
from ._common import call_method, check_images, check_method, logits

__all__ = ["completeness", "input_invariance", "shifted_model"]


class _ShiftAbsorbed(nn.Module):
    """A Conv2d or Linear that reads x + shift and computes what the original computes on x."""

    def __init__(self, layer: nn.Module, shift: float):
        super().__init__()
        self.padding = layer.padding if isinstance(layer, nn.Conv2d) else None
        self.layer = copy.deepcopy(layer)
        with torch.no_grad():
            weight = self.layer.weight
            absorbed = -shift * weight.flatten(1).sum(dim=1)          # W (x + s) - W s = W x
            bias = absorbed if self.layer.bias is None else self.layer.bias + absorbed
            self.layer.bias = nn.Parameter(bias, requires_grad=weight.requires_grad)
            if isinstance(layer, nn.Conv2d):
                self.layer.padding = (0, 0)
        self.shift = shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding is not None and any(self.padding):
            ph, pw = self.padding
            x = nn.functional.pad(x, (pw, pw, ph, ph), value=self.shift)  # the zero padding moves with the shift
        return self.layer(x)


def shifted_model(model: nn.Module, shift: float) -> nn.Module:
    """A copy of ``model`` that reads inputs shifted by ``shift`` and computes the same outputs. Chapter 07.

    ``shifted_model(model, s)(x + s) == model(x)``: the first Conv2d or Linear in
    ``model.named_modules()`` order (the input layer of a sequential CNN) gets the bias b - s * sum(W)
    and pads with ``s`` where it padded with 0, the construction of Kindermans et al. A first Conv2d
    must use numeric zero padding (``padding_mode="zeros"``).
    """
    check_model(model)
    shift = check_number("shift", shift)
    clone = copy.deepcopy(model)
    for name, module in clone.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if isinstance(module, nn.Conv2d) and (module.padding_mode != "zeros" or isinstance(module.padding, str)):
                raise ValueError(f"the first layer {name!r} pads with {module.padding_mode!r} / {module.padding!r}: "
                                 "shifted_model needs numeric zero padding")
            parent, _, child = name.rpartition(".")
            setattr(clone.get_submodule(parent) if parent else clone, child, _ShiftAbsorbed(module, shift))
            return clone
    raise ValueError("the model has no Conv2d or Linear layer whose bias could absorb an input shift")


def input_invariance(model: nn.Module, method, x: torch.Tensor, target=None, *, shift: float = 1.0) -> dict:
    """How much ``method``'s attribution changes when a constant input shift is absorbed by the model. Chapter 07.

    ``method(model, x, targets)`` explains ``model`` on x and ``shifted_model(model, shift)`` on
    x + ``shift`` for the same targets. Returns {"output_change": max |logit difference| (B,), 0 up to
    rounding: the two models agree; "attribution_change": ||a' - a|| / ||a|| per sample (B,),
    0 for an input-invariant method}.
    """
    check_method(method)
    x = check_images(model, x)
    moved = shifted_model(model, shift).eval()
    with eval_mode(model):
        before = logits(model, x)
        after = logits(moved, x + shift)
        targets = resolve_targets(target, before)
        a = call_method(method, model, x, targets).detach().flatten(1).double()
        b = call_method(method, moved, x + shift, targets).detach().flatten(1).double()
    change = (b - a).norm(dim=1) / a.norm(dim=1).clamp_min(torch.finfo(torch.float64).tiny)
    return {"output_change": (after - before).abs().amax(dim=1).cpu(), "attribution_change": change.float().cpu()}
