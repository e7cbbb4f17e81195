"""Gradient saliency: which input values the score of a class is most sensitive to. Taught in chapter 01.

* ``vanilla_gradient``: the gradient of the target class's logit with respect to the input,
  S_c(x) = d y_c / d x (Simonyan et al., 2014).
* ``gradient_x_input``: the gradient times the input, x * d y_c / d x (Shrikumar et al., 2016).
* ``smoothgrad``: the gradient averaged over noisy copies of the input (Smilkov et al., 2017), and
  its SmoothGrad^2 and VarGrad variants (Adebayo et al., 2018).
* ``to_map``: an attribution (B, C, H, W) -> a map (B, H, W); ``clip_map`` scales it to [0, 1] for display.

Every function takes a batch x of shape (B, C, H, W) and returns a tensor of the same shape (the
signed attribution per input value); ``target`` is None (each sample's top class), an int, or one
class per sample (see :mod:`xaicourse.targets`). Gradients come from ``torch.autograd.grad`` with
respect to a detached copy of x: the model's parameters, their ``.grad``, its mode and its hooks
are left as they were, and the caller's x is not touched.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from .inputs import model_input
from .targets import resolve_targets, select

SMOOTHGRAD_VARIANTS = ("mean", "squared", "vargrad")
MAP_REDUCTIONS = ("max_abs", "abs_sum", "sum")

# batch_size=None: run as many noisy samples at once as fit in this much activation memory. 512 MiB
# gives chunks of 5 at 224 x 224: on a 2-core CPU they took less CPU time than chunks of 10 (and than
# Captum's NoiseTunnel at either size), at ~0.85 GB peak RSS for EfficientNet-Lite0.
MEMORY_BUDGET_BYTES = 1 << 29
# Bytes of activations kept for the backward pass per byte of input, measured on EfficientNet-Lite0
# at 224 x 224 (a batch of 50 needs about 4.4 GB); most CNNs are within a factor of two.
ACTIVATION_BYTES_PER_INPUT_BYTE = 150


def vanilla_gradient(model: nn.Module, x: torch.Tensor, target=None) -> torch.Tensor:
    """d(logit of the target class) / d(input), shape (B, C, H, W) like ``x``.

    The gradient of the logit, not of the softmax probability: the probability's gradient also
    depends on every other class (it grows when the other classes' logits shrink).
    """
    return _input_gradient(model, model_input(model, x), target)


def gradient_x_input(model: nn.Module, x: torch.Tensor, target=None) -> torch.Tensor:
    """The input times its gradient, x * d y_c / d x, shape (B, C, H, W).

    For a linear model y = w . x + b it is each input value's contribution w_i x_i to the logit.
    """
    x = model_input(model, x)
    return x * _input_gradient(model, x, target)


def smoothgrad(
    model: nn.Module,
    x: torch.Tensor,
    target=None,
    *,
    n_samples: int = 50,
    noise_level: float = 0.15,
    batch_size: int | None = None,
    seed: int = 0,
    variant: str = "mean",
) -> torch.Tensor:
    """The gradient averaged over ``n_samples`` noisy copies of each input, shape (B, C, H, W).

    The noise is Gaussian with sigma = ``noise_level`` * (max - min) of each input, as in the
    SmoothGrad paper (which recommends 10-20 %), so the same ``noise_level`` means the same amount of
    noise whatever the input's normalisation. ``variant``:

    * "mean": E[g] (SmoothGrad), * "squared": E[g^2] (SmoothGrad^2), * "vargrad": E[g^2] - E[g]^2.

    ``target=None`` explains each sample's top class on the clean input. The noise is drawn from
    ``torch.Generator().manual_seed(seed)`` on the CPU, one ``randn`` of shape (C, H, W) per noisy
    copy, all copies of sample 0 first: the result depends on ``seed``, not on ``batch_size`` or
    the device (up to float rounding). ``batch_size`` is how many noisy copies go through the model at once; None
    picks it from a memory budget (:data:`MEMORY_BUDGET_BYTES`).
    """
    x = model_input(model, x)
    _check_count("n_samples", n_samples)
    if batch_size is not None:
        _check_count("batch_size", batch_size)
    if isinstance(noise_level, bool) or not isinstance(noise_level, (int, float)) or not noise_level >= 0:
        raise ValueError(f"noise_level must be a number >= 0 (a fraction of the input's range, e.g. 0.15), got {noise_level!r}")
    if variant not in SMOOTHGRAD_VARIANTS:
        raise ValueError(f"unknown SmoothGrad variant {variant!r}: choose one of {SMOOTHGRAD_VARIANTS}")

    with torch.no_grad():
        targets = resolve_targets(target, model(x))
    sigma = noise_level * (x.flatten(1).amax(1) - x.flatten(1).amin(1))
    generator = torch.Generator().manual_seed(seed)
    total = torch.zeros_like(x) if variant != "squared" else None
    total_sq = torch.zeros_like(x) if variant != "mean" else None
    n_copies = len(x) * n_samples
    for start, stop in _chunks(n_copies, batch_size or _auto_batch_size(x)):
        sample = torch.arange(start, stop, device=x.device) // n_samples
        noise = torch.stack([torch.randn(x.shape[1:], generator=generator) for _ in range(start, stop)])
        noisy = x[sample] + sigma[sample].view(-1, *[1] * (x.ndim - 1)) * noise.to(x)
        grads = _input_gradient(model, noisy, targets[sample])
        if total is not None:
            total.index_add_(0, sample, grads)
        if total_sq is not None:
            total_sq.index_add_(0, sample, grads * grads)
    if variant == "mean":
        return total / n_samples
    if variant == "squared":
        return total_sq / n_samples
    mean = total / n_samples
    return (total_sq / n_samples - mean * mean).clamp_min(0)


def to_map(attribution: torch.Tensor, reduce: str = "max_abs") -> torch.Tensor:
    """Collapse the channels of an attribution (B, C, H, W) into a map (B, H, W).

    * "max_abs": the largest |value| over the colour channels (the source's choice, Simonyan et
      al.): a pixel is important if any of its channels is.
    * "abs_sum": the sum of |values|: the total sensitivity of the pixel.
    * "sum": the signed sum: positive where the pixel raises the class score, negative where it
      lowers it; meaningful for gradient x input, where channel contributions add up.
    """
    if not isinstance(attribution, torch.Tensor):
        raise TypeError(f"attribution must be a torch.Tensor, got {type(attribution).__name__}")
    if attribution.ndim != 4:
        raise ValueError(f"attribution must have shape (B, C, H, W), got {tuple(attribution.shape)}")
    if reduce == "max_abs":
        return attribution.abs().amax(dim=1)
    if reduce == "abs_sum":
        return attribution.abs().sum(dim=1)
    if reduce == "sum":
        return attribution.sum(dim=1)
    raise ValueError(f"unknown reduce {reduce!r}: choose one of {MAP_REDUCTIONS}")


def clip_map(maps: torch.Tensor, percentile: float = 99.0) -> torch.Tensor:
    """Scale each map of (B, H, W) to [0, 1], saturating the values above its ``percentile``.

    Gradient maps have a few extreme pixels that would make everything else black; the SmoothGrad
    paper clips at the 99th percentile for display. Signed maps are scaled by their absolute
    value (-1..1). An all-zero map stays zero (no NaN).
    """
    if not isinstance(maps, torch.Tensor) or maps.ndim != 3:
        raise ValueError(f"maps must be a tensor of shape (B, H, W), e.g. from to_map, got {getattr(maps, 'shape', type(maps).__name__)}")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    maps = maps.detach().float()
    scale = maps.abs().flatten(1).quantile(percentile / 100, dim=1).view(-1, 1, 1)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.where(scale > 0, (maps / safe).clamp(-1, 1), torch.zeros_like(maps))


def copy_with_captum_relus(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose ReLU6 activations are ``nn.ReLU`` modules (still clipping at 6).

    Captum's GuidedBackprop and Deconvolution change the backward rule of ``nn.ReLU`` modules
    only. EfficientNet-Lite0 uses ReLU6, which is not an ``nn.ReLU``: on the original model those
    two methods silently return the plain gradient. The copy is in the same mode as ``model``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    clone = copy.deepcopy(model)
    for parent in list(clone.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.ReLU6):
                setattr(parent, name, _ReLU6AsReLU())
    return clone


class _ReLU6AsReLU(nn.ReLU):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, 0, 6)


# --------------------------------------------------------------------------------------------
# Internals
# --------------------------------------------------------------------------------------------
def _check_count(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def _input_gradient(model: nn.Module, x: torch.Tensor, target) -> torch.Tensor:
    """d(logit of the target) / d(x[i]) for each sample, without touching the parameters' .grad."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = model(x)
        score = select(logits, resolve_targets(target, logits)).sum()  # samples are independent: the sum's gradient is per sample
        (grad,) = torch.autograd.grad(score, x)
    return grad


def _auto_batch_size(x: torch.Tensor) -> int:
    per_sample = x[0].numel() * x.element_size() * ACTIVATION_BYTES_PER_INPUT_BYTE
    return max(1, MEMORY_BUDGET_BYTES // per_sample)


def _chunks(total: int, limit: int):
    """(start, stop) ranges covering range(total) in equal chunks of at most ``limit``."""
    size = math.ceil(total / math.ceil(total / limit))
    for start in range(0, total, size):
        yield start, min(start + size, total)
