"""The course's model zoo: one :class:`~.registry.Family` per public loader, one builder per name.

Offline (the defaults, no network at all): EfficientNet-Lite0 and all-MiniLM-L6-v2 from their PyPI
wheels, and the small models this project trained (``data/``: the tiny ViT, the two shapes CNNs, the
sentiment head). Online (the source material's hub models, downloaded the first time): ResNet-50,
bert-base-uncased, ViT-Base, DistilBERT SST-2. Every loader is cached. Chapter 00.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .. import paths
from .architectures import HubViT, ShapesCNN, ShapesResNet, TinyViT, minilm_classifier
from .bundles import ImageModel, Normalization, TextModel, VisionTransformer
from .gpt import GPTBundle, TinyGPT
from .registry import FAMILIES, Family
from .remap import lite0_state_dict

__all__ = [
    "OFFLINE_BERT", "OFFLINE_CNN", "OFFLINE_SENTIMENT", "OFFLINE_VIT", "ONLINE_BERTS", "ONLINE_CNNS",
    "ONLINE_SENTIMENTS", "ONLINE_VITS", "SENTIMENT_WEIGHTS", "SHAPES_CNN_DATA", "SHAPES_CNN_VARIANTS",
    "TINY_VIT_WEIGHTS", "bert", "imagenet_cnn", "imagenet_labels", "sentiment_classifier", "shapes_cnn",
    "shapes_cnn_path", "shapes_resnet", "tiny_gpt", "tiny_vit", "vit",
]

OFFLINE_CNN, ONLINE_CNNS = "efficientnet_lite0", ("resnet50",)
OFFLINE_BERT, ONLINE_BERTS = "all-MiniLM-L6-v2", ("bert-base-uncased",)
OFFLINE_VIT, ONLINE_VITS = "tiny_vit", ("google/vit-base-patch16-224",)
OFFLINE_SENTIMENT, ONLINE_SENTIMENTS = "minilm-movie-reviews", ("distilbert-base-uncased-finetuned-sst-2-english",)
SHAPES_CNN_VARIANTS = {"shortcut": 1.0, "clean": 0.0}  # variant -> data.shapes(marker=...) it was trained on
SHAPES_CNN_DATA = dict(size=32, marker_size=4)          # the image format both variants read
SENTIMENT_WEIGHTS = str(paths.weights("sentiment_minilm.safetensors"))
TINY_VIT_WEIGHTS = paths.weights("tiny_vit.pt")

IMAGENET = FAMILIES["imagenet_cnn"] = Family(
    "image model", (OFFLINE_CNN,), ONLINE_CNNS, f'imagenet_cnn("{OFFLINE_CNN}")')
BERT = FAMILIES["bert"] = Family("text model", (OFFLINE_BERT,), ONLINE_BERTS, f'bert("{OFFLINE_BERT}")')
VIT = FAMILIES["vit"] = Family("vision transformer", (OFFLINE_VIT,), ONLINE_VITS, f'vit("{OFFLINE_VIT}")')
SENTIMENT = FAMILIES["sentiment_classifier"] = Family(
    "sentiment model", (OFFLINE_SENTIMENT,), ONLINE_SENTIMENTS, "sentiment_classifier()", default_spelling="None")
SHAPES = FAMILIES["shapes_cnn"] = Family("shapes CNN variant", tuple(SHAPES_CNN_VARIANTS), (), 'shapes_cnn("shortcut")')
SHAPES_RESNET = FAMILIES["shapes_resnet"] = Family("shapes ResNet", ("clean",), (), "shapes_resnet()")
TINY_GPT = FAMILIES["tiny_gpt"] = Family("tiny GPT", ("tiny_gpt",), (), "tiny_gpt()")


# --------------------------------------------------------------------------------------------
# The public loaders
# --------------------------------------------------------------------------------------------
def imagenet_cnn(name: str = OFFLINE_CNN, device: str | torch.device = "cpu") -> ImageModel:
    """An ImageNet CNN bundle. ``name``: "efficientnet_lite0" (offline) or "resnet50" (online). Chapter 00."""
    return IMAGENET.load(name, device)


def bert(name: str = OFFLINE_BERT, device: str | torch.device = "cpu") -> TextModel:
    """A BERT encoder with eager attention (so ``output_attentions=True`` returns the weights). Chapter 04.

    ``name``: "all-MiniLM-L6-v2" (offline, 6 layers x 12 heads) or "bert-base-uncased" (online).
    """
    return BERT.load(name, device)


def vit(name: str = OFFLINE_VIT, device: str | torch.device = "cpu") -> VisionTransformer:
    """A Vision Transformer bundle: "tiny_vit" (offline, trained on ``data.shapes``) or
    "google/vit-base-patch16-224" (online, the source chapter's model). Taught in chapter 04."""
    return VIT.load(name, device)


def tiny_vit(device: str | torch.device = "cpu") -> VisionTransformer:
    """The course's tiny ViT (64x64 shapes, 8x8 patches, 4 blocks x 4 heads) from data/tiny_vit.pt. Chapter 04."""
    return vit(OFFLINE_VIT, device)


def sentiment_classifier(name: str | None = None, device: str | torch.device = "cpu") -> TextModel:
    """A negative/positive sentence classifier: ``model(**text_model.encode(text)).logits`` is (1, 2).

    ``name``: None (offline: all-MiniLM-L6-v2 whose last layer and classification head were
    trained on the course's movie-review split, see ``xaicourse.train.train_sentiment``) or
    "distilbert-base-uncased-finetuned-sst-2-english" (online, the source chapter's model).
    ``labels`` is ["negative", "positive"] for both. Taught in chapter 05.
    """
    return SENTIMENT.load(OFFLINE_SENTIMENT if name is None else name, device)


def shapes_cnn_path(variant: str) -> Path:
    """data/shapes_cnn_<variant>.pt, for a variant of :data:`SHAPES_CNN_VARIANTS`. Chapter 02."""
    return paths.weights(f"shapes_cnn_{SHAPES.check(variant)}.pt")


def shapes_cnn(variant: str = "shortcut", device: str | torch.device = "cpu") -> ShapesCNN:
    """A trained :class:`ShapesCNN` (eval mode), cached.

    ``"shortcut"`` was trained on ``data.shapes(marker=1.0)``: the corner marker gives the label
    away. ``"clean"`` was trained on ``marker=0.0``: the marker is there but says nothing, so only
    the shape can be learned. Both read ``data.shapes(..., **SHAPES_CNN_DATA)``; the weights come
    from ``xaicourse.train.train_shapes_cnn``. Taught in chapter 02.
    """
    return SHAPES.load(variant, device)


def shapes_resnet(device: str | torch.device = "cpu") -> ShapesResNet:
    """A trained :class:`ShapesResNet` (eval mode), cached: trained on the clean shapes set, as ``shapes_cnn("clean")``.

    Weights from ``xaicourse.train.train_shapes_resnet`` (data/shapes_resnet.pt). Chapter 08.
    """
    return SHAPES_RESNET.load("clean", device)


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names, from torchvision's weight metadata (no download). Chapter 00."""
    from torchvision.models import EfficientNet_B0_Weights

    return list(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])


