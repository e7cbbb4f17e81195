"""Authoring: build the learners' notebooks from the solutions, and check that they are in sync.

This is a tool for the course's authors and needs a source checkout (the folder with
``pyproject.toml``, ``solutions/`` and ``notebooks/``); learners grade their notebooks with
:mod:`xaicourse.grading`, which works on any notebook anywhere.

solutions/NN_*.ipynb is the single source. In a code cell, the learner's part sits between
``### BEGIN SOLUTION`` and ``### END SOLUTION``; an optional ``### BEGIN HINT`` / ``### END HINT``
block of comment lines just before it becomes part of the stub. In the learner's copy the solution
becomes ``raise NotImplementedError(...)`` at the same indentation, the markers disappear, and the
cell gets the ``raises-exception`` tag so nbval runs the learner's version too. In a markdown cell a
solution block (a model answer) becomes an invitation to write one's own that says where the model
answer is: folded in the next cell when that cell is a ``<details>`` block, else in solutions/NN_*.ipynb. Markers are parsed
strictly: nested or unterminated blocks are errors naming the notebook and cell. Chapter 00.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat

from . import paths

__all__ = [
    "BEGIN", "END", "HINT_BEGIN", "HINT_END", "MARKERS", "MarkerError", "NotACheckout", "STUB_CODE", "STUB_MARKDOWN",
    "STUB_TAG", "build", "reading_minutes", "source_folders", "strip_solutions", "student_version",
]

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
HINT_BEGIN, HINT_END = "### BEGIN HINT", "### END HINT"
MARKERS = (BEGIN, END, HINT_BEGIN, HINT_END)
STUB_TAG = "raises-exception"
STUB_CODE = 'raise NotImplementedError("Your turn: replace this line with your solution")'
STUB_MARKDOWN = "*Write your answer here, then compare it with the model answer {where}.*"
_FOLDED = "<details"  # a markdown cell that folds the model answer away


class MarkerError(ValueError):
    """A solution or hint marker is nested, unterminated or out of place."""


class NotACheckout(FileNotFoundError):
    """The authoring tools were run without a source checkout (no solutions/ folder with notebooks)."""


# How long a learner takes, measured against the cold reads of chapters 07-09 (07: 75-100 minutes, 08: about
# 90, 09: about 60): careful reading of technical prose, reading each line of code, and doing each exercise.
WORDS_PER_MINUTE = 120
CODE_LINES_PER_MINUTE = 12
MINUTES_PER_EXERCISE = 10


def reading_minutes(nb: nbformat.NotebookNode) -> float:
    """How long a learner needs for a chapter, in minutes: prose at 120 words a minute, code at 12 lines
    a minute (comments and blank lines not counted), 10 minutes per exercise (``### BEGIN SOLUTION``
    block). The chapters' "**Time:**" lines state it (tests/test_reading_times.py). Chapter 00."""
    words = sum(len(re.findall(r"\w+", c.source)) for c in nb.cells if c.cell_type == "markdown")
    lines = sum(1 for c in nb.cells if c.cell_type == "code" for line in c.source.splitlines()
                if line.strip() and not line.strip().startswith("#"))
    exercises = sum(c.source.count(BEGIN) for c in nb.cells)
    return words / WORDS_PER_MINUTE + lines / CODE_LINES_PER_MINUTE + MINUTES_PER_EXERCISE * exercises


def source_folders() -> tuple[Path, Path]:
    """(solutions/, notebooks/) of the source checkout; NotACheckout when there is none. Chapter 00."""
    root = paths.checkout()
    if root is None or not (root / "solutions").is_dir():
        where = f"{paths.PACKAGE} is an installed package" if root is None else f"{root} has no solutions/ folder"
        raise NotACheckout(f"building the notebooks needs a source checkout of the course (the folder with "
                           f"pyproject.toml and solutions/): {where}. Run it from a clone of the course; to "
                           "grade a notebook use `python -m xaicourse.notebooks grade PATH`, which works anywhere")
    return root / "solutions", root / "notebooks"


