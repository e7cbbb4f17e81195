"""Checks of chapter 06's new graded tasks: removing the evidence (6.5), contrastive Grad-CAM, Occlusion,
Grad-CAM++ and text IG.

Each runs the learner's function on the fixed Grad-CAM case (:func:`xaicourse.testing.grad_cam_case`)
and compare it with a reference built here from plain PyTorch; the known mistakes are rebuilt from the
same numbers. Chapter 06.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import cam, ig, maps, testing
from ..targets import select
from ..numerics import safe_divide
from .core import CheckFailed, Mistake, ModelState, compare, expect_as_found, expect_returned, expect_unchanged, grader

__all__ = ["check_contrastive_grad_cam", "check_grad_cam_pp", "check_occlusion", "check_remove_evidence", "check_text_ig",
           "contrastive_grad_cam", "grad_cam_pp", "occlusion", "remove_evidence", "text_case", "text_ig"]


# --------------------------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------------------------
def _split_grads(model, layer, x, score):
    front, back = testing.split_at(model, layer)
    acts = front(x).detach().requires_grad_(True)
    (grads,) = torch.autograd.grad(score(back(acts)).sum(), acts)
    return acts.detach().double(), grads.double()


def _finish(weighted: torch.Tensor, size) -> torch.Tensor:
    cam = weighted.clamp(min=0)
    cam = F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    low = cam.amin(dim=(1, 2), keepdim=True)
    span = cam.amax(dim=(1, 2), keepdim=True) - low
    return safe_divide(cam - low, span)


def contrastive_grad_cam(model, layer, x, a, b) -> torch.Tensor:
    """Grad-CAM of the score y_a - y_b ("a rather than b"), (B, H, W) in [0, 1]. Chapter 06 (task A).

    ReLU(sum_k alpha_k A^k) with alpha_k the spatial mean of d(y_a - y_b)/dA^k, upsampled bilinearly
    to the input and min-max scaled per sample (0 where the map is flat)."""
    acts, grads = _split_grads(model, layer, x, lambda out: out[:, a] - out[:, b])
    return _finish((grads.mean(dim=(2, 3), keepdim=True) * acts).sum(1), x.shape[-2:]).float()


def occlusion(model, x, target, window: int, stride: int, fill: float = 0.0) -> torch.Tensor:
    """Occlusion map (B, H, W): for every pixel, the mean drop of the target logit over the square
    windows that cover it, each window set to ``fill`` in all channels (Zeiler & Fergus 2014; Captum's
    ``Occlusion`` with ``sliding_window_shapes=(C, window, window)``). Pixels no window covers get 0.
    Chapter 06 (task C)."""
    with torch.no_grad():
        targets = torch.as_tensor(target).expand(len(x)) if torch.as_tensor(target).ndim == 0 else torch.as_tensor(target)
        base = select(model(x), targets)
        total = torch.zeros(x.shape[0], *x.shape[-2:], dtype=torch.float64)
        count = torch.zeros(x.shape[-2:], dtype=torch.float64)
        height, width = x.shape[-2:]
        for top in range(0, height - window + 1, stride):
            for left in range(0, width - window + 1, stride):
                covered = x.clone()
                covered[..., top:top + window, left:left + window] = fill
                drop = (base - select(model(covered), targets)).double()
                total[:, top:top + window, left:left + window] += drop[:, None, None]
                count[top:top + window, left:left + window] += 1
    return (total / count.clamp(min=1)).float()


def remove_evidence(model, layer, x, target, top: float = 0.2) -> torch.Tensor:
    """Softmax probabilities (B, K) of ``model`` on ``x`` with the top ``top`` fraction of the pixels of
    ``target``'s Grad-CAM (:func:`xaicourse.maps.top_region`) set to 0 in every channel: for a normalised
    image, its dataset's mean colour. Chapter 06 (exercise 6.5)."""
    region = maps.top_region(cam.grad_cam(model, layer, x, target), top)
    with torch.no_grad():
        return model(x.masked_fill(region[:, None], 0.0)).softmax(-1)


