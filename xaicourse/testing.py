"""Tiny fixed-weight models and the fixed cases that the exercise checks and the tests share.

In the spirit of Captum's testing helpers (``captum.testing.helpers.basic_models``): each model is a
few lines whose weights come from a seeded generator, so a test can compute the expected value by
hand and a check's catalogue of typical mistakes stays tellable apart on its case. Building a model
here never moves the global random state (a learner's notebook draws the same numbers with or
without a check in between).

Plumbing: imports torch only. The checks of every chapter (``xaicourse.checks``) grade on these
cases; ``tests/test_checks*.py`` assert the properties that make each case tell mistakes apart.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import NamedTuple

import torch
from torch import nn

__all__ = [
    "CubicScores", "DeletionCase", "IGCase", "ModelCase", "attention_case", "deletion_case", "grad_cam_case",
    "gradient_case", "ig_case", "misclassification_case", "noise_probe_case", "region_case", "resolution_case",
    "seeded", "smoothgrad_case", "split_at", "tiny_cnn",
]


class ModelCase(NamedTuple):
    """A model in eval mode, the layer a method looks at (or None), an input batch and its targets."""
    model: nn.Module
    layer: nn.Module | None
    x: torch.Tensor
    target: list[int] | None


class DeletionCase(NamedTuple):
    """A model in eval mode, one image (1, C, H, W) and a saliency (H, W) to delete pixels by."""
    model: nn.Module
    x: torch.Tensor
    saliency: torch.Tensor


class IGCase(NamedTuple):
    """Two float64 models on 6 features (a linear one and a tanh net), one input (1, 6) and its baseline."""
    linear: nn.Module
    tanh_net: nn.Module
    x: torch.Tensor
    baseline: torch.Tensor


@contextmanager
def _private_rng():
    """PyTorch's default initialisation draws from the global generator: keep it as it was."""
    with torch.random.fork_rng(devices=[]):
        yield


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------
def seeded(model: nn.Module, generator: torch.Generator, scale: float = 0.5) -> nn.Module:
    """Overwrite every parameter of ``model`` with N(0, scale^2) draws from ``generator``, in the order of
    ``model.parameters()``; returns the model in eval mode. Chapter 00 (the checks) and the tests."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * scale)
    return model.eval()


def tiny_cnn(channels=(4, 6), classes: int = 5, *, strides=(1, 2), paddings=(1, 0),
             generator: torch.Generator | None = None, scale: float = 0.5) -> nn.Sequential:
    """Conv-ReLU-Conv-ReLU-global average pool-Linear on 3-channel images, in eval mode. Chapter 00.

    With ``generator`` the weights are :func:`seeded` from it (its state moves on, so the inputs can
    be drawn from it next); without, they keep PyTorch's default initialisation (seed it yourself).
    """
    with _private_rng() if generator is not None else nullcontext():
        model = nn.Sequential(nn.Conv2d(3, channels[0], 3, stride=strides[0], padding=paddings[0]), nn.ReLU(),
                              nn.Conv2d(channels[0], channels[1], 3, stride=strides[1], padding=paddings[1]), nn.ReLU(),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels[1], classes))
    return seeded(model, generator, scale) if generator is not None else model.eval()


class CubicScores(nn.Module):
    """Two class scores, score_k(x) = sum(w_k * x**3 + v_k * x), with fixed seeded w_k, v_k. Chapter 06.

    Its gradient 3 w_k x**2 + v_k shows the noise SmoothGrad adds: averaged over noisy copies it is
    3 w_k (x**2 + mean(e**2)) + v_k to first order, and for a single copy x + e can be read back.
    """

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        sign = torch.randint(0, 2, (2, *shape), generator=g) * 2.0 - 1.0
        self.w = nn.Parameter(sign * (0.5 + 0.5 * torch.rand(2, *shape, generator=g)))
        self.v = nn.Parameter(torch.randn(2, *shape, generator=g))

    def forward(self, x):
        x = x.unsqueeze(1)
        return (self.w * x**3 + self.v * x).flatten(2).sum(2)


def split_at(model: nn.Sequential, layer: nn.Module) -> tuple[nn.Sequential, nn.Sequential]:
    """``(front, back)`` with ``back(front(x)) == model(x)`` and ``front`` ending with ``layer``: the
    layer's output and its gradient without hooks. Chapter 02 (and the tests)."""
    index = next(i for i, module in enumerate(model) if module is layer)
    return model[: index + 1], model[index + 1:]


# --------------------------------------------------------------------------------------------
# The cases of the checks
# --------------------------------------------------------------------------------------------
def gradient_case() -> ModelCase:
    """A fixed 5-class CNN and two 3 x 8 x 8 inputs with targets [1, 3] (both top classes are 3). Chapter 01."""
    g = torch.Generator().manual_seed(0)
    model = tiny_cnn((4, 6), 5, strides=(1, 2), paddings=(1, 0), generator=g)
    return ModelCase(model, None, torch.randn(2, 3, 8, 8, generator=g), [1, 3])


