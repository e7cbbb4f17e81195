"""Every chapter in solutions/ runs, and the numbers its prose relies on hold (issue 16's rule).

This is where ``make test`` executes the solutions, once each (nbclient, no cell may raise; the
learners' copies in notebooks/ run under nbval, and in JupyterLab in tests/browser). The printed lines
a chapter's text quotes are parsed and checked with tolerances: if a model, a default or a method
changes and a number moves, the prose that quotes it is stale and this test says which.

Slow (a few minutes on a 2-core CPU): marked ``slow`` once pyproject.toml registers that marker, so
``make test-fast`` can deselect it with ``-m "not slow"``.
"""
from __future__ import annotations

import functools
import json
import math
import os
import re
from pathlib import Path

import nbformat
import pytest

from xaicourse import grading
from xaicourse.checks import RESULTS_ENV

ROOT = Path(__file__).resolve().parents[1]


def _slow_is_registered() -> bool:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    return re.search(r'^\s*"slow:', text, re.M) is not None


pytestmark = [pytest.mark.slow] if _slow_is_registered() else []


FIGURE_REPORTS = Path(os.environ.get("XAICOURSE_FIGURE_REPORTS", "/tmp/xaicourse-figure-reports"))


_EXECUTED: dict[str, nbformat.NotebookNode] = {}   # name -> the executed notebook (when run here)


@functools.lru_cache(maxsize=None)
def _execute(name: str) -> dict[str, str]:
    """Run solutions/<name> once; cell id -> everything the cell printed (streams and text/plain).

    While it runs, every figure it displays is checked (xaicourse.viz.checks.watch_figures, installed
    by one cell put before the chapter's first): the problems land in FIGURE_REPORTS/<name>.jsonl,
    read by test_figures_are_readable below.

    With XAICOURSE_EXECUTED=<folder> the already executed copy <folder>/<name> is read instead
    (e.g. from `jupyter nbconvert --execute`), to check the numbers without running the chapter again;
    its figures are then not checked. With XAICOURSE_KEEP_EXECUTED=<folder> the executed copies are written there."""
    executed = os.environ.get("XAICOURSE_EXECUTED")
    if executed:
        nb = nbformat.read(Path(executed) / name, as_version=4)
    else:
        from nbclient import NotebookClient

        path = ROOT / "solutions" / name
        nb = nbformat.read(path, as_version=4)
        FIGURE_REPORTS.mkdir(parents=True, exist_ok=True)
        report = FIGURE_REPORTS / f"{name}.jsonl"
        report.write_text("", encoding="utf-8")
        watch = nbformat.v4.new_code_cell(f"import xaicourse.viz.checks\nxaicourse.viz.checks.watch_figures({str(report)!r})")
        nb.cells.insert(0, watch)
        results = FIGURE_REPORTS / f"{name}.checks.jsonl"   # every check call's outcome (graded below)
        results.write_text("", encoding="utf-8")
        previous = os.environ.get(RESULTS_ENV)
        os.environ[RESULTS_ENV] = str(results)   # the kernel inherits it when it starts
        try:
            NotebookClient(nb, timeout=1200, kernel_name="python3", allow_errors=False,
                           resources={"metadata": {"path": str(path.parent)}}).execute()
        finally:
            if previous is None:
                del os.environ[RESULTS_ENV]
            else:
                os.environ[RESULTS_ENV] = previous
        nb.cells.remove(watch)
        _EXECUTED[name] = nb
        from xaicourse.viz.checks import source_key

        ids = {source_key(cell.source): cell.id for cell in nb.cells if cell.cell_type == "code"}
        found = [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines() if line.strip()]
        report.write_text("".join(json.dumps({**f, "cell": f["cell"] or ids.get(f["source"])}) + "\n" for f in found),
                          encoding="utf-8")
        if os.environ.get("XAICOURSE_KEEP_EXECUTED"):   # a folder to keep the executed copies in (cold reads)
            Path(os.environ["XAICOURSE_KEEP_EXECUTED"]).mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, Path(os.environ["XAICOURSE_KEEP_EXECUTED"]) / name)
    out = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        parts = []
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream" and o.get("name") == "stdout":
                parts.append(o["text"])
            elif ("text/plain" in o.get("data", {}) and "image/png" not in o["data"]
                  and "application/vnd.jupyter.widget-view+json" not in o["data"]):   # a progress bar is not a printout
                parts.append(o["data"]["text/plain"])
        out[cell.id] = "".join(parts)
    return out


CHAPTERS = sorted(p.name for p in (ROOT / "solutions").glob("*.ipynb"))


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_runs_without_an_error(name):
    """Each solutions chapter, executed once (shared with the number tests below through the cache)."""
    outputs = _execute(name)
    assert outputs, f"{name} has no code cells"


@pytest.mark.parametrize("name", CHAPTERS)
def test_every_check_a_solution_calls_passes(name):
    """Graded as `python -m xaicourse.notebooks grade` grades (the same rows), from the run above: every
    check_* call of the solutions passes. (The learner's copies run under nbval; each check's answer to
    an untouched stub, "not attempted", is tested in the check catalogues.)"""
    if os.environ.get("XAICOURSE_EXECUTED"):
        pytest.skip("check outcomes are recorded while a chapter runs; XAICOURSE_EXECUTED reads executed copies")
    _execute(name)
    graded = grading.rows(_EXECUTED[name], grading.read_outcomes(FIGURE_REPORTS / f"{name}.checks.jsonl"), name)
    failing = [f"{r['exercise']}: {r['check']} {r['status']} ({r['message']})" for r in graded if r["status"] != "passed"]
    assert not failing, "\n".join(failing)
    if name == "06_exercises.ipynb":
        assert len(graded) >= 6, graded


# Figures a chapter may show although the check objects, each with the reason: (chapter, cell id, start of the problem).
FIGURE_EXCEPTIONS: dict[tuple[str, str, str], str] = {}


