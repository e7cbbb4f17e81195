"""Measuring explanations instead of judging them by eye. Taught in chapter 07.

* Faithfulness: :func:`deletion_auc` / :func:`insertion_auc` (RISE, Petsiuk et al. 2018) remove or
  reveal pixels in the order of the map and follow the target class probability; ``completeness``
  (:func:`xaicourse.ig.completeness_delta`) checks that attributions add up to the change of the
  output (IG's axiom).
* Localisation: :func:`pointing_game` (Zhang et al. 2016) and :func:`mask_energy` compare a map with a
  ground-truth object mask.
* Sensitivity to the model: :func:`randomization_sanity_check` (Adebayo et al. 2018) re-initialises
  layers from the top down and measures how much the map changes.

Maps are per-pixel scores of shape (B, H, W); :func:`pixel_map` reduces a (B, C, H, W) attribution.
Everything is deterministic and runs in chunks of ``batch_size`` images.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .batching import batched
from .hooks import eval_mode, find_layer
from .ig import blur_baseline
from .ig import completeness_delta as completeness  # IG's axiom, taught in chapter 03, used as a metric here
from .inputs import check_int, check_model, model_input, run_model
from .maps import mask_share, minmax, to_map
from .targets import resolve_targets, select

__all__ = ["PerturbationCurve", "SanityCheck", "completeness", "deletion_auc", "insertion_auc", "mask_energy",
           "pixel_map", "pointing_game", "randomization_sanity_check"]


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------
def pixel_map(attribution: torch.Tensor, absolute: bool = True) -> torch.Tensor:
    """One score per pixel, (B, H, W): channels summed (of ``|a|`` when ``absolute``). Chapter 07.

    A (B, H, W) map is returned as is (or its absolute value).
    """
    if not isinstance(attribution, torch.Tensor):
        raise TypeError(f"attribution must be a torch.Tensor, got {type(attribution).__name__}")
    if attribution.ndim not in (3, 4):
        raise ValueError(f"attribution must be (B, H, W) or (B, C, H, W), got shape {tuple(attribution.shape)}")
    if attribution.ndim == 4:
        return to_map(attribution.detach(), "abs_sum" if absolute else "sum")
    return attribution.detach().abs() if absolute else attribution.detach()


def _check_images(model, x) -> torch.Tensor:
    return model_input(check_model(model), x)


def _check_map(attribution, x: torch.Tensor, name: str = "attribution") -> torch.Tensor:
    expected = (x.shape[0], *x.shape[-2:])
    if not isinstance(attribution, torch.Tensor) or tuple(attribution.shape) != expected:
        got = tuple(attribution.shape) if isinstance(attribution, torch.Tensor) else type(attribution).__name__
        raise ValueError(f"{name} must be one score per pixel, shape {expected} (B, H, W), got {got}; "
                         "reduce a (B, C, H, W) attribution with xc.metrics.pixel_map(a)")
    attribution = attribution.detach().float()
    if not torch.isfinite(attribution).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return attribution


@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor, batch_size: int | None) -> torch.Tensor:
    return torch.cat([chunk for _, chunk in batched(len(x), lambda items: run_model(model, x[items]).float(),
                                                    model=model, batch_size=batch_size, grad=False)])


def _substrate(x: torch.Tensor, baseline, blur_sigma: float | None) -> torch.Tensor:
    """The image that replaces deleted pixels: "blur", a constant, or a tensor broadcastable to x."""
    if isinstance(baseline, str):
        if baseline != "blur":
            raise ValueError(f'baseline must be "blur", a number or a tensor, got {baseline!r}')
        return blur_baseline(x, blur_sigma or max(x.shape[-2:]) / 20)
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(x, float(baseline))
    if isinstance(baseline, torch.Tensor):
        try:
            return baseline.to(x).expand_as(x)
        except RuntimeError:
            raise ValueError(f"a baseline tensor must broadcast to x {tuple(x.shape)}, "
                             f"got {tuple(baseline.shape)}") from None
    raise TypeError(f'baseline must be "blur", a number or a tensor, got {type(baseline).__name__}')


# --------------------------------------------------------------------------------------------
# Deletion and insertion
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PerturbationCurve:
    """A deletion or insertion curve.

    ``fractions`` (S+1,): share of pixels deleted (or revealed), 0 to 1; ``scores`` (B, S+1): the
    target class probability at each step; ``auc`` (B,): the area under the curve (trapezoid rule);
    ``targets`` (B,): the classes followed.
    """

    fractions: torch.Tensor
    scores: torch.Tensor
    auc: torch.Tensor
    targets: torch.Tensor


def deletion_auc(model: nn.Module, x: torch.Tensor, attribution: torch.Tensor, target=None, *,
                 n_steps: int = 20, baseline="blur", blur_sigma: float | None = None,
                 batch_size: int | None = None) -> PerturbationCurve:
    """Delete pixels from the most to the least important; lower AUC = more faithful map. Chapter 07.

    ``x`` (B, C, H, W); ``attribution`` (B, H, W), higher = more important (ties in index order).
    At step k of ``n_steps`` the first floor(k N / n_steps) of the N pixels (all channels) are
    replaced by the ``baseline``: "blur" (a Gaussian blur of x, sigma ``blur_sigma``, default
    max(H, W) / 20), a constant (e.g. 0.0) or a tensor. Step 0 is the unperturbed image.
    The score is the softmax probability of ``target`` (None = the class predicted for x).
    The model is used as it is (no mode change, no gradients).
    """
    return _curve(model, x, attribution, target, n_steps, baseline, blur_sigma, batch_size, insert=False)


def insertion_auc(model: nn.Module, x: torch.Tensor, attribution: torch.Tensor, target=None, *,
                  n_steps: int = 20, baseline="blur", blur_sigma: float | None = None,
                  batch_size: int | None = None) -> PerturbationCurve:
    """Reveal pixels of x on the ``baseline`` from the most important; higher AUC = more faithful. Chapter 07.

    The mirror of :func:`deletion_auc` (same arguments): step 0 is the baseline, the last step is x.
    """
    return _curve(model, x, attribution, target, n_steps, baseline, blur_sigma, batch_size, insert=True)


def _curve(model, x, attribution, target, n_steps, baseline, blur_sigma, batch_size, insert) -> PerturbationCurve:
    x = _check_images(model, x)
    attribution = _check_map(attribution, x).to(x.device)
    n_steps = check_int("n_steps", n_steps)
    if batch_size is not None:
        check_int("batch_size", batch_size)
    with eval_mode(model):
        targets = resolve_targets(target, _logits(model, x, batch_size))
        base = _substrate(x, baseline, blur_sigma)
        before, after = (base, x) if insert else (x, base)

        b, _, h, w = x.shape
        order = attribution.reshape(b, -1).sort(dim=1, descending=True, stable=True).indices
        positions = torch.arange(h * w, device=x.device).expand(b, -1).contiguous()
        rank = torch.empty_like(order).scatter_(1, order, positions)
        counts = torch.arange(n_steps + 1, device=x.device) * (h * w) // n_steps  # pixels changed at each step

        @torch.no_grad()
        def probabilities(items: slice) -> torch.Tensor:
            idx = torch.arange(items.start, items.stop, device=x.device)
            sample, step = idx // (n_steps + 1), idx % (n_steps + 1)
            changed = (rank[sample] < counts[step, None]).view(-1, 1, h, w)
            images = torch.where(changed, after[sample], before[sample])
            return select(run_model(model, images).float().softmax(dim=-1), targets[sample])

        scores = torch.cat([chunk for _, chunk in batched(b * (n_steps + 1), probabilities, model=model,
                                                          batch_size=batch_size, grad=False,
                                                          desc="deletion steps" if not insert else "insertion steps")])
    scores = scores.view(b, n_steps + 1).cpu()
    fractions = counts.float().cpu() / (h * w)
    return PerturbationCurve(fractions, scores, torch.trapezoid(scores, fractions, dim=1), targets.cpu())


# --------------------------------------------------------------------------------------------
# Localisation against ground-truth masks
# --------------------------------------------------------------------------------------------
def _check_masks(attribution, masks) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(masks, torch.Tensor) or masks.ndim != 3:
        raise ValueError("masks must be a bool tensor (B, H, W)")
    attribution = _check_map(attribution, masks.unsqueeze(1))
    masks = masks.bool().to(attribution.device)
    empty = (~masks.flatten(1).any(dim=1)).nonzero()
    if len(empty):
        raise ValueError(f"mask {empty[0].item()} is empty: every sample needs at least one object pixel")
    return attribution, masks


def pointing_game(attribution: torch.Tensor, masks: torch.Tensor, tolerance: float = 0.0) -> torch.Tensor:
    """Does the map's maximum fall on the object? Bool (B,); ``.float().mean()`` is the hit rate. Chapter 07.

    ``attribution`` and ``masks`` are (B, H, W). A hit is a maximum within ``tolerance`` pixels
    (Euclidean) of a mask pixel; Zhang et al. use 15 pixels at 224. Ties go to the first maximum in
    row-major order; a constant map points nowhere and counts as a miss.
    """
    attribution, masks = _check_masks(attribution, masks)
    b, h, w = masks.shape
    flat = attribution.reshape(b, -1)
    peak = flat.argmax(dim=1)
    rows, cols = torch.meshgrid(torch.arange(h, device=masks.device), torch.arange(w, device=masks.device), indexing="ij")
    dist2 = (rows - (peak // w).view(-1, 1, 1)) ** 2 + (cols - (peak % w).view(-1, 1, 1)) ** 2
    near = (dist2 <= tolerance**2) & masks
    return near.flatten(1).any(dim=1) & (flat.amax(dim=1) > flat.amin(dim=1))


def mask_energy(attribution: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of the positive attribution that falls inside the mask, (B,) in [0, 1]. Chapter 07.

    The energy-based pointing game (Score-CAM, Wang et al. 2020). A map with no positive value
    scores 0. A uniform map scores the mask's area share, the chance level.
    """
    attribution, masks = _check_masks(attribution, masks)
    return mask_share(attribution, masks)


