"""`python -m xaicourse.notebooks grade`: executes a notebook and reports each check's outcome.

On small notebooks built here; the solutions chapters are graded the same way (``grading.rows`` on
the outcomes recorded while they run once) in tests/test_chapter_numbers.py."""
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from xaicourse import grading, notebooks



def write_notebook(path, cells):
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_each_outcome_is_reported_per_exercise(tmp_path, capsys):
    path = write_notebook(tmp_path / "mixed.ipynb", [
        new_markdown_cell("## Task A · softmax\n\n### BEGIN SOLUTION\nmy answer\n### END SOLUTION"),
        new_code_cell("from xaicourse import checks\n"
                      "def softmax(z):\n    return (z - z.max(-1, keepdim=True).values).softmax(-1)\n"
                      "checks.check_softmax(softmax)"),
        new_markdown_cell("## Task B · a wrong answer"),
        new_code_cell("checks.check_softmax(lambda z: z.exp())"),
        new_markdown_cell("## Task C · an untouched stub"),
        new_code_cell("def share(attribution, region):\n    raise NotImplementedError\n"
                      "checks.check_shortcut_detector(share)"),
        new_markdown_cell("## Task D · a cell that breaks before its check"),
        new_code_cell("undefined_name\nchecks.check_smoothgrad(undefined_function)"),
    ])
    rows = notebooks.grade(path)
    assert [(r["exercise"], r["check"], r["status"]) for r in rows] == [
        ("Task A · softmax", "check_softmax", "passed"),
        ("Task B · a wrong answer", "check_softmax", "failed"),
        ("Task C · an untouched stub", "check_shortcut_detector", "not attempted"),
        ("Task D · a cell that breaks before its check", "check_smoothgrad", "did not run"),
    ]
    assert "sum to 1" in rows[1]["message"]
    assert rows[3]["message"].startswith("NameError")
    notebooks.print_table(rows)
    out = capsys.readouterr().out
    assert "failed: each row should sum to 1" in out and "1/4 checks passed" in out


def test_a_cell_that_times_out_stops_the_grading_cleanly(tmp_path):
    path = write_notebook(tmp_path / "slow.ipynb", [
        new_code_cell("import time\ntime.sleep(60)"),
        new_code_cell("check_softmax(softmax)"),
    ])
    rows = notebooks.grade(path, timeout=2)
    assert [(r["check"], r["status"]) for r in rows] == [("check_softmax", "did not run")]
    assert rows[0]["message"].startswith("the notebook stopped early")


def test_a_notebook_without_checks_is_an_error(tmp_path, capsys):
    path = write_notebook(tmp_path / "plain.ipynb", [new_code_cell("1 + 1")])
    assert notebooks.main(["grade", str(path)]) == 1
    assert "calls no check_* function" in capsys.readouterr().err


@pytest.mark.parametrize("name, content, match", [
    ("script.py", "print('hello')\n", "is not a Jupyter notebook"),
    ("empty.ipynb", "", "is not a Jupyter notebook"),
    ("list.ipynb", "[1, 2]", "is JSON but not a valid notebook"),
    ("cells.ipynb", '{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": "x"}', "not a valid notebook"),
])
def test_a_file_that_is_not_a_notebook_is_a_clear_error(tmp_path, capsys, name, content, match):
    path = tmp_path / name
    path.write_text(content)
    assert notebooks.main(["grade", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cannot grade: ") and match in err and "Traceback" not in err
    assert str(path) in err and "give the .ipynb file" in err
    with pytest.raises(grading.NotANotebook, match=match):
        grading.grade(path)


def test_a_missing_notebook_names_the_path(tmp_path, capsys):
    assert notebooks.main(["grade", str(tmp_path / "nowhere.ipynb")]) == 2
    assert "no notebook at" in capsys.readouterr().err