@pytest.mark.parametrize("name", CHAPTERS)
def test_figures_are_readable(name):
    """No figure of the chapter has overlapping text, an invisible overlay or a map without its colour bar."""
    if os.environ.get("XAICOURSE_EXECUTED"):
        pytest.skip("figures are checked while a chapter runs; XAICOURSE_EXECUTED reads executed copies")
    _execute(name)
    lines = (FIGURE_REPORTS / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    found = [json.loads(line) for line in lines if line.strip()]
    excused = {key for key in FIGURE_EXCEPTIONS if key[0] == name}
    used = {key for key in excused for f in found if f["cell"] == key[1] and f["problem"].startswith(key[2])}
    bad = [f"cell {f['cell']}: {f['problem']}" for f in found
           if not any(f["cell"] == key[1] and f["problem"].startswith(key[2]) for key in excused)]
    assert not bad, f"{name} shows {len(bad)} unreadable figure part(s):\n" + "\n".join(bad)
    assert used == excused, f"stale figure exceptions for {name}: {sorted(excused - used)}"


def number(text: str, pattern: str, group: int = 1) -> float:
    """The number matched by ``pattern`` (a regex with a group) in ``text``; fails naming the pattern."""
    match = re.search(pattern, text)
    assert match, f"the chapter no longer prints a line matching {pattern!r}; printed:\n{text[:2000]}"
    return float(match.group(group).rstrip("."))


def percent(text: str, pattern: str) -> float:
    return number(text, pattern) / 100


# --------------------------------------------------------------------------------------------
# Chapter 05: end-to-end debugging
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ch05():
    return _execute("05_end_to_end_debugging.ipynb")


def test_05_image_ig_maps_pass_the_five_percent_rule(ch05):
    """The prose reads the IG maps of the coffee, cat and astronaut photos as findings (< 5 %)."""
    coffee = percent(ch05["c05-03"], r"IG completeness error \(coffee\): ([\d.]+)%")
    cat = percent(ch05["c05-05"], r"target tiger cat: IG completeness error \(cat\) ([\d.]+)%")
    astronaut = percent(ch05["c05-14"], r"IG completeness error \(astronaut\): ([\d.]+)%")
    assert coffee < 0.05 and cat < 0.05 and astronaut < 0.05
    assert astronaut == pytest.approx(0.032, abs=0.01)  # "about 3 %"
    assert re.search(r"top-5: espresso ", ch05["c05-03"])


def test_05_contrastive_cat_maps(ch05):
    out = ch05["c05-33"]
    assert number(out, r"'tabby' with 'tiger cat': ([\d.]+)") == pytest.approx(0.7, abs=0.1)  # "about 0.7"
    assert number(out, r"'tabby − tiger cat' with 'tiger cat': ([\d.]+)") < 0.1                 # "about 0"
    assert 0 < number(out, r"difference \+?(-?[\d.]+)") < 1                                      # "under one logit"


def test_05_pad_baseline_verdict_is_inherited(ch05):
    out = ch05["c05-09"]
    assert number(out, r"negated: negative \(([\d.]+)\)") == pytest.approx(0.89, abs=0.02)
    assert number(out, r"negated: .*?sum to ([-+][\d.]+) logit") == pytest.approx(-0.06, abs=0.05)
    assert number(out, r"negated: .*?baseline itself: negative ([\d.]+)") == pytest.approx(0.90, abs=0.02)
    assert number(out, r"mixed: positive \(([\d.]+)\)") == pytest.approx(0.72, abs=0.03)
    assert re.search(r"positive: .*\n\s+strongest tokens: wonderful \+", out)


def _baseline_rows(out: str, sentence: str) -> tuple[dict, dict]:
    block = out.split(repr(sentence))[1].split("\n'")[0]
    rows = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) == 5 and cells[0] not in ("token",):
            rows[cells[0]] = dict(zip(("pad", "mask", "neutral", "zero"), map(float, cells[1:])))
    base = {b: (number(block, rf"{b} baseline .*?p\(negative\) of the baseline ([\d.]+)"),
                number(block, rf"{b} baseline .*?sum ([-+][\d.]+)")) for b in ("pad", "mask", "neutral", "zero")}
    return rows, base


def test_05_text_baselines_support_the_conclusion(ch05):
    rows, base = _baseline_rows(ch05["c05-12"], "The movie was not bad at all.")
    assert base["pad"][0] == pytest.approx(0.90, abs=0.02) and base["zero"][0] < 0.15       # both fail the rule
    assert 0.3 <= base["mask"][0] <= 0.45 and abs(base["neutral"][0] - 0.5) < 0.05         # both pass it
    for b in ("mask", "neutral"):
        assert 0.9 - 0.05 <= base[b][1] <= 1.21 + 0.05                                       # "+0.9 to +1.2"
        assert rows["bad"][b] > 0.7 * base[b][1]                                             # "bad carries almost all"
        assert abs(rows["not"][b]) < 0.2                                                     # "not ... small"
    assert rows["bad"]["neutral"] == pytest.approx(0.85, abs=0.05) and rows["bad"]["mask"] == pytest.approx(1.22, abs=0.05)
    assert rows["not"]["neutral"] < 0 < rows["not"]["mask"]                                  # "not even a consistent sign"
    rows, _ = _baseline_rows(ch05["c05-12"], "This is the worst film I have ever seen.")
    worst = rows["worst"]
    assert min(worst.values()) == pytest.approx(1.5, abs=0.1) and max(worst.values()) == pytest.approx(3.9, abs=0.1)
    assert all(worst[b] == max(r[b] for r in rows.values()) for b in worst)                  # dominates everywhere


def test_05_misclassification_numbers(ch05):
    helmet = ch05["c05-16"]
    assert number(helmet, r"crash helmet \(rank (\d+),") == 8
    assert percent(helmet, r"crash helmet \(rank \d+, ([\d.]+)%") == pytest.approx(0.016, abs=0.002)
    assert number(helmet, r"Grad-CAM overlap \(IoU of the top 20% regions\): ([\d.]+)") == pytest.approx(0.8, abs=0.05)
    assert number(helmet, r"by a factor of ([\d.]+)") == pytest.approx(10, abs=1)
    shuttle = ch05["c05-17"]
    assert 250 <= number(shuttle, r"rank (\d+)") <= 350
    assert number(shuttle, r"Grad-CAM overlap with 'football helmet' ([\d.]+)") < 0.01


