"""Class activation maps: Grad-CAM, Grad-CAM++ and Score-CAM. Taught in chapter 02 (source section 4.2).

All three weigh the K feature maps A^k of one layer and keep the positive part of the sum:

    cam = ReLU(sum_k w_k A^k),  upsampled to the input size and scaled to [0, 1] per sample.

They differ only in the channel weights w_k (the pytorch-grad-cam idea), so each method here is a
few lines on top of one shared core:

* ``grad_cam``: w_k = spatial mean of d(score)/dA^k.
* ``grad_cam_pp``: the closed form of Chattopadhyay et al. (2018), eq. 19, which assumes the
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

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .inputs import model_input
from .hooks import find_layer, record_layer
from .targets import resolve_targets, select

# Score-CAM: bytes of working memory per masked input, as a multiple of the input's own size
# (intermediate activations under no_grad; about 60x measured for EfficientNet-Lite0 at 224),
# and the budget that picks batch_size=None (6 images per chunk at 224 x 224).
_ACTIVATION_FACTOR = 64
_MEMORY_BUDGET = 256 * 2**20

_SPATIAL = (nn.Conv2d, nn.BatchNorm2d)
_NOT_SPATIAL = (nn.Linear, nn.Flatten, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


# --------------------------------------------------------------------------------------------
# The three methods: each only says how to weigh the channels
# --------------------------------------------------------------------------------------------
def grad_cam(model: nn.Module, layer, x: torch.Tensor, target=None, *, reshape=None) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al., 2017): (B, H, W) in [0, 1]. Chapter 02, section 4.2."""
    return _cam(model, layer, x, target, reshape, _grad_cam_weights, needs_gradients=True)


