"""Gradient saliency: which input values the score of a class is most sensitive to. Taught in chapter 01.

* ``vanilla_gradient``: the gradient of the target class's logit with respect to the input,
  S_c(x) = d y_c / d x (Simonyan et al., 2014).
* ``gradient_x_input``: the gradient times the input, x * d y_c / d x (Shrikumar et al., 2016).
* ``smoothgrad``: the gradient averaged over noisy copies of the input (Smilkov et al., 2017), and
  its SmoothGrad^2 (Hooker et al., 2019) and VarGrad (Adebayo et al., 2018) variants.
* ``guided_backprop``: the gradient with ReLUs that pass back only positive signal (Springenberg et al.).
* ``to_map`` (from :mod:`xaicourse.maps`): an attribution (B, C, H, W) -> a map (B, H, W).

Every function takes a batch x of shape (B, C, H, W) and returns a tensor of the same shape (the
signed attribution per input value); ``target`` is None (each sample's top class), an int, or one
class per sample (see :mod:`xaicourse.targets`). Gradients come from ``torch.autograd.grad`` with
respect to a detached copy of x: the model's parameters, their ``.grad``, its mode and its hooks
are left as they were, and the caller's x is not touched.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .batching import DEFAULT_BUDGET_BYTES, batched
from .inputs import check_choice, check_int, check_number, explainer, generator, model_input, run_model
from .maps import MAP_REDUCTIONS, to_map
from .targets import resolve_targets, score_gradient

__all__ = ["MAP_REDUCTIONS", "SMOOTHGRAD_VARIANTS", "copy_with_captum_relus", "gradient_x_input", "guided_backprop",
           "smoothgrad", "to_map", "vanilla_gradient"]

SMOOTHGRAD_VARIANTS = ("mean", "squared", "vargrad")


@explainer
def vanilla_gradient(model: nn.Module, x: torch.Tensor, target=None) -> torch.Tensor:
    """d(logit of the target class) / d(input), shape (B, C, H, W) like ``x``. Chapter 01.

    The gradient of the logit, not of the softmax probability: the probability's gradient also
    depends on every other class (it grows when the other classes' logits shrink).
    """
    return score_gradient(model, model_input(model, x), target)


@explainer
def gradient_x_input(model: nn.Module, x: torch.Tensor, target=None) -> torch.Tensor:
    """The input times its gradient, x * d y_c / d x, shape (B, C, H, W). Chapter 01.

    For a linear model y = w . x + b it is each input value's contribution w_i x_i to the logit.
    """
    x = model_input(model, x)
    return x * score_gradient(model, x, target)


@explainer
def smoothgrad(
    model: nn.Module,
    x: torch.Tensor,
    target=None,
    *,
    n_samples: int = 50,
    noise_level: float = 0.15,
    batch_size: int | None = None,
    seed: int = 0,
    variant: str = "squared",
) -> torch.Tensor:
    """The gradient averaged over ``n_samples`` noisy copies of each input, shape (B, C, H, W). Chapter 01.

    The noise is Gaussian with sigma = ``noise_level`` * (max - min) of each input, as in the
    SmoothGrad paper (which recommends 10-20 %), so the same ``noise_level`` means the same amount of
    noise whatever the input's normalisation. ``variant``:

    * "mean": E[g] (SmoothGrad, Smilkov et al. 2017);
    * "squared" (the default): E[g^2] (SmoothGrad^2, Hooker et al. 2019);
    * "vargrad": E[g^2] - E[g]^2 (VarGrad, Adebayo et al. 2018, "Local explanation methods for deep
      neural networks lack sensitivity to parameter values").

    Why SmoothGrad^2 by default: on EfficientNet-Lite0 two 50-sample "mean" maps of the cat photo with
    different seeds rank their pixels alike with Spearman 0.30 only (0.50 coffee, 0.66 astronaut; 0.89-0.98
    on 8 x 8 patches): the signed gradients cancel and the per-pixel mean is mostly noise. SmoothGrad^2 at
    the same 50 samples and 15 % noise gives 0.75 / 0.91 / 0.94 per pixel and 0.94-0.99 per patch
    (chapter 01 measures it). Ask for ``variant="mean"`` for the signed SmoothGrad of the paper.

    ``target=None`` explains each sample's top class on the clean input. The noise comes from a
    generator seeded with ``seed`` on x's device, one ``randn`` of shape (C, H, W) per noisy copy,
    all copies of sample 0 first: the result depends on ``seed``, not on ``batch_size`` (up to float
    rounding). ``batch_size``: noisy copies per model pass; None sizes chunks from the bytes one
    copy's backward pass keeps (:mod:`xaicourse.batching`).
    """
    x = model_input(model, x)
    check_int("n_samples", n_samples)
    if batch_size is not None:
        check_int("batch_size", batch_size)
    check_number("noise_level", noise_level, minimum=0, hint=" (a fraction of the input's range, e.g. 0.15)")
    check_choice("SmoothGrad variant", variant, SMOOTHGRAD_VARIANTS)

    with torch.no_grad():
        targets = resolve_targets(target, run_model(model, x))
    sigma = noise_level * (x.flatten(1).amax(1) - x.flatten(1).amin(1))
    noise_source = generator(seed, x.device)
    total = torch.zeros_like(x) if variant != "squared" else None
    total_sq = torch.zeros_like(x) if variant != "mean" else None

    def gradients(items: slice):
        sample = torch.arange(items.start, items.stop, device=x.device) // n_samples
        noise = torch.stack([torch.randn(x.shape[1:], generator=noise_source, device=x.device, dtype=x.dtype)
                             for _ in range(items.start, items.stop)])
        noisy = x[sample] + sigma[sample].view(-1, *[1] * (x.ndim - 1)) * noise
        return sample, score_gradient(model, noisy, targets[sample])

    for _, (sample, grads) in batched(len(x) * n_samples, gradients, model=model, batch_size=batch_size,
                                      budget=DEFAULT_BUDGET_BYTES, desc="SmoothGrad samples"):
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


@explainer
def guided_backprop(model: nn.Module, x: torch.Tensor, target=None) -> torch.Tensor:
    """Guided Backpropagation (Springenberg et al., 2015): shape (B, C, H, W). Chapters 01 and 08.

    The gradient, except that every ReLU (``nn.ReLU`` and ``nn.ReLU6`` modules) passes back only
    positive gradients, and only where its input was positive. It makes crisp, edge-like maps that
    barely change when the model's weights are randomised (chapter 07's sanity check). The
    backward rule is changed by module hooks that are removed in ``finally``.
    """
    x = model_input(model, x)
    relus = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
    if not relus:
        raise ValueError(f"{type(model).__name__} has no nn.ReLU / nn.ReLU6 modules, so Guided Backprop is the plain "
                         "gradient here (functional relu calls cannot be changed): use vanilla_gradient instead")

    def guided(_module, _grad_input, grad_output):
        return (grad_output[0].clamp(min=0) * (_grad_input[0] != 0),)

    handles = [m.register_full_backward_hook(guided) for m in relus]
    inplace = [(m, m.inplace) for m in relus]
    try:
        for m in relus:
            m.inplace = False  # full backward hooks cannot wrap in-place modules
        return score_gradient(model, x, target)
    finally:
        for handle in handles:
            handle.remove()
        for m, flag in inplace:
            m.inplace = flag


def copy_with_captum_relus(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose ReLU6 activations are ``nn.ReLU`` modules (still clipping at 6). Chapter 01.

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
