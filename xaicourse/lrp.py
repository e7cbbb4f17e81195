"""Layer-wise Relevance Propagation (LRP): pass the score back layer by layer, conserving it. Taught in chapter 08.

LRP (Bach et al., 2015; Montavon et al., 2019) starts with the target logit as the relevance of
the output and redistributes each layer's relevance R_k over its inputs j in proportion to their
contributions z_jk = a_j w_jk. For a Linear or Conv layer with inputs a, weights W and bias b:

* **LRP-epsilon**: R_j = a_j sum_k w_jk R_k / (z_k + eps sign(z_k)), with z = W a + b. The eps
  absorbs weak, noisy contributions; eps = 0 is LRP-0 (= gradient x input on a ReLU net).
* **LRP-z+** (alpha 1, beta 0): only positive contributions, z+_jk = a+_j w+_jk + a-_j w-_jk.
* **LRP-gamma**: favour positive contributions, w -> w + gamma w+ (and the mirror case for
  negative outputs; zennit's generalised form).
* **flat** and **w^2** for the first layer (pixels carry no meaningful "activation"): relevance
  spread uniformly (flat) or by w_jk^2 over the receptive field.

Activations pass relevance through unchanged, max pooling sends it to the winner, average pooling
divides it like LRP-0. *Composites* choose the rule per layer type: "epsilon_plus_flat" (flat for
the first layer, z+ for convolutions, epsilon for dense layers: zennit's recommendation for
ResNets and most CNNs), "epsilon_gamma_box" (z-box for the first layer, gamma for convolutions),
"epsilon_plus", "epsilon_alpha2_beta1", "epsilon". BatchNorm is first merged into the layer
before it (**canonisation**: a BN after a conv is an affine map, so conv + BN is one conv with
scaled weights and a shifted bias, :func:`merge_batchnorm`), otherwise the rules would treat
the normalisation as a layer of its own.

* :func:`lrp`: LRP of any model, the composite plumbing done by zennit (function-level import),
  shaped like ``x``.
* :func:`lrp_epsilon`, :func:`lrp_zplus`, :func:`lrp_gamma`, :func:`lrp_flat`, :func:`lrp_wsquare`:
  one rule for one Linear / Conv2d layer, written out (the chapter's exercise: LRP-epsilon).
* :func:`layer_relevances`: LRP of an ``nn.Sequential`` by hand with those rules, returning the
  relevance at every layer (to measure conservation); it agrees with :func:`lrp` and zennit.
* :func:`merge_batchnorm`: the canonisation of one layer + BatchNorm pair.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .batching import batched
from .guarantees import check_conservation, leaf_modules_except, name_list
from .inputs import check_choice, check_number, explainer, has_values, model_input, run_model
from .targets import chunk_targets, resolve_targets

__all__ = ["COMPOSITES", "FIRST_RULES", "FITTING", "RULES", "layer_relevances", "lrp", "lrp_epsilon", "lrp_flat",
           "lrp_gamma", "lrp_wsquare", "lrp_zplus", "merge_batchnorm", "unfitting_modules"]

#: composite name -> (rule of the first layer, rule of the other convolutions, rule of the dense layers)
COMPOSITES = {
    "epsilon": ("epsilon", "epsilon", "epsilon"),
    "epsilon_plus": ("zplus", "zplus", "epsilon"),
    "epsilon_plus_flat": ("flat", "zplus", "epsilon"),
    "epsilon_gamma_box": ("zbox", "gamma", "epsilon"),
    "epsilon_alpha2_beta1": ("alpha2_beta1", "alpha2_beta1", "epsilon"),
}
RULES = ("epsilon", "zplus", "gamma", "flat", "wsquare")
FIRST_RULES = RULES + ("zbox",)


def _stabilize(z: torch.Tensor, eps: float) -> torch.Tensor:
    """z + eps * sign(z), with sign(0) = +1 (zennit's stabiliser)."""
    return z + eps * torch.where(z >= 0, torch.ones_like(z), -torch.ones_like(z))


def _forward(layer: nn.Module, a: torch.Tensor, weight: torch.Tensor, bias) -> torch.Tensor:
    if isinstance(layer, nn.Linear):
        return F.linear(a, weight, bias)
    if isinstance(layer, nn.Conv2d):
        return layer._conv_forward(a, weight, bias)
    raise TypeError(f"LRP rules here are written for nn.Linear and nn.Conv2d layers, got {type(layer).__name__}")


def _propagate(layer, parts, relevance, denominator_eps, mask=None):
    """sum over (input, weight, bias) parts of input * d/d input [ z_part . (R / z).detach() ], z = sum of parts."""
    inputs = [a.detach().requires_grad_(True) for a, _, _ in parts]
    with torch.enable_grad():
        outputs = [_forward(layer, a, w, b) for a, (_, w, b) in zip(inputs, parts)]
        z = sum(outputs)
        s = relevance / _stabilize(z.detach(), denominator_eps)
        if mask is not None:
            s = s * mask
        grads = torch.autograd.grad(z, inputs, s)
    return sum(a.detach() * g for a, g in zip(inputs, grads))


def _params(layer, a=None, relevance=None):
    """The layer's (weight, bias), after checking the layer and, when given, its input and relevance."""
    if not isinstance(layer, (nn.Linear, nn.Conv2d)):
        raise TypeError(f"LRP rules here are written for nn.Linear and nn.Conv2d layers, got {type(layer).__name__}")
    if a is not None:
        for name, t in (("a", a), ("relevance", relevance)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name} must be a tensor, got {type(t).__name__}")
        try:
            with torch.no_grad():
                out = _forward(layer, a, layer.weight, layer.bias)
        except RuntimeError as err:
            raise ValueError(f"the layer cannot read a of shape {tuple(a.shape)} ({err}): give the layer's input "
                             "activations") from None
        if out.shape != relevance.shape:
            raise ValueError(f"relevance must be shaped like the layer's output {tuple(out.shape)}, got "
                             f"{tuple(relevance.shape)}")
    return layer.weight.detach(), (layer.bias.detach() if layer.bias is not None else None)


def lrp_epsilon(layer: nn.Module, a: torch.Tensor, relevance: torch.Tensor, epsilon: float = 1e-6) -> torch.Tensor:
    """LRP-epsilon through one Linear / Conv2d layer: the relevance of its input ``a``, shaped like ``a``.

    R_j = a_j * sum_k w_jk * R_k / (z_k + epsilon * sign(z_k)), z = layer(a). ``relevance`` is the
    relevance of the layer's output (shaped like ``layer(a)``). Chapter 08 (the exercise).
    """
    w, b = _params(layer, a, relevance)
    return _propagate(layer, [(a, w, b)], relevance, check_number("epsilon", epsilon, minimum=0.0))


def lrp_zplus(layer: nn.Module, a: torch.Tensor, relevance: torch.Tensor, stabilizer: float = 1e-6) -> torch.Tensor:
    """LRP-z+ (alpha=1, beta=0) through one layer: only positive contributions a+ w+ (+ b+) and a- w-. Chapter 08."""
    w, b = _params(layer, a, relevance)
    parts = [(a.clamp(min=0), w.clamp(min=0), None if b is None else b.clamp(min=0)),
             (a.clamp(max=0), w.clamp(max=0), None)]
    return _propagate(layer, parts, relevance, stabilizer)


def lrp_gamma(layer: nn.Module, a: torch.Tensor, relevance: torch.Tensor, gamma: float = 0.25,
              stabilizer: float = 1e-6) -> torch.Tensor:
    """LRP-gamma through one layer: positive contributions boosted by gamma (zennit's generalised rule). Chapter 08.

    Where the output z > 0, relevance goes by a+ (w + gamma w+) + a- (w + gamma w-); where z < 0,
    by a+ (w + gamma w-) + a- (w + gamma w+). For a >= 0 and gamma = 0 this is LRP-0.
    """
    g = check_number("gamma", gamma, minimum=0.0)
    w, b = _params(layer, a, relevance)
    up_w, down_w = w + g * w.clamp(min=0), w + g * w.clamp(max=0)
    up_b = None if b is None else b + g * b.clamp(min=0)
    down_b = None if b is None else b + g * b.clamp(max=0)
    z = _forward(layer, a.detach(), w, b)
    pos = _propagate(layer, [(a.clamp(min=0), up_w, up_b), (a.clamp(max=0), down_w, None)], relevance, stabilizer,
                     mask=(z > 0).to(z))
    neg = _propagate(layer, [(a.clamp(min=0), down_w, down_b), (a.clamp(max=0), up_w, None)], relevance, stabilizer,
                     mask=(z < 0).to(z))
    return pos + neg


def _uniform(layer, a, relevance, weight, bias, stabilizer):
    """R_j = sum_k weight_jk R_k / sum_j' weight_j'k with inputs set to one (flat and w^2 rules)."""
    ones = torch.ones_like(a).requires_grad_(True)
    with torch.enable_grad():
        z = _forward(layer, ones, weight, bias)
        (grad,) = torch.autograd.grad(z, ones, relevance / _stabilize(z.detach(), stabilizer))
    return grad


def lrp_flat(layer: nn.Module, a: torch.Tensor, relevance: torch.Tensor, stabilizer: float = 1e-6) -> torch.Tensor:
    """The flat rule: each output's relevance split equally over its receptive field (inputs and weights ignored). Chapter 08."""
    w, _ = _params(layer, a, relevance)
    return _uniform(layer, a, relevance, torch.ones_like(w), None, stabilizer)


def lrp_wsquare(layer: nn.Module, a: torch.Tensor, relevance: torch.Tensor, stabilizer: float = 1e-6) -> torch.Tensor:
    """The w^2 rule: relevance split over the receptive field in proportion to w_jk^2 (and b^2, as zennit). Chapter 08."""
    w, b = _params(layer, a, relevance)
    return _uniform(layer, a, relevance, w * w, None if b is None else b * b, stabilizer)


_RULE_FUNCTIONS = {"epsilon": lrp_epsilon, "zplus": lrp_zplus, "gamma": lrp_gamma, "flat": lrp_flat,
                   "wsquare": lrp_wsquare}


def merge_batchnorm(layer: nn.Module, batchnorm: nn.BatchNorm2d | nn.BatchNorm1d) -> nn.Module:
    """A copy of ``layer`` (Linear / Conv2d) that computes ``batchnorm(layer(a))`` (eval mode) alone. Chapter 08.

    BN(z) = gamma (z - mean) / sqrt(var + eps) + beta is affine in z, so with s = gamma / sqrt(var + eps):
    W' = s W (per output channel) and b' = s (b - mean) + beta.
    """
    if not isinstance(layer, (nn.Linear, nn.Conv2d)) or not isinstance(batchnorm, (nn.BatchNorm1d, nn.BatchNorm2d)):
        raise TypeError(f"merge_batchnorm merges a BatchNorm into the Linear / Conv2d before it, got "
                        f"{type(layer).__name__} and {type(batchnorm).__name__}")
    width = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
    if batchnorm.num_features != width:
        raise ValueError(f"the BatchNorm normalises {batchnorm.num_features} features but the layer outputs {width}: "
                         "pass the BatchNorm that follows this layer")
    merged = copy.deepcopy(layer)
    with torch.no_grad():
        scale = (batchnorm.weight if batchnorm.affine else 1.0) / (batchnorm.running_var + batchnorm.eps).sqrt()
        shift = batchnorm.bias if batchnorm.affine else 0.0
        bias = layer.bias if layer.bias is not None else torch.zeros_like(batchnorm.running_mean)
        merged.weight.copy_(layer.weight * scale.view(-1, *[1] * (layer.weight.ndim - 1)))
        merged.bias = nn.Parameter(scale * (bias - batchnorm.running_mean) + shift)
    return merged


def _canonical_layers(model: nn.Sequential) -> list[tuple[str, nn.Module]]:
    """The layers of a Sequential with every BatchNorm merged into the Linear / Conv2d before it."""
    layers: list[tuple[str, nn.Module]] = []
    for name, module in model.named_children():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if not layers or not isinstance(layers[-1][1], (nn.Linear, nn.Conv2d)):
                raise ValueError(f"layer_relevances merges each BatchNorm into the Linear / Conv2d before it; {name} "
                                 "follows no such layer: use lrp(), which leaves it as a pass-through")
            prev_name, prev = layers.pop()
            layers.append((f"{prev_name}+{name}", merge_batchnorm(prev, module)))
        else:
            layers.append((name, module))
    return layers


_PASS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Dropout, nn.Identity,
         nn.Flatten)


