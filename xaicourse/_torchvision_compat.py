"""Make a CUDA-only torchvision wheel importable next to a CPU-only torch.

PyPI serves torchvision 0.28.0 (the release that matches torch 2.13.0) only as a CUDA build. With
the CPU torch wheel its compiled extension ``_C.so`` cannot load, and ``import torchvision`` dies
with "operator torchvision::nms does not exist", because torchvision registers fake kernels for two
operators that only ``_C.so`` defines. Defining those two operator schemas first makes the import
work: transforms, model definitions and weight metadata are pure Python. (``nms`` itself and
``torchvision.io`` stay unavailable; the course uses PIL for images.)

On a normal install nothing is patched: :func:`ensure_torchvision_ops` only acts when ``_C.so``
fails to load.

This file is standalone (no xaicourse imports): ``python -m xaicourse._torchvision_compat install``
copies it into site-packages with a ``.pth`` line, so that a plain ``import torchvision`` in any
interpreter of the environment gets the fix, not only code that imports xaicourse first.
"""
import importlib.abc
import importlib.machinery
import shutil
import site
import sys
from pathlib import Path

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor",
)
_library = None  # kept alive: a torch.library.Library unregisters its ops when collected
_PTH_NAME = "xaicourse-torchvision-compat.pth"
_MODULE_NAME = "_xaicourse_torchvision_compat"


def extension_loads():
    """True when torchvision's compiled extension loads against the installed torch."""
    import torch

    spec = importlib.machinery.PathFinder.find_spec("torchvision")  # bypasses import hooks like ours
    if spec is None or not spec.submodule_search_locations:
        return True  # no torchvision: nothing to fix
    folder = Path(next(iter(spec.submodule_search_locations)))
    candidates = sorted(folder.glob("_C*.so")) + sorted(folder.glob("_C*.pyd"))
    if not candidates:
        return False
    try:
        torch.ops.load_library(str(candidates[0]))
        return True
    except (OSError, RuntimeError):
        return False


def ensure_torchvision_ops():
    """Define the missing ``torchvision::nms``/``qnms`` schemas if the extension cannot load.

    Must run before torchvision is imported. Returns True if it patched anything.
    """
    global _library
    if "torchvision" in sys.modules or _ops_defined() or extension_loads():
        return False
    import torch

    _library = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        _library.define(schema)
    return True


def _ops_defined():
    """True when the schemas exist already (defined by the extension or by another copy of this hook)."""
    import torch

    try:
        torch.ops.torchvision.nms
        return True
    except (AttributeError, RuntimeError):
        return False


class _PatchBeforeTorchvision(importlib.abc.MetaPathFinder):
    """Import hook: the first ``import torchvision`` runs :func:`ensure_torchvision_ops` first."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torchvision":
            sys.meta_path.remove(self)
            ensure_torchvision_ops()
        return None  # let the normal finders import it


def install_import_hook():
    if not any(isinstance(f, _PatchBeforeTorchvision) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchBeforeTorchvision())


def install_into_site_packages():
    """Install the hook for every interpreter of this environment, only if it is needed.

    Returns a one-line description of what was done.
    """
    target = Path(site.getsitepackages()[0])
    pth = target / _PTH_NAME
    if extension_loads():
        pth.unlink(missing_ok=True)
        return "torchvision: compiled extension loads, no compatibility step needed"
    shutil.copyfile(__file__, target / f"{_MODULE_NAME}.py")
    pth.write_text(f"import {_MODULE_NAME}; {_MODULE_NAME}.install_import_hook()\n")
    return f"torchvision: CUDA-only build on a CPU torch; installed the op-schema hook ({pth.name})"


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: python -m xaicourse._torchvision_compat install")
    print(install_into_site_packages())
