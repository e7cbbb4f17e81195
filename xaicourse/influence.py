"""Which training examples explain a prediction: gradient similarity, TracIn, influence functions. Chapter 12.

Every method scores each (test example, training example) pair from per-example gradients of the
loss with respect to the model's parameters (or a chosen subset, e.g. the last layer), computed with
``torch.func`` (``vmap`` over ``grad``) in memory-bounded chunks:

* :func:`per_example_gradients`: (N, P), one flattened gradient per example.
* :func:`gradient_similarity`: g_test . g_train, or their cosine (Charpiat et al. 2019).
* :func:`tracin`: sum over saved checkpoints of lr_k * g_test(w_k) . g_train(w_k) (Pruthi et al. 2020,
  TracInCP); :func:`self_influence` its diagonal, which ranks mislabelled examples high.
* :func:`influence_function`: g_test^T (H + damping I)^-1 g_train / n with H the Hessian of the mean
  training loss (Koh & Liang 2017): exact (the Hessian built and solved, for a few thousand
  parameters such as a last layer) or by conjugate gradients on Hessian-vector products.

Positive scores mean "this training example pushed the test loss down" (a proponent) for TracIn
and gradient similarity; an influence function estimates the change of the test loss when the
training example is *removed* (times 1 / N), so its proponents are the examples with positive scores
too (removing them raises the test loss). Captum's ``TracInCP`` gives the same TracIn scores
(tests/test_influence.py).
"""
from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from .batching import batched
from .inputs import check_types

__all__ = ["gradient_similarity", "hessian", "influence_function", "per_example_gradients", "self_influence", "tracin"]


def _params(model: nn.Module, names) -> dict:
    named = dict(model.named_parameters())
    if names is None:
        return {n: p.detach() for n, p in named.items() if p.requires_grad}
    unknown = [n for n in names if n not in named]
    if unknown:
        raise ValueError(f"no parameters named {unknown}; the model has {sorted(named)[:8]}...")
    return {n: named[n].detach() for n in names}


@check_types
def per_example_gradients(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, *, params=None,
                          batch_size: int | None = None) -> torch.Tensor:
    """The gradient of ``loss_fn(model(x_i), y_i)`` for each example, flattened over ``params``: (N, P). Chapter 12.

    ``loss_fn(logits (1, C), y (1,))`` must return the example's loss (a mean or sum over one example
    is the same); ``params``: parameter names (default: every trainable parameter). The model's
    parameters and mode are not changed (BatchNorm should be in eval mode: one example has no batch
    statistics).
    """
    if len(x) != len(y):
        raise ValueError(f"x and y must hold the same examples, got {len(x)} and {len(y)}")
    chosen = _params(model, params)
    frozen = {n: p.detach() for n, p in model.named_parameters() if n not in chosen}
    buffers = dict(model.named_buffers())

    def loss(p, xi, yi):
        out = functional_call(model, ({**frozen, **p}, buffers), (xi[None],))
        return loss_fn(out, yi[None])

    per_example = vmap(grad(loss), in_dims=(None, 0, 0))

    def run(items: slice) -> torch.Tensor:
        grads = per_example(chosen, x[items], y[items])
        return torch.cat([g.flatten(1) for g in grads.values()], dim=1)

    return torch.cat([chunk for _, chunk in batched(len(x), run, model=model, batch_size=batch_size,
                                                   grad=False, desc="per-example gradients", progress=False)])


@check_types
def gradient_similarity(model: nn.Module, loss_fn, train: tuple, test: tuple, *, kind: str = "dot",
                        params=None) -> torch.Tensor:
    """(n_test, n_train): g_test . g_train (``kind="dot"``) or their cosine (``"cosine"``). Chapter 12."""
    if kind not in ("dot", "cosine"):
        raise ValueError(f"kind must be 'dot' or 'cosine', got {kind!r}")
    g_train = per_example_gradients(model, loss_fn, *train, params=params)
    g_test = per_example_gradients(model, loss_fn, *test, params=params)
    if kind == "cosine":
        g_train = nn.functional.normalize(g_train, dim=1)
        g_test = nn.functional.normalize(g_test, dim=1)
    return g_test @ g_train.T


