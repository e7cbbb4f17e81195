"""Ground truth by retraining: training-data attribution scored against the real thing. Chapter 12.

:mod:`xaicourse.influence` estimates how each training example moved a test prediction. On the models of
Captum's, TRAK's or dattri's tutorials nobody can check the estimate: it would take thousands of retrainings.
Here the model is small enough to retrain hundreds of times, so the truth is measured:

* **leave-one-out** (LOO): retrain without training example i and record how much each test example's margin
  drops, ``margin(full) - margin(without i)`` (positive: i was a proponent).
* **random subsets** (Park et al. 2023): retrain on 200 random halves of the training set and record every test
  margin. The *linear datamodeling score* :func:`lds` asks whether a method's scores, summed over a subset, rank
  the subsets as retraining does (a Spearman correlation per test example, averaged).
* **planted mislabels**: flip 5 % of the training labels (seeded); self-influence
  (:func:`xaicourse.influence.self_influence`) should rank them first; retraining without the flagged examples
  shows what removing them buys.

The setup, and why (:data:`SETUP`)
----------------------------------
Retraining must be cheap (about 0.2 s, so 500 retrainings fit in two minutes) and deterministic
(removing an example must be the *only* change, or the truth drowns in training noise):

* **Inputs**: 300 training and 100 test shapes images (32x32, ``marker=0.0``; fresh draws, not the images the
  CNN was trained on), passed through the *frozen* first two blocks of the shipped clean shapes CNN
  (``models.shapes_cnn("clean").features[:8]``, global average pooled: 32 mid-level features), standardised with
  the full training set's mean and std (part of the fixed feature extractor: removing an example does not change
  it). The features are stored in the cache: the CNN's float32 convolutions differ in their last bits between
  CPUs, so every machine retrains on the stored bits (and :func:`load` checks that the CNN still computes them).
  Training a shapes CNN end to end takes 60 ms a step on one thread, far too slow for hundreds of retrainings;
  mid-level rather than last-block features leave the head work to do (93 % test accuracy instead of 97 %).
* **Model**: the network that is retrained is a two-layer head, Linear(32, 32) - tanh - Linear(32, 3), 1,155
  parameters: non-convex (a hidden layer), smooth (tanh, so the Hessian exists everywhere), in float64 (LOO
  effects are small; float32 rounding would blur them).
* **Training**: full-batch gradient descent, lr 0.5, weight decay 1e-3, 300 steps, the same initial weights
  (seed 0) for every retraining. No minibatch order, no dropout, no random init: the same training set gives
  bit-identical weights on one machine (a test checks it), and a removed example changes only the loss being
  descended. Weights are saved every 30 steps (10 checkpoints) for TracInCP, with learning rate
  ``lr * 30 / n_train`` per checkpoint: TracIn's scores then have the units of a change in test loss. Summed over the
  training set, TracIn over *every* step reproduces the drop of each test loss during training (correlation
  0.99, tests/test_retraining.py); over the 10 checkpoints it does not (correlation 0.49, 11 times too large):
  the first checkpoint, the initial weights with their large gradients, stands for 30 steps.

This is the most favourable setting for the methods: with SGD's sampling noise and a random init LOO effects are
mostly noise (Basu et al. 2021; Bae et al. 2022). Nothing here was tuned to make a method look good: the
settings above were fixed before any method was scored.

How the methods score against this truth is :mod:`xaicourse.tda` (``python -m xaicourse.tda``).

Regenerate the cache (data/influence_truth.pt, about 0.4 MB) with ``python -m xaicourse.retraining``: about two
minutes on one CPU thread (505 retrainings of about 0.07-0.19 s, with progress bars; 34 s and 80 s measured on
two machines), then the methods' table (about 10 s). The chapter reads it with :func:`load`."""
from __future__ import annotations

import argparse
import functools
import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from . import data, influence, models, paths
from .inputs import check_int, check_number, check_types, positive_int

__all__ = ["CACHE_FILE", "Problem", "Run", "SETUP", "build", "check_problem", "leave_one_out", "load", "loss_fn", "margins",
           "mislabel_experiment", "new_model", "problem", "random_subsets", "retrain", "subset_outputs", "train"]

