"""DeepLIFT: explain the difference from a reference input with multipliers. Taught in chapter 08.

Gradients answer "how does the score change for an infinitesimal change of the input?". DeepLIFT
(Shrikumar et al., 2017) answers "how much of the difference F(x) - F(x0) between the input and a
reference (baseline) x0 does each input value carry?". Each unit gets a *multiplier*
m = delta(output) / delta(input) instead of a derivative, and multipliers chain like derivatives:

* a linear layer (Linear, Conv, BatchNorm in eval mode, average pooling) passes multipliers back
  through its weights, exactly like gradients (its differences are linear in its input differences);
* an elementwise nonlinearity f uses the **rescale rule**: m = (f(x) - f(x0)) / (x - x0), the slope
  of the secant between the reference and the input, and f'(x) where x - x0 is (numerically) zero;
* max pooling passes the difference of its outputs back to the inputs that were the maximum
  (Captum's rule), *adding* where overlapping windows share a maximum (kernel > stride, as in every
  torchvision ResNet's stem), so that the differences still add up.

The attribution is (x - x0) * (chained multiplier), and it obeys **summation to delta**,
sum(attributions) = F(x) - F(x0), when every nonlinearity is one of these modules. Measured: to
float rounding (1e-12 in float64) on the test CNNs, torchvision's resnet18 with its ReLUs split and
a zero baseline (equal to Captum's DeepLift to 1e-10), EfficientNet-Lite0 (ReLU6; equal to Captum
with ReLU6 registered to 4e-7). It does not hold through modules the rule does not know
(:func:`unknown_modules`: LayerNorm, softmax, attention, adaptive max pooling pass plain gradients,
and the sum misses by 7-250 % on such models) or a nonlinearity called as a function (``F.relu``,
a squeeze-excitation gate ``x * s``), which the hooks cannot see. Every call checks the sum
(:mod:`xaicourse.guarantees`): the result carries ``attributions.conservation``, and a miss over
5 %, or any module without a rule, gets a warning naming it.

The implementation runs the model once on the batch ``cat([x, x0])``; a forward hook on every
nonlinear module sees the input and reference halves of its input and output and replaces the
module's output by the same values wrapped in an autograd function whose backward multiplies by the
rescale multiplier. The hooks are removed in ``finally``; the model's parameters are not touched.

* :func:`deeplift`: DeepLIFT-Rescale against one baseline.
* :func:`deeplift_shap`: DeepLIFT averaged over a set of baselines (DeepSHAP / Captum's DeepLiftShap).
* :func:`rescale_multiplier`: the rescale rule for one nonlinearity (the chapter's exercise).
* :func:`summation_delta`: sum(attributions) - (F(x) - F(x0)) per sample.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .baselines import as_baseline, as_baselines
from .batching import batched
from .guarantees import check_conservation, leaf_modules_except, name_list
from .inputs import explainer, has_values, model_input, run_model
from .targets import chunk_targets, resolve_targets, select

__all__ = ["ELEMENTWISE", "EPS", "LINEAR", "deeplift", "deeplift_shap", "rescale_multiplier", "summation_delta",
           "unknown_modules"]

#: Modules treated as elementwise nonlinearities (the rescale rule). Captum's DeepLift knows ReLU,
#: ELU, LeakyReLU, Sigmoid, Tanh and Softplus; the others here (ReLU6 in EfficientNet-Lite0, GELU,
#: SiLU, ...) are elementwise too, so the rule applies unchanged.
ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid,
               nn.Tanh, nn.Softplus, nn.Hardtanh, nn.Hardsigmoid, nn.Hardswish, nn.LogSigmoid, nn.Tanhshrink,
               nn.Softsign)
#: Below this |x - x0| the secant is replaced by the derivative f'(x) (Captum's eps).
EPS = 1e-10


def rescale_multiplier(f, x: torch.Tensor, x0: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """The rescale rule's multiplier of the elementwise function ``f`` at ``x`` against ``x0``.

    ``(f(x) - f(x0)) / (x - x0)`` where ``|x - x0| >= eps``, else the derivative ``f'(x)``. Same
    shape as ``x``. Chapter 08 (the exercise asks for this function).
    """
    if not callable(f):
        raise TypeError(f"f must be the elementwise function (e.g. torch.relu or nn.ReLU()), got {type(f).__name__}")
    x, x0 = torch.as_tensor(x).detach(), torch.as_tensor(x0).detach()
    with torch.no_grad():
        y, y0 = f(x.clone()), f(x0.clone())  # clones: in-place functions (ReLU(inplace=True)) must not touch x
    return _secant(f, x, x0, y, y0, eps)


def _secant(f, x, x0, y, y0, eps: float = EPS) -> torch.Tensor:
    """(y - y0) / (x - x0), and the derivative f'(x) where |x - x0| < eps (computed only when there are such entries)."""
    multiplier, small = _secant_where_defined(x, x0, y, y0, eps)
    if has_values(small) and not small.any():
        return multiplier
    with torch.enable_grad():
        leaf = x.clone().requires_grad_(True)
        (slope,) = torch.autograd.grad(f(leaf.clone()).sum(), leaf, allow_unused=True)
    return torch.where(small, torch.zeros_like(x) if slope is None else slope, multiplier)