def grad_cam_case() -> ModelCase:
    """A fixed 3-class CNN whose layer ``model[2]`` gives (2, 6, 6, 6) for (2, 3, 24, 24) inputs, targets [0, 2].
    Chapter 02.

    Before scaling, sample 0's map is negative at 61 % of the grid (ReLU matters), sample 1's is
    positive everywhere (its minimum is a third of its maximum: scaling by the maximum alone differs
    from min-max scaling).
    """
    g = torch.Generator().manual_seed(194)
    model = tiny_cnn((8, 6), 3, strides=(2, 2), paddings=(1, 1), generator=g)
    return ModelCase(model, model[2], torch.rand(2, 3, 24, 24, generator=g), [0, 2])


def resolution_case() -> ModelCase:
    """The Grad-CAM model with one 32 x 48 input: its layer's grid is 8 x 12. Chapter 06 (exercise 1)."""
    model, layer, _, _ = grad_cam_case()
    return ModelCase(model, layer, torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(0)), None)


def misclassification_case() -> ModelCase:
    """A 6-class CNN (PyTorch's default initialisation under seed 5), its Grad-CAM layer, an input (1, 3, 16, 16).
    Chapter 05."""
    with _private_rng():
        torch.manual_seed(5)
        model = tiny_cnn((8, 8), 6, strides=(1, 1), paddings=(1, 1))
    return ModelCase(model, model[2], torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(5)), None)


def smoothgrad_case() -> ModelCase:
    """:class:`CubicScores` on two (3, 6, 6) inputs spanning [-2, 2] and [-1, 1] (noise sigma 0.6 and 0.3 at
    noise_level 0.15: one scale for the whole batch differs), targets [0, 1]. Chapter 06."""
    g = torch.Generator().manual_seed(1)
    values = torch.linspace(-1, 1, 108)
    x = torch.stack([2 * values[torch.randperm(108, generator=g)], values[torch.randperm(108, generator=g)]])
    return ModelCase(CubicScores((3, 6, 6)).eval(), None, x.view(2, 3, 6, 6), [0, 1])


def noise_probe_case() -> ModelCase:
    """:class:`CubicScores` on two (3, 32, 32) inputs in [4, 6] (noise sigma 0.3 at noise_level 0.15): with one
    noisy copy each, x + e > 0 can be read back from the gradient, so the 6144 noise values themselves can
    be inspected. Chapter 06."""
    g = torch.Generator().manual_seed(2)
    values = 4 + 2 * torch.linspace(0, 1, 3072)
    x = torch.stack([values[torch.randperm(3072, generator=g)] for _ in range(2)])
    return ModelCase(CubicScores((3, 32, 32)).eval(), None, x.view(2, 3, 32, 32), [0, 1])


def region_case() -> tuple[torch.Tensor, torch.Tensor]:
    """``(attribution (3, 6, 8), region (3, 6, 8) bool)``: sample 1 has no positive attribution, sample 2 a
    strong corner inside the region (a shortcut). Chapter 06."""
    attribution = torch.randn(3, 6, 8, generator=torch.Generator().manual_seed(0))
    attribution[1] = -attribution[1].abs()
    attribution[2, :2, :2] += 3.0
    region = torch.zeros(3, 6, 8, dtype=torch.bool)
    region[:, :2, :2] = True
    return attribution, region


def deletion_case(seed: int) -> DeletionCase:
    """A fixed linear 3-class model on a (1, 2, 4, 4) image and a 4 x 4 saliency with no ties. Chapter 07."""
    g = torch.Generator().manual_seed(seed)
    with _private_rng():
        model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).eval()
    with torch.no_grad():
        model[1].weight.copy_(0.3 * torch.randn(3, 32, generator=g))
        model[1].bias.zero_()
    x = torch.rand(1, 2, 4, 4, generator=g)
    return DeletionCase(model, x, torch.randperm(16, generator=g).float().view(4, 4))


def ig_case() -> IGCase:
    """A linear model (completeness is exact for any rule), a small tanh net (the rule shows), float64, and one
    input (1, 6) with a baseline. Chapter 03."""
    g = torch.Generator().manual_seed(0)
    with _private_rng():
        linear = nn.Linear(6, 3).double()
        tanh_net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    with torch.no_grad():
        for p in [*linear.parameters(), *tanh_net.parameters()]:
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = torch.randn(1, 6, generator=g, dtype=torch.float64)
    return IGCase(linear.eval(), tanh_net.eval(), x, torch.randn(1, 6, generator=g, dtype=torch.float64))


def attention_case() -> torch.Tensor:
    """Row-stochastic attentions (3 layers, 4 heads, 5, 5), peaked enough that max fusion needs
    re-normalising. Chapter 04."""
    return (2.0 * torch.randn(3, 4, 5, 5, generator=torch.Generator().manual_seed(4))).softmax(dim=-1)