# --------------------------------------------------------------------------------------------
# Builders, one per name
# --------------------------------------------------------------------------------------------
@IMAGENET.builder(OFFLINE_CNN)
def _efficientnet_lite0(name: str) -> ImageModel:
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    state = torch.load(paths.lite0_weights(), map_location="cpu", weights_only=True)
    model.load_state_dict(lite0_state_dict(state), strict=True)
    return ImageModel(model=model.eval(), labels=imagenet_labels(), target_layer=model.bn2, name=name,
                      normalization=Normalization((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)))


@IMAGENET.builder("resnet50")
def _resnet50(name: str) -> ImageModel:
    from torchvision.models import ResNet50_Weights, resnet50

    weights = ResNet50_Weights.IMAGENET1K_V2
    if not os.path.exists(os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))):
        IMAGENET.require_network("download.pytorch.org", "ResNet-50's ImageNet weights")
    model = resnet50(weights=weights).eval()
    return ImageModel(model=model, labels=list(weights.meta["categories"]), target_layer=model.layer4[-1], name=name,
                      normalization=Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
                      interpolation="bilinear")


@BERT.builder(OFFLINE_BERT, *ONLINE_BERTS)
def _bert(name: str) -> TextModel:
    from transformers import AutoModel, AutoTokenizer

    source = str(paths.minilm_dir()) if name == OFFLINE_BERT else BERT.hub(name)
    model = AutoModel.from_pretrained(source, attn_implementation="eager").eval()
    return TextModel(model=model, tokenizer=AutoTokenizer.from_pretrained(source), name=name)


