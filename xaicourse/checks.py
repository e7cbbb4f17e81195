"""Graders for the exercises: ``check_*(your_function)``.

Each check builds a small fixed case, compares your function with the package's reference, and
prints one line when it passes. An untouched stub is reported as "not implemented yet" (no
traceback); a wrong answer raises :class:`CheckFailed` with a hint aimed at the likely mistake.
Every check also verifies that no hooks were left on the model. Taught in chapter 00.
"""
from __future__ import annotations

import functools
import json
import os

import torch
from torch import nn

from .hooks import expect_no_hooks as _expect_no_hooks, hooks_left  # noqa: F401 (hooks_left: re-exported)


class CheckFailed(AssertionError):
    """Your function ran but its answer is wrong; the message says what to look at."""


def expect(condition: bool, hint: str) -> None:
    if not condition:
        raise CheckFailed(hint)


RESULTS_ENV = "XAICOURSE_GRADE_FILE"


def record(check: str, status: str, message: str) -> None:
    """Append one outcome as a JSON line to the file named by $XAICOURSE_GRADE_FILE, if set.

    ``python -m xaicourse.notebooks grade`` sets it to collect every check a notebook runs.
    """
    path = os.environ.get(RESULTS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"check": check, "status": status, "message": message}) + "\n")


def grader(func):
    """Turn a check body into a check: stub -> "not implemented yet", pass -> one line, else raise.

    The body receives the learner's function and returns a short description of what passed.
    Returns True (passed) or False (not implemented yet). Each outcome is also recorded (see record).
    """
    @functools.wraps(func)
    def wrapper(learner_fn, *args, **kwargs):
        try:
            detail = func(learner_fn, *args, **kwargs)
        except NotImplementedError:
            print(f"[not implemented yet] {func.__name__}: write your solution in the exercise cell, run it, then run this check again.")
            record(func.__name__, "not attempted", "the stub still raises NotImplementedError")
            return False
        except Exception as err:
            record(func.__name__, "failed", str(err) if isinstance(err, CheckFailed) else f"{type(err).__name__}: {err}")
            raise
        print(f"[passed] {func.__name__}: {detail}")
        record(func.__name__, "passed", detail)
        return True

    return wrapper


def expect_no_hooks(model: nn.Module) -> None:
    _expect_no_hooks(model, error=CheckFailed)


# --------------------------------------------------------------------------------------------
# Chapter 00: the warm-up exercise
# --------------------------------------------------------------------------------------------
@grader
def check_softmax(softmax) -> str:
    """Grade ``softmax(logits) -> probabilities`` over the last dimension of a (B, C) tensor."""
    logits = torch.tensor([[2.0, 1.0, 0.1], [0.0, 0.0, 0.0]])
    got = softmax(logits)
    expect(isinstance(got, torch.Tensor), f"return a torch.Tensor, not {type(got).__name__}")
    expect(got.shape == logits.shape, f"the output should keep the input shape {tuple(logits.shape)}, got {tuple(got.shape)}")
    expect(torch.allclose(got.sum(dim=1), torch.ones(2), atol=1e-5),
           "each row should sum to 1: normalise by the sum over the classes (dim=-1), not over the batch or everything")
    expect(torch.allclose(got, logits.softmax(dim=1), atol=1e-5),
           "the values differ from torch.softmax: exponentiate first, then divide by the row sum")
    big = softmax(torch.tensor([[1000.0, 999.0]]))
    expect(torch.isfinite(big).all(), "logits of 1000 give inf/NaN: subtract each row's max before exp (it cancels out)")
    return "rows sum to 1, values match torch.softmax, and large logits are stable"


# --------------------------------------------------------------------------------------------
# Chapter 06: exercises (checks for the tasks that the chapter modules' authors do not grade)
# --------------------------------------------------------------------------------------------
def _leaves_model_as_found(model: nn.Module, x: torch.Tensor, x_before: torch.Tensor) -> None:
    expect_no_hooks(model)
    expect(torch.equal(x, x_before), "your function changed the input tensor in place: add noise to a copy (x + noise), never x += noise")
    expect(all(p.grad is None for p in model.parameters()),
           "the model's parameters now carry .grad: use torch.autograd.grad(score, x_noisy), or zero the grads you created")


@grader
def check_map_resolution(native_resolution) -> str:
    """Grade ``native_resolution(model, layer, x) -> (h, w)``: the spatial size of ``layer``'s output.

    That grid is all Grad-CAM knows before it upsamples (exercise 1); a gradient map has the input's size.
    """
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 2)).eval()
    layer = model[3]
    x = torch.rand(1, 3, 32, 48)
    got = native_resolution(model, layer, x)
    expect_no_hooks(model)
    expect(isinstance(got, (tuple, list, torch.Size)) and len(got) == 2,
           f"return a pair (height, width), got {got!r}")
    got = tuple(int(v) for v in got)
    expect(got != (32, 48), "(32, 48) is the input's size: the CAM is upsampled to it, but it is computed on the "
                            "layer's own grid: record the layer's output (xc.hooks.record_layer) and read its shape")
    expect(got != (12, 8), "height and width are swapped: a feature map is (batch, channels, height, width)")
    expect(got == (8, 12), f"expected the layer's grid (8, 12) for a 32 x 48 input, got {got}: take the last two "
                           "dimensions of the activations, not the batch or channel dimension")
    return "a 32 x 48 input gives an 8 x 12 grid at the layer, and no hook was left behind"


