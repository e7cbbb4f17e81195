"""Data for the course, all available offline.

* ``image(name)``: real photos that ship inside installed packages (scikit-image, matplotlib).
* ``load_image(source)``: any path / PIL image / array -> (H, W, 3) uint8 RGB, with clear errors.
* ``shapes(n, seed, ...)``: a synthetic, deterministic dataset of shapes on textured backgrounds with
  ground-truth object masks and an optional *spurious marker* correlated with the label. It drives
  the shortcut-learning lesson (chapter 02), the tiny ViT (chapter 04) and the quantitative
  evaluation of explanations (chapters 03 and 07).

Taught in chapter 00.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from . import paths
from .inputs import check_types

__all__ = ["MOVIE_REVIEWS_FILE", "PHOTOS", "SENTIMENT_CLASSES", "SHAPE_CLASSES", "ShapesDataset", "TextDataset", "image", "marker_corners", "with_marker",
           "load_image", "movie_reviews", "shapes", "to_pil"]

# name -> (how to get it, what it shows)
PHOTOS = {
    "cat": ("skimage:chelsea", "a tabby cat (Chelsea)"),
    "coffee": ("skimage:coffee", "a cup of espresso on a saucer"),
    "astronaut": ("skimage:astronaut", "astronaut Eileen Collins in her suit, with a flag behind"),
    "rocket": ("skimage:rocket", "a rocket on its launch pad"),
    "motorcycle": ("skimage:stereo_motorcycle", "a motorcycle in a garage (left view of a stereo pair)"),
    "camera": ("skimage:camera", "a photographer with a camera on a tripod (grayscale)"),
    "grace_hopper": ("matplotlib:grace_hopper.jpg", "Grace Hopper in US Navy uniform"),
}


@check_types
def image(name: str) -> Image.Image:
    """A bundled photo as an RGB PIL image. ``name`` is one of :data:`PHOTOS`. Chapter 00."""
    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}: choose one of {', '.join(sorted(PHOTOS))}")
    source, _, item = PHOTOS[name][0].partition(":")
    if source == "skimage":
        import skimage.data

        array = getattr(skimage.data, item)()
        if isinstance(array, tuple):  # stereo pairs come as (left, right, disparity)
            array = array[0]
    else:
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data(item) as f:
            array = np.asarray(Image.open(f))
    return to_pil(load_image(array))


def to_pil(array: np.ndarray) -> Image.Image:
    """A PIL image from an (H, W, 3) or (H, W) uint8 array, e.g. from :func:`load_image`. Chapter 00."""
    if not isinstance(array, (np.ndarray, torch.Tensor)):
        raise TypeError(f"to_pil takes an image array (H, W, 3) or (H, W), got {type(array).__name__}")
    array = np.asarray(array)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ValueError(f"an image array is (H, W, 3) or (H, W), got shape {array.shape}")
    return Image.fromarray(array)


def load_image(source) -> np.ndarray:
    """Read a photo from a path, a PIL image or an array; returns (H, W, 3) uint8 RGB. Chapter 00.

    Grayscale, RGBA (composited on white), 16-bit and float [0, 1] images are converted. A URL is
    refused: the course runs offline and downloads nothing.
    """
    if isinstance(source, str) and _URL.match(source):
        raise ValueError(f"{source!r} is a URL, and the course does not download images (it runs offline): "
                         "save the image to a file and pass its path, or use a bundled photo, "
                         f"xc.data.image(name) with name one of {', '.join(sorted(PHOTOS))}")
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"no image file at {str(path)!r}: check the path (cwd is {Path.cwd()})")
        try:
            with Image.open(path) as img:
                img.load()
                source = img.copy()
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"{str(path)!r} is not a readable image file ({err})") from None
    if isinstance(source, Image.Image):
        return _pil_to_rgb(source)
    if isinstance(source, torch.Tensor):
        raise TypeError("load_image takes a photo (path, PIL image or numpy array), not a tensor; "
                        "a preprocessed tensor can go straight to the model")
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source)
    raise TypeError(f"cannot read an image from a {type(source).__name__}: give a path, a PIL image or an array")


_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]+://")  # http://, https://, ftp://, s3:// ...


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _array_to_rgb(np.asarray(img))
    return np.asarray(img.convert("RGB"))


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ValueError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4); got shape {array.shape}")
    if array.size == 0:
        raise ValueError("the image array is empty")
    if array.dtype == np.uint8:
        pass
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError("the image contains NaN or inf values")
        scale = 1.0 if array.max() <= 1.0 else 255.0
        array = np.clip(array / scale * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        top = 1 if array.dtype == bool else (65535 if array.max() > 255 else 255)
        array = (array.astype(np.float64) / top * 255.0 + 0.5).astype(np.uint8)
    else:
        raise TypeError(f"unsupported image dtype {array.dtype}")
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.shape[-1] == 4:
        return _pil_to_rgb(Image.fromarray(array, mode="RGBA"))
    return np.ascontiguousarray(array)


# --------------------------------------------------------------------------------------------
# Synthetic shapes with ground truth
# --------------------------------------------------------------------------------------------
SHAPE_CLASSES = ("circle", "square", "triangle")
# marker corner per class: (row, col) of the corner, 0 = top/left, 1 = bottom/right
_CORNERS = ((0, 0), (0, 1), (1, 0), (1, 1))


@dataclass
class ShapesDataset:
    """``images`` (N, 3, S, S) float in [0, 1]; ``labels`` (N,); ``masks`` (N, S, S) bool, the object;
    ``marker_masks`` (N, S, S) bool, the spurious marker (all False without one); ``classes`` names."""

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    marker_masks: torch.Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]


def shapes(
    n: int = 512,
    seed: int = 0,
    size: int = 64,
    marker: float | None = None,
    marker_size: int = 6,
    classes: tuple[str, ...] = SHAPE_CLASSES,
) -> ShapesDataset:
    """Deterministic synthetic images: one shape (the label) on a textured background. Chapter 02.

    ``marker``: None for no marker; otherwise the probability that a bright square marker sits in
    the corner that belongs to the label (class k -> corner k). With probability ``1 - marker`` the
    corner is drawn at random instead, so ``marker=1.0`` is a perfect shortcut and ``marker=0.0``
    is a marker that carries no information about the label.
    Same arguments -> same dataset, on every machine.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if size < 24:
        raise ValueError(f"size must be >= 24 pixels so shapes stay recognisable, got {size}")
    unknown = set(classes) - set(SHAPE_CLASSES)
    if unknown or len(classes) < 2:
        raise ValueError(f"classes must be two or more of {SHAPE_CLASSES}, got {classes}")
    if marker is not None and not 0.0 <= marker <= 1.0:
        raise ValueError(f"marker is a probability in [0, 1] (or None for no marker), got {marker}")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    images = np.empty((n, 3, size, size), np.float32)
    masks = np.zeros((n, size, size), bool)
    marker_masks = np.zeros((n, size, size), bool)
    labels = rng.integers(len(classes), size=n)
    for i, label in enumerate(labels):
        images[i] = _texture(rng, xx, yy, size)
        masks[i] = _shape_mask(rng, classes[label], xx, yy, size)
        colour = rng.uniform(0.05, 0.95, size=3).astype(np.float32)
        images[i][:, masks[i]] = colour[:, None]
        if marker is not None:
            corner = label if rng.random() < marker else rng.integers(len(classes))
            marker_masks[i] = _corner_mask(_CORNERS[corner % 4], marker_size, size)
            images[i][:, marker_masks[i]] = 1.0
            masks[i] &= ~marker_masks[i]
    return ShapesDataset(
        images=torch.from_numpy(images), labels=torch.from_numpy(labels.astype(np.int64)),
        masks=torch.from_numpy(masks), marker_masks=torch.from_numpy(marker_masks), classes=tuple(classes),
    )


