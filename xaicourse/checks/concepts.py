"""Checks of chapter 11's exercises: concepts, probes, and the sparse autoencoder's loss and decoder constraint.

Each section grades one exercise against the package's reference and keeps its own fixed case and
catalogue of typical wrong answers.
"""
from __future__ import annotations

import torch

from .. import sae
from .core import CheckFailed, Mistake, compare, expect, expect_returned, expect_unchanged, grader

__all__ = ["check_control_labels", "check_decoder_norm", "check_sae_loss", "check_tcav_score", "sae_case"]


# --------------------------------------------------------------------------------------------
# TCAV's score (Kim et al. 2018)
# --------------------------------------------------------------------------------------------
def _tcav_case(seed: int = 1114):
    """Gradients (N, D) and a CAV (D,), with some directional derivatives exactly 0 and a mean of the
    wrong sign, so that >= for >, the mean of the derivatives and their absolute values all show."""
    gen = torch.Generator().manual_seed(seed)
    vector = torch.tensor([1.0, -2.0, 0.0, 0.5])
    grads = torch.randn(12, 4, generator=gen)
    grads[:3] = torch.tensor([[2.0, 1.0, 5.0, 0.0]])             # derivative exactly 0 (2 - 2 + 0 + 0)
    grads[3] = torch.tensor([-40.0, 0.0, 0.0, 0.0])              # one large negative: the mean goes below 0
    return grads, vector


@grader
def check_tcav_score(tcav_score) -> str:
    """Grade ``tcav_score(grads, cav_vector) -> float``: the share of strictly positive directional derivatives. Chapter 11.

    ``grads`` (N, D): the target logit's gradient with respect to the layer, one row per input;
    ``cav_vector`` (D,). Expected as :func:`xaicourse.concepts.tcav_score` computes it from the gradients.
    """
    grads, vector = _tcav_case()
    before = (grads.clone(), vector.clone())
    got = tcav_score(grads, vector)
    expect_unchanged("your function changed grads or cav_vector in place: compute on new tensors", (grads, before[0]),
                     (vector, before[1]))
    derivatives = grads @ vector
    compare(got, float((derivatives > 0).float().mean()), [
        Mistake("you counted derivatives >= 0: an input whose logit does not move (derivative exactly 0) is not "
                "one the concept raises; count the strictly positive ones, > 0", float((derivatives >= 0).float().mean())),
        Mistake("you returned the mean directional derivative: the TCAV score counts inputs, the share whose "
                "derivative is > 0 (a number in [0, 1]), so that one large gradient cannot decide it",
                float(derivatives.mean())),
        Mistake("you took absolute values: the score is about the sign (does the logit rise along the CAV?); "
                "count (grads @ cav_vector) > 0", float((derivatives.abs() > 0).float().mean())),
        Mistake("you counted the negative derivatives: the score is the share of inputs whose logit *rises* along "
                "the CAV, (grads @ cav_vector) > 0", float((derivatives < 0).float().mean())),
        Mistake("you averaged the signs: torch.sign gives +1, 0 or -1, so its mean is (positives - negatives) / N, "
                "in [-1, 1]; the score counts the positive ones, ((grads @ cav_vector) > 0).float().mean()",
                float(torch.sign(derivatives).mean())),
        Mistake("you returned a count, not a share: divide by the number of inputs N (or use .float().mean())",
                float((derivatives > 0).sum())),
        Mistake("you counted positive entries of the gradients, not of their dot product with the CAV: the "
                "directional derivative of input i is grads[i] @ cav_vector", float((grads > 0).float().mean())),
    ], otherwise=lambda g: f"your score is {float(g):.4f}, the reference {float((derivatives > 0).float().mean()):.4f}: "
                           "((grads @ cav_vector) > 0).float().mean()")
    return "the share of inputs whose logit rises along the CAV, with exact zeros and a large negative counted right"


