"""Each chapter states a reading time a learner would measure (issue 24, item 7).

The estimate is :func:`xaicourse.authoring.reading_minutes` (prose, code and exercises, calibrated on
the cold reads of chapters 07-09); the chapter's "**Time:**" line must agree with it within a quarter.
"""
import re
from pathlib import Path

import nbformat
import pytest

from xaicourse.authoring import reading_minutes

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "solutions").glob("*.ipynb"))
TIME = re.compile(r"\*\*Time:\*\*\s*(?:about\s+)?(\d+(?:\.\d+)?)(?:\s*[-–]\s*(\d+(?:\.\d+)?))?\s*(minutes|hours?)")
MARGIN = 1.25
LONGEST_SITTING = 100   # minutes; a longer chapter says where to break


def stated_minutes(nb) -> tuple[float, float]:
    """The (low, high) reading time a chapter's "**Time:**" line states, in minutes."""
    for cell in nb.cells:
        match = TIME.search(cell.source) if cell.cell_type == "markdown" else None
        if match:
            low = float(match.group(1))
            high = float(match.group(2) or low)
            scale = 60 if match.group(3).startswith("hour") else 1
            return low * scale, high * scale
    raise AssertionError("no '**Time:** about N minutes ...' line in the chapter's introduction")


def test_the_pattern_reads_minutes_hours_and_ranges():
    cell = lambda text: nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(text)])  # noqa: E731
    assert stated_minutes(cell("**Time:** about 45 minutes to read")) == (45, 45)
    assert stated_minutes(cell("**Time:** 2-3 hours to solve")) == (120, 180)
    assert stated_minutes(cell("**Time:** 75–100 minutes")) == (75, 100)
    with pytest.raises(AssertionError, match="Time"):
        stated_minutes(cell("no time here"))


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_stated_reading_time_matches_the_estimate(path):
    nb = nbformat.read(path, as_version=4)
    estimate = reading_minutes(nb)
    low, high = stated_minutes(nb)
    assert low / MARGIN <= estimate <= high * MARGIN, (
        f"{path.name} says {low:g}-{high:g} minutes, but reads in about {estimate:.0f} "
        f"(xaicourse.authoring.reading_minutes): state about {5 * round(estimate / 5)} minutes")
    if estimate > LONGEST_SITTING:
        text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        assert re.search(r"sitting|break", text), f"{path.name} takes {estimate:.0f} minutes: say where to take a break"
