"""Causal interventions inside a transformer: activation patching, attribution patching, ablation, logit lens.

A *site* is a module name of the model (``"blocks.1.hook_resid_post"``) or a (module name, head)
pair for a module whose output is (B, T, H, d_head), such as TinyGPT's ``blocks.<l>.attn.hook_z``:
then only that head's slice is touched. Every intervention goes through :mod:`xaicourse.hooks`, so
the model is left as found.

* :func:`activation_patching` runs the corrupt input with one site's output replaced by its value
  on the clean input, and reports how much of the clean metric that restores: 1 = all, 0 = none.
* :func:`attribution_patching` approximates the same numbers to first order, from one clean and
  one corrupt forward pass and one backward pass: grad(metric) . (clean - corrupt).
* :func:`ablate` (zero or mean ablation of heads), :func:`logit_lens`, :func:`direct_logit_attribution`.

Which *input tokens* a generated token depends on is :mod:`xaicourse.generation`.

``metric(logits) -> tensor`` turns the model's logits (B, T, V) into a number per sample (or one
number); it is averaged over the batch. Taught in chapter 10.
"""
from __future__ import annotations

from contextlib import ExitStack, contextmanager

import torch
from torch import nn

from .hooks import eval_mode, find_layer, record_layer, replace_output
from .inputs import check_types

__all__ = ["ablate", "activation_patching", "attribution_patching", "cache", "direct_logit_attribution",
           "logit_lens", "next_token_metric"]


def _split(site) -> tuple[str, int | None]:
    if isinstance(site, str):
        return site, None
    if isinstance(site, (tuple, list)) and len(site) == 2 and isinstance(site[0], str) and isinstance(site[1], int):
        return site[0], site[1]
    raise TypeError(f"a site is a module name or a (module name, head index) pair, got {site!r}")


def _index(output: torch.Tensor, head: int | None, position: int | None) -> tuple:
    """The slice of a site's output that a site (and a position) owns: [:, position, head]."""
    if head is not None and (output.dim() != 4 or not 0 <= head < output.shape[2]):
        raise ValueError(f"head {head} needs an output shaped (B, T, H, d_head) with H > {head}, got "
                         f"{tuple(output.shape)}: per-head sites are the attention's hook_z modules")
    return (slice(None), slice(None) if position is None else position, *(() if head is None else (head,)))


def _mean_metric(metric, logits) -> torch.Tensor:
    value = metric(logits)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"metric must return a tensor (one number per sample or one number), got {type(value).__name__}")
    return value.float().mean()


@check_types
def cache(model: nn.Module, ids: torch.Tensor, modules) -> dict:
    """The outputs of ``modules`` (names) on ``ids``, detached: {name: tensor}. Chapter 10."""
    names = sorted({_split(m)[0] for m in modules})
    with ExitStack() as stack, torch.no_grad(), eval_mode(model):
        recs = {name: stack.enter_context(record_layer(model, name)) for name in names}
        model(ids)
    return {name: rec.activations for name, rec in recs.items()}


@check_types
def next_token_metric(ids: torch.Tensor, positions) -> callable:
    """A metric: the mean logit of the true next token ``ids[:, p + 1]`` over ``positions`` p, per sample. Chapter 10.

    For the repeated sequences, ``positions = range(half + 1, 2 * half)`` scores the second copy.
    """
    positions = torch.as_tensor(list(positions))
    if positions.numel() == 0 or int(positions.max()) + 1 >= ids.shape[1] or int(positions.min()) < 0:
        raise ValueError(f"positions must be non-empty and in [0, {ids.shape[1] - 2}] (the next token must exist)")
    targets = ids[:, positions + 1]

    def metric(logits):
        return logits[:, positions.to(logits.device)].gather(-1, targets.to(logits.device)[..., None])[..., 0].mean(-1)
    return metric


def _effects(values, clean: float, corrupt: float) -> torch.Tensor:
    gap = clean - corrupt
    if abs(gap) < 1e-6:
        raise ValueError(f"the metric is the same on the clean and the corrupt input ({clean:.4g}): nothing to "
                         "restore; pick a corruption that changes the metric")
    return (torch.as_tensor(values, dtype=torch.float32) - corrupt) / gap


@check_types
def activation_patching(model: nn.Module, clean_ids: torch.Tensor, corrupt_ids: torch.Tensor, metric, modules, *,
                        per_position: bool = False) -> torch.Tensor:
    """Normalised effect of patching each site's clean output into the corrupt run. Chapter 10.

    ``modules``: a list of sites (module names, or (name, head) pairs). Returns (n_sites,), or
    (n_sites, T) with ``per_position=True`` (one position of one site patched at a time), where
    effect = (metric_patched - metric_corrupt) / (metric_clean - metric_corrupt): 1 restores the clean
    metric, 0 changes nothing. Swap ``clean_ids`` and ``corrupt_ids`` to patch the other way (noising:
    1 = the clean behaviour is destroyed). One forward pass per site (per position).
    """
    sites = [_split(m) for m in modules]
    for name, _ in sites:
        find_layer(model, name)
    clean_cache = cache(model, clean_ids, [n for n, _ in sites])
    positions = range(clean_ids.shape[1]) if per_position else [None]
    values = []
    with torch.no_grad(), eval_mode(model):
        clean, corrupt = (_mean_metric(metric, model(x)).item() for x in (clean_ids, corrupt_ids))
        for name, head in sites:
            row = []
            for p in positions:
                def patch(output, name=name, head=head, p=p):
                    idx = _index(output, head, p)
                    patched = output.clone()
                    patched[idx] = clean_cache[name][idx]
                    return patched
                with replace_output(model, name, patch):
                    row.append(_mean_metric(metric, model(corrupt_ids)).item())
            values.append(row)
    effects = _effects(values, clean, corrupt)
    return effects if per_position else effects[:, 0]