class _CubicScores(nn.Module):
    """Two class scores sum(w_k * x**3 + v_k * x): the gradient 3 w_k x**2 + v_k shows the noise's variance."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        sign = torch.randint(0, 2, (2, *shape), generator=g) * 2.0 - 1.0
        self.w = nn.Parameter(sign * (0.5 + 0.5 * torch.rand(2, *shape, generator=g)))
        self.v = nn.Parameter(torch.randn(2, *shape, generator=g))

    def forward(self, x):
        x = x.unsqueeze(1)
        return (self.w * x**3 + self.v * x).flatten(2).sum(2)


@grader
def check_smoothgrad(smoothgrad) -> str:
    """Grade ``smoothgrad(model, x, target, n_samples, noise_level, seed) -> Tensor`` (same shape as x).

    It must average the plain (signed) gradients of ``n_samples`` noisy copies x + N(0, sigma^2) with
    sigma = noise_level * (x.max() - x.min()) per sample, drawn from a generator seeded with ``seed``.
    """
    from . import saliency

    model = _CubicScores((3, 6, 6)).eval()
    x = torch.linspace(-2, 2, 2 * 3 * 6 * 6)[torch.randperm(216, generator=torch.Generator().manual_seed(1))]
    x = x.view(2, 3, 6, 6)
    x[:, 0, 0, 0], x[:, 0, 0, 1] = -2.0, 2.0          # each sample spans [-2, 2]: sigma = 0.15 * 4 = 0.6
    x_before, target = x.clone(), [0, 1]
    w, v = model.w.detach()[target], model.v.detach()[target]
    exact = saliency.smoothgrad(model, x, target, n_samples=1, noise_level=0.0)   # = 3 w x^2 + v

    got = smoothgrad(model, x, target, n_samples=8, noise_level=0.0, seed=0)
    _leaves_model_as_found(model, x, x_before)
    expect(isinstance(got, torch.Tensor), f"return a torch.Tensor, not {type(got).__name__}")
    expect(got.shape == x.shape, f"return one gradient per input value, shape {tuple(x.shape)}, got {tuple(got.shape)}")
    got = got.detach()
    close = lambda a, b: torch.allclose(a, b, rtol=1e-4, atol=1e-4)  # noqa: E731
    expect(not close(got, 8 * exact), "with no noise you return 8 x the gradient: divide the sum by n_samples (average, do not sum)")
    expect(not close(got, exact.abs()), "your map has no negative values: SmoothGrad averages the signed gradients; take abs() "
                                        "(if at all) after averaging, for display")
    other = 3 * model.w.detach()[[1, 0]] * x**2 + model.v.detach()[[1, 0]]
    expect(not close(got, other), "you explained the wrong class: each sample has its own target (target[i] for sample i)")
    expect(close(got, exact), "with noise_level=0 the result should equal the plain gradient d score[target] / d x "
                              "of each sample: check how you select the score and what you differentiate")

    got = smoothgrad(model, x, target, n_samples=400, noise_level=0.15, seed=0).detach()
    _leaves_model_as_found(model, x, x_before)
    residual = (got - v) / (3 * w) - x**2            # per value: mean of 2 x e + e^2 over the noisy copies
    sigma = residual.flatten(1).mean(1).clamp(min=0).sqrt()
    spread = (residual - residual.flatten(1).mean(1).view(-1, 1, 1, 1)).std()
    expect(bool((sigma > 0.01).all()), "the result does not depend on noise_level: add Gaussian noise to the input before "
                                       "the forward pass, and differentiate with respect to the noisy input")
    expect(bool(((sigma - 0.15).abs() > 0.05).any()),
           f"the noise has sigma = {sigma.mean():.2f} = noise_level itself, but these inputs span [-2, 2]: scale it "
           "to the input range, sigma = noise_level * (x.max() - x.min()) (here 0.6)")
    expect(bool(((sigma - 0.6).abs() < 0.15).all()),
           f"the noise should have sigma = noise_level * (x.max() - x.min()) = 0.6 here, measured {sigma.tolist()}")
    expect(spread < 0.3, "the map is as noisy as a single noisy gradient: average the gradients of all n_samples noisy copies")

    again = smoothgrad(model, x, target, n_samples=16, noise_level=0.15, seed=0).detach()
    expect(torch.allclose(again, smoothgrad(model, x, target, n_samples=16, noise_level=0.15, seed=0).detach()),
           "two calls with seed=0 give different maps: draw the noise from torch.Generator().manual_seed(seed) "
           "(pass generator= to torch.randn)")
    expect(not torch.allclose(again, smoothgrad(model, x, target, n_samples=16, noise_level=0.15, seed=1).detach()),
           "seed=0 and seed=1 give the same map: the seed must choose the noise")
    _leaves_model_as_found(model, x, x_before)
    return "zero noise gives the gradient, the noise is scaled to the input range, averaged, seeded, model left as found"


@grader
def check_shortcut_detector(share_in_region) -> str:
    """Grade ``share_in_region(attribution, region) -> (B,)``: the share of positive attribution mass in a region.

    ``attribution`` is (B, H, W) (one value per pixel), ``region`` a bool mask (B, H, W). Only positive
    attribution counts (evidence *for* the class); a sample with none gives 0. The reference is
    :func:`xaicourse.metrics.mask_energy`.
    """
    from .metrics import mask_energy

    g = torch.Generator().manual_seed(0)
    attribution = torch.randn(3, 6, 8, generator=g)
    attribution[1] = -attribution[1].abs()              # no evidence for the class at all -> 0
    attribution[2, :2, :2] += 3.0                        # a strong corner: a shortcut
    region = torch.zeros(3, 6, 8, dtype=torch.bool)
    region[:, :2, :2] = True
    expected = mask_energy(attribution, region)

    got = share_in_region(attribution.clone(), region.clone())
    expect(isinstance(got, torch.Tensor), f"return a torch.Tensor, not {type(got).__name__}")
    expect(got.numel() != 1, "you returned one number for the whole batch: sum over the pixels of each sample "
                             "(dims 1 and 2), not over the batch")
    expect(got.shape == (3,), f"return one share per sample, shape (3,), got {tuple(got.shape)}: sum over both pixel "
                              "dimensions (dim=(1, 2))")
    got = got.detach().float()
    expect(not bool(torch.isnan(got[1])), "a sample with no positive attribution gives NaN (0/0): return 0 there "
                                          "(guard the division, e.g. torch.where(total > 0, inside / total, 0))")
    close = lambda a, b: torch.allclose(a, b, atol=1e-4)  # noqa: E731

    def share(values, denominator):
        return (values * region).sum((1, 2)) / denominator

    positive = attribution.clamp(min=0)
    expect(not close(got, share(attribution, attribution.sum((1, 2)))),
           "you used the signed attribution: keep only the positive part (clamp(min=0)) before summing")
    expect(not close(got, share(attribution.abs(), attribution.abs().sum((1, 2)))),
           "you used abs(): negative attribution is evidence *against* the class; keep only the positive part (clamp(min=0))")
    expect(not close(got, share(positive, region.sum((1, 2)))),
           "you divided by the region's area: divide the positive mass inside by the positive mass of the whole map")
    expect(not close(got, share(positive, positive.sum())),
           "you divided by the positive mass of the whole batch: normalise each sample by its own total")
    expect(close(got, expected), f"expected shares {[round(v, 3) for v in expected.tolist()]}, got "
                                 f"{[round(v, 3) for v in got.tolist()]}: inside = (positive * region).sum((1, 2)), "
                                 "total = positive.sum((1, 2))")
    moved = region.clone()
    moved[0] = False
    moved[0, -2:, -2:] = True                            # each sample has its own region
    got = share_in_region(attribution.clone(), moved).detach().float()
    expect(close(got, mask_energy(attribution, moved)), "each sample has its own mask region[i]: multiply elementwise, "
                                                        "do not use sample 0's mask for the whole batch")
    return f"shares {[round(v, 2) for v in expected.tolist()]}: positive mass only, per sample, guarded against 0/0"


# --------------------------------------------------------------------------------------------
# Chapter 07: deletion AUC
# --------------------------------------------------------------------------------------------
def _deletion_case(seed: int):
    """A fixed linear classifier (3 classes) on a 2-channel 4x4 image, and a saliency with no ties."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).eval()
    with torch.no_grad():
        model[1].weight.copy_(0.3 * torch.randn(3, 32, generator=g))
        model[1].bias.zero_()
    x = torch.rand(1, 2, 4, 4, generator=g)
    saliency = torch.randperm(16, generator=g).float().view(4, 4)
    return model, x, saliency