def _secant_where_defined(x, x0, y, y0, eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """The secant (y - y0) / (x - x0), zero where |x - x0| < eps, and that mask of undefined entries."""
    dx = x - x0
    small = dx.abs() < eps
    return ((y - y0) / dx).masked_fill_(small, 0.0), small


class _Rescale(torch.autograd.Function):
    """Forward: the nonlinearity's output, unchanged. Backward: the rescale rule, grad * secant.

    Where x - x0 is (numerically) zero the secant is undefined and the derivative f'(x) is used,
    as Captum does: there the gradient goes back to the module's own output, whose backward is
    f'(x) (autograd computes it; nothing is evaluated twice). Inputs and references share the
    secant (it is symmetric); the references' gradient is never read, since only the inputs are
    differentiated.
    """

    @staticmethod
    def forward(ctx, inp, out, secant, small):
        ctx.save_for_backward(secant, small)
        ctx.any_small = bool(small.any()) if has_values(small) else True
        return out.detach().clone()  # a new tensor: later in-place ops on it must not touch the module's output

    @staticmethod
    def backward(ctx, grad):
        secant, small = ctx.saved_tensors
        pairs = grad.reshape(2, *secant.shape)  # (inputs, references), both by the same secant
        grad_inp = (pairs * secant).reshape(grad.shape)
        if not ctx.any_small:
            return grad_inp, None, None, None
        return grad_inp, (pairs * small).reshape(grad.shape), None, None


def _unpool_add(values: torch.Tensor, indices: torch.Tensor, size) -> torch.Tensor:
    """Max-unpooling that *adds*: each pooled value goes back to its argmax, and an input that is the
    maximum of several overlapping windows (kernel > stride, e.g. ResNet's 3x3 / 2 stem pool) receives
    the sum. (``F.max_unpool2d`` keeps one of the repeated values, so multipliers would be lost.)"""
    n, c = values.shape[:2]
    out = values.new_zeros(n, c, size[0] * size[1])
    return out.scatter_add_(2, indices.flatten(2), values.flatten(2)).view(n, c, *size)


class _MaxPoolRescale(torch.autograd.Function):
    """Forward: max pooling's output. Backward: Captum's max-pool rule (differences go to the maxima)."""

    @staticmethod
    def forward(ctx, inp, out, delta_in, delta_out, indices, shape):
        ctx.save_for_backward(delta_in, delta_out, indices)
        ctx.shape = shape
        return out.clone()

    @staticmethod
    def backward(ctx, grad):
        delta_in, delta_out, indices = ctx.saved_tensors
        half = len(grad) // 2
        g = grad[:half]  # the inputs' multipliers; the references' half carries none
        size = ctx.shape[-2:]
        unpooled = _unpool_add(torch.cat([g, g]) * delta_out, indices, size)
        moved = unpooled[:half] + unpooled[half:]
        plain = _unpool_add(g, indices[:half], size)  # the ordinary gradient
        small = delta_in.abs() < EPS
        mult = torch.where(small, plain, moved / torch.where(small, torch.ones_like(delta_in), delta_in))
        return torch.cat([mult, torch.zeros_like(mult)]), None, None, None, None, None


def _rescale_output(module, inp, out):
    """``out`` with the rescale rule as its backward; ``inp`` and ``out`` are (2n, ...): inputs, then references."""
    half = len(inp) // 2
    if isinstance(module, nn.MaxPool2d):
        return _maxpool_output(module, inp, out, half)
    with torch.no_grad():  # the forward already gave f(x) and f(x0)
        secant, small = _secant_where_defined(inp[:half], inp[half:], out[:half], out[half:])
    return _Rescale.apply(inp, out, secant, small)


def _maxpool_output(module, inp, out, half):
    if module.dilation not in (1, (1, 1)) or module.ceil_mode:
        raise ValueError("deeplift supports MaxPool2d without dilation and ceil_mode; replace the layer or use another method")
    with torch.no_grad():
        x, x0 = inp[:half].detach(), inp[half:].detach()
        y, y0 = out[:half].detach(), out[half:].detach()
        top = torch.max(y, y0)
        delta_out = torch.cat([top - y0, y - top])
        _, indices = F.max_pool2d(inp.detach(), module.kernel_size, module.stride, module.padding, return_indices=True)
    return _MaxPoolRescale.apply(inp, out.detach(), x - x0, delta_out, indices, tuple(inp.shape))


def _nonlinear_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, ELEMENTWISE + (nn.MaxPool2d,))]


