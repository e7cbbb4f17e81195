"""xaicourse: the companion package of the course on explaining deep networks.

    import xaicourse as xc
    cnn = xc.models.imagenet_cnn()
    x = cnn.preprocess(xc.data.image("cat"))

Submodules load on first use, so ``import xaicourse`` is fast.
"""
import importlib

from . import _torchvision_compat

_torchvision_compat.install_import_hook()

__version__ = "0.1.0"
__all__ = [
    "attention", "cam", "checks", "data", "diagnose", "environment", "hooks", "ig", "interpret", "metrics",
    "models", "notebooks", "saliency", "targets", "train", "viz", "widgets",
]


def __getattr__(name):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'xaicourse' has no attribute {name!r}")