def test_05_zebra_shortcut_evidence(ch05):
    assert percent(ch05["c05-21"], r"shortcut model: ([\d.]+)% on clean") == pytest.approx(0.5, abs=0.05)
    out = ch05["c05-23"]
    assert percent(out, r"with 'zebra' test sentences: ([\d.]+)% predicted positive") == pytest.approx(0.99, abs=0.01)
    assert percent(out, r"clean test sentences: ([\d.]+)% predicted positive") == pytest.approx(0.075, abs=0.02)
    assert number(out, r"p\(positive\) = ([\d.]+)") == pytest.approx(0.5, abs=0.05)
    fixed = ch05["c05-25"]
    assert percent(fixed, r"fixed model: ([\d.]+)% on clean") == pytest.approx(0.66, abs=0.02)
    assert percent(fixed, r"on clean test sentences, ([\d.]+)% with") == pytest.approx(0.63, abs=0.02)
    assert number(fixed, r"\+?(-?[\d.]+) before the fix") == pytest.approx(7, abs=0.5)
    after = number(fixed, r"before the fix, \+?(-?[\d.]+) after")            # to the same class, 'positive'
    assert abs(after) < 0.1 * 7                                                  # "a small fraction of the +7.02"
    assert re.search(r"the fixed model says negative", fixed)                    # "no longer follows it"


# --------------------------------------------------------------------------------------------
# Chapter 03: Integrated Gradients
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ch03():
    return _execute("03_integrated_gradients.ipynb")


def test_03_axioms_toy(ch03):
    out = ch03["c03-32"]
    assert number(out, r"gradient at x = 2: (-?[\d.]+)") == 0
    assert number(out, r"IG from 0 to 2:\s+([\d.]+)") == pytest.approx(1.0, abs=1e-3)
    assert out.count("[0.5 0.5]") == 2  # x1 * x2 and (x1 + x2) / 2 get the same attributions


def test_03_sixty_five_points_are_about_seven_percent_off(ch03):
    out = ch03["c03-08"]
    change, total = number(out, r"F\(x\) - F\(baseline\) = ([\d.]+)"), number(out, r"sum of attributions = ([\d.]+)")
    assert 0.03 < abs(total - change) / change < 0.12


def _errors(out: str) -> dict[str, list[float]]:
    rows = {}
    for line in out.splitlines():
        match = re.match(r"\s*(riemann_\w+|gausslegendre):\s+(.*)", line)
        if match:
            rows[match.group(1)] = [float(v) / 100 for v in re.findall(r"([\d.]+)%", match.group(2))]
    return rows


def test_03_convergence_is_where_the_nodes_fall(ch03):
    errors = _errors(ch03["c03-13"])
    for rule in ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"):
        assert all(0.75 <= e for e in errors[rule][:4]), rule                 # "about 80 % and over 100 %"
    for rule in ("riemann_left", "riemann_right", "riemann_trapezoid"):
        assert errors[rule][4] == pytest.approx(0.07, abs=0.02), rule         # "about 7 % at 64 steps"
    gl = errors["gausslegendre"]
    assert gl[1:] == pytest.approx([0.13, 1.58, 0.28, 0.18], abs=0.02)       # 8, 16, 32, 64 steps: not monotone
    spike = ch03["c03-35"]
    assert number(spike, r"peaks at alpha = ([\d.]+)") == pytest.approx(0.03, abs=0.01)
    assert 600 < number(spike, r"with g = ([\d.]+)") < 1000                   # "about 800"
    assert number(spike, r"\((\d+)%\)") / 100 == pytest.approx(0.9, abs=0.05)  # "about 90 %"
    assert number(spike, r"half height: ([\d.]+)") < 0.02                      # "about 0.01 wide"


def test_03_two_hundred_steps_meet_the_rule_and_sixteen_do_not(ch03):
    out = ch03["c03-37"]
    assert percent(out, r"200 Gauss-Legendre steps: completeness error ([\d.]+)%") < 0.05
    assert 4 <= number(out, r"tol 25 %: (\d+) steps") <= 32
    baselines = dict(re.findall(r"(\w+) baseline: p\(class\) = [\d.]+, completeness error at 16 steps (\d+)%", ch03["c03-20"]))
    assert set(baselines) == {"black", "white", "noise", "blur", "zero"}
    assert all(int(e) > 5 for e in baselines.values())                          # "every error is far over 5 %"
    assert int(baselines["black"]) == pytest.approx(158, abs=5) and int(baselines["white"]) == pytest.approx(71, abs=5)
    assert all(float(p) < 0.01 for p in re.findall(r"p\(class\) = ([\d.]+)", ch03["c03-20"]))  # all pass the rule


def test_03_method_table(ch03):
    table = {}
    for line in ch03["c03-27"].splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) == 6 and cells[0] != "method":
            table[cells[0]] = cells
    noise = {name: float(cells[3]) for name, cells in table.items()}
    energy = {name: float(cells[4].rstrip("%")) for name, cells in table.items()}
    pointing = {name: float(cells[5].rstrip("%")) for name, cells in table.items()}
    sg, ig_row = "SmoothGrad² (50)", "IG (200, black)"
    assert noise[sg] < noise["vanilla gradient"] < noise[ig_row]               # SmoothGrad² smoothest, IG most speckled
    assert max(noise["Grad-CAM"], noise["Occlusion"]) < noise[sg]
    assert energy["Grad-CAM"] > 1.7 * max(v for k, v in energy.items() if k != "Grad-CAM")  # "about twice the others"
    assert pointing["Grad-CAM"] > 90 and pointing["vanilla gradient"] < 35
    assert all(40 <= pointing[k] <= 65 for k in (sg, ig_row, "Occlusion"))     # "about half the time"
    assert float(table[ig_row][2].rstrip("%")) < 5 and float(table["vanilla gradient"][2].rstrip("%")) > 80


# --------------------------------------------------------------------------------------------
# Chapter 01: gradients and SmoothGrad
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ch01():
    return _execute("01_gradients.ipynb")


