"""The boundary every public entry point passes: the checks of models, inputs and settings (chapters 01-09).

Bad input fails here with a message naming the value and what is allowed, instead of as a shape
error deep inside the model. One rule for exception types: ``TypeError`` when an argument is the
wrong kind of thing (a list for a tensor, a float for a count), ``ValueError`` when it is the right
kind with a wrong value (a 3-D tensor, a count of 0, NaN).

* :func:`model_input`: the input tensor, checked, detached, on the model's device and dtype.
* :func:`logits`: the model's output as a (B, C) tensor, whatever the model returns (a tensor, a
  tuple, a dict or a Hugging Face ``ModelOutput``), or a clear error.
* :func:`explainer`: the decorator of every attribution method: it checks the model, explains it in
  eval mode (restored afterwards) and warns when a sample's map is entirely zero.
* :func:`check_int`, :func:`check_number`, :func:`check_choice`:
  settings; :func:`check_types`: the decorator that turns a function's annotations (tensor, module,
  str) into TypeErrors at its boundary.
"""
from __future__ import annotations

import functools
import inspect
import math
import numbers
import warnings

import torch
from torch import nn

from .hooks import eval_mode

__all__ = ["check_choice", "check_int", "check_model", "check_number", "check_types", "explainer", "generator", "has_values",
           "in_training", "logits", "model_input", "positive_int", "run_model", "warn_if_zero"]


def has_values(t: torch.Tensor) -> bool:
    """False on the meta device (shapes only), where value checks are skipped. Chapter 01."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"has_values reads a tensor's device, got {type(t).__name__}")
    return t.device.type != "meta"


def check_model(model) -> nn.Module:
    """``model`` if it is a torch module, else a TypeError. Chapter 01."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def model_input(model: nn.Module, x, *, image: bool = True) -> torch.Tensor:
    """``x`` checked and detached, on the model's device and in its floating-point dtype. Chapter 01.

    ``image=True`` requires (B, C, H, W); otherwise any (B, ...) batch. The batch must be non-empty,
    floating point and finite. A float32 input to a float64 model is converted (and vice versa), so
    a model of any precision can be explained.
    """
    check_model(model)
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
    if has_values(x) and not torch.isfinite(x).all():
        raise ValueError("x contains NaN or inf values: check the preprocessing (e.g. a division by a zero std)")
    parameter = next((p for p in model.parameters() if p.is_floating_point()), None)
    if parameter is None:
        return x.detach()
    return x.detach().to(device=parameter.device, dtype=parameter.dtype)


def logits(output) -> torch.Tensor:
    """The logits in a model's output: a (B, C) tensor. Chapter 01.

    Accepts a tensor, a Hugging Face ``ModelOutput`` or dict with ``logits``, a dict with a single
    tensor, or a tuple / list whose first element is the logits (as many models return
    ``(logits, extras)``). Anything else is a TypeError that says how to wrap the model.
    """
    found = output
    if isinstance(output, dict) or hasattr(output, "logits"):
        if isinstance(output, dict) and output.get("logits") is not None:  # also a ModelOutput (a dict too)
            found = output["logits"]
        elif getattr(output, "logits", None) is not None:
            found = output.logits
        elif isinstance(output, dict) and len(output) == 1:
            found = next(iter(output.values()))
        else:
            keys = list(output.keys()) if isinstance(output, dict) else type(output).__name__
            raise TypeError(f"the model returns a dict without 'logits' ({keys}): wrap it so that it returns the "
                            "class scores, e.g. lambda x: model(x)['scores'] inside an nn.Module")
    elif isinstance(output, (tuple, list)) and output:
        found = output[0]
    if not isinstance(found, torch.Tensor):
        raise TypeError(f"the model returns {type(output).__name__}, not class scores: wrap it in an nn.Module "
                        "whose forward returns the (batch, classes) logits")
    if found.ndim != 2:
        raise ValueError(f"expected model outputs of shape (batch, classes), got {tuple(found.shape)}: explain a "
                         "classifier, or wrap the model so that it returns one score per class")
    return found


_SHAPE_ERRORS = ("size", "shape", "dimension", "channels", "mat1", "Expected", "expected")


