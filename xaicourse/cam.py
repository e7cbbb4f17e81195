"""Class activation maps: Grad-CAM, Grad-CAM++ and Score-CAM. Taught in chapter 02 (source section 4.2).

All three weigh the K feature maps A^k of one layer and keep the positive part of the sum:

    cam = ReLU(sum_k w_k A^k),  upsampled to the input size and scaled to [0, 1] per sample.

They differ only in the channel weights w_k (the pytorch-grad-cam idea), so each method here is a
few lines on top of one shared core:

* ``grad_cam``: w_k = spatial mean of d(score)/dA^k.
* ``grad_cam_pp``: the closed form of Chattopadhay et al. (2018), eq. 19, which assumes the
  explained output is exp(score): the second and third derivatives become grads**2 and grads**3.
* ``score_cam``: gradient-free; w_k = softmax over channels of the target score when the input is
  masked by the (upsampled, min-max scaled) map A^k. The masked inputs run in chunks.

Every function takes ``(model, layer, x, target=None)``: ``x`` is (B, C, H, W), ``target`` is None
(top class), an int, or one class per sample; ``layer`` is a module of ``model``, its dotted name, or
None for :func:`find_target_layer`. Token layers (a ViT block: (B, T, D)) need ``reshape``, e.g.
``reshape="vit"``. The result is (B, H, W) in [0, 1]; a map with no positive evidence is all zeros.
The model is left as found (mode, requires_grad, .grad, no hooks): gradients come from
``torch.autograd.grad``, never from ``.backward()``.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import ExitStack

import torch
from torch import nn

from .batching import batched
from .hooks import find_layer, record_layer
from .inputs import check_int, check_types, explainer, has_values, model_input, run_model
from .maps import upsample
from .numerics import safe_divide
from .saliency import guided_backprop
from .targets import resolve_targets, select

__all__ = ["depth_layers", "find_target_layer", "grad_cam", "grad_cam_pp", "guided_grad_cam", "layer_grids",
           "prefix_tokens", "score_cam", "upsample", "vit_reshape"]


_SPATIAL = (nn.Conv2d, nn.BatchNorm2d)
_NOT_SPATIAL = (nn.Linear, nn.Flatten, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


# --------------------------------------------------------------------------------------------
# The methods: each only says how to weigh the channels
# --------------------------------------------------------------------------------------------
@explainer(zero_warning=False)
def grad_cam(model: nn.Module, layer, x: torch.Tensor, target=None, *, reshape=None) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al., 2017): (B, H, W) in [0, 1]. Chapter 02, section 4.2."""
    return _cam(model, layer, x, target, reshape, _grad_cam_weights, needs_gradients=True)


