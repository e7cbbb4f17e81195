"""Attention in Transformers: read the weights, combine heads and layers, roll them out (maths only).

Shapes: one text or image gives attentions of shape (layers, heads, T, T) where row i is how query
token i distributes its attention over the T key tokens (each row sums to 1). A batch of images
gives (B, layers, heads, T, T). In a ViT, token 0 is the CLS token and tokens 1..T-1 are the image
patches in row-major order on a ``grid x grid`` patch grid.

Attention weights say where a head *reads from*, not why the model decided: use them to see the
model's wiring, and gradients / Integrated Gradients to explain a prediction. Taught in chapter 04
(section 4.4). The figures (heatmaps, head grids, bertviz offline) are in :mod:`xaicourse.viz.attention`.
"""
from __future__ import annotations

import re
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .batching import batched
from .inputs import check_choice, check_number, check_types
from .maps import mask_share
from .models import TextModel
from .numerics import safe_divide

__all__ = ["Attended", "HEAD_FUSIONS", "TextAttentions", "cls_maps", "fuse_heads", "get_attentions", "is_special",
           "layer_map", "mask_mass", "most_attended", "object_attention_share", "patch_coverage", "rollout",
           "stack_attentions", "vit_attentions"]

HEAD_FUSIONS = ("mean", "max", "min")
_SPECIAL = re.compile(r"^(\[[A-Z]+\]|<[^>]+>)$")


class TextAttentions(NamedTuple):
    """``attentions`` (layers, heads, T, T) on the CPU and the T ``tokens``; unpacks as a pair."""

    attentions: torch.Tensor
    tokens: list[str]


def stack_attentions(per_layer, model_name: str = "the model") -> torch.Tensor:
    """Stack a model's per-layer attentions, each (B, heads, T, T), into (B, layers, heads, T, T). Chapter 04.

    Raises a RuntimeError when the model returned none (e.g. Hugging Face models with SDPA or flash
    attention return ``None``): never an empty result.
    """
    if not per_layer or any(a is None for a in per_layer):
        raise RuntimeError(
            f"{model_name} returned no attention weights. Load it with attn_implementation=\"eager\" "
            "(the course's loaders do): fused SDPA/flash attention never forms the weight matrix.")
    return torch.stack([a.detach().float() for a in per_layer], dim=1)


@torch.no_grad()
def get_attentions(text_model, text: str) -> TextAttentions:
    """All attention weights of a text model for one text: (layers, heads, T, T) and the tokens.

    ``text_model`` is a :class:`xaicourse.models.TextModel` (e.g. ``models.bert()``). Empty text is a
    ValueError; text over the model's limit is truncated with a warning. Taught in chapter 04.
    """
    if not isinstance(text_model, TextModel):
        raise TypeError(f"text_model must be a TextModel bundle (e.g. xc.models.bert()), got {type(text_model).__name__}")
    encoded = text_model.encode(text)
    outputs = text_model.model(**encoded, output_attentions=True)
    attentions = stack_attentions(getattr(outputs, "attentions", None), text_model.name)[0].cpu()
    return TextAttentions(attentions, text_model.tokens(encoded))


@torch.no_grad()
def vit_attentions(vit, x: torch.Tensor) -> torch.Tensor:
    """Attention weights of a Vision Transformer for a batch of images: (B, layers, heads, T, T).

    ``vit`` is a :class:`xaicourse.models.VisionTransformer` bundle (or its ``model``); ``x`` is
    (B, 3, S, S) as made by ``vit.preprocess``. Taught in chapter 04.
    """
    model = getattr(vit, "model", vit)
    if not hasattr(model, "forward_attentions"):
        raise TypeError(f"{type(model).__name__} has no forward_attentions(x): use xaicourse.models.vit() or tiny_vit()")
    if x.dim() != 4:
        raise ValueError(f"x must be a batch of images (B, 3, S, S), got shape {tuple(x.shape)}")
    try:
        _, per_layer = model.forward_attentions(x)
    except RuntimeError as err:
        size = getattr(vit, "image_size", "S")
        raise ValueError(f"the ViT cannot run on x of shape {tuple(x.shape)} ({err}); give (B, 3, {size}, {size}) "
                         "images, as made by vit.preprocess") from err
    return stack_attentions(per_layer, getattr(vit, "name", type(model).__name__)).cpu()


# --------------------------------------------------------------------------------------------
# Combining heads and layers
# --------------------------------------------------------------------------------------------
@check_types
def fuse_heads(attentions: torch.Tensor, head_fusion: str = "mean") -> torch.Tensor:
    """Combine the heads axis (dim -3) of (..., heads, T, T): "mean", "max" or "min" -> (..., T, T). Chapter 04."""
    check_choice("head_fusion", head_fusion, HEAD_FUSIONS)
    if head_fusion == "mean":
        return attentions.mean(dim=-3)
    return getattr(attentions, head_fusion)(dim=-3).values