def _pp_weights(acts, grads, *, factor: float = 2.0, total=True, relu=True, pooled=False) -> torch.Tensor:
    g2 = grads**2
    g3 = g2 * grads
    a_sum = acts.sum(dim=(2, 3), keepdim=True) if total else acts
    third = (acts * g3).sum(dim=(2, 3), keepdim=True) if pooled else a_sum * g3
    alpha = g2 / (factor * g2 + third + 1e-6)
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    return (alpha * (grads.clamp(min=0) if relu else grads)).sum(dim=(2, 3), keepdim=True)


def grad_cam_pp(model, layer, x, target, **variant) -> torch.Tensor:
    """Grad-CAM++ with the paper's closed form (exp of the logit, piecewise-linear network above the
    layer): alpha_ij = g^2 / (2 g^2 + sum_ab A_ab g^3), w_k = sum_ij alpha_ij ReLU(g_ij), map
    ReLU(sum_k w_k A^k) upsampled and min-max scaled, (B, H, W). Chapter 06 (task D)."""
    targets = torch.as_tensor(target).view(-1)
    acts, grads = _split_grads(model, layer, x, lambda out: select(out, targets.expand(len(out)) if len(targets) == 1
                                                                   else targets))
    return _finish((_pp_weights(acts, grads, **variant) * acts).sum(1), x.shape[-2:]).float()


# --------------------------------------------------------------------------------------------
# Exercise 6.5: does the evidence cause the decision? Remove it and measure
# --------------------------------------------------------------------------------------------
@grader
def check_remove_evidence(learner) -> str:
    """Grade ``remove_evidence(model, layer, x, target, top=0.2)`` -> (B, K) probabilities. Chapter 06.

    Graded for the class ranked second (so the predicted class's region is a different answer)."""
    model, layer, x, _ = testing.misclassification_case()
    with torch.no_grad():
        logits = model(x)
    second = int(logits[0].argsort(descending=True)[1])
    state = ModelState.of(model)
    original = x.clone()
    got = learner(model, layer, x, second, 0.2)
    expect_returned(got)
    expect_as_found(model, state)
    expect_unchanged("your function changed the image passed in (an in-place masked_fill_ or x[...] = 0): work on "
                     "a copy, x.masked_fill(mask, 0.0), so that the caller's image stays as it was", (x, original))
    region = maps.top_region(cam.grad_cam(model, layer, x, second), 0.2)[:, None]

    def run(image, probabilities=True):
        with torch.no_grad():
            out = model(image)
        return out.softmax(-1) if probabilities else out

    def first_channel():
        image = x.clone()
        image[:, :1][region] = 0.0
        return run(image)

    compare(got, remove_evidence(model, layer, x, second, 0.2), [
        Mistake("these are the probabilities of the untouched input: run the model again on the image with the "
                "region set to 0", logits.softmax(-1)),
        Mistake("you kept the region and removed everything else: set the top-20% pixels to 0 and keep the rest",
                lambda: run(x.masked_fill(~region, 0.0))),
        Mistake("you removed the region of the predicted class: use the Grad-CAM of `target`",
                lambda: remove_evidence(model, layer, x, int(logits[0].argmax()), 0.2)),
        Mistake("you removed the top 80%: the region is the top `top` fraction (xc.maps.top_region(cam, top))",
                lambda: remove_evidence(model, layer, x, second, 0.8)),
        Mistake("only the first channel was set to 0: a pixel is removed in every channel (mask shaped (B, 1, H, W))",
                first_channel),
        Mistake("these are logits: return the softmax probabilities", lambda: run(x.masked_fill(region, 0.0), False)),
    ], atol=1e-5, rtol=1e-4, otherwise="expected softmax(model(x')) where x' is x with the pixels of the top 20% of "
                                       "target's Grad-CAM (xc.cam.grad_cam, then xc.maps.top_region) set to 0 in "
                                       "every channel")
    other = learner(model, layer, x.clone(), second, 0.35)
    compare(other, remove_evidence(model, layer, x, second, 0.35), [
        Mistake("with top=0.35 you still removed the top 20%: pass `top` on to xc.maps.top_region(cam, top) instead of "
                "its default", lambda: remove_evidence(model, layer, x, second, 0.2)),
    ], atol=1e-5, rtol=1e-4, otherwise="with top=0.35 the answer differs: remove the top `top` fraction of the map")
    return ("the probabilities after removing the target's top-20% and top-35% Grad-CAM regions match (all channels, "
            "the target's own map, not the predicted class's); the model and the image are as found")


