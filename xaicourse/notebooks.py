"""Build the learners' notebooks from the solutions, and check that they are in sync.

solutions/NN_*.ipynb is the single source. In a code cell, the learner's part sits between
``### BEGIN SOLUTION`` and ``### END SOLUTION``; an optional ``### BEGIN HINT`` / ``### END HINT``
block of comment lines just before it becomes part of the stub. In the learner's copy the solution
becomes ``raise NotImplementedError(...)`` at the same indentation, the markers disappear, and the
cell gets the ``raises-exception`` tag so nbval runs the learner's version too. In a markdown cell a
solution block (a model answer) becomes an invitation to write one's own.

    python -m xaicourse.notebooks build            # write notebooks/ from solutions/
    python -m xaicourse.notebooks build --check    # fail if notebooks/ is stale or a marker is broken
    python -m xaicourse.notebooks grade notebooks/06_exercises.ipynb   # run it, table of check outcomes

Markers are parsed strictly: nested or unterminated blocks are errors naming the notebook and cell.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
NOTEBOOKS = ROOT / "notebooks"

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
HINT_BEGIN, HINT_END = "### BEGIN HINT", "### END HINT"
MARKERS = (BEGIN, END, HINT_BEGIN, HINT_END)
STUB_TAG = "raises-exception"
STUB_CODE = 'raise NotImplementedError("Your turn: replace this line with your solution")'
STUB_MARKDOWN = "*Write your answer here, then compare with the model answer in solutions/.*"


class MarkerError(ValueError):
    """A solution or hint marker is nested, unterminated or out of place."""


def strip_solutions(source: str, cell_type: str, where: str) -> tuple[str, bool]:
    """The learner's version of one cell's source, and whether it contained a solution block."""
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
            out.append(indent + (STUB_CODE if cell_type == "code" else STUB_MARKDOWN))
        elif marker == HINT_BEGIN:
            state = "hint"
        else:
            state = None
    if state is not None:
        raise MarkerError(f"{where}: unterminated {state} block (add {END if state == 'solution' else HINT_END!r})")
    return "\n".join(out), found


def student_version(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """A copy of a solutions notebook with solutions replaced by stubs and outputs cleared."""
    nb = copy.deepcopy(nb)
    for index, cell in enumerate(nb.cells):
        where = f"{name} cell {index} (id {cell.get('id', '?')})"
        cell.source, has_solution = strip_solutions(cell.source, cell.cell_type, where)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            tags = cell.metadata.setdefault("tags", [])
            if has_solution and STUB_TAG not in tags:
                tags.append(STUB_TAG)
            if not tags:
                del cell.metadata["tags"]
    return nb


def build(solutions: Path = SOLUTIONS, notebooks: Path = NOTEBOOKS, check: bool = False) -> list[str]:
    """Write (or, with ``check``, compare) the learners' notebooks. Returns the problems found."""
    problems = []
    sources = sorted(solutions.glob("*.ipynb"))
    expected = {}
    for path in sources:
        nb = nbformat.read(path, as_version=4)
        try:
            expected[path.name] = nbformat.writes(student_version(nb, path.name)) + "\n"
        except MarkerError as err:
            problems.append(str(err))
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


CHECK_CALL = re.compile(r"(?<!def )\b(check_\w+)\s*\(")


def grade(path: Path, timeout: int = 600, executed: Path | None = None) -> list[dict]:
    """Execute a notebook and return one row per check it calls, in notebook order.

    Each row has ``exercise`` (the last markdown heading before the call), ``check``, ``status``
    ("passed", "failed", "not attempted" or "did not run") and ``message`` (the hint, or the error
    that stopped the cell before its check ran). Checks report through ``xaicourse.checks.record``.
    ``executed``: where to save the executed notebook, outputs and tracebacks included.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    from .checks import RESULTS_ENV

    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results.jsonl"
        results.touch()
        previous = os.environ.get(RESULTS_ENV)
        os.environ[RESULTS_ENV] = str(results)
        stopped = "the cell calling it did not run"
        try:
            NotebookClient(nb, timeout=timeout, allow_errors=True,
                           resources={"metadata": {"path": str(Path(path).resolve().parent)}}).execute()
        except (CellTimeoutError, DeadKernelError) as err:
            stopped = f"the notebook stopped early: {str(err).splitlines()[0]}"
        finally:
            if previous is None:
                del os.environ[RESULTS_ENV]
            else:
                os.environ[RESULTS_ENV] = previous
        outcomes = {}   # check name -> its outcomes in the order they ran
        for line in results.read_text(encoding="utf-8").splitlines():
            outcome = json.loads(line)
            outcomes.setdefault(outcome["check"], []).append(outcome)
    rows, exercise = [], Path(path).stem
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            headings = [line.lstrip("#").strip() for line in cell.source.splitlines()
                        if line.startswith("#") and line.strip() not in MARKERS]
            exercise = headings[-1] if headings else exercise
            continue
        errors = [f"{out.ename}: {out.evalue}" for out in cell.get("outputs", []) if out.output_type == "error"]
        for check in dict.fromkeys(CHECK_CALL.findall(cell.source)):
            ran = outcomes.get(check)
            outcome = ran.pop(0) if ran else {
                "status": "did not run", "message": errors[0] if errors else stopped}
            rows.append({"exercise": exercise, "check": check, "status": outcome["status"], "message": outcome["message"]})
    rows += [{"exercise": "(called indirectly)", **o} for ran in outcomes.values() for o in ran]
    if executed is not None:
        nbformat.write(nb, executed)
    return rows


def print_table(rows: list[dict]) -> None:
    width = max([len(r["exercise"]) for r in rows] + [8])
    print(f"{'exercise':<{width}}  {'check':<32}  result")
    for r in rows:
        note = "" if r["status"] == "passed" else f": {r['message']}"
        print(f"{r['exercise']:<{width}}  {r['check']:<32}  {r['status']}{note}")
    passed = sum(r["status"] == "passed" for r in rows)
    print(f"{passed}/{len(rows)} checks passed")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xaicourse.notebooks", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="generate notebooks/ from solutions/")
    b.add_argument("--check", action="store_true", help="only check; exit 1 if notebooks/ is stale")
    g = sub.add_parser("grade", help="execute a notebook and print the outcome of each check; exit 0 if all pass")
    g.add_argument("notebook", type=Path)
    g.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell (default 600)")
    g.add_argument("--executed", type=Path, help="also save the executed notebook (outputs, tracebacks) here")
    args = parser.parse_args(argv)
    if args.command == "grade":
        if not args.notebook.exists():
            parser.error(f"no notebook at {args.notebook}")
        rows = grade(args.notebook, timeout=args.timeout, executed=args.executed)
        if not rows:
            print(f"{args.notebook} calls no check_* function: nothing to grade", file=sys.stderr)
            return 1
        print_table(rows)
        return 0 if all(r["status"] == "passed" for r in rows) else 1
    problems = build(check=args.check)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print("notebooks/ is in sync with solutions/" if args.check else f"wrote {NOTEBOOKS}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