def _deletion_logits(model, x, saliency, n_steps, channels=slice(None)):
    """Logits (n_steps + 1, classes) along the deletion path (pixels set to 0, most salient first)."""
    order = saliency.flatten().argsort(descending=True)
    images = x.repeat(n_steps + 1, 1, 1, 1).flatten(2)
    for k in range(n_steps + 1):
        images[k, channels, order[: k * order.numel() // n_steps]] = 0.0
    with torch.no_grad():
        return model(images.view(-1, *x.shape[1:]))


@grader
def check_deletion_auc(deletion_auc) -> str:
    """Grade ``deletion_auc(model, x, saliency, target, n_steps) -> float`` (chapter 07).

    x (1, C, H, W); saliency (H, W); pixels (all channels) are set to 0 from the most salient, the
    first k*N//n_steps at step k = 0..n_steps; the AUC of the target's probability over [0, 1].
    """
    from .metrics import deletion_auc as reference

    def trapezoid(scores, n_steps):
        return torch.trapezoid(scores, dx=1 / n_steps).item()

    for seed, target, n_steps in ((0, 2, 4), (1, 0, 16)):
        model, x, saliency = _deletion_case(seed)
        x_before, saliency_before = x.clone(), saliency.clone()
        got = deletion_auc(model, x, saliency, target, n_steps)
        expect_no_hooks(model)
        expect(torch.equal(x, x_before) and torch.equal(saliency, saliency_before),
               "your function changed x (or the saliency) in place: delete pixels in a copy (x.clone())")
        expect(isinstance(got, (float, int, torch.Tensor)) and torch.as_tensor(got).numel() == 1,
               f"return one number (a float), not {type(got).__name__}")
        got = float(got)
        want = reference(model, x, saliency[None], target, n_steps=n_steps, baseline=0.0).auc.item()
        if abs(got - want) < 1e-4:
            continue
        logits = _deletion_logits(model, x, saliency, n_steps)
        probs = logits.softmax(dim=1)
        mistakes = [
            (reference(model, x, -saliency[None], target, n_steps=n_steps, baseline=0.0).auc.item(),
             "you deleted the LEAST important pixels first: sort the saliency in descending order"),
            (want * n_steps, "the x axis should be the FRACTION of pixels deleted, from 0 to 1: use dx = 1 / n_steps, not 1"),
            (trapezoid(probs.max(dim=1).values, n_steps),
             "you followed the predicted class of each perturbed image: follow the given target class at every step"),
            (trapezoid(logits[:, target], n_steps), "you integrated logits: turn them into probabilities with softmax first"),
            (trapezoid(_deletion_logits(model, x, saliency, n_steps, channels=0).softmax(1)[:, target], n_steps),
             "you deleted the pixels in one channel only: set the pixel to 0 in every channel (x[:, :, rows, cols])"),
            (torch.trapezoid(probs[1:, target], dx=1 / n_steps).item(),
             "your curve starts after the first deletion: include the unperturbed image as the point at fraction 0"),
            (torch.trapezoid(probs[1:, target], dx=1 / (n_steps - 1)).item(),
             "your curve starts after the first deletion: include the unperturbed image as the point at fraction 0"),
            (probs[:, target].mean().item(), "you averaged the scores: integrate with the trapezoidal rule "
                                             "(torch.trapezoid or np.trapezoid with dx = 1 / n_steps)"),
        ]
        mistakes += [(trapezoid(probs[:, c], n_steps), f"you followed class {c}, not the target {target}: "
                      "read the probability of the target class at every step") for c in range(3) if c != target]
        for value, hint in mistakes:
            expect(abs(got - value) >= 1e-4, hint)
        expect(False, f"with target={target} and n_steps={n_steps} your AUC is {got:.4f}, expected {want:.4f}: "
                      "at step k set the first k*N//n_steps pixels (most salient first) to 0, read the target's "
                      "softmax probability, then integrate over the fractions 0, 1/n_steps, ..., 1")
    return "matches xc.metrics.deletion_auc on two cases (4 and 16 steps, targets that are not the top class)"


# --------------------------------------------------------------------------------------------
# Chapter 03: Integrated Gradients with the trapezoid rule
# --------------------------------------------------------------------------------------------
def _ig_models():
    """A linear model (completeness is exact for any rule) and a small tanh net (the rule shows)."""
    g = torch.Generator().manual_seed(0)
    linear = nn.Linear(6, 3).double().eval()
    tanh_net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double().eval()
    with torch.no_grad():
        for p in [*linear.parameters(), *tanh_net.parameters()]:
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = torch.randn(1, 6, generator=g, dtype=torch.float64)
    baseline = torch.randn(1, 6, generator=g, dtype=torch.float64)
    return linear, tanh_net, x, baseline


def _ig_variant(model, x, baseline, target, alphas, weights, *, probability=False):
    """A (possibly mistaken) IG: (x - baseline) times sum_k weights_k * grad(alpha_k)."""
    points = (baseline + torch.as_tensor(alphas, dtype=x.dtype).view(-1, 1) * (x - baseline)).requires_grad_(True)
    out = model(points)
    score = (out.softmax(-1) if probability else out)[:, target].sum()
    (grads,) = torch.autograd.grad(score, points)
    avg = (torch.as_tensor(weights, dtype=x.dtype).view(-1, 1) * grads).sum(0, keepdim=True)
    return (x - baseline) * avg


_SOFTMAX_HINT = ("the IG of the model's probabilities: explain the logit (the raw output), not softmax(output); the "
                 "softmax saturates and mixes in the other classes")


def _trapezoid(n):
    weights = torch.full((n,), 1.0 / (n - 1), dtype=torch.float64)
    weights[[0, -1]] /= 2
    return torch.linspace(0, 1, n, dtype=torch.float64), weights


def _ig_model_as_found(model):
    expect_no_hooks(model)
    expect(all(p.grad is None for p in model.parameters()),
           "the model's parameters now carry .grad: use torch.autograd.grad(score, path) instead of score.backward()")


@grader
def check_integrated_gradients(ig_trapezoid) -> str:
    """Grade ``ig_trapezoid(model, x, target, baseline, n_steps) -> Tensor`` shaped like ``x`` (1, D).

    The trapezoid rule on nodes alpha_k = k / (n_steps - 1), k = 0 .. n_steps - 1, with step
    1 / (n_steps - 1) and half weight at both ends; explain the target's logit (chapter 03).
    """
    from . import ig

    linear, tanh_net, x, baseline = _ig_models()
    x_before, b_before = x.clone(), baseline.clone()
    n, target = 5, 2

    got = ig_trapezoid(linear, x, target, baseline, n)
    _ig_model_as_found(linear)
    expect(torch.equal(x, x_before) and torch.equal(baseline, b_before), "your function changed x or baseline in place: build the path in new tensors")
    expect(isinstance(got, torch.Tensor), f"return a torch.Tensor, not {type(got).__name__}")
    expect(got.shape == x.shape, f"return one attribution per input feature, shape {tuple(x.shape)}, got {tuple(got.shape)}: "
                                 "average the path gradients over the steps (dimension 0), keeping the batch dimension")
    got = got.detach().double()
    close = lambda a, b: torch.allclose(a, b, rtol=1e-5, atol=1e-7)  # noqa: E731
    w = linear.weight.detach()[target].view(1, -1)
    exact = w * (x - baseline)
    with torch.no_grad():
        change = (linear(x) - linear(baseline))[0, target].item()
    expect(not close(got, w), "on a linear model you returned the gradient itself: the average gradient along the path "
                              "must be multiplied by (x - baseline), feature by feature")
    expect(not close(got, w * x), "you multiplied by x: IG multiplies the average gradient by (x - baseline), the path's length")
    expect(not close(got, -exact), "the attributions have the wrong sign: the path runs from the baseline (alpha = 0) to x "
                                   "(alpha = 1) and the factor is (x - baseline), not (baseline - x)")
    expect(not close(got, exact * (n - 1) / n),
           f"your attributions sum to (n-1)/n = {(n - 1) / n:.2f} of F(x) - F(baseline): with n_steps points on [0, 1] the "
           "step is 1 / (n_steps - 1), not 1 / n_steps (Captum's riemann_trapezoid has this shortfall)")
    expect(not close(got, _ig_variant(linear, x, baseline, target, *_trapezoid(n), probability=True)), f"your result equals {_SOFTMAX_HINT}")
    expect(abs(got.sum().item() - change) < 1e-5 * max(1.0, abs(change)),
           f"completeness fails on a linear model: your attributions sum to {got.sum().item():.4f} but "
           f"F(x) - F(baseline) = {change:.4f}; on a linear model any correct rule is exact")
    expect(close(got, exact), "the attributions sum correctly but differ from w * (x - baseline) feature by feature: "
                              "keep one attribution per feature (no sum or mean over features)")

    got = ig_trapezoid(tanh_net, x, target, baseline, n)
    _ig_model_as_found(tanh_net)
    got = got.detach().double()
    want = ig.integrated_gradients(tanh_net, x, target, baseline=baseline, n_steps=n, method="riemann_trapezoid")
    if not close(got, want):
        nodes, _ = _trapezoid(n)
        mistakes = {
            _SOFTMAX_HINT: dict(alphas=nodes, weights=_trapezoid(n)[1], probability=True),
            "a plain mean of the gradients at the n_steps points: the trapezoid rule gives the two end points half "
            "the weight of the others": dict(alphas=nodes, weights=torch.full((n,), 1.0 / n, dtype=torch.float64)),
            "a left Riemann sum (alpha = k / n_steps for k = 0 .. n_steps - 1): the trapezoid uses "
            "torch.linspace(0, 1, n_steps), both ends included": dict(alphas=torch.arange(n) / n, weights=torch.full((n,), 1.0 / n)),
            "a right Riemann sum (alpha = k / n_steps for k = 1 .. n_steps): the trapezoid uses "
            "torch.linspace(0, 1, n_steps), both ends included": dict(alphas=torch.arange(1, n + 1) / n, weights=torch.full((n,), 1.0 / n)),
        }
        for mistake, kwargs in mistakes.items():
            expect(not close(got, _ig_variant(tanh_net, x, baseline, target, **kwargs)), f"your result equals {mistake}")
        expect(False, "on a small tanh network your attributions differ from xc.ig.integrated_gradients(..., "
                      f"method='riemann_trapezoid', n_steps={n}): check the nodes (torch.linspace(0, 1, n_steps)), the "
                      "weights (1 / (n_steps - 1), halved at both ends) and which output you differentiate")
    return (f"exact on a linear model, and equal to the reference trapezoid IG on a tanh network ({n} steps), "
            "no hooks or .grad left behind")


# --------------------------------------------------------------------------------------------
# Chapter 04: attention rollout
# --------------------------------------------------------------------------------------------
def _rollout_by_hand(attentions, head_fusion, residual="half", renormalise=True, last_on_left=True, heads_dim=1):
    """Rollout with one step done right or wrong, to recognise the typical mistakes."""
    fused = attentions.mean(heads_dim) if head_fusion == "mean" else attentions.amax(heads_dim)
    eye = torch.eye(attentions.shape[-1])
    result = eye
    for a in fused:
        a = {"half": 0.5 * a + 0.5 * eye, "plus": a + eye, "none": a}[residual]
        if renormalise:
            a = a / a.sum(dim=-1, keepdim=True)
        result = a @ result if last_on_left else result @ a
    return result


@grader
def check_attention_rollout(rollout) -> str:
    """Grade ``rollout(attentions, head_fusion="mean") -> (T, T)`` for attentions (layers, heads, T, T).

    Expected: fuse the heads ("mean" or "max" over the heads axis), add the residual as
    0.5 * A + 0.5 * I, re-normalise each row to sum to 1, and multiply with the last layer on the
    left, R = A_L ... A_1 (as ``xaicourse.attention.rollout``).
    """
    from . import attention

    generator = torch.Generator().manual_seed(4)
    attentions = (2.0 * torch.randn(3, 4, 5, 5, generator=generator)).softmax(dim=-1)
    mistakes = {
        "the residual connection is missing: use 0.5 * A + 0.5 * I for each layer (the identity stands for the skip "
        "connection around attention)": dict(residual="none"),
        "you add the identity without halving or re-normalising: rows then sum to 2, 4, 8 ... over the layers; use "
        "0.5 * A + 0.5 * I and divide each row by its sum": dict(residual="plus", renormalise=False),
        "the rows are not re-normalised: after fusing heads with max (or min) and adding the identity, divide each "
        "row by its sum so that every layer stays a mixing matrix": dict(renormalise=False),
        "the multiplication order is reversed: later layers act on the result of earlier ones, so the product is "
        "R = A_L @ ... @ A_2 @ A_1 (result = a @ result, layer by layer)": dict(last_on_left=False),
        "the heads were fused over the wrong axis: attentions are (layers, heads, T, T), so fuse dim 1 (the heads), "
        "not dim 0 (the layers)": dict(heads_dim=0),
    }
    for head_fusion in ("mean", "max"):
        original = attentions.clone()
        got = rollout(attentions, head_fusion=head_fusion)
        expect(isinstance(got, torch.Tensor), f"return a torch.Tensor, not {type(got).__name__}")
        expect(torch.equal(attentions, original), "your function changed the attentions passed in: work on a copy "
                                                  "(avoid in-place operations such as += or fill_diagonal_)")
        expect(got.shape == (5, 5), f"for attentions of shape (3 layers, 4 heads, 5, 5) the rollout is (5, 5), got "
                                    f"{tuple(got.shape)}: fuse the heads axis (dim 1), then multiply the 3 layer matrices")
        got = got.detach().float()
        want = attention.rollout(attentions, head_fusion=head_fusion)
        if torch.allclose(got, want, atol=1e-5):
            continue
        for hint, wrong in mistakes.items():
            expect(not torch.allclose(got, _rollout_by_hand(attentions, head_fusion, **wrong), atol=1e-5),
                   f"with head_fusion={head_fusion!r}: {hint}")
        expect(torch.allclose(got.sum(dim=-1), torch.ones(5), atol=1e-4),
               f"with head_fusion={head_fusion!r} the rows of your rollout sum to {got.sum(dim=-1).tolist()}, not 1: "
               "re-normalise each layer's matrix after adding the identity")
        expect(False, f"with head_fusion={head_fusion!r} your rollout differs from the reference "
                      "xc.attention.rollout: fuse heads, 0.5 * A + 0.5 * I, re-normalise rows, R = A_L ... A_1")
    return "mean and max head fusion, residual identity, row re-normalisation and layer order all match the reference"


# --------------------------------------------------------------------------------------------
# Chapter 01: vanilla gradients
# --------------------------------------------------------------------------------------------
def _gradient_case():
    """A small fixed CNN (5 classes) in eval mode and a batch of two 3 x 8 x 8 inputs."""
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model.eval(), torch.randn(2, 3, 8, 8, generator=g)


def _gradient_of(model: nn.Module, x: torch.Tensor, score) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    return torch.autograd.grad(score(model(x)).sum(), x)[0]


@grader
def check_vanilla_gradient(vanilla_gradient) -> str:
    """Grade ``vanilla_gradient(model, x, target=None) -> Tensor (B, C, H, W)``: d logit[target] / d x.

    ``target`` is None (each sample's top class), an int, or one class per sample.
    """
    from . import saliency

    model, x = _gradient_case()
    x_before, targets = x.clone(), torch.tensor([1, 3])  # the top classes are [3, 3]
    want = saliency.vanilla_gradient(model, x, targets)
    got = vanilla_gradient(model, x, targets)
    expect(isinstance(got, torch.Tensor), f"return a torch.Tensor, not {type(got).__name__}")
    expect(got.shape == x.shape, f"return one gradient per input value, shape {tuple(x.shape)} (B, C, H, W), got "
                                 f"{tuple(got.shape)}: keep the batch and the channels (to_map reduces channels for display)")
    got = got.detach()
    close = lambda a, b: torch.allclose(a, b, rtol=1e-4, atol=1e-6)  # noqa: E731
    if not close(got, want):
        pick = lambda t: (lambda out: out.gather(1, t.view(-1, 1)))  # noqa: E731
        mistakes = {
            "the absolute value of the gradient: keep its sign (the source takes abs() only to display the map)": want.abs(),
            "the gradient of the softmax probability: differentiate the logit (the model's raw output), whose "
            "gradient does not depend on the other classes": _gradient_of(model, x, lambda out: pick(targets)(out.softmax(1))),
            "the gradient of the log-probability (a cross-entropy loss): differentiate the logit itself":
                _gradient_of(model, x, lambda out: pick(targets)(out.log_softmax(1))),
            "the gradient of the top class, ignoring target: use the target you were given": _gradient_of(
                model, x, lambda out: pick(out.argmax(1))(out)),
            "every sample explained for sample 0's target: take target[i] for sample i": _gradient_of(
                model, x, lambda out: pick(targets[:1].expand(2))(out)),
            "the gradient of the batch's mean score: .mean() divides each sample's gradient by the batch size; "
            "sum the selected scores instead": want / len(x),
        }
        for mistake, wrong in mistakes.items():
            expect(not close(got, wrong), f"your result is {mistake}")
        expect(False, "your gradients differ from xc.saliency.vanilla_gradient: select logits[i, target[i]] for each "
                      "sample, sum them, and differentiate with respect to x")

    expect_no_hooks(model)
    expect(not x.requires_grad and x.grad is None and torch.equal(x, x_before),
           "your function changed the caller's x (requires_grad, .grad or its values): work on a copy, "
           "x = x.detach().clone().requires_grad_(True)")
    expect(all(p.requires_grad for p in model.parameters()),
           "the model's parameters no longer require grad: if you switch requires_grad off, switch it back on in a "
           "finally block (you do not need to: torch.autograd.grad(score, x) only computes the input's gradient)")
    expect(all(p.grad is None for p in model.parameters()),
           "the model's parameters now carry .grad (left by .backward()): use torch.autograd.grad(score, x), which "
           "leaves the parameters alone, or set each p.grad back to None")
    expect(not model.training, "the model was in eval mode and is now in training mode: leave the mode as you found it")
    expect(close(vanilla_gradient(model, x, targets).detach(), want),
           "a second call gives a different answer: gradients accumulated in .grad; compute them on a fresh tensor each call")
    expect(close(vanilla_gradient(model, x, None).detach(), saliency.vanilla_gradient(model, x)),
           "with target=None explain each sample's top class: target = logits.argmax(dim=1)")
    expect(close(vanilla_gradient(model, x, 2).detach(), saliency.vanilla_gradient(model, x, 2)),
           "with an int target explain that class for every sample")
    return "signed logit gradients with one target per sample (list, None or int); model, hooks and x left as found"


# --------------------------------------------------------------------------------------------
# Chapter 05: the numbers behind a misclassification report (exercise 5)
# --------------------------------------------------------------------------------------------
def _misclassification_case():
    """A tiny seeded CNN with 6 classes, its Grad-CAM layer, and an input (1, 3, 16, 16)."""
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 6)).eval()
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    return model, model[2], x


