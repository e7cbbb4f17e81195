"""Superposition: more features than dimensions, stored in almost-orthogonal directions. Chapter 11.

**The toy model of superposition** (Elhage et al. 2022, "Toy Models of Superposition"): ``n``
features, each nonzero with probability ``1 - S`` (then uniform in [0, 1]), squeezed into ``m < n``
hidden dimensions and read back with x_hat = ReLU(W^T W x + b), trained on
sum_i I_i (x_i - x_hat_i)^2 with importances I_i = ``importance ** i``. Dense features (S = 0): the
model keeps the ``m`` most important ones, orthogonal, and drops the rest. Sparse features (S -> 1):
it stores *more* features than dimensions, in almost-orthogonal directions, and lets the ReLU filter
the interference: the phase change that :func:`sparsity_sweep` measures.

* :func:`sparse_features`: the data; :class:`ToyModel`, :func:`train_toy_model`.
* :func:`feature_norms` ||W_i||, :func:`superposition` sum_{j != i} (W_i_hat . W_j)^2,
  :func:`features_represented` (||W_i|| > 0.5), :func:`dimensions_per_feature` m / ||W||_F^2.
* :func:`sparsity_sweep`: those numbers over several S, all sparsities trained at once (one model
  instance per S, as the paper does).

:mod:`xaicourse.sae` trains a sparse autoencoder on the toy model's hidden layer and finds the
features again.

Every function is seeded and deterministic on the CPU; the defaults run in seconds on one thread.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from tqdm.auto import tqdm

from .inputs import check_int, check_number

__all__ = ["PROGRESS_AFTER_STEPS", "ToyModel", "Trained", "dimensions_per_feature", "feature_norms", "features_represented",
           "sparse_features", "sparsity_sweep", "superposition", "train_toy_model"]

PROGRESS_AFTER_STEPS = 2000  # training loops of more steps (about 2 s on one CPU thread) show a progress bar


class Trained(NamedTuple):
    """A trained model and its final training loss (the mean over the last 100 steps). Chapter 11."""
    model: nn.Module
    loss: float


# --------------------------------------------------------------------------------------------
# The toy model of superposition
# --------------------------------------------------------------------------------------------
def _check_sparsity(sparsity) -> torch.Tensor:
    try:
        s = torch.as_tensor(sparsity, dtype=torch.float32).flatten()
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"sparsity must be a number in [0, 1) or a sequence of them (one per model instance), "
                        f"got {sparsity!r}") from None
    if len(s) == 0 or not bool(((s >= 0) & (s < 1)).all()):
        raise ValueError(f"sparsity is the probability that a feature is zero, in [0, 1), got {sparsity}: "
                         "S = 0 gives dense features, S = 0.99 features that are on 1 % of the time")
    return s


def sparse_features(n_samples: int, n_features: int, sparsity, *, seed: int | None = 0,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """(n_samples, n_features): each feature 0 with probability ``sparsity``, else uniform in [0, 1]. Chapter 11.

    ``sparsity`` may also be a tensor (k,) of one S per model instance: the result is then
    (n_samples, k, n_features). Same ``seed``, same data (or pass a ``generator`` to continue one).
    """
    check_int("n_samples", n_samples)
    check_int("n_features", n_features)
    s = _check_sparsity(sparsity)
    gen = generator if generator is not None else torch.Generator().manual_seed(check_int("seed", seed, 0))
    shape = (n_samples, len(s), n_features)
    on = torch.rand(shape, generator=gen) >= s[:, None]
    x = torch.rand(shape, generator=gen) * on
    return x if torch.as_tensor(sparsity).dim() else x[:, 0]


class ToyModel(nn.Module):
    """x_hat = ReLU(W^T W x + b): ``n_features`` through ``n_hidden`` dimensions and back. Chapter 11.

    ``W`` is (n_instances, n_hidden, n_features), ``b`` (n_instances, n_features): ``n_instances``
    independent models trained side by side (e.g. one per sparsity). Inputs (B, n_features) or
    (B, n_instances, n_features); :meth:`hidden` gives h = W x, the layer an SAE reads.
    """

    def __init__(self, n_features: int, n_hidden: int, n_instances: int = 1, *, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(check_int("seed", seed, 0))
        shape = (check_int("n_instances", n_instances), check_int("n_hidden", n_hidden), check_int("n_features", n_features))
        self.W = nn.Parameter(nn.init.xavier_normal_(torch.empty(shape), generator=gen))
        self.b = nn.Parameter(torch.zeros(n_instances, n_features))

    def _batch(self, x: torch.Tensor) -> torch.Tensor:
        n_instances, _, n_features = self.W.shape
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a tensor of features (B, {n_features}), got {type(x).__name__}: "
                            f"make them with sparse_features(n, {n_features}, S)")
        if x.dim() == 2 and x.shape[1] == n_features:
            return x[:, None].expand(-1, n_instances, -1)
        if x.dim() == 3 and x.shape[1:] == (n_instances, n_features):
            return x
        raise ValueError(f"expected features (B, {n_features}) or (B, {n_instances}, {n_features}), got "
                         f"{tuple(x.shape)}: make them with sparse_features(n, {n_features}, S)")

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """h = W x: (B, n_instances, n_hidden) (or (B, n_hidden) for one instance and 2-d input)."""
        h = torch.einsum("bif,ihf->bih", self._batch(x), self.W)
        return h[:, 0] if x.dim() == 2 and len(self.W) == 1 else h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = self._batch(x)
        squeeze = x.dim() == 2 and len(self.W) == 1
        out = torch.relu(torch.einsum("bih,ihf->bif", self.hidden(batch), self.W) + self.b)
        return out[:, 0] if squeeze else out


def _importances(n_features: int, importance: float) -> torch.Tensor:
    return check_number("importance", importance, above=0.0, maximum=1.0) ** torch.arange(n_features, dtype=torch.float32)


def train_toy_model(n_features: int = 5, n_hidden: int = 2, sparsity=0.9, *, importance: float = 0.9,
                    steps: int = 2000, batch_size: int = 256, lr: float = 1e-2, seed: int = 0,
                    progress: bool | None = None) -> Trained:
    """Train :class:`ToyModel` on :func:`sparse_features` with loss sum_i I_i (x_i - x_hat_i)^2. Chapter 11.

    ``sparsity`` a number or a sequence (one model instance per S, trained side by side);
    ``importance``: I_i = importance ** i (1.0: all features equally important). AdamW at ``lr``
    (the paper: 1e-3, batches of 1024, 10 000 steps; the defaults here, 1e-2 and 256 for 2 000 steps,
    give the same feature counts in a few seconds).
    The loss is summed over features, averaged over the batch, and summed over instances. Returns
    :class:`Trained` (the model in eval mode, its final loss: the mean over instances).
    """
    s = _check_sparsity(sparsity)
    steps, batch_size, seed = check_int("steps", steps), check_int("batch_size", batch_size), check_int("seed", seed, 0)
    lr = check_number("lr", lr, above=0.0)
    torch.manual_seed(seed)  # nothing below draws from the global generator; set for code that does
    model = ToyModel(n_features, n_hidden, len(s), seed=seed)
    weights = _importances(n_features, importance)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed + 1)
    last = []
    bar = tqdm(range(steps), desc="toy model", leave=False, disable=not (steps > PROGRESS_AFTER_STEPS if progress is None else progress))
    for _ in bar:
        x = sparse_features(batch_size, n_features, s, generator=gen)
        per_instance = (weights * (x - model(x)) ** 2).sum(-1).mean(0)
        optimizer.zero_grad()
        per_instance.sum().backward()
        optimizer.step()
        last = (last + [float(per_instance.detach().mean())])[-100:]
    return Trained(model.eval(), sum(last) / len(last))


def _weights(W) -> torch.Tensor:
    W = W.W if isinstance(W, ToyModel) else W
    if not isinstance(W, torch.Tensor) or W.dim() not in (2, 3):
        raise TypeError(f"expected a ToyModel or its W (n_hidden, n_features) or (n_instances, n_hidden, n_features), "
                        f"got {type(W).__name__}{tuple(W.shape) if isinstance(W, torch.Tensor) else ''}")
    return W.detach().float()


def feature_norms(W) -> torch.Tensor:
    """||W_i|| for each feature's column: (n_features,) or (n_instances, n_features). Chapter 11.

    ``W``: a :class:`ToyModel` or its weight. Near 1: the feature is stored; near 0: dropped.
    """
    return _weights(W).norm(dim=-2)


def superposition(W) -> torch.Tensor:
    """sum_{j != i} (W_i_hat . W_j)^2 for each feature i: how much the others share its direction. Chapter 11.

    0 for a feature with a dimension of its own, 1 for one whose direction another feature also uses
    fully. The paper draws it as the colour of each ||W_i|| bar: read it together with the norm (a
    dropped feature's tiny column points anywhere; an all-zero column counts 0). Shape as
    :func:`feature_norms`.
    """
    W = _weights(W)
    norms = W.norm(dim=-2, keepdim=True)
    unit = W / norms.clamp(min=1e-6) * (norms > 1e-6)
    overlap = (unit.transpose(-1, -2) @ W) ** 2          # [..., i, j] = (W_i_hat . W_j)^2
    return overlap.sum(-1) - torch.diagonal(overlap, dim1=-2, dim2=-1)


def features_represented(W, threshold: float = 0.5) -> torch.Tensor:
    """How many features have ||W_i|| > ``threshold``: an int tensor, () or (n_instances,). Chapter 11."""
    return (feature_norms(W) > check_number("threshold", threshold, minimum=0.0)).sum(-1)


def dimensions_per_feature(W) -> torch.Tensor:
    """m / ||W||_F^2: the hidden dimensions each stored feature gets (1: one each; 1/2: two per dimension). Chapter 11."""
    W = _weights(W)
    return W.shape[-2] / (W ** 2).sum((-2, -1)).clamp(min=1e-12)


def sparsity_sweep(sparsities=(0.0, 0.5, 0.8, 0.9, 0.95, 0.99), *, n_features: int = 20, n_hidden: int = 5,
                   importance: float = 0.9, steps: int = 2000, seed: int = 0, threshold: float = 0.5) -> dict:
    """The phase change in numbers: one toy model per sparsity, trained side by side. Chapter 11.

    Returns a dict of tensors over the sparsities: ``"sparsity"``, ``"represented"`` (features with
    ||W_i|| > ``threshold``), ``"dimensions_per_feature"``, ``"norms"`` and ``"superposition"``
    (k, n_features), plus ``"W"`` (k, n_hidden, n_features) and ``"loss"`` (the mean over instances).
    """
    if isinstance(sparsities, (str, bytes)) or not hasattr(sparsities, "__len__"):
        raise TypeError(f"sparsities must be a sequence of sparsities, one model each, e.g. (0.5, 0.9); got {sparsities!r}")
    threshold = check_number("threshold", threshold, minimum=0.0)
    trained = train_toy_model(n_features, n_hidden, list(sparsities), importance=importance, steps=steps, seed=seed)
    W = _weights(trained.model)
    return {"sparsity": torch.tensor(list(sparsities)), "represented": features_represented(W, threshold),
            "dimensions_per_feature": dimensions_per_feature(W), "norms": feature_norms(W),
            "superposition": superposition(W), "W": W, "loss": trained.loss}
