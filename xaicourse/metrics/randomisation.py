"""Randomisation: does the map depend on what the model learned? Chapter 07.

* :func:`randomization_sanity_check` (Adebayo et al. 2018, model parameter randomisation; Quantus's
  MPRT): re-initialise layers from the top down and measure how much the map changes.
* :func:`noise_floor`: how much a method's map changes between two *seeds* on the same model. A
  random method (SmoothGrad with few samples) is compared with itself first: a randomised-model
  similarity at the level of that floor is the method's own noise, not a sign that it noticed the
  weights. :func:`randomization_passed` is the pass/fail rule against the floor.
* :func:`data_randomization` (Adebayo et al. 2018, data randomisation test): train the same recipe
  on true and on permuted labels; a map that looks the same for a model that learned nothing fails.
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass

import torch
from torch import nn

from ..hooks import eval_mode, find_layer
from ..inputs import check_int, check_number, check_types
from ..targets import resolve_targets
from . import _training
from ._common import (call_method, check_images, check_method, constant, logits, pixel_map, spearman, ssim,
                      takes_seed, warn_no_map)

__all__ = ["DataRandomization", "PASS_RATIO", "SanityCheck", "data_randomization", "noise_floor",
           "permuted_label_models", "randomization_passed", "randomization_sanity_check"]

PASS_RATIO = 0.5  # a pass: the randomised-model similarity is at most half the method's seed-to-seed similarity


@dataclass(frozen=True)
class SanityCheck:
    """Result of :func:`randomization_sanity_check`. Chapter 07.

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
    Maps are compared as :func:`pixel_map` (``absolute``) by Spearman rank correlation (ties get
    their average rank) and SSIM of the [0, 1]-normalised maps. A constant map (all-zero included)
    has no ranking: its similarities are NaN ("no map") and a
    :class:`~xaicourse.metrics.NoMapWarning` names the sample (and the layer, when the randomised
    model's map is the constant one).
    """
    from tqdm.auto import tqdm

    check_method(method)
    x = check_images(model, x)
    with eval_mode(model):
        targets = resolve_targets(target, logits(model, x))
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
    _warn_constant("randomization_sanity_check", original, randomized, [name for name, _ in chosen])
    rho = torch.tensor([[spearman(o, r) for o, r in zip(original, maps)] for maps in randomized]).view(-1, len(x))
    structure = torch.tensor([[ssim(o, r) for o, r in zip(original, maps)] for maps in randomized]).view(-1, len(x))
    return SanityCheck([name for name, _ in chosen], rho, structure, original, randomized, cascade)


def _warn_constant(metric: str, original: torch.Tensor, randomized: torch.Tensor, layers: list[str]) -> None:
    """NoMapWarning for the samples whose original map, or whose map at a randomised layer, is constant."""
    empty = constant(original)
    warn_no_map(metric, empty, "a constant map on the intact model: it has no ranking to compare",
                "its similarities are NaN")
    for name, maps in zip(layers, randomized):
        warn_no_map(f"{metric} (layer {name!r} randomised)", constant(maps) & ~empty,
                    "a constant map on the randomised model: it has no ranking to compare",
                    "its similarity at this layer is NaN")


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


def noise_floor(model: nn.Module, method, x: torch.Tensor, target=None, *, seeds=(0, 1, 2),
                absolute: bool = True) -> torch.Tensor:
    """Mean Spearman correlation between the maps of different seeds on the same model, (B,). Chapter 07.

    ``method(model, x, targets, seed=s)`` is called for each seed of ``seeds`` when it takes a
    ``seed`` (e.g. ``lambda m, x, t, seed=0: xc.saliency.smoothgrad(m, x, t, seed=seed)``); a
    method without one is deterministic and called twice (its floor is 1 unless it is random
    anyway). The maps are :func:`pixel_map` (``absolute``), the correlation (average ranks for
    ties) is averaged over all pairs of seeds. This is the similarity a randomised model must fall
    clearly below. A sample whose map is constant for some seed has no floor: NaN, with a
    :class:`~xaicourse.metrics.NoMapWarning` (and :func:`randomization_passed` fails it).
    """
    check_method(method)
    x = check_images(model, x)
    seeds = list(seeds)
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be two or more different seeds, got {seeds}")
    with eval_mode(model):
        targets = resolve_targets(target, logits(model, x))
    seeded = takes_seed(method)
    maps = [pixel_map(call_method(method, model, x, targets, seed if seeded else None), absolute).cpu()
            for seed in (seeds if seeded else seeds[:2])]
    warn_no_map("noise_floor", torch.stack([constant(m) for m in maps]).any(dim=0),
                "a constant map for at least one seed: it has no ranking to compare", "its floor is NaN")
    pairs = list(itertools.combinations(maps, 2))
    return torch.tensor([[spearman(a[i], b[i]) for a, b in pairs] for i in range(len(x))]).mean(dim=1)


@check_types
def randomization_passed(similarity: torch.Tensor, floor: torch.Tensor, ratio: float = PASS_RATIO,
                         top: torch.Tensor | None = None) -> torch.Tensor:
    """The pass/fail rule of the sanity badge: |similarity| <= ``ratio`` * floor, elementwise (bool). Chapter 07.

    ``similarity``: the Spearman correlation of the original map with the randomised model's map
    (e.g. the mean |Spearman| over a cascade's stops); ``floor``: :func:`noise_floor`. ``top``: the
    similarity at the cascade's first stop (only the top layer randomised); when given, it must pass
    the same bound, so a map that survives a random classifier cannot pass on the strength of the
    later stops alone (IG on the cat: 0.70 with the classifier random, near 0 with every layer).
    A method whose maps disagree with themselves from seed to seed (a low floor) cannot pass: its
    change under randomisation cannot be told from its noise. A map that ignores the model (floor 1,
    similarity 1) fails, and so does a sample without a map (NaN similarity or floor).

    This is the course's own rule, a heuristic: Adebayo et al. (2018) show the similarity curves and
    judge them by eye; the rule makes the judgement repeatable, with the method's own noise as the
    yardstick and 0.5 as the margin.
    """
    ratio = check_number("ratio", ratio, above=0, maximum=1)
    similarity, floor = torch.as_tensor(similarity).float(), torch.as_tensor(floor).float()
    passed = (similarity.abs() <= ratio * floor) & (floor > 0)  # NaN (no map) compares False: a fail
    if top is not None:
        passed &= torch.as_tensor(top).float().abs() <= ratio * floor
    return passed


@dataclass(frozen=True)
class DataRandomization:
    """Result of :func:`data_randomization`. Chapter 07.

    ``spearman``, ``ssim`` (B,): similarity of the map of the model trained on permuted labels with
    the map of the model trained on the true labels; ``original``, ``randomized`` (B, H, W): the two
    maps; ``accuracy``: {"true labels": train and test accuracy, "permuted labels": accuracy on the
    permuted training labels and on the true test labels}.
    """

    spearman: torch.Tensor
    ssim: torch.Tensor
    original: torch.Tensor
    randomized: torch.Tensor
    accuracy: dict


def permuted_label_models(train=None, test=None, *, make_model=None, epochs: int = 10, seed: int = 0):
    """Two models of the same recipe, one trained on the true labels, one on permuted labels. Chapter 07.

    Returns ``(true_model, permuted_model, accuracy)``: models from ``make_model()`` (default
    ``models.ShapesCNN(width=8)``) trained for ``epochs`` on ``train`` (``images`` and ``labels``;
    default 1000 shapes images of 32 x 32 without a marker), the labels permuted with ``seed``;
    ``accuracy``: {"true labels" / "permuted labels": {"train": on the labels it was trained on,
    "test": on the true labels of ``test``}}. Train once, explain many methods with
    :func:`data_randomization`'s ``models=``.
    """
    epochs = check_int("epochs", epochs)
    train = _training.default_split("train") if train is None else train
    test = _training.default_split("test") if test is None else test
    n_classes = int(train.labels.max()) + 1
    make_model = make_model or (lambda: _training.shapes_model(n_classes))
    permuted = train.labels[torch.randperm(len(train.labels), generator=torch.Generator().manual_seed(seed))]
    true_model = _training.fit(make_model, train.images, train.labels, seed=seed, epochs=epochs)
    random_model = _training.fit(make_model, train.images, permuted, seed=seed, epochs=epochs)
    accuracy = {"true labels": {"train": _training.accuracy(true_model, train.images, train.labels),
                                "test": _training.accuracy(true_model, test.images, test.labels)},
                "permuted labels": {"train": _training.accuracy(random_model, train.images, permuted),
                                    "test": _training.accuracy(random_model, test.images, test.labels)}}
    _training.warn_if_chance(accuracy["true labels"]["test"], test.labels, "the model trained on the true labels")
    return true_model, random_model, accuracy


def data_randomization(method, x: torch.Tensor, target=None, *, models=None, train=None, test=None, make_model=None,
                       epochs: int = 10, seed: int = 0, absolute: bool = True) -> DataRandomization:
    """Adebayo et al.'s data randomisation test: the same recipe on true and on permuted labels. Chapter 07.

    ``models``: the ``(true_model, permuted_model, accuracy)`` of :func:`permuted_label_models`, or
    None to train them here (with ``train``, ``test``, ``make_model``, ``epochs``, ``seed``). Both
    models are explained on ``x`` for ``target`` (None = the true-label model's prediction, kept for
    both) and the maps compared (Spearman, SSIM of :func:`pixel_map`). The permuted-label model
    learned nothing that generalises (see its test accuracy in ``accuracy``): a map that stays
    similar does not explain what a model learned.
    """
    check_method(method)
    if models is None:
        models = permuted_label_models(train, test, make_model=make_model, epochs=epochs, seed=seed)
    if not (isinstance(models, tuple) and len(models) == 3 and all(isinstance(m, nn.Module) for m in models[:2])):
        raise TypeError("models must be the (true_model, permuted_model, accuracy) of "
                        "xc.metrics.permuted_label_models(...)")
    true_model, random_model, accuracy = models
    x = check_images(true_model, x)
    targets = resolve_targets(target, logits(true_model, x))
    original = pixel_map(call_method(method, true_model, x, targets), absolute).cpu()
    randomized = pixel_map(call_method(method, random_model, x, targets), absolute).cpu()
    warn_no_map("data_randomization", constant(original) | constant(randomized),
                "a constant map (true-label or permuted-label model): it has no ranking to compare",
                "its similarities are NaN")
    return DataRandomization(torch.tensor([spearman(a, b) for a, b in zip(original, randomized)]),
                             torch.tensor([ssim(a, b) for a, b in zip(original, randomized)]),
                             original, randomized, accuracy)
