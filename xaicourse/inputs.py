"""The one check every attribution method runs on its ``model`` and ``x`` (chapters 01-03, 07).

Bad input fails here, at the boundary, with a message naming the value and what is allowed, instead
of as a shape error deep inside the model.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn


def model_input(model: nn.Module, x, *, image: bool = True) -> torch.Tensor:
    """``x`` checked and detached, on the model's device.

    ``image=True`` requires (B, C, H, W); otherwise any (B, ...) batch. The batch must be non-empty,
    floating point and finite. A model in training mode gets a warning (dropout and batch norm make
    explanations random and mix the samples of a batch).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    shape = "(B, C, H, W)" if image else "(B, ...)"
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor (torch.Tensor) of shape {shape}, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor (a preprocessed input, e.g. cnn.preprocess(img)), got dtype {x.dtype}")
    if (image and x.ndim != 4) or x.ndim < 2:
        hint = " (one image? add the batch dimension: x.unsqueeze(0))" if image and x.ndim == 3 else " (a batch dimension comes first)"
        raise ValueError(f"x must have shape {shape}, got {tuple(x.shape)}{hint}")
    if len(x) == 0:
        raise ValueError(f"x is an empty batch (shape {tuple(x.shape)}): give at least one sample")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or inf values: check the preprocessing (e.g. a division by a zero std)")
    if model.training:
        warnings.warn("the model is in training mode: dropout makes explanations random and batch norm mixes the "
                      "samples of a batch and updates its statistics; call model.eval() first", stacklevel=3)
    parameter = next(model.parameters(), None)
    return x.detach().to(parameter.device) if parameter is not None else x.detach()


def positive_int(name: str, value) -> int:
    """``value`` if it is an int >= 1, else a ValueError/TypeError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def run_model(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)``, with a failure inside the model reported as a ValueError about ``x``'s shape."""
    try:
        return model(x)
    except RuntimeError as err:
        raise ValueError(f"the model cannot run on x of shape {tuple(x.shape)} ({err}); "
                         "check that x has the shape the model expects, with a batch dimension first") from err
