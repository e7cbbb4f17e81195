"""Shapley values: share a prediction fairly among features. Taught in chapter 08.

A *game* gives every coalition S of n players (features) a value v(S); here v(S) is the target
logit of the input with the features outside S replaced by a baseline. The Shapley value of
player i is its marginal contribution v(S + i) - v(S) averaged over all orders in which the players
can join:

    phi_i = sum over S not containing i of |S|! (n - |S| - 1)! / n! * (v(S + i) - v(S)).

It is the only sharing rule with *efficiency* (sum phi = v(all) - v(none)), *symmetry* (players
that contribute alike get the same), *dummy* (a player that never changes v gets 0) and linearity.

* :func:`exact_shapley`: the definition, enumerating the 2^n coalitions (small games only).
* :func:`shapley_kernel_weight`: the Shapley kernel pi(M, s) = (M - 1) / (C(M, s) s (M - s)).
* :func:`kernel_shap_values`: KernelSHAP on any game: a weighted least-squares fit of
  v(S) ~ v(none) + sum_{i in S} phi_i with the Shapley kernel as weights and efficiency as an exact
  constraint. With every coalition it returns the exact Shapley values (Lundberg & Lee, 2017); with
  fewer, coalitions are sampled from the kernel (pairs S and its complement).
* :func:`kernel_shap`: KernelSHAP of a model's target logit over the features of ``feature_mask``
  (e.g. superpixels), shaped like ``x``.
* :func:`gradient_shap`: GradientSHAP (expected gradients): gradient x (input - baseline) at random
  points between random baselines and the input, averaged.
* :func:`feature_index`, :func:`feature_values`, :func:`coalition_scores`: the feature plumbing that
  KernelSHAP and LIME (:mod:`xaicourse.lime`) share.

Feature attributions come back shaped like ``x``: feature j's value is spread evenly over its
elements (each gets phi_j / size_j), so the map sums to the same total as the features and
``feature_values`` recovers phi exactly. (Captum writes phi_j into every element instead.)
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .baselines import as_baseline, as_baselines
from .batching import batched
from .guarantees import check_conservation
from .inputs import check_int, check_number, check_types, explainer, has_values, model_input, run_model
from .numerics import safe_divide
from .targets import resolve_targets, select

__all__ = ["MAX_EXACT_PLAYERS", "check_samples", "coalition_scores", "exact_shapley", "feature_index", "feature_values",
           "gradient_shap", "kernel_shap", "kernel_shap_values", "sample_coalitions", "shapley_kernel_weight", "spread_values"]

#: exact_shapley enumerates 2^n coalitions: beyond this many players use KernelSHAP.
MAX_EXACT_PLAYERS = 20
#: KernelSHAP's regression sums its normal equations over chunks of this many coalitions (memory bounded).
FIT_ROWS = 65536


def _all_coalitions(n: int) -> torch.Tensor:
    """Every coalition of n players as a (2^n, n) bool tensor, in binary order (row k = bits of k)."""
    codes = torch.arange(2 ** n).unsqueeze(1)
    return (codes >> torch.arange(n)) & 1 == 1


def exact_shapley(value, n_players: int) -> torch.Tensor:
    """The Shapley values (n_players,) of the game ``value`` by the definition. Chapter 08.

    ``value(mask)`` takes a bool tensor (n_players,) (True = the player is in the coalition) and
    returns a number. It is called once for each of the 2^n coalitions.
    """
    if not callable(value):
        raise TypeError(f"value must be a function of a coalition mask (a bool tensor), got {type(value).__name__}")
    n = check_int("n_players", n_players, 1)
    if n > MAX_EXACT_PLAYERS:
        raise ValueError(f"exact_shapley enumerates 2^n coalitions; n_players={n} is too many (at most "
                         f"{MAX_EXACT_PLAYERS}): use kernel_shap_values to estimate them")
    masks = _all_coalitions(n)
    v = torch.tensor([float(value(m.clone())) for m in masks], dtype=torch.float64)
    sizes = masks.sum(1)
    phi = torch.zeros(n, dtype=torch.float64)
    for i in range(n):
        without = ~masks[:, i]
        s = sizes[without]
        weight = torch.tensor([math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n) for k in s.tolist()],
                              dtype=torch.float64)
        codes = torch.arange(2 ** n)[without]
        phi[i] = (weight * (v[codes + 2 ** i] - v[codes])).sum()
    return phi


def shapley_kernel_weight(n_features: int, size: int) -> float:
    """The Shapley kernel pi(M, s) = (M - 1) / (C(M, s) * s * (M - s)) for a coalition of ``size`` of M features.

    Infinite for the empty and the full coalition (they enter as the efficiency constraint).
    Chapter 08 (the exercise asks for this function).
    """
    m = check_int("n_features", n_features, 2)
    s = check_int("size", size, 0)
    if s > m:
        raise ValueError(f"size must be between 0 and n_features={m}, got {s}")
    if s in (0, m):
        return math.inf
    return (m - 1) / (math.comb(m, s) * s * (m - s))


def sample_coalitions(n_features: int, n_samples: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Coalitions for KernelSHAP: a (n, M) bool tensor and their regression weights (n,). Chapter 08.

    When ``n_samples >= 2^M - 2`` every coalition but the empty and the full one is returned once,
    weighted by :func:`shapley_kernel_weight` (then KernelSHAP is exact). Otherwise ``n_samples``
    coalitions are drawn from the kernel: a size s with probability proportional to
    (M - 1) / (s (M - s)), then s features uniformly; every second one is the complement of the one
    before (paired sampling, which cancels the odd-order terms of the error); the weights are equal.
    """
    m = check_int("n_features", n_features, 2)
    n = check_int("n_samples", n_samples, 1)
    if m <= 30 and n >= 2 ** m - 2:
        masks = _all_coalitions(m)[1:-1]
        weights = torch.tensor([shapley_kernel_weight(m, int(s)) for s in masks.sum(1)], dtype=torch.float64)
        return masks, weights
    generator = torch.Generator().manual_seed(seed)
    sizes = torch.arange(1, m, dtype=torch.float64)
    p = (m - 1) / (sizes * (m - sizes))
    n_first = (n + 1) // 2
    drawn = torch.multinomial(p / p.sum(), n_first, replacement=True, generator=generator) + 1
    first = torch.empty(n_first, m, dtype=torch.bool)
    for start in range(0, n_first, FIT_ROWS):  # in chunks: the same draws as one call, without (n, M) float64 at once
        stop = min(start + FIT_ROWS, n_first)
        ranks = torch.rand(stop - start, m, generator=generator, dtype=torch.float64).argsort(1).argsort(1)
        first[start:stop] = ranks < drawn[start:stop].unsqueeze(1)
    masks = torch.stack([first, ~first], 1).reshape(-1, m)[:n]
    return masks, torch.ones(n, dtype=torch.float64)