# --------------------------------------------------------------------------------------------
# Task A: contrastive Grad-CAM
# --------------------------------------------------------------------------------------------
@grader
def check_contrastive_grad_cam(learner) -> str:
    """Grade ``contrastive_grad_cam(model, layer, x, a, b)`` -> (B, H, W): Grad-CAM of y_a - y_b. Chapter 06."""
    model, layer, x, _ = testing.grad_cam_case()
    a, b = 0, 2
    state = ModelState.of(model)
    got = learner(model, layer, x.clone(), a, b)
    expect_returned(got)
    expect_as_found(model, state)
    acts, ga = _split_grads(model, layer, x, lambda out: out[:, a])
    _, gb = _split_grads(model, layer, x, lambda out: out[:, b])
    size = x.shape[-2:]
    cam_a = _finish((ga.mean(dim=(2, 3), keepdim=True) * acts).sum(1), size)
    cam_b = _finish((gb.mean(dim=(2, 3), keepdim=True) * acts).sum(1), size)
    compare(got, contrastive_grad_cam(model, layer, x, a, b).double(), [
        Mistake("this is the plain Grad-CAM of class a: the contrast is in the score, differentiate y_a - y_b",
                cam_a.float()),
        Mistake("this is the map of 'b rather than a': the score is y_a - y_b, not y_b - y_a",
                lambda: contrastive_grad_cam(model, layer, x, b, a)),
        Mistake("you subtracted two finished (ReLU'd and scaled) Grad-CAMs: subtract the scores (or the channel "
                "weights alpha_a - alpha_b) before the ReLU, then scale once", lambda: _finish(cam_a - cam_b, size)),
        Mistake("you subtracted the two finished Grad-CAMs without clipping: the difference of two scaled maps is "
                "not the map of the difference; weight the activations by alpha_a - alpha_b, then ReLU and scale",
                (cam_a - cam_b).float()),
    ], atol=1e-4, rtol=1e-3, otherwise="expected ReLU(sum_k alpha_k A^k) with alpha_k the spatial mean of "
                                       "d(y_a - y_b)/dA^k, upsampled bilinearly (align_corners=False) and min-max "
                                       "scaled per sample")
    return "the map of y_a - y_b matches, it differs from both classes' own maps, and the model is as found"


# --------------------------------------------------------------------------------------------
# Task C: Occlusion
# --------------------------------------------------------------------------------------------
@grader
def check_occlusion(learner) -> str:
    """Grade ``occlusion(model, x, target, window, stride)`` -> (B, H, W). Chapter 06.

    Also compared with Captum's ``Occlusion`` (baselines=0, all channels in one window)."""
    model, _, x, targets = testing.grad_cam_case()
    window, stride = 6, 3
    state = ModelState.of(model)
    got = learner(model, x.clone(), targets, window, stride)
    expect_returned(got)
    expect_as_found(model, state)
    want = occlusion(model, x, targets, window, stride).double()

    def summed():
        out = torch.zeros_like(want)
        height, width = x.shape[-2:]
        with torch.no_grad():
            base = select(model(x), torch.tensor(targets))
            for top in range(0, height - window + 1, stride):
                for left in range(0, width - window + 1, stride):
                    covered = x.clone()
                    covered[..., top:top + window, left:left + window] = 0
                    drop = base - select(model(covered), torch.tensor(targets))
                    out[:, top:top + window, left:left + window] += drop[:, None, None].double()
        return out

    def on_probabilities():
        wrapped = torch.nn.Sequential(model, torch.nn.Softmax(-1))
        return occlusion(wrapped, x, targets, window, stride)

    compare(got, want, [
        Mistake("the sign is flipped: occlusion attributes the DROP of the score, score(x) - score(occluded), so a "
                "window that supports the class is positive", -want),
        Mistake("each pixel got the sum over the windows that cover it: divide by how many windows cover it "
                "(overlapping windows with stride < window)", summed),
        Mistake("this is the drop of the softmax probability: explain the logit (the raw model output)",
                on_probabilities),
    ], atol=1e-4, rtol=1e-3, otherwise="expected, per pixel, the mean over the windows covering it of "
                                       "logit(x) - logit(x with the window set to 0 in all channels)")
    try:
        from captum.attr import Occlusion
    except ImportError:  # pragma: no cover (Captum is a course dependency)
        return "matches the reference; the model is as found"
    theirs = Occlusion(model).attribute(x, target=torch.tensor(targets), sliding_window_shapes=(3, window, window),
                                        strides=(3, stride, stride), baselines=0).sum(1)
    if not torch.allclose(theirs.double() / 3, want, atol=1e-4, rtol=1e-3):
        raise CheckFailed("internal: the reference disagrees with Captum's Occlusion; please report this")
    return "matches the reference and Captum's Occlusion (window 6, stride 3), and the model is as found"


