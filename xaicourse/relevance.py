"""Which tokens or patches a Transformer's prediction depends on: attention relevance (maths only). Chapter 09.

Chapter 04 read the attention weights A (where each token *reads from*). Chapter 09 asks which input
tokens the *output* needs, and weighs each attention map by the gradient of the target score with
respect to it, dA = d(score)/dA (Chefer, Gur & Wolf 2021, "Generic Attention-model Explainability",
eq. 5-6):

    R = I                                               (T, T): every token starts as its own source
    for each block l:  Abar_l = mean_heads((dA_l * A_l)^+)
                       R <- R + Abar_l @ R              (the identity is the residual connection)

and the explanation is the class token's row of R, over the other tokens. :func:`attention_relevance`
computes it (``method="gradient_rollout"``) and, on the same recorded attentions, three baselines of
the chapter: ``"attention"`` (the last layer's head mean), ``"rollout"`` (chapter 04's
:func:`xaicourse.attention.rollout`) and ``"attention_x_gradient"`` (the last layer's
mean_heads((dA * A)^+) alone). :func:`gradient_rollout` is the rule itself, on given attentions and
gradients (what the exercise asks for); :func:`record_attentions` records both in one pass and
:func:`class_token_rows` reads any method's class-token row up to any layer (the explorer's maps).
:func:`patch_integrated_gradients` is the attribution reference for a ViT: Integrated Gradients at
the patch embeddings, one value per patch (for text, chapter 05's ``TextClassifierInterpreter``
does the same at the word embeddings).

Models (attention weights and their gradients are recorded for one forward and one backward pass;
hooks are removed in ``finally``; mode, ``requires_grad``, ``.grad`` and hooks are left as found):

* the course's :class:`~xaicourse.models.TinyViT` and :class:`~xaicourse.models.HubViT` (their
  ``forward_attentions``), or a :class:`~xaicourse.models.VisionTransformer` bundle;
* timm Vision Transformers (``timm.models.vision_transformer.Attention``): fused attention is
  switched off for the call and the weights are recorded at ``attn_drop``;
* Hugging Face models with eager attention (BERT, ViT, ...): ``output_attentions=True``. SDPA or
  flash attention never form the weights: such a model is refused, with the fix
  (``attn_implementation="eager"``).

Shapes: images (B, 3, H, W) give (B, n_patches), with the prefix tokens (class, distillation,
register; :func:`xaicourse.cam.prefix_tokens`) dropped, patches in row-major order on the grid
(:func:`patch_grid` lays them out). Text gives (B, T): one value per token of the encoding, the
class token's own entry (position 0) and padding set to 0.
"""
from __future__ import annotations

import functools
from contextlib import ExitStack, contextmanager

import torch
from torch import nn

from . import attention as attention_maths
from .baselines import as_baseline
from .batching import chunk_limit
from .cam import prefix_tokens
from .hooks import eval_mode, record_layer
from .inputs import check_choice, check_int, check_types, explainer, model_input, warn_if_zero
from .inputs import logits as read_logits
from .targets import resolve_targets, select

__all__ = ["RELEVANCE_METHODS", "attention_relevance", "class_token_rows", "gradient_rollout", "patch_grid",
           "patch_integrated_gradients", "prepare_inputs", "record_attentions"]

#: The ``method``s of :func:`attention_relevance`.
RELEVANCE_METHODS = ("gradient_rollout", "attention", "rollout", "attention_x_gradient")

_EAGER_HINT = ('load it with attn_implementation="eager" (e.g. AutoModel.from_pretrained(name, '
               'attn_implementation="eager")), or switch a loaded model with model.set_attn_implementation("eager")')