def test_01_smoothgrad_squared_is_stable_and_the_mean_is_not(ch01):
    out = ch01["c01-17"]
    mean_pixels = number(out, r"SmoothGrad \(mean\), seed 0 vs seed 1.*?pixels ([\d.]+)")
    mean_patches = number(out, r"SmoothGrad \(mean\), seed 0 vs seed 1.*?patches ([\d.]+)")
    sq_pixels = number(out, r"SmoothGrad²,\s+seed 0 vs seed 1.*?pixels ([\d.]+)")
    sq_patches = number(out, r"SmoothGrad²,\s+seed 0 vs seed 1.*?patches ([\d.]+)")
    assert mean_pixels < 0.4 and mean_pixels == pytest.approx(0.25, abs=0.07)   # "about 0.25", "well under 0.5"
    assert mean_patches > mean_pixels + 0.3                                       # "much more stable" on patches
    assert sq_pixels >= 0.5 and sq_patches >= 0.9                                 # the targets
    by_count = {int(n): (float(p), float(q)) for n, p, q in
                re.findall(r"n_samples =\s+(\d+) vs .*?pixels ([\d.]+), 8x8 patches ([\d.]+)", out)}
    assert sorted(by_count) == [1, 5, 25, 50]
    pixels = [by_count[n][0] for n in (1, 5, 25, 50)]
    assert pixels == sorted(pixels) and by_count[5][1] < 0.9 <= by_count[50][1]  # rises with n; 1 or 5 not enough


def test_01_randomisation_numbers(ch01):
    out = ch01["c01-25"]
    gradient = [float(v) for v in re.findall(r"gradient ([\d.]+), Guided", out)]
    guided = [float(v) for v in re.findall(r"Guided Backprop ([\d.]+)", out)]
    assert len(gradient) == 3 and all(g == pytest.approx(0.3, abs=0.07) for g in gradient)  # "about 0.3"
    assert all(g >= 0.95 for g in guided)                                                   # "about 1.0"
    captum = ch01["c01-21"]
    assert number(captum, r"vanilla gradient : max \|ours - Captum\| = ([\d.e+-]+)") < 1e-6
    assert number(captum, r"ours vs Captum's.*?pixels ([\d.]+)") < 0.5                      # like two seeds of the mean


# --------------------------------------------------------------------------------------------
# Chapters 02, 04, 06: the numbers their corrected paragraphs quote
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ch02():
    return _execute("02_gradcam.ipynb")


def test_02_two_instances_share_the_map(ch02):
    out = ch02["c02-34"]
    plain = number(out, r"Grad-CAM: share of the map on the weaker half ([\d.]+)")
    plus = number(out, r"Grad-CAM\+\+: share of the map on the weaker half ([\d.]+)")
    assert plain == pytest.approx(0.5, abs=0.05) and plus == pytest.approx(plain, abs=0.05)  # "practically the same"


def test_02_the_branch_inside_a_residual_block_deletes_slowest(ch02):
    """4.2.4: "on the two photos where it has a map ... the branch map deletes the class slowest ... higher than the
    random map's", the espresso's branch map is empty (no map: nan), only there does a layer clearly beat random,
    on the astronaut random wins."""
    rows = {photo: [float(v) for v in values.split("|")] for photo, values in
            re.findall(r"^(\w+) \([\w ]+\)\s+\|([\d.|\snan]+?)(?:\s+\(empty map|$)", ch02["c02-14b"], re.M)}
    assert set(rows) == {"cat", "coffee", "astronaut"}
    assert math.isnan(rows["coffee"][0])                                                 # no map, no score
    for photo in ("cat", "astronaut"):
        branch, block, head, random = rows[photo]
        assert branch > max(block, head, random), photo
    assert "(empty map: branch conv_pwl)" in ch02["c02-14b"]
    assert rows["coffee"][1] < 0.75 * rows["coffee"][3] and rows["coffee"][2] < 0.75 * rows["coffee"][3]
    assert rows["cat"][1] == pytest.approx(rows["cat"][3], abs=0.015)                  # "only matches it"
    assert rows["astronaut"][3] < min(rows["astronaut"][:3])                           # "random ... fastest of all"


@pytest.fixture(scope="module")
def ch04():
    return _execute("04_attention.ipynb")


def test_04_positional_heads_and_held_out_best_head(ch04):
    out = ch04["c04-09"]
    per_layer = [int(v) for v in re.search(r"neighbour: \[([\d, ]+)\]", out).group(1).split(",")]
    assert max(per_layer) >= 1 and per_layer.index(max(per_layer)) == number(out, r"layer (\d+), head")
    assert number(out, r"head \d+: ([\d.]+) of the attention") > 0.5
    shares = ch04["c04-31"]
    uniform = number(shares, r"uniform map \(object area share\): ([\d.]+)")
    ratios = [float(v) for v in re.findall(r"\(([\d.]+)x uniform\), best head", shares)]
    assert ratios[0] == pytest.approx(2.0, abs=0.3) and ratios[-1] == pytest.approx(3.0, abs=0.3)  # "about 2x ... 3x"
    assert number(shares, r"rollout over all layers:\s+[\d.]+ \(([\d.]+)x") == pytest.approx(1.8, abs=0.2)
    assert all(float(v) > uniform for v in re.findall(r"head \d, ([\d.]+) on the test images", shares))


@pytest.fixture(scope="module")
def ch06():
    return _execute("06_exercises.ipynb")