def _texture(rng, xx, yy, size) -> np.ndarray:
    """A random stripe pattern plus pixel noise, in muted colours."""
    angle, freq = rng.uniform(0, math.pi), rng.uniform(0.15, 0.6)
    stripes = 0.5 + 0.5 * np.sin(freq * (xx * math.cos(angle) + yy * math.sin(angle)))
    base = rng.uniform(0.2, 0.6, size=(3, 1, 1))
    amplitude = rng.uniform(0.05, 0.25)
    noise = rng.normal(0, 0.04, size=(3, size, size))
    return np.clip(base + amplitude * (stripes - 0.5) + noise, 0, 1).astype(np.float32)


def _shape_mask(rng, kind, xx, yy, size) -> np.ndarray:
    r = rng.uniform(0.14, 0.24) * size
    margin = r + 0.12 * size  # keep shapes off the corners where markers go
    cx, cy = rng.uniform(margin, size - margin, size=2)
    if kind == "circle":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
    if kind == "square":
        half = r * 0.85
        return (np.abs(xx - cx) <= half) & (np.abs(yy - cy) <= half)
    # upward triangle with apex at the top
    top, bottom = cy - r, cy + r
    width_at = (yy - top) / (2 * r) * r * 1.15
    return (yy >= top) & (yy <= bottom) & (np.abs(xx - cx) <= width_at)