def _hooked(model: nn.Module):
    """Register the rescale hooks on every nonlinear module; returns a function that removes them (call it in finally).

    In-place modules (``nn.ReLU(inplace=True)``) are run out of place for the call, since the rule
    needs their input after the forward; the flag is restored by the returned function."""
    stash: dict[int, list[torch.Tensor]] = {}

    def before(module, args):
        stash.setdefault(id(module), []).append(args[0])

    def after(module, _args, output):
        inp = stash[id(module)].pop()
        if not isinstance(output, torch.Tensor) or len(inp) % 2 or inp.shape[0] != output.shape[0]:
            raise ValueError(f"deeplift: {type(module).__name__} does not map a batch to a batch of the same size, "
                             "so inputs and references cannot be paired; DeepLIFT needs batch-wise layers")
        return _rescale_output(module, inp, output)

    handles, inplace = [], []
    for module in _nonlinear_modules(model):
        handles.append(module.register_forward_pre_hook(before))
        handles.append(module.register_forward_hook(after))
        if getattr(module, "inplace", False) is True:
            module.inplace = False
            inplace.append(module)

    def remove():
        for handle in handles:
            handle.remove()
        for module in inplace:
            module.inplace = True

    return remove


#: Modules whose differences are linear in their input differences: multipliers pass through them as gradients.
LINEAR = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.BatchNorm1d,
          nn.BatchNorm2d, nn.BatchNorm3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
          nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.Dropout1d,
          nn.Dropout2d, nn.Dropout3d, nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d, nn.Upsample, nn.PixelShuffle)


def unknown_modules(model: nn.Module) -> list[str]:
    """The leaf modules DeepLIFT's rules do not cover, as "name (Type)": they pass plain gradients. Chapter 08.

    A leaf module that is neither a rule (:data:`ELEMENTWISE`, ``nn.MaxPool2d``) nor linear
    (:data:`LINEAR`): LayerNorm, softmax, attention, adaptive max pooling, ... Nonlinearities called
    as functions in ``forward`` (``F.relu``, a squeeze-excitation gate ``x * s``, attention's
    softmax) are not modules and cannot be listed: the summation check on each call catches them.
    """
    return leaf_modules_except(model, ELEMENTWISE + LINEAR + (nn.MaxPool2d,))


def _causes(model: nn.Module) -> str:
    unknown = unknown_modules(model)
    if unknown:
        return (f"The rescale rule does not know {name_list(unknown)}: they pass plain gradients. Use a "
                "model of the supported modules (deeplift.ELEMENTWISE, LINEAR, MaxPool2d), or a method without this "
                "limit (Integrated Gradients, KernelSHAP).")
    return ("Every module is supported, so a nonlinearity is called as a function inside forward (F.relu, "
            "torch.sigmoid, a squeeze-excitation gate x * s, attention's softmax) and passes a plain gradient: make it "
            "a module, or use Integrated Gradients.")


def _pair_attributions(model, xs, refs, target, batch_size=None, desc="DeepLIFT"):
    """(x - x0) * multipliers for each pair (xs[i], refs[i]) in chunks, and F(x_i) - F(x0_i) of the target (B,).

    ``target`` as the caller gave it: it is resolved from the pairs' own forward pass (the hooks
    leave the forward values unchanged), so no extra pass of the model is needed for it."""
    out = torch.empty_like(xs)
    change = torch.empty(len(xs), dtype=torch.float64, device=xs.device)
    unhook = _hooked(model)
    memo = {}

    def run(items):
        x = xs[items].detach().requires_grad_(True)
        with torch.enable_grad():
            logits = run_model(model, torch.cat([x, refs[items]]))
            t = chunk_targets(target, logits[:len(x)], items, len(xs), memo)
            scores = select(logits, torch.cat([t, t]))
            (grad,) = torch.autograd.grad(scores[:len(x)].sum(), x)
        return (xs[items] - refs[items]) * grad, (scores[:len(x)] - scores[len(x):]).detach().double()

    try:
        for items, (attr, diff) in batched(len(xs), run, model=model, batch_size=batch_size, grad=True, desc=desc,
                                           item_bytes=2 * xs[0].nbytes):
            out[items], change[items] = attr, diff
    finally:
        unhook()
    return out, change