@grader
def check_misclassification_stats(misclassification_stats) -> str:
    """Grade ``misclassification_stats(model, target_layer, x, true_class) -> dict`` against
    :func:`xaicourse.interpret.misclassification_stats` (keys predicted, predicted_probability,
    true_rank, true_probability, cam_overlap)."""
    from . import interpret

    model, layer, x = _misclassification_case()
    with torch.no_grad():
        logits = model(x)[0]
    ranking = logits.argsort(descending=True).tolist()
    for true_class in (ranking[2], ranking[0]):  # a class ranked third, then the predicted class itself
        expected = interpret.misclassification_stats(model, layer, x, true_class)
        got = misclassification_stats(model, layer, x.clone(), true_class)
        expect_no_hooks(model)
        expect(isinstance(got, dict), f"return a dict, not {type(got).__name__}")
        missing = sorted(set(expected) - set(got))
        expect(not missing, f"the dict is missing the key(s) {missing}")
        value = {key: float(got[key]) for key in expected}
        expect(value["predicted"] == expected["predicted"],
               f"predicted should be the top class {expected['predicted']}, got {got['predicted']}: logits.argmax()")
        for key in ("predicted_probability", "true_probability"):
            index = expected["predicted"] if key == "predicted_probability" else true_class
            expect(abs(value[key] - float(logits[index])) > 1e-4 or abs(expected[key] - float(logits[index])) < 1e-4,
                   f"{key} is the raw logit: turn the logits into probabilities with softmax first")
            expect(abs(value[key] - expected[key]) < 1e-4, f"{key} should be {expected[key]:.4f}, got {value[key]:.4f}")
        expect(value["true_rank"] != expected["true_rank"] - 1,
               "ranks start at 1 (the top class has rank 1): count the classes with a higher probability, then add 1")
        expect(value["true_rank"] == expected["true_rank"],
               f"true_rank should be {expected['true_rank']} for class {true_class}, got {got['true_rank']}")
        if expected["true_rank"] > 1:
            expect(value["cam_overlap"] < 0.999 or expected["cam_overlap"] > 0.999,
                   "cam_overlap is 1: you compared the predicted class's Grad-CAM with itself; "
                   "compute a second Grad-CAM with target=true_class")
        expect(abs(value["cam_overlap"] - expected["cam_overlap"]) < 1e-4,
               f"cam_overlap should be {expected['cam_overlap']:.3f}, got {value['cam_overlap']:.3f}: keep the top 20% "
               "pixels of each map (xc.interpret.top_region) and return |A and B| / |A or B| (intersection over union)")
    stats = interpret.misclassification_stats(model, layer, x, ranking[2])
    return (f"rank {stats['true_rank']}, p={stats['true_probability']:.3f}, Grad-CAM IoU {stats['cam_overlap']:.2f} "
            "for a class ranked third; rank 1 and IoU 1 for the predicted class; no hooks left")


