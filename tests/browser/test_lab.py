"""The interactive notebooks in a real JupyterLab: Run All, no errors, widgets render, a slider changes the view."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The learners' copies with something to see in a browser (widgets, bertviz), and the first one a learner
# opens. Every notebook runs anyway: solutions/ in tests/test_chapter_numbers.py, notebooks/ under nbval.
INTERACTIVE = re.compile(r"explorer\(|bertviz_offline|ipywidgets")
NOTEBOOKS = [p.relative_to(ROOT).as_posix() for p in sorted((ROOT / "notebooks").glob("*.ipynb"))
             if p.name.startswith("00_") or INTERACTIVE.search(p.read_text(encoding="utf-8"))]
RUN_TIMEOUT_MS = 8 * 60 * 1000

START_RUN_ALL = """async () => {
  const panel = window.jupyterapp.shell.currentWidget;
  await panel.sessionContext.ready;
  window.__runDone = false;
  window.jupyterapp.commands.execute('notebook:run-all-cells').then(() => { window.__runDone = true; });
}"""

NOTEBOOK_IDLE = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  return window.__runDone === true && panel.sessionContext.session.kernel.status === 'idle';
}"""

CELL_REPORT = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const report = [];
  for (const cell of panel.content.model.cells) {
    if (cell.type !== 'code') continue;
    const outputs = cell.outputs.toJSON();
    report.push({
      id: cell.id,
      tags: cell.getMetadata('tags') || [],
      executed: cell.executionCount,
      errors: outputs.filter(o => o.output_type === 'error').map(o => `${o.ename}: ${o.evalue}`),
      widgets: outputs.filter(o => o.data && o.data['application/vnd.jupyter.widget-view+json']).length,
    });
  }
  return report;
}"""

# What a slider's cell shows, minus the slider readouts themselves.
VIEW_OF_FIRST_SLIDER_CELL = """() => {
  const handle = document.querySelector('.jp-Notebook .widget-slider .noUi-handle, .jp-Notebook .widget-slider input[type=range]');
  if (!handle) return null;
  const cell = handle.closest('.jp-Cell');
  const parts = [];
  cell.querySelectorAll('.jp-OutputArea-output img, .jp-OutputArea-output svg, .jp-OutputArea-output pre, .jp-OutputArea-output table')
      .forEach(el => parts.push(el.tagName === 'IMG' ? el.src : el.outerHTML));
  return parts.join('|');
}"""


# Number of drawn SVG elements inside each bertviz view (its container's id starts with "bertviz").
BERTVIZ_SVG_ELEMENTS = """() => Array.from(document.querySelectorAll('.jp-OutputArea-output [id^="bertviz"]'))
  .map(view => view.querySelectorAll('svg *').length)"""


def open_notebook(page, lab, path):
    base, token = lab
    page.goto(f"{base}/lab/tree/{path}?token={token}&reset", wait_until="domcontentloaded")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget && "
                           "window.jupyterapp.shell.currentWidget.sessionContext", timeout=120_000)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)


def run_all(page):
    page.evaluate(START_RUN_ALL)
    page.wait_for_function(NOTEBOOK_IDLE, timeout=RUN_TIMEOUT_MS, polling=1000)


@pytest.mark.parametrize("path", NOTEBOOKS)
def test_notebook_runs_in_jupyterlab(page, lab, screenshots, path):
    open_notebook(page, lab, path)
    try:
        run_and_inspect(page, screenshots, path)
    finally:  # free the kernel's CPU and memory for the next notebook
        page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")


def run_and_inspect(page, screenshots, path):
    run_all(page)
    page.screenshot(path=str(screenshots / (path.replace("/", "__") + ".png")), full_page=True)

    report = page.evaluate(CELL_REPORT)
    assert all(cell["executed"] for cell in report), f"cells not executed: {[c['id'] for c in report if not c['executed']]}"
    stub_ok = path.startswith("notebooks/")
    errors = {c["id"]: c["errors"] for c in report if c["errors"] and not (stub_ok and "raises-exception" in c["tags"])}
    assert not errors, f"cells show errors in {path}: {errors}"

    assert page.locator("text=Error displaying widget").count() == 0
    n_widget_outputs = sum(c["widgets"] for c in report)
    if n_widget_outputs:
        rendered = page.locator(".jp-OutputArea-output .jupyter-widgets, .jp-OutputArea-output .widget-box").count()
        assert rendered > 0, f"{n_widget_outputs} widget outputs but none rendered"

    if "attention" in path:  # the bertviz head and model views draw offline
        page.wait_for_function(f"() => ({BERTVIZ_SVG_ELEMENTS})().filter(n => n > 0).length >= 2", timeout=60_000)

    before = page.evaluate(VIEW_OF_FIRST_SLIDER_CELL)
    if before is not None:
        handle = page.locator(".jp-Notebook .widget-slider .noUi-handle").first
        handle.scroll_into_view_if_needed()
        handle.focus()
        now, top = handle.get_attribute("aria-valuenow"), handle.get_attribute("aria-valuemax")
        at_max = top is not None and now == top
        page.keyboard.press("ArrowLeft" if at_max else "ArrowRight")  # a slider may start at its maximum
        page.wait_for_function(f"(before) => ({VIEW_OF_FIRST_SLIDER_CELL})() !== before", arg=before, timeout=120_000)
        page.screenshot(path=str(screenshots / (path.replace("/", "__") + "-slider.png")), full_page=True)


def test_lab_serves_the_course(lab):
    import json
    import urllib.request

    base, token = lab
    assert urllib.request.urlopen(f"{base}/lab?token={token}", timeout=30).status == 200
    listing = json.load(urllib.request.urlopen(f"{base}/api/contents/notebooks?token={token}", timeout=30))
    names = {item["name"] for item in listing["content"]}
    assert {p.split("/")[1] for p in NOTEBOOKS if p.startswith("notebooks/")} <= names