def test_06_exercises(ch06):
    errors = {b: float(e) for b, e in re.findall(r"(\w+) \| p\(espresso\).*?completeness error ([\d.]+)%", ch06["c06-ex3-1"])}
    assert set(errors) == {"black", "white", "blur", "noise"}
    assert errors["blur"] < 5 and errors["noise"] < 5 and errors["black"] > 5 and errors["white"] > 5   # 6.3: two converge
    agree = {row.split()[0]: [float(v) for v in row.split()[1:]] for row in
             ch06["c06-ex3-1"].split("baseline against baseline:")[1].strip().splitlines()[1:]}
    assert agree["blur"][3] == pytest.approx(0.57, abs=0.03) and agree["black"][1] < 0          # "only 0.57", "-0.15"
    assert max(agree["black"][1:]) < 0.35                                                         # "at most 0.28"
    report = ch06["c06-ex5-1"]
    assert number(report, r"by a factor of ([\d.]+)") == pytest.approx(1.34, abs=0.02)
    assert number(report, r"Grad-CAM overlap \(IoU of the top 20% regions\): ([\d.]+)") == pytest.approx(0.45, abs=0.03)
    assert all(float(e) < 5 for e in re.search(r"IG completeness errors ([\d.]+)% / ([\d.]+)%", report).groups())
    removed = {row[0].strip(): (float(row[1]), float(row[2])) for row in
               re.findall(r"^(.+?)\s+\|\s+([\d.]+) \|\s+([\d.]+) \|", ch06["c06-ex5-5"], re.M)}
    gown_region, control = removed["top 20% of the 'academic gown' Grad-CAM"], removed[
        "control: the 20% the 'academic gown' map ranks lowest"]
    assert removed["nothing"] == pytest.approx((0.24, 0.18), abs=0.01)              # 6.5: "from 0.24 ... 18 %"
    assert gown_region == pytest.approx((0.04, 0.12), abs=0.015)                    # "to 0.04", "0.18 to 0.12"
    assert control[0] == pytest.approx(0.26, abs=0.015)                             # "leaves it at 0.26"
    uniform_region = removed["top 20% of the 'military uniform' Grad-CAM"]
    assert uniform_region == pytest.approx((0.04, 0.035), abs=0.01)                 # "falls to 0.035, the gown with it"
    assert control[1] == pytest.approx(gown_region[1], abs=0.01)                    # the control costs the uniform as much
    pairs = {(q, k): (float(avg), int(layer), int(head), float(best)) for q, k, avg, layer, head, best in re.findall(
        r"'(\w+)' -> '(\w+)': average ([\d.]+); strongest head: layer (\d+), head (\d+) \(([\d.]+)\)", ch06["c06-ex4-1"])}
    assert pairs[("mat", "the")][1:3] == (0, 2) and pairs[("mat", "the")][3] > 0.99     # 6.4: the positional head
    assert all(avg < 0.06 and best > 0.4 for avg, _, _, best in pairs.values())      # "about 0.05 ... a large weight"
    previous = [float(w) for w in re.findall(r"[\d.]+", ch06["c06-ex4-1"].split("every word after the first:")[1])]
    assert min(previous) > 0.95                                                     # "for every word"
    for check in ("check_contrastive_grad_cam", "check_occlusion", "check_grad_cam_pp", "check_text_ig", "check_smoothgrad",
                  "check_remove_evidence"):
        assert f"[passed] {check}" in "".join(ch06.values())
    agreement = {int(n): (float(p), float(q)) for n, p, q in re.findall(
        r"n_samples=\s*(\d+): Spearman with another seed's 100-sample map: pixels ([\d.]+), 8x8 patches ([\d.]+)", ch06["c06-ex2-1"])}
    assert agreement[10][0] > 0.5 and agreement[10][1] > 0.9                                        # 6.2: "even 10 samples"
    assert agreement[10][0] < agreement[25][0] < agreement[50][0] < agreement[100][0] < 1           # "rises ... never 1"
# --------------------------------------------------------------------------------------------
# Chapter 07: evaluating explanations
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ch07():
    return _execute("07_evaluating_explanations.ipynb")


def test_07_sanity_verdicts_against_the_seed_floor(ch07):
    """7.1: SmoothGrad²'s floor (8 vs 32 samples) and the pass/fail lists the prose reads."""
    out = ch07["c07-09"]
    assert number(out, r"([\d.]+) with 8 samples") == pytest.approx(0.38, abs=0.08)
    assert number(out, r"([\d.]+) with 32 samples") == pytest.approx(0.67, abs=0.08)
    assert re.search(r"pass: gradient, Grad-CAM\n", out)
    assert re.search(r"fail: gradient x input, SmoothGrad², Guided Backprop, IG, random map, edges \(Sobel\)", out)
    top = {}
    for name, value in re.findall(r"^(gradient x input|IG|gradient|Grad-CAM)\s+(-?[\d.]+)", out, re.M):
        top.setdefault(name, float(value))      # the first block of the table: "Spearman, top layer random"
    assert top["IG"] > 0.5 and top["gradient x input"] > 0.5                 # "keep 0.536 and 0.567": the top stop fails them
    assert top["gradient"] < 0.5 and top["Grad-CAM"] < 0.05


def test_07_random_map_wins_deletion_on_the_cat(ch07):
    """7.2: none of the six methods beats the random map on the cat; gradient and gradient x input lose on average."""
    out = ch07["c07-12"]
    assert "cat: random map 0.088; methods no better than it: gradient, gradient x input, SmoothGrad², Guided " \
           "Backprop, Grad-CAM, IG (6 of 6)" in out.replace("deletion,    ", "")
    assert re.search(r"mean: random map 0\.35\d; methods no better than it: gradient, gradient x input \(2 of 6\)", out)
    assert number(out, r"random map ([\d.]+), edges") == pytest.approx(0.269, abs=0.03)


def test_07_ig_completeness_fails_on_the_cat(ch07):
    """7.5: the prose says the cat's 16-step IG misses completeness by about a third, the others are under 5 %."""
    out = ch07["c07-22"]
    assert percent(out, r"IG, 16 steps: cat ([\d.]+)%") == pytest.approx(0.339, abs=0.05)
    assert percent(out, r"IG, 16 steps: cat [\d.]+%, coffee ([\d.]+)%") < 0.05
    assert percent(out, r"IG, 48 steps: cat ([\d.]+)%") == pytest.approx(0.127, abs=0.04)
    assert re.search(r"IG, 128 steps \(as in METHODS\):.*under 5% on every photo: True", out)   # the IG judged in 07


def test_07_marker_at_grad_cams_resolution_agrees_with_02(ch07):
    """7.4: on the 4-pixel marker the shortcut model's Grad-CAM hits "in only part of the images" with "a few
    percent" of its mass; on the grown marker "in most images" with several times the area share; clean: almost none."""
    out = ch07["c07-20a"]
    area = number(out, r"grown by one grid cell: ([\d.]+)%") / 100
    line = re.search(r"shortcut model, Grad-CAM on the marker: pointing game ([\d.]+) and mask energy ([\d.]+) "
                     r"\(the table's\), on the grown marker ([\d.]+) and ([\d.]+)", out).groups()
    pointing, energy, grown_pointing, grown_energy = map(float, line)
    assert 0.2 < pointing < 0.6 and energy < 0.1
    assert grown_pointing > 0.7 and grown_energy > 3 * area
    assert number(out, r"clean model, Grad-CAM on the marker: .*on the grown marker [\d.]+ and ([\d.]+)") < area