#: Every setting of the retraining ground truth (the module docstring says why each was chosen).
SETUP = dict(n_train=300, train_seed=21, n_test=100, test_seed=22, n_accuracy=500, accuracy_seed=23,
             feature_layers=8, hidden=32, init_seed=0, lr=0.5, weight_decay=1e-3, steps=300, checkpoint_every=30,
             n_subsets=200, subset_fraction=0.5, subset_seed=0, mislabel_fraction=0.05, mislabel_seed=1)
CACHE_FILE = "influence_truth.pt"
REGENERATE = "python -m xaicourse.retraining"


def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The training loss, mean cross-entropy (what every method differentiates). Chapter 12."""
    return nn.functional.cross_entropy(logits, y)


# --------------------------------------------------------------------------------------------
# The data: frozen CNN features of fresh shapes images
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """The features and labels of the three splits (float64 features (n, 32), int64 labels). Chapter 12.

    ``flipped``: which training labels were flipped (all False without planted mislabels); the
    accuracy split is always correctly labelled.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_accuracy: torch.Tensor
    y_accuracy: torch.Tensor
    flipped: torch.Tensor = field(repr=False)

    @property
    def train(self) -> tuple:
        return self.x_train, self.y_train

    @property
    def test(self) -> tuple:
        return self.x_test, self.y_test


@functools.lru_cache(maxsize=2)   # the stored and the computed features; always called with fresh positional
def _features(fresh: bool = False) -> tuple:
    """The inputs stored with the cache (CPUs differ in the CNN's last bits: all retrain on the same), else computed."""
    try:
        truth = None if fresh else torch.load(paths.weights(CACHE_FILE), weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError):
        truth = None
    if isinstance(truth, dict) and truth.get("setup") == SETUP and "features" in truth:
        return truth["features"]
    blocks, out, threads = models.shapes_cnn("clean").features[:SETUP["feature_layers"]], [], torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for split in ("train", "test", "accuracy"):
            images = data.shapes(n=SETUP[f"n_{split}"], seed=SETUP[f"{split}_seed"], marker=0.0, **models.SHAPES_CNN_DATA)
            with torch.no_grad():
                out.append((blocks(images.images).mean((2, 3)).double(), images.labels))
    finally:
        torch.set_num_threads(threads)
    mean, std = out[0][0].mean(0), out[0][0].std(0)
    return tuple(((x - mean) / std, y) for x, y in out)