@check_types
def with_marker(images: torch.Tensor, corner: int, *, marker_size: int = 4, colour=(1.0, 1.0, 1.0)) -> torch.Tensor:
    """A copy of shapes ``images`` (N, 3, S, S) with a square marker painted in ``corner``. Chapter 11.

    Corners as in :func:`shapes`: 0 top-left, 1 top-right, 2 bottom-left (the shortcut corners of
    classes 0, 1, 2) and 3 bottom-right (a corner no class owns). The default white ``colour`` and
    ``marker_size`` 4 are the marker of ``models.SHAPES_CNN_DATA``; pass ``marker_size=6`` for 64x64 images.
    """
    images = torch.as_tensor(images)
    if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
        raise ValueError(f"images must be a batch of square RGB images (N, 3, S, S), got {tuple(images.shape)}")
    if corner not in range(4):
        raise ValueError(f"corner must be 0 (top-left), 1 (top-right), 2 (bottom-left) or 3 (bottom-right), got {corner!r}")
    if not 1 <= marker_size <= images.shape[-1] // 4:
        raise ValueError(f"marker_size must be between 1 and a quarter of the image side ({images.shape[-1] // 4}), "
                         f"got {marker_size}")
    mask = torch.from_numpy(_corner_mask(_CORNERS[corner], marker_size, images.shape[-1]))
    out = images.clone()
    out[:, :, mask] = torch.as_tensor(colour, dtype=out.dtype).reshape(3, 1)
    return out


@check_types
def marker_corners(masks: torch.Tensor) -> torch.Tensor:
    """The corner (0-3, as in :func:`with_marker`) of each marker in ``marker_masks`` (N, S, S); -1 where
    there is none. Chapter 11."""
    masks = torch.as_tensor(masks)
    rows, cols = masks.any(2), masks.any(1)
    half = masks.shape[-1] // 2
    bottom, right = rows[:, half:].any(1), cols[:, half:].any(1)
    return torch.where(masks.flatten(1).any(1), 2 * bottom.long() + right.long(), torch.full_like(bottom, -1, dtype=torch.long))


def _corner_mask(corner, marker_size, size) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    pad = 2
    rows = slice(pad, pad + marker_size) if corner[0] == 0 else slice(size - pad - marker_size, size - pad)
    cols = slice(pad, pad + marker_size) if corner[1] == 0 else slice(size - pad - marker_size, size - pad)
    mask[rows, cols] = True
    return mask


# --------------------------------------------------------------------------------------------
# Movie-review sentences with sentiment ratings (chapter 05)
# --------------------------------------------------------------------------------------------
SENTIMENT_CLASSES = ("negative", "positive")
MOVIE_REVIEWS_FILE = "movieReviewSnippets_GroundTruth.txt"


@dataclass
class TextDataset:
    """``texts`` (N strings); ``labels`` (N,) 0 = negative, 1 = positive; ``scores`` (N,) the mean
    human rating in [-4, 4]; ``ids`` (N,) the sentence ids of the source file; ``classes`` names."""

    texts: list[str]
    labels: torch.Tensor
    scores: torch.Tensor
    ids: torch.Tensor
    classes: tuple[str, ...] = SENTIMENT_CLASSES

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i):
        return self.texts[i], self.labels[i]


def movie_reviews(split: str = "train") -> TextDataset:
    """The 10,605 Rotten Tomatoes sentences of Hutto & Gilbert (ICWSM 2014), rated -4..+4 by humans.

    The file comes from the vaderSentiment 3.3.2 source distribution, fetched by ``make setup``
    (it is never committed). Label: positive when the mean rating is > 0, negative when < 0; the
    37 sentences rated exactly 0 are left out. The split is fixed by the sentence id:
    ``id % 5 == 0`` is ``"test"`` (2,111 sentences, held out), the rest is ``"train"`` (8,457);
    ``"all"`` gives both. Taught in chapter 05.
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"unknown split {split!r}: choose 'train', 'test' or 'all'")
    path = paths.asset("hutto_ICWSM_2014") / MOVIE_REVIEWS_FILE
    texts, scores, ids = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        sentence_id, score, text = line.split("\t", 2)
        sentence_id, score = int(sentence_id), float(score)
        in_test = sentence_id % 5 == 0
        if score == 0 or (split == "train" and in_test) or (split == "test" and not in_test):
            continue
        texts.append(text.strip())
        scores.append(score)
        ids.append(sentence_id)
    scores = torch.tensor(scores)
    return TextDataset(texts=texts, labels=(scores > 0).long(), scores=scores, ids=torch.tensor(ids))