def _checked(model, attributions, change, method, stacklevel=5):
    """Summation to delta checked on the result (guarantees.check_conservation), naming unknown modules."""
    return check_conservation(attributions, attributions.flatten(1).double().sum(1), change, method=method,
                              property="summation to delta", causes=_causes(model), unsupported=unknown_modules(model),
                              stacklevel=stacklevel)


@explainer
def deeplift(model: nn.Module, x: torch.Tensor, target=None, *, baseline=None, batch_size: int | None = None) -> torch.Tensor:
    """DeepLIFT-Rescale attributions of the target logit against ``baseline``: shaped like ``x`` (B, ...).

    ``baseline``: None (the all-zero input), a number, or a tensor shaped like ``x`` or like one
    sample. ``target``: None (each sample's top class), an int, or one class per sample.
    ``sum(attributions[i]) = F(x_i) - F(baseline_i)`` for the target logit (summation to delta) when
    every nonlinearity is a module of :data:`ELEMENTWISE` or ``nn.MaxPool2d``; checked on every call
    (``attributions.conservation``, a warning on a miss or a module without a rule). ``batch_size``:
    samples per pass (None: sized from the memory budget). Equal to Captum's ``DeepLift`` (tests:
    1e-12 on CNNs of ReLU, tanh, sigmoid, average and max pooling with a zero baseline; 1e-10 on
    resnet18); where they differ, Captum's differs from F(x) - F(x0): its max-pool rule with a
    non-zero baseline, and ReLU6 and the other modules Captum does not know, which it treats as
    linear. Chapter 08.
    """
    x = model_input(model, x, image=False)
    attributions, change = _pair_attributions(model, x, as_baseline(baseline, x), target, batch_size)
    return _checked(model, attributions, change, "deeplift")


@explainer
def deeplift_shap(model: nn.Module, x: torch.Tensor, target=None, *, baselines, batch_size: int | None = None) -> torch.Tensor:
    """DeepLIFT averaged over ``baselines`` (K, ...): shaped like ``x``.

    The SHAP reading of DeepLIFT (Lundberg & Lee, 2017): with baselines drawn from the data, the mean
    of the DeepLIFT attributions against each baseline approximates the Shapley values of the
    linearised model, and ``sum(attributions[i]) = F(x_i) - mean_k F(baseline_k)``. Each (sample,
    baseline) pair is one element of a chunk, so memory stays bounded for many baselines. Equal to
    Captum's ``DeepLiftShap`` to 1e-12 on the test CNN (same caveats as :func:`deeplift`); the sum
    against the baselines' mean output is checked on every call. Chapter 08.
    """
    x = model_input(model, x, image=False)
    refs = as_baselines(baselines, x)
    with torch.no_grad():
        targets = resolve_targets(target, run_model(model, x))
    k = len(refs)
    xs = x.repeat_interleave(k, dim=0)
    pairs, change = _pair_attributions(model, xs, refs.repeat(len(x), *[1] * (x.ndim - 1)),
                                       targets.repeat_interleave(k), batch_size, desc="DeepLiftShap")
    attributions = pairs.view(len(x), k, *x.shape[1:]).mean(1)
    return _checked(model, attributions, change.view(len(x), k).mean(1), "deeplift_shap")


def summation_delta(model: nn.Module, x: torch.Tensor, attributions: torch.Tensor, target=None, *,
                    baseline=None) -> torch.Tensor:
    """sum(attributions[i]) - (F(x_i) - F(x0_i)) for the target logit, shape (B,). Chapter 08.

    Zero (to float rounding) is DeepLIFT's summation-to-delta property. ``baseline`` as in
    :func:`deeplift`; for :func:`deeplift_shap` pass the baselines' mean output instead by giving
    ``baseline`` as the (K, ...) stack with K != B (the mean of F over the stack is used).
    """
    x = model_input(model, x, image=False)
    if not isinstance(attributions, torch.Tensor) or attributions.shape != x.shape:
        raise ValueError(f"attributions must be a tensor shaped like x {tuple(x.shape)}, got "
                         f"{getattr(attributions, 'shape', type(attributions).__name__)}")
    with torch.no_grad():
        out = run_model(model, x)
        targets = resolve_targets(target, out)
        if isinstance(baseline, torch.Tensor) and baseline.ndim == x.ndim and len(baseline) not in (1, len(x)):
            refs = as_baselines(baseline, x)
            ref_scores = torch.stack([select(run_model(model, refs), torch.full((len(refs),), int(t), device=x.device)).mean()
                                      for t in targets])
        else:
            ref_scores = select(run_model(model, as_baseline(baseline, x)), targets)
        return attributions.to(x).flatten(1).sum(1) - (select(out, targets) - ref_scores)
