"""Installable anywhere: the wheel ships the trained weights, and an installed copy works from any folder.

The wheel is built from a clean copy of the package files (so stale build/ folders of the checkout
cannot leak into it), installed with ``pip install --target`` into a temporary folder, and run from
another temporary folder with only that target on PYTHONPATH: every offline model loads, Grad-CAM
on the shapes CNN gives the same map as the checkout, and ``python -m xaicourse.notebooks grade``
passes chapter 00. About a minute on a 2-core CPU.
"""
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import nbformat
import pytest
import torch

import xaicourse as xc

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_FILES = ("pyproject.toml", "README.md", "xaicourse", "data")

# Run by the installed copy: load every offline model, run one method, print what the test compares.
PROBE = r"""
import json, sys
from pathlib import Path
import torch
import xaicourse as xc

target = Path(sys.argv[1]).resolve()
assert Path(xc.__file__).resolve().is_relative_to(target), xc.__file__
assert xc.paths.checkout() is None and xc.paths.data_dir() == target / "xaicourse" / "_data"
cnn, bert, vit = xc.models.imagenet_cnn(), xc.models.bert(), xc.models.tiny_vit()
sentiment = xc.models.sentiment_classifier()
shortcut, clean = xc.models.shapes_cnn("shortcut"), xc.models.shapes_cnn("clean")
shapes = xc.data.shapes(4, seed=5, marker=1.0, **xc.models.SHAPES_CNN_DATA)
cam = xc.cam.grad_cam(shortcut, shortcut.features, shapes.images, shapes.labels)
with torch.no_grad():
    result = {
        "files": {name: str(xc.paths.weights(name)) for name in xc.paths.WEIGHT_FILES},
        "cat": cnn.predict(xc.data.image("cat"), k=1)[0][0],
        "bert_layers": len(bert.model(**bert.encode("The cat sat"), output_attentions=True).attentions),
        "vit": vit.probabilities(xc.data.shapes(2, seed=3).images).tolist(),
        "sentiment": sentiment.model(**sentiment.encode("A wonderful film.")).logits.softmax(-1).tolist(),
        "clean": clean(shapes.images).tolist(),
        "cam": cam.tolist(),
    }
print("RESULT " + json.dumps(result))
"""


def _env(target: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XAICOURSE_ASSETS")}
    env.update(PYTHONPATH=str(target), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PIP_NO_INDEX="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def _run(args, cwd, env, timeout=300):
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, args))} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


def test_pyproject_lists_every_package():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "xaicourse").rglob("__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml"
    assert listed - found == {"xaicourse._data"}, f"pyproject lists packages that do not exist: {sorted(listed - found)}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(wheel, target folder, a folder outside both and outside the checkout)."""
    source, dist = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("dist")
    for name in PACKAGE_FILES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(ROOT / name, source / name)
    target, elsewhere = tmp_path_factory.mktemp("target"), tmp_path_factory.mktemp("elsewhere")
    env = _env(target)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(source)],
         cwd=elsewhere, env=env)
    wheel, = dist.glob("xaicourse-*.whl")
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)], cwd=elsewhere, env=env)
    return wheel, target, elsewhere


def test_wheel_ships_the_package_and_its_weights_only(installed):
    wheel, _, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"xaicourse/_data/{name}" for name in xc.paths.WEIGHT_FILES} <= names
    for name in xc.paths.WEIGHT_FILES:  # byte for byte the committed files
        assert zipfile.ZipFile(wheel).read(f"xaicourse/_data/{name}") == (ROOT / "data" / name).read_bytes()
    assert "xaicourse/models/__init__.py" in names and "xaicourse/paths.py" in names
    assert not [n for n in names if n.startswith(("tests/", "solutions/", "notebooks/", "data/"))]


def test_installed_copy_loads_every_offline_model_from_another_folder(installed):
    _, target, elsewhere = installed
    out = _run([sys.executable, "-c", PROBE, str(target)], cwd=elsewhere, env=_env(target)).stdout
    result = json.loads(out.split("RESULT ", 1)[1])
    assert set(result["files"]) == set(xc.paths.WEIGHT_FILES)
    assert all(Path(path).is_relative_to(target) for path in result["files"].values())
    assert result["cat"] in {"tiger cat", "Egyptian cat", "tabby"} and result["bert_layers"] == 6
    # the same numbers as the checkout's package
    shortcut, clean = xc.models.shapes_cnn("shortcut"), xc.models.shapes_cnn("clean")
    shapes = xc.data.shapes(4, seed=5, marker=1.0, **xc.models.SHAPES_CNN_DATA)
    cam = xc.cam.grad_cam(shortcut, shortcut.features, shapes.images, shapes.labels)
    torch.testing.assert_close(torch.tensor(result["cam"]), cam, atol=1e-5, rtol=0)
    assert (cam[shapes.marker_masks].mean() > 0.6).item()  # the shortcut CNN looks at the marker
    sentiment, vit = xc.models.sentiment_classifier(), xc.models.tiny_vit()
    with torch.no_grad():
        torch.testing.assert_close(torch.tensor(result["clean"]), clean(shapes.images), atol=1e-5, rtol=0)
        expected = sentiment.model(**sentiment.encode("A wonderful film.")).logits.softmax(-1)
        torch.testing.assert_close(torch.tensor(result["sentiment"]), expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(torch.tensor(result["vit"]), vit.probabilities(xc.data.shapes(2, seed=3).images),
                                   atol=1e-5, rtol=0)
    assert result["sentiment"][0][1] > 0.5


def test_installed_copy_grades_a_notebook_and_refuses_to_build(installed):
    _, target, elsewhere = installed
    notebook, executed = elsewhere / "my_start.ipynb", elsewhere / "executed.ipynb"
    shutil.copy(ROOT / "solutions" / "00_start_here.ipynb", notebook)
    command = [sys.executable, "-m", "xaicourse.notebooks"]
    graded = _run([*command, "grade", notebook.name, "--executed", str(executed)], cwd=elsewhere, env=_env(target))
    assert graded.stdout.splitlines()[-1] == "1/1 checks passed" and "check_softmax" in graded.stdout
    errors = [out for cell in nbformat.read(executed, as_version=4).cells for out in cell.get("outputs", [])
              if out.output_type == "error"]
    assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]
    report = "\n".join(out.get("text", "") for cell in nbformat.read(executed, as_version=4).cells
                       for out in cell.get("outputs", []))
    assert str(target / "xaicourse" / "_data") in report  # the kernel used the installed copy too
    build = subprocess.run([*command, "build", "--check"], cwd=elsewhere, env=_env(target), capture_output=True,
                           text=True, timeout=120)
    assert build.returncode == 2 and "needs a source checkout" in build.stderr and "in sync" not in build.stdout
