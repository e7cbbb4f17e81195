"""Probing classifiers, and the control task that tells reading from memorising. Chapter 11.

A **probe** (Alain & Bengio 2016) is a classifier trained on a layer's activations to predict a
property of the input. Its held-out accuracy says the property is *linearly readable* there; not that
the model *uses* it (TCAV and intervention ask that). A probe can also score well by memorising:
Hewitt & Liang (2019, *Designing and interpreting probes with control tasks*) give every *type* of
input (for words: the word itself; for our shapes: shape, colour and marker corner) a random label,
fixed per type. A probe that predicts these control labels on held-out inputs has learnt to recognise
the types, not the property; **selectivity** = task accuracy - control accuracy says how much of
the task accuracy the property itself explains.

* :func:`linear_probe`: multinomial logistic regression by full-batch L-BFGS (float64, features
  standardised on the training split, L2 penalty), held-out accuracy on a seeded split.
* :func:`control_labels`: Hewitt & Liang's control task for given types.
* :func:`selectivity`: task and control probes on the same split; :func:`probe_layers` for several
  layers and properties of one model.

What they find on the shapes CNNs (900 images with the marker in a random corner, 630 to train and 270
to test; types = shape x dominant colour channel x marker corner, 27 of them, each seen about 23 times
in training; 3 control classes, majority share 0.459; tests/test_probes.py checks four cells). Held-out
accuracy of the task probe (the control probe's in the last column); "random" is the clean model with
every layer's ``reset_parameters()`` after ``torch.manual_seed(0)``:

::

    layer (pool 4)  clean shape/corner  shortcut shape/corner  random shape/corner  control c/s/r
    features.2        0.719 / 1.000        0.533 / 1.000          0.381 / 1.000     0.50 0.54 0.51
    features.6        0.915 / 1.000        0.752 / 1.000          0.456 / 1.000     0.53 0.53 0.47
    features.9        0.963 / 1.000        0.815 / 1.000          0.504 / 1.000     0.57 0.52 0.54
    features.10       0.959 / 0.974        0.811 / 1.000          0.452 / 1.000     0.57 0.53 0.47
    head.1 (GAP)      0.978 / 0.478        0.515 / 0.996          0.344 / 0.963     0.54 0.47 0.47
    pixels (4x4)      0.293 / 0.989

* the marker's corner is readable at every convolutional block of both trained models *and of the
  random copy* (and from 4x4-averaged pixels): readable is not used;
* after global average pooling (``head.1``) the shortcut model keeps it (0.996), the random copy too
  (0.963), the clean model has discarded it (0.478; chance 0.359): training removed what it did not need;
* the shape becomes readable with depth in the clean model, far less in the shortcut model (0.515 at
  ``head.1``: it never needed the shape), never in the random copy;
* the control task stays near its chance (0.47 to 0.57) although the control probe fits its training
  split (train accuracy up to 0.99 at ``features.6``): it fits noise, it cannot recognise 27 types, so
  selectivity (0.4 to 0.5 where the task is read) is close to the task accuracy above chance. Hewitt &
  Liang's warning is about probes expressive enough to recognise types; on the clean model even a one-hidden-
  layer MLP (256 units, Adam) reaches only 0.57 to 0.63 and a 1-nearest-neighbour memoriser 0.47 to 0.54,
  while on features that name the type (its one-hot code) the same linear probe scores 1.000.

The five layers of one model take 8.5 to 10 s on one CPU thread of this shared 2-core machine
(benchmarks/bench_concepts.py times four).

Deterministic: the same arguments give the same numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .concepts import layer_activations
from .inputs import check_int, check_number, check_types

__all__ = ["ProbeResult", "Selectivity", "control_labels", "linear_probe", "probe_layers", "selectivity"]


@dataclass(frozen=True)
class ProbeResult:
    """:func:`linear_probe`'s result: ``train_accuracy``, ``test_accuracy`` (held out), ``chance`` (the
    share of the test split's most common label), ``n_features``. Chapter 11."""

    train_accuracy: float
    test_accuracy: float
    chance: float
    n_features: int


@dataclass(frozen=True)
class Selectivity:
    """:func:`selectivity`'s result: the ``task`` and ``control`` probes; ``selectivity`` = task - control
    test accuracy. Chapter 11."""

    task: ProbeResult
    control: ProbeResult

    @property
    def selectivity(self) -> float:
        return self.task.test_accuracy - self.control.test_accuracy


def _check(acts: torch.Tensor, labels: torch.Tensor) -> None:
    if acts.dim() != 2 or labels.dim() != 1 or len(acts) != len(labels):
        raise ValueError(f"acts must be (N, D) with one label per row, got acts {tuple(acts.shape)} and labels "
                         f"{tuple(labels.shape)}: flatten each input's activation (concepts.layer_activations does)")
    if labels.dtype in (torch.float16, torch.float32, torch.float64) or len(labels.unique()) < 2:
        raise ValueError("labels must be integer class labels with at least two classes")


