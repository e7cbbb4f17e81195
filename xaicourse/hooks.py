"""Recording what a layer computes, and leaving the model as found: the only place the course registers hooks.

``record_layer(model, layer)`` is a context manager. Inside it, a forward pass stores the layer's
output in ``rec.activations``; a backward pass through that output stores d(score)/d(output) in
``rec.gradients``. The hooks are removed in ``finally``, also when the block raises. The gradient
comes from a tensor hook on the output, not from the deprecated ``register_backward_hook`` of the
source chapter (which reports gradients of the wrong tensor for layers with several operations).

In-place operations after the layer (``nn.ReLU(inplace=True)`` in torchvision's VGG and ResNet)
would overwrite the recorded output: the forward hook hands the rest of the model a copy, so the
recorded tensor keeps the layer's own values, and its version counter proves it (checked when the
block ends). :func:`eval_mode` runs a block with the model in eval mode and restores each module's
mode afterwards. Taught in chapter 02.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Recording", "eval_mode", "expect_no_hooks", "find_layer", "hooks_left", "record_layer", "replace_output"]


@dataclass
class Recording:
    """What :func:`record_layer` saw: the layer's output (B, ...) and d(score)/d(output), or None."""

    activations: torch.Tensor | None = None
    gradients: torch.Tensor | None = None


def find_layer(model: nn.Module, layer: nn.Module | str) -> tuple[str, nn.Module]:
    """``layer`` as (name, module); accepts the module itself or its dotted name in ``model``. Chapter 02."""
    if isinstance(layer, str):
        modules = dict(model.named_modules())
        if layer not in modules:
            raise ValueError(f"the model has no layer named {layer!r}; names look like "
                             f"{', '.join(repr(n) for n in list(modules)[1:6])} ... (see model.named_modules())")
        return layer, modules[layer]
    if not isinstance(layer, nn.Module):
        raise TypeError(f"layer must be an nn.Module of the model or its name, got {type(layer).__name__}")
    for name, module in model.named_modules():
        if module is layer:
            return name, module
    raise ValueError(f"layer {type(layer).__name__} is not part of this model: pass a module of the model itself "
                     "(e.g. model.layer4[-1]), not one of another model or a copy")


@contextmanager
def record_layer(model: nn.Module, layer: nn.Module | str, *, keep_graph: bool = False):
    """Record ``layer``'s output and its gradient during the passes run inside the block. Chapter 02.

    The stored activations are detached unless ``keep_graph=True`` (then ``rec.activations`` is the
    graph node itself, so ``torch.autograd.grad(score, rec.activations)`` works). Only the last
    forward pass is kept. A layer whose output is a tuple is recorded by its first element.
    """
    _, module = find_layer(model, layer)
    rec = Recording()
    tensor_hooks, versions = [], []

    def on_forward(_module, _inputs, output):
        first = output[0] if isinstance(output, (tuple, list)) else output
        if not isinstance(first, torch.Tensor):
            raise TypeError(f"layer {type(_module).__name__} returns {type(output).__name__}, not a tensor: pick another layer")
        rec.activations = first if keep_graph else first.detach()
        rec.gradients = None
        versions[:] = [(first, first._version)]
        if first.requires_grad:
            tensor_hooks.append(first.register_hook(_store_gradient))
        passed_on = first.clone()  # later in-place ops change this copy, not the recorded output
        if isinstance(output, tuple):
            return (passed_on, *output[1:])
        if isinstance(output, list):
            return [passed_on, *output[1:]]
        return passed_on

    def _store_gradient(grad):
        rec.gradients = grad.detach()

    handle = module.register_forward_hook(on_forward)
    try:
        yield rec
    finally:
        handle.remove()
        for h in tensor_hooks:
            h.remove()
    for tensor, version in versions:
        if tensor._version != version:
            raise RuntimeError(f"the output of layer {type(module).__name__} was changed in place after it was recorded, "
                               "so its recorded values are not the layer's: record a layer whose output is not "
                               "modified in place")


@contextmanager
def eval_mode(model: nn.Module):
    """Run the block with every module of ``model`` in eval mode; restore each module's mode after. Chapter 02."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def hooks_left(model: nn.Module) -> int:
    """How many forward/backward hooks are registered anywhere in ``model``. Chapter 02."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return sum(len(getattr(m, kind, {})) for m in model.modules() for kind in kinds)


def expect_no_hooks(model: nn.Module, error: type[Exception] = AssertionError) -> None:
    """Raise ``error`` when a hook is still registered on ``model`` (e.g. a function forgot to remove one).

    Chapter 02."""
    n = hooks_left(model)
    if n:
        raise error(f"{n} hook(s) are still registered on the model after your function returned: keep the handle "
                    "that register_*_hook returns and call handle.remove() in a finally block")


@contextmanager
def replace_output(model: nn.Module, layer: nn.Module | str, replace):
    """Inside the block, ``layer``'s output is ``replace(output)`` in every forward pass. Chapter 10.

    ``replace`` takes the layer's output tensor and returns the tensor the rest of the model sees
    (activation patching, ablation). The hook is removed in ``finally``, also when the block raises.
    """
    if not callable(replace):
        raise TypeError(f"replace must be a function output -> new output, got {type(replace).__name__}")
    _, module = find_layer(model, layer)

    def on_forward(_module, _inputs, output):
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"layer {type(_module).__name__} returns {type(output).__name__}, not a tensor: "
                            "pick a layer whose output is one tensor")
        new = replace(output)
        if not isinstance(new, torch.Tensor) or new.shape != output.shape:
            raise ValueError(f"replace must return a tensor shaped like the output {tuple(output.shape)}, got "
                             f"{getattr(new, 'shape', type(new).__name__)}")
        return new

    handle = module.register_forward_hook(on_forward)
    try:
        yield module
    finally:
        handle.remove()