def grad_cam_pp(model: nn.Module, layer, x: torch.Tensor, target=None, *, reshape=None) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhyay et al., 2018), closed form: (B, H, W) in [0, 1]. Chapter 02, section 4.2."""
    return _cam(model, layer, x, target, reshape, _grad_cam_pp_weights, needs_gradients=True)


def score_cam(model: nn.Module, layer, x: torch.Tensor, target=None, *, reshape=None,
              batch_size: int | None = None) -> torch.Tensor:
    """Score-CAM (Wang et al., 2020), gradient-free: (B, H, W) in [0, 1]. Chapter 02, section 4.2.

    Runs one forward pass per channel of ``layer`` and sample, ``batch_size`` masked inputs at a
    time (None: as many as fit in a 256 MB working-memory budget).
    """
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")

    def weights(acts, _grads, x, targets):
        return _score_cam_weights(model, acts, x, targets, batch_size)

    return _cam(model, layer, x, target, reshape, weights, needs_gradients=False)


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
    if batch_size is None:
        per_input = x[0].numel() * x.element_size() * _ACTIVATION_FACTOR
        batch_size = max(1, _MEMORY_BUDGET // per_input)
    scores = torch.empty(acts.shape[:2], device=x.device)
    for b in range(len(x)):
        for start in range(0, acts.shape[1], batch_size):  # masks are made chunk by chunk, too
            masks = F.interpolate(acts[b:b + 1, start:start + batch_size], size=x.shape[-2:], mode="bilinear",
                                  align_corners=True)[0]
            masks = _minmax(masks.flatten(1)).view_as(masks)
            scores[b, start:start + len(masks)] = model(x[b] * masks[:, None])[:, targets[b]]
    return scores.softmax(dim=1)


# --------------------------------------------------------------------------------------------
# The shared core
# --------------------------------------------------------------------------------------------
def _cam(model, layer, x, target, reshape, channel_weights: Callable, needs_gradients: bool) -> torch.Tensor:
    x = model_input(model, x)
    name, module = find_layer(model, find_target_layer(model) if layer is None else layer)
    reshape = _reshape_function(reshape)
    with record_layer(model, module, keep_graph=needs_gradients) as rec, torch.set_grad_enabled(needs_gradients):
        logits = model(x.detach().requires_grad_(needs_gradients))
        targets = resolve_targets(target, logits)
        if rec.activations is None:
            raise ValueError(f"layer {name!r} did not run in the model's forward pass: pick a layer the input goes through")
        acts = _spatial(rec.activations.detach(), reshape, name)  # fails before the backward pass
        grads = None
        if needs_gradients:
            grads = _spatial(torch.autograd.grad(select(logits, targets).sum(), rec.activations)[0], reshape, name)
    weights = channel_weights(acts, grads, x, targets)  # (B, K)
    cam = (weights[:, :, None, None] * acts).sum(dim=1).clamp(min=0)
    return upsample(cam, x.shape[-2:])


def upsample(cam: torch.Tensor, size) -> torch.Tensor:
    """(B, h, w) maps -> (B, H, W): bilinear (half-pixel centres, as cv2.resize), then min-max per map.

    ``size``: (H, W) or one int for a square. A constant map (e.g. all zeros after the ReLU) becomes
    zeros, never NaN.
    """
    if not isinstance(cam, torch.Tensor) or cam.dim() != 3:
        shape = tuple(cam.shape) if isinstance(cam, torch.Tensor) else type(cam).__name__
        raise ValueError(f"cam must be a stack of maps (B, h, w), got shape {shape} (one map? add cam[None])")
    size = (size, size) if isinstance(size, int) else tuple(size)
    cam = F.interpolate(cam[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    return _minmax(cam.flatten(1)).view_as(cam)


def _minmax(flat: torch.Tensor) -> torch.Tensor:
    """Scale each row of (..., N) to [0, 1]; constant rows become zeros."""
    low = flat.min(dim=-1, keepdim=True).values
    span = flat.max(dim=-1, keepdim=True).values - low
    return torch.where(span > 0, (flat - low) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(flat))


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
def vit_reshape(tokens: torch.Tensor, prefix_tokens: int = 1) -> torch.Tensor:
    """ViT tokens (B, T, D) -> a feature map (B, D, h, w): drop the CLS (and other prefix) tokens and
    lay the patch tokens out on their square grid. Chapter 02 (and 04 for the ViT)."""
    if tokens.ndim != 3:
        raise ValueError(f"expected tokens of shape (batch, tokens, dim), got {tuple(tokens.shape)}")
    patches = tokens[:, prefix_tokens:]
    side = int(round(patches.shape[1] ** 0.5))
    if side * side != patches.shape[1]:
        raise ValueError(f"{patches.shape[1]} patch tokens (after dropping {prefix_tokens} prefix token(s)) "
                         "do not form a square grid: set prefix_tokens or pass your own reshape function")
    return patches.reshape(len(patches), side, side, -1).permute(0, 3, 1, 2)


def _reshape_function(reshape):
    if reshape is None or callable(reshape):
        return reshape
    if reshape == "vit":
        return vit_reshape
    raise ValueError(f"reshape must be None, 'vit' or a function (B, T, D) -> (B, D, h, w), got {reshape!r}")


def find_target_layer(model: nn.Module) -> nn.Module:
    """The last spatial layer of a CNN, the usual Grad-CAM choice. Chapter 02.

    Takes the last Conv2d / BatchNorm2d, then widens to the largest block that ends with it and
    still outputs a feature map (e.g. resnet's ``layer4``, whose output includes the residual sum
    and ReLU). Raises ValueError, listing the model's layers, when there is no spatial layer.
    """
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
def layer_grids(model: nn.Module, layers: dict, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """The output grid (h, w) of each named layer for input ``x``, from one forward pass. Chapter 02."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        records = {name: stack.enter_context(record_layer(model, layer)) for name, layer in layers.items()}
        model(model_input(model, x))
    return {name: tuple(rec.activations.shape[-2:]) for name, rec in records.items()}


def overlay(img, cam: torch.Tensor, alpha: float = 0.5):
    """A photo (H, W, 3) with one CAM ((H', W') or (1, H', W')) blended on top, resized to the photo."""
    from . import viz

    cam = torch.as_tensor(cam).detach().float().cpu()
    if cam.dim() < 2:
        raise ValueError(f"cam must be one map (H, W) or (1, H, W), got shape {tuple(cam.shape)}")
    cam = cam.reshape(-1, *cam.shape[-2:])[:1]
    height, width = viz.to_numpy(img).shape[:2]
    if cam.shape[-2:] != (height, width):
        cam = upsample(cam, (height, width))
    return viz.overlay(img, cam[0], alpha=alpha)