def strip_solutions(source: str, cell_type: str, where: str,
                    answer_at: str = "in the solutions/ folder") -> tuple[str, bool]:
    """The learner's version of one cell's source, and whether it contained a solution block. Chapter 00.

    ``answer_at`` completes the markdown stub's sentence: where the learner finds the model answer.
    """
    out, state, found = [], None, False
    for number, line in enumerate(source.splitlines(), 1):
        marker = line.strip()
        if marker not in MARKERS:
            if state != "solution":
                out.append(line)
            continue
        expected = {None: (BEGIN, HINT_BEGIN), "hint": (HINT_END,), "solution": (END,)}[state]
        if marker not in expected:
            problem = "nested in" if marker in (BEGIN, HINT_BEGIN) else "without an open"
            raise MarkerError(f"{where}, line {number}: {marker!r} {problem} block (open: {state or 'none'})")
        if marker == BEGIN:
            state, found = "solution", True
            indent = line[: len(line) - len(line.lstrip())]
            out.append(indent + (STUB_CODE if cell_type == "code" else STUB_MARKDOWN.format(where=answer_at)))
        elif marker == HINT_BEGIN:
            state = "hint"
        else:
            state = None
    if state is not None:
        raise MarkerError(f"{where}: unterminated {state} block (add {END if state == 'solution' else HINT_END!r})")
    return "\n".join(out), found


def student_version(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """A copy of a solutions notebook with solutions replaced by stubs and outputs cleared. Chapter 00."""
    nb = copy.deepcopy(nb)
    for index, cell in enumerate(nb.cells):
        where = f"{name} cell {index} (id {cell.get('id', '?')})"
        following = nb.cells[index + 1] if index + 1 < len(nb.cells) else None
        folded = (following is not None and following.cell_type == "markdown"
                  and following.source.lstrip().startswith(_FOLDED))
        answer_at = "folded in the next cell (open it after writing yours)" if folded else f"in solutions/{name}"
        cell.source, has_solution = strip_solutions(cell.source, cell.cell_type, where, answer_at)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            tags = cell.metadata.setdefault("tags", [])
            if has_solution and STUB_TAG not in tags:
                tags.append(STUB_TAG)
            if not tags:
                del cell.metadata["tags"]
    return nb


def _expected(solutions: Path) -> tuple[dict[str, str], list[str]]:
    """The learner's text of every solutions notebook, and the marker problems found."""
    expected, problems = {}, []
    for path in sorted(solutions.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        try:
            expected[path.name] = nbformat.writes(student_version(nb, path.name)) + "\n"
        except MarkerError as err:
            problems.append(str(err))
    return expected, problems


def build(solutions: Path | None = None, notebooks: Path | None = None, check: bool = False) -> list[str]:
    """Write (or, with ``check``, compare) the learners' notebooks. Returns the problems found. Chapter 00.

    Without folders, the checkout's solutions/ and notebooks/ (:func:`source_folders`; NotACheckout
    when there is no checkout). A solutions folder without notebooks is a problem, never "in sync".
    """
    if solutions is None or notebooks is None:
        default_solutions, default_notebooks = source_folders()
        solutions, notebooks = solutions or default_solutions, notebooks or default_notebooks
    solutions, notebooks = Path(solutions), Path(notebooks)
    if not any(solutions.glob("*.ipynb")):
        return [f"{solutions} holds no notebooks: building needs the source checkout's solutions/ folder"]
    expected, problems = _expected(solutions)
    if problems:
        return problems
    for name, text in expected.items():
        target = notebooks / name
        if check:
            if not target.exists():
                problems.append(f"{target} is missing: run `python -m xaicourse.notebooks build`")
            elif target.read_text() != text:
                problems.append(f"{target} is stale (differs from what solutions/{name} generates): "
                                "run `python -m xaicourse.notebooks build`")
        else:
            notebooks.mkdir(exist_ok=True)
            target.write_text(text)
    for orphan in sorted(set(p.name for p in notebooks.glob("*.ipynb")) - set(expected)):
        problems.append(f"{notebooks / orphan} has no source in {solutions}: delete it or add the solution")
    return problems