# --------------------------------------------------------------------------------------------
# Task D: Grad-CAM++
# --------------------------------------------------------------------------------------------
@grader
def check_grad_cam_pp(learner) -> str:
    """Grade ``grad_cam_pp(model, layer, x, target)`` -> (B, H, W), one target per sample. Chapter 06.

    The reference equals :func:`xaicourse.cam.grad_cam_pp` (and pytorch-grad-cam's ``GradCAMPlusPlus``)."""
    model, layer, x, targets = testing.grad_cam_case()
    state = ModelState.of(model)
    got = learner(model, layer, x.clone(), targets)
    expect_returned(got)
    expect_as_found(model, state)
    acts, grads = _split_grads(model, layer, x, lambda out: select(out, torch.tensor(targets)))
    size = x.shape[-2:]
    compare(got, grad_cam_pp(model, layer, x, targets).double(), [
        Mistake("this is plain Grad-CAM: Grad-CAM++ weighs each position's positive gradient by alpha_ij before "
                "summing, w_k = sum_ij alpha_ij ReLU(g_ij)",
                lambda: _finish((grads.mean(dim=(2, 3), keepdim=True) * acts).sum(1), size)),
        Mistake("the weights use the gradients with their sign: w_k = sum_ij alpha_ij ReLU(g_ij), clip the gradients "
                "at 0 (only positive evidence counts)", lambda: _finish((_pp_weights(acts, grads, relu=False) * acts).sum(1), size)),
        Mistake("the denominator of alpha is 2 g^2 + (sum_ab A_ab) g^3: the factor 2 is missing",
                lambda: _finish((_pp_weights(acts, grads, factor=1.0) * acts).sum(1), size)),
        Mistake("the denominator uses A_ij at each position; the closed form has the sum of A^k over all positions, "
                "sum_ab A_ab, the same for every position of a channel",
                lambda: _finish((_pp_weights(acts, grads, total=False) * acts).sum(1), size)),
        Mistake("the denominator sums A_ab g_ab^3 over the positions (the source chapter's code does this); the closed "
                "form multiplies the channel's total activation sum_ab A_ab by g_ij^3 at each position",
                lambda: _finish((_pp_weights(acts, grads, pooled=True) * acts).sum(1), size)),
    ], atol=1e-4, rtol=1e-3, otherwise="expected ReLU(sum_k w_k A^k) with w_k = sum_ij alpha_ij ReLU(g_ij) and "
                                       "alpha_ij = g_ij^2 / (2 g_ij^2 + sum_ab A_ab g_ij^3) (0 where g_ij = 0), "
                                       "upsampled bilinearly and min-max scaled per sample")
    return "the closed-form alpha, the positive-gradient weights and the scaling match; the model is as found"