def problem(mislabelled: bool = False, *, fresh: bool = False) -> Problem:
    """The retraining problem of :data:`SETUP`; ``mislabelled=True`` flips 5 % of the training labels. Chapter 12.

    A flipped label moves to one of the two other classes (seeded), the same ones on every call.
    The features are those stored in the cache, the same bits on every machine; ``fresh=True``
    computes them with the CNN instead (what :func:`build` does).
    """
    for name, value in (("mislabelled", mislabelled), ("fresh", fresh)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {value!r}")
    (x_train, y_train), (x_test, y_test), (x_acc, y_acc) = _features(fresh)
    y_train = y_train.clone()
    flipped = torch.zeros(len(y_train), dtype=torch.bool)
    if mislabelled:
        g = torch.Generator().manual_seed(SETUP["mislabel_seed"])
        k = round(SETUP["mislabel_fraction"] * len(y_train))
        chosen = torch.randperm(len(y_train), generator=g)[:k]
        y_train[chosen] = (y_train[chosen] + torch.randint(1, 3, (k,), generator=g)) % 3
        flipped[chosen] = True
    return Problem(x_train.clone(), y_train, x_test.clone(), y_test.clone(), x_acc.clone(), y_acc.clone(), flipped)


# --------------------------------------------------------------------------------------------
# Training: deterministic, full batch, from the same initial weights
# --------------------------------------------------------------------------------------------
def new_model() -> nn.Sequential:
    """The head that is retrained, with the fixed initial weights (seed ``SETUP["init_seed"]``), float64. Chapter 12."""
    g = torch.Generator().manual_seed(SETUP["init_seed"])
    model = nn.Sequential(nn.Linear(32, SETUP["hidden"]), nn.Tanh(), nn.Linear(SETUP["hidden"], 3)).double()
    with torch.no_grad():
        for layer in (model[0], model[2]):  # PyTorch's default init, drawn from our own generator
            bound = 1 / math.sqrt(layer.in_features)
            layer.weight.uniform_(-bound, bound, generator=g)
            layer.bias.uniform_(-bound, bound, generator=g)
    return model.eval()


@dataclass
class Run:
    """A trained head, its checkpoints (state dicts every ``checkpoint_every`` steps, the first before step 1) and
    the TracIn learning rate of each checkpoint. Chapter 12."""

    model: nn.Sequential
    checkpoints: list
    learning_rates: list


def _keep_mask(keep, n: int) -> torch.Tensor:
    if keep is None:
        return torch.ones(n, dtype=torch.bool)
    keep = torch.as_tensor(keep)
    if keep.dtype != torch.bool:  # indices of the examples to keep
        if keep.dim() != 1 or keep.dtype.is_floating_point or keep.is_complex() or (len(keep) and (keep.min() < 0 or keep.max() >= n)):
            raise ValueError(f"keep must be a bool mask of length {n} or integer indices in [0, {n}), got "
                             f"{keep.tolist()[:8]}... ({keep.dtype})")
        mask = torch.zeros(n, dtype=torch.bool)
        mask[keep] = True
        return mask
    if keep.shape != (n,):
        raise ValueError(f"keep must be a bool mask of length {n} (one entry per training example), "
                         f"got shape {tuple(keep.shape)}")
    if not keep.any():
        raise ValueError("keep selects no training examples: keep at least one")
    return keep


def _check_data(x: torch.Tensor, y: torch.Tensor, model: nn.Module) -> None:
    """x (n, the model's input width) in its dtype, y (n,) labels of its classes: else an error saying what to pass."""
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)] or [None]
    width = linear[0].in_features if linear[0] else "features"
    if x.dim() != 2 or y.dim() != 1 or len(x) != len(y) or (linear[0] and x.shape[1] != width):
        raise ValueError(f"x must be (n, {width}) with one label per row in y (n,), got x {tuple(x.shape)} and y {tuple(y.shape)}")
    if (weight := next(model.parameters(), None)) is not None and x.dtype != weight.dtype:
        raise TypeError(f"x is {x.dtype} but the model's weights are {weight.dtype}: pass x.to({weight.dtype}) "
                        "(retraining.problem()'s features are float64)")
    if y.dtype.is_floating_point or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"y must hold integer class labels, got {y.dtype}: pass y.long()")
    n_classes = linear[-1].out_features if linear[-1] else None
    if n_classes and len(y) and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"y must hold class labels in [0, {n_classes}), got values from {int(y.min())} to {int(y.max())}")


@check_types
def train(x: torch.Tensor, y: torch.Tensor, keep=None, *, checkpoint_every: int | None = None) -> Run:
    """Train :func:`new_model` on the examples ``keep`` selects (a bool mask or indices; None: all). Chapter 12.

    Full-batch gradient descent on the mean cross-entropy of the kept examples (:data:`SETUP`: lr,
    weight decay, steps), one CPU thread: the same kept set gives bit-identical weights (on one machine).
    ``checkpoint_every``: steps between saved checkpoints (default ``SETUP["checkpoint_every"]``;
    1 saves every step, for the exact first-order TracIn).
    """
    model = new_model()
    _check_data(x, y, model)
    mask = _keep_mask(keep, len(x))
    xs, ys = x[mask], y[mask]
    optimizer = torch.optim.SGD(model.parameters(), lr=SETUP["lr"], weight_decay=SETUP["weight_decay"])
    every = SETUP["checkpoint_every"] if checkpoint_every is None else positive_int("checkpoint_every", checkpoint_every)
    checkpoints = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the reductions run in one order, so retraining is reproducible
    try:
        for step in range(SETUP["steps"]):
            if step % every == 0:
                checkpoints.append({k: v.clone() for k, v in model.state_dict().items()})
            optimizer.zero_grad()
            loss_fn(model(xs), ys).backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    model.zero_grad(set_to_none=True)
    return Run(model, checkpoints, [SETUP["lr"] * every / len(xs)] * len(checkpoints))