def _constrained_fit(masks: torch.Tensor, values: torch.Tensor, weights: torch.Tensor, v_empty: float,
                     v_full: float) -> torch.Tensor:
    """phi minimising sum_k w_k (v_k - v_empty - masks_k . phi)^2 subject to sum(phi) = v_full - v_empty.

    The normal equations are summed over chunks of :data:`FIT_ROWS` coalitions, so the float64 design
    matrix never exists whole (2 million coalitions of 64 features would need 1 GB for it)."""
    delta = v_full - v_empty
    m = masks.shape[1]
    gram = torch.zeros(m - 1, m - 1, dtype=torch.float64)
    moment = torch.zeros(m - 1, dtype=torch.float64)
    for start in range(0, len(masks), FIT_ROWS):
        z = masks[start:start + FIT_ROWS].double().cpu()
        y = values[start:start + FIT_ROWS].double().cpu() - v_empty
        w = weights[start:start + FIT_ROWS].double().cpu()
        # eliminate the last feature: phi_M = delta - sum_{j<M} phi_j
        a = z[:, :-1] - z[:, -1:]
        b = y - z[:, -1] * delta
        aw = a * w.unsqueeze(1)
        gram += a.T @ aw
        moment += aw.T @ b
    head = torch.linalg.pinv(gram) @ moment
    return torch.cat([head, (delta - head.sum()).view(1)])


