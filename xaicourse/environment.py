"""Setting up and checking the course environment.

    python -m xaicourse.environment setup    # run by `make setup`; idempotent
    python -m xaicourse.environment report   # what is installed, what works offline

``setup`` does the steps pip cannot: the torchvision compatibility hook (only when torchvision's
compiled extension cannot load), and third-party files fetched from package registries into the
assets folder of :func:`xaicourse.paths.assets_dir` (a checkout's git-ignored ``.assets/``, else a
per-user cache; ``$XAICOURSE_ASSETS`` overrides both), never committed:

* JavaScript for bertviz offline (npm: requirejs, d3, jquery);
* the labelled movie-review sentences of the vaderSentiment 3.3.2 source distribution (PyPI).

Taught in chapter 00.
"""
from __future__ import annotations

import importlib
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from . import _torchvision_compat, paths
from .paths import MissingAsset, asset

__all__ = ["MissingAsset", "asset", "fetch_npm_assets", "fetch_vader_sentences", "main", "report", "setup"]

# file name in the assets folder -> (npm package spec, member of its archive)
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


def __getattr__(name):
    if name == "ASSETS":  # the assets folder, read anew so that XAICOURSE_ASSETS set later counts
        return paths.assets_dir()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def fetch_npm_assets() -> str:
    """Fetch bertviz's JavaScript (require.js, d3, jQuery) from npm into the assets folder. Chapter 04."""
    assets = paths.assets_dir()
    missing = {name: spec for name, spec in NPM_ASSETS.items() if not (assets / name).exists()}
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
                _extract_member(tar, member, assets / name)
    return f"bertviz JavaScript: fetched {', '.join(sorted(missing))} from npm"


def fetch_vader_sentences() -> str:
    """Fetch the movie-review sentences (vaderSentiment's sdist, PyPI) into the assets folder. Chapter 05."""
    target = paths.assets_dir() / VADER_FOLDER
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
            tar.extractall(target.parent, filter="data")
    return f"movie-review sentences: fetched {VADER_SDIST} from PyPI"


def _extract_member(tar: tarfile.TarFile, member: str, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    source = tar.extractfile(member)
    partial = destination.with_suffix(destination.suffix + ".part")
    partial.write_bytes(source.read())
    partial.replace(destination)


def setup() -> list[str]:
    """Every setup step pip cannot do; each is a no-op when already done. Chapter 00."""
    paths.assets_dir().mkdir(parents=True, exist_ok=True)
    return [_torchvision_compat.install_into_site_packages(), fetch_npm_assets(), fetch_vader_sentences(),
            f"assets folder: {paths.assets_dir()}"]


def report() -> dict[str, str]:
    """Versions of the stack and where the offline pieces are; for chapter 00's environment check."""
    assets = paths.assets_dir()
    info = {"python": platform.python_version(), "platform": platform.platform()}
    for name in STACK:
        try:
            module = importlib.import_module(name)
            info[name] = getattr(module, "__version__", "installed")
        except Exception as err:  # report, do not crash: this is a diagnostic
            info[name] = f"NOT IMPORTABLE ({type(err).__name__}: {err})"
    torch = sys.modules.get("torch")  # imported by the loop above, unless it is broken (reported there)
    if torch is not None:
        info["torch threads"] = str(torch.get_num_threads())
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "not available (CPU is fine)"
    for name in (*NPM_ASSETS, VADER_FOLDER):
        info[f"asset {name}"] = "present" if (assets / name).exists() else "missing: run `make setup`"
    info["assets folder"] = str(assets)
    try:
        info["trained weights"] = str(paths.data_dir())
    except FileNotFoundError as err:  # report, do not crash
        info["trained weights"] = f"MISSING ({err})"
    return info


def main(argv=None) -> int:
    """The command line: ``setup`` or ``report``; returns the exit code. Chapter 00."""
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