# --------------------------------------------------------------------------------------------
# Task E: Integrated Gradients for text, over the word embeddings
# --------------------------------------------------------------------------------------------
class _TinyTextHead(nn.Module):
    """(1, T, D) word vectors -> (1, 2) logits: tanh, mean over the tokens, a linear layer."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.linear = linear

    def forward(self, vectors):
        return self.linear(torch.tanh(vectors).mean(dim=1))


def text_case():
    """A fixed 12-word embedding (D = 5), its two-class head, a sentence [CLS] w w w w [SEP] (ids 1 5 7 3 9 2,
    T = 6, so tokens and embedding values cannot be confused) and its [PAD] baseline (ids 1 0 0 0 0 2).
    Chapter 06 (task E)."""
    g = torch.Generator().manual_seed(3)
    embedding, linear = nn.Embedding(12, 5), nn.Linear(5, 2)
    with torch.no_grad():
        embedding.weight.copy_(torch.randn(12, 5, generator=g))
        linear.weight.copy_(torch.randn(2, 5, generator=g))
        linear.bias.zero_()
    return embedding.eval(), _TinyTextHead(linear).eval(), torch.tensor([[1, 5, 7, 3, 9, 2]]), torch.tensor([[1, 0, 0, 0, 0, 2]])


def text_ig(embedding, head, ids, baseline_ids, target, n_steps) -> torch.Tensor:
    """Per-token IG (T,) of ``head``'s ``target`` logit over the word vectors, from embedding(baseline_ids)
    to embedding(ids), Gauss-Legendre with ``n_steps``, summed over the embedding dimension. Chapter 06 (task E)."""
    with torch.no_grad():
        vectors, reference = embedding(ids), embedding(baseline_ids)
    return ig.integrated_gradients(head, vectors, target, baseline=reference, n_steps=n_steps)[0].sum(-1)


@grader
def check_text_ig(learner) -> str:
    """Grade ``text_ig(embedding, head, ids, baseline_ids, target, n_steps)`` -> (T,). Chapter 06."""
    embedding, head, ids, baseline_ids = text_case()
    target, n_steps = 1, 32
    state = ModelState.of(head)
    got = learner(embedding, head, ids.clone(), baseline_ids.clone(), target, n_steps)
    expect_returned(got)
    expect_as_found(head, state)
    with torch.no_grad():
        vectors, reference = embedding(ids), embedding(baseline_ids)
        change = float(head(vectors)[0, target] - head(reference)[0, target])

    def gradient_times_difference():
        with torch.enable_grad():
            v = vectors.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(head(v)[0, target], v)
        return (grad * (vectors - reference))[0].sum(-1)

    want = text_ig(embedding, head, ids, baseline_ids, target, n_steps)
    compare(got, want, [
        Mistake("this is IG from all-zero word vectors (the source chapter's baseline): start the path at the "
                "embeddings of baseline_ids", lambda: ig.integrated_gradients(head, vectors, target, n_steps=n_steps,
                                                                             baseline=torch.zeros_like(vectors))[0].sum(-1)),
        Mistake("this is gradient x (x - baseline) at the sentence only: integrate the gradient along the path from "
                "the baseline's vectors to the sentence's", gradient_times_difference),
        Mistake("the signs are gone: sum the attributions over the embedding dimension as they are, not their absolute "
                "values", lambda: ig.integrated_gradients(head, vectors, target, baseline=reference,
                                                          n_steps=n_steps)[0].abs().sum(-1)),
        Mistake("these attributions explain the softmax probability: explain the logit (the head's raw output)",
                lambda: ig.integrated_gradients(nn.Sequential(head, nn.Softmax(-1)).eval(), vectors, target, baseline=reference,
                                                n_steps=n_steps)[0].sum(-1)),
    ], atol=1e-4, rtol=1e-3, shape_hint="one attribution per token: sum over the embedding dimension, keep the tokens",
       otherwise=lambda g: f"expected per-token IG summing to the logit change {change:.4f} (yours sum to "
                           f"{float(g.sum()):.4f}): interpolate embedding(baseline_ids) -> embedding(ids), "
                           "Gauss-Legendre, and sum over the embedding dimension")
    return (f"per-token attributions match and add up to the logit change {change:.3f}; [CLS]/[SEP], equal in "
            "sentence and baseline, get 0")