# --------------------------------------------------------------------------------------------
# Model randomisation sanity check
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SanityCheck:
    """Result of :func:`randomization_sanity_check`.

    ``layers``: names, in the order they were randomised (top first); ``spearman`` and ``ssim``
    (L, B): similarity of each randomised map with the original; ``original`` (B, H, W) and
    ``randomized`` (L, B, H, W): the maps themselves; ``cascade``: the mode.
    """

    layers: list[str]
    spearman: torch.Tensor
    ssim: torch.Tensor
    original: torch.Tensor
    randomized: torch.Tensor
    cascade: bool


def randomization_sanity_check(model: nn.Module, method, x: torch.Tensor, target=None, *,
                               cascade: bool = True, layers=None, absolute: bool = True,
                               seed: int = 0, progress: bool = False) -> SanityCheck:
    """Adebayo et al.'s model-randomisation test: does the map change when the weights do? Chapter 07.

    ``method(model, x, targets)`` returns an attribution (B, C, H, W) or (B, H, W); it is called on a
    deep copy of ``model`` (the caller's model is never changed), so a method that needs a layer
    should look it up by name, e.g. ``lambda m, x, t: grad_cam(m, "bn2", x, t)``. The targets are the
    classes of the original model (``target`` None = its prediction) and stay fixed.

    ``layers``: modules of ``model`` or their names (default: every module that owns parameters),
    visited from the top (output) down by their position in ``model.named_modules()``. With
    ``cascade=True`` every parameterised module from the top down to and including the layer is
    re-initialised (cumulative, as in the paper); with ``cascade=False`` only that layer is. Module
    i of the model's parameterised modules is re-initialised (``reset_parameters()``, else N(0, 0.02))
    under seed ``seed + i``, so a layer gets the same weights in both modes.
    Maps are compared as :func:`pixel_map` (``absolute``) by Spearman rank correlation and SSIM of
    the [0, 1]-normalised maps; a constant map has no ranking and correlates 0.
    """
    from tqdm.auto import tqdm

    if not callable(method):
        raise TypeError("method must be a function method(model, x, targets) returning an attribution")
    x = _check_images(model, x)
    with eval_mode(model):
        targets = resolve_targets(target, _logits(model, x, None))
    clone = copy.deepcopy(model).eval()
    owners = [name for name, m in clone.named_modules() if next(m.parameters(recurse=False), None) is not None]
    chosen = _layers_top_down(model, layers, owners)

    def explain() -> torch.Tensor:
        a = pixel_map(method(clone, x, targets), absolute).cpu().float()
        if a.shape != (x.shape[0], *x.shape[-2:]):
            raise ValueError(f"method returned a map of shape {tuple(a.shape)}; expected {(x.shape[0], *x.shape[-2:])}")
        return a

    original = explain()
    modules = dict(clone.named_modules())
    randomized, intact_below = [], len(owners)
    for name, start in tqdm(chosen, desc="randomising layers", disable=not progress):
        if cascade:  # everything from the top down to this layer, cumulatively
            for i in range(start, intact_below):
                _reinitialise(modules[owners[i]], seed + i)
            intact_below = start
            randomized.append(explain())
        else:  # this layer alone, then put its weights back
            inside = _owned_by(name, owners)
            saved = {i: copy.deepcopy(modules[owners[i]].state_dict()) for i in inside}
            for i in inside:
                _reinitialise(modules[owners[i]], seed + i)
            randomized.append(explain())
            for i, state in saved.items():
                modules[owners[i]].load_state_dict(state)
    randomized = torch.stack(randomized) if randomized else original.new_zeros((0, *original.shape))
    spearman = torch.tensor([[_spearman(o, r) for o, r in zip(original, maps)] for maps in randomized]).view(-1, len(x))
    ssim = torch.tensor([[_ssim(o, r) for o, r in zip(original, maps)] for maps in randomized]).view(-1, len(x))
    return SanityCheck([name for name, _ in chosen], spearman, ssim, original, randomized, cascade)


