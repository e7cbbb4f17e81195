"""Grading: execute a learner's notebook and report the outcome of every check it calls.

    python -m xaicourse.notebooks grade notebooks/06_exercises.ipynb

Works on any notebook path, with an installed package or a checkout (no solutions/ needed). The
notebook runs in a fresh kernel in its own folder; each ``check_*`` call reports through
``xaicourse.checks.record`` into a results file named by :data:`xaicourse.checks.RESULTS_ENV`, and
each call found in the source becomes one row: "passed", "failed" (with the hint), "not attempted"
(the stub is still there) or "did not run" (the cell broke before its check). Chapter 00.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.reader import NotJSONError

from .authoring import MARKERS
from .checks import RESULTS_ENV

__all__ = ["CHECK_CALL", "NotANotebook", "grade", "print_table", "read_notebook", "read_outcomes", "rows"]

CHECK_CALL = re.compile(r"(?<!def )\b(check_\w+)\s*\(")


class NotANotebook(ValueError):
    """The file to grade is missing or is not a Jupyter notebook."""


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """Read a notebook (format 4), or NotANotebook naming the file and what is wrong with it. Chapter 00."""
    path = Path(path)
    if not path.is_file():
        raise NotANotebook(f"no notebook at {str(path)!r}: check the path (cwd is {Path.cwd()})")
    try:
        return nbformat.read(path, as_version=4)
    except (NotJSONError, UnicodeDecodeError) as err:
        raise NotANotebook(f"{str(path)!r} is not a Jupyter notebook ("
                           f"{str(err).splitlines()[0][:120]}); give the .ipynb file of the exercise") from None
    except (nbformat.ValidationError, KeyError, AttributeError, TypeError) as err:
        raise NotANotebook(f"{str(path)!r} is JSON but not a valid notebook ({type(err).__name__}: "
                           f"{str(err).splitlines()[0][:120]}); give the .ipynb file of the exercise") from None


def _execute(nb: nbformat.NotebookNode, folder: Path, timeout: int) -> tuple[dict[str, list[dict]], str]:
    """Run the notebook in place; returns the recorded outcomes per check and why calls may be missing."""
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results.jsonl"
        results.touch()
        previous = os.environ.get(RESULTS_ENV)
        os.environ[RESULTS_ENV] = str(results)
        stopped = "the cell calling it did not run"
        try:
            NotebookClient(nb, timeout=timeout, allow_errors=True,
                           resources={"metadata": {"path": str(folder)}}).execute()
        except (CellTimeoutError, DeadKernelError) as err:
            stopped = f"the notebook stopped early: {str(err).splitlines()[0]}"
        finally:
            if previous is None:
                del os.environ[RESULTS_ENV]
            else:
                os.environ[RESULTS_ENV] = previous
        outcomes = read_outcomes(results)
    return outcomes, stopped


def read_outcomes(results: Path) -> dict[str, list[dict]]:
    """The outcomes a kernel recorded into ``results`` (one JSON line per check call): check name -> its
    outcomes in the order they ran."""
    outcomes = {}
    for line in Path(results).read_text(encoding="utf-8").splitlines():
        outcome = json.loads(line)
        outcomes.setdefault(outcome["check"], []).append(outcome)
    return outcomes


def rows(nb: nbformat.NotebookNode, outcomes: dict[str, list[dict]], title: str,
         stopped: str = "the cell calling it did not run") -> list[dict]:
    """One row per check call in an executed notebook's sources, from the recorded ``outcomes`` (see
    :func:`grade`; a copy of each list is consumed, ``outcomes`` is left as it was)."""
    outcomes = {check: list(ran) for check, ran in outcomes.items()}
    found, exercise = [], title
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            headings = [line.lstrip("#").strip() for line in cell.source.splitlines()
                        if line.startswith("#") and line.strip() not in MARKERS]
            exercise = headings[-1] if headings else exercise
            continue
        if cell.cell_type != "code":
            continue
        errors = [f"{out.ename}: {out.evalue}" for out in cell.get("outputs", []) if out.output_type == "error"]
        for check in dict.fromkeys(CHECK_CALL.findall(cell.source)):
            ran = outcomes.get(check)
            outcome = ran.pop(0) if ran else {
                "status": "did not run", "message": errors[0] if errors else stopped}
            found.append({"exercise": exercise, "check": check, "status": outcome["status"],
                         "message": outcome["message"]})
    return found + [{"exercise": "(called indirectly)", **o} for ran in outcomes.values() for o in ran]


def grade(path: Path, timeout: int = 600, executed: Path | None = None) -> list[dict]:
    """Execute a notebook and return one row per check it calls, in notebook order. Chapter 00.

    Each row has ``exercise`` (the last markdown heading before the call), ``check``, ``status``
    ("passed", "failed", "not attempted" or "did not run") and ``message`` (the hint, or the error
    that stopped the cell before its check ran). Checks report through ``xaicourse.checks.record``.
    ``executed``: where to save the executed notebook, outputs and tracebacks included.
    A path that is not a notebook raises :class:`NotANotebook`.
    """
    nb = read_notebook(path)
    outcomes, stopped = _execute(nb, Path(path).resolve().parent, timeout)
    graded = rows(nb, outcomes, Path(path).stem, stopped)
    if executed is not None:
        nbformat.write(nb, executed)
    return graded


def print_table(rows: list[dict]) -> None:
    """Print the rows of :func:`grade` as a table, then "k/n checks passed". Chapter 00."""
    width = max([len(r["exercise"]) for r in rows] + [8])
    print(f"{'exercise':<{width}}  {'check':<32}  result")
    for r in rows:
        note = "" if r["status"] == "passed" else f": {r['message']}"
        print(f"{r['exercise']:<{width}}  {r['check']:<32}  {r['status']}{note}")
    passed = sum(r["status"] == "passed" for r in rows)
    print(f"{passed}/{len(rows)} checks passed")
