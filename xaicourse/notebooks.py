"""The notebook command line: build the learners' notebooks (authors), grade a notebook (learners).

    python -m xaicourse.notebooks build            # write notebooks/ from solutions/ (source checkout)
    python -m xaicourse.notebooks build --check    # fail if notebooks/ is stale or a marker is broken
    python -m xaicourse.notebooks grade notebooks/06_exercises.ipynb   # run it, table of check outcomes

``build`` is an authoring tool (:mod:`xaicourse.authoring`): it needs a source checkout with
solutions/ and says so, exit status 2, where there is none. ``grade`` (:mod:`xaicourse.grading`)
works on any notebook path, installed package or not; exit status 0 when every check passes, 1
otherwise, 2 when the file is not a notebook. The names below are re-exported so that
``xaicourse.notebooks.build`` and ``.grade`` keep working. Chapter 00.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .authoring import (
    BEGIN, END, HINT_BEGIN, HINT_END, MARKERS, STUB_CODE, STUB_MARKDOWN, STUB_TAG, MarkerError, NotACheckout, build,
    source_folders, strip_solutions, student_version,
)
from .grading import CHECK_CALL, NotANotebook, grade, print_table, read_notebook

__all__ = [
    "BEGIN", "CHECK_CALL", "END", "HINT_BEGIN", "HINT_END", "MARKERS", "MarkerError", "NotACheckout", "NotANotebook",
    "STUB_CODE", "STUB_MARKDOWN", "STUB_TAG", "build", "grade", "main", "print_table", "read_notebook",
    "source_folders", "strip_solutions", "student_version",
]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m xaicourse.notebooks", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="generate notebooks/ from solutions/ (needs a source checkout)")
    b.add_argument("--check", action="store_true", help="only check; exit 1 if notebooks/ is stale")
    g = sub.add_parser("grade", help="execute a notebook and print the outcome of each check; exit 0 if all pass")
    g.add_argument("notebook", type=Path)
    g.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell (default 600)")
    g.add_argument("--executed", type=Path, help="also save the executed notebook (outputs, tracebacks) here")
    return parser


def _grade(args) -> int:
    try:
        rows = grade(args.notebook, timeout=args.timeout, executed=args.executed)
    except NotANotebook as err:
        print(f"cannot grade: {err}", file=sys.stderr)
        return 2
    if not rows:
        print(f"{args.notebook} calls no check_* function: nothing to grade", file=sys.stderr)
        return 1
    print_table(rows)
    return 0 if all(r["status"] == "passed" for r in rows) else 1


def _build(check: bool) -> int:
    try:
        solutions, notebooks = source_folders()
    except NotACheckout as err:
        print(f"cannot build: {err}", file=sys.stderr)
        return 2
    problems = build(solutions, notebooks, check=check)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"{notebooks} is in sync with {solutions}" if check else f"wrote {notebooks}")
    return 1 if problems else 0


def main(argv=None) -> int:
    """The command line (see the module docstring); returns the exit status. Chapter 00."""
    args = _parser().parse_args(argv)
    return _grade(args) if args.command == "grade" else _build(args.check)


if __name__ == "__main__":
    sys.exit(main())