@SENTIMENT.builder(OFFLINE_SENTIMENT, *ONLINE_SENTIMENTS)
def _sentiment(name: str) -> TextModel:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if name == OFFLINE_SENTIMENT:
        from safetensors.torch import load_file

        weights = paths.trained("sentiment_minilm.safetensors")
        source = str(paths.minilm_dir())
        model = minilm_classifier({k: v.float() for k, v in load_file(weights).items()})
    else:
        source = SENTIMENT.hub(name)
        model = AutoModelForSequenceClassification.from_pretrained(source, attn_implementation="eager")
    labels = [model.config.id2label[i].lower() for i in range(model.config.num_labels)]
    return TextModel(model=model.eval(), tokenizer=AutoTokenizer.from_pretrained(source), name=name, labels=labels)


@VIT.builder(OFFLINE_VIT)
def _tiny_vit(name: str) -> VisionTransformer:
    saved = torch.load(paths.trained("tiny_vit.pt"), map_location="cpu", weights_only=True)
    model = TinyViT(**saved["config"])
    model.load_state_dict(saved["state_dict"])
    return VisionTransformer(model=model.eval(), labels=list(saved["classes"]), name=name,
                             image_size=model.image_size, patch_size=model.patch_size)


@VIT.builder(*ONLINE_VITS)
def _hub_vit(name: str) -> VisionTransformer:
    from transformers import ViTForImageClassification

    hf = ViTForImageClassification.from_pretrained(VIT.hub(name), attn_implementation="eager")
    labels = [hf.config.id2label[i] for i in range(hf.config.num_labels)]
    return VisionTransformer(model=HubViT(hf).eval(), labels=labels, name=name, image_size=hf.config.image_size,
                             patch_size=hf.config.patch_size,
                             normalization=Normalization((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)))


@SHAPES.builder(*SHAPES_CNN_VARIANTS)
def _shapes_cnn(variant: str) -> ShapesCNN:
    saved = torch.load(paths.trained(f"shapes_cnn_{variant}.pt"), map_location="cpu", weights_only=True)
    model = ShapesCNN(**saved["config"])
    model.load_state_dict(saved["state_dict"])
    return model.eval()


@SHAPES_RESNET.builder("clean")
def _shapes_resnet(_name: str) -> ShapesResNet:
    saved = torch.load(paths.trained("shapes_resnet.pt"), map_location="cpu", weights_only=True)
    model = ShapesResNet(**saved["config"])
    model.load_state_dict(saved["state_dict"])
    return model.eval()


def tiny_gpt(device: str | torch.device = "cpu") -> GPTBundle:
    """The course's tiny GPT (2 attention-only layers x 4 heads, an induction circuit) from data/tiny_gpt.pt.

    A :class:`~xaicourse.models.gpt.GPTBundle`: ``.model`` maps ids (B, T) to next-token logits
    (B, T, V), ``.tokenizer`` encodes and decodes strings, ``.heads`` names every head. Weights from
    ``xaicourse.train.train_tiny_gpt``. Taught in chapter 10.
    """
    return TINY_GPT.load("tiny_gpt", device)


@TINY_GPT.builder("tiny_gpt")
def _tiny_gpt(_name: str) -> GPTBundle:
    saved = torch.load(paths.trained("tiny_gpt.pt"), map_location="cpu", weights_only=True)
    model = TinyGPT(**saved["config"])
    model.load_state_dict(saved["state_dict"])
    return GPTBundle(model=model.eval(), half=saved["task"]["half"])