@explainer(zero_warning=False)
def grad_cam_pp(model: nn.Module, layer, x: torch.Tensor, target=None, *, reshape=None) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhay et al., 2018), closed form: (B, H, W) in [0, 1]. Chapter 02, section 4.2."""
    return _cam(model, layer, x, target, reshape, _grad_cam_pp_weights, needs_gradients=True)


@explainer(zero_warning=False)
def score_cam(model: nn.Module, layer, x: torch.Tensor, target=None, *, reshape=None,
              batch_size: int | None = None) -> torch.Tensor:
    """Score-CAM (Wang et al., 2020), gradient-free: (B, H, W) in [0, 1]. Chapter 02, section 4.2.

    Runs one forward pass per channel of ``layer`` and sample, ``batch_size`` masked inputs at a
    time (None: sized from the memory budget, see :mod:`xaicourse.batching`); shows a
    progress bar when that takes more than a few seconds. The channel weights are the softmax of
    the masked scores over the channels, as pytorch-grad-cam computes them.
    """
    if batch_size is not None:
        check_int("batch_size", batch_size)

    def weights(acts, _grads, x, targets):
        return _score_cam_weights(model, acts, x, targets, batch_size)

    return _cam(model, layer, x, target, reshape, weights, needs_gradients=False)


@explainer
def guided_grad_cam(model: nn.Module, layer, x: torch.Tensor, target=None, *, reshape=None,
                    minmax: bool = False) -> torch.Tensor:
    """Guided Grad-CAM (Selvaraju et al., 2017): Guided Backprop times the upsampled Grad-CAM, (B, C, H, W).

    As in the paper and Captum's ``GuidedGradCam``: the Grad-CAM is the ReLU of the weighted
    channels, upsampled (bilinear, half-pixel centres) and multiplied in without a shift, so a
    region with positive class evidence keeps its Guided Backprop detail. Each sample's CAM is
    divided by its maximum (a scale only: the map's shape is the paper's; measured against Captum's
    GuidedGradCam with ``interpolate_mode="bilinear"`` in tests/test_cam.py). ``minmax=True`` uses
    the display CAM of :func:`grad_cam` instead (min-max scaled, which zeroes the region of the
    lowest CAM value even where that value is positive). Like Guided Backprop, the product barely
    changes when the model's weights are randomised (chapters 07 and 08).
    """
    maps = _cam(model, layer, x, target, reshape, _grad_cam_weights, needs_gradients=True, normalize=minmax)
    if not minmax:
        maps = safe_divide(maps, maps.flatten(1).amax(1).view(-1, 1, 1))
    return guided_backprop(model, x, target) * maps[:, None]


def _grad_cam_weights(acts, grads, _x, _targets):
    return grads.mean(dim=(2, 3))


def _grad_cam_pp_weights(acts, grads, _x, _targets):
    g2 = grads**2
    g3 = g2 * grads
    alpha = g2 / (2 * g2 + acts.sum(dim=(2, 3), keepdim=True) * g3 + 1e-6)
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    return (alpha * grads.clamp(min=0)).sum(dim=(2, 3))


@torch.no_grad()
def _score_cam_weights(model, acts, x, targets, batch_size):
    scores = torch.empty(acts.shape[:2], device=x.device, dtype=x.dtype)
    for b in range(len(x)):
        def masked_scores(channels: slice, b=b):
            masks = upsample(acts[b, channels], x.shape[-2:], normalize=True, align_corners=True)  # chunk by chunk
            return run_model(model, x[b] * masks[:, None]).index_select(1, targets[b:b + 1])[:, 0]

        for channels, chunk in batched(acts.shape[1], masked_scores, model=model, batch_size=batch_size, grad=False,
                                       desc=f"Score-CAM masks (image {b + 1}/{len(x)})"):
            scores[b, channels] = chunk
    return scores.softmax(dim=1)


# --------------------------------------------------------------------------------------------
# The shared core
# --------------------------------------------------------------------------------------------
def _cam(model, layer, x, target, reshape, channel_weights: Callable, needs_gradients: bool,
         normalize: bool = True) -> torch.Tensor:
    x = model_input(model, x)
    if layer is None:
        layer = find_target_layer(model)
        if reshape is None and _is_token_model(model):
            reshape = "vit"
    name, module = find_layer(model, layer)
    reshape = _reshape_function(reshape, model)
    with record_layer(model, module, keep_graph=needs_gradients) as rec, torch.set_grad_enabled(needs_gradients):
        logits = run_model(model, x.detach().requires_grad_(needs_gradients))
        targets = resolve_targets(target, logits)
        if rec.activations is None:
            raise ValueError(f"layer {name!r} did not run in the model's forward pass: pick a layer the input goes through")
        acts = _spatial(rec.activations.detach(), reshape, name)  # fails before the backward pass
        grads = None
        if needs_gradients:
            grads = _spatial(torch.autograd.grad(select(logits, targets).sum(), rec.activations)[0], reshape, name)
    weights = channel_weights(acts, grads, x, targets)  # (B, K)
    cam = (weights[:, :, None, None] * acts).sum(dim=1).clamp(min=0)
    _warn_if_empty(cam, grads, name)
    return upsample(cam, x.shape[-2:], normalize=normalize)


def _warn_if_empty(cam: torch.Tensor, grads: torch.Tensor | None, name: str) -> None:
    empty = (cam.flatten(1) == 0).all(dim=1)
    if not has_values(empty) or not empty.any():
        return
    which = empty.nonzero().flatten().tolist()[:8]
    if grads is not None and (grads[empty].flatten(1) == 0).all():
        cause = (f"the target's gradient does not reach the positions of layer {name!r} (in the last block of a "
                 "Vision Transformer only the class token gets a gradient): use blocks[-1].norm1 or an earlier block")
    else:
        cause = (f"no positive evidence for the class at layer {name!r}: the weighted sum of its channels is <= 0 "
                 "everywhere; try another layer or check that the class is in the image")
    warnings.warn(f"the CAM of sample(s) {which} is all zeros: {cause}", stacklevel=4)


def _spatial(t: torch.Tensor, reshape, name: str) -> torch.Tensor:
    if reshape is not None:
        t = reshape(t)
    if t.ndim != 4:
        hint = ("it looks like a token sequence (batch, tokens, dim): pass reshape='vit'"
                if t.ndim == 3 else "pick a convolutional layer (find_target_layer(model) suggests one)")
        raise ValueError(f"layer {name!r} outputs shape {tuple(t.shape)}, not a feature map (batch, channels, h, w), "
                         f"so it cannot make a CAM: {hint}")
    return t


# --------------------------------------------------------------------------------------------
# Choosing and reshaping the layer
# --------------------------------------------------------------------------------------------
@check_types
def vit_reshape(tokens: torch.Tensor, prefix_tokens: int = 1, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """ViT tokens (B, T, D) -> a feature map (B, D, h, w): drop the CLS (and other prefix) tokens and
    lay the patch tokens out on their grid: ``grid`` (h, w), or the square one when None. Chapter 02
    (and 04 for the ViT)."""
    if tokens.ndim != 3:
        raise ValueError(f"expected tokens of shape (batch, tokens, dim), got {tuple(tokens.shape)}")
    patches = tokens[:, prefix_tokens:]
    if grid is not None:
        h, w = grid
        if h * w != patches.shape[1]:
            raise ValueError(f"{patches.shape[1]} patch tokens (after dropping {prefix_tokens} prefix token(s)) do not "
                             f"fill a {h} x {w} grid: check prefix_tokens and grid")
        return patches.reshape(len(patches), h, w, -1).permute(0, 3, 1, 2)
    side = int(round(patches.shape[1] ** 0.5))
    if side * side != patches.shape[1]:
        raise ValueError(f"{patches.shape[1]} patch tokens (after dropping {prefix_tokens} prefix token(s)) "
                         "do not form a square grid: for a non-square image pass grid=(h, w) (timm models say it in "
                         "patch_embed.grid_size, which reshape='vit' reads), else check prefix_tokens")
    return patches.reshape(len(patches), side, side, -1).permute(0, 3, 1, 2)


def prefix_tokens(model: nn.Module, n_tokens: int) -> int:
    """How many tokens before the patches a token model adds (class, distillation, register tokens). Chapter 09.

    Read from the model where it says (timm's ``num_prefix_tokens``; ``cls_token``, ``dist_token``
    and ``reg_token`` parameters), else the tokens beyond the largest square grid that fits.
    """
    check_int("n_tokens", n_tokens)
    declared = getattr(model, "num_prefix_tokens", None)
    if isinstance(declared, int):
        return declared
    extra = [getattr(model, name, None) for name in ("cls_token", "dist_token", "reg_token")]
    counted = sum(t.shape[1] for t in extra if isinstance(t, torch.Tensor) and t.ndim == 3)
    if counted:
        return counted
    return n_tokens - int(n_tokens**0.5) ** 2


def _reshape_function(reshape, model: nn.Module):
    if reshape is None or callable(reshape):
        return reshape
    if reshape == "vit":
        grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
        grid = tuple(grid) if isinstance(grid, (tuple, list)) and len(grid) == 2 else None
        return lambda tokens: vit_reshape(tokens, prefix_tokens(model, tokens.shape[1]), grid)
    raise ValueError(f"reshape must be None, 'vit' or a function (B, T, D) -> (B, D, h, w), got {reshape!r}")


def _is_token_model(model: nn.Module) -> bool:
    blocks = getattr(model, "blocks", None)
    return isinstance(blocks, (nn.Sequential, nn.ModuleList)) and len(blocks) > 0 and hasattr(blocks[-1], "norm1")


@check_types
def find_target_layer(model: nn.Module) -> nn.Module:
    """The usual Grad-CAM layer: the last spatial layer of a CNN, or ``blocks[-1].norm1`` of a ViT. Chapter 02.

    For a CNN: the last Conv2d / BatchNorm2d, widened to the largest block that ends with it and
    still outputs a feature map (e.g. resnet's ``layer4``, whose output includes the residual sum
    and ReLU). For a Vision Transformer (a ``blocks`` list whose blocks have ``norm1``, as in timm
    and the course's tiny ViT): the first LayerNorm of the last block, whose patch tokens still get a
    gradient (after the last block only the class token does); use it with ``reshape="vit"``.
    Raises ValueError, listing the model's layers, when there is no usable layer.
    """
    if _is_token_model(model):
        return model.blocks[-1].norm1
    named = list(model.named_modules())
    spatial = [name for name, m in named if isinstance(m, _SPATIAL)]
    if not spatial:
        kinds = ", ".join(f"{name} ({type(m).__name__})" for name, m in named[1:13])
        raise ValueError(f"{type(model).__name__} has no Conv2d/BatchNorm2d layer to take a CAM from. Its layers: "
                         f"{kinds}{' ...' if len(named) > 13 else ''}. Pass layer= explicitly; for a "
                         "transformer block also pass reshape='vit'")
    last = spatial[-1]
    for name, module in named:  # outermost first
        inside = [n for n, m in module.named_modules(prefix=name) if isinstance(m, _SPATIAL)]
        if name and inside and inside[-1] == last and not any(isinstance(m, _NOT_SPATIAL) for m in module.modules()):
            return module
    return dict(named)[last]


@check_types
def depth_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Layers from shallow to deep for comparing CAMs across depth: the stages of a CNN (timm's
    ``blocks.i``, torchvision's ``layerN``, or the ReLUs of a plain ``features`` stack), then
    :func:`find_target_layer`'s choice. Chapter 02."""
    named = dict(model.named_modules())
    layers = {}
    if isinstance(named.get("blocks"), nn.Sequential):
        layers.update({f"blocks.{child}": m for child, m in named["blocks"].named_children()})
    if isinstance(named.get("features"), nn.Sequential):
        layers.update({f"features.{child}": m for child, m in named["features"].named_children() if isinstance(m, nn.ReLU)})
    layers.update({name: m for name, m in model.named_children() if name.startswith("layer") and name[5:].isdigit()})
    last = find_target_layer(model)
    final = list(last.children())[-1] if isinstance(last, nn.Sequential) else last  # same output as `last`
    if not any(m is last or m is final for m in layers.values()):
        layers[next(n for n, m in named.items() if m is last)] = last
    return layers


@torch.no_grad()
@check_types
def layer_grids(model: nn.Module, layers: dict, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """The output grid (h, w) of each named layer for input ``x``, from one forward pass. Chapter 02."""
    with ExitStack() as stack:
        records = {name: stack.enter_context(record_layer(model, layer)) for name, layer in layers.items()}
        run_model(model, model_input(model, x))
    return {name: tuple(rec.activations.shape[-2:]) for name, rec in records.items()}
