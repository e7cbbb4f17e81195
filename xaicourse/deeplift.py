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
  (Captum's rule, so that the differences still add up).

The attribution is (x - x0) * (chained multiplier), and it obeys **summation to delta**:
sum(attributions) = F(x) - F(x0) exactly (up to float rounding), for every model built from the
modules above. A nonlinearity called as a function (``F.relu`` inside ``forward``) is invisible to
the hooks and falls back to its gradient: then the sum is off, and :func:`summation_delta` shows by
how much.

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

from .batching import batched
from .inputs import explainer, has_values, model_input, run_model
from .targets import resolve_targets, select

__all__ = ["ELEMENTWISE", "EPS", "deeplift", "deeplift_shap", "rescale_multiplier", "summation_delta"]

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
        ctx.any_small = bool(small.any())
        return out.detach().clone()  # a new tensor: later in-place ops on it must not touch the module's output

    @staticmethod
    def backward(ctx, grad):
        secant, small = ctx.saved_tensors
        pairs = grad.reshape(2, *secant.shape)  # (inputs, references), both by the same secant
        grad_inp = (pairs * secant).reshape(grad.shape)
        if not ctx.any_small:
            return grad_inp, None, None, None
        return grad_inp, (pairs * small).reshape(grad.shape), None, None


class _MaxPoolRescale(torch.autograd.Function):
    """Forward: max pooling's output. Backward: Captum's max-pool rule (differences go to the maxima)."""

    @staticmethod
    def forward(ctx, inp, out, delta_in, delta_out, indices, shape, pool):
        ctx.save_for_backward(delta_in, delta_out, indices)
        ctx.shape, ctx.pool = shape, pool
        return out.clone()

    @staticmethod
    def backward(ctx, grad):
        delta_in, delta_out, indices = ctx.saved_tensors
        kernel, stride, padding = ctx.pool
        half = len(grad) // 2
        g = grad[:half]  # the inputs' multipliers; the references' half carries none
        size = ctx.shape[-2:]
        unpooled = F.max_unpool2d(torch.cat([g, g]) * delta_out, indices, kernel, stride, padding, output_size=size)
        moved = unpooled[:half] + unpooled[half:]
        plain = F.max_unpool2d(g, indices[:half], kernel, stride, padding, output_size=size)  # the ordinary gradient
        small = delta_in.abs() < EPS
        mult = torch.where(small, plain, moved / torch.where(small, torch.ones_like(delta_in), delta_in))
        return torch.cat([mult, torch.zeros_like(mult)]), None, None, None, None, None, None


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
    return _MaxPoolRescale.apply(inp, out.detach(), x - x0, delta_out, indices, tuple(inp.shape),
                                 (module.kernel_size, module.stride, module.padding))


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


def _pair_attributions(model, xs, refs, target, batch_size=None, desc="DeepLIFT"):
    """(x - x0) * multipliers for each pair (xs[i], refs[i]), in chunks: a tensor shaped like ``xs``.

    ``target`` as the caller gave it: it is resolved from the pairs' own forward pass (the hooks
    leave the forward values unchanged), so no extra pass of the model is needed for it."""
    out = torch.empty_like(xs)
    unhook = _hooked(model)
    resolved = {}

    def run(items):
        x = xs[items].detach().requires_grad_(True)
        with torch.enable_grad():
            logits = run_model(model, torch.cat([x, refs[items]]))
            if target is None:
                t = logits[:len(x)].detach().argmax(dim=1)
            else:  # checked once against the number of classes, for the whole batch
                if "all" not in resolved:
                    resolved["all"] = resolve_targets(target, logits.new_zeros(len(xs), logits.shape[1]))
                t = resolved["all"][items]
            (grad,) = torch.autograd.grad(select(logits[:len(x)], t).sum(), x)
        return (xs[items] - refs[items]) * grad

    try:
        for items, attr in batched(len(xs), run, model=model, batch_size=batch_size, grad=True, desc=desc):
            out[items] = attr
    finally:
        unhook()
    return out


def _as_baseline(baseline, x: torch.Tensor) -> torch.Tensor:
    """None -> zeros; a number; a tensor shaped like ``x``, like one sample, or (1, ...): broadcast to ``x``."""
    if baseline is None:
        return torch.zeros_like(x)
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(x, float(baseline))
    if not isinstance(baseline, torch.Tensor):
        raise TypeError(f"baseline must be None (zeros), a number or a tensor, got {type(baseline).__name__}")
    baseline = baseline.detach().to(device=x.device, dtype=x.dtype)
    if baseline.shape == x.shape[1:] or (baseline.ndim == x.ndim and len(baseline) == 1 and baseline.shape[1:] == x.shape[1:]):
        return baseline.expand_as(x).contiguous()
    if baseline.shape != x.shape:
        raise ValueError(f"baseline shape {tuple(baseline.shape)} does not match x {tuple(x.shape)}: give one baseline "
                         f"per sample {tuple(x.shape)}, one for all {tuple(x.shape[1:])}, or a number")
    if not torch.isfinite(baseline).all():
        raise ValueError("baseline contains NaN or inf values")
    return baseline


def _as_baselines(baselines, x: torch.Tensor) -> torch.Tensor:
    """A stack of K baselines (K, *x.shape[1:]) on x's device and dtype."""
    if not isinstance(baselines, torch.Tensor):
        raise TypeError(f"baselines must be a tensor (K, {', '.join(map(str, x.shape[1:]))}) of K reference inputs, "
                        f"got {type(baselines).__name__}")
    if baselines.shape == x.shape[1:]:
        baselines = baselines.unsqueeze(0)
    if baselines.ndim != x.ndim or baselines.shape[1:] != x.shape[1:] or len(baselines) == 0:
        raise ValueError(f"baselines must be a stack (K, {', '.join(map(str, x.shape[1:]))}) of K >= 1 reference "
                         f"inputs, got shape {tuple(baselines.shape)}")
    if not torch.isfinite(baselines).all():
        raise ValueError("baselines contain NaN or inf values")
    return baselines.detach().to(device=x.device, dtype=x.dtype)


@explainer
def deeplift(model: nn.Module, x: torch.Tensor, target=None, *, baseline=None, batch_size: int | None = None) -> torch.Tensor:
    """DeepLIFT-Rescale attributions of the target logit against ``baseline``: shaped like ``x`` (B, ...).

    ``baseline``: None (the all-zero input), a number, or a tensor shaped like ``x`` or like one
    sample. ``target``: None (each sample's top class), an int, or one class per sample.
    ``sum(attributions[i]) = F(x_i) - F(baseline_i)`` for the target logit (summation to delta) when
    every nonlinearity is a module of :data:`ELEMENTWISE` or ``nn.MaxPool2d``. ``batch_size``:
    samples per pass (None: sized from the memory budget). Same result as Captum's ``DeepLift``
    for the nonlinearities Captum supports. Chapter 08.
    """
    x = model_input(model, x, image=False)
    return _pair_attributions(model, x, _as_baseline(baseline, x), target, batch_size)


@explainer
def deeplift_shap(model: nn.Module, x: torch.Tensor, target=None, *, baselines, batch_size: int | None = None) -> torch.Tensor:
    """DeepLIFT averaged over ``baselines`` (K, ...): shaped like ``x``.

    The SHAP reading of DeepLIFT (Lundberg & Lee, 2017): with baselines drawn from the data, the mean
    of the DeepLIFT attributions against each baseline approximates the Shapley values of the
    linearised model, and ``sum(attributions[i]) = F(x_i) - mean_k F(baseline_k)``. Each (sample,
    baseline) pair is one element of a chunk, so memory stays bounded for many baselines. Same result
    as Captum's ``DeepLiftShap``. Chapter 08.
    """
    x = model_input(model, x, image=False)
    refs = _as_baselines(baselines, x)
    with torch.no_grad():
        targets = resolve_targets(target, run_model(model, x))
    k = len(refs)
    xs = x.repeat_interleave(k, dim=0)
    pairs = _pair_attributions(model, xs, refs.repeat(len(x), *[1] * (x.ndim - 1)), targets.repeat_interleave(k),
                               batch_size, desc="DeepLiftShap")
    return pairs.view(len(x), k, *x.shape[1:]).mean(1)


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
            refs = _as_baselines(baseline, x)
            ref_scores = torch.stack([select(run_model(model, refs), torch.full((len(refs),), int(t), device=x.device)).mean()
                                      for t in targets])
        else:
            ref_scores = select(run_model(model, _as_baseline(baseline, x)), targets)
        return attributions.to(x).flatten(1).sum(1) - (select(out, targets) - ref_scores)
