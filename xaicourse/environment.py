"""Setting up and checking the course environment.

    python -m xaicourse.environment setup    # run by `make setup`; idempotent
    python -m xaicourse.environment report   # what is installed, what works offline

``setup`` does the steps pip cannot: the torchvision compatibility hook (only when torchvision's
compiled extension cannot load), and third-party files fetched from package registries into the
git-ignored ``.assets/`` folder (never committed):

* JavaScript for bertviz offline (npm: requirejs, d3, jquery);
* the labelled movie-review sentences of the vaderSentiment 3.3.2 source distribution (PyPI).

Taught in chapter 00.
"""
from __future__ import annotations

import importlib
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSETS = Path(os.environ.get("XAICOURSE_ASSETS", ROOT / ".assets"))

# asset name -> (registry, package spec, member of the archive, file name in ASSETS)
NPM_ASSETS = {
    "require.js": ("requirejs@2.3.6", "package/require.js"),
    "d3.min.js": ("d3@5.7.0", "package/dist/d3.min.js"),
    "jquery.min.js": ("jquery@2.2.4", "package/dist/jquery.min.js"),
}
VADER_SDIST = "vaderSentiment==3.3.2"
VADER_MEMBER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
VADER_FOLDER = "hutto_ICWSM_2014"

STACK = ("torch", "torchvision", "captum", "transformers", "timm", "bertviz", "pytorch_grad_cam",
         "matplotlib", "seaborn", "ipywidgets", "jupyterlab", "nbval", "tqdm", "skimage")


class MissingAsset(FileNotFoundError):
    """A file that `make setup` fetches from a registry is not there."""


def asset(name: str) -> Path:
    """Path of a fetched asset (a bertviz JS file, or ``hutto_ICWSM_2014``), or MissingAsset."""
    path = ASSETS / name
    if not path.exists():
        raise MissingAsset(f"{path} is missing: run `make setup` (or `python -m xaicourse.environment setup`), "
                           "which fetches it from the package registry")
    return path


def fetch_npm_assets() -> str:
    missing = {name: spec for name, spec in NPM_ASSETS.items() if not (ASSETS / name).exists()}
    if not missing:
        return "bertviz JavaScript: present"
    if shutil.which("npm") is None:
        return "bertviz JavaScript: skipped (npm not found); bertviz views will fall back to the course's own view"
    with tempfile.TemporaryDirectory() as tmp:
        specs = sorted({spec for spec, _ in missing.values()})
        subprocess.run(["npm", "pack", "--silent", *specs], cwd=tmp, check=True, capture_output=True)
        for name, (spec, member) in missing.items():
            package, _, version = spec.rpartition("@")
            with tarfile.open(Path(tmp) / f"{package}-{version}.tgz") as tar:
                _extract_member(tar, member, ASSETS / name)
    return f"bertviz JavaScript: fetched {', '.join(sorted(missing))} from npm"


def fetch_vader_sentences() -> str:
    target = ASSETS / VADER_FOLDER
    if target.exists():
        return "movie-review sentences: present"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
                        VADER_SDIST, "-d", tmp], check=True)
        sdist = next(Path(tmp).glob("vaderSentiment-*.tar.gz"))
        inner = Path(tmp) / "hutto.tar.gz"
        with tarfile.open(sdist) as tar:
            _extract_member(tar, VADER_MEMBER, inner)
        with tarfile.open(inner) as tar:
            tar.extractall(ASSETS, filter="data")
    return f"movie-review sentences: fetched {VADER_SDIST} from PyPI"


def _extract_member(tar: tarfile.TarFile, member: str, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    source = tar.extractfile(member)
    partial = destination.with_suffix(destination.suffix + ".part")
    partial.write_bytes(source.read())
    partial.replace(destination)


def setup() -> list[str]:
    """Every setup step pip cannot do; each is a no-op when already done."""
    from . import _torchvision_compat

    ASSETS.mkdir(parents=True, exist_ok=True)
    return [_torchvision_compat.install_into_site_packages(), fetch_npm_assets(), fetch_vader_sentences()]


def report() -> dict[str, str]:
    """Versions of the stack and where the offline pieces are; for chapter 00's environment check."""
    info = {"python": platform.python_version(), "platform": platform.platform()}
    for name in STACK:
        try:
            module = importlib.import_module(name)
            info[name] = getattr(module, "__version__", "installed")
        except Exception as err:  # report, do not crash: this is a diagnostic
            info[name] = f"NOT IMPORTABLE ({type(err).__name__}: {err})"
    import torch

    info["torch threads"] = str(torch.get_num_threads())
    info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "not available (CPU is fine)"
    for name in (*NPM_ASSETS, VADER_FOLDER):
        info[f"asset {name}"] = "present" if (ASSETS / name).exists() else "missing: run `make setup`"
    return info


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["setup"]:
        for line in setup():
            print(line)
    elif argv == ["report"]:
        for key, value in report().items():
            print(f"{key:>24}: {value}")
    else:
        print("usage: python -m xaicourse.environment setup|report", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
