"""The architectures the course defines or assembles; the loaders in :mod:`.loaders` fill in weights.

* :class:`ShapesCNN` (chapter 02): three conv-BN-ReLU blocks and a global-average-pooling head.
* :class:`TinyViT`, :class:`ViTBlock`, :class:`SelfAttention` (chapter 04): a small Vision
  Transformer whose blocks also return their attention weights; :class:`HubViT` gives a Hugging Face
  ViT the same interface.
* :func:`minilm_classifier` (chapter 05): all-MiniLM-L6-v2 with a 2-class sentiment head.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import paths

__all__ = ["HubViT", "SENTIMENT_TRAINED", "SelfAttention", "ShapesCNN", "ShapesResNet", "TinyViT", "ViTBlock",
           "minilm_classifier"]

# the parameters xaicourse.train.train_sentiment fits (and data/ stores); the rest is all-MiniLM-L6-v2
SENTIMENT_TRAINED = ("bert.encoder.layer.5.", "bert.pooler.", "classifier.")


class ShapesCNN(nn.Module):
    """Three conv-BN-ReLU blocks (two 2x2 max-pools) and a global-average-pooling head.

    Input (B, 3, 32, 32) in [0, 1]; ``features`` outputs (B, 2 * width, 8, 8), the Grad-CAM layer;
    ``head`` gives (B, n_classes) logits. Taught in chapter 02.
    """

    def __init__(self, n_classes: int = 3, width: int = 16):
        super().__init__()

        def block(c_in, c_out):
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.features = nn.Sequential(*block(3, width), nn.MaxPool2d(2), *block(width, 2 * width), nn.MaxPool2d(2),
                                      *block(2 * width, 2 * width))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ShapesResNet(nn.Module):
    """A small ResNet of torchvision's ``BasicBlock``: a conv-BN-ReLU stem, four residual blocks, a GAP head.

    Input (B, 3, 32, 32) in [0, 1]; widths 16, 16, 32, 32, 64 (two blocks downsample by 2, with a
    1x1 conv + BN on the skip path). Built of torchvision's blocks so that zennit's
    ``ResNetCanonizer`` (BatchNorm merged, the residual ``+`` made an explicit ``Sum``) applies, as
    on a torchvision ResNet. Taught in chapter 08 (LRP composites on a ResNet).
    """

    def __init__(self, n_classes: int = 3, width: int = 16):
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        def down(c_in, c_out):
            return nn.Sequential(nn.Conv2d(c_in, c_out, 1, 2, bias=False), nn.BatchNorm2d(c_out))

        w = width
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.layers = nn.Sequential(BasicBlock(w, w), BasicBlock(w, 2 * w, 2, down(w, 2 * w)),
                                    BasicBlock(2 * w, 2 * w), BasicBlock(2 * w, 4 * w, 2, down(2 * w, 4 * w)))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)))


class SelfAttention(nn.Module):
    """Multi-head self-attention that also returns its weights softmax(QK^T / sqrt(d)): (B, heads, T, T).

    Chapter 04."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        weights = (q @ k.transpose(-2, -1) / (d // self.heads) ** 0.5).softmax(dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(b, t, d)
        return self.proj(out), weights


class ViTBlock(nn.Module):
    """Pre-norm Transformer block: x + attention(norm(x)), then x + MLP(norm(x)). Chapter 04."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, weights = self.attn(self.norm1(x))
        x = x + out
        return x + self.mlp(self.norm2(x)), weights


class TinyViT(nn.Module):
    """A small Vision Transformer: patch embedding, a CLS token, learned positions, ``depth`` blocks.

    Each image is first standardised per channel: the shapes' colours are random, and without this
    the model stays at chance for hundreds of steps. ``forward(x)`` maps images (B, 3, S, S) in [0, 1]
    to logits (B, classes);
    ``forward_attentions(x)`` also returns one (B, heads, T, T) weight tensor per block, T = 1 + patches.
    Chapter 04.
    """

    def __init__(self, image_size: int = 64, patch_size: int = 8, dim: int = 64, depth: int = 4,
                 heads: int = 4, mlp_ratio: int = 2, n_classes: int = 3):
        super().__init__()
        self.image_size, self.patch_size = image_size, patch_size
        n_patches = (image_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, 1 + n_patches, dim))
        self.blocks = nn.ModuleList(ViTBlock(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def forward_attentions(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        x = (x - x.mean(dim=(2, 3), keepdim=True)) / (x.std(dim=(2, 3), keepdim=True) + 1e-3)
        patches = self.patch_embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), patches], dim=1) + self.pos_embed
        attentions = []
        for block in self.blocks:
            tokens, weights = block(tokens)
            attentions.append(weights)
        return self.head(self.norm(tokens[:, 0])), tuple(attentions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_attentions(x)[0]


class HubViT(nn.Module):
    """A Hugging Face ViTForImageClassification with the TinyViT interface (logits; attentions). Chapter 04."""

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.hf = hf_model

    def forward_attentions(self, x: torch.Tensor):
        out = self.hf(pixel_values=x, output_attentions=True)
        return out.logits, out.attentions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hf(pixel_values=x).logits


def minilm_classifier(trained: dict | None = None) -> nn.Module:
    """all-MiniLM-L6-v2 with a 2-class head (``BertForSequenceClassification``), in eval mode. Chapter 05.

    ``trained``: a state dict holding exactly the :data:`SENTIMENT_TRAINED` parameters; without it
    the head is freshly initialised (seed it first), as at the start of training.
    """
    from transformers import BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized classifier" is expected here
    try:
        model = BertForSequenceClassification.from_pretrained(
            str(paths.minilm_dir()), num_labels=2, id2label={0: "negative", 1: "positive"},
            label2id={"negative": 0, "positive": 1}, attn_implementation="eager")  # attentions readable (ch. 09)
    finally:
        hf_logging.set_verbosity(verbosity)
    if trained is not None:
        expected = {k for k in model.state_dict() if k.startswith(SENTIMENT_TRAINED)}
        if set(trained) != expected:
            raise ValueError(f"the trained parameters do not fit: missing {sorted(expected - set(trained))[:3]}, "
                             f"unexpected {sorted(set(trained) - expected)[:3]}")
        model.load_state_dict(trained, strict=False)
    return model.eval()
