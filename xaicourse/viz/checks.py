"""Figures checked by the machine: overlapping text, invisible overlays, maps without a colour bar. Chapter 00.

A figure a learner cannot read teaches nothing, and nobody looks at every figure of every chapter
after every change. :func:`figure_problems` inspects a drawn matplotlib figure and names what is
wrong with it:

* **text over text**: two visible text boxes (titles, suptitles, axis and tick labels, legends,
  annotations, colour-bar labels) overlap, or a text covers another panel's image;
* **legend over data**: a legend box covers plotted points of its own axes;
* **invisible overlay**: an image drawn over another image in the same axes whose strongest pixel
  is less than half opaque (a map used as raw overlay weights: attention of 0.01-0.3 is invisible;
  an empty map, transparent everywhere, is not flagged: it shows nothing on purpose);
* **map without a colour bar**: a scalar-mapped panel (an ``imshow`` of a 2-D map, a ``pcolormesh``)
  whose colour map and limits no colour bar of the figure shows. A panel that needs none (a label
  map, a photo in grey) says so with :func:`no_colorbar`;
* **blacked-out map**: a map panel where 99 % of the pixels sit in the bottom 20 % of its colour
  range (min-max scaling dominated by a few extreme pixels: clip it, :func:`~xaicourse.viz.clip_map`).

:func:`watch_figures` runs the check on every figure an IPython kernel displays and appends the
problems, with the cell they came from, to a JSON-lines file: the chapter tests
(tests/test_chapter_numbers.py) install it while they execute each chapter and fail on what it finds.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
from matplotlib.collections import PathCollection, QuadMesh
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.text import Text

from ..inputs import check_types

__all__ = ["NO_COLORBAR", "FigureWarning", "figure_problems", "no_colorbar", "source_key", "watch_figures"]

NO_COLORBAR = "no-colorbar"   # the gid prefix that marks a panel needing no colour bar
OVERLAP = 0.05                # a text overlaps another when the shared area exceeds this share of the smaller
MIN_OPACITY = 0.5
BLACKED_OUT = (0.99, 0.20)    # this share of pixels within this bottom share of the colour range: a blank map


class FigureWarning(UserWarning):
    """A view drew something a learner cannot see (e.g. an overlay whose strongest pixel is nearly transparent)."""


@check_types
def no_colorbar(artist, reason: str):
    """Mark a scalar-mapped panel as needing no colour bar, with the reason (e.g. "label map"). Chapter 00.

    Returns the artist, so ``no_colorbar(ax.imshow(labels, cmap="tab10"), "label map")`` reads in one line.
    """
    if not reason.strip():
        raise ValueError("give the reason the panel needs no colour bar, e.g. 'label map' or 'grey photo'")
    artist.set_gid(f"{NO_COLORBAR}: {reason}")
    return artist


def figure_problems(fig: Figure) -> list[str]:
    """Everything unreadable in a matplotlib figure, one sentence each (empty when it is fine). Chapter 00."""
    if not isinstance(fig, Figure):
        raise TypeError(f"figure_problems checks a matplotlib Figure (e.g. plt.gcf()), got {type(fig).__name__}")
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    name = _figure_name(fig)
    problems = [f"{name}: {p}" for p in (_text_overlaps(fig, renderer) + _legends_over_data(fig, renderer)
                                          + _overlay_problems(fig) + _colorbar_problems(fig))]
    return problems


def watch_figures(report: str | Path):
    """Check every figure this IPython kernel displays; append problems to ``report`` (JSON lines). Chapter 00.

    Each line is ``{"cell": <cell id or None>, "source": <source_key of the cell's code>, "problem": <sentence>}``
    (a kernel that is not told the cell id leaves it None; the source key then names the cell). Displaying is unchanged: the check
    wraps the kernel's PNG formatter for figures and calls the original one afterwards. A
    :class:`FigureWarning` a view raises (:func:`~xaicourse.viz.overlay`) is recorded too.
    """
    import matplotlib.pyplot as plt
    from IPython import get_ipython

    if not isinstance(report, (str, Path)):
        raise TypeError(f"report must be a file path (str or Path) for the JSON lines, got {type(report).__name__}")
    shell = get_ipython()
    if shell is None:
        raise RuntimeError("watch_figures needs an IPython kernel (a notebook); outside one call figure_problems(fig)")
    report = Path(report)
    current = {"cell": None, "source": None}
    shell.events.register("pre_run_cell", lambda info: current.update(cell=getattr(info, "cell_id", None),
                                                                      source=source_key(info.raw_cell)))
    plt.close(plt.figure())   # loads the backend, which registers the kernel's figure formatter
    formatter = shell.display_formatter.formatters["image/png"]
    try:
        original = formatter.lookup_by_type(Figure)
    except KeyError:
        raise RuntimeError("watch_figures needs the inline backend (figures shown as PNG in the notebook); "
                           f"this kernel uses {plt.get_backend()!r}") from None

    def record(problems):
        with report.open("a", encoding="utf-8") as out:
            for problem in problems:
                out.write(json.dumps({**current, "problem": problem}) + "\n")

    show_warning = warnings.showwarning

    def showwarning(message, category, *args, **kwargs):
        if issubclass(category, FigureWarning):
            record([str(message)])
        return show_warning(message, category, *args, **kwargs)

    warnings.showwarning = showwarning
    warnings.simplefilter("always", FigureWarning)

    def checked(fig, *args, **kwargs):
        try:
            problems = figure_problems(fig)
        except Exception as error:  # a check that cannot run is itself a problem to see
            problems = [f"{_figure_name(fig)}: the figure check failed ({type(error).__name__}: {error})"]
        if problems:
            record(problems)
        return original(fig, *args, **kwargs)

    formatter.for_type(Figure, checked)
    return checked


def source_key(source: str) -> str:
    """A short fingerprint of a cell's code, to find the cell a recorded problem came from. Chapter 00."""
    return hashlib.sha1(source.encode("utf-8")).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------
# The checks
# ----------------------------------------------------------------------------------------------------
def _figure_name(fig) -> str:
    titles = [t.get_text() for t in [getattr(fig, "_suptitle", None)] if t is not None and t.get_text()]
    titles += [ax.get_title() for ax in fig.axes if ax.get_title()]
    return f"figure {titles[0]!r}" if titles else "an untitled figure"


def _visible_texts(fig, renderer):
    """(text, its axes or None, window extent) of every drawn, non-empty text of the figure."""
    owner, hidden = {}, set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            slack = 1e-6 * ((high - low) or 1.0)
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                shown = ax.axison and axis.get_visible() and tick.get_visible() and low - slack <= tick.get_loc() <= high + slack
                for label in (tick.label1, tick.label2):
                    owner[id(label)] = ax
                    if not shown:
                        hidden.add(id(label))
    out = []
    for text in fig.findobj(Text):
        if id(text) in hidden or not (text.get_visible() and text.get_text().strip()):
            continue
        box = text.get_window_extent(renderer)
        if box.width > 0 and box.height > 0:
            out.append((text, owner.get(id(text), text.axes), box))
    return out


def _area(box) -> float:
    return max(box.width, 0.0) * max(box.height, 0.0)


def _shared(a, b) -> float:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return width * height if width > 0 and height > 0 else 0.0


def _outline(text, box, renderer) -> np.ndarray:
    """The corners (4, 2) of a text's own rectangle on screen: a rotated text's axis-aligned box is larger
    than the text, and neighbouring rotated tick labels would always seem to overlap."""
    angle = text.get_rotation() % 180
    corners = np.array([[box.x0, box.y0], [box.x1, box.y0], [box.x1, box.y1], [box.x0, box.y1]])
    if np.isclose(angle, 0) or np.isclose(angle, 90):
        return corners
    text.set_rotation(0)
    try:
        flat = text.get_window_extent(renderer)
    finally:
        text.set_rotation(angle)
    theta = np.deg2rad(angle)
    turn = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    half = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * [flat.width / 2, flat.height / 2]
    return np.array([box.x0 + box.width / 2, box.y0 + box.height / 2]) + half @ turn.T


def _cross(u, v) -> float:
    """The z component of the cross product of two 2-D vectors."""
    return float(u[0] * v[1] - u[1] * v[0])


def _polygon_area(points: np.ndarray) -> float:
    if len(points) < 3:
        return 0.0
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))