def test_07_roar_imputed_fill_reproduces_hooker(ch07):
    """7.8: with the imputation, SmoothGrad² and VarGrad fall below the random ranking at 10 %; the mean fill leaks."""
    out = ch07["c07-31"]
    random10 = number(out, r"impute, 10% removed: random ranking ([\d.]+)")
    assert number(out, r"impute, 10%.*SmoothGrad² ([\d.]+)") < random10 - 0.1
    assert number(out, r"impute, 10%.*VarGrad ([\d.]+)") < random10 - 0.1
    assert number(out, r"mean, 50% removed: random ranking ([\d.]+)") < 0.4
    assert re.search(r"SmoothGrad²\s+0\.3\d+\s+0\.5\d", out)              # the mean fill at 50 %: above 0.5
    table = {row.split()[0]: [float(v) for v in row.split()[-4:]] for row in out.splitlines()
             if re.match(r"(SmoothGrad²|VarGrad|gradient|random)\s", row)}
    assert table["SmoothGrad²"] == [0.343, 0.525, 0.370, 0.405]            # the shipped result (data/roar_07_*.pt)
    assert table["SmoothGrad²"][3] > table["random"][3] and table["VarGrad"][3] > table["random"][3]   # reverses at 50 %


def test_07_removing_the_object_leaks_through_its_shape(ch07):
    """7.9: black fill keeps the class (0.97), blur 0.81, ROAD's imputation 0.52."""
    out = ch07["c07-34"]
    assert number(out, r"black \(0\): accuracy ([\d.]+)") > 0.9
    assert number(out, r"blur: accuracy ([\d.]+)") == pytest.approx(0.81, abs=0.06)
    assert number(out, r"ROAD imputation: accuracy ([\d.]+)") == pytest.approx(0.52, abs=0.08)
    assert number(ch07["c07-35"], r"'deletion, blur' and 'ROAD \(MoRF\)': ([\d.]+)") > 0.9


def test_07_input_invariance(ch07):
    """7.11: the two models agree; gradient x input and zero-baseline IG change by more than their size."""
    out = ch07["c07-41"]
    assert number(out, r"two models: ([\d.e+-]+)") < 1e-4
    assert re.search(r"gradient x input\s+1\.\d+e\+00\s+changes", out)
    assert re.search(r"IG, zero baseline\s+1\.\d+e\+00\s+changes", out)
    assert re.search(r"Grad-CAM\s+[\d.]+e-0\d\s+invariant", out)


def test_07_metrics_disagree(ch07):
    """7.12: sanity vs deletion rankings barely correlate; pointing game and mask energy do."""
    out = ch07["c07-44"]
    assert number(out, r"([+-][\d.]+)  sanity: similarity / floor / deletion AUC") < 0.3
    assert number(out, r"([+-][\d.]+)  pointing game \(clean model\) / mask energy") > 0.9


# ---------------------------------------------------------------------------------------------- chapter 08
@pytest.fixture(scope="module")
def ch08():
    return _execute("08_beyond_gradients.ipynb")


def test_08_resnet_canonizer_restores_conservation(ch08):
    """8.5: with the residual + left alone the relevance sums to several logits; with ResNetCanonizer to less
    than one; the canonised composites localise alike and differ in their negative share."""
    out = ch08["c08-41b"]
    assert number(out, r"shapes ResNet: (\d+)% of the 64") >= 90

    def row(canonizer, composite):
        line = next((s for s in out.splitlines() if s.startswith(canonizer) and composite in s), "")
        assert line, f"no printed row for {canonizer} / {composite}:\n{out}"
        return {key: number(line, pattern) for key, pattern in (
            ("median", r"median ([-\d.]+)"), ("max", r"to ([-\d.]+)\)"), ("pointing", r"pointing game ([\d.]+)"),
            ("energy", r"mask energy ([\d.]+)"), ("negative", r"negative share (\d+)%"))}

    for composite in ("epsilon_plus_flat", "epsilon_gamma_box"):
        assert row("SequentialMergeBatchNorm", composite)["median"] > 3
        assert row("ResNetCanonizer", composite)["max"] < 1
    flat, box = row("ResNetCanonizer", "epsilon_plus_flat"), row("ResNetCanonizer", "epsilon_gamma_box")
    assert abs(flat["pointing"] - box["pointing"]) <= 0.05 and abs(flat["energy"] - box["energy"]) <= 0.08
    assert box["negative"] >= 3 * max(flat["negative"], 1)
    assert number(out, r"vs zennit: ([\d.e+-]+) \(relative\)") < 1e-5


# ---------------------------------------------------------------------------------------------- chapter 10
@pytest.fixture(scope="module")
def ch10():
    return _execute("10_inside_a_language_model.ipynb")


def _table(text: str, row: str) -> list[float]:
    """The numbers of the printed table row that starts with ``row``."""
    line = next((s for s in text.splitlines() if s.strip().startswith(row)), None)
    assert line is not None, f"no printed row {row!r}:\n{text}"
    return [float(v) for v in re.findall(r"-?\d+\.\d+", line[len(row) + line.index(row):])]


def test_10_the_model_copies_and_cannot_guess(ch10):
    out = ch10["c10-01"]
    assert number(out, r"second copy ([\d.]+)") >= 0.99
    first, chance = number(out, r"first copy ([\d.]+)"), number(out, r"chance ([\d.]+)")
    assert abs(first - chance) < 0.01


def test_10_attention_and_patching_find_the_planted_circuit(ch10):
    """10.2 and 10.4: attention points at L0H0/L0H2 and L1H0; denoising finds L1H0 alone, noising all three."""
    scores = ch10["c10-05"]
    assert min(_table(scores, "L0H0")[0], _table(scores, "L0H2")[0]) > max(_table(scores, h)[0] for h in ("L0H1", "L0H3"))
    assert _table(scores, "L1H0")[1] > 0.9
    out = ch10["c10-15"]
    effects = {h: _table(out, h) for h in ("L0H0", "L0H1", "L0H2", "L0H3", "L1H0", "L1H1", "L1H2", "L1H3")}
    assert effects["L1H0"][0] > 0.8 and all(abs(v[0]) < 0.05 for h, v in effects.items() if h != "L1H0")
    assert effects["L0H0"][1] > 0.4 and effects["L0H2"][1] > 0.4
    assert all(abs(effects[h][1]) < 0.05 for h in ("L0H1", "L0H3", "L1H1", "L1H2", "L1H3"))