def _layers_top_down(model: nn.Module, layers, owners: list[str]) -> list[tuple[str, int]]:
    """(name, index of its first parameterised module) for each layer, top (last) first."""
    if layers is None:
        names = owners
    else:
        if isinstance(layers, (str, nn.Module)):
            layers = [layers]
        names = [find_layer(model, layer)[0] for layer in layers]
    chosen = []
    for name in dict.fromkeys(names):
        first = _owned_by(name, owners)
        if not first:
            raise ValueError(f"layer {name!r} has no parameters to randomise: pick a layer with weights")
        chosen.append((name, first[0]))
    return sorted(chosen, key=lambda item: -item[1])


def _owned_by(name: str, owners: list[str]) -> list[int]:
    """Indices of the parameterised modules inside the module ``name`` ("" is the whole model)."""
    return [i for i, owner in enumerate(owners) if not name or owner == name or owner.startswith(f"{name}.")]


@torch.no_grad()
def _reinitialise(module: nn.Module, seed: int) -> None:
    device = next(module.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        else:
            for p in module.parameters(recurse=False):
                p.normal_(0.0, 0.02)


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    from scipy.stats import spearmanr

    a, b = a.flatten().numpy(), b.flatten().numpy()
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def _ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    from skimage.metrics import structural_similarity

    side = min(a.shape)
    win = min(7, side if side % 2 else side - 1)
    a, b = (minmax(m[None])[0].numpy() for m in (a, b))
    return float(structural_similarity(a, b, data_range=1.0, win_size=win))