# --------------------------------------------------------------------------------------------
# Chapter 02: Grad-CAM from recorded activations and gradients
# --------------------------------------------------------------------------------------------
def _grad_cam_case():
    """A seeded 3-class CNN whose layer ``model[2]`` outputs (2, 6, 6, 6) for a (2, 3, 24, 24) input."""
    gen = torch.Generator().manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, stride=2, padding=1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return model.eval(), model[2], torch.rand(2, 3, 24, 24, generator=gen), [0, 2]


def _grad_cam_variants(model, layer, x, targets) -> dict:
    """Maps made with the typical mistakes, from the layer's real activations A and gradients G."""
    from .cam import upsample
    from .hooks import record_layer
    from .targets import select

    with record_layer(model, layer) as rec:
        select(model(x), torch.tensor(targets)).sum().backward()
    model.zero_grad(set_to_none=True)
    acts, grads = rec.activations, rec.gradients
    size = x.shape[-2:]

    def cam(weights, relu=True):
        raw = (weights * acts).sum(dim=1)
        return upsample(raw.clamp(min=0) if relu else raw, size)

    return {
        "no ReLU": cam(grads.mean(dim=(2, 3), keepdim=True), relu=False),
        "weights averaged over the channels instead of over the positions": cam(grads.mean(dim=1, keepdim=True)),
        "weights averaged over the batch too": cam(grads.mean(dim=(0, 2, 3), keepdim=True)),
        "gradient instead of weighted activations": upsample(grads.sum(dim=1).clamp(min=0), size),
    }