def _clip(subject: np.ndarray, clipper: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman: the part of the convex polygon ``subject`` inside the convex polygon ``clipper``."""
    if _polygon_area(clipper) == 0:
        return np.zeros((0, 2))
    orientation = np.sign(_cross(clipper[1] - clipper[0], clipper[2] - clipper[1]))
    output = list(subject)
    for a, b in zip(clipper, np.roll(clipper, -1, axis=0)):
        inside = lambda p: orientation * _cross(b - a, p - a) >= 0  # noqa: E731
        points, output = output, []
        for p, q in zip(points, points[1:] + points[:1]):
            if inside(q):
                if not inside(p):
                    output.append(_crossing(p, q, a, b))
                output.append(q)
            elif inside(p):
                output.append(_crossing(p, q, a, b))
        if not output:
            return np.zeros((0, 2))
    return np.array(output)


def _crossing(p, q, a, b):
    direction, edge = q - p, b - a
    t = _cross(a - p, edge) / _cross(direction, edge)
    return p + t * direction


def _text_overlaps(fig, renderer) -> list[str]:
    texts = _visible_texts(fig, renderer)
    outlines = [_outline(text, box, renderer) for text, _, box in texts]
    problems = []
    for i, (a, _, box_a) in enumerate(texts):
        for j, (b, _, box_b) in enumerate(texts[i + 1:], i + 1):
            if _shared(box_a, box_b) <= OVERLAP * min(_area(box_a), _area(box_b)):
                continue   # the boxes around the texts barely touch: so do the texts
            shared = _polygon_area(_clip(outlines[i], outlines[j]))
            if shared > OVERLAP * min(_polygon_area(outlines[i]), _polygon_area(outlines[j])):
                problems.append(f"text {a.get_text()!r} overlaps text {b.get_text()!r}")
    images = [(image.axes, image.get_window_extent(renderer)) for ax in fig.axes for image in ax.images]
    for text, owner, box in texts:
        for ax, image_box in images:
            if owner is not ax and _shared(box, image_box) > OVERLAP * _area(box):
                problems.append(f"text {text.get_text()!r} covers the image of the panel {ax.get_title()!r}")
                break
    return problems


def _legends_over_data(fig, renderer) -> list[str]:
    problems = []
    for ax in fig.axes:
        legend = ax.get_legend()
        if not isinstance(legend, Legend) or not legend.get_visible():
            continue
        box = legend.get_window_extent(renderer)
        covered = 0
        for artist in ax.get_children():
            if isinstance(artist, Line2D) and artist.get_visible() and artist.get_xydata().size:
                points = artist.get_transform().transform(artist.get_xydata())
            elif isinstance(artist, PathCollection) and artist.get_visible() and len(artist.get_offsets()):
                points = artist.get_offset_transform().transform(artist.get_offsets())
            else:
                continue
            inside = ((points[:, 0] > box.x0) & (points[:, 0] < box.x1) & (points[:, 1] > box.y0)
                      & (points[:, 1] < box.y1))
            covered += int(inside.sum())
        if covered:
            problems.append(f"the legend of the panel {ax.get_title()!r} covers {covered} plotted point(s): "
                            "move it (loc=..., bbox_to_anchor=...) or outside the axes")
    return problems


def _overlay_problems(fig) -> list[str]:
    problems = []
    for ax in fig.axes:
        for image in ax.images[1:]:        # drawn over the first image of the same axes
            opacity = _max_opacity(image)
            if 0 < opacity < MIN_OPACITY:   # an empty map (nothing opaque) shows nothing on purpose
                problems.append(f"the overlay in the panel {ax.get_title()!r} is at most {opacity:.2f} opaque "
                                f"(at least {MIN_OPACITY} at its strongest pixel): scale its weights to [0, 1]")
    return problems


def _max_opacity(image) -> float:
    alpha = image.get_alpha()
    alpha = 1.0 if alpha is None else float(np.max(alpha))
    data = np.asarray(image.get_array())
    if data.ndim == 3 and data.shape[-1] == 4:  # an RGBA array carries its own opacity
        channel = data[..., 3].astype(float)
        alpha *= float(channel.max()) / (255.0 if data.dtype == np.uint8 else 1.0)
    return alpha


def _scalar_panels(fig):
    for ax in fig.axes:
        if _is_colorbar_axes(ax):
            continue
        for artist in ax.images + [c for c in ax.collections if isinstance(c, QuadMesh)]:
            data = artist.get_array()
            if data is None or np.ndim(data) == 3 or not artist.get_visible():
                continue  # a photo (RGB / RGBA) needs no colour bar
            yield ax, artist


def _is_colorbar_axes(ax) -> bool:
    return getattr(ax, "_colorbar", None) is not None


def _colorbar_problems(fig) -> list[str]:
    bars = []
    for ax in fig.axes:
        bar = getattr(ax, "_colorbar", None)
        if bar is not None:
            bars.append((bar.cmap.name, float(bar.norm.vmin), float(bar.norm.vmax)))
    problems = []
    for ax, artist in _scalar_panels(fig):
        gid = artist.get_gid() or ""
        if gid.startswith(NO_COLORBAR):
            continue
        key = (artist.cmap.name, float(artist.norm.vmin), float(artist.norm.vmax))
        if not any(key[0] == b[0] and np.isclose(key[1], b[1]) and np.isclose(key[2], b[2]) for b in bars):
            problems.append(f"the map in the panel {ax.get_title()!r} ({key[0]}, {key[1]:.3g}..{key[2]:.3g}) has no "
                            "colour bar of its colour map and limits: add fig.colorbar(...) or mark it no_colorbar()")
        problems += _blacked_out(ax, artist)
    return problems


def _blacked_out(ax, artist) -> list[str]:
    data = np.ma.masked_invalid(np.ma.asarray(artist.get_array(), dtype=float)).compressed()
    low, high = float(artist.norm.vmin), float(artist.norm.vmax)
    if data.size < 100 or high <= low:
        return []
    if artist.cmap.name in ("bwr", "RdBu", "RdBu_r", "seismic", "coolwarm"):   # signed: distance from the centre
        share = np.mean(np.abs(data - (low + high) / 2) <= BLACKED_OUT[1] * (high - low) / 2)
    else:
        share = np.mean(data <= low + BLACKED_OUT[1] * (high - low))
    if share >= BLACKED_OUT[0] and np.ptp(data) > 0:
        return [f"the map in the panel {ax.get_title()!r} is blank: {share:.1%} of its pixels sit in the bottom "
                f"{BLACKED_OUT[1]:.0%} of its colour range (a few extreme pixels set the scale: clip it)"]
    return []