@check_types
def rollout(attentions: torch.Tensor, head_fusion: str = "mean", discard_ratio: float = 0.0,
            residual: bool = True) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020): how much each output token draws on each input token.

    ``attentions``: (..., layers, heads, T, T). Per layer the heads are fused (``head_fusion``), the
    ``discard_ratio`` share of smallest weights in each row is set to zero, the residual connection is
    modelled as ``0.5 * A + 0.5 * I`` (``residual=True``), rows are re-normalised to sum to 1, and
    the layers are multiplied with the last layer on the left: R = A_L ... A_2 A_1. Returns
    (..., T, T); for a ViT, row 0 from column 1 on is the CLS token's map over the patches.
    Taught in chapter 04.
    """
    if attentions.dim() < 4 or attentions.shape[-1] != attentions.shape[-2]:
        raise ValueError(f"attentions must be (..., layers, heads, T, T), got shape {tuple(attentions.shape)}")
    check_number("discard_ratio", discard_ratio, minimum=0.0, hint=" (the share of weights to drop per row, in [0, 1))")
    if discard_ratio >= 1.0:
        raise ValueError(f"discard_ratio is the share of weights to drop per row, in [0, 1), got {discard_ratio}")
    fused = fuse_heads(attentions.float(), head_fusion)
    n_tokens = fused.shape[-1]
    n_drop = int(discard_ratio * n_tokens)
    if n_drop:
        smallest = fused.topk(n_drop, dim=-1, largest=False).indices
        fused = fused.scatter(-1, smallest, 0.0)
    if residual:
        fused = 0.5 * fused + 0.5 * torch.eye(n_tokens, device=fused.device, dtype=fused.dtype)
    sums = fused.sum(dim=-1, keepdim=True)
    fused = safe_divide(fused, sums)
    result = fused[..., 0, :, :]
    for layer in range(1, fused.shape[-3]):
        result = fused[..., layer, :, :] @ result
    return result


class Attended(NamedTuple):
    query: str
    query_index: int
    key: str
    key_index: int
    weight: float


def is_special(token: str) -> bool:
    """True for tokens such as [CLS], [SEP], [PAD], <s>, </s>. Chapter 04."""
    if not isinstance(token, str):
        raise TypeError(f"token must be a str (e.g. 'the' or '[CLS]'), got {type(token).__name__}")
    return bool(_SPECIAL.match(token))


@check_types
def most_attended(attentions: torch.Tensor, tokens: list[str]) -> list[Attended]:
    """For each ordinary token, the other ordinary token it attends to most (exercise 4).

    ``attentions``: (T, T), or (layers, heads, T, T) which is first averaged over layers and heads.
    Self-attention and special tokens ([CLS], [SEP], ...) are excluded as keys, and special tokens
    are skipped as queries. Returns one :class:`Attended` per ordinary token, in sentence order.
    Taught in chapter 04.
    """
    matrix = attentions.float().reshape(-1, *attentions.shape[-2:]).mean(dim=0) if attentions.dim() > 2 else attentions.float()
    if matrix.shape != (len(tokens), len(tokens)):
        raise ValueError(f"attentions cover {matrix.shape[-1]} tokens but {len(tokens)} tokens were given")
    ordinary = torch.tensor([not is_special(t) for t in tokens], device=matrix.device)
    result = []
    for i in torch.nonzero(ordinary).flatten().tolist():
        allowed = ordinary.clone()
        allowed[i] = False
        if not allowed.any():
            continue
        row = torch.where(allowed.to(matrix.device), matrix[i], torch.full_like(matrix[i], -1.0))
        j = int(row.argmax())
        result.append(Attended(tokens[i], i, tokens[j], j, float(matrix[i, j])))
    return result


# --------------------------------------------------------------------------------------------
# Vision Transformers: from token weights to maps on the image
# --------------------------------------------------------------------------------------------
@check_types
def cls_maps(attentions: torch.Tensor, grid: int) -> torch.Tensor:
    """The CLS token's attention over the patches, on the patch grid: (..., T, T) -> (..., grid, grid).

    Works for raw weights (..., layers, heads, T, T) and for a rollout (..., T, T). Taught in chapter 04.
    """
    if attentions.shape[-1] != 1 + grid * grid:
        raise ValueError(f"{attentions.shape[-1]} tokens do not make a CLS token plus a {grid}x{grid} patch grid")
    return attentions[..., 0, 1:].reshape(*attentions.shape[:-2], grid, grid)


@check_types
def patch_coverage(masks: torch.Tensor, grid: int) -> torch.Tensor:
    """Share of each patch covered by a pixel mask: (..., S, S) bool -> (..., grid, grid) in [0, 1]. Chapter 04."""
    _check_maps("masks", masks)
    if masks.shape[-1] % grid or masks.shape[-2] % grid:
        raise ValueError(f"masks of {tuple(masks.shape[-2:])} pixels do not split into a {grid}x{grid} patch grid")
    flat = masks.float().reshape(-1, 1, *masks.shape[-2:])
    return F.adaptive_avg_pool2d(flat, grid).reshape(*masks.shape[:-2], grid, grid)


@check_types
def mask_mass(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of a map's mass that falls on the object: sum(map * coverage) / sum(map).

    ``maps``: non-negative (g, g) maps, shape (N, ..., g, g) or (..., g, g); ``masks``: pixel masks
    (N, S, S) (one per image) or (S, S). A uniform map scores the object's area share, so a value
    above ``mask_mass(torch.ones(g, g), mask)`` means the map prefers the object. Returns maps.shape[:-2].
    Taught in chapter 04.
    """
    _check_maps("maps", maps)
    if maps.shape[-1] != maps.shape[-2]:
        raise ValueError(f"maps must be square patch grids (..., g, g), got shape {tuple(maps.shape)}")
    if masks.dim() == 3 and maps.dim() >= 3 and len(masks) != len(maps):
        raise ValueError(f"{len(masks)} masks for {len(maps)} maps: give one mask per image (N, S, S), one (S, S) "
                         "for all maps, or one (g, g) map for all masks")
    coverage = patch_coverage(masks, maps.shape[-1]).to(maps.device)
    if masks.dim() == 3:  # one mask per image: align with the batch axis of maps
        coverage = coverage.reshape(len(coverage), *[1] * (maps.dim() - 3), *coverage.shape[-2:])
    coverage = coverage.expand(*torch.broadcast_shapes(coverage.shape, maps.shape))
    flat_maps = maps.expand_as(coverage).reshape(-1, *maps.shape[-2:])
    share = mask_share(flat_maps, coverage.reshape(-1, *coverage.shape[-2:]))
    return share.reshape(coverage.shape[:-2])