# --------------------------------------------------------------------------------------------
# The rule, on given attentions and gradients
# --------------------------------------------------------------------------------------------
def gradient_rollout(attentions: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Chefer et al.'s relevance R (..., T, T) from attentions and their gradients (..., layers, heads, T, T).

    R = I, then per layer (first to last) R <- R + mean_heads((dA * A)^+) @ R. Row 0 from column 1
    on is the class token's relevance over the other tokens. Taught in chapter 09 (the exercise).
    """
    if not isinstance(attentions, torch.Tensor) or not isinstance(gradients, torch.Tensor):
        raise TypeError("attentions and gradients must be tensors of shape (..., layers, heads, T, T)")
    if attentions.shape != gradients.shape:
        raise ValueError(f"attentions {tuple(attentions.shape)} and gradients {tuple(gradients.shape)} must have the "
                         "same shape (..., layers, heads, T, T): one gradient per attention weight")
    if attentions.dim() < 4 or attentions.shape[-1] != attentions.shape[-2]:
        raise ValueError(f"attentions must be (..., layers, heads, T, T), got shape {tuple(attentions.shape)}")
    weighted = (gradients.float() * attentions.float()).clamp(min=0).mean(dim=-3)  # (..., layers, T, T)
    n_tokens = weighted.shape[-1]
    eye = torch.eye(n_tokens, device=weighted.device, dtype=weighted.dtype)
    relevance = eye.expand(*weighted.shape[:-3], n_tokens, n_tokens).clone()
    for layer in range(weighted.shape[-3]):
        relevance = relevance + weighted[..., layer, :, :] @ relevance
    return relevance


# --------------------------------------------------------------------------------------------
# Recording attentions and their gradients
# --------------------------------------------------------------------------------------------
def _timm_attentions(model: nn.Module) -> list[nn.Module]:
    """timm Attention modules (they have ``fused_attn`` and ``attn_drop``), in forward order."""
    return [m for m in model.modules()
            if hasattr(m, "fused_attn") and isinstance(getattr(m, "attn_drop", None), nn.Module)]


def _hf_config(model: nn.Module):
    config = getattr(model, "config", None)
    if config is None and hasattr(model, "hf"):  # the course's HubViT wrapper
        config = getattr(model.hf, "config", None)
    return config if hasattr(config, "_attn_implementation") else None


def _check_eager(model: nn.Module) -> None:
    config = _hf_config(model)
    implementation = getattr(config, "_attn_implementation", None) if config is not None else None
    if implementation is not None and implementation != "eager":
        raise ValueError(f"{type(model).__name__} uses {implementation!r} attention, which never forms the attention "
                         f"weights, so there is nothing to weigh by gradients: {_EAGER_HINT}")


@contextmanager
def _unfused(modules: list[nn.Module]):
    saved = [m.fused_attn for m in modules]
    try:
        for m in modules:
            m.fused_attn = False
        yield
    finally:
        for m, fused in zip(modules, saved):
            m.fused_attn = fused


def _forward(model: nn.Module, inputs, kind: str):
    """(logits, per-layer attentions (B, heads, T, T) that are nodes of the graph)."""
    if hasattr(model, "forward_attentions"):
        logits, per_layer = model.forward_attentions(inputs)
        return logits, list(per_layer or [])
    timm_modules = _timm_attentions(model)
    if timm_modules:
        with ExitStack() as stack:
            stack.enter_context(_unfused(timm_modules))
            records = [stack.enter_context(record_layer(model, m.attn_drop, keep_graph=True)) for m in timm_modules]
            logits = model(inputs)
        return logits, [r.activations for r in records]
    if _hf_config(model) is not None:
        if kind == "text":  # from the embeddings, which require grad, so that a frozen model's attentions get one
            rest = {k: v for k, v in inputs.items() if k != "input_ids"}
            embeds = model.get_input_embeddings()(inputs["input_ids"]).detach().requires_grad_(True)
            out = model(inputs_embeds=embeds, **rest, output_attentions=True)
        else:
            out = model(pixel_values=inputs, output_attentions=True)
        return getattr(out, "logits", out), list(getattr(out, "attentions", None) or [])
    raise TypeError(f"{type(model).__name__} is not a Transformer the course can read attention weights from: "
                    "attention_relevance takes the course's ViTs (xc.models.tiny_vit()), timm Vision Transformers, "
                    "or Hugging Face models with eager attention (BERT, ViT); for a CNN use xc.cam.grad_cam")


def record_attentions(model: nn.Module, inputs, target=None, *, kind: str = "image"):
    """One forward and backward pass: (attentions, gradients, targets). Chapter 09.

    ``attentions`` and ``gradients`` are (B, layers, heads, T, T) float32 (detached), the gradients
    of each sample's target logit with respect to each attention weight; ``targets`` (B,). ``inputs``
    is an image batch (``kind="image"``) or a dict of encodings (``kind="text"``), as
    :func:`prepare_inputs` makes them. The pass runs in eval mode (each module's mode restored);
    parameters' ``.grad`` are not touched (``torch.autograd.grad``).
    """
    check_choice("kind", kind, ("image", "text"))
    _check_eager(model)
    with eval_mode(model), torch.enable_grad():
        if kind == "image":
            inputs = inputs.detach().requires_grad_(True)  # so the graph reaches the attentions of a frozen model
        logits, per_layer = _forward(model, inputs, kind)
        attention_maths.stack_attentions(per_layer, type(model).__name__)  # no weights: a clear error
        logits = read_logits(logits)
        targets = resolve_targets(target, logits)
        if not all(a.requires_grad for a in per_layer):
            raise RuntimeError(f"the attention weights of {type(model).__name__} are not part of the autograd graph "
                               "although the input requires a gradient: the model computes or returns them detached "
                               "(torch.no_grad() or .detach() inside its forward); relevance needs their gradients")
        gradients = torch.autograd.grad(select(logits, targets).sum(), per_layer, allow_unused=True)
    gradients = [torch.zeros_like(a) if g is None else g for a, g in zip(per_layer, gradients)]
    return (torch.stack([a.detach().float() for a in per_layer], dim=1),
            torch.stack([g.detach().float() for g in gradients], dim=1), targets)


# --------------------------------------------------------------------------------------------
# Inputs: images, strings, encodings
# --------------------------------------------------------------------------------------------
def prepare_inputs(model, x):
    """(module, inputs, kind) for :func:`attention_relevance`'s ``model`` and ``x``. Chapter 09.

    The bundle unwrapped to its module; text tokenised (``kind="text"``, a dict of encodings on the
    model's device, checked against the model's length); images checked by
    :func:`~xaicourse.inputs.model_input` (``kind="image"``).
    """
    tokenizer = getattr(model, "tokenizer", None)
    module = getattr(model, "model", model)
    if not isinstance(module, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module or a xaicourse model bundle, got {type(model).__name__}")
    if isinstance(x, (str, list)) and not (isinstance(x, list) and not all(isinstance(t, str) for t in x)):
        if tokenizer is None:
            raise TypeError("text needs a tokenizer: pass the TextModel bundle (e.g. xc.models.sentiment_classifier()) "
                            "as model, or pass encodings (text_model.encode(text)) instead of a string")
        texts = [x] if isinstance(x, str) else x
        if not texts:
            raise ValueError("the list of texts is empty: give at least one text")
        if len(texts) == 1:
            encodings = model.encode(texts[0])  # empty text: ValueError; too long: truncated with a warning
        else:
            for text in texts:
                model.encode(text)  # the same checks and warnings, text by text
            limit = getattr(model, "max_length", None)
            encodings = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=limit)
        return module, _check_encodings(module, dict(encodings)), "text"
    if isinstance(x, dict) or hasattr(x, "keys"):
        return module, _check_encodings(module, dict(x)), "text"
    if isinstance(x, torch.Tensor) and not x.is_floating_point() and x.dtype != torch.bool:
        ids = x if x.dim() == 2 else x.unsqueeze(0)
        return module, _check_encodings(module, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}), "text"
    return module, model_input(module, x), "image"


def _check_encodings(module: nn.Module, encodings: dict) -> dict:
    ids = encodings.get("input_ids")
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.is_floating_point():
        raise ValueError("text encodings need 'input_ids', an integer tensor (B, T), e.g. text_model.encode(text) or "
                         "tokenizer(texts, return_tensors='pt', padding=True)")
    if ids.shape[1] == 0 or len(ids) == 0:
        raise ValueError(f"input_ids has shape {tuple(ids.shape)}: give at least one token per text")
    limit = getattr(_hf_config(module), "max_position_embeddings", None)
    if isinstance(limit, int) and ids.shape[1] > limit:
        raise ValueError(f"the text has {ids.shape[1]} tokens but {type(module).__name__} reads at most {limit}: "
                         f"truncate it (tokenizer(..., truncation=True, max_length={limit})), or pass the string with "
                         "the TextModel bundle, which truncates with a warning")
    device = next(module.parameters()).device
    encodings = {k: v.to(device) for k, v in encodings.items() if isinstance(v, torch.Tensor)}
    encodings.setdefault("attention_mask", torch.ones_like(encodings["input_ids"]))
    return encodings


# --------------------------------------------------------------------------------------------
# The public method
# --------------------------------------------------------------------------------------------
def attention_relevance(model, x, target=None, *, method: str = "gradient_rollout") -> torch.Tensor:
    """The class token's relevance over the input tokens or patches, from attention (and gradients). Chapter 09.

    ``model``: a ViT (the course's ``tiny_vit().model`` or its bundle, a timm ViT, a Hugging Face ViT
    with eager attention) or a text classifier (a :class:`~xaicourse.models.TextModel` bundle, or a
    Hugging Face model with eager attention). ``x``: images (B, 3, H, W) preprocessed for the
    model; or, for text, a string or a list of strings (with a TextModel bundle, which tokenises
    them: empty text is an error, text over the model's limit is truncated with a warning), a dict
    of encodings (``text_model.encode(text)``; over the limit is a ValueError), or input ids (B, T).
    ``target``: None (each sample's top class), a class index or one per sample (:mod:`~xaicourse.targets`).
    ``method``:

    * ``"gradient_rollout"`` (default): Chefer et al. 2021, R = I, R <- R + mean_heads((dA * A)^+) R
      over the blocks (:func:`gradient_rollout`);
    * ``"attention"``: the last block's attention, mean over heads (no gradient: not class-specific);
    * ``"rollout"``: chapter 04's attention rollout (Abnar & Zuidema 2020, no gradient);
    * ``"attention_x_gradient"``: the last block's mean_heads((dA * A)^+).

    Returns (B, n_patches) for images (prefix tokens dropped; :func:`patch_grid` gives (B, g, g)) or
    (B, T) for text (the class token's own entry and padding are 0), float32, on the model's device.
    The model is explained in eval mode and left as found (mode, hooks, ``.grad``, timm's ``fused_attn``).
    Non-transformers are a TypeError; SDPA / flash attention a ValueError naming ``attn_implementation="eager"``.
    """
    check_choice("method", method, RELEVANCE_METHODS)
    module, inputs, kind = prepare_inputs(model, x)
    _check_eager(module)  # before anything else runs: SDPA attention has no weights to explain
    return _relevance(module, inputs, target, method=method, kind=kind)


@check_types
def class_token_rows(attentions: torch.Tensor, gradients: torch.Tensor, method: str = "gradient_rollout",
                     layer: int = -1) -> torch.Tensor:
    """The class token's row (..., T) of ``method`` computed from the blocks up to ``layer``. Chapter 09.

    ``attentions``, ``gradients``: (..., layers, heads, T, T), e.g. from :func:`record_attentions`.
    "gradient_rollout" and "rollout" combine blocks 0..``layer``; "attention" and
    "attention_x_gradient" read block ``layer`` alone. With ``layer=-1`` these are the rows
    :func:`attention_relevance` returns (before prefix tokens are dropped). The relevance explorer
    shows them layer by layer.
    """
    check_choice("method", method, RELEVANCE_METHODS)
    n_layers = attentions.shape[-4] if attentions.dim() >= 4 else 0
    if isinstance(layer, bool) or not isinstance(layer, int) or not -n_layers <= layer < n_layers:
        raise ValueError(f"layer must be an int in {-n_layers}..{n_layers - 1} (the model has {n_layers} blocks), "
                         f"got {layer!r}")
    layer %= n_layers
    if method == "gradient_rollout":
        return gradient_rollout(attentions[..., : layer + 1, :, :, :], gradients[..., : layer + 1, :, :, :])[..., 0, :]
    if method == "rollout":
        return attention_maths.rollout(attentions[..., : layer + 1, :, :, :])[..., 0, :]
    if method == "attention":
        return attentions[..., layer, :, 0, :].float().mean(dim=-2)
    return (gradients[..., layer, :, 0, :] * attentions[..., layer, :, 0, :]).float().clamp(min=0).mean(dim=-2)


def _relevance(model: nn.Module, inputs, target, *, method: str, kind: str) -> torch.Tensor:
    attentions, gradients, _ = record_attentions(model, inputs, target, kind=kind)
    rows = class_token_rows(attentions, gradients, method)
    pool = getattr(model, "global_pool", "token")
    if kind == "image" and (pool not in ("token", "", None) or prefix_tokens(model, rows.shape[-1]) == 0):
        raise ValueError(f"this ViT has no class token to read (global_pool={pool!r}, "
                         f"{prefix_tokens(model, rows.shape[-1])} prefix tokens): the relevance methods read the class "
                         "token's row; for a ViT that pools its patch tokens use patch_integrated_gradients or "
                         "xc.cam.grad_cam with reshape='vit'")
    if kind == "image":
        result = rows[:, prefix_tokens(model, rows.shape[-1]):]
    else:
        keep = inputs["attention_mask"].to(rows.device).bool().clone()
        keep[:, 0] = False  # the class token's relevance to itself (>= 1 from the identity)
        result = torch.where(keep, rows, torch.zeros_like(rows))
    warn_if_zero(result, f"attention_relevance(method={method!r})",
                 "the target's gradient reaches no attention weight with a positive product dA * A")
    return result.detach()


_relevance.__name__ = "attention_relevance"  # the name the explainer's warnings show
_relevance = explainer(_relevance, zero_warning=False)


# --------------------------------------------------------------------------------------------
# Patches: the grid, and the Integrated Gradients reference
# --------------------------------------------------------------------------------------------
@check_types
def patch_grid(relevance: torch.Tensor) -> torch.Tensor:
    """(B, n_patches) -> (B, g, g), patches in row-major order on their square grid. Chapter 09."""
    if not isinstance(relevance, torch.Tensor) or relevance.dim() != 2:
        raise ValueError("relevance must be a (B, n_patches) tensor, as attention_relevance returns for images")
    side = int(round(relevance.shape[1] ** 0.5))
    if side * side != relevance.shape[1]:
        raise ValueError(f"{relevance.shape[1]} patches do not form a square grid: is this text relevance?")
    return relevance.reshape(len(relevance), side, side)


def _patch_layer(model: nn.Module) -> nn.Module:
    if isinstance(getattr(model, "patch_embed", None), nn.Module):
        return model.patch_embed
    for name, module in model.named_modules():
        if name.endswith("patch_embeddings"):
            return module
    raise ValueError(f"{type(model).__name__} has no patch embedding (patch_embed or *.patch_embeddings): pass "
                     "layer= the module that turns the image into patch vectors")


def patch_integrated_gradients(model, x: torch.Tensor, target=None, *, layer: nn.Module | None = None,
                               baseline: torch.Tensor | float | None = None, n_steps: int = 50,
                               batch_size: int | None = None) -> torch.Tensor:
    """Integrated Gradients at a ViT's patch embeddings, summed over the embedding: (B, n_patches). Chapter 09.

    The attribution reference of chapter 09 (Captum's LayerIntegratedGradients, Gauss-Legendre
    ``n_steps``): each patch's share of ``logit(x) - logit(baseline)`` for the target, where the
    path runs between the patch embeddings of ``baseline`` (None: zeros, a number, or a tensor like
    ``x``) and of ``x``. ``layer``: the patch embedding (default: ``patch_embed`` or
    ``*.patch_embeddings``). ``batch_size``: path points per pass (None: from the memory budget).
    Signed values (negative = against the target). The model is left as found.
    """
    module = getattr(model, "model", model)
    return _patch_ig(module, x, target, layer=layer, baseline=baseline, n_steps=n_steps, batch_size=batch_size)


def _patch_ig(model, x, target, *, layer, baseline, n_steps, batch_size):
    from captum.attr import LayerIntegratedGradients

    x = model_input(model, x)
    n_steps = check_int("n_steps", n_steps)
    if batch_size is not None:
        check_int("batch_size", batch_size)
    layer = _patch_layer(model) if layer is None else layer
    reference = as_baseline(baseline, x)
    with torch.no_grad():
        targets = resolve_targets(target, read_logits(model(x)))
    forward = functools.partial(_logits_of, model)
    if batch_size is None:
        with torch.enable_grad():
            one = x[:1].detach().requires_grad_(True)
            batch_size = chunk_limit(model, lambda: forward(one).sum(), grad=True, n_items=n_steps * len(x))
    attributions = LayerIntegratedGradients(forward, layer).attribute(
        x, baselines=reference, target=targets, n_steps=n_steps, method="gausslegendre",
        internal_batch_size=batch_size)
    if attributions.dim() == 4 and isinstance(layer, nn.Conv2d):  # (B, D, g, g)
        per_patch = attributions.sum(dim=1).flatten(1)
    elif attributions.dim() == 4:  # channels-last (B, g, g, D)
        per_patch = attributions.sum(dim=-1).flatten(1)
    else:  # tokens (B, N, D)
        per_patch = attributions.sum(dim=-1)
    return per_patch.detach().float()


_patch_ig.__name__ = "patch_integrated_gradients"
_patch_ig = explainer(_patch_ig)


def _logits_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return read_logits(model(x))
