"""Tiny fixed-weight models, the fixed cases that the exercise checks and the tests share, and the
model-state snapshot every "left as found" test compares against.

In the spirit of Captum's testing helpers (``captum.testing.helpers.basic_models``): each model is a
few lines whose weights come from a seed or a seeded generator, so a test can compute the expected
value by hand and a check's catalogue of typical mistakes stays tellable apart on its case.
:func:`tiny_cnn` and :func:`tiny_mlp` build the small networks of the tests (one parametrised family
instead of a net per test file); given ``seed`` or ``generator`` they never move the global random
state (a learner's notebook draws the same numbers with or without a check in between).
:func:`snapshot` and :func:`assert_unchanged` (or ``with unchanged(model):``) check the course's
promise that parameters, buffers, training modes, ``requires_grad``, ``.grad`` and hooks are the same
after every public call.

Plumbing: imports torch and :mod:`xaicourse.hooks` only. The checks of every chapter
(``xaicourse.checks``) grade on these cases; ``tests/test_checks*.py`` assert the properties that make
each case tell mistakes apart.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import nn

from .hooks import hooks_left

__all__ = [
    "CubicScores", "DeletionCase", "IGCase", "ModelCase", "ModelState", "assert_unchanged", "attention_case", "changes",
    "deletion_case", "grad_cam_case", "gradient_case", "ig_case", "misclassification_case", "noise_probe_case",
    "region_case", "resolution_case", "seeded", "smoothgrad_case", "snapshot", "split_at", "tiny_cnn", "tiny_mlp",
    "unchanged",
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


def _each(spec, n: int) -> list:
    """One spec per block: a list or tuple as given, anything else repeated ``n`` times."""
    specs = list(spec) if isinstance(spec, (list, tuple)) else [spec] * n
    if len(specs) != n:
        raise ValueError(f"expected {n} values (one per conv layer), got {len(specs)}: {spec!r}")
    return specs


def _make(spec) -> nn.Module:
    """A module as given, or a fresh one from a class or factory (``nn.ReLU``, ``lambda: nn.ReLU(inplace=True)``)."""
    return spec if isinstance(spec, nn.Module) else spec()


@contextmanager
def _initialisation(seed: int | None, generator: torch.Generator | None):
    """Where PyTorch's default initialisation draws from: a private generator seeded with ``seed``, a private one
    for ``generator`` (whose draws overwrite it anyway), or, with neither, the global one (seed it yourself)."""
    if seed is None and generator is None:
        yield
        return
    with _private_rng():
        if seed is not None:
            torch.manual_seed(seed)
        yield


def _finish(model: nn.Module, dtype, generator, scale: float, norm_init: str = "default") -> nn.Module:
    """Convert to ``dtype``, draw BatchNorm statistics (``norm_init``), seed from ``generator``; eval mode."""
    if dtype is not None:
        model = model.to(dtype)
    if norm_init not in ("default", "stats", "all"):
        raise ValueError(f"norm_init must be 'default', 'stats' or 'all', got {norm_init!r}")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d) and norm_init != "default":
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                if norm_init == "all":
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_()
    return seeded(model, generator, scale) if generator is not None else model.eval()


def tiny_cnn(channels=(4, 6), classes: int = 5, *, in_channels: int = 3, strides=(1, 2), paddings=(1, 0),
             act=nn.ReLU, norm=False, pool=None, head_pool: int | None = 1, side: int | None = None, hidden=(),
             head_act=nn.ReLU, norm_init: str = "default", dtype: torch.dtype | None = None, seed: int | None = None,
             generator: torch.Generator | None = None, scale: float = 0.5) -> nn.Sequential:
    """A small CNN as one ``nn.Sequential``, in eval mode: the tests' and the checks' model. Chapter 00.

    One block per entry of ``channels``: Conv2d(3 x 3, ``strides[i]``, ``paddings[i]``), a BatchNorm2d where
    ``norm`` is true, the activation ``act``, then ``pool`` where it is not None. ``act``, ``norm``, ``pool``,
    ``strides`` and ``paddings`` take one value for every block or a sequence with one per block; an activation
    or pool is a class / factory (a fresh module per block) or a module. The head: AdaptiveAvgPool2d(``head_pool``)
    (None: no pool, then ``side``, the input's height = width, sizes the first Linear), Flatten, a Linear +
    ``head_act`` per entry of ``hidden``, and Linear(..., ``classes``). Modules are numbered in that order, so
    ``model[2]`` of ``tiny_cnn((4, 4))`` is the second Conv2d.

    Weights: with ``seed``, PyTorch's default initialisation right after ``torch.manual_seed(seed)`` (the same
    numbers as that idiom) but drawn on a private generator, so the global random state does not move; with
    ``generator``, :func:`seeded` N(0, ``scale``^2) weights from it (its state moves on, so the inputs can be
    drawn from it next); with neither, the default initialisation from the global generator (seed it yourself).
    The model is built in float32 and then converted to ``dtype`` (float64 keeps float32's initial values);
    ``norm_init="stats"`` then draws BatchNorm running means N(0, 1) and variances U(0.5, 2), ``"all"`` also
    weights U(0.5, 1.5) and biases N(0, 1), from the same stream.
    """
    if seed is not None and generator is not None:
        raise ValueError("give seed (PyTorch's default initialisation) or generator (seeded weights), not both")
    n = len(channels)
    widths = [in_channels, *channels]
    strides, paddings, acts, norms, pools = (_each(s, n) for s in (strides, paddings, act, norm, pool))
    with _initialisation(seed, generator):
        layers = []
        for i in range(n):
            layers.append(nn.Conv2d(widths[i], widths[i + 1], 3, stride=strides[i], padding=paddings[i]))
            layers += ([nn.BatchNorm2d(widths[i + 1])] if norms[i] else []) + [_make(acts[i])]
            layers += [_make(pools[i])] if pools[i] is not None else []
        if head_pool is None:
            if side is None:
                raise ValueError("head_pool=None flattens the feature map: give side (the input's height = width)")
            with torch.no_grad():  # eval mode: the probe leaves BatchNorm's running statistics alone
                features = nn.Sequential(*layers).eval()(torch.zeros(1, in_channels, side, side)).numel()
        else:
            layers.append(nn.AdaptiveAvgPool2d(head_pool))
            features = widths[-1] * head_pool ** 2
        layers += [nn.Flatten(), *_dense([features, *hidden, classes], head_act, True)]
        return _finish(nn.Sequential(*layers), dtype, generator, scale, norm_init)


def _dense(sizes, act, bias: bool) -> list[nn.Module]:
    """Linear(sizes[i], sizes[i + 1]) for each i, with a fresh ``act`` between two of them."""
    layers = []
    for i in range(len(sizes) - 1):
        layers += [nn.Linear(sizes[i], sizes[i + 1], bias=bias)] + ([_make(act)] if i < len(sizes) - 2 else [])
    return layers


def tiny_mlp(sizes=(6, 8, 3), *, act=nn.ReLU, bias: bool = True, flatten: bool = False,
             dtype: torch.dtype | None = None, seed: int | None = None, generator: torch.Generator | None = None,
             scale: float = 0.5) -> nn.Sequential:
    """Linear(sizes[0], sizes[1]), ``act``, ..., Linear(sizes[-2], sizes[-1]) as one ``nn.Sequential`` in eval
    mode (``flatten``: an nn.Flatten first, for image-shaped inputs; ``tiny_mlp((n, k), flatten=True)`` is a
    linear model). ``seed``, ``generator``, ``scale`` and ``dtype`` as in :func:`tiny_cnn`. Chapter 00."""
    if seed is not None and generator is not None:
        raise ValueError("give seed (PyTorch's default initialisation) or generator (seeded weights), not both")
    if len(sizes) < 2:
        raise ValueError(f"sizes needs an input and an output width, got {sizes!r}")
    with _initialisation(seed, generator):
        layers = ([nn.Flatten()] if flatten else []) + _dense(list(sizes), act, bias)
        return _finish(nn.Sequential(*layers), dtype, generator, scale)


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
    model = tiny_cnn((8, 8), 6, strides=(1, 1), paddings=(1, 1), seed=5)
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


# --------------------------------------------------------------------------------------------
# The model is left as found
# --------------------------------------------------------------------------------------------
class ModelState(NamedTuple):
    """What a public call must leave as found (:func:`snapshot`), each keyed by its name in the model: the
    parameter objects themselves, their values, ``requires_grad`` and ``.grad``, the buffers, every module's
    training flag (the model itself is ``""``) and how many hooks are registered."""
    objects: dict[str, nn.Parameter]
    values: dict[str, torch.Tensor]
    requires_grad: dict[str, bool]
    grads: dict[str, torch.Tensor | None]
    buffers: dict[str, torch.Tensor]
    training: dict[str, bool]
    hooks: int


def snapshot(model: nn.Module) -> ModelState:
    """A copy of everything a method must leave as found on ``model``; compare with :func:`changes` or
    :func:`assert_unchanged` after the call. Chapter 00 (the course's promise: parameters, buffers, modes,
    ``requires_grad``, ``.grad`` and hooks are the same after every public call)."""
    params = dict(model.named_parameters())
    return ModelState(objects=params, values={n: p.detach().clone() for n, p in params.items()},
                      requires_grad={n: p.requires_grad for n, p in params.items()},
                      grads={n: None if p.grad is None else p.grad.detach().clone() for n, p in params.items()},
                      buffers={n: b.detach().clone() for n, b in model.named_buffers()},
                      training={n: m.training for n, m in model.named_modules()}, hooks=hooks_left(model))


def _same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    """Equal to the bit where both are tensors (NaN equals NaN; a meta tensor only has a shape and dtype)."""
    if a is None or b is None:
        return a is None and b is None
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    if a.device.type == "meta":
        return True
    return torch.equal(a, b) or (a.is_floating_point() and bool(torch.isclose(a, b, 0.0, 0.0, equal_nan=True).all()))


def _differences(kind: str, before: dict, now: dict, same=lambda a, b: a == b,
                 describe=lambda a, b: f"{a!r} -> {b!r}") -> list[str]:
    """One line per name that differs between two dicts: gone, new, or what ``describe(before, now)`` says."""
    lines = [f"{kind} {n!r} is gone" for n in before if n not in now]
    lines += [f"{kind} {n!r} is new" for n in now if n not in before]
    lines += [f"{kind} {n!r}: {describe(before[n], now[n])}" for n in before.keys() & now.keys()
              if not same(before[n], now[n])]
    return sorted(lines)


def _tensors(a: torch.Tensor | None, b: torch.Tensor | None) -> str:
    """How two tensors (or None) differ, in words."""
    if a is None or b is None or a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        show = lambda t: "None" if t is None else f"{tuple(t.shape)} {t.dtype} on {t.device}"  # noqa: E731
        return f"{show(a)} -> {show(b)}"
    return f"values changed (largest difference {(a.double() - b.double()).abs().nan_to_num(float('inf')).max():.3g})"


def _modes(before: dict[str, bool], now: dict[str, bool]) -> list[str]:
    """Training flags that moved, one line per direction, naming the first few modules ("" is the model)."""
    lines = []
    for was in (False, True):
        moved = [n for n, flag in before.items() if flag is was and now.get(n, was) is not was]
        if moved:
            names = ", ".join(repr(n) for n in moved[:4]) + (f" and {len(moved) - 4} more" if len(moved) > 4 else "")
            lines.append(f"training mode {was} -> {not was} on {len(moved)} module(s): {names}")
    return lines


def changes(model: nn.Module, before: ModelState) -> list[str]:
    """What differs on ``model`` from the :func:`snapshot` ``before``, one line each (empty: left as found).
    Chapter 00."""
    now = snapshot(model)
    return (_differences("parameter", before.objects, now.objects, lambda a, b: a is b,
                         lambda a, b: "replaced by another Parameter object")
            + _differences("parameter value", before.values, now.values, _same, _tensors)
            + _differences("requires_grad of", before.requires_grad, now.requires_grad)
            + _differences(".grad of", before.grads, now.grads, _same, _tensors)
            + _differences("buffer", before.buffers, now.buffers, _same, _tensors)
            + _modes(before.training, now.training)
            + ([f"hooks registered: {before.hooks} -> {now.hooks}"] if before.hooks != now.hooks else []))


def assert_unchanged(model: nn.Module, before: ModelState) -> None:
    """AssertionError naming every change on ``model`` since the :func:`snapshot` ``before``. Chapter 00."""
    found = changes(model, before)
    if found:
        raise AssertionError("the model was not left as found:\n  " + "\n  ".join(found))


@contextmanager
def unchanged(model: nn.Module):
    """``with unchanged(model): ...``: :func:`assert_unchanged` against a :func:`snapshot` taken on entry, when the
    block finishes (put ``pytest.raises`` inside it to check the model after an error). Yields the snapshot.
    Chapter 00."""
    before = snapshot(model)
    yield before
    assert_unchanged(model, before)
