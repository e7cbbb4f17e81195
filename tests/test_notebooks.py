"""The notebook pipeline: stubs, strict markers, drift detection, and the committed notebooks."""
import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from xaicourse import authoring, paths
from xaicourse import notebooks as nbs

ROOT = Path(__file__).resolve().parent.parent


def write(folder, name, cells):
    folder.mkdir(exist_ok=True)
    nb = new_notebook(cells=cells)
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i}"
    nbformat.write(nb, folder / name)


SOLVED = '''def f(x):
    ### BEGIN HINT
    # square it
    ### END HINT
    ### BEGIN SOLUTION
    y = x * x
    return y
    ### END SOLUTION
'''


def test_markdown_stub_points_to_a_folded_answer_below(tmp_path):
    write(tmp_path / "solutions", "03_demo.ipynb", [
        new_markdown_cell("Explain.\n### BEGIN SOLUTION\nThe answer is 42.\n### END SOLUTION"),
        new_markdown_cell("<details><summary>Model answer</summary>\n\n42\n</details>"),
    ])
    assert nbs.build(tmp_path / "solutions", tmp_path / "notebooks") == []
    stub, folded = nbformat.read(tmp_path / "notebooks" / "03_demo.ipynb", as_version=4).cells
    assert "42" not in stub.source and "model answer folded in the next cell" in stub.source
    assert "solutions/" not in stub.source and "42" in folded.source


def test_build_replaces_solutions_with_stubs(tmp_path):
    write(tmp_path / "solutions", "01_demo.ipynb", [
        new_markdown_cell("Explain.\n### BEGIN SOLUTION\nThe answer is 42.\n### END SOLUTION"),
        new_code_cell(SOLVED), new_code_cell("print(1)"),
    ])
    assert nbs.build(tmp_path / "solutions", tmp_path / "notebooks") == []
    out = nbformat.read(tmp_path / "notebooks" / "01_demo.ipynb", as_version=4)
    md, code, plain = out.cells
    assert "42" not in md.source and "model answer in solutions/01_demo.ipynb" in md.source
    assert code.source == "def f(x):\n    # square it\n    " + nbs.STUB_CODE
    assert code.metadata["tags"] == [nbs.STUB_TAG] and "tags" not in plain.metadata
    assert [c.id for c in out.cells] == ["cell-0", "cell-1", "cell-2"]
    namespace = {}
    exec(code.source, namespace)
    with pytest.raises(NotImplementedError):
        namespace["f"](2)


@pytest.mark.parametrize("source, match", [
    ("### BEGIN SOLUTION\nx = 1\n### BEGIN SOLUTION\n### END SOLUTION\n### END SOLUTION", "nested"),
    ("### BEGIN SOLUTION\nx = 1\n", "unterminated solution"),
    ("### BEGIN HINT\n# hint\n", "unterminated hint"),
    ("x = 1\n### END SOLUTION", "without an open"),
    ("### BEGIN HINT\n### BEGIN SOLUTION\n### END SOLUTION\n### END HINT", "nested"),
])
def test_broken_markers_are_errors_naming_the_cell(tmp_path, source, match):
    write(tmp_path / "solutions", "02_bad.ipynb", [new_code_cell("ok = 1"), new_code_cell(source)])
    problems = nbs.build(tmp_path / "solutions", tmp_path / "notebooks", check=True)
    assert len(problems) == 1 and match in problems[0] and "02_bad.ipynb cell 1 (id cell-1)" in problems[0]


def test_check_detects_drift_missing_and_orphans(tmp_path):
    sol, gen = tmp_path / "solutions", tmp_path / "notebooks"
    write(sol, "01_demo.ipynb", [new_code_cell(SOLVED)])
    assert any("missing" in p for p in nbs.build(sol, gen, check=True))
    nbs.build(sol, gen)
    assert nbs.build(sol, gen, check=True) == []
    write(sol, "01_demo.ipynb", [new_code_cell(SOLVED.replace("x * x", "x ** 2"))])
    assert nbs.build(sol, gen, check=True) == []  # the solution is not in the student copy
    write(sol, "01_demo.ipynb", [new_code_cell("print('changed')")])
    assert any("stale" in p for p in nbs.build(sol, gen, check=True))
    write(gen, "99_orphan.ipynb", [new_code_cell("1")])
    assert any("99_orphan.ipynb has no source" in p for p in nbs.build(sol, gen, check=True))


def test_committed_notebooks_are_in_sync():
    assert nbs.main(["build", "--check"]) == 0


@pytest.mark.parametrize("checkout, where", [(None, "is an installed package"), ("folder", "has no solutions/ folder")])
@pytest.mark.parametrize("args", [["build", "--check"], ["build"]])
def test_build_outside_a_source_checkout_says_it_needs_one(monkeypatch, tmp_path, capsys, checkout, where, args):
    monkeypatch.setattr(paths, "checkout", lambda: None if checkout is None else tmp_path)
    assert nbs.main(args) == 2
    captured = capsys.readouterr()
    assert "in sync" not in captured.out and "wrote" not in captured.out
    assert "needs a source checkout" in captured.err and where in captured.err and "grade PATH" in captured.err
    with pytest.raises(authoring.NotACheckout, match="source checkout"):
        nbs.build(check=True)
    assert not (tmp_path / "notebooks").exists()


def test_build_from_a_folder_without_notebooks_is_a_problem_not_in_sync(tmp_path):
    (tmp_path / "solutions").mkdir()
    problems = nbs.build(tmp_path / "solutions", tmp_path / "notebooks", check=True)
    assert len(problems) == 1 and "holds no notebooks" in problems[0]


def committed_notebooks():
    return sorted((ROOT / "solutions").glob("*.ipynb")) + sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", committed_notebooks(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [c.get("id") for c in nb["cells"] if c.get("outputs") or c.get("execution_count")]
    assert not dirty, f"{path} has outputs in cells {dirty}: clear them before committing"


def test_every_solution_has_a_student_version():
    assert [p.name for p in (ROOT / "solutions").glob("*.ipynb")]
    assert sorted(p.name for p in (ROOT / "solutions").glob("*.ipynb")) == sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