# --------------------------------------------------------------------------------------------
# Hewitt & Liang's control task (2019)
# --------------------------------------------------------------------------------------------
@grader
def check_control_labels(control_labels) -> str:
    """Grade ``control_labels(types, n_classes, seed) -> labels (N,)``: one random label per type. Chapter 11.

    ``types`` (N, k) integers, one row per input. Any random assignment passes if it is a function of
    the type (same row, same label), takes values in [0, n_classes), uses more than one of them, and
    is reproducible for a seed, as :func:`xaicourse.probes.control_labels`.
    """
    gen = torch.Generator().manual_seed(1120)
    types = torch.randint(0, 8, (640, 2), generator=gen)            # 64 types, each about 10 times
    before, rng = types.clone(), torch.get_rng_state()
    got = control_labels(types, 3, 0)
    expect(torch.equal(torch.get_rng_state(), rng),
           "your function seeded or drew from torch's global random generator (torch.manual_seed, or torch.randint "
           "without generator=): a control task must not change the caller's randomness; draw from "
           "torch.Generator().manual_seed(seed)")
    expect_returned(got)
    expect(isinstance(got, torch.Tensor), f"return the labels as a tensor (N,), not {type(got).__name__}")
    expect_unchanged("your function changed types in place: build the labels in a new tensor", (types, before))
    expect(got.shape == (len(types),), f"return one label per input, shape ({len(types)},); got {tuple(got.shape)}")
    expect(not got.dtype.is_floating_point, "return integer labels (torch.long), e.g. from torch.randint")
    expect(bool(((got >= 0) & (got < 3)).all()), "labels must lie in [0, n_classes): torch.randint(n_classes, ...)")
    rows = types.unique(dim=0)
    per_type = [got[(types == t).all(1)].unique() for t in rows]
    if any(len(labels) > 1 for labels in per_type):
        raise CheckFailed("two inputs of the same type got different labels: you drew a label per input. The control "
                          "task draws one label per *type* (torch.unique(types, dim=0, return_inverse=True) gives each "
                          "input its type's index) and gives every input its type's label")
    expect(len(got.unique()) > 1, "every type got the same label: draw a random label for each type")
    task = (types[:, 0] > 1).long()
    expect(not torch.equal(got, task) and not torch.equal(got, types[:, 0] % 3),
           "your labels are a simple function of the first attribute: draw them at random per type")
    for column in range(types.shape[1]):   # 64 random labels from 3 cannot be a function of one column (p < 1e-20)
        expect(any(len(got[types[:, column] == v].unique()) > 1 for v in types[:, column].unique()),
               f"your labels depend only on column {column} of types: a type is the whole row, "
               "torch.unique(types, dim=0, return_inverse=True)")
    expect(len(got.unique()) == 3, f"your labels use only {sorted(got.unique().tolist())} of n_classes = 3: draw from "
                                   "all of [0, n_classes), torch.randint(n_classes, ...) (its upper bound is excluded)")
    a, b = types[:, 0], types[:, 1]   # labels that follow a formula of the values, or one label per merged group of types
    keys = {"a + b": a + b, "a - b": a - b, "a * b": a * b, "a ^ b": a ^ b, "max": types.max(1).values,
            "min": types.min(1).values, "a * a + b": a * a + b, "a + b * b": a + b * b, "2a + b": 2 * a + b,
            "a + 2b": a + 2 * b, "3a + b": 3 * a + b, "a + 3b": a + 3 * b}
    for name, key in keys.items():
        expect(any(len(got[key == v].unique()) > 1 for v in key.unique()),
               f"your labels are a function of {name} of the type's two values (a formula, or one label for several "
               "distinct types): draw one random label for each distinct row, "
               "torch.randint(n_classes, (n_types,), generator=...)[type_index]")
    by_type = torch.stack([labels[0] for labels in per_type])     # the label of each type, in sorted type order
    expect(not any(torch.equal(by_type[period:], by_type[:-period]) for period in range(1, 7)),
           "your labels repeat with the types' order (an arithmetic formula such as index % n_classes): draw them "
           "at random, torch.randint(n_classes, (n_types,), generator=...)")
    expect(bool(torch.equal(torch.as_tensor(control_labels(types, 3, 0)), got)),
           "two calls with the same seed gave different labels: draw from torch.Generator().manual_seed(seed)")
    expect(not torch.equal(torch.as_tensor(control_labels(types, 3, 1)), got),
           "seed 1 gave the same labels as seed 0: use the seed argument for the generator")
    return "one label per type, in [0, n_classes), reproducible for a seed and different for another"


