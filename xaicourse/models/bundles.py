"""Bundles: a model with everything needed to explain it (labels, preprocessing, its default layer).

* :class:`Normalization` - the per-channel ``(pixels - mean) / std`` a model expects, and its inverse.
  One value object used by every bundle's ``preprocess`` and ``to_image`` (and by IG's baselines).
* :class:`ImageModel` - an image classifier read at ``crop`` x ``crop`` after resize and centre crop.
* :class:`VisionTransformer` - an image classifier that also returns its attention weights.
* :class:`TextModel` - a Hugging Face model with its tokenizer.

Every bundle checks itself at construction (labels against the model's outputs) and moves to a
device with ``bundle.to(device)``. Taught in chapter 00.
"""
from __future__ import annotations

import difflib
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .. import data

__all__ = ["ImageModel", "Normalization", "TextModel", "VisionTransformer", "class_index"]

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


@dataclass(frozen=True)
class Normalization:
    """Per-channel input normalisation ``x = (pixels - mean) / std``; pixels are in [0, 1].

    ``mean`` and ``std`` hold one value per channel, or one value for all channels. Tensors are
    (C, H, W) or (B, C, H, W); the constants follow the tensor's device and dtype. Chapter 00.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self):
        mean, std = _floats(self.mean, "mean"), _floats(self.std, "std")
        if len(mean) != len(std):
            raise ValueError(f"Normalization has {len(mean)} means but {len(std)} stds: give one of each per channel")
        if not all(s > 0 for s in std):
            raise ValueError(f"Normalization std must be positive (it divides), got {std}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @classmethod
    def identity(cls, channels: int = 3) -> "Normalization":
        """No normalisation (mean 0, std 1): for models that read raw [0, 1] pixels. Chapter 00."""
        return cls((0.0,) * channels, (1.0,) * channels)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1], (C, H, W) or (B, C, H, W) -> the model's input space. Chapter 00."""
        mean, std = self._constants(pixels, "pixels")
        return (pixels - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """The model's input space -> pixels (not clipped), the inverse of :meth:`normalize`. Chapter 00."""
        mean, std = self._constants(x, "x")
        return x * std + mean

    def _constants(self, x, what: str) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{what} must be a torch.Tensor (C, H, W) or (B, C, H, W), got {type(x).__name__}")
        if x.ndim < 3 or len(self.mean) not in (1, x.shape[-3]):
            raise ValueError(f"{what} must be (C, H, W) or (B, C, H, W) with C = {len(self.mean)} channels, "
                             f"got shape {tuple(x.shape)}")
        dtype = x.dtype if x.is_floating_point() else torch.float32
        return tuple(torch.tensor(v, dtype=dtype, device=x.device).view(-1, 1, 1) for v in (self.mean, self.std))


def _floats(values, what: str) -> tuple[float, ...]:
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = (values,)
    try:
        floats = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise TypeError(f"Normalization {what} must be numbers, one per channel, got {values!r}") from None
    if not floats or not all(math.isfinite(v) for v in floats):
        raise ValueError(f"Normalization {what} must be one or more finite numbers, got {values!r}")
    return floats


# --------------------------------------------------------------------------------------------
# What every classifier bundle shares
# --------------------------------------------------------------------------------------------
def _check_labels(labels, name: str) -> list[str]:
    if isinstance(labels, str) or not isinstance(labels, (list, tuple)) or not all(isinstance(x, str) for x in labels):
        raise TypeError(f"{name}: labels must be a list of class names (str), got {type(labels).__name__}")
    if not labels:
        raise ValueError(f"{name}: labels is empty: give one class name per model output")
    return list(labels)


def _count_outputs(model: nn.Module, name: str, input_shape: tuple[int, ...]) -> int | None:
    """Number of class scores the model gives for one all-zero input (None if it is not (1, classes)).

    Runs in eval mode without gradients and restores every module's mode."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name}: model must be a torch.nn.Module, got {type(model).__name__}")
    param = next(model.parameters(), None)
    probe = torch.zeros(1, *input_shape, device=param.device if param is not None else "cpu",
                        dtype=param.dtype if param is not None and param.is_floating_point() else torch.float32)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            out = model(probe)
    except Exception as err:  # the user's model: report it at construction, not at the first explanation
        raise ValueError(f"{name}: the model cannot read an input of shape {tuple(probe.shape)} "
                         f"({type(err).__name__}: {err}); check the bundle's input size") from err
    finally:
        for module, mode in modes:
            module.training = mode
    return out.shape[1] if isinstance(out, torch.Tensor) and out.ndim == 2 else None


def _match_outputs(model: nn.Module, labels: list[str], name: str, input_shape: tuple[int, ...]) -> None:
    n_outputs = _count_outputs(model, name, input_shape)
    if n_outputs is not None and n_outputs != len(labels):
        raise ValueError(f"{name}: the model gives {n_outputs} class scores but labels has {len(labels)} names: "
                         "give exactly one name per output (labels[i] names output i)")


class _Classifier:
    """Methods shared by the image bundles; they read ``model``, ``labels`` and ``normalization``."""

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters (CPU for a model without any). Chapter 00."""
        param = next(self.model.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    @property
    def mean(self) -> tuple[float, ...]:
        """``normalization.mean`` (kept for code that reads ``bundle.mean``). Chapter 00."""
        return self.normalization.mean

    @property
    def std(self) -> tuple[float, ...]:
        """``normalization.std`` (kept for code that reads ``bundle.std``). Chapter 00."""
        return self.normalization.std

    def to(self, device: str | torch.device):
        """Move the model to ``device``; returns the bundle. Chapter 00."""
        self.model.to(device)
        return self

    def to_image(self, x: torch.Tensor) -> np.ndarray:
        """Undo the normalisation of one input (3, H, W) or (1, 3, H, W): (H, W, 3) in [0, 1] for plotting.

        Chapter 00."""
        x = x.detach().cpu().reshape(-1, *x.shape[-3:])[0]
        return self.normalization.denormalize(x).clamp(0, 1).permute(1, 2, 0).numpy()

    def _inputs(self, img_or_x) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def probabilities(self, img_or_x) -> torch.Tensor:
        """Softmax over the classes, shape (B, classes), for a photo or an input batch. Chapter 00."""
        return self.model(self._inputs(img_or_x).to(self.device)).softmax(dim=-1)

    def predict(self, img_or_x, k: int = 5) -> list[tuple[str, float]]:
        """The top-k (label, probability) pairs for one photo or one input. Chapter 00."""
        probs = self.probabilities(img_or_x)[0]
        top = probs.topk(min(k, len(self.labels)))
        return [(self.labels[i], float(p)) for p, i in zip(top.values, top.indices)]

    def class_index(self, label: int | str) -> int:
        """A class index from an index or a label name (case-insensitive); typos get suggestions. Chapter 00."""
        return class_index(self.labels, label)


# --------------------------------------------------------------------------------------------
# Image bundles
# --------------------------------------------------------------------------------------------
@dataclass
class ImageModel(_Classifier):
    """An image classifier with everything needed to explain it. Chapter 00.

    ``model`` is in eval mode; ``preprocess(img)`` gives the (1, 3, crop, crop) input on the model's
    device (resize the short side to ``resize``, centre-crop, ``normalization``); ``target_layer`` is
    the layer Grad-CAM uses by default; ``labels[i]`` names output i (checked at construction).
    """

    model: nn.Module
    labels: list[str]
    target_layer: nn.Module | None
    name: str
    normalization: Normalization
    resize: int = 256
    crop: int = 224
    interpolation: str = "bicubic"

    def __post_init__(self):
        self.labels = _check_labels(self.labels, self.name)
        if not isinstance(self.normalization, Normalization):
            raise TypeError(f"{self.name}: normalization must be an xaicourse.models.Normalization, "
                            f"got {type(self.normalization).__name__}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"{self.name}: unknown interpolation {self.interpolation!r}: "
                             f"choose one of {INTERPOLATIONS}")
        if not 0 < self.crop <= self.resize:
            raise ValueError(f"{self.name}: need 0 < crop <= resize, got crop={self.crop}, resize={self.resize}")
        _match_outputs(self.model, self.labels, self.name, (3, self.crop, self.crop))

    def view(self, img) -> np.ndarray:
        """The photo as the model sees it (resized, centre-cropped): (crop, crop, 3) floats in [0, 1]. Chapter 00."""
        from torchvision.transforms import InterpolationMode, functional as F

        pil = data.to_pil(data.load_image(img))
        pil = F.resize(pil, self.resize, interpolation=InterpolationMode(self.interpolation))
        pil = F.center_crop(pil, [self.crop, self.crop])
        return np.asarray(pil, dtype=np.float32) / 255.0

    def preprocess(self, img) -> torch.Tensor:
        """Photo (path, PIL image or array) -> normalised tensor (1, 3, crop, crop) on the model's device.

        Chapter 00."""
        pixels = torch.from_numpy(self.view(img)).permute(2, 0, 1)
        return self.normalization.normalize(pixels).unsqueeze(0).to(self.device)

    def _inputs(self, img_or_x) -> torch.Tensor:
        return img_or_x if isinstance(img_or_x, torch.Tensor) else self.preprocess(img_or_x)


@dataclass
class VisionTransformer(_Classifier):
    """A ViT bundle. Chapter 04.

    ``model(x)`` gives logits; ``model.forward_attentions(x)`` gives (logits, per-layer (B, heads, T, T)
    weights); ``grid`` patches per side; ``preprocess(img)`` -> (1, 3, S, S), for a photo or for
    image tensors in [0, 1]. ``labels[i]`` names output i (checked at construction).
    """

    model: nn.Module
    labels: list[str]
    name: str
    image_size: int
    patch_size: int
    normalization: Normalization = field(default_factory=Normalization.identity)

    def __post_init__(self):
        self.labels = _check_labels(self.labels, self.name)
        if not isinstance(self.normalization, Normalization):
            raise TypeError(f"{self.name}: normalization must be an xaicourse.models.Normalization, "
                            f"got {type(self.normalization).__name__}")
        if self.patch_size < 1 or self.image_size % self.patch_size:
            raise ValueError(f"{self.name}: image_size {self.image_size} is not a multiple of "
                             f"patch_size {self.patch_size}")
        _match_outputs(self.model, self.labels, self.name, (3, self.image_size, self.image_size))

    @property
    def grid(self) -> int:
        """Patches per side: ``image_size // patch_size``. Chapter 04."""
        return self.image_size // self.patch_size

    def preprocess(self, img) -> torch.Tensor:
        """A photo (path, PIL, array) or an image tensor (3, S, S) / (B, 3, S, S) in [0, 1] -> normalised batch.

        Chapter 04."""
        if isinstance(img, torch.Tensor):
            x = img if img.dim() == 4 else img.unsqueeze(0)
        else:
            pil = data.to_pil(data.load_image(img)).resize((self.image_size, self.image_size))
            x = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)
        if x.shape[-3:] != (3, self.image_size, self.image_size):
            raise ValueError(f"{self.name} takes images of shape (3, {self.image_size}, {self.image_size}), "
                             f"got {tuple(x.shape)}")
        return self.normalization.normalize(x.float().cpu()).to(self.device)

    def _inputs(self, img_or_x) -> torch.Tensor:
        return self.preprocess(img_or_x)

    def predict(self, img_or_x, k: int = 3) -> list[tuple[str, float]]:
        """Top-k (label, probability) pairs for one image (a photo, or pixels in [0, 1]). Chapter 04."""
        return super().predict(img_or_x, k)


# --------------------------------------------------------------------------------------------
# Text bundle
# --------------------------------------------------------------------------------------------
@dataclass
class TextModel:
    """A Hugging Face model with its tokenizer; ``labels`` names the outputs of a classifier. Chapter 04."""

    model: nn.Module
    tokenizer: object
    name: str
    labels: list[str] | None = None

    def __post_init__(self):
        if self.labels is None:
            return
        self.labels = _check_labels(self.labels, self.name)
        n_outputs = getattr(getattr(self.model, "config", None), "num_labels", None)
        if isinstance(n_outputs, int) and n_outputs != len(self.labels):
            raise ValueError(f"{self.name}: the model gives {n_outputs} class scores but labels has "
                             f"{len(self.labels)} names: give exactly one name per output")

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters. Chapter 00."""
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> "TextModel":
        """Move the model to ``device``; returns the bundle. Chapter 00."""
        self.model.to(device)
        return self

    @property
    def max_length(self) -> int:
        """The most tokens the model reads (position embeddings, capped by the tokenizer's limit). Chapter 04."""
        limit = getattr(self.model.config, "max_position_embeddings", None) or 512
        return min(limit, self.tokenizer.model_max_length or limit)

    def encode(self, text: str) -> dict:
        """Tokenise one text to model inputs (batch of 1) on the model's device. Chapter 04.

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
        """The token strings of an :meth:`encode` result (one text). Chapter 04."""
        return self.tokenizer.convert_ids_to_tokens(encoded["input_ids"][0].tolist())


def class_index(labels: list[str], label: int | str) -> int:
    """Index of ``label`` in ``labels``; accepts an index or a (case-insensitive) name. Chapter 00."""
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
