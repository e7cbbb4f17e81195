"""Concepts: does the model use a human-level concept for a class? CAVs and TCAV (Kim et al. 2018). Chapter 11.

A **concept activation vector** (CAV) is the unit normal of a linear classifier that separates a
layer's activations on images *with* the concept from its activations on random images. The
**TCAV score** of a class is the share of the class's inputs whose target logit increases when the
layer's activation moves along the CAV: the sign of the directional derivative
grad_layer(logit) . cav. A score says nothing on its own (a CAV against random images always exists):
the test is against CAVs of *random* images trained against other random images, over several random
sets, with a two-sided t-test (:func:`tcav`).

* :func:`layer_activations`: a layer's flattened activations (N, D), batched, without gradients.
* :func:`cav`: the CAV (a :class:`CAV`: unit vector, held-out accuracy), by L2-regularised logistic
  regression fitted with L-BFGS: deterministic, no extra dependency.
* :func:`directional_derivatives` and :func:`tcav_score`: per input, and the share > 0.
* :func:`tcav`: concept against ``n`` random sets, the random-vs-random null, the p-value
  (:class:`TCAVResult`); :func:`tcav_grid` the same for layers x concepts x classes, Bonferroni-corrected.

Captum's ``TCAV`` computes the same scores given the same CAVs (tests/test_concepts.py).
"""
from __future__ import annotations

import warnings

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .batching import batched
from .hooks import eval_mode, find_layer, record_layer
from .inputs import check_int, check_types
from .targets import resolve_targets, select

__all__ = ["CAV", "TCAVResult", "cav", "directional_derivatives", "layer_activations", "layer_gradients", "tcav",
           "tcav_grid", "tcav_score"]


@dataclass(frozen=True)
class CAV:
    """A concept activation vector: ``vector`` (D,) of unit length pointing towards the concept, and the
    linear classifier's ``accuracy`` on the held-out share of the activations. Chapter 11."""
    vector: torch.Tensor
    accuracy: float
    bias: float


@dataclass(frozen=True)
class TCAVResult:
    """:func:`tcav`'s result. Chapter 11.

    ``scores`` (n_random,): the concept's TCAV score against each random set; ``null`` (n_random - 1,):
    random set 0 against each other random set (what a concept of no meaning scores); ``accuracies``:
    the concept CAVs' held-out accuracies; ``p_value``: two-sided t-test of scores against null;
    ``significant``: p < ``alpha`` (in either direction: compare ``mean`` with ``null`` to read which).
    """
    scores: torch.Tensor
    null: torch.Tensor
    accuracies: torch.Tensor
    p_value: float
    alpha: float

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha

    @property
    def mean(self) -> float:
        return float(self.scores.mean())


@check_types
def layer_activations(model: nn.Module, layer, x: torch.Tensor, *, batch_size: int | None = None,
                      pool: int | None = None) -> torch.Tensor:
    """``layer``'s output on ``x``, flattened per input: (N, D) float32 on the CPU. Chapter 11.

    ``pool``: average a convolutional output (N, C, H, W) over a ``pool`` x ``pool`` grid of regions
    first (D = C * pool * pool), so that a probe on an early layer does not face C * H * W features;
    other outputs are flattened as they are.
    """
    find_layer(model, layer)
    if pool is not None:
        check_int("pool", pool, minimum=1)

    def run(items: slice) -> torch.Tensor:
        with record_layer(model, layer) as rec, torch.no_grad():
            model(x[items])
        acts = rec.activations
        if pool is not None and acts.dim() == 4:
            acts = nn.functional.adaptive_avg_pool2d(acts, pool)
        return acts.flatten(1).float().cpu()

    with eval_mode(model):
        return torch.cat([chunk for _, chunk in batched(len(x), run, model=model, batch_size=batch_size, grad=False,
                                                       desc="activations", progress=False)])