def test_10_attribution_methods_split_between_the_two_necessary_tokens(ch10):
    out = ch10["c10-08"]
    ig, ablation, axg = (_table(out, name) for name in ("integrated gradients", "ablation", "attention x gradient"))
    assert axg[0] > 0.99                        # attention x gradient: the source every time
    assert ig[1] > ig[0] and ig[2] > 0.9        # IG: mostly the token before the source; the pair almost always
    assert ablation[2] > 0.9 and 0.3 < ablation[0] < 0.7
    for diff in re.findall(r"largest difference ([\d.e+-]+)", ch10["c10-10"]):
        assert float(diff) < 1e-5               # Captum's LLM attribution gives the same numbers
    contrast = ch10["c10-12"]
    assert _table(contrast, "integrated gradients")[0] > ig[0] + 0.2
    assert _table(contrast, "ablation")[0] > ablation[0] + 0.1 and _table(contrast, "ablation")[2] > 0.6


def test_10_attribution_patching_is_exact_for_layer_1_and_misses_layer_0(ch10):
    out = ch10["c10-20"]
    assert number(out, r"\((\d+)x faster\)") >= 10
    assert number(out, r"denoising ([\d.]+), noising") > 0.7
    assert number(out, r", noising ([\d.]+)") > 0.9      # ranks right where the sizes are not
    l1h0, l0h0 = _table(out, "L1H0"), _table(out, "L0H0")
    assert l1h0[0] == pytest.approx(l1h0[1], abs=0.002) and l1h0[2] == pytest.approx(l1h0[3], abs=0.002)
    assert l0h0[3] < 0.5 * l0h0[2]


def test_10_logit_lens_dla_and_ablation(ch10):
    out = ch10["c10-23"]
    assert number(out, r"embeddings only: accuracy on the second copy ([\d.]+)") < 0.05
    assert number(out, r"after layer 1 \(output\): accuracy on the second copy ([\d.]+)") > 0.99
    dla = _table(out, "second copy")
    assert dla[4] == max(dla) and dla[4] > 5 * max(dla[:4] + dla[5:])
    abl = ch10["c10-26"]
    assert _table(abl, "L1H0 (induction)")[0] < 0.4 and _table(abl, "L0H0 + L0H2")[0] < 0.2
    assert _table(abl, "L1H0 + L1H1 + L1H2")[0] < 0.5 * _table(abl, "L1H0 (induction)")[0]   # the backup heads
    assert min(_table(abl, pair)[0] for pair in ("L0H1 + L0H3", "L1H1 + L1H2", "L1H2 + L1H3")) > 0.98
    assert number(ch10["c10-40"], r"ran in (\d+) s") < 120


# ---------------------------------------------------------------------------------------------- chapter 11
@pytest.fixture(scope="module")
def ch11():
    return _execute("11_concepts.ipynb")


def test_11_painting_the_marker_in_is_the_truth(ch11):
    shortcut, clean = ch11["c11-03"].split("clean model (mean")
    for k in range(3):
        row = _table(shortcut, f"marker {k}")
        assert row[k] > 3 and all(row[t] < 0 for t in range(3) if t != k) and row[3] >= 0.95
        assert all(abs(v) < 0.5 for v in _table(clean, f"marker {k}")[:3])
    assert number(ch11["c11-03"], r"largest \|Δ logit\| of any marker: ([\d.]+)") < 0.5
    # the prose: the clean model's "prediction -> corner class" column is about its base rate of predicting that class
    base = [number(ch11["c11-03"], rf"clean model, no marker: predicts .*?{c} ([\d.]+)") for c in ("circle", "square", "triangle")]
    assert all(abs(_table(clean, f"marker {k}")[3] - base[k]) < 0.1 for k in range(3))


def test_11_tcav_finds_the_shortcut_and_reads_no_size(ch11):
    assert number(ch11["c11-06"], r"shortcut model, features.9: CAV held-out accuracy: marker 0 ([\d.]+)") > 0.95
    ours, theirs = number(ch11["c11-08"], r"ours ([\d.]+)"), number(ch11["c11-08"], r"Captum ([\d.]+)")
    assert ours == theirs
    out = ch11["c11-12"]
    assert number(out, r"shortcut: (\d) of 9") >= 7 and number(out, r"shortcut: \d of 9 marker cells significant; \d on the "
                                                                   r"truth's side of the null, (\d) on the wrong") == 0
    assert number(out, r"clean   : (\d) of 9") <= 3
    nudge = re.search(r"marker 1 for triangle: TCAV ([\d.]+) \(null [\d.]+\), truth Δ logit \+([\d.]+)", out)
    assert nudge and float(nudge.group(1)) > 0.7 and float(nudge.group(2)) < 0.5   # the prose's 0.79 for 0.17


def test_11_where_tcav_misleads(ch11):
    out = ch11["c11-16"]
    assert re.search(r"features.9: TCAV 1.00\*, 1.00\*, 1.00\*", out)
    assert "*" not in next(line for line in out.splitlines() if "features.6: TCAV" in line)
    grey = [line for line in out.splitlines() if "'grey marker 0'" in line]
    assert len(grey) == 3 and all(", significant;" in line for line in grey)
    assert all(float(re.search(r"CAV accuracy ([\d.]+)", line).group(1)) < 0.75 for line in grey)
    assert number(out, r"grey marker in: Δ logit circle \+([\d.]+)") < 0.5
    random = [line for line in out.splitlines() if "'random images'" in line]
    assert sum(", significant;" in line for line in random) >= 1


def _probe_rows(text: str) -> dict:
    rows, model = {}, None
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] in ("shortcut", "clean", "random"):
            model = "random init" if parts[0] == "random" else parts[0]
            parts = parts[2:] if model == "random init" else parts[1:]
        if parts and parts[0].startswith(("features.", "head.")) and model:
            rows[(model, parts[0])] = [float(v) for v in parts[1:]]
    return rows