def kernel_shap_values(value, n_players: int, *, n_samples: int = 500, seed: int = 0) -> torch.Tensor:
    """KernelSHAP estimate (n_players,) of the Shapley values of the game ``value`` (as in :func:`exact_shapley`).

    Efficiency holds exactly: sum(phi) = v(all) - v(none). With ``n_samples >= 2^n - 2`` the result
    is the exact Shapley value; with fewer it converges to it as ``n_samples`` grows. Chapter 08.
    """
    if not callable(value):
        raise TypeError(f"value must be a function of a coalition mask (a bool tensor), got {type(value).__name__}")
    n = check_int("n_players", n_players, 2)
    masks, weights = sample_coalitions(n, check_samples(n_samples, n), seed=seed)
    v = torch.tensor([float(value(m.clone())) for m in masks], dtype=torch.float64)
    v_empty, v_full = float(value(torch.zeros(n, dtype=torch.bool))), float(value(torch.ones(n, dtype=torch.bool)))
    return _constrained_fit(masks, v, weights, v_empty, v_full)


def check_samples(n_samples, n_features: int, minimum: int | None = None, why: str = "") -> int:
    """``n_samples`` if it is enough for ``n_features`` (KernelSHAP: 2 M, or every coalition when there are fewer). Chapter 08.

    ``minimum`` and ``why`` override the rule (LIME passes its own); ValueError names the minimum.
    """
    n = check_int("n_samples", n_samples, 1)
    if minimum is None:
        minimum = min(2 * n_features, 2 ** n_features - 2) if n_features < 30 else 2 * n_features
        why = why or ("KernelSHAP fits one value per feature from pairs of a coalition and its complement, "
                      "so it needs at least 2 x n_features samples (better 10x as many)")
    if n < minimum:
        raise ValueError(f"n_samples={n} is too small for {n_features} features: {why}; give n_samples >= {minimum}, "
                         "or use fewer features (e.g. fewer superpixels)")
    return n


