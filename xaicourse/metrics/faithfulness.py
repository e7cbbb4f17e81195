"""Faithfulness: does the map rank first the pixels the model needs? Chapter 07.

* :func:`deletion_auc` / :func:`insertion_auc` (RISE, Petsiuk et al. 2018): remove or reveal pixels in
  the order of the map and follow the target class probability (Quantus: PixelFlipping,
  RegionPerturbation).
* :func:`road` (Rong et al. 2022, *Remove and Debias*): remove pixels by :func:`noisy_linear_imputation`
  instead of a constant, so the shape of the removed region tells the model less; MoRF (most
  relevant first) and LeRF (least relevant first) orders.
* :func:`~xaicourse.metrics.roar` (Hooker et al. 2019) retrains after removal: see
  :mod:`xaicourse.metrics.retraining`.

The order never comes from the pixel index. When the pixels to remove at a step end inside a
group of tied pixels, each pixel of that group is removed by its expected share under random
tie-breaking (:func:`removal_weights`): the image at that step is the *expected* image, x blended
with the fill pixel by pixel. A map without ties removes whole pixels as usual. So rotating or
flipping image and map together changes no curve, a patch map (B, h, w) whose size divides the
image's removes whole patches and scores as its block-upsampled version, and an empty or constant
map, which ranks nothing, scores NaN (curve and AUC) with a :class:`~xaicourse.metrics.NoMapWarning`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..batching import batched
from ..hooks import eval_mode
from ..ig import blur_baseline
from ..inputs import check_choice, check_int, check_number, generator, run_model
from ..targets import resolve_targets, select
from ._common import check_images, check_map, logits, no_map, tie_groups, top_share

__all__ = ["PerturbationCurve", "deletion_auc", "impute_weighted", "insertion_auc", "noisy_linear_imputation", "road"]


@dataclass(frozen=True)
class PerturbationCurve:
    """A deletion, insertion or ROAD curve. Chapter 07.

    ``fractions`` (S+1,): share of pixels deleted (or revealed), 0 to 1; ``scores`` (B, S+1): the
    target class probability at each step; ``auc`` (B,): the area under the curve (trapezoid rule);
    ``targets`` (B,): the classes followed.
    """

    fractions: torch.Tensor
    scores: torch.Tensor
    auc: torch.Tensor
    targets: torch.Tensor


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


def deletion_auc(model: nn.Module, x: torch.Tensor, attribution: torch.Tensor, target=None, *,
                 n_steps: int = 20, baseline="blur", blur_sigma: float | None = None,
                 batch_size: int | None = None) -> PerturbationCurve:
    """Delete pixels from the most to the least important; lower AUC = more faithful map. Chapter 07.

    ``x`` (B, C, H, W); ``attribution`` (B, H, W), higher = more important, or a patch map (B, h, w)
    whose size divides (H, W). At step k of ``n_steps`` the first floor(k N / n_steps) of the N
    pixels (all channels) are replaced by the ``baseline`` (ties averaged, see the module notes):
    "blur" (a Gaussian blur of x, sigma ``blur_sigma``, default max(H, W) / 20), a constant (e.g.
    0.0) or a tensor. Step 0 is the unperturbed image.
    The score is the softmax probability of ``target`` (None = the class predicted for x).
    The model is used as it is (no mode change, no gradients). A constant map scores NaN.
    """
    return _curve(model, x, attribution, target, n_steps, baseline, blur_sigma, batch_size, insert=False)


def insertion_auc(model: nn.Module, x: torch.Tensor, attribution: torch.Tensor, target=None, *,
                  n_steps: int = 20, baseline="blur", blur_sigma: float | None = None,
                  batch_size: int | None = None) -> PerturbationCurve:
    """Reveal pixels of x on the ``baseline`` from the most important; higher AUC = more faithful. Chapter 07.

    The mirror of :func:`deletion_auc` (same arguments): step 0 is the baseline, the last step is x.
    """
    return _curve(model, x, attribution, target, n_steps, baseline, blur_sigma, batch_size, insert=True)


def removal_weights(attribution: torch.Tensor, counts) -> torch.Tensor:
    """How much of each pixel the first ``counts`` pixels in the map's order remove, (B, S, H, W) in [0, 1].

    ``attribution`` (B, H, W), higher = removed first; ``counts`` (S,) numbers of pixels. A tied group
    that straddles a count is removed by its expected share under random tie-breaking, the same
    share for each of its pixels: the weights of one map and count sum to the count, and nothing
    depends on the pixel index.
    """
    b, h, w = attribution.shape
    above, tied = tie_groups(attribution)
    counts = torch.as_tensor(counts, device=attribution.device).view(1, -1, 1)
    return top_share(above[:, None], tied[:, None], counts).view(b, -1, h, w).to(attribution.dtype)


def _curve(model, x, attribution, target, n_steps, baseline, blur_sigma, batch_size, insert) -> PerturbationCurve:
    x = check_images(model, x)
    attribution = check_map(attribution, x).to(x.device)
    n_steps = check_int("n_steps", n_steps)
    if batch_size is not None:
        check_int("batch_size", batch_size)
    empty = no_map("insertion_auc" if insert else "deletion_auc", attribution).cpu()
    with eval_mode(model):
        targets = resolve_targets(target, logits(model, x, batch_size))
        base = _substrate(x, baseline, blur_sigma)
        before, after = (base, x) if insert else (x, base)
        b, _, h, w = x.shape
        above, tied = tie_groups(attribution)
        counts = torch.arange(n_steps + 1, device=x.device) * (h * w) // n_steps  # pixels changed at each step

        @torch.no_grad()
        def probabilities(items: slice) -> torch.Tensor:
            idx = torch.arange(items.start, items.stop, device=x.device)
            sample, step = idx // (n_steps + 1), idx % (n_steps + 1)
            changed = top_share(above[sample], tied[sample], counts[step, None]).view(-1, 1, h, w).to(x.dtype)
            images = torch.lerp(before[sample], after[sample], changed)
            return select(run_model(model, images).float().softmax(dim=-1), targets[sample])

        scores = torch.cat([chunk for _, chunk in batched(b * (n_steps + 1), probabilities, model=model,
                                                          batch_size=batch_size, grad=False,
                                                          desc="deletion steps" if not insert else "insertion steps")])
    scores = torch.where(empty[:, None], torch.nan, scores.view(b, n_steps + 1).cpu())
    fractions = counts.float().cpu() / (h * w)
    return PerturbationCurve(fractions, scores, torch.trapezoid(scores, fractions, dim=1), targets.cpu())


# --------------------------------------------------------------------------------------------
# ROAD: removal by noisy linear imputation
# --------------------------------------------------------------------------------------------
# Neighbour weights of Rong et al. (2022): 1/6 for the four direct neighbours, 1/12 for the diagonals.
_NEIGHBOURS = ((1, 1, 1 / 12), (0, 1, 1 / 6), (-1, 1, 1 / 12), (1, -1, 1 / 12), (0, -1, 1 / 6), (-1, -1, 1 / 12),
               (1, 0, 1 / 6), (-1, 0, 1 / 6))


def noisy_linear_imputation(x: torch.Tensor, removed: torch.Tensor, *, noise: float = 0.01, seed: int = 0) -> torch.Tensor:
    """Fill the ``removed`` pixels of x with the weighted mean of their neighbours, plus noise. Chapter 07.

    ROAD's imputation (Rong et al. 2022): each removed pixel equals the weighted mean of its (up to)
    eight neighbours, 1/6 for the direct ones and 1/12 for the diagonals (neighbours outside the
    image are left out and the weights renormalised), where removed neighbours are unknowns too:
    one sparse linear system per image, every channel solved at once. Then Gaussian noise of
    standard deviation ``noise`` is added to the imputed values (seeded with ``seed``; 0 for none).
    ``x`` (B, C, H, W); ``removed`` (B, H, W) bool, not every pixel of an image. Returns a new tensor.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    x = check_images(nn.Identity(), x)
    if not isinstance(removed, torch.Tensor) or removed.shape != (x.shape[0], *x.shape[-2:]):
        raise ValueError(f"removed must be a bool mask (B, H, W) = {(x.shape[0], *x.shape[-2:])} like x, got "
                         f"{tuple(removed.shape) if isinstance(removed, torch.Tensor) else type(removed).__name__}")
    noise = check_number("noise", noise, minimum=0, hint=" (the standard deviation of the added noise)")
    removed = removed.bool().cpu()
    if removed.flatten(1).all(dim=1).any():
        raise ValueError("removed covers every pixel of an image: keep at least one pixel to impute from")
    b, c, h, w = x.shape
    out = x.detach().cpu().double().numpy().copy()
    noise_source = generator(seed, "cpu")
    for i in range(b):
        unknown = removed[i].flatten().nonzero().flatten().numpy()
        if len(unknown) == 0:
            continue
        flat = out[i].reshape(c, -1)
        var = np.full(h * w, -1)
        var[unknown] = np.arange(len(unknown))
        rows, cols, values = [], [], []
        rhs = np.zeros((len(unknown), c))
        total = np.zeros(len(unknown))
        r, q = unknown // w, unknown % w
        for dr, dq, weight in _NEIGHBOURS:
            valid = (r + dr >= 0) & (r + dr < h) & (q + dq >= 0) & (q + dq < w)
            ids, neighbour = np.nonzero(valid)[0], ((r + dr) * w + q + dq)[valid]
            total[ids] += weight
            known = var[neighbour] < 0
            rhs[ids[known]] -= weight * flat[:, neighbour[known]].T
            rows.append(ids[~known]), cols.append(var[neighbour[~known]]), values.append(np.full((~known).sum(), weight))
        rows.append(np.arange(len(unknown))), cols.append(np.arange(len(unknown))), values.append(-total)
        system = coo_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                            shape=(len(unknown), len(unknown))).tocsc()
        solution = np.asarray(spsolve(system, rhs)).reshape(len(unknown), c)
        jitter = torch.randn(c, len(unknown), generator=noise_source, dtype=torch.float64).numpy()
        flat[:, unknown] = solution.T + noise * jitter
    return torch.from_numpy(out).to(device=x.device, dtype=x.dtype)