@check_types
def layer_map(attentions: torch.Tensor, grid: int, layer: int, head: int | str = "mean") -> torch.Tensor:
    """One ViT map on the patch grid, (grid, grid), from attentions (layers, heads, T, T).

    ``head``: an int for one head of ``layer``, "mean" for the mean of its heads, or "rollout" for the
    rollout of layers 0..``layer``. What the ViT explorer widget shows. Taught in chapter 04.
    """
    layers, heads = attentions.shape[-4:-2]
    if not -layers <= layer < layers:
        raise ValueError(f"layer {layer} is out of range: the model has {layers} layers")
    if head == "rollout":
        return cls_maps(rollout(attentions[: layer % layers + 1]), grid)
    if head == "mean":
        return cls_maps(attentions[layer].mean(dim=0), grid)
    if not isinstance(head, int) or not -heads <= head < heads:
        raise ValueError(f"head must be an int in 0..{heads - 1}, 'mean' or 'rollout', got {head!r}")
    return cls_maps(attentions[layer, head], grid)


@torch.no_grad()
def object_attention_share(vit, images: torch.Tensor, masks: torch.Tensor, batch_size: int | None = None) -> dict:
    """How much of the CLS token's attention falls on the object, averaged over a set of images.

    ``images`` (N, 3, S, S) in [0, 1] and object ``masks`` (N, S, S), e.g. from ``data.shapes``.
    Returns tensors: "heads" (layers, heads) per head, "layers" (layers,) for the mean of each
    layer's heads, "rollout" (a scalar) for the rollout over all layers, and "uniform" (a scalar),
    the share a uniform map gets (the object's area share). ``batch_size``: images per pass (None:
    from the memory budget of :mod:`xaicourse.batching`). Taught in chapter 04.
    """
    if len(masks) != len(images):
        raise ValueError(f"{len(masks)} masks for {len(images)} images: give one object mask per image")

    def shares(items: slice):
        mask = masks[items]
        attentions = vit_attentions(vit, vit.preprocess(images[items]))
        maps = cls_maps(attentions, vit.grid)  # (B, layers, heads, g, g)
        return {"heads": mask_mass(maps, mask), "layers": mask_mass(maps.mean(dim=2), mask),
                "rollout": mask_mass(cls_maps(rollout(attentions), vit.grid), mask),
                "uniform": mask_mass(torch.ones(len(mask), vit.grid, vit.grid, device=maps.device), mask)}

    parts = [chunk for _, chunk in batched(len(images), shares, model=vit.model, batch_size=batch_size, grad=False,
                                           desc="images")]
    return {name: torch.cat([part[name] for part in parts]).mean(dim=0) for name in parts[0]}


def _check_maps(name: str, maps) -> None:
    if not isinstance(maps, torch.Tensor) or maps.dim() < 2:
        shape = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise ValueError(f"{name} must be a tensor of 2-D maps (..., H, W), got shape {shape}")