def _split(n: int, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = max(1, round(test_fraction * n))
    return order[n_test:], order[:n_test]


def _fit(x: torch.Tensor, y: torch.Tensor, n_classes: int, weight_decay: float) -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], lr=1.0, max_iter=500, tolerance_grad=1e-9, tolerance_change=1e-12,
                                  history_size=20, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(x @ w + b, y) + weight_decay * (w ** 2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach(), b.detach()


@check_types
def linear_probe(acts: torch.Tensor, labels: torch.Tensor, *, test_fraction: float = 0.3, weight_decay: float = 1e-2,
                 seed: int = 0) -> ProbeResult:
    """A linear probe for ``labels`` (N,) from ``acts`` (N, D), scored on a held-out split. Chapter 11.

    Multinomial logistic regression with an L2 penalty ``weight_decay`` on standardised features,
    trained on a random ``1 - test_fraction`` of the rows (seeded) by L-BFGS to convergence.
    """
    _check(acts, labels)
    test_fraction = check_number("test_fraction", test_fraction, above=0.0, maximum=0.9)
    weight_decay = check_number("weight_decay", weight_decay, minimum=0.0)
    train, test = _split(len(acts), test_fraction, check_int("seed", seed, minimum=0))
    x = acts.detach().double().cpu()
    mean, std = x[train].mean(0), x[train].std(0).clamp(min=1e-8)
    x = (x - mean) / std
    y = labels.long().cpu()
    w, b = _fit(x[train], y[train], int(y.max()) + 1, weight_decay)
    predicted = (x @ w + b).argmax(1)
    return ProbeResult(train_accuracy=float((predicted[train] == y[train]).double().mean()),
                       test_accuracy=float((predicted[test] == y[test]).double().mean()),
                       chance=float(y[test].bincount().max() / len(test)), n_features=x.shape[1])


@check_types
def control_labels(types: torch.Tensor, n_classes: int, *, seed: int = 0) -> torch.Tensor:
    """Hewitt & Liang's control task: each distinct type gets one random label in [0, n_classes). Chapter 11.

    ``types``: (N,) or (N, k) integers, one row per input (e.g. shape, colour and marker corner); two
    inputs of the same type always get the same label, so the labels can be learnt only by recognising
    types. Returns (N,) int64.
    """
    if types.dim() not in (1, 2) or types.dtype.is_floating_point:
        raise ValueError(f"types must be integers (N,) or (N, k), one row per input, got {types.dtype} "
                         f"{tuple(types.shape)}")
    n_classes = check_int("n_classes", n_classes, minimum=2)
    rows = types.reshape(len(types), -1)
    _, type_index = rows.unique(dim=0, return_inverse=True)
    g = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
    label_of_type = torch.randint(n_classes, (int(type_index.max()) + 1,), generator=g)
    return label_of_type[type_index]


@check_types
def selectivity(acts: torch.Tensor, labels: torch.Tensor, types: torch.Tensor, *, test_fraction: float = 0.3,
                weight_decay: float = 1e-2, seed: int = 0) -> Selectivity:
    """The task probe for ``labels`` and the control probe for ``types``' control labels, on one split. Chapter 11.

    The control task has as many classes as the task; its labels come from :func:`control_labels`.
    """
    _check(acts, labels)
    if len(types) != len(labels):
        raise ValueError(f"types must have one row per input: {len(types)} rows for {len(labels)} labels")
    control = control_labels(types, int(labels.max()) + 1, seed=seed)
    kwargs = dict(test_fraction=test_fraction, weight_decay=weight_decay, seed=seed)
    return Selectivity(linear_probe(acts, labels, **kwargs), linear_probe(acts, control, **kwargs))


@check_types
def probe_layers(model: nn.Module, layers, images: torch.Tensor, properties: dict, types: torch.Tensor, *,
                 pool: int | None = 4, progress: bool | None = None, **kwargs) -> dict:
    """:func:`selectivity` at each layer for each property: {(layer, property name): Selectivity}. Chapter 11.

    ``properties``: name -> labels (N,) of ``images``; ``types``: the control task's types (N, k).
    Convolutional outputs are averaged over a ``pool`` x ``pool`` grid of regions first
    (:func:`xaicourse.concepts.layer_activations`); ``kwargs`` (test_fraction, weight_decay, seed) go to
    :func:`linear_probe`. The same numbers as :func:`selectivity` per cell; the control probe is
    trained once per layer and number of classes.
    """
    from tqdm.auto import tqdm

    if not properties:
        raise ValueError("properties must name at least one property: {name: labels (N,)}")
    layers = [layers] if isinstance(layers, str) else list(layers)
    out = {}
    seed = kwargs.get("seed", 0)
    for layer in tqdm(layers, desc="probes per layer", disable=len(layers) < 2 if progress is None else not progress):
        acts = layer_activations(model, layer, images, pool=pool)
        controls = {}   # one control probe per number of classes: the same for every property
        for name, labels in properties.items():
            _check(acts, labels)
            n = int(labels.max()) + 1
            if n not in controls:
                controls[n] = linear_probe(acts, control_labels(types, n, seed=seed), **kwargs)
            out[(layer, name)] = Selectivity(linear_probe(acts, labels, **kwargs), controls[n])
    return out