@check_types
def cav(concept: torch.Tensor, random: torch.Tensor, *, l2: float = 1e-2, test_share: float = 0.33,
        seed: int = 0) -> CAV:
    """The CAV separating ``concept`` activations (N1, D) from ``random`` ones (N2, D). Chapter 11.

    Logistic regression (concept = 1) on a random ``1 - test_share`` of each set, with an L2 penalty
    ``l2`` on the weights (features standardised by the training set's scale first, so that ``l2``
    means the same at every layer); the CAV is the weight vector in the layer's own units,
    normalised. ``accuracy`` is measured on the rest: a CAV near 0.5 separates nothing, and its TCAV
    scores mean nothing.
    """
    if concept.dim() != 2 or random.dim() != 2 or concept.shape[1] != random.shape[1]:
        raise ValueError(f"concept and random must be activations (N, D) with the same D, got "
                         f"{tuple(concept.shape)} and {tuple(random.shape)}: flatten them (layer_activations does)")
    if not 0 < test_share < 1:
        raise ValueError(f"test_share must be in (0, 1), got {test_share}")
    if min(len(concept), len(random)) < 4:
        raise ValueError(f"need at least 4 activations per set to train and test a CAV, got {len(concept)} and "
                         f"{len(random)}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.cat([concept, random]).double()
    y = torch.cat([torch.ones(len(concept)), torch.zeros(len(random))]).double()
    test = torch.zeros(len(x), dtype=torch.bool)
    for start, n in ((0, len(concept)), (len(concept), len(random))):
        test[start + torch.randperm(n, generator=gen)[:max(1, round(test_share * n))]] = True
    train_x, train_y = x[~test], y[~test]
    mean, scale = train_x.mean(0), train_x.std(0).clamp(min=1e-8)
    z = (train_x - mean) / scale
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(z @ w + b, train_y) + l2 * (w ** 2).sum()
        loss.backward()
        return loss
    with torch.enable_grad():
        optimizer.step(closure)
    w, b = w.detach() / scale, (b - (w / scale * mean).sum()).detach()   # back to the layer's own units
    accuracy = ((x[test] @ w + b > 0).double() == y[test]).double().mean().item()
    norm = w.norm()
    return CAV((w / norm).float(), accuracy, float(b / norm))


@check_types
def layer_gradients(model: nn.Module, layer, x: torch.Tensor, target, *, batch_size: int | None = None) -> torch.Tensor:
    """The gradient of each input's target logit with respect to ``layer``'s output, flattened: (N, D). Chapter 11."""
    find_layer(model, layer)

    def run(items: slice) -> torch.Tensor:
        chunk = x[items].detach().requires_grad_()   # so a layer with no parameters before it still has a graph
        with record_layer(model, layer, keep_graph=True) as rec, torch.enable_grad():
            logits = model(chunk)
            targets = resolve_targets(target[items] if isinstance(target, torch.Tensor) and target.dim() == 1
                                      else target, logits)
            grad, = torch.autograd.grad(select(logits, targets).sum(), rec.activations)
        return grad.flatten(1).float().cpu()

    with eval_mode(model):
        return torch.cat([chunk for _, chunk in batched(len(x), run, model=model, batch_size=batch_size,
                                                       desc="layer gradients", progress=False)])


def _along(grads: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    vector = torch.as_tensor(vector).flatten().float()
    if vector.numel() != grads.shape[1]:
        raise ValueError(f"the vector has {vector.numel()} entries but the layer has {grads.shape[1]} per input: use "
                         "a CAV trained on this layer's activations")
    return grads @ vector


@check_types
def directional_derivatives(model: nn.Module, layer, x: torch.Tensor, target, vector: torch.Tensor) -> torch.Tensor:
    """grad_layer(target logit) . ``vector`` for each input: (N,). Chapter 11."""
    return _along(layer_gradients(model, layer, x, target), vector)


@check_types
def tcav_score(model: nn.Module, layer, x: torch.Tensor, target, vector: torch.Tensor) -> float:
    """Share of inputs whose target logit rises along ``vector`` at ``layer`` (sign count). Chapter 11."""
    return (directional_derivatives(model, layer, x, target, vector) > 0).float().mean().item()


def _scores(grads: torch.Tensor, cavs) -> torch.Tensor:
    return torch.tensor([(_along(grads, c.vector) > 0).float().mean().item() for c in cavs])


def _result(concept_cavs, null_scores, grads, alpha) -> TCAVResult:
    from scipy.stats import ttest_ind

    concept_scores = _scores(grads, concept_cavs)
    if torch.cat([concept_scores, null_scores]).std() == 0:   # identical scores: no evidence either way
        p = 1.0
    else:
        with warnings.catch_warnings():   # nearly identical scores (all 1.00, say): scipy warns, the p-value stands
            warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
            p = float(ttest_ind(concept_scores.numpy(), null_scores.numpy()).pvalue)
    return TCAVResult(concept_scores, null_scores, torch.tensor([c.accuracy for c in concept_cavs]),
                      1.0 if np.isnan(p) else p, alpha)


NULLS = ("shared", "pairs")


def _null_cavs(random_acts: list, null: str, seed: int) -> list:
    """The null's random-vs-random CAVs. ``"shared"``: random set 0 against each other set (one CAV per set, but
    all share set 0); ``"pairs"``: disjoint pairs (0, 1), (2, 3), ... (half as many CAVs, independent)."""
    if null == "shared":
        return [cav(random_acts[0], r, seed=seed + 100 + i) for i, r in enumerate(random_acts[1:])]
    return [cav(random_acts[i], random_acts[i + 1], seed=seed + 100 + i) for i in range(0, len(random_acts) - 1, 2)]


def _check_null(null, n_randoms: int) -> None:
    if null not in NULLS:
        raise ValueError(f"null must be one of {NULLS} (random set 0 against the others, or disjoint pairs), got {null!r}")
    if null == "pairs" and n_randoms < 4:
        raise ValueError(f"null='pairs' needs at least 4 random sets (two independent null CAVs), got {n_randoms}")


def _check_randoms(randoms) -> list:
    randoms = list(randoms)
    if len(randoms) < 3:
        raise ValueError(f"need at least 3 random sets (one for the null against two others), got {len(randoms)}; "
                         "Kim et al. use tens")
    return randoms


@check_types
def tcav(model: nn.Module, layer, concept: torch.Tensor, randoms, x: torch.Tensor, target, *,
         alpha: float = 0.05, seed: int = 0, null: str = "shared") -> TCAVResult:
    """The TCAV test of a concept for ``target`` on inputs ``x``, against random image sets. Chapter 11.

    ``concept`` (N, C, H, W): images with the concept; ``randoms``: a list of at least 3 image tensors
    without it (random images). One CAV is trained for the concept against each random set, and the
    null's random-vs-random CAVs (``null="shared"``: random set 0 against each other set; ``"pairs"``:
    disjoint pairs of random sets, independent of each other); their TCAV scores on ``x`` are compared
    with a two-sided t-test (Kim et al. 2018, section 3.2). ``alpha``: the significance level (divide it
    by the number of tests you run: Bonferroni, or use :func:`tcav_grid`, which does).
    """
    randoms = _check_randoms(randoms)
    check_int("seed", seed, minimum=0)
    _check_null(null, len(randoms))
    acts = [layer_activations(model, layer, images) for images in [concept, *randoms]]
    concept_cavs = [cav(acts[0], r, seed=seed + i) for i, r in enumerate(acts[1:])]
    null_cavs = _null_cavs(acts[1:], null, seed)
    grads = layer_gradients(model, layer, x, target)   # once: each CAV is a dot product with them
    return _result(concept_cavs, _scores(grads, null_cavs), grads, alpha)


@check_types
def tcav_grid(model: nn.Module, layers, concepts: dict, randoms, inputs: dict, *, alpha: float = 0.05,
              seed: int = 0, null: str = "shared", progress: bool | None = None) -> dict:
    """:func:`tcav` for every (layer, concept, target): {(layer, concept name, target): TCAVResult}. Chapter 11.

    ``concepts``: name -> images with the concept; ``inputs``: target class -> its images. The same
    numbers as calling :func:`tcav` on each cell, at a fraction of the cost: each layer's random
    activations, null CAVs and each target's gradients are computed once. The significance level of
    every result is ``alpha`` divided by the number of cells (Bonferroni: a grid of 20 tests at 0.05
    would otherwise call one random concept significant on average). ``null``: as in :func:`tcav`.
    """
    from tqdm.auto import tqdm

    randoms = _check_randoms(randoms)
    check_int("seed", seed, minimum=0)
    _check_null(null, len(randoms))
    if not concepts or not inputs:
        raise ValueError("give at least one concept (name -> images) and one target (class -> images)")
    layers = [layers] if isinstance(layers, (str, nn.Module)) else list(layers)
    corrected = alpha / (len(layers) * len(concepts) * len(inputs))
    out = {}
    quiet = len(layers) < 2 if progress is None else not progress
    for layer in tqdm(layers, desc="TCAV per layer", disable=quiet):
        random_acts = [layer_activations(model, layer, images) for images in randoms]
        null_cavs = _null_cavs(random_acts, null, seed)
        grads = {t: layer_gradients(model, layer, x, t) for t, x in inputs.items()}
        nulls = {t: _scores(g, null_cavs) for t, g in grads.items()}
        for name, images in concepts.items():
            acts = layer_activations(model, layer, images)
            concept_cavs = [cav(acts, r, seed=seed + i) for i, r in enumerate(random_acts)]
            for t, g in grads.items():
                out[(layer, name, t)] = _result(concept_cavs, nulls[t], g, corrected)
    return out