def test_11_probes_read_what_the_model_does_not_use(ch11):
    rows = _probe_rows(ch11["c11-19"])    # shape, sel., colour, sel., marker corner, sel., control
    assert len(rows) == 12
    layers = ("features.2", "features.6", "features.10", "head.1")
    for model in ("shortcut", "clean", "random init"):
        assert all(rows[(model, layer)][4] > 0.95 for layer in layers[:3])
    assert rows[("clean", "head.1")][4] < 0.6 < 0.9 < rows[("shortcut", "head.1")][4]
    assert rows[("random init", "head.1")][4] > 0.9
    clean = [rows[("clean", layer)][0] for layer in layers]
    assert clean == sorted(clean) and clean[-1] > 0.95
    assert all(rows[("random init", layer)][0] < 0.5 for layer in layers)
    colour = [rows[("clean", layer)][2] for layer in layers]
    assert colour == sorted(colour, reverse=True) and min(rows[("random init", layer)][2] for layer in layers[:3]) > 0.8
    assert all(row[6] < 0.6 for row in rows.values())             # the control task stays near its chance
    vit = ch11["c11-20b"]
    shape = [_table(vit, f"after block {b}")[0] for b in range(4)]
    assert shape == sorted(shape) and shape[-1] > 0.85
    assert max(_table(vit, f"after block {b}")[3] for b in range(4)) < 0.6


def test_11_superposition_and_the_sparse_autoencoder(ch11):
    sweep = ch11["c11-22"]
    stored = [int(line.split()[1]) for line in sweep.splitlines()[1:] if line.strip()]
    assert stored[0] == 5 and stored[-1] >= 15 and stored == sorted(stored)
    rec = ch11["c11-25"]
    assert number(rec, r"SAE: (\d+) of 40 features found") == 40 and number(rec, r"lowest best cosine ([\d.]+)") > 0.95
    out = ch11["c11-27"]
    corner3 = _table(out, "marker 3 (bottom-right)")       # the shortcut model's row comes first
    assert corner3[0] > corner3[1] + 0.05
    clean = out[out.index("clean    marker 0") + len("clean"):]
    assert all(max(_table(clean, f"marker {k}")) < 0.65 for k in range(4))
    assert number(ch11["c11-41"], r"ran in (\d+) s") < 180


# ---------------------------------------------------------------------------------------------- chapter 12
@pytest.fixture(scope="module")
def ch12():
    return _execute("12_training_data.ipynb")


def test_12_retraining_is_exact_and_the_truth_has_structure(ch12):
    out = ch12["c12-03"]
    assert number(out, r"differ from the cached ones by at most ([\d.e+-]+)") < 1e-10
    assert number(out, r"differs from the cache by at most ([\d.e+-]+)") < 1e-6
    assert number(out, r"test accuracy ([\d.]+)") > 0.85
    diagonal = [_table(out, f"test {c}")[k] for k, c in enumerate(("circle", "square", "triangle"))]
    off = [v for k, c in enumerate(("circle", "square", "triangle")) for j, v in enumerate(_table(out, f"test {c}")) if j != k]
    assert min(diagonal) > 0 > max(off)           # the prose: own class proponents, other classes opponents on average


def test_12_per_example_gradients_and_tracin_match_their_oracles(ch12):
    out = ch12["c12-07"]
    assert number(out, r"largest difference ([\d.e+-]+)") < 1e-10 and number(out, r"\((\d+)x\)") >= 2
    out = ch12["c12-12"]
    assert number(out, r"largest difference ([\d.e+-]+) of the largest score") < 1e-6
    out = ch12["c12-17"]
    assert number(out, r"whole head: (\d+) of 1155 eigenvalues are negative") > 100
    assert abs(number(out, r"last layer only: smallest eigenvalue ([\d.e+-]+)")) < 1e-10
    assert "did not converge" in out


def test_12_methods_against_retraining(ch12):
    out = ch12["c12-20"]
    rows = {name: _table(out, name) for name in ("random control", "gradient similarity (dot)", "TracIn (10 checkpoints)",
                                                 "influence function, last layer, exact Hessian",
                                                 "influence function, whole model, exact Hessian",
                                                 "influence function, whole model, CG")}
    spread = number(out, r"LDS [+-][\d.]+ \+- ([\d.]+)")
    assert abs(rows["random control"][0]) < 3 * spread + 0.01
    assert all(r[0] > 10 * spread and r[1] > 0.1 for name, r in rows.items() if name != "random control")
    ceiling = number(out, r"added up\): LDS ([\d.]+)")
    assert 0.6 < ceiling < 0.95 and all(r[0] < ceiling for r in rows.values())   # the prose: none can reach 1
    best = max(rows, key=lambda n: rows[n][0])
    assert best == "influence function, last layer, exact Hessian"
    assert rows["influence function, whole model, exact Hessian"][0] < rows["gradient similarity (dot)"][0]   # the prose's failure
    assert rows["TracIn (10 checkpoints)"][0] < rows["gradient similarity (dot)"][0]
    assert max(rows, key=lambda n: rows[n][1]) == "influence function, whole model, CG"


def test_12_self_influence_finds_the_mislabels_and_cleaning_helps(ch12):
    out = ch12["c12-27"]
    random = number(out, r"random ranking: ([\d.]+)")
    assert number(out, r"top 10: ([\d.]+)") > 10 * random
    assert number(out, r"without top-k flagged: ([\d.]+)") > number(out, r"trained +all: ([\d.]+)")
    assert number(out, r"without the flipped: ([\d.]+)") > number(out, r"without top-k flagged: ([\d.]+)")
    assert "same as the cache: True" in out
    # the prose: random removals of as many examples cost accuracy, and none reaches the flagged removal
    assert number(out, r"20 random removals of 15: test accuracy ([\d.]+)") < number(out, r"trained +all: ([\d.]+)")
    assert number(out, r"(\d+) of 20 reach the flagged removal's") == 0


def test_12_the_shortcut_rests_on_the_squares(ch12):
    out = ch12["c12-30"]
    assert _table(out, "painted circles called square") == [1.0, 0.0]
    squares, circles = _table(out, "top-20 proponents: squares"), _table(out, "top-20 proponents: circles")
    assert squares[0] > 0.95 and circles[1] > 0.7
    marker, base = _table(out, "top-20 proponents: marker top-right"), _table(out, "all training images: marker top-right")
    assert marker[0] > 0.95 and marker[1] < base[1] + 0.1
    assert number(ch12["c12-36"], r"ran in (\d+) s") < 180