def road(model: nn.Module, x: torch.Tensor, attribution: torch.Tensor, target=None, *, order: str = "morf",
         fractions=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), noise: float = 0.01, seed: int = 0,
         batch_size: int | None = None) -> PerturbationCurve:
    """ROAD (Rong et al. 2022): remove pixels by noisy linear imputation, follow the class probability. Chapter 07.

    ``order="morf"`` removes the most relevant pixels first (a faithful map: low AUC), ``"lerf"``
    the least relevant first (a faithful map: high AUC). At each fraction f of ``fractions`` (in
    [0, 1)) the floor(f N) pixels first in that order are filled by :func:`noisy_linear_imputation`
    (``noise``, ``seed``) and the softmax probability of ``target`` is read (None = the class
    predicted for x). Unlike a constant fill, the imputed region continues the image around it, so
    the model cannot read the removed region's *shape* (a leak Rong et al. measure). ``x`` (B, C, H,
    W), ``attribution`` (B, H, W) or a patch map (B, h, w) whose size divides (H, W). Returns a
    :class:`PerturbationCurve`. Ties are averaged: a tied group straddling the count is imputed as
    a whole, then blended with x by its expected share (:func:`removal_weights`). With
    ``noise=0`` rotating or flipping image and map together changes nothing; the noise itself is
    drawn in pixel order (the same in distribution). A constant map scores NaN.
    """
    x = check_images(model, x)
    attribution = check_map(attribution, x).to(x.device)
    check_choice("ROAD order", order, ("morf", "lerf"))
    fractions = torch.as_tensor(fractions, dtype=torch.float64)
    if fractions.ndim != 1 or len(fractions) < 2 or (fractions < 0).any() or (fractions >= 1).any():
        raise ValueError(f"fractions must be two or more shares of the pixels in [0, 1), got {fractions.tolist()}")
    b, _, h, w = x.shape
    empty = no_map("road", attribution).cpu()
    weights = removal_weights(attribution if order == "morf" else -attribution,
                              [int(f * h * w) for f in fractions.tolist()])
    weights[empty.to(weights.device)] = 0.0  # no map: nothing to impute (scored NaN below)
    with eval_mode(model), torch.no_grad():
        targets = resolve_targets(target, logits(model, x, batch_size))
        images = torch.cat([impute_weighted(x, weights[:, k], noise=noise, seed=seed + k) for k in range(len(fractions))])
        sample = torch.arange(b, device=x.device).repeat(len(fractions))
        scores = torch.cat([select(chunk.softmax(dim=-1), targets[sample[items]]) for items, chunk in
                            batched(len(images), lambda items: run_model(model, images[items]).float(), model=model,
                                    batch_size=batch_size, grad=False, desc="ROAD steps")])
    scores = torch.where(empty[:, None], torch.nan, scores.view(len(fractions), b).T.cpu())
    fractions = fractions.float()
    return PerturbationCurve(fractions, scores, torch.trapezoid(scores, fractions, dim=1), targets.cpu())


def impute_weighted(x: torch.Tensor, weights: torch.Tensor, *, noise: float, seed: int) -> torch.Tensor:
    """``x`` (B, C, H, W) with the pixels of ``weights`` (B, H, W) > 0 imputed, blended with x by their weight. Chapter 07.

    Weight 1: the pixel is imputed (:func:`noisy_linear_imputation`); 0: kept; in between (a tied
    group straddling the removal count): the expected image under random tie-breaking.

    The tied group that straddles the count (0 < weight < 1) is imputed as a whole. When that leaves
    no pixel of an image to impute from (the group is the image's lowest and everything above it is
    removed), the image is imputed in two passes: first the fully removed pixels (the group kept),
    then the group from the rest.
    """
    removed = weights > 0
    if not removed.any():
        return x.clone()
    whole = removed.flatten(1).all(dim=1)
    first = torch.where(whole[:, None, None], weights >= 1, removed)
    imputed = noisy_linear_imputation(x, first, noise=noise, seed=seed)
    if whole.any():
        group = whole[:, None, None] & removed & (weights < 1)
        imputed = noisy_linear_imputation(imputed, group, noise=noise, seed=seed + 1)
    return torch.lerp(x, imputed, weights[:, None].to(x.dtype))