def _checkpoints(model: nn.Module, checkpoints, learning_rates):
    checkpoints = list(checkpoints)
    if not checkpoints:
        raise ValueError("checkpoints is empty: save the model's state_dict during training and pass the list")
    if learning_rates is None:
        learning_rates = [1.0] * len(checkpoints)
    learning_rates = list(learning_rates) if not isinstance(learning_rates, (int, float)) else \
        [float(learning_rates)] * len(checkpoints)
    if len(learning_rates) != len(checkpoints):
        raise ValueError(f"one learning rate per checkpoint: {len(checkpoints)} checkpoints, "
                         f"{len(learning_rates)} learning rates")
    return checkpoints, learning_rates


@check_types
def tracin(model: nn.Module, checkpoints, loss_fn, train: tuple, test: tuple, *, learning_rates=None,
           params=None) -> torch.Tensor:
    """TracInCP scores (n_test, n_train): sum_k lr_k g_test(w_k) . g_train(w_k). Chapter 12.

    ``checkpoints``: state dicts saved during training (the model's own weights are restored after);
    ``learning_rates``: one per checkpoint (default 1).
    """
    checkpoints, learning_rates = _checkpoints(model, checkpoints, learning_rates)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    total = None
    try:
        for state, lr in zip(checkpoints, learning_rates):
            model.load_state_dict(state)
            score = lr * gradient_similarity(model, loss_fn, train, test, params=params)
            total = score if total is None else total + score
    finally:
        model.load_state_dict(original)
    return total


@check_types
def self_influence(model: nn.Module, checkpoints, loss_fn, train: tuple, *, learning_rates=None,
                   params=None) -> torch.Tensor:
    """TracIn of each training example on itself, sum_k lr_k |g(w_k)|^2: (n_train,). Chapter 12.

    Mislabelled or atypical examples keep a large loss gradient through training: they rank first.
    """
    checkpoints, learning_rates = _checkpoints(model, checkpoints, learning_rates)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    total = 0
    try:
        for state, lr in zip(checkpoints, learning_rates):
            model.load_state_dict(state)
            total = total + lr * per_example_gradients(model, loss_fn, *train, params=params).pow(2).sum(1)
    finally:
        model.load_state_dict(original)
    return total


def _hessian_vector_product(model, loss_fn, x, y, chosen: dict):
    frozen = {n: p.detach() for n, p in model.named_parameters() if n not in chosen}
    buffers = dict(model.named_buffers())
    names = list(chosen)
    shapes = [chosen[n].shape for n in names]
    sizes = [chosen[n].numel() for n in names]
    flat0 = torch.cat([chosen[n].flatten() for n in names])

    def mean_loss(flat):
        parts = dict(zip(names, (t.view(s) for t, s in zip(flat.split(sizes), shapes))))
        return loss_fn(functional_call(model, ({**frozen, **parts}, buffers), (x,)), y).mean()

    def hvp(v):
        return torch.func.jvp(torch.func.grad(mean_loss), (flat0,), (v,))[1]
    return hvp, mean_loss, flat0


@check_types
def hessian(model: nn.Module, loss_fn, train: tuple, *, params=None) -> torch.Tensor:
    """The Hessian (P, P) of the mean training loss over ``params`` (default: every trainable parameter). Chapter 12.

    Built column by column with ``torch.func.hessian``, in the order of :func:`per_example_gradients`;
    for a few thousand parameters at most. Its eigenvalues say whether the loss is convex where
    the model stopped (all >= 0), which influence functions assume.
    """
    chosen = _params(model, params)
    if sum(p.numel() for p in chosen.values()) > 5000:
        raise ValueError(f"the exact Hessian over {sum(p.numel() for p in chosen.values())} parameters is too large: "
                         "choose fewer params (e.g. the last layer)")
    _, mean_loss, flat0 = _hessian_vector_product(model, loss_fn, *train, chosen)
    return torch.func.hessian(mean_loss)(flat0)


