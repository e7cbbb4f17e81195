"""LIME: explain one prediction with a local linear surrogate. Taught in chapter 08.

LIME (Ribeiro et al., 2016) switches random subsets of the features (superpixels) off, runs the
model on each perturbed input, and fits a linear model g(z) = b + sum_j c_j z_j to the target
logits, weighting each sample by how close it is to the original (z = all ones). The coefficients
c_j are the explanation. The defaults are those of the ``lime`` package's image explainer:

* samples: each feature kept with probability 1/2, plus the original input as the first sample;
* proximity: cosine distance d between z and the all-ones vector, weight sqrt(exp(-d^2 / w^2))
  with kernel width w = 0.25;
* surrogate: ridge regression (alpha = 1) with an unpenalised intercept; optionally only the
  ``n_features`` largest coefficients are kept (the sparse explanation LIME shows) and refitted.

KernelSHAP (:func:`xaicourse.shapley.kernel_shap`) runs the same loop: perturb, score, fit a
weighted linear model. It differs in exactly the two choices LIME leaves free: the weights (the
Shapley kernel, from the axioms, instead of a proximity heuristic) and the constraint (the
coefficients must add up to F(x) - F(baseline)). So LIME's coefficients are not Shapley values,
and depend on the kernel width.

* :func:`lime`: LIME attributions shaped like ``x`` (each coefficient spread over its feature's elements).
* :func:`lime_samples`, :func:`lime_weights`, :func:`weighted_ridge`: its three steps, testable alone.
* :func:`superpixels`: SLIC superpixels (scikit-image) as a feature mask.

Captum's ``Lime`` differs in its defaults (cosine distance in input space, kernel exp(-d^2 / 2w^2)
with w = 1, Lasso with alpha = 0.01); with the same samples, weights and ridge model it gives the
same coefficients (tested).
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn

from .baselines import as_baseline
from .inputs import check_int, check_number, check_types, explainer, model_input, run_model
from .numerics import safe_divide
from .shapley import check_samples, coalition_scores, feature_index, spread_values
from .targets import resolve_targets

__all__ = ["KERNEL_WIDTH", "lime", "lime_samples", "lime_weights", "superpixels", "weighted_ridge"]

#: The lime package's kernel width for images (on cosine distances, which lie in [0, 1]).
KERNEL_WIDTH = 0.25


def lime_samples(n_features: int, n_samples: int, *, seed: int = 0) -> torch.Tensor:
    """LIME's perturbations: a (n_samples, M) bool tensor; row 0 is the original (all True), the rest
    keep each feature with probability 1/2 (``torch.Generator().manual_seed(seed)``). Chapter 08."""
    m = check_int("n_features", n_features, 1)
    n = check_int("n_samples", n_samples, 1)
    generator = torch.Generator().manual_seed(seed)
    masks = torch.rand(n, m, generator=generator) < 0.5
    masks[0] = True
    return masks


@check_types
def lime_weights(masks: torch.Tensor, kernel_width: float = KERNEL_WIDTH) -> torch.Tensor:
    """Proximity weights (n,) float64: sqrt(exp(-d^2 / w^2)), d the cosine distance of each mask to all-ones.

    An empty mask has distance 1 (as scikit-learn's cosine distance gives it). Chapter 08.
    """
    width = check_number("kernel_width", kernel_width, above=0.0)
    z = masks.double()
    norm = z.norm(dim=1) * z.shape[1] ** 0.5
    cosine = safe_divide(z.sum(1), norm)
    d = 1 - cosine
    return torch.exp(-d ** 2 / width ** 2).sqrt()


def weighted_ridge(z: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, alpha: float = 1.0) -> tuple[torch.Tensor, float]:
    """Coefficients (M,) and intercept of the ridge regression of y on z with sample weights. Chapter 08.

    Minimises sum_k w_k (y_k - b - z_k . c)^2 + alpha |c|^2 (the intercept b is not penalised), as
    scikit-learn's ``Ridge(alpha).fit(z, y, sample_weight=weights)``. ``alpha=0`` is weighted least
    squares (minimum-norm solution when z is rank deficient).
    """
    a = check_number("alpha", alpha, minimum=0.0)
    if not all(isinstance(t, torch.Tensor) for t in (z, y, weights)):
        raise TypeError("z, y and weights must be tensors: z (n, M) samples, y (n,) scores, weights (n,)")
    if z.ndim != 2 or y.shape != (len(z),) or weights.shape != (len(z),):
        raise ValueError(f"z must be (n, M) with y and weights (n,): got z {tuple(z.shape)}, y {tuple(y.shape)}, "
                         f"weights {tuple(weights.shape)}")
    z, y, w = z.double().cpu(), y.double().cpu(), weights.double().cpu()
    mean_z = (w.unsqueeze(1) * z).sum(0) / w.sum()
    mean_y = (w * y).sum() / w.sum()
    zc, yc = z - mean_z, y - mean_y
    gram = zc.T @ (w.unsqueeze(1) * zc) + a * torch.eye(z.shape[1], dtype=torch.float64)
    coef = torch.linalg.pinv(gram) @ (zc.T @ (w * yc))
    return coef, float(mean_y - mean_z @ coef)


@explainer
def lime(model: nn.Module, x: torch.Tensor, target=None, *, feature_mask, baseline=None, n_samples: int = 500,
         seed: int = 0, kernel_width: float = KERNEL_WIDTH, alpha: float = 1.0, n_features: int | None = None,
         batch_size: int | None = None) -> torch.Tensor:
    """LIME attributions of the target logit over the features of ``feature_mask``: shaped like ``x``.

    ``baseline``: the values of switched-off features (None: zeros; a number; a tensor shaped like
    ``x`` or one sample), as in :func:`xaicourse.shapley.kernel_shap`. ``n_samples``: perturbations
    (model passes) per sample, including the original; ``seed`` fixes them. ``kernel_width``,
    ``alpha``: see the module docstring. ``n_features``: keep only this many coefficients (largest
    |c| of the full fit, then refitted on them); None keeps all. Coefficient j is spread over
    feature j's elements (:func:`xaicourse.shapley.feature_values` gives the (B, M) coefficients
    back). Chapter 08.
    """
    x = model_input(model, x, image=False)
    refs = as_baseline(baseline, x)
    index, counts = feature_index(feature_mask, x)
    for m in counts:
        check_samples(n_samples, m, m + 1, "the surrogate has an intercept and one coefficient per feature, "
                       "so it needs more samples than features (better 10x as many)")
    if n_features is not None:
        check_int("n_features", n_features, 1)
    with torch.no_grad():
        targets = resolve_targets(target, run_model(model, x))
    out = torch.empty_like(x)
    for i, m in enumerate(counts):
        masks = lime_samples(m, n_samples, seed=seed)
        weights = lime_weights(masks, kernel_width)
        scores = coalition_scores(model, x[i:i + 1], refs[i:i + 1], index[i:i + 1], int(targets[i]), masks,
                                  batch_size=batch_size, desc="LIME")
        coef, _ = weighted_ridge(masks, scores, weights, alpha)
        if n_features is not None and n_features < m:
            keep = coef.abs().argsort(descending=True)[:n_features]
            coef = torch.zeros_like(coef)
            coef[keep], _ = weighted_ridge(masks[:, keep], scores, weights, alpha)
        out[i] = spread_values(coef.to(device=x.device, dtype=x.dtype), index[i])
    return out


def superpixels(image, n_segments: int = 50, compactness: float = 10.0) -> torch.Tensor:
    """SLIC superpixels (scikit-image) as a feature mask of integer ids 0..M-1. Chapter 08.

    ``image``: a model input (B, C, H, W) -> a (B, 1, H, W) mask (shared by the channels, ready for
    ``feature_mask``); a tensor (C, H, W) -> (H, W); a PIL image or an (H, W, C) / (H, W) array ->
    (H, W). Each image is rescaled to [0, 1] first, so ``compactness`` (colour against space: larger
    gives squarer segments) means the same for normalised inputs and for pixels. SLIC may return
    somewhat fewer or more segments than ``n_segments``.
    """
    from skimage.segmentation import slic

    if not isinstance(image, (torch.Tensor, np.ndarray, Image.Image)):
        raise TypeError(f"image must be a model input tensor, an array or a PIL image, got {type(image).__name__}")
    n = check_int("n_segments", n_segments, 2)
    c = check_number("compactness", compactness, above=0.0)

    def segment(hwc: np.ndarray) -> np.ndarray:
        hwc = hwc.astype(np.float64)
        span = hwc.max() - hwc.min()
        hwc = (hwc - hwc.min()) / (span if span > 0 else 1.0)
        return slic(hwc, n_segments=n, compactness=c, start_label=0, channel_axis=-1 if hwc.ndim == 3 else None)

    if isinstance(image, torch.Tensor):
        if image.ndim == 4:
            masks = [segment(img.detach().cpu().permute(1, 2, 0).numpy()) for img in image]
            return torch.as_tensor(np.stack(masks), dtype=torch.long, device=image.device).unsqueeze(1)
        if image.ndim == 3:
            return torch.as_tensor(segment(image.detach().cpu().permute(1, 2, 0).numpy()), dtype=torch.long,
                                   device=image.device)
        raise ValueError(f"image tensor must have shape (B, C, H, W) or (C, H, W), got {tuple(image.shape)}")
    try:
        array = np.asarray(image)
    except Exception as err:  # noqa: BLE001 - any unreadable object
        raise TypeError(f"image must be a tensor, a PIL image or an array, got {type(image).__name__}") from err
    if array.ndim not in (2, 3) or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"image must be an (H, W, C) or (H, W) array of numbers, got shape {array.shape} and dtype {array.dtype}")
    return torch.as_tensor(segment(array), dtype=torch.long)
