"""xaicourse: the companion package of the course on explaining deep networks.

    import xaicourse as xc
    cnn = xc.models.imagenet_cnn()
    x = cnn.preprocess(xc.data.image("cat"))

Every submodule is reachable as ``xc.<name>`` and loads on first use, so ``import xaicourse`` is fast.
"""
import importlib

from . import _torchvision_compat

_torchvision_compat.install_import_hook()

__version__ = "0.1.0"
# Every submodule, by layer (imports only point down; tests/test_architecture.py checks it).
PLUMBING = ["baselines", "batching", "environment", "guarantees", "hooks", "inputs", "numerics", "paths", "targets", "testing"]
MODELS_AND_DATA = ["data", "models", "train"]
METHODS = ["attention", "cam", "concepts", "deeplift", "diagnose", "generation", "ig", "influence", "lime", "lrp", "maps", "metrics", "patching",
           "probes", "relevance", "retraining", "sae", "saliency", "shapley", "superposition", "tda"]
VIEWS = ["viz"]
APPS = ["interpret", "widgets"]
COURSE = ["authoring", "checks", "grading", "notebooks"]
__all__ = sorted(PLUMBING + MODELS_AND_DATA + METHODS + VIEWS + APPS + COURSE)


def __getattr__(name):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'xaicourse' has no attribute {name!r}")