def layer_relevances(model: nn.Module, x: torch.Tensor, target=None, *, composite: str = "epsilon_plus_flat",
                     epsilon: float = 1e-6, gamma: float = 0.25) -> list[tuple[str, torch.Tensor]]:
    """LRP of an ``nn.Sequential`` by hand: [(layer name, relevance at that layer's input)], output first.

    The first entry is ("output", relevance of the logits: the target logit, zeros elsewhere); the
    last is the relevance of the input, shaped like ``x``. Each entry's sum shows how much relevance
    survives each layer (conservation: it changes only by what biases and eps absorb). Rules per
    ``composite`` (not "epsilon_gamma_box" / "epsilon_alpha2_beta1": use :func:`lrp`). Layers:
    Linear, Conv2d, BatchNorm (merged), activations (pass), Flatten, Dropout, AvgPool2d /
    AdaptiveAvgPool2d (LRP-0), MaxPool2d (winner takes all). Chapter 08.
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"layer_relevances walks an nn.Sequential layer by layer; got {type(model).__name__}: use lrp()")
    check_choice("composite", composite, ("epsilon", "epsilon_plus", "epsilon_plus_flat"))
    first_rule, conv_rule, dense_rule = COMPOSITES[composite]
    x = model_input(model, x, image=False)
    layers = _canonical_layers(model)
    activations = [x]
    with torch.no_grad():
        for _, layer in layers:
            activations.append(layer(activations[-1]))
    logits = activations[-1]
    targets = resolve_targets(target, logits)
    relevance = torch.zeros_like(logits).scatter_(1, targets.view(-1, 1), logits.gather(1, targets.view(-1, 1)))
    out = [("output", relevance)]
    first_index = next(i for i, (_, layer) in enumerate(layers) if isinstance(layer, (nn.Linear, nn.Conv2d)))
    for i in range(len(layers) - 1, -1, -1):
        name, layer = layers[i]
        a = activations[i]
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            rule = first_rule if i == first_index else conv_rule if isinstance(layer, nn.Conv2d) else dense_rule
            kwargs = {"epsilon": epsilon} if rule == "epsilon" else {"gamma": gamma} if rule == "gamma" else {}
            relevance = _RULE_FUNCTIONS[rule](layer, a, relevance, **kwargs)
        elif isinstance(layer, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            leaf = a.detach().requires_grad_(True)
            with torch.enable_grad():
                z = layer(leaf)
                (grad,) = torch.autograd.grad(z, leaf, relevance / _stabilize(z.detach(), 1e-6))
            relevance = a * grad
        elif isinstance(layer, nn.MaxPool2d):
            leaf = a.detach().requires_grad_(True)
            with torch.enable_grad():
                (relevance,) = torch.autograd.grad(layer(leaf), leaf, relevance)
        elif isinstance(layer, _PASS):
            relevance = relevance.reshape(a.shape)
        else:
            raise TypeError(f"layer_relevances has no rule for {type(layer).__name__} ({name}); use lrp()")
        out.append((name, relevance.detach()))
    return out


def _composite(name: str, epsilon: float, gamma: float, low, high, model: nn.Module):
    """The zennit composite for ``name``, with BatchNorm canonisation (and zennit's ResNet / VGG canonizers)."""
    from zennit import composites as zc
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    from torchvision.models.resnet import BasicBlock, Bottleneck

    if any(isinstance(m, (BasicBlock, Bottleneck)) for m in model.modules()):  # a ResNet, or a model of its blocks
        canonizers = [ResNetCanonizer()]
    else:
        canonizers = [VGGCanonizer()] if type(model).__name__ == "VGG" else [SequentialMergeBatchNorm()]
    if name == "epsilon":
        from zennit.rules import Epsilon

        from zennit.types import Convolution, Linear

        layer_map = zc.layer_map_base() + [(Convolution, Epsilon(epsilon=epsilon)), (Linear, Epsilon(epsilon=epsilon))]
        return zc.LayerMapComposite(layer_map=layer_map, canonizers=canonizers)
    if name == "epsilon_plus":
        return zc.EpsilonPlus(epsilon=epsilon, canonizers=canonizers)
    if name == "epsilon_plus_flat":
        return zc.EpsilonPlusFlat(epsilon=epsilon, canonizers=canonizers)
    if name == "epsilon_alpha2_beta1":
        return zc.EpsilonAlpha2Beta1(epsilon=epsilon, canonizers=canonizers)
    return zc.EpsilonGammaBox(low=low, high=high, epsilon=epsilon, gamma=gamma, canonizers=canonizers)


@explainer
def lrp(model: nn.Module, x: torch.Tensor, target=None, *, composite: str = "epsilon_plus_flat", epsilon: float = 1e-6,
        gamma: float = 0.25, low=None, high=None, batch_size: int | None = None) -> torch.Tensor:
    """LRP relevance of the target logit, shaped like ``x`` (B, ...). Chapter 08.

    The output relevance is the target logit (zeros for the other classes), as Captum's LRP does.
    Conservation is not exact: biases and the stabiliser absorb relevance (chapter 08's ResNet,
    canonised: 0.53-0.60 of the logit), the epsilon rule amplifies it where pre-activations are
    near zero, and rules that do not fit a layer create it (:func:`unfitting_modules`; the residual
    additions of an uncanonised ResNet: 8-9x the logit; Hardswish / squeeze-excitation in
    MobileNetV3: 158x-35,000x). Every call checks that the input relevance does not exceed the logit
    by more than 5 % (``relevance.conservation``) and warns, naming the cause, when it does. The logit (and the top class
    when ``target`` is None) is read from the one forward pass LRP makes, with BatchNorm merged:
    zennit's merged BN keeps its eps, which moves the logit by about 5e-6 relative per BN.

    ``composite``: one of :data:`COMPOSITES` (rules per layer type, see the module docstring).
    "epsilon_gamma_box" needs ``low`` and ``high``: the smallest and largest input values (numbers
    or tensors like one sample), e.g. the normalised images of black and white pixels. BatchNorm
    layers are merged into the layer before them for the call and restored afterwards (zennit
    canonizers; torchvision VGGs, and ResNets or any model built of torchvision's ``BasicBlock`` /
    ``Bottleneck``, get zennit's own, which also make the residual additions explicit). Hooks are
    removed also when the model raises. ``batch_size``: samples per pass (None: from the memory
    budget).
    """
    check_choice("composite", composite, tuple(COMPOSITES))
    eps = check_number("epsilon", epsilon, minimum=0.0)
    g = check_number("gamma", gamma, minimum=0.0)
    x = model_input(model, x, image=False)
    if composite == "epsilon_gamma_box":
        if low is None or high is None:
            raise ValueError("composite 'epsilon_gamma_box' needs low= and high=, the smallest and largest input values "
                             "(e.g. the normalised black and white images); or use 'epsilon_plus_flat'")
        low = torch.as_tensor(low, dtype=x.dtype, device=x.device).expand(x.shape[1:])
        high = torch.as_tensor(high, dtype=x.dtype, device=x.device).expand(x.shape[1:])
        if has_values(low) and (low > high).any():
            raise ValueError("low must not exceed high anywhere: low and high are the smallest and largest input values "
                             "(e.g. the normalised black and white images); were they swapped?")
    out = torch.empty_like(x)
    logit = torch.empty(len(x), dtype=torch.float64, device=x.device)
    # one composite per chunk size: z-box needs low / high shaped like the chunk
    state, memo = {}, {}

    def run(items):
        n = items.stop - items.start
        if n not in state:
            state[n] = _composite(composite, eps, g, None if low is None else low.expand(n, *x.shape[1:]),
                                  None if high is None else high.expand(n, *x.shape[1:]), model)
        inputs = x[items].detach().requires_grad_(True)
        with state[n].context(model) as modified, torch.enable_grad():
            logits = run_model(modified, inputs)  # the rules change the backward pass only
            t = chunk_targets(target, logits, items, len(x), memo).view(-1, 1)
            grad_out = torch.zeros_like(logits).scatter_(1, t, logits.detach().gather(1, t))
            (relevance,) = torch.autograd.grad(logits, inputs, grad_out)
        return relevance, grad_out.sum(1).double()

    for items, (relevance, value) in batched(len(x), run, model=model, batch_size=batch_size, grad=True, desc="LRP",
                                             item_bytes=x[0].nbytes):
        out[items], logit[items] = relevance, value
    return check_conservation(out, out.flatten(1).double().sum(1), logit, method="lrp", property="conservation",
                              bound="at_most", causes=_causes(model), unsupported=unfitting_modules(model),
                              stacklevel=4)


#: Leaf modules LRP's rules fit: the linear layers get the composite's rules, BatchNorm is merged, pooling is
#: normalised, and the ReLU family is piecewise linear through zero, so relevance passes through it unchanged.
FITTING = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.AvgPool2d,
           nn.AdaptiveAvgPool2d, nn.MaxPool2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.Dropout, nn.Identity,
           nn.Flatten)


def unfitting_modules(model: nn.Module) -> list[str]:
    """Leaf modules the LRP rules do not fit, as "name (Type)". Chapter 08.

    zennit passes relevance unchanged through every activation, which conserves it only for the ReLU
    family (:data:`FITTING`); through Hardswish, SiLU, GELU, sigmoid gates (squeeze-excitation),
    LayerNorm or attention the input relevance can sum to many times the logit.
    """
    return leaf_modules_except(model, FITTING)


def _causes(model: nn.Module) -> str:
    unfit = unfitting_modules(model)
    if unfit:
        return (f"The rules do not fit {name_list(unfit)}: relevance passes through them unchanged, which "
                "creates relevance. LRP is defined for ReLU networks of linear layers; use a method without this "
                "limit (Integrated Gradients) for this model.")
    return ("Every module fits, so either the epsilon rule divides by pre-activations near zero (a logit near zero "
            "with large biases: raise epsilon), or relevance is created where forward computes something the hooks do "
            "not see: a residual addition (torchvision ResNets get zennit's ResNetCanonizer automatically; for other "
            "residual models write a canonizer), a product of activations (x * gate) or a function such as F.silu.")