def feature_index(feature_mask, x: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """Each element's feature number, shaped like ``x``, and the number of features of each sample.

    ``feature_mask``: integer feature ids, one per element of ``x`` (B, ...), of one sample
    (``x.shape[1:]``, e.g. (1, H, W) for superpixels shared by the channels), or (H, W) for images.
    The ids of each sample are renumbered 0..M-1 in increasing order. Each sample needs M >= 2.
    Chapter 08.
    """
    if not isinstance(feature_mask, torch.Tensor):
        raise TypeError(f"feature_mask must be an integer tensor of feature ids (e.g. from xaicourse.lime.superpixels), "
                        f"got {type(feature_mask).__name__}")
    if feature_mask.is_floating_point() or feature_mask.is_complex() or feature_mask.dtype == torch.bool:
        raise TypeError(f"feature_mask must hold integer feature ids, got dtype {feature_mask.dtype}")
    if not has_values(x) or not has_values(feature_mask):
        raise ValueError("KernelSHAP and LIME number the features from the feature mask's values, which the meta device "
                         "does not have: run them on the CPU or a GPU")
    mask = feature_mask.to(x.device)
    if x.ndim == 4 and mask.ndim == 2:
        mask = mask[None, None]
    elif mask.ndim == x.ndim - 1:
        mask = mask.unsqueeze(0)
    wanted = (f"{tuple(x.shape)}, {tuple(x.shape[1:])}, (1, {', '.join(map(str, x.shape[2:]))})"
              + (f" or {tuple(x.shape[2:])}" if x.ndim == 4 else ""))
    if mask.ndim != x.ndim or any(m not in (1, s) for m, s in zip(mask.shape, x.shape)):
        raise ValueError(f"feature_mask of shape {tuple(feature_mask.shape)} does not fit x {tuple(x.shape)}: give one "
                         f"feature id per element, with a shape among {wanted} (size-1 dimensions are shared)")
    mask = mask.expand(x.shape)
    index = torch.empty(x.shape, dtype=torch.long, device=x.device)
    counts = []
    for i, m in enumerate(mask):
        ids, inverse = torch.unique(m, return_inverse=True)
        if len(ids) < 2:
            raise ValueError(f"feature_mask gives sample {i} a single feature (id {ids[0].item()}): nothing to "
                             "compare; give at least two features (e.g. more superpixels)")
        index[i] = inverse
        counts.append(len(ids))
    return index, counts


def feature_values(attributions: torch.Tensor, feature_mask, n_features: int | None = None) -> torch.Tensor:
    """The total attribution of each feature: (B, M), summing ``attributions`` over each feature's elements.

    Inverts the spreading of :func:`kernel_shap` and :func:`xaicourse.lime.lime`. Samples with fewer
    than M features are padded with zeros. Chapter 08.
    """
    if not isinstance(attributions, torch.Tensor):
        raise TypeError(f"attributions must be a tensor, got {type(attributions).__name__}")
    index, counts = feature_index(feature_mask, attributions)
    m = n_features or max(counts)
    out = torch.zeros(len(attributions), m, dtype=attributions.dtype, device=attributions.device)
    return out.scatter_add_(1, index.flatten(1), attributions.flatten(1))


def coalition_scores(model: nn.Module, x: torch.Tensor, baseline: torch.Tensor, index: torch.Tensor, target: int,
                     masks: torch.Tensor, *, batch_size: int | None = None, desc: str = "coalitions") -> torch.Tensor:
    """The target logit (n,) of one sample ``x`` (1, ...) with the features outside each mask (n, M) replaced.

    ``index`` is the sample's feature number per element (from :func:`feature_index`), ``baseline``
    (1, ...) the values that replace missing features. The perturbed inputs are built chunk by
    chunk (memory bounded by :func:`xaicourse.batching.batched`). Chapter 08.
    """
    if not all(isinstance(t, torch.Tensor) for t in (x, baseline, index, masks)):
        raise TypeError("x, baseline, index and masks must be tensors (see feature_index and sample_coalitions)")
    if index.shape != x.shape or baseline.shape != x.shape or len(x) != 1:
        raise ValueError(f"give one sample x (1, ...) with index and baseline of its shape: x {tuple(x.shape)}, index "
                         f"{tuple(index.shape)}, baseline {tuple(baseline.shape)} (index comes from feature_index)")
    if masks.ndim != 2 or masks.dtype != torch.bool:
        raise ValueError(f"masks must be a bool tensor (n, M), one coalition per row, got {tuple(masks.shape)} {masks.dtype}")
    masks = masks.to(x.device)
    targets = torch.full((len(masks),), int(target), dtype=torch.long, device=x.device)
    out = torch.empty(len(masks), dtype=torch.float64, device=x.device)

    def run(items):
        keep = masks[items][:, index[0]]  # (n, *x.shape[1:]): each element follows its feature
        inputs = torch.where(keep, x, baseline)
        return select(run_model(model, inputs), targets[items])

    with torch.no_grad():
        for items, scores in batched(len(masks), run, model=model, batch_size=batch_size, grad=False, desc=desc):
            out[items] = scores.double()
    return out


@check_types
def spread_values(phi: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Feature values (M,) spread over the elements of one sample: each element gets phi_j / size_j. Chapter 08.

    ``index`` holds each element's feature number (:func:`feature_index`); the result has its shape.
    """
    sizes = torch.bincount(index.flatten(), minlength=len(phi)).to(phi)
    return (phi / sizes)[index]


@explainer
def kernel_shap(model: nn.Module, x: torch.Tensor, target=None, *, feature_mask, baseline=None, n_samples: int = 500,
                seed: int = 0, batch_size: int | None = None) -> torch.Tensor:
    """KernelSHAP attributions of the target logit over the features of ``feature_mask``: shaped like ``x``.

    A feature is "absent" when its elements take the ``baseline``'s values (None: zeros; a number;
    a tensor shaped like ``x`` or one sample). ``n_samples`` coalitions per sample (model passes),
    drawn with ``seed`` (:func:`sample_coalitions`); with ``n_samples >= 2^M - 2`` the values are
    the exact Shapley values of this game. Efficiency holds exactly for each sample:
    ``attributions[i].sum() = F(x_i) - F(baseline_i)``. Feature j's value is spread over its
    elements (see the module docstring; :func:`feature_values` gives the (B, M) values back).
    Chapter 08.
    """
    x = model_input(model, x, image=False)
    refs = as_baseline(baseline, x)
    index, counts = feature_index(feature_mask, x)
    for m in counts:
        check_samples(n_samples, m)
    with torch.no_grad():  # one pass gives the targets, F(x) and F(baseline)
        both = run_model(model, torch.cat([x, refs]))
        targets = resolve_targets(target, both[:len(x)])
        ends = select(both, torch.cat([targets, targets])).double()
    out = torch.empty_like(x)
    for i, m in enumerate(counts):
        masks, weights = sample_coalitions(m, n_samples, seed=seed)
        scores = coalition_scores(model, x[i:i + 1], refs[i:i + 1], index[i:i + 1], int(targets[i]), masks,
                                  batch_size=batch_size, desc="KernelSHAP")
        phi = _constrained_fit(masks, scores, weights, float(ends[len(x) + i]), float(ends[i]))
        out[i] = spread_values(phi.to(device=x.device, dtype=x.dtype), index[i])
    return check_conservation(out, out.flatten(1).double().sum(1), ends[:len(x)] - ends[len(x):], method="kernel_shap",
                              property="efficiency", stacklevel=4,
                              causes="The fit's efficiency constraint failed numerically: report it with the model and "
                                     "feature mask (a NaN or huge logit on a perturbed input can cause it).")


@explainer
def gradient_shap(model: nn.Module, x: torch.Tensor, target=None, *, baselines, n_samples: int = 50,
                  stdevs: float = 0.0, seed: int = 0, batch_size: int | None = None) -> torch.Tensor:
    """GradientSHAP (expected gradients) of the target logit: shaped like ``x``. Chapter 08.

    For each of ``n_samples`` draws per sample: a baseline b from ``baselines`` (K, ...) uniformly,
    alpha ~ U(0, 1), and Gaussian noise of std ``stdevs`` added to the input x' = x + noise; the
    draw contributes grad F(b + alpha (x' - b)) * (x' - b). The average is a Monte-Carlo estimate of
    Integrated Gradients averaged over the baselines (chapter 03's multi-baseline IG), so
    ``sum(attributions)`` approaches ``F(x) - mean_k F(b_k)`` as ``n_samples`` grows (exactly, for
    a linear model). Random draws come from ``torch.Generator().manual_seed(seed)`` on the CPU, one
    sample after the other: the result does not depend on ``batch_size``. Same estimator as Captum's
    ``GradientShap`` (which draws with NumPy's global generator instead).
    """
    x = model_input(model, x, image=False)
    refs = as_baselines(baselines, x)
    n = check_int("n_samples", n_samples, 1)
    sd = check_number("stdevs", stdevs, minimum=0.0)
    with torch.no_grad():
        logits = run_model(model, x)
        targets = resolve_targets(target, logits)
        ref_logits = torch.cat([chunk for _, chunk in batched(len(refs), lambda items: run_model(model, refs[items]),
                                                              model=model, grad=False)])
        change = (select(logits, targets) - ref_logits[:, targets].mean(0)).double()
    generator = torch.Generator().manual_seed(seed)
    total = len(x) * n
    which = torch.randint(len(refs), (total,), generator=generator).to(x.device)
    alphas = torch.rand(total, generator=generator, dtype=torch.float64).to(device=x.device, dtype=x.dtype)
    sample = torch.arange(total, device=x.device) // n
    shape = (-1,) + (1,) * (x.ndim - 1)
    out = torch.zeros_like(x)

    def run(items):
        noisy = x[sample[items]]
        if sd > 0:
            noise = torch.stack([torch.randn(x.shape[1:], generator=generator, dtype=x.dtype)
                                 for _ in range(items.start, items.stop)])
            noisy = noisy + sd * noise.to(x.device)
        start = refs[which[items]]
        point = (start + alphas[items].view(shape) * (noisy - start)).requires_grad_(True)
        with torch.enable_grad():
            score = select(run_model(model, point), targets[sample[items]]).sum()
            (grad,) = torch.autograd.grad(score, point)
        return grad * (noisy - start)

    draws = torch.empty(total, dtype=torch.float64, device=x.device)  # each draw's sum, for the sampling error
    for items, contrib in batched(total, run, model=model, batch_size=batch_size, grad=True, desc="GradientSHAP"):
        out.index_add_(0, sample[items], contrib)
        draws[items] = contrib.flatten(1).double().sum(1)
    out = out / n
    spread = draws.view(len(x), n).std(1) / n ** 0.5 if n > 1 else torch.full_like(change, float("nan"))
    worst = int(safe_divide(spread, change.abs(), fill=float("inf")).argmax()) if n > 1 and has_values(out) else 0
    return check_conservation(
        out, out.flatten(1).double().sum(1), change, method="gradient_shap", property="expected completeness",
        stacklevel=4, causes=f"A Monte-Carlo estimate with {n} draws: its sampling error alone is about "
                             f"{spread[worst].item() if has_values(out) else float('nan'):.3g} (one standard error) for "
                             f"sample {worst}; raise n_samples (the "
                             "error shrinks as 1/sqrt(n_samples)). With stdevs > 0 the promise is about the noisy inputs, "
                             "so F(x) itself is only approximated.")
