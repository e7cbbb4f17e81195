"""Build the learners' notebooks from the solutions, and check that they are in sync.

solutions/NN_*.ipynb is the single source. In a code cell, the learner's part sits between
``### BEGIN SOLUTION`` and ``### END SOLUTION``; an optional ``### BEGIN HINT`` / ``### END HINT``
block of comment lines just before it becomes part of the stub. In the learner's copy the solution
becomes ``raise NotImplementedError(...)`` at the same indentation, the markers disappear, and the
cell gets the ``raises-exception`` tag so nbval runs the learner's version too. In a markdown cell a
solution block (a model answer) becomes an invitation to write one's own.

    python -m xaicourse.notebooks build            # write notebooks/ from solutions/
    python -m xaicourse.notebooks build --check    # fail if notebooks/ is stale or a marker is broken

Markers are parsed strictly: nested or unterminated blocks are errors naming the notebook and cell.
"""
from __future__ import annotations

import argparse
import copy
import sys
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xaicourse.notebooks", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="generate notebooks/ from solutions/")
    b.add_argument("--check", action="store_true", help="only check; exit 1 if notebooks/ is stale")
    args = parser.parse_args(argv)
    problems = build(check=args.check)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print("notebooks/ is in sync with solutions/" if args.check else f"wrote {NOTEBOOKS}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
