"""Checks of chapter 11's exercises: concepts, probes, and the sparse autoencoder's loss and decoder constraint.

Each section grades one exercise against the package's reference and keeps its own fixed case and
catalogue of typical wrong answers.
"""
from __future__ import annotations

import torch

from .. import sae
from .core import Mistake, compare, expect, expect_returned, expect_unchanged, grader

__all__ = ["check_decoder_norm", "check_sae_loss", "sae_case"]


# --------------------------------------------------------------------------------------------
# The sparse autoencoder: its loss and its decoder constraint (Bricken et al. 2023)
# --------------------------------------------------------------------------------------------
def sae_case(batch: int = 6, d: int = 5, n_latents: int = 10, seed: int = 1100):
    """The grader's fixed case: activations x (B, d), a reconstruction x_hat, latents f >= 0 (B, n_latents). Chapter 11.

    x_hat requires grad, as in training, and a third of the latents are exactly 0 (ReLU).
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, d, generator=gen)
    x_hat = (x + 0.5 * torch.randn(batch, d, generator=gen)).requires_grad_()
    f = torch.relu(torch.randn(batch, n_latents, generator=gen) + 0.3)
    return x, x_hat, f


def _sae_mistakes(x, x_hat, f, l1: float) -> list[Mistake]:
    x_hat = x_hat.detach()
    err = (x - x_hat) ** 2
    recon, sparsity = err.sum(-1).mean(), f.abs().sum(-1).mean()
    return [
        Mistake("you left out the sparsity term: add l1 * ||f||_1 (the L1 of the latents, summed over latents, "
                "averaged over the batch); without it the SAE has no reason to be sparse", recon),
        Mistake("your L1 term is on x_hat: the penalty is on the latent activations f (what should be sparse), "
                "not on the reconstruction", lambda: recon + l1 * x_hat.abs().sum(-1).mean()),
        Mistake("you penalised f squared (an L2 penalty): the sparsity term is the L1 norm, the sum of |f| over "
                "latents; a square barely punishes small activations, so they do not go to 0",
                lambda: recon + l1 * (f ** 2).sum(-1).mean()),
        Mistake("your squared error is averaged over the d input dimensions as well: sum (x - x_hat)^2 over the "
                "features of each example (the squared norm ||x - x_hat||^2), then average over the batch",
                lambda: err.mean() + l1 * sparsity),
        Mistake("you averaged over every element: .mean() over (B, d) and (B, n_latents) divides the error by d and "
                "the L1 by n_latents; sum over features and latents per example, then average over the batch",
                lambda: err.mean() + l1 * f.abs().mean()),
        Mistake("your L1 term is summed over the batch while the squared error is averaged: the balance between "
                "the two then depends on the batch size; average both over the batch",
                lambda: recon + l1 * f.abs().sum()),
        Mistake("you summed over the batch instead of averaging: the loss then grows with the batch size (and so "
                "does the step size it asks for); take the mean over examples", lambda: err.sum() + l1 * f.abs().sum()),
        Mistake("your reconstruction term is ||x - x_hat|| (not squared): the SAE's error is the squared norm, "
                "sum of (x - x_hat)^2", lambda: err.sum(-1).sqrt().mean() + l1 * sparsity),
        Mistake("l1 multiplies the reconstruction instead of the sparsity term: loss = ||x - x_hat||^2 + l1 * ||f||_1",
                lambda: l1 * recon + sparsity),
        Mistake("you returned one loss per example: average them over the batch to one number (a scalar tensor)",
                when=lambda got: got.shape == (len(x),)),
    ]


@grader
def check_sae_loss(sae_loss) -> str:
    """Grade ``sae_loss(x, x_hat, f, l1) -> scalar tensor``. Chapter 11.

    Expected: the mean over the batch of ||x - x_hat||^2 (summed over the d features) plus ``l1``
    times the mean over the batch of ||f||_1 (summed over the latents), as
    :func:`xaicourse.sae.sae_loss`; a tensor that ``.backward()`` can train with.
    """
    for batch, l1 in ((6, 0.3), (3, 1.5)):  # two batch sizes and weights: a batch sum or a swapped weight shows
        x, x_hat, f = sae_case(batch=batch)
        copies = (x.clone(), x_hat.detach().clone().requires_grad_(), f.clone())
        got = sae_loss(x, x_hat, f, l1)
        expect_returned(got)
        expect(isinstance(got, torch.Tensor), f"return the loss as a tensor, not {type(got).__name__}: without .item() "
                                              "or float(...), so that loss.backward() can train the SAE")
        expect_unchanged("your function changed x, x_hat or f (an in-place operation such as -= or .abs_()): "
                         "compute the loss on new tensors", (x, copies[0]), (f, copies[2]))
        want = sae.sae_loss(x, x_hat.detach(), f, l1)
        compare(got, want, _sae_mistakes(x, x_hat, f, l1), rtol=1e-5, atol=1e-6, otherwise=lambda g: (
            f"with B = {batch}, l1 = {l1} your loss is {float(g):.6f}, the reference "
            f"{float(want):.6f}: ((x - x_hat) ** 2).sum(-1).mean() + l1 * f.abs().sum(-1).mean()"))
        expect(isinstance(got, torch.Tensor) and got.requires_grad,
               "your loss has no gradient: return the tensor itself (not .item() or float(...)), and do not compute "
               "it under torch.no_grad() or from .detach()ed tensors, so that loss.backward() can train the SAE")
    return "the loss matches the reference for two batch sizes and two l1 weights, and it can be backpropagated"


def _unit_columns(W: torch.Tensor) -> torch.Tensor:
    return W / W.norm(dim=0, keepdim=True)


@grader
def check_decoder_norm(normalise_decoder) -> str:
    """Grade ``normalise_decoder(W_dec) -> W_dec`` with every column scaled to unit norm. Chapter 11.

    ``W_dec`` is (d, n_latents): column k is latent k's direction. Expected as
    :meth:`xaicourse.sae.SparseAutoencoder.normalise_decoder`: each column divided by its own L2
    norm, a new tensor (the input unchanged).
    """
    gen = torch.Generator().manual_seed(1101)
    W = torch.randn(6, 9, generator=gen) * torch.linspace(0.2, 3.0, 9)
    before = W.clone()
    got = normalise_decoder(W)
    expect_unchanged("your function changed W_dec in place: return a new tensor (W / norms), or the grader cannot "
                     "compare; inside train_sae it is done in place under torch.no_grad()", (W, before))
    compare(got, _unit_columns(W), [
        Mistake("you normalised the rows (dim=1): W_dec is (d, n_latents) and each *column* is a latent's "
                "direction; use W.norm(dim=0, keepdim=True)", lambda: W / W.norm(dim=1, keepdim=True)),
        Mistake("you divided by the norm of the whole matrix: each column gets its own norm, "
                "W.norm(dim=0, keepdim=True)", lambda: W / W.norm()),
        Mistake("you divided by the squared norm: divide by the norm itself (W.norm(dim=0)), so that each column "
                "ends with length 1", lambda: W / (W ** 2).sum(0, keepdim=True)),
        Mistake("you divided by the sum of the column's absolute values (the L1 norm): the constraint is unit "
                "L2 norm, W.norm(dim=0)", lambda: W / W.abs().sum(0, keepdim=True)),
    ], atol=1e-5, rtol=1e-5, otherwise="your columns do not have unit length and the same direction as before: "
                                       "W / W.norm(dim=0, keepdim=True)")
    return "every column of W_dec has unit norm and keeps its direction; the input is unchanged"