def run_model(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``logits(model(x))``, with a failure inside the model reported as a ValueError about ``x``'s shape. Chapter 01."""
    try:
        output = model(x)
    except RuntimeError as err:
        if not any(word in str(err) for word in _SHAPE_ERRORS):
            raise
        raise ValueError(f"the model cannot run on x of shape {tuple(x.shape)} ({err}); "
                         "check that x has the shape the model expects, with a batch dimension first") from err
    return logits(output)


def explainer(fn=None, *, zero_warning: bool = True):
    """Decorator of every public attribution method ``fn(model, ...)``. Chapter 01.

    The model is checked, put in eval mode for the call and restored afterwards (a model in training
    mode gets a warning: its explanation is of the eval-mode model, with dropout off and batch norm
    using its running statistics, which stay unchanged). With ``zero_warning`` a result whose map is
    entirely zero for a sample gets a warning naming the usual causes.
    """
    if fn is None:
        return functools.partial(explainer, zero_warning=zero_warning)
    if not callable(fn):
        raise TypeError(f"explainer decorates a function method(model, ...), got {type(fn).__name__}")

    @functools.wraps(fn)
    def wrapper(model, *args, **kwargs):
        check_model(model)
        if in_training(model):
            warnings.warn(f"{fn.__name__}: the model is in training mode; it is explained in eval mode (dropout off, "
                          "batch norm with its running statistics, which are not updated) and put back in training "
                          "mode afterwards. Call model.eval() to silence this warning", stacklevel=2)
        with eval_mode(model):
            result = fn(model, *args, **kwargs)
        if zero_warning:
            warn_if_zero(result[0] if isinstance(result, tuple) else result, fn.__name__)
        return result

    return wrapper


def in_training(model: nn.Module) -> bool:
    """Whether a part of ``model`` that behaves differently in training mode is in it. Chapter 01.

    Dropout, and modules with parameters or buffers of their own (batch norm, layers written with
    ``if self.training``): a parameterless wrapper left in training mode around an eval-mode model
    behaves exactly as in eval mode, so it does not count.
    """
    check_model(model)
    return any(m.training for m in model.modules()
               if isinstance(m, nn.modules.dropout._DropoutNd) or next(m.parameters(recurse=False), None) is not None
               or next(m.buffers(recurse=False), None) is not None)


def warn_if_zero(result, name: str, cause: str | None = None) -> None:
    """Warn when the map of one or more samples of ``result`` (B, ...) is entirely zero. Chapter 01."""
    if not isinstance(result, torch.Tensor) or result.ndim < 2 or len(result) == 0 or not has_values(result):
        return
    zero = (result.detach().flatten(1) == 0).all(dim=1)
    if zero.any():
        which = zero.nonzero().flatten().tolist()
        cause = cause or ("the target's score does not depend on the input here: dead ReLUs or saturated units, "
                          "a constant model output, or a layer the target's gradient does not reach")
        warnings.warn(f"{name}: the map of sample(s) {which[:8]} is entirely zero ({cause}); check the model and "
                      "target, or try another method or layer", stacklevel=3)


def check_int(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int if it is an integer (Python or NumPy) >= ``minimum``. Chapter 01."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)


def positive_int(name: str, value) -> int:
    """``value`` if it is an int >= 1 (see :func:`check_int`). Chapter 01."""
    return check_int(name, value, 1)


def check_number(name: str, value, *, minimum: float | None = None, maximum: float | None = None,
                 above: float | None = None, hint: str = "") -> float:
    """``value`` as a float if it is a finite real number within the bounds (``above``: strictly greater). Chapter 01."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number{hint}, got {value!r}")
    value = float(value)
    bounds = [f">= {minimum}" if minimum is not None else "", f"<= {maximum}" if maximum is not None else "",
              f"> {above}" if above is not None else ""]
    wanted = " and ".join(b for b in bounds if b)
    if (not math.isfinite(value) or (minimum is not None and value < minimum)
            or (maximum is not None and value > maximum) or (above is not None and value <= above)):
        raise ValueError(f"{name} must be a number{' ' + wanted if wanted else ''}{hint}, got {value!r}")
    return value


def check_choice(name: str, value, choices) -> str:
    """``value`` if it is one of ``choices``. Chapter 01."""
    if all(isinstance(c, str) for c in choices) and not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {', '.join(map(repr, choices))}; got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}: choose one of {', '.join(map(repr, choices))}")
    return value


def generator(seed: int, device) -> torch.Generator:
    """A ``torch.Generator`` seeded with ``seed`` on ``device`` (the CPU's for devices without one, e.g. meta). Chapter 01."""
    seed = check_int("seed", seed, 0)
    try:
        return torch.Generator(device=device).manual_seed(seed)
    except RuntimeError:
        return torch.Generator().manual_seed(seed)


_KINDS = {"torch.Tensor": (torch.Tensor, "a torch.Tensor"), "Tensor": (torch.Tensor, "a torch.Tensor"),
          "nn.Module": (nn.Module, "a torch.nn.Module"), "str": (str, "a str")}


def check_types(fn):
    """Decorator: a TypeError naming the argument when one annotated as a tensor, module or str is not one. Chapter 01.

    Reads ``fn``'s annotations (``x: torch.Tensor``, ``model: nn.Module``, ``name: str``; ``X | None``
    also allows None), so the rule "TypeError for the wrong kind of thing" holds at the boundary of
    every function that declares its kinds, instead of an AttributeError from deep inside.
    """
    if not callable(fn):
        raise TypeError(f"check_types decorates a function, got {type(fn).__name__}")
    signature = inspect.signature(fn)
    wanted = {}
    for name, parameter in signature.parameters.items():
        text = str(parameter.annotation).replace(" ", "")
        optional = text.endswith("|None") or text.startswith("None|")
        kind = _KINDS.get(text.replace("|None", "").replace("None|", ""))
        if kind:
            wanted[name] = (*kind, optional)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as err:
            raise TypeError(f"{fn.__name__}: {err}") from None
        for name, (cls, what, optional) in wanted.items():
            value = bound.arguments.get(name, signature.parameters[name].default)
            if value is inspect.Parameter.empty or (optional and value is None) or isinstance(value, cls):
                continue
            raise TypeError(f"{fn.__name__}: {name} must be {what}{' or None' if optional else ''}, got "
                            f"{type(value).__name__}")
        return fn(*args, **kwargs)

    return wrapper