@check_types
def margins(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(n,): the correct class's logit minus the log-sum-exp of the others (Park et al. 2023). Chapter 12.

    Positive when the example is classified correctly; it keeps growing with confidence where the
    loss saturates at 0.
    """
    _check_data(x, y, model)
    with torch.no_grad():
        logits = model(x)
    correct = logits.gather(1, y[:, None])[:, 0]
    others = logits.scatter(1, y[:, None], float("-inf"))
    return correct - others.logsumexp(1)


def check_problem(p) -> Problem:
    """``p`` if it is a :class:`Problem`, else a TypeError that says where one comes from. Chapter 12."""
    if not isinstance(p, Problem):
        raise TypeError(f"p must be the retraining problem, a retraining.Problem (from retraining.problem()), "
                        f"got {type(p).__name__}")
    return p


def retrain(p: Problem, keep=None) -> torch.Tensor:
    """The test margins (n_test,) of the head retrained on the training examples ``keep`` selects. Chapter 12."""
    check_problem(p)
    return margins(train(*p.train, keep).model, *p.test)


def leave_one_out(p: Problem, indices=None, *, progress: bool = True) -> torch.Tensor:
    """(n_test, len(indices)): ``margin(full) - margin(without i)`` for each training example i. Chapter 12.

    Positive: removing i lowers the test margin, so i was a proponent. ``indices``: default all.
    """
    check_problem(p)
    n = len(p.x_train)
    try:
        idx = torch.as_tensor(range(n) if indices is None else indices)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"indices must be ints in [0, {n}), the training examples, got {type(indices).__name__}") from None
    if (idx.dtype.is_floating_point or idx.is_complex() or idx.dtype == torch.bool or idx.dim() != 1 or not len(idx)
            or idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"indices must lie in [0, {n}), the training examples (a non-empty sequence of ints); got "
                         f"{idx.tolist()[:8]} ({idx.dtype})")
    indices = idx.tolist()
    full = retrain(p)
    effects = []
    for i in tqdm(indices, desc="leave-one-out retraining", disable=not progress):
        keep = torch.ones(n, dtype=torch.bool)
        keep[i] = False
        effects.append(full - retrain(p, keep))
    return torch.stack(effects, 1)


def random_subsets(n_train: int, n_subsets: int, fraction: float = 0.5, seed: int = 0) -> torch.Tensor:
    """(n_subsets, n_train) bool: each row keeps ``round(fraction * n_train)`` examples drawn at random. Chapter 12."""
    n_train, n_subsets, seed = check_int("n_train", n_train, 2), check_int("n_subsets", n_subsets), check_int("seed", seed, 0)
    if not 0 < check_number("fraction", fraction) < 1:
        raise ValueError(f"fraction is the share of training examples each subset keeps, in (0, 1); got {fraction}")
    size = round(fraction * n_train)
    if not 0 < size < n_train:
        raise ValueError(f"fraction {fraction} of {n_train} examples keeps {size}: choose a fraction that keeps some, not all")
    g = torch.Generator().manual_seed(seed)
    subsets = torch.zeros(n_subsets, n_train, dtype=torch.bool)
    for row in subsets:
        row[torch.randperm(n_train, generator=g)[:size]] = True
    return subsets


@check_types
def subset_outputs(p: Problem, subsets: torch.Tensor, *, progress: bool = True) -> torch.Tensor:
    """(n_subsets, n_test): the test margins after retraining on each subset (a row of ``subsets``). Chapter 12."""
    check_problem(p)
    if subsets.dim() != 2 or not len(subsets):
        raise ValueError(f"subsets must be (n_subsets, {len(p.x_train)}), one bool mask of length {len(p.x_train)} per "
                         f"retraining (random_subsets makes them), got {tuple(subsets.shape)}")
    return torch.stack([retrain(p, keep) for keep in tqdm(subsets, desc="subset retraining", disable=not progress)])


def mislabel_experiment(*, ks=(5, 10, 15, 30), progress: bool = True, fresh: bool = False) -> dict:
    """Plant 5 % mislabels, rank them by self-influence, retrain without the top k. Chapter 12.

    Returns ``flipped`` (n_train,) bool, ``self_influence`` (n_train,), ``precision_at`` {k: share of
    flipped labels among the k highest}, ``random_precision`` (the flipped share: what random
    ranking expects), and the test accuracies (on the correctly labelled accuracy split) of the head
    trained on everything, without the top-k flagged (k = the number flipped), without k random
    examples, and without exactly the flipped ones. ``fresh``: as in :func:`problem`.
    """
    if not isinstance(ks, (tuple, list)):
        raise TypeError(f"ks must be a tuple of ints, the numbers of top-ranked examples to check, e.g. (5, 10); got {ks!r}")
    if any(not isinstance(k, int) or not 1 <= k <= SETUP["n_train"] for k in ks):
        raise ValueError(f"ks are the numbers of top-ranked examples to check, each in [1, {SETUP['n_train']}]; got {ks}")
    p = problem(mislabelled=True, fresh=fresh)
    run = train(*p.train)
    scores = influence.self_influence(run.model, run.checkpoints, loss_fn, p.train, learning_rates=run.learning_rates)
    order = scores.argsort(descending=True)
    k = int(p.flipped.sum())
    n = len(p.x_train)

    def accuracy(drop) -> float:
        keep = torch.ones(n, dtype=torch.bool)
        keep[drop] = False
        model = train(*p.train, keep).model
        with torch.no_grad():
            return (model(p.x_accuracy).argmax(1) == p.y_accuracy).double().mean().item()

    g = torch.Generator().manual_seed(SETUP["mislabel_seed"] + 1)
    cases = {"all": [], "without top-k flagged": order[:k], "without k random": torch.randperm(n, generator=g)[:k],
             "without the flipped": p.flipped.nonzero()[:, 0]}
    accuracies = {name: accuracy(drop) for name, drop in tqdm(cases.items(), desc="mislabel retraining",
                                                            disable=not progress)}
    return {"flipped": p.flipped, "self_influence": scores, "k": k,
            "precision_at": {kk: p.flipped[order[:kk]].double().mean().item() for kk in ks},
            "random_precision": p.flipped.double().mean().item(), "accuracy": accuracies}


# --------------------------------------------------------------------------------------------
# The cache: data/influence_truth.pt
# --------------------------------------------------------------------------------------------
def build(path=None, *, progress: bool = True) -> dict:
    """Run every retraining of the chapter and save it to data/influence_truth.pt (or ``path``). Chapter 12.

    Full training (with checkpoints), leave-one-out for every training example, 200 random halves,
    and the mislabel experiment: about two minutes on one CPU thread. Returns what it saved.
    """
    start = time.time()
    features = _features(True)
    p = problem(fresh=True)
    run = train(*p.train)
    subsets = random_subsets(len(p.x_train), SETUP["n_subsets"], SETUP["subset_fraction"], SETUP["subset_seed"])
    truth = {
        "setup": dict(SETUP), "features": features,
        "full_margins": margins(run.model, *p.test),
        "state_dict": run.model.state_dict(), "checkpoints": run.checkpoints, "learning_rates": run.learning_rates,
        "loo": leave_one_out(p, progress=progress).float(),
        "subsets": subsets, "outputs": subset_outputs(p, subsets, progress=progress).float(),
        "mislabel": mislabel_experiment(progress=progress, fresh=True),
    }
    truth["seconds"] = time.time() - start
    torch.save(truth, path or paths.weights(CACHE_FILE))
    return truth


def load(path=None) -> dict:
    """The cached retrainings (see :func:`build`), checked against the current setup and features. Chapter 12.

    Keys: ``setup``, ``features`` (the (x, y) of the three splits: the problem's inputs), ``full_margins`` (n_test,), ``state_dict`` and ``checkpoints`` /
    ``learning_rates`` of the full training, ``loo`` (n_test, n_train), ``subsets`` (n_subsets,
    n_train) bool, ``outputs`` (n_subsets, n_test), ``mislabel`` (see :func:`mislabel_experiment`).
    """
    file = path or paths.weights(CACHE_FILE)
    try:
        truth = torch.load(file, weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{file} is missing: recreate it with `{REGENERATE}` (about two minutes)") from None
    except Exception as err:  # a file torch cannot read back: not a cache build() wrote
        raise ValueError(f"{file} is not a retraining cache ({type(err).__name__}: {err}): recreate it with `{REGENERATE}`") from None
    if not isinstance(truth, dict) or truth.get("setup") != SETUP:
        raise ValueError(f"{file} is not a cache of retraining.SETUP (other settings or another file): recreate it with `{REGENERATE}`")
    stored = truth.get("features") or ()
    # the CNN must still compute the stored features, up to the last bits in which CPUs differ
    if len(stored) != 3 or not all(torch.equal(y, y_old) and (x - x_old).abs().max() < 1e-4
                                   for (x, y), (x_old, y_old) in zip(_features(True), stored)):
        raise ValueError(f"{file} was made from other features (the shapes data or the clean shapes CNN changed): "
                         f"recreate it with `{REGENERATE}`")
    return truth


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m xaicourse.retraining", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    truth = build()
    print(f"wrote {paths.weights(CACHE_FILE)} in {truth['seconds']:.0f} s; score the methods with `python -m xaicourse.tda`")


if __name__ == "__main__":
    main()
