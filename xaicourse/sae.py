"""Sparse autoencoders: a layer's activations rewritten as a few active directions out of many. Chapter 11.

A sparse autoencoder (SAE; Bricken et al. 2023, "Towards Monosemanticity") reads activations x (d,)
and writes f = ReLU(W_enc (x - b_dec) + b_enc) (n_latents > d, mostly zeros), then
x_hat = W_dec f + b_dec. The decoder columns have unit norm (renormalised after every step, and the
gradient component parallel to each column removed before it, as Anthropic does), and it is trained
on :func:`sae_loss` = mean over the batch of ||x - x_hat||^2 + l1 * ||f||_1. With unit-norm columns
the L1 of f equals the L1 of f weighted by the decoder norms (the form of later Anthropic SAEs), so
the two readings agree here. If the layer stores features in superposition
(:mod:`xaicourse.superposition`), each decoder column should point at one feature.

* :class:`SparseAutoencoder`, :func:`train_sae`, :func:`sae_stats` (dead and dense latents, L0,
  variance explained).
* :func:`match_features`: each planted direction's best decoder cosine; :func:`recover_toy_features`
  the whole planted-truth test on the toy model of superposition (40 features in 10 dimensions).
* :func:`latent_auroc`: how well each latent detects a labelled property;
  :func:`shapes_marker_sae`: an SAE on the shapes CNN's pooled features, and the latents that
  detect the corner marker (the shortcut model uses it, the clean one does not).

Seeded and deterministic on the CPU; the defaults run in seconds on one thread.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from . import data, models
from .concepts import layer_activations
from .inputs import check_int, check_number, check_types
from .superposition import (PROGRESS_AFTER_STEPS, ToyModel, Trained, features_represented, sparse_features,
                            train_toy_model)

__all__ = ["DENSE_THRESHOLD", "MarkerSAE", "Recovery", "SAEStats", "SparseAutoencoder", "latent_auroc", "match_features",
           "recover_toy_features", "sae_loss", "sae_stats", "shapes_marker_sae", "train_sae"]

DENSE_THRESHOLD = 0.1  # a latent active on more than 10 % of inputs is "dense" (the right edge of SAE density plots)


@check_types
def sae_loss(x: torch.Tensor, x_hat: torch.Tensor, f: torch.Tensor, l1: float) -> torch.Tensor:
    """The SAE's training loss: mean over the batch of ||x - x_hat||^2 + l1 * ||f||_1. Chapter 11.

    ``x``, ``x_hat`` (B, d); ``f`` (B, n_latents), the latent activations. The squared error is
    *summed* over the d inputs and the L1 *summed* over the latents, both per example; then both
    are averaged over the batch (Bricken et al. 2023). A scalar tensor.
    """
    if x.shape != x_hat.shape or f.dim() != x.dim() or len(f) != len(x):
        raise ValueError(f"x and x_hat must have the same shape (B, d) and f one row per example (B, n_latents), got "
                         f"x {tuple(x.shape)}, x_hat {tuple(x_hat.shape)}, f {tuple(f.shape)}")
    l1 = check_number("l1", l1, minimum=0.0)
    reconstruction = ((x - x_hat) ** 2).sum(-1)
    sparsity = f.abs().sum(-1)
    return (reconstruction + l1 * sparsity).mean()


class SparseAutoencoder(nn.Module):
    """f = ReLU(W_enc (x - b_dec) + b_enc), x_hat = W_dec f + b_dec, unit-norm decoder columns. Chapter 11.

    ``W_enc`` (n_latents, d), ``W_dec`` (d, n_latents): column k of ``W_dec`` is latent k's
    direction in the input space. Initialised with random unit columns and W_enc = W_dec^T.
    :meth:`forward` returns (x_hat, f).
    """

    def __init__(self, d: int, n_latents: int, *, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(check_int("seed", seed, 0))
        W_dec = torch.randn(check_int("d", d), check_int("n_latents", n_latents), generator=gen)
        W_dec /= W_dec.norm(dim=0, keepdim=True)
        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter(W_dec.T.clone())
        self.b_enc = nn.Parameter(torch.zeros(n_latents))
        self.b_dec = nn.Parameter(torch.zeros(d))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a tensor of activations (N, {self.W_dec.shape[0]}), got {type(x).__name__}")
        if x.dim() != 2 or x.shape[1] != self.W_dec.shape[0]:
            raise ValueError(f"expected activations (N, {self.W_dec.shape[0]}), got {tuple(x.shape)}: flatten "
                             "each input's activation to one row (e.g. concepts.layer_activations)")
        return torch.relu((x - self.b_dec) @ self.W_enc.T + self.b_enc)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        if not isinstance(f, torch.Tensor):
            raise TypeError(f"f must be a tensor of latent activations (N, {self.W_dec.shape[1]}), got {type(f).__name__}")
        if f.dim() != 2 or f.shape[1] != self.W_dec.shape[1]:
            raise ValueError(f"expected latent activations (N, {self.W_dec.shape[1]}) (what encode returns), got {tuple(f.shape)}")
        return f @ self.W_dec.T + self.b_dec

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.encode(x)
        return self.decode(f), f

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        """Scale every decoder column back to unit norm (after each optimiser step)."""
        self.W_dec /= self.W_dec.norm(dim=0, keepdim=True).clamp(min=1e-8)

    @torch.no_grad()
    def project_gradient(self) -> None:
        """Remove from W_dec's gradient its component along each column (before each step): the step
        then turns the columns instead of growing them (Bricken et al. 2023)."""
        if self.W_dec.grad is not None:
            self.W_dec.grad -= self.W_dec * (self.W_dec.grad * self.W_dec).sum(0, keepdim=True)


@check_types
def train_sae(acts: torch.Tensor, n_latents: int, l1: float = 1e-3, steps: int = 3000, *, batch_size: int = 256,
              lr: float = 3e-3, seed: int = 0, progress: bool | None = None) -> Trained:
    """Train a :class:`SparseAutoencoder` on activations ``acts`` (N, d) with :func:`sae_loss`. Chapter 11.

    Adam at ``lr``, minibatches of ``batch_size`` rows drawn with ``seed``; ``b_dec`` starts at the
    data mean. Each step: loss, backward, :meth:`~SparseAutoencoder.project_gradient`, step,
    :meth:`~SparseAutoencoder.normalise_decoder`. ``l1`` is in the units of ``acts``: scale the data
    first if its norms are far from 1 (:func:`sae_stats` tells when l1 is too strong: many dead
    latents, low variance explained). Returns :class:`Trained` (the SAE in eval mode, final loss).
    """
    if acts.dim() != 2 or len(acts) < 2:
        raise ValueError(f"acts must be activations (N, d) with N >= 2, got {tuple(acts.shape)}: flatten each input's "
                         "activation to one row")
    if not bool(torch.isfinite(acts).all()):
        raise ValueError("acts hold NaN or inf values: check the layer they were recorded from")
    l1, lr = check_number("l1", l1, minimum=0.0), check_number("lr", lr, above=0.0)
    steps, batch_size, seed = check_int("steps", steps), check_int("batch_size", batch_size), check_int("seed", seed, 0)
    acts = acts.detach().float().cpu()
    sae = SparseAutoencoder(acts.shape[1], n_latents, seed=seed)
    with torch.no_grad():
        sae.b_dec.copy_(acts.mean(0))
    optimizer = torch.optim.Adam(sae.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed + 1)
    last = []
    for _ in tqdm(range(steps), desc="sparse autoencoder", leave=False,
                  disable=not (steps > PROGRESS_AFTER_STEPS if progress is None else progress)):
        x = acts[torch.randint(len(acts), (min(batch_size, len(acts)),), generator=gen)]
        x_hat, f = sae(x)
        loss = sae_loss(x, x_hat, f, l1)
        optimizer.zero_grad()
        loss.backward()
        sae.project_gradient()
        optimizer.step()
        sae.normalise_decoder()
        last = (last + [float(loss.detach())])[-100:]
    return Trained(sae.eval(), sum(last) / len(last))


@dataclass(frozen=True)
class SAEStats:
    """:func:`sae_stats`'s diagnostics of an SAE on held-out activations. Chapter 11.

    ``frequency`` (n_latents,): the share of inputs on which each latent is active (f > 0); ``dead``:
    latents never active; ``dense``: latents active on more than ``dense_threshold`` of the inputs;
    ``l0``: mean number of active latents per input; ``variance_explained``: 1 - sum ||x - x_hat||^2 /
    sum ||x - mean(x)||^2; ``mse``: mean over inputs of ||x - x_hat||^2.
    """
    frequency: torch.Tensor
    dead: int
    dense: int
    l0: float
    variance_explained: float
    mse: float
    dense_threshold: float


@check_types
def sae_stats(sae: nn.Module, acts: torch.Tensor, *, dense_threshold: float = DENSE_THRESHOLD) -> SAEStats:
    """Dead and dense latents, L0 and variance explained of ``sae`` on ``acts`` (N, d). Chapter 11.

    Use activations the SAE was not trained on. A dead latent (never active) is wasted capacity;
    dense latents (active on more than ``dense_threshold`` = 10 % of inputs by default, the
    convention of SAE feature-density plots) are rarely interpretable and often mean l1 is too weak.
    """
    dense_threshold = check_number("dense_threshold", dense_threshold, minimum=0.0, maximum=1.0)
    if acts.dim() != 2 or len(acts) == 0:
        raise ValueError(f"acts must be held-out activations (N, d) with N >= 1, got {tuple(acts.shape)}")
    if not bool(torch.isfinite(acts).all()):
        raise ValueError("acts hold NaN or inf values: check the layer they were recorded from")
    with torch.no_grad():
        x = acts.detach().float()
        out = sae(x)
    if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)):
        raise TypeError(f"sae must return (x_hat, f) as SparseAutoencoder does, got {type(out).__name__}: pass a SparseAutoencoder")
    x_hat, f = out
    active = f > 0
    frequency = active.float().mean(0)
    error = ((x - x_hat) ** 2).sum(-1)
    total = ((x - x.mean(0)) ** 2).sum()
    return SAEStats(frequency=frequency, dead=int((frequency == 0).sum()), dense=int((frequency > dense_threshold).sum()),
                    l0=float(active.float().sum(-1).mean()),
                    variance_explained=float(1 - error.sum() / total.clamp(min=1e-12)), mse=float(error.mean()),
                    dense_threshold=dense_threshold)


@check_types
def match_features(directions: torch.Tensor, decoder: torch.Tensor) -> torch.Tensor:
    """For each planted direction (a column of ``directions`` (d, n)), its best cosine with a column of
    ``decoder`` (d, n_latents): (n,). Chapter 11.

    ``directions``: e.g. the toy model's W (n_hidden, n_features), whose columns are where each
    feature lives in h = W x; ``decoder``: an SAE's ``W_dec``. Cosine > 0.9: the SAE found the feature.
    A zero column scores 0.
    """
    if directions.dim() != 2 or decoder.dim() != 2 or directions.shape[0] != decoder.shape[0]:
        raise ValueError(f"directions (d, n) and decoder (d, n_latents) must share d, got {tuple(directions.shape)} and "
                         f"{tuple(decoder.shape)}: pass the toy model's W[0] and the SAE's W_dec")
    a = nn.functional.normalize(directions.detach().float(), dim=0)
    b = nn.functional.normalize(decoder.detach().float(), dim=0)
    return (a.T @ b).max(1).values


@check_types
def latent_auroc(f: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """How well each latent's activation separates ``labels`` True from False: AUROC per latent, (n_latents,). Chapter 11.

    ``f`` (N, n_latents) activations, ``labels`` (N,) bool. 1: the latent is higher on every True
    input than on every False one; 0.5: no better than chance. Ties count one half (Mann-Whitney U).
    """
    if labels.dim() != 1 or f.dim() != 2 or len(f) != len(labels):
        raise ValueError(f"f must be (N, n_latents) with one label per row in labels (N,), got {tuple(f.shape)} and "
                         f"labels {tuple(labels.shape)}")
    if labels.dtype != torch.bool and not bool(((labels == 0) | (labels == 1)).all()):
        raise ValueError(f"labels must be bool (or 0/1), got values {labels.unique().tolist()[:6]}: pass labels == k")
    labels = labels.bool()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"labels must hold both True and False, got {n_pos} True and {n_neg} False")
    values = f.detach().double()
    order = values.argsort(0)
    ranks = torch.empty_like(values)
    ranks.scatter_(0, order, torch.arange(1, len(f) + 1, dtype=torch.float64)[:, None].expand_as(values).contiguous())
    for k in range(values.shape[1]):  # average the ranks of ties (many zeros: ReLU latents)
        _, inverse, counts = torch.unique(values[:, k], return_inverse=True, return_counts=True)
        sums = torch.zeros(len(counts), dtype=torch.float64).index_add_(0, inverse, ranks[:, k])
        ranks[:, k] = (sums / counts)[inverse]
    return (ranks[labels].sum(0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


@dataclass(frozen=True)
class Recovery:
    """:func:`recover_toy_features`'s result. Chapter 11.

    ``toy`` and ``sae``: the trained models; ``cosines`` (n_features,): each planted feature's best
    decoder cosine (:func:`match_features`); ``recovered``: how many exceed ``threshold``;
    ``represented``: features the toy model stores (||W_i|| > 0.5); ``stats``: :func:`sae_stats` on
    held-out hidden activations; ``true_l0``: the mean number of active features per input.
    """
    toy: ToyModel
    sae: SparseAutoencoder
    cosines: torch.Tensor
    recovered: int
    represented: int
    threshold: float
    stats: SAEStats
    true_l0: float


def recover_toy_features(n_features: int = 40, n_hidden: int = 10, sparsity: float = 0.97, *, n_latents: int = 80,
                         l1: float = 0.2, toy_steps: int = 3000, sae_steps: int = 3000, n_train: int = 20000,
                         n_test: int = 5000, threshold: float = 0.9, seed: int = 0) -> Recovery:
    """Planted truth for an SAE: train the toy model (all features equally important) in superposition,
    train an SAE on its hidden activations h = W x, and match the decoder columns with W's columns. Chapter 11.

    The defaults (40 features in 10 dimensions, S = 0.97, 80 latents, l1 = 0.2) take about 10 s on
    one CPU thread.
    """
    threshold = check_number("threshold", threshold, minimum=0.0, maximum=1.0, hint=" (a cosine)")
    n_train, n_test = check_int("n_train", n_train, 2), check_int("n_test", n_test)
    toy = train_toy_model(n_features, n_hidden, sparsity, importance=1.0, steps=toy_steps, seed=seed).model
    with torch.no_grad():
        train = toy.hidden(sparse_features(n_train, n_features, sparsity, seed=seed + 10))
        test_x = sparse_features(n_test, n_features, sparsity, seed=seed + 20)
        test = toy.hidden(test_x)
    sae = train_sae(train, n_latents, l1, sae_steps, seed=seed).model
    W = toy.W.detach()[0]
    cosines = match_features(W, sae.W_dec)
    return Recovery(toy=toy, sae=sae, cosines=cosines, recovered=int((cosines > threshold).sum()),
                    represented=int(features_represented(W)), threshold=threshold, stats=sae_stats(sae, test),
                    true_l0=float((test_x > 0).float().sum(1).mean()))


@dataclass(frozen=True)
class MarkerSAE:
    """:func:`shapes_marker_sae`'s result. Chapter 11.

    ``sae`` reads the layer's activations divided by ``scale`` (their mean norm on the training
    images); ``stats``: :func:`sae_stats` on the held-out images. Per marker corner 0-3 (corner 3 is
    owned by no class): ``marker_auroc`` the best latent's AUROC for "the marker is in this corner",
    ``marker_latent`` which latent, ``raw_marker_auroc`` the best single unit of the layer itself.
    Per shape class: ``shape_auroc`` and ``raw_shape_auroc`` the same for "the image shows this shape".
    """
    sae: SparseAutoencoder
    scale: float
    stats: SAEStats
    marker_auroc: torch.Tensor
    marker_latent: torch.Tensor
    raw_marker_auroc: torch.Tensor
    shape_auroc: torch.Tensor
    raw_shape_auroc: torch.Tensor


def _marked_shapes(n: int, seed: int):
    """Shapes images without a marker, half of them with one painted in a random corner (0-3); the corner or -1."""
    shapes = data.shapes(n, seed=seed, **models.SHAPES_CNN_DATA)
    gen = torch.Generator().manual_seed(seed)
    corner = torch.randint(0, 4, (n,), generator=gen)
    corner[torch.rand(n, generator=gen) < 0.5] = -1
    images = shapes.images.clone()
    for c in range(4):
        images[corner == c] = data.with_marker(images[corner == c], c)
    return images, corner, shapes.labels


def shapes_marker_sae(variant: str = "shortcut", *, layer: str = "head.1", n_latents: int = 64, l1: float = 0.1,
                      steps: int = 3000, n_train: int = 2048, n_test: int = 1024, seed: int = 0) -> MarkerSAE:
    """An SAE on a layer of ``models.shapes_cnn(variant)``, and the latents that detect the marker. Chapter 11.

    The images are ``data.shapes`` without a marker, half of them with the white corner marker
    painted into a random corner (:func:`xaicourse.data.with_marker`), so that the marker is not
    tied to the label. ``layer``: default the pooled features (32 numbers per image); a spatial
    layer is flattened whole. About 10 s on one CPU thread.
    """
    test_images, corner, labels = _marked_shapes(n_test, seed + 200)  # each set seeded apart: the order does not matter
    empty = [f"corner {c}" for c in range(4) if not 0 < int((corner == c).sum()) < n_test]
    empty += [f"class {k}" for k in range(3) if not 0 < int((labels == k).sum()) < n_test]
    if empty:
        raise ValueError(f"n_test={n_test} held-out images leave {', '.join(empty)} with no example to score "
                         "(or nothing else): use more images (the default is 1024)")
    model = models.shapes_cnn(variant)
    train_images, _, _ = _marked_shapes(n_train, seed + 100)
    train = layer_activations(model, layer, train_images)
    test = layer_activations(model, layer, test_images)
    scale = float(train.norm(dim=1).mean().clamp(min=1e-12))
    sae = train_sae(train / scale, n_latents, l1, steps, seed=seed).model
    with torch.no_grad():
        f = sae.encode(test / scale)
    marker = [latent_auroc(f, corner == c) for c in range(4)]
    return MarkerSAE(sae=sae, scale=scale, stats=sae_stats(sae, test / scale),
                     marker_auroc=torch.stack([m.max() for m in marker]).float(),
                     marker_latent=torch.stack([m.argmax() for m in marker]),
                     raw_marker_auroc=torch.stack([latent_auroc(test, corner == c).max() for c in range(4)]).float(),
                     shape_auroc=torch.stack([latent_auroc(f, labels == k).max() for k in range(3)]).float(),
                     raw_shape_auroc=torch.stack([latent_auroc(test, labels == k).max() for k in range(3)]).float())
