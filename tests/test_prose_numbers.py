"""Every number a chapter's text quotes is one the same chapter prints (issue 24, item 2).

A learner who trusts the prose must see the same number in the output below it. This test reads each
chapter's markdown and finds every quoted number among the numbers that chapter printed (stdout streams
and ``text/plain`` results of its code cells, as executed by tests/test_chapter_numbers.py: one run per
chapter, shared through its ``_execute`` cache; set XAICOURSE_EXECUTED=<folder> to read executed copies).

What counts as a quoted number
    decimals (``0.365``, ``8.4x``, ``1e-5``) and percentages (``12.5 %``, ``0.8%``, ``90 %``). Plain
    integers are not checked: in this course they are counts and settings far more often than
    measurements (3 photos, 50 steps, 224 px, 12 heads, exercise 4, 2017), and checking them would need
    an exception for almost each one. An integer percentage is checked.

The matching rule
    A printed number stands for every value that rounds to it (a printed 0.3652 for [0.36515, 0.36525)).
    A prose number matches it when all of those values round to the prose number at the prose's own
    precision: the prose may quote the printed digits, or fewer of them correctly rounded (0.3652 as
    0.365 or 0.37; 89.6% as 90 %), but never round a rounded number twice (a printed 0.365 is 0.36 or
    0.37: neither may be quoted) nor add a digit the chapter never printed (0.50 for a printed 0.5).
    Percent and fraction are the same number: 12.5 % matches a printed 0.125, and 0.125 a printed
    12.5%. Signs are not compared (the text says "drops by 0.06" for a printed -0.06); magnitudes are.
    A number is looked up in the printed output of its own section (see SECTION_HEADING), so a value
    that happens to be printed somewhere else in the chapter does not vouch for it.

What is not a quoted number
    The generic rules below (code spans, formulas, links, section and exercise labels, version strings,
    bounds such as "under 5 %") each carry a comment; every other exception is one entry of EXCEPTIONS,
    keyed by chapter and the phrase around the number, with the reason. An exception that no longer
    matches anything fails the test, so the list cannot silently go stale.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import nbformat
import pytest

if "test_chapter_numbers" in sys.modules:  # the module pytest already imported: its cache is shared
    chapters = sys.modules["test_chapter_numbers"]
else:
    import test_chapter_numbers as chapters

ROOT = Path(__file__).resolve().parents[1]
SLOW = chapters.pytestmark          # the chapter runs are slow; the rule's own tests below are not
CHAPTERS = [name for name in chapters.CHAPTERS if re.match(r"\d\d_", name)]   # every chapter

# ----------------------------------------------------------------------------------------------------
# Generic rules: text removed before numbers are read (each replaced by a space)
# ----------------------------------------------------------------------------------------------------
NOT_PROSE = [
    re.compile(r"```.*?```", re.S),                 # fenced code: settings and calls, not measurements
    re.compile(r"`[^`\n]*`"),                       # inline code: `n_steps=50`, `noise_level=0.15`
    re.compile(r"\$\$.*?\$\$", re.S),               # display maths: formulas and their constants
    re.compile(r"(?<!\\)\$[^$\n]+?(?<!\\)\$"),      # inline maths: $\alpha = 0.5$
    re.compile(r"\]\([^)\s]*\)"),                   # link targets: [text](url)
    re.compile(r"https?://\S+"),                    # bare URLs (arXiv ids such as 1703.01365)
    re.compile(r"<[^>\n]+>"),                       # HTML tags and their attributes
    re.compile(r"\b(?:arXiv:?\s*)\d{4}\.\d{4,5}", re.I),  # arXiv identifiers written out
]

# A number: optional sign, digits with an optional decimal part or exponent, an optional percent sign
# (with an optional normal, thin or no-break space). Not inside a word, an identifier or a dotted
# version (2.13.0 is skipped whole by the lookarounds).
NUMBER = re.compile(
    r"(?<![\w.\d])(?P<sign>[-+−])?(?P<num>\d+(?:\.\d+)?(?:e[-+−]?\d+)?)(?![\w]*\.\d)(?!\.\d)"
    r"(?P<pct>[ \u2009\u202f\u00a0]?%)?(?![\d])")

# The first end of a range of percentages is a percentage too: "7.1-7.5 %", "19 % to 62 %".
RANGE_OF_PERCENT = re.compile(r"\s?(?:-|–|to)\s?[-+−]?\d+(?:\.\d+)?[ \u2009\u202f\u00a0]?%")

# Section and exercise labels ("4.2.4", "exercise 6.5", "7.8 and 7.9"): the numbers that head a section
# of any chapter (read from the headings below), and any dotted number after a word that names a part.
LABEL_WORD = re.compile(r"(?:section|sections|§|exercise|exercises|task|tasks|chapter|chapters)"
                        r"\s+(?:[\d.]+(?:,|\s+and|\s+or|\s+to|\s*-|–)\s*)*$", re.I)
HEADING_LABEL = re.compile(r"^#+\s*(?:[\w·]*\s)*?(?:exercise\s+|task\s+)?(\d+(?:\.\d+)+)", re.I | re.M)

# Bounds, not quotations: a number after a comparison word states a threshold ("errors under 5 %", "at
# least 0.9", "over 100 %"). The key-number tests in test_chapter_numbers.py check the bounds the prose
# relies on; this test cannot know which printed value a bound is about.
BOUND = re.compile(r"(?:\b(?:under|below|above|over|less than|more than|fewer than|at least|at most|up to|"
                   r"within|beyond|exceeds?|exceeding)|[<>≤≥]|>=|<=)\s*(?:±\s*)?$", re.I)
BOUND_AFTER = re.compile(r"\s*(?:or|and)\s+(?:more|less|above|below|over|under|higher|lower)\b", re.I)  # "5 % or more"

# ----------------------------------------------------------------------------------------------------
# The explicit exceptions: (chapter prefix, phrase around the number, reason). The phrase is matched in
# the cleaned text (any white space matches any other); every number inside it is exempt. The prefix ""
# stands for every chapter.
# ----------------------------------------------------------------------------------------------------
EXCEPTIONS: list[tuple[str, str, str]] = [
    # every chapter ("" is the prefix of every name)
    ("", "03's 5 % rule", "the course's rule for reading an IG map (chapter 03), a threshold, not a result"),
    # 01_gradients
    ("01", "4.7 million weights", "EfficientNet-Lite0's parameter count: a fact of the architecture, not a result"),
    ("01", "saturates the top 1 %", "the display setting of clip_map (its default percentile), written in the package"),
    ("01", "recommends 10–20 %", "the SmoothGrad paper's recommendation (Smilkov et al. 2017)"),
    ("01", "fixed σ = 0.15, which means 7.5 % of the range for this model's [-1, 1] inputs but 3 %",
     "the source's setting σ = 0.15 and arithmetic on it (0.15 / 2 and 0.15 / 4.5), not a measurement"),
    ("01", "(50 samples, 15 % noise)", "the setting of the cell below (noise_level=0.15), the paper's recommendation"),
    # 03_integrated_gradients
    ("03", "a node every 1/64 ≈ 0.016", "arithmetic on the setting (65 points from 0 to 1)"),
    ("03", "(2% short at 50 steps", "arithmetic on Captum's weights: (n - 1) / n at n = 50"),
    # 04_attention
    ("04", "match the model to 1e-5", "the tolerance the by-hand cell asserts (assert difference < 1e-5)"),
    ("04", "matched the model to 1e-5", "the same asserted tolerance, in the summary (measured: 1.8e-07)"),
    # 05_end_to_end_debugging
    ("05", "50 noisy copies at 15 % noise", "the report's SmoothGrad² settings (a table of defaults)"),
    ("05", "90 % of the positive ones start with", "the planted shortcut, a setting of the code (c < 0.9)"),
    ("05", "reaches 82 % on the held-out split", "the shipped classifier's training record (xc.train.train_sentiment: "
     "82.4 % on the 2,111 held-out sentences); measuring it again would take a pass over all of them"),
    ("05", "union of the top 20 % regions",
     "the setting of misclassification_stats (top=0.2), in the exercise's brief"),
    # 02_gradcam
    ("02", "A model that scores 99%",
     "the source lesson's anecdote (a visual-inspection model), told before the chapter runs"),
    ("02", "model reached 99% accuracy", "the same anecdote, from the source lesson"),
    # 06_exercises
    ("06", "add 1e-6 to the denominator", "a setting of the task's brief (the reference's epsilon)"),
    # 07_evaluating_explanations
    ("07", "here for a shift of −0.5", "the setting of the cell below (SHIFT = -0.5)"),
    # 09_explaining_transformers
    ("09", "where 90 % of the positive ones start with", "the planted shortcut, a setting of the code (as in chapter 05)"),
]


@dataclass(frozen=True)
class Printed:
    text: str
    value: Decimal        # magnitude
    percent: bool


@dataclass(frozen=True)
class Quoted:
    text: str
    value: Decimal        # magnitude
    percent: bool
    start: int
    end: int


def _decimal(num: str) -> Decimal:
    return abs(Decimal(num.replace("−", "-")))


def _places(value: Decimal) -> int:
    return max(0, -value.as_tuple().exponent)


# Progress bars (tqdm without widgets prints "classifying:  33%|###3      | 1/3 [00:00<?, ?it/s]", often glued
# to the next output) are not results: the percentage, the bar, the count and the bracket are removed.
PROGRESS_BAR = re.compile(r"\d+%\|[^|\n]*\|\s*[\d.]+[kM]?/[\d.]+[kM]?\s*\[[^\]\n]*\]")


def printed_numbers(outputs: dict[str, str]) -> list[Printed]:
    found = []
    for text in outputs.values():
        text = PROGRESS_BAR.sub(" ", text)
        for m in re.finditer(r"(?<![\w.])[-+]?(\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(\s?%)?", text):
            try:
                found.append(Printed(m.group(0), _decimal(m.group(1)), bool(m.group(2))))
            except ArithmeticError:
                continue
    return found


def clean_markdown(source: str) -> str:
    for rule in NOT_PROSE:
        source = rule.sub(lambda m: " " * len(m.group(0)), source)
    return source


def section_labels(names: list[str]) -> set[str]:
    labels = set()
    for name in names:
        nb = nbformat.read(ROOT / "solutions" / name, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                for m in HEADING_LABEL.finditer(cell.source):
                    parts = m.group(1).split(".")
                    labels.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
    return labels


def quoted_numbers(text: str, labels: set[str]) -> list[Quoted]:
    quoted = []
    for m in NUMBER.finditer(text):
        num, pct = m.group("num"), bool(m.group("pct"))
        if not pct and RANGE_OF_PERCENT.match(text, m.end()):
            pct = True                                             # "7.1-7.5 %", "41 to 120 %"
        if "." not in num and "e" not in num and not pct:
            continue                                               # plain integers: see the module docstring
        before = text[max(0, m.start() - 40):m.start()]
        after = text[m.end():m.end() + 3]
        if not pct and num in labels and not re.match(r"\s?[x×]", after):
            continue                                               # a section or exercise label
        if not pct and LABEL_WORD.search(before):
            continue
        if BOUND.search(before) or BOUND_AFTER.match(text, m.end()):
            continue
        quoted.append(Quoted(m.group(0).strip(), _decimal(num), pct, m.start("num"), m.end()))
    return quoted


def _half_step(places: int) -> Decimal:
    return Decimal(5).scaleb(-places - 1)


def _rounds_to(printed: Decimal, places_printed: int, quoted: Decimal) -> bool:
    """Whether every value the printout can stand for rounds to ``quoted`` at the prose's precision.

    A printed 0.3652 stands for a value in [0.36515, 0.36525): all of it rounds to 0.365 (and to 0.37), so
    both may be quoted. A printed 0.365 stands for [0.3645, 0.3655): that rounds to 0.36 or 0.37, so
    neither may be quoted (rounding a rounded number twice), only 0.365 itself or 0.4. A prose 0.50 for a
    printed 0.5 claims a digit the chapter never printed, and fails too."""
    places = _places(quoted)
    if places_printed < places:
        return False
    step = Decimal(1).scaleb(-places)
    tiny = _half_step(places_printed) / 1000                        # inside the interval: no ties left
    low = printed - _half_step(places_printed) + tiny
    high = printed + _half_step(places_printed) - tiny
    return max(low, Decimal(0)).quantize(step, ROUND_HALF_EVEN) == quoted == high.quantize(step, ROUND_HALF_EVEN)


def matches(quoted: Quoted, printed: Printed) -> bool:
    value, places = printed.value, _places(printed.value)
    if quoted.percent and not printed.percent:                    # 12.5 % against a printed 0.125
        value, places = value.scaleb(2), places - 2
    elif printed.percent and not quoted.percent:                  # 0.125 against a printed 12.5%
        value, places = value.scaleb(-2), places + 2
    return _rounds_to(value, places, quoted.value)


def sentence_around(text: str, start: int, end: int) -> str:
    left = max(text.rfind(". ", 0, start), text.rfind("\n\n", 0, start), text.rfind("|", 0, start))
    rights = [i for i in (text.find(". ", end), text.find("\n\n", end), text.find("|", end)) if i >= 0]
    right = min(rights) if rights else len(text)
    return " ".join(text[left + 1:right + 1].split())


def closest(quoted: Quoted, printed: list[Printed], k: int = 4) -> list[str]:
    def distance(p: Printed) -> float:
        value = p.value
        if quoted.percent and not p.percent:
            value = value * 100
        elif p.percent and not quoted.percent:
            value = value / 100
        return abs(float(value) - float(quoted.value))
    seen, best = set(), []
    for p in sorted(printed, key=distance):
        if p.text not in seen:
            seen.add(p.text)
            best.append(p.text)
        if len(best) == k:
            break
    return best


def _phrase(phrase: str) -> re.Pattern:
    """The phrase as a pattern in which any run of white space matches any other (the source wraps lines)."""
    return re.compile(r"\s+".join(re.escape(word) for word in phrase.split()))


def exempt(name: str, text: str, quoted: Quoted, used: set[int]) -> bool:
    for i, (chapter, phrase, _reason) in enumerate(EXCEPTIONS):
        if not name.startswith(chapter):
            continue
        for m in _phrase(phrase).finditer(text):
            if m.start() <= quoted.start and quoted.end <= m.end():
                used.add(i)
                return True
    return False


# Where a number is looked up: the printed output of its own section, where the prose reads what is
# printed above or below it. A section runs from one heading to the next of level 1 or 2, or of level 3
# when it carries a label ("### 4.1.3 SmoothGrad", "### Exercise 6.6"); an unlabelled "### A closer look"
# stays inside its section. The introduction (the "# NN · title" section, which says what the chapter
# will show), the "## Summary" and any section with no code of its own quote the whole chapter. A number from
# another section is not found: say it there, or print it where it is quoted.
SECTION_HEADING = re.compile(r"^(?:#{1,2}\s|###\s+(?:exercise\s+|task\s+)?\d)", re.M | re.I)


def segments(cells) -> list[tuple[int, object, int, str]]:
    """(section, cell, offset, text): markdown cells cut at their headings (the text above a heading
    belongs to the section before it), code cells whole."""
    index, out = 0, []
    for cell in cells:
        if cell.cell_type != "markdown":
            out.append((index, cell, 0, ""))
            continue
        cuts = [m.start() for m in SECTION_HEADING.finditer(cell.source)]
        bounds = [0] + [c for c in cuts if c > 0] + [len(cell.source)]
        for start, end in zip(bounds, bounds[1:]):
            if start in cuts:
                index += 1
            out.append((index, cell, start, cell.source[start:end]))
    return out


def unmatched(name: str, outputs: dict[str, str]) -> tuple[list[str], set[int]]:
    """The quoted numbers of chapter ``name`` that it never prints, as readable lines; and the exceptions used."""
    labels = section_labels(chapters.CHAPTERS)
    nb = nbformat.read(ROOT / "solutions" / name, as_version=4)
    everything = printed_numbers(outputs)
    parts = segments(nb.cells)
    intro = next((s for s, c, _, text in parts if re.match(r"#\s", text)), None)   # the "# NN · title" section
    summary = {s for s, c, _, text in parts if re.match(r"##\s+summary", text, re.I)}
    problems, used = [], set()
    for section, cell, _offset, source in parts:
        if cell.cell_type != "markdown":
            continue
        ids = [c.id for s, c, _, _ in parts if s == section and c.cell_type == "code"]
        whole = not ids or section == intro or section in summary
        printed = everything if whole else printed_numbers({i: outputs.get(i, "") for i in ids})
        text = clean_markdown(source)
        for q in quoted_numbers(text, labels):
            if exempt(name, text, q, used) or any(matches(q, p) for p in printed):
                continue
            problems.append(f"cell {cell.id}: {q.text} is not printed in its section (closest printed there: "
                            f"{', '.join(closest(q, printed))})\n    in: {sentence_around(text, q.start, q.end)}")
    return problems, used


# Chapters whose prose is known not to pass yet, with the reason (strict: a chapter that passes again must
# leave this list).
NOT_YET: dict[str, str] = {
}


def _marks(name: str) -> list:
    return [*SLOW, *([pytest.mark.xfail(strict=True, reason=NOT_YET[name])] if name in NOT_YET else [])]


@pytest.mark.parametrize("name", [pytest.param(name, marks=_marks(name)) for name in CHAPTERS])
def test_every_quoted_number_is_printed(name):
    problems, _ = unmatched(name, chapters._execute(name))
    assert not problems, (f"{name}: {len(problems)} number(s) in the text that the chapter does not print "
                          "(rewrite the sentence from the printed output, print the number where it is "
                          "computed, or add an exception with its reason):\n" + "\n".join(problems))


def test_every_exception_is_used():
    """An exception whose phrase no longer occurs is stale: remove it."""
    stale = []
    for i, (chapter, phrase, reason) in enumerate(EXCEPTIONS):
        names = [n for n in CHAPTERS if n.startswith(chapter)]
        texts = [clean_markdown(c.source) for n in names
                 for c in nbformat.read(ROOT / "solutions" / n, as_version=4).cells if c.cell_type == "markdown"]
        if not any(_phrase(phrase).search(t) for t in texts):
            stale.append(f"{chapter}: {phrase!r} ({reason})")
    assert not stale, "exceptions whose phrase is no longer in the chapter:\n" + "\n".join(stale)


# ----------------------------------------------------------------------------------------------------
# The rule itself, on made-up text (fast: no chapter runs)
# ----------------------------------------------------------------------------------------------------
def _quoted(text: str) -> list[str]:
    return [q.text for q in quoted_numbers(clean_markdown(text), {"4.1", "7.8"})]


def test_what_counts_as_a_quoted_number():
    assert _quoted("accuracy 0.365, a 12.5 % error, 0.8% of it, 8.4x the logit, 1e-5 apart") == [
        "0.365", "12.5 %", "0.8%", "8.4", "1e-5"]
    assert _quoted("3 photos, 50 steps, 224 px, Selvaraju et al. 2017, exercise 4") == []      # integers
    assert _quoted("section 4.1 and 7.8, exercise 6.5, sections 7.8 and 7.9, torch 2.13.0") == []
    assert _quoted("`noise_level=0.15`, $\\alpha = 0.5$, [paper](https://arxiv.org/abs/1703.01365)") == []
    assert _quoted("errors under 5 %, at least 0.9, over 100 %") == []                          # bounds
    assert _quoted("from 7.1-7.5 % down") == ["7.1", "7.5 %"]
    assert [q.percent for q in quoted_numbers("7.1-7.5 %", set())] == [True, True]


@pytest.mark.parametrize("prose, printed, ok", [
    ("0.365", "0.365", True), ("0.365", "0.3652", True), ("0.37", "0.3652", True),
    ("0.37", "0.365", False), ("0.36", "0.365", False), ("0.4", "0.365", True),
    ("0.50", "0.5", False), ("0.5", "0.50", True), ("0.365", "0.350", False),
    ("12.5 %", "0.125", True), ("12.5 %", "12.5%", True), ("0.125", "12.5%", True),
    ("90 %", "0.9", False), ("90 %", "89.6%", True), ("0.8 %", "0.9%", False), ("100 %", "1.00", True),
    ("−0.06", "-0.06", True), ("0.307", "0.293", False), ("3e-06", "2.9e-06", True),
])
def test_the_matching_rule(prose, printed, ok):
    quoted = quoted_numbers(prose, set())
    assert len(quoted) == 1
    assert any(matches(quoted[0], p) for p in printed_numbers({"cell": printed})) is ok
