"""Which earlier tokens a generated token depends on: attribution for generation. Chapter 10.

A generation is ``ids`` (B, P + G): a prompt of P tokens followed by G generated tokens. For each
generated token g (at position P + g, predicted at position P + g - 1), a method scores every prompt
token by how much the model's score of that token depends on it. The result is the output-token x
input-token matrix, (B, G, P). The generated tokens before g are fed to the model as they are and
are not attributed, as in Captum's ``LLMAttribution``.

The score of a generated token: ``"log_prob"`` (Captum's LLM attribution target), ``"logit"``, or
with ``contrast`` ids (B, G) the contrastive score logit(token) - logit(contrast), "why this token
rather than that one" (the log-probability difference is the same number: the softmax normaliser
cancels).

Methods (one function each, sharing :func:`_scorer`):

* :func:`integrated_gradients`: IG over the token embeddings, from the embedding of a baseline token
  at every prompt position (positions and generated tokens untouched), with
  :func:`xaicourse.ig.integrated_gradients` (Captum: ``LayerIntegratedGradients`` on the embedding).
* :func:`ablation`: the drop in the score when one prompt token is replaced by the baseline token
  (Captum: ``FeatureAblation``).
* :func:`attention_x_gradient`: one layer's attention weights times the score's gradient with
  respect to them, summed over heads, in the row of the predicting position.

The model maps ids (B, T) to logits (B, T, V) and accepts ``token_embeddings=`` (B, T, d) instead of
ids (as :class:`xaicourse.models.TinyGPT`).
"""
from __future__ import annotations

from contextlib import ExitStack

import torch
from torch import nn

from . import ig
from .hooks import eval_mode, find_layer, replace_output
from .inputs import check_types

__all__ = ["METHODS", "ablation", "attention_x_gradient", "generate", "hit_rate", "integrated_gradients",
           "token_attribution"]

SCORES = ("log_prob", "logit")


def _check(ids: torch.Tensor, prompt_len: int, contrast: torch.Tensor | None, score: str) -> int:
    if ids.dim() != 2 or ids.dtype != torch.long:
        raise ValueError(f"ids must be token ids (B, T) of dtype long, got {tuple(ids.shape)} {ids.dtype}")
    n_new = ids.shape[1] - prompt_len
    if not 1 <= prompt_len < ids.shape[1]:
        raise ValueError(f"prompt_len must leave at least one generated token: 1 <= prompt_len < {ids.shape[1]}, "
                         f"got {prompt_len}")
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    if contrast is not None and tuple(contrast.shape) != (ids.shape[0], n_new):
        raise ValueError(f"contrast must hold one token per generated token, shaped (B, G) = "
                         f"{(ids.shape[0], n_new)}, got {tuple(contrast.shape)}")
    return n_new


def _scorer(ids: torch.Tensor, prompt_len: int, g: int, contrast, score: str):
    """scores(logits (B, T, V)) -> (B, 1): the score of generated token ``g`` (0-based) at its predicting position."""
    position, target = prompt_len + g - 1, ids[:, prompt_len + g]
    other = None if contrast is None else contrast[:, g].to(ids.device)

    def scores(logits):  # a batch of k copies of the B samples (IG's path points), in that order
        at, reps = logits[:, position], logits.shape[0] // ids.shape[0]
        picked = at.gather(-1, target.repeat(reps)[:, None])
        if other is not None:
            return picked - at.gather(-1, other.repeat(reps)[:, None])
        return picked - at.logsumexp(-1, keepdim=True) if score == "log_prob" else picked
    return scores


class _Scored(nn.Module):
    """The model from token embeddings (B, T, d) to one score per sample (B, 1)."""

    def __init__(self, model: nn.Module, scores):
        super().__init__()
        self.inner, self.scores = model, scores

    def forward(self, embeddings):
        return self.scores(self.inner(token_embeddings=embeddings))