@check_types
def influence_function(model: nn.Module, loss_fn, train: tuple, test: tuple, *, params=None, damping: float = 0.01,
                       method: str = "exact", cg_steps: int = 100) -> torch.Tensor:
    """Koh & Liang's influence (n_test, n_train): g_test^T (H + damping I)^-1 g_train / n_train. Chapter 12.

    The score estimates how much the test loss *rises* when the training example is removed and the
    model retrained (to first order around the trained weights): proponents have positive scores.
    ``H`` is the Hessian of the mean training loss over ``params``; ``method="exact"`` builds it
    (P x P: for a last layer) and solves, ``"cg"`` runs ``cg_steps`` conjugate-gradient steps on
    Hessian-vector products for each test example. On a non-convex network H is not positive
    definite and the damping decides a lot (Basu et al. 2021): measure against retraining.
    """
    if method not in ("exact", "cg"):
        raise ValueError(f"method must be 'exact' or 'cg', got {method!r}")
    if damping < 0:
        raise ValueError(f"damping must be >= 0, got {damping}")
    chosen = _params(model, params)
    x_train, y_train = train
    g_train = per_example_gradients(model, loss_fn, *train, params=list(chosen))
    g_test = per_example_gradients(model, loss_fn, *test, params=list(chosen))
    hvp, mean_loss, flat0 = _hessian_vector_product(model, loss_fn, x_train, y_train, chosen)
    n = len(x_train)
    if method == "exact":
        if flat0.numel() > 5000:
            raise ValueError(f"the exact Hessian over {flat0.numel()} parameters is too large: choose fewer params "
                             "(e.g. the last layer) or method='cg'")
        matrix = torch.func.hessian(mean_loss)(flat0)
        solved = torch.linalg.solve(matrix + damping * torch.eye(len(flat0), dtype=matrix.dtype, device=matrix.device), g_test.T).T  # (n_test, P)
    else:
        batched_hvp = vmap(hvp)  # one Hessian-vector product per test example, in one pass

        def solve(items: slice) -> torch.Tensor:
            return _conjugate_gradients(lambda v: batched_hvp(v) + damping * v, g_test[items], cg_steps)
        parts = [chunk for _, chunk in batched(len(g_test), solve, model=model, grad=False,
                                               desc="conjugate gradients", progress=False)]
        solved = torch.cat([x for x, _ in parts])
        residual = max(float(r.max()) for _, r in parts)
        if residual > 1e-3:
            warnings.warn(f"conjugate gradients did not converge in cg_steps={cg_steps} steps (largest relative "
                          f"residual {residual:.2g}): H + damping I is ill-conditioned or not positive definite "
                          "(a non-convex loss); the scores are a truncated solve. Raise cg_steps or damping, or "
                          "compare with method='exact'", stacklevel=2)
    return solved @ g_train.T / n


def _conjugate_gradients(apply, b: torch.Tensor, steps: int, rtol: float = 1e-6) -> tuple:
    """Solve ``apply(x) = b`` for each row of ``b`` (k, P) at once; ``apply`` maps (k, P) to (k, P).

    Each row runs its own conjugate-gradient recursion (its own step sizes) and stops moving once its
    residual is below ``rtol`` times its own |b| (relative: a confidently classified test example has a
    tiny gradient, and an absolute tolerance would stop it at x = 0). Returns the solutions and each
    row's relative residual |b - Ax| / |b|.
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = (r * r).sum(1)
    stop = rtol ** 2 * rs
    for _ in range(steps):
        active = rs > stop
        if not active.any():
            break
        ap = apply(p)
        alpha = torch.where(active, rs / (p * ap).sum(1), torch.zeros_like(rs))
        x = x + alpha[:, None] * p
        r = r - alpha[:, None] * ap
        new = (r * r).sum(1)
        p = r + torch.where(active, new / rs, torch.zeros_like(rs))[:, None] * p
        rs = new
    return x, r.norm(dim=1) / b.norm(dim=1).clamp_min(torch.finfo(b.dtype).tiny)