# --------------------------------------------------------------------------------------------
# The sparse autoencoder: its loss and its decoder constraint (Bricken et al. 2023)
# --------------------------------------------------------------------------------------------
def sae_case(batch: int = 6, d: int = 5, n_latents: int = 10, seed: int = 1100):
    """The grader's fixed case: activations x (B, d), a reconstruction x_hat, latents f >= 0 (B, n_latents). Chapter 11.

    x_hat and f require grad, as in training (f is an encoder's ReLU output), and a quarter of the latents are exactly 0.
    """
    return _sae_tensors(batch, d, n_latents, seed)[:3]


def _sae_tensors(batch: int = 6, d: int = 5, n_latents: int = 10, seed: int = 1100):
    """x, x_hat, f = ReLU(pre) and the pre-activations ``pre`` (a leaf), so that gradients can be compared through
    the ReLU: at f = 0 the L1 norm's subgradient depends on how it is written (|f| or f, both right for f >= 0)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, d, generator=gen)
    x_hat = (x + 0.5 * torch.randn(batch, d, generator=gen)).requires_grad_()
    pre = (torch.randn(batch, n_latents, generator=gen) + 0.3).requires_grad_()
    return x, x_hat, torch.relu(pre), pre


def _sae_mistakes(x, x_hat, f, l1: float) -> list[Mistake]:
    x_hat, f = x_hat.detach(), f.detach()
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
        x, x_hat, f, pre = _sae_tensors(batch=batch)
        copies = (x.clone(), x_hat.detach().clone().requires_grad_(), f.detach().clone().requires_grad_())
        got = sae_loss(x, x_hat, f, l1)
        expect_returned(got)
        expect(isinstance(got, torch.Tensor), f"return the loss as a tensor, not {type(got).__name__}: without .item() "
                                              "or float(...), so that loss.backward() can train the SAE")
        expect_unchanged("your function changed x, x_hat or f (an in-place operation such as -= or .abs_()): "
                         "compute the loss on new tensors", (x, copies[0]), (f, copies[2]))
        want = sae.sae_loss(x, x_hat.detach(), f.detach(), l1)
        compare(got, want, _sae_mistakes(x, x_hat, f, l1), rtol=1e-5, atol=1e-6, otherwise=lambda g: (
            f"with B = {batch}, l1 = {l1} your loss is {float(g):.6f}, the reference "
            f"{float(want):.6f}: ((x - x_hat) ** 2).sum(-1).mean() + l1 * f.abs().sum(-1).mean()"))
        expect(isinstance(got, torch.Tensor) and got.requires_grad,
               "your loss has no gradient: return the tensor itself (not .item() or float(...)), and do not compute "
               "it under torch.no_grad() or from .detach()ed tensors, so that loss.backward() can train the SAE")
        grad_x_hat, grad_pre = torch.autograd.grad(got, (x_hat, pre), allow_unused=True, retain_graph=True)
        want_x_hat, want_pre = torch.autograd.grad(sae.sae_loss(x, x_hat, f, l1), (x_hat, pre))
        expect(grad_pre is not None and torch.allclose(grad_pre, want_pre, atol=1e-6),
               "no gradient (or the wrong one) reaches the encoder through f: compute the L1 term from f itself, not "
               "from f.detach() or a copy, or the encoder never learns to be sparse")
        expect(grad_x_hat is not None, "no gradient reaches x_hat: compute the error from x_hat itself, not from "
                                       "x_hat.detach() or under torch.no_grad(), or the decoder never learns")
        expect(torch.allclose(grad_x_hat, want_x_hat, atol=1e-6),
               "the gradient that reaches x_hat is not the reference's: compute the error from x_hat itself")
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
