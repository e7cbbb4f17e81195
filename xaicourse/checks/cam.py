"""Checks of the Grad-CAM exercises: Grad-CAM with your own hooks (chapter 02) and the resolution of a
layer's grid (chapter 06, exercise 1).

The reference is :func:`xaicourse.cam.grad_cam`; the known mistakes are rebuilt here from the
layer's real activations A and gradients G of the fixed case (:func:`xaicourse.testing.grad_cam_case`),
each post-processed the right way unless the mistake is in the post-processing itself.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import cam, hooks, testing
from ..numerics import safe_divide
from ..targets import select
from .core import (CheckFailed, Mistake, ModelState, as_answer, compare, expect, expect_as_found, expect_returned,
                   expect_unchanged, grader)

__all__ = ["check_grad_cam", "check_map_resolution"]

_WEIGHTS = ("Weights: alpha_k = mean of dS/dA^k over the h x w positions of each sample (grads.mean(dim=(2, 3))); "
            "map: ReLU(sum_k alpha_k A^k)")


# --------------------------------------------------------------------------------------------
# Chapter 06, exercise 1: the layer's own grid
# --------------------------------------------------------------------------------------------
def _pair(got) -> torch.Tensor:
    expect_returned(got)
    pair = isinstance(got, (tuple, list, torch.Size)) or (isinstance(got, torch.Tensor) and got.ndim == 1)
    expect(pair and len(got) == 2, f"return a pair (height, width), got {got!r}"[:200])
    try:
        return torch.tensor([float(v) for v in got])
    except Exception:  # noqa: BLE001 (strings, meta tensors, ...: the learner is told what to return)
        raise CheckFailed(f"return a pair of two numbers (height, width), got {got!r}"[:200]) from None


@grader
def check_map_resolution(native_resolution) -> str:
    """Grade ``native_resolution(model, layer, x) -> (h, w)``: the spatial size of ``layer``'s output. Chapter 06.

    That grid is all Grad-CAM knows before it upsamples (exercise 1); a gradient map has the input's size.
    """
    model, layer, x, _ = testing.resolution_case()
    state = ModelState.of(model)
    got = _pair(native_resolution(model, layer, x))
    expect_as_found(model, state)
    compare(got, torch.tensor([8.0, 12.0]), [
        Mistake("(32, 48) is the input's size: the CAM is upsampled to it, but it is computed on the layer's own grid: "
                "record the layer's output (xc.hooks.record_layer) and read its shape", [32.0, 48.0]),
        Mistake("height and width are swapped: a feature map is (batch, channels, height, width)", [12.0, 8.0]),
    ], atol=0, otherwise=lambda g: f"expected the layer's grid (8, 12) for a 32 x 48 input, got "
                                   f"{tuple(int(v) for v in g)}: take the last two dimensions of the activations, not "
                                   "the batch or channel dimension")
    model, layer, _, _ = testing.misclassification_case()       # another model, whose layer keeps the input's size
    x = torch.rand(1, 3, 12, 20, generator=torch.Generator().manual_seed(1))
    with hooks.record_layer(model, layer) as rec, torch.no_grad():
        model(x)
    grid = [float(v) for v in rec.activations.shape[-2:]]
    state = ModelState.of(model)
    got = _pair(native_resolution(model, layer, x))
    expect_as_found(model, state)
    compare(got, torch.tensor(grid), [
        Mistake("you divided the input's size by a fixed factor: the factor depends on the model (its strides up to "
                "the layer); record the layer's output and read its shape", [3.0, 5.0]),
    ], atol=0, otherwise=lambda g: f"on a second model a 12 x 20 input gives a {int(grid[0])} x {int(grid[1])} grid at "
                                   f"the layer, you returned {tuple(int(v) for v in g)}: read the recorded activations' "
                                   "last two dimensions")
    return (f"a 32 x 48 input gives an 8 x 12 grid at the first model's layer and a 12 x 20 input a "
            f"{int(grid[0])} x {int(grid[1])} grid at the second's, and no hook was left behind")


# --------------------------------------------------------------------------------------------
# Chapter 02: Grad-CAM from recorded activations and gradients
# --------------------------------------------------------------------------------------------
def _minmax(maps: torch.Tensor) -> torch.Tensor:
    low = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - low
    return safe_divide(maps - low, span)


def _max_only(maps: torch.Tensor) -> torch.Tensor:
    return safe_divide(maps, maps.amax(dim=(1, 2), keepdim=True))


def _resize(maps: torch.Tensor, size, mode: str = "bilinear", align_corners: bool | None = False) -> torch.Tensor:
    align_corners = None if mode == "nearest" else align_corners
    return F.interpolate(maps[:, None], size=size, mode=mode, align_corners=align_corners)[:, 0]


def _activations_and_gradients(model, layer, x, targets) -> tuple[torch.Tensor, torch.Tensor]:
    """A and dS/dA at ``layer``, computed on the split model (no hooks, no .grad on the parameters)."""
    front, back = testing.split_at(model, layer)
    acts = front(x).detach().requires_grad_(True)
    (grads,) = torch.autograd.grad(select(back(acts), torch.tensor(targets)).sum(), acts)
    return acts.detach().double(), grads.double()


def _grad_cam_mistakes(model, layer, x, targets) -> list[Mistake]:
    acts, grads = _activations_and_gradients(model, layer, x, targets)
    size = x.shape[-2:]
    relu_map = (grads.mean(dim=(2, 3), keepdim=True) * acts).sum(dim=1).clamp(min=0)

    def weighted(weights, relu=True):
        raw = (weights * acts).sum(dim=1)
        return lambda: _minmax(_resize(raw.clamp(min=0) if relu else raw, size))

    def upsampled(**how):
        return lambda: _minmax(_resize(relu_map, size, **how))

    upsampling = "upsample with F.interpolate(cam[:, None], size=x.shape[-2:], mode='bilinear', align_corners=False)"
    return [
        Mistake("got a channel dimension of size 1: sum the weighted maps over the channel dimension (dim=1) without "
                "keepdim, or squeeze it, to return (batch, height, width)", when=lambda g: g.ndim == 4 and g.shape[1] == 1),
        Mistake(f"the map is still on the layer's {tuple(acts.shape[-2:])} grid: upsample it to the input's "
                f"{tuple(size)}: {upsampling}", when=lambda g: g.shape[-2:] == acts.shape[-2:]),
        Mistake("the map has NaN or inf: guard the division when a map is all zeros",
                when=lambda g: not torch.isfinite(g).all()),
        *[Mistake(f"your map matches Grad-CAM with this mistake: {name}. {_WEIGHTS}", answer) for name, answer in [
            ("no ReLU", weighted(grads.mean(dim=(2, 3), keepdim=True), relu=False)),
            ("weights averaged over the channels instead of over the positions", weighted(grads.mean(dim=1, keepdim=True))),
            ("weights averaged over the batch too", weighted(grads.mean(dim=(0, 2, 3), keepdim=True))),
            ("gradient instead of weighted activations", lambda: _minmax(_resize(grads.sum(dim=1).clamp(min=0), size))),
        ]],
        Mistake("you divided each map by its maximum only, so its minimum stays above 0: min-max scale it, "
                "(cam - min) / (max - min) per sample", lambda: _max_only(_resize(relu_map, size))),
        Mistake(f"nearest-neighbour upsampling (blocky maps): {upsampling}", upsampled(mode="nearest")),
        Mistake(f"align_corners=True moves the grid by half a cell: {upsampling}", upsampled(align_corners=True)),
        Mistake("scale each map to [0, 1]: subtract its minimum, then divide by its maximum (skip all-zero maps)",
                when=lambda g: bool(g.amin() < -1e-6) or bool((g.amax(dim=(1, 2)) - 1).abs().max() > 1e-4)),
    ]


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """The smallest per-sample Pearson correlation of two stacks of maps."""
    a, b = (t.flatten(1) - t.flatten(1).mean(1, keepdim=True) for t in (a, b))
    return float(safe_divide((a * b).sum(1), a.norm(dim=1) * b.norm(dim=1)).min())


def _grad_cam_otherwise(want: torch.Tensor):
    def hint(got: torch.Tensor) -> str:
        if torch.allclose(got, want, atol=0.1) or _correlation(got, want) > 0.97:  # right shape, wrong post-processing
            return ("close, but not the same values: upsample with mode='bilinear', align_corners=False, and min-max "
                    "scale each map after upsampling")
        return ("the map differs from the reference: backpropagate each sample's own target score "
                "(logits[range(B), targets].sum()), record the layer's output and its gradient, and weigh the "
                "activations by the spatially averaged gradients")
    return hint


@grader
def check_grad_cam(grad_cam) -> str:
    """Grade ``grad_cam(model, layer, x, target) -> (B, H, W)``: Grad-CAM with hooks you register yourself.
    Chapter 02.

    ``target`` is one class index per sample; the map is upsampled (bilinear) to the input size and
    min-max scaled to [0, 1] per sample, as ``xc.cam.grad_cam`` does.
    """
    model, layer, x, targets = testing.grad_cam_case()
    x_before, state = x.clone(), ModelState.of(model)
    got = grad_cam(model, layer, x, targets)
    expect_unchanged("your function changed the input tensor x (its values, requires_grad or .grad): work on "
                     "x.detach().clone()", (x, x_before))
    expect_as_found(model, state)
    want = as_answer(cam.grad_cam(model, layer, x, targets), x)
    compare(got, want, _grad_cam_mistakes(model, layer, x, targets), rtol=0, atol=1e-4,
            shape_hint="return (batch, height, width of the input)", otherwise=_grad_cam_otherwise(want))
    return "matches xc.cam.grad_cam on a 2-image batch with per-sample targets, and no hooks or .grad were left"
