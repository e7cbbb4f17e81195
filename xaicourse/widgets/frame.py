"""The frame the explorers share: a figure redrawn by blitting, and the three-panel photo explorer.

Compute functions live in the package's method modules and are unit-tested; a widget only wires
sliders and dropdowns to them, caches what is expensive, and renders an initial view when run
headless (an ``ipywidgets.Image`` inside the returned box). Chapters 01-04.
"""
from __future__ import annotations

import io

import ipywidgets
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from ..models import ImageModel, VisionTransformer
from ..targets import resolve_targets
from ..viz import overlay

__all__ = ["BlitFigure", "PhotoMapExplorer", "patch_grid_figure"]


class BlitFigure:
    """A matplotlib figure drawn once; ``png()`` redraws only the ``dynamic`` artists on top of the
    cached static parts (axes, labels, colour bars), which keeps a slider update to a few ms."""

    def __init__(self, fig: Figure, dynamic):
        self.fig, self.dynamic, self.canvas = fig, list(dynamic), FigureCanvasAgg(fig)
        for artist in self.dynamic:
            artist.set_animated(True)
        self.canvas.draw()
        self.background = self.canvas.copy_from_bbox(fig.bbox)

    def png(self) -> bytes:
        self.canvas.restore_region(self.background)
        for artist in self.dynamic:
            self.fig.draw_artist(artist)
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(self.canvas.buffer_rgba())).save(buffer, format="png", compress_level=1)
        return buffer.getvalue()


def check_image_model(image_model) -> None:
    """TypeError unless ``image_model`` is an image bundle (ImageModel or VisionTransformer). Chapter 01."""
    if not isinstance(image_model, (ImageModel, VisionTransformer)):
        raise TypeError(f"image_model must be an image model bundle (e.g. xc.models.imagenet_cnn()), got "
                        f"{type(image_model).__name__}")


class PhotoMapExplorer(ipywidgets.VBox):
    """The frame the photo explorers share: controls, a status line and three panels (the input,
    the map in [0, 1], the map over the input). A subclass names its setting (``key``), computes it
    (``compute``: the map and a status text) and may draw more in ``redraw``; each setting is computed
    once and cached, so going back to it is instant."""

    cmap, map_label = "hot", ""

    def __init__(self, image_model, img, target, controls):
        check_image_model(image_model)
        self.image_model, self.model, self.cache = image_model, image_model.model, {}
        self.x = image_model.preprocess(img)
        self.picture = image_model.view(img)
        index = None if target is None else image_model.class_index(target)
        self.target = int(resolve_targets(index, image_model.probabilities(self.x))[0])
        self.label = image_model.labels[self.target]
        self.status = ipywidgets.Label()
        self.image = ipywidgets.Image(format="png")
        fig = Figure(figsize=(10.5, 3.6), dpi=72)
        self.ax_input, self.ax_map, ax_overlay = fig.subplots(1, 3)
        self.input = self.ax_input.imshow(self.picture)
        self.ax_input.set_title(f"input (target: {self.label})")
        self.map = self.ax_map.imshow(np.zeros(self.picture.shape[:2]), cmap=self.cmap, vmin=0, vmax=1)
        fig.colorbar(self.map, ax=self.ax_map, fraction=0.046, pad=0.04, label=self.map_label)
        self.ax_map.set_title(" ")
        self.blend = ax_overlay.imshow(self.picture)
        ax_overlay.set_title("over the input")
        for ax in (self.ax_input, self.ax_map, ax_overlay):
            ax.axis("off")
        fig.tight_layout()
        self.figure = BlitFigure(fig, [self.input, self.ax_input.title, self.map, self.blend, self.ax_map.title])
        for control in controls:
            control.observe(self.update, names="value")
        super().__init__([ipywidgets.HBox(controls), self.status, self.image])
        self.update()

    def key(self) -> tuple:
        raise NotImplementedError

    def compute(self) -> tuple[np.ndarray, str, str]:
        """The current setting's map (H, W) in [0, 1], its title and a status text."""
        raise NotImplementedError

    def redraw(self):
        """Draw what else the setting changes (nothing by default)."""

    def update(self, *_):
        cached = self.key() in self.cache
        if not cached:
            self.cache[self.key()] = self.compute()
        heat, title, status = self.cache[self.key()]
        self.redraw()
        self.map.set_data(heat)
        self.blend.set_data(overlay(self.picture, heat, alpha=0.5, cmap=self.cmap))
        self.ax_map.set_title(title)
        self.status.value = (f"{status}{len(self.cache)} setting(s) computed; "
                             f"this one {'from the cache' if cached else 'just computed'}")
        self.image.value = self.figure.png()


def patch_grid_figure(picture, grid: int, label: str, title: str = "over the image"):
    """A map on the patch grid (left, with its colour bar) and the same map over the image (right).

    Returns (figure, grid axes, grid image, overlay image); the ViT explorers of chapters 04 and 09
    update the two images. Chapter 04.
    """
    fig = Figure(figsize=(7.5, 3.4), dpi=72)
    ax_grid, ax_overlay = fig.subplots(1, 2)
    heat = ax_grid.imshow(np.zeros((grid, grid)), cmap="hot", vmin=0, vmax=1)
    fig.colorbar(heat, ax=ax_grid, fraction=0.046, pad=0.04, label=label)
    ax_grid.set_xlabel("patch column")
    ax_grid.set_ylabel("patch row")
    ax_grid.set_title(" ")
    blend = ax_overlay.imshow(picture)
    ax_overlay.set_title(title)
    ax_overlay.axis("off")
    fig.tight_layout()
    return fig, ax_grid, heat, blend