@check_types
def generate(model: nn.Module, ids: torch.Tensor, n_new: int) -> torch.Tensor:
    """Greedy generation: ``ids`` (B, P) followed by ``n_new`` tokens, each the model's top next token. Chapter 10."""
    with torch.no_grad(), eval_mode(model):
        for _ in range(n_new):
            ids = torch.cat([ids, model(ids)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids


@check_types
def integrated_gradients(model: nn.Module, ids: torch.Tensor, prompt_len: int, *, score: str = "log_prob",
                         contrast: torch.Tensor | None = None, baseline_id: int = 0, n_steps: int = 50) -> torch.Tensor:
    """IG over the prompt's token embeddings for each generated token: (B, G, P), summed over d. Chapter 10.

    The path moves the P prompt embeddings from the embedding of ``baseline_id`` to their real values;
    the rows sum to score(real) - score(baseline prompt) up to the quadrature error (completeness).
    """
    n_new = _check(ids, prompt_len, contrast, score)
    with torch.no_grad():
        x = model.embed(ids)
        base = x.clone()
        base[:, :prompt_len] = model.embed(torch.full_like(ids[:, :prompt_len], baseline_id))
    rows = []
    with eval_mode(model):
        for g in range(n_new):
            wrapped = _Scored(model, _scorer(ids, prompt_len, g, contrast, score))
            rows.append(ig.integrated_gradients(wrapped, x, 0, baseline=base, n_steps=n_steps)[:, :prompt_len].sum(-1))
    return torch.stack(rows, dim=1)


@check_types
def ablation(model: nn.Module, ids: torch.Tensor, prompt_len: int, *, score: str = "log_prob",
             contrast: torch.Tensor | None = None, baseline_id: int = 0) -> torch.Tensor:
    """Score drop of each generated token when one prompt token is replaced by ``baseline_id``: (B, G, P). Chapter 10.

    One forward pass per prompt token serves every generated token at once (causal attention: a
    position's logits do not depend on later tokens).
    """
    n_new = _check(ids, prompt_len, contrast, score)
    scorers = [_scorer(ids, prompt_len, g, contrast, score) for g in range(n_new)]

    def all_scores(x):
        logits = model(x)
        return torch.cat([s(logits) for s in scorers], dim=1)  # (B, G)

    with torch.no_grad(), eval_mode(model):
        full = all_scores(ids)
        drops = []
        for t in range(prompt_len):
            changed = ids.clone()
            changed[:, t] = baseline_id
            drops.append(full - all_scores(changed))
    return torch.stack(drops, dim=2)


@check_types
def attention_x_gradient(model: nn.Module, ids: torch.Tensor, prompt_len: int, *, score: str = "log_prob",
                         contrast: torch.Tensor | None = None, layer: int = -1) -> torch.Tensor:
    """Attention x its gradient, summed over heads, in the predicting row: (B, G, P). Chapter 10.

    ``layer``: which block's attention weights (``blocks.<layer>.attn.hook_pattern``, (B, H, T, T));
    default the last. Only the prompt's key positions are returned. A heuristic with no completeness
    promise: it sees one layer's routing, not what the values carry.
    """
    n_new = _check(ids, prompt_len, contrast, score)
    n_layers = len(model.blocks)
    if not -n_layers <= layer < n_layers:
        raise ValueError(f"layer must be in [{-n_layers}, {n_layers - 1}] for a model with {n_layers} blocks, got {layer}")
    name = f"blocks.{layer % n_layers}.attn.hook_pattern"
    find_layer(model, name)
    rows = []
    with eval_mode(model), torch.enable_grad():
        for g in range(n_new):
            taps = {}

            def tap(pattern):  # pattern + a zero leaf: the leaf's gradient is the pattern's
                taps["pattern"], taps["leaf"] = pattern.detach(), torch.zeros_like(pattern, requires_grad=True)
                return pattern + taps["leaf"]
            with ExitStack() as stack:
                stack.enter_context(replace_output(model, name, tap))
                value = _scorer(ids, prompt_len, g, contrast, score)(model(ids)).sum()
                grad, = torch.autograd.grad(value, [taps["leaf"]])
            product = (taps["pattern"] * grad).sum(1)  # (B, T, T): summed over heads
            rows.append(product[:, prompt_len + g - 1, :prompt_len])
    return torch.stack(rows, dim=1)


METHODS = {"integrated gradients": integrated_gradients, "ablation": ablation,
           "attention x gradient": attention_x_gradient}


@check_types
def token_attribution(model: nn.Module, ids: torch.Tensor, prompt_len: int, method: str = "integrated gradients",
                      **kwargs) -> torch.Tensor:
    """The output-token x input-token matrix (B, G, P) by one of :data:`METHODS` (by name). Chapter 10."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    return METHODS[method](model, ids, prompt_len, **kwargs)


@check_types
def hit_rate(attributions: torch.Tensor, truth: torch.Tensor) -> float:
    """Share of rows whose top-scoring prompt token is the true source: ``attributions`` (B, G, P), ``truth`` (B, G). Chapter 10.

    A row whose maximum is shared by several tokens (a tie, a constant row) counts as a miss unless
    the source is the only maximum: ties cannot decide a hit.
    """
    if attributions.shape[:2] != truth.shape:
        raise ValueError(f"truth must give one source position per row, shaped {tuple(attributions.shape[:2])}, "
                         f"got {tuple(truth.shape)}")
    top = attributions.max(-1, keepdim=True).values
    at_top = attributions >= top - 1e-7 * top.abs().clamp(min=1.0)
    unique = at_top.sum(-1) == 1
    hits = at_top.gather(-1, truth[..., None].to(attributions.device))[..., 0] & unique
    return hits.float().mean().item()