@grader
def check_grad_cam(grad_cam) -> str:
    """Grade ``grad_cam(model, layer, x, target) -> (B, H, W)``: Grad-CAM with hooks you register yourself.

    ``target`` is one class index per sample; the map is upsampled (bilinear) to the input size and
    min-max scaled to [0, 1] per sample, as ``xc.cam.grad_cam`` does.
    """
    from .cam import grad_cam as reference

    model, layer, x, targets = _grad_cam_case()
    x_before = x.clone()
    got = grad_cam(model, layer, x, targets)
    _leaves_model_as_found(model, x, x_before)
    expect(isinstance(got, torch.Tensor), f"return a torch.Tensor, not {type(got).__name__}")
    got = got.detach().float()
    want = reference(model, layer, x, targets)
    if got.ndim == 4 and got.shape[1] == 1:
        raise CheckFailed(f"got shape {tuple(got.shape)}: sum the weighted maps over the channel dimension "
                          "(dim=1) without keepdim, or squeeze it, to return (batch, height, width)")
    if got.shape == (2, 6, 6):
        raise CheckFailed("the map is still on the layer's 6 x 6 grid: upsample it to the input's 24 x 24 with "
                          "F.interpolate(cam[:, None], size=x.shape[-2:], mode='bilinear', align_corners=False)")
    expect(got.shape == want.shape, f"expected shape {tuple(want.shape)} (batch, height, width of the input), got {tuple(got.shape)}")
    expect(torch.isfinite(got).all(), "the map has NaN or inf: guard the division when a map is all zeros")
    for mistake, variant in _grad_cam_variants(model, layer, x, targets).items():
        expect(not torch.allclose(got / got.amax(dim=(1, 2), keepdim=True).clamp(min=1e-12), variant, atol=1e-4),
               f"your map matches Grad-CAM with this mistake: {mistake}. Weights: alpha_k = mean of dS/dA^k over "
               "the h x w positions of each sample (grads.mean(dim=(2, 3))); map: ReLU(sum_k alpha_k A^k)")
    expect(got.min() >= -1e-6 and (got.amax(dim=(1, 2)) - 1).abs().max() < 1e-4,
           "scale each map to [0, 1]: subtract its minimum, then divide by its maximum (skip all-zero maps)")
    if not torch.allclose(got, want, atol=1e-4):
        expect(not torch.allclose(got, want, atol=0.1),
               "close, but not the same values: upsample with mode='bilinear', align_corners=False, and min-max "
               "scale each map after upsampling")
        raise CheckFailed("the map differs from the reference: backpropagate each sample's own target score "
                          "(logits[range(B), targets].sum()), record the layer's output and its gradient, and weigh the "
                          "activations by the spatially averaged gradients")
    return "matches xc.cam.grad_cam on a 2-image batch with per-sample targets, and no hooks or .grad were left"