@check_types
def attribution_patching(model: nn.Module, clean_ids: torch.Tensor, corrupt_ids: torch.Tensor, metric, modules, *,
                         per_position: bool = False) -> torch.Tensor:
    """First-order estimate of :func:`activation_patching`: grad(metric at corrupt) . (clean - corrupt). Chapter 10.

    Same shapes and normalisation as :func:`activation_patching`, from two forward passes and one
    backward pass whatever the number of sites. Exact when the metric is linear in the site's output
    along the patch; it misses where the patch crosses a nonlinearity (an attention softmax that
    saturates), so check it against real patching on the sites that matter.
    """
    sites = [_split(m) for m in modules]
    names = sorted({n for n, _ in sites})
    clean_cache = cache(model, clean_ids, names)
    taps, corrupt_acts = {}, {}

    def tap(name):  # output + a zero leaf: d(metric)/d(leaf) is the gradient at the output, and the graph stays whole
        def replace(output):
            corrupt_acts[name] = output.detach()
            taps[name] = torch.zeros_like(output, requires_grad=True)
            return output + taps[name]
        return replace

    with ExitStack() as stack, eval_mode(model), torch.enable_grad():
        for n in names:
            stack.enter_context(replace_output(model, n, tap(n)))
        corrupt_value = _mean_metric(metric, model(corrupt_ids))
        grads = torch.autograd.grad(corrupt_value, [taps[n] for n in names], allow_unused=True)
    grads = [torch.zeros_like(corrupt_acts[n]) if g is None else g for n, g in zip(names, grads)]
    with torch.no_grad():
        clean = _mean_metric(metric, model(clean_ids)).item()
    grads = dict(zip(names, grads))
    values = []
    for name, head in sites:
        contrib = grads[name] * (clean_cache[name] - corrupt_acts[name])  # (B, T, ...)
        idx = _index(contrib, head, None)
        per_t = contrib[idx].flatten(2).sum(-1) if contrib[idx].dim() > 2 else contrib[idx]
        values.append(per_t.sum(0).tolist() if per_position else [per_t.sum().item()])
    # the metric is a batch mean, so its gradient already carries 1 / B: summing over the batch is the first-order change
    effects = _effects(values, clean, corrupt_value.item()) - _effects(torch.zeros(1), clean, corrupt_value.item())
    return effects if per_position else effects[:, 0]


@contextmanager
def ablate(model: nn.Module, heads, mode: str = "mean", reference: torch.Tensor | None = None):
    """Inside the block, the given heads' outputs are replaced by zero or by their mean. Chapter 10.

    ``heads``: (module name, head) sites on (B, T, H, d_head) outputs. ``mode="mean"`` uses each
    head's mean output per position over the ``reference`` ids (a batch of typical inputs);
    ``"zero"`` writes zeros (a value the model never saw, so it can overstate the head's role).
    """
    if mode not in ("mean", "zero"):
        raise ValueError(f"mode must be 'mean' or 'zero', got {mode!r}")
    sites = [_split(h) for h in heads]
    if mode == "mean":
        if reference is None:
            raise ValueError("mean ablation needs reference ids (a batch of typical inputs) to take the mean over")
        means = {n: a.mean(0, keepdim=True) for n, a in cache(model, reference, [n for n, _ in sites]).items()}
    with ExitStack() as stack:
        for name in sorted({n for n, _ in sites}):
            owned = [h for n, h in sites if n == name]

            def replace(output, name=name, owned=owned):
                new = output.clone()
                for h in owned:
                    idx = _index(output, h, None)
                    new[idx] = 0.0 if mode == "zero" else means[name][idx].expand_as(new[idx])
                return new
            stack.enter_context(replace_output(model, name, replace))
        yield model


@check_types
def logit_lens(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """The unembedding read at every layer: (n_layers + 1, B, T, V) logits. Chapter 10.

    Row 0 reads the token embeddings, row l the residual stream after block l - 1; the last row is
    the model's output. Exact for TinyGPT, which has no final LayerNorm to approximate.
    """
    names = ["hook_embed", *[f"blocks.{i}.hook_resid_post" for i in range(len(model.blocks))]]
    acts = cache(model, ids, names)
    with torch.no_grad():
        return torch.stack([model.unembed(acts[n]) for n in names])


@check_types
def direct_logit_attribution(model: nn.Module, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each head's direct contribution to the logit of ``targets`` (B, T): (B, T, n_layers, n_heads). Chapter 10.

    Head (l, h) writes ``z[:, :, h] @ W_O[h]`` into the residual stream; its direct effect on token
    ``t``'s logit is that vector dotted with ``W_U[t]``. The rest of the logit is the embedding's
    direct term and the biases, so the parts sum to the logit exactly (no LayerNorm).
    """
    names = [f"blocks.{i}.attn.hook_z" for i in range(len(model.blocks))]
    acts = cache(model, ids, names)
    w_u = model.unembed.weight[targets.to(model.unembed.weight.device)]  # (B, T, d_model)
    with torch.no_grad():
        per_layer = [torch.einsum("bthm,btm->bth", blk.attn.head_results(acts[n]), w_u)
                     for blk, n in zip(model.blocks, names)]
    return torch.stack(per_layer, dim=2)
