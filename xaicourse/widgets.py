"""Interactive explorers for the notebooks (ipywidgets).

Compute functions live in the package modules and are unit-tested; a widget here only wires
sliders and dropdowns to them, caches what is expensive, and renders an initial view when run
headless (an ``ipywidgets.Image`` or ``Output`` inside the returned box).
"""
from __future__ import annotations

import functools
import io

import ipywidgets
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image


class BlitFigure:
    """A matplotlib figure drawn once; ``png()`` redraws only the ``dynamic`` artists on top of the
    cached static parts (axes, labels, colour bars), which keeps a slider update to a few ms."""

    def __init__(self, fig: Figure, dynamic):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

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


# --------------------------------------------------------------------------------------------
# Chapter 04: attention explorers (BERT heads, ViT CLS maps) over cached attentions
# --------------------------------------------------------------------------------------------
class AttentionExplorer(ipywidgets.VBox):
    """Layer / head sliders and a token selector over cached attentions (layers, heads, T, T).

    Left: the selected head's (T, T) heatmap with token labels, on one colour scale for all heads;
    right: the selected token's attention row as bars (for "all tokens": the attention each token
    receives, averaged over the queries). A slider move only indexes the cached tensor and redraws
    the changed artists: no forward pass. Taught in chapter 04.
    """

    def __init__(self, attentions, tokens: list[str]):
        from . import attention

        if attentions.dim() != 4 or attentions.shape[-1] != len(tokens):
            raise ValueError(f"attentions must be (layers, heads, T, T) with T = {len(tokens)} tokens, got shape "
                             f"{tuple(attentions.shape)}")
        self.attentions, self.tokens = attentions.detach().cpu().float(), list(tokens)
        layers, heads, n, _ = self.attentions.shape
        self.layer = ipywidgets.IntSlider(description="layer", min=0, max=layers - 1)
        self.head = ipywidgets.IntSlider(description="head", min=0, max=heads - 1)
        self.token = ipywidgets.Dropdown(description="token", value=-1, options=[("all tokens", -1)] + [
            (f"{i}: {t}", i) for i, t in enumerate(self.tokens)])
        self.image = ipywidgets.Image(format="png")
        fig = Figure(figsize=(4.0 + 0.6 * n, 0.35 * n + 2.6), dpi=72)
        self.ax_map, self.ax_row = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.2, 1]})
        attention.heatmap(self.attentions[0, 0], self.tokens, ax=self.ax_map)
        self.map = self.ax_map.images[0]
        self.map.set_clim(0, float(self.attentions.max()))
        self.row = self.ax_map.add_patch(Rectangle((-0.5, -0.5), n, 1, fill=False, edgecolor="red", linewidth=2))
        self.bars = self.ax_row.bar(range(n), np.zeros(n), color="tab:blue")
        self.ax_row.set_xticks(range(n), self.tokens, rotation=60, ha="right", fontsize=8)
        self.ax_row.set_ylim(0, 1)
        self.ax_row.set_ylabel("attention weight")
        self.ax_map.set_title(" ")
        self.ax_row.set_title(" ")
        fig.tight_layout()
        self.figure = BlitFigure(fig, [self.map, self.row, *self.bars, self.ax_map.title, self.ax_row.title])
        for control in (self.layer, self.head, self.token):
            control.observe(self.update, names="value")
        super().__init__([ipywidgets.HBox([self.layer, self.head, self.token]), self.image])
        self.update()

    def update(self, *_):
        matrix = self.attentions[self.layer.value, self.head.value]
        query = self.token.value
        values = matrix[query] if query >= 0 else matrix.mean(dim=0)
        self.map.set_data(matrix.numpy())
        self.ax_map.set_title(f"layer {self.layer.value}, head {self.head.value}")
        for bar, value in zip(self.bars, values.tolist()):
            bar.set_height(value)
        self.ax_row.set_title(f"what {self.tokens[query]!r} attends to" if query >= 0
                              else "attention received (mean over queries)")
        self.row.set_visible(query >= 0)
        self.row.set_y(query - 0.5)
        self.image.value = self.figure.png()


def attention_explorer(attentions, tokens: list[str]) -> AttentionExplorer:
    """An :class:`AttentionExplorer` for (layers, heads, T, T) attentions, e.g. from
    ``attention.get_attentions(bert, text)``. Taught in chapter 04."""
    return AttentionExplorer(attentions, tokens)


class ViTAttentionExplorer(ipywidgets.VBox):
    """Layer / head sliders over a ViT's cached attentions (layers, heads, T, T) for one image.

    The "map" selector shows one head, the mean of the layer's heads, or the rollout up to the
    layer; panels: the CLS token's map on the patch grid (scaled to its maximum, which the title
    gives) and the same map over the image. Taught in chapter 04.
    """

    MODES = (("one head", "head"), ("mean of heads", "mean"), ("rollout up to layer", "rollout"))

    def __init__(self, image, attentions, grid: int):
        from . import viz

        self.picture = viz.to_numpy(image).astype(np.float32)
        self.attentions, self.grid = attentions.detach().cpu().float(), grid
        layers, heads = self.attentions.shape[:2]
        self.layer = ipywidgets.IntSlider(description="layer", min=0, max=layers - 1, value=layers - 1)
        self.head = ipywidgets.IntSlider(description="head", min=0, max=heads - 1)
        self.mode = ipywidgets.Dropdown(description="map", options=self.MODES, value="head")
        self.image = ipywidgets.Image(format="png")
        fig = Figure(figsize=(7.5, 3.4), dpi=72)
        self.ax_grid, ax_overlay = fig.subplots(1, 2)
        self.map = self.ax_grid.imshow(np.zeros((grid, grid)), cmap="hot", vmin=0, vmax=1)
        fig.colorbar(self.map, ax=self.ax_grid, fraction=0.046, pad=0.04, label="CLS attention / its max")
        self.ax_grid.set_xlabel("patch column")
        self.ax_grid.set_ylabel("patch row")
        self.ax_grid.set_title(" ")
        self.blend = ax_overlay.imshow(self.picture)
        ax_overlay.set_title("over the image")
        ax_overlay.axis("off")
        fig.tight_layout()
        self.figure = BlitFigure(fig, [self.map, self.blend, self.ax_grid.title])
        for control in (self.layer, self.head, self.mode):
            control.observe(self.update, names="value")
        super().__init__([ipywidgets.HBox([self.layer, self.head, self.mode]), self.image])
        self.update()

    def update(self, *_):
        from . import attention, viz

        head = self.head.value if self.mode.value == "head" else self.mode.value
        heat = attention.layer_map(self.attentions, self.grid, self.layer.value, head)
        self.map.set_data(viz.normalize(heat))
        label = {"head": f"head {self.head.value}", "mean": "mean of heads", "rollout": "rollout"}[self.mode.value]
        self.ax_grid.set_title(f"layer {self.layer.value}, {label} (max {float(heat.max()):.3f})")
        self.head.disabled = self.mode.value != "head"
        self.blend.set_data(viz.overlay(self.picture, attention.upsample(heat, self.picture.shape[0]), alpha=0.5))
        self.image.value = self.figure.png()


def vit_attention_explorer(image, attentions, grid: int) -> ViTAttentionExplorer:
    """A :class:`ViTAttentionExplorer` for one image (H, W, 3) and its attentions (layers, heads, T, T)."""
    return ViTAttentionExplorer(image, attentions, grid)


# --------------------------------------------------------------------------------------------
# Chapters 01-03: explorers of one photo's attribution map
# --------------------------------------------------------------------------------------------
class PhotoMapExplorer(ipywidgets.VBox):
    """The frame the photo explorers share: controls, a status line and three panels (the input,
    the map in [0, 1], the map over the input). A subclass names its setting (``key``), computes it
    (``compute``: the map and a status text) and may draw more in ``redraw``; each setting is computed
    once and cached, so going back to it is instant."""

    cmap, map_label = "hot", ""

    def __init__(self, image_model, img, target, controls):
        from .targets import resolve_targets

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
        from . import viz

        cached = self.key() in self.cache
        if not cached:
            self.cache[self.key()] = self.compute()
        heat, title, status = self.cache[self.key()]
        self.redraw()
        self.map.set_data(heat)
        self.blend.set_data(viz.overlay(self.picture, heat, alpha=0.5))
        self.ax_map.set_title(title)
        self.status.value = (f"{status}{len(self.cache)} setting(s) computed; "
                             f"this one {'from the cache' if cached else 'just computed'}")
        self.image.value = self.figure.png()


def _smoothgrad_variant(variant: str):
    from . import saliency

    return lambda model, x, target, **kw: saliency.smoothgrad(model, x, target, variant=variant, **kw)


def saliency_methods() -> dict:
    """The explorer's methods: name -> (function(model, x, target, **kw), whether it uses noise)."""
    from . import saliency

    return {
        "vanilla gradient": (saliency.vanilla_gradient, False),
        "gradient x input": (saliency.gradient_x_input, False),
        "SmoothGrad": (_smoothgrad_variant("mean"), True),
        "SmoothGrad^2": (_smoothgrad_variant("squared"), True),
        "VarGrad": (_smoothgrad_variant("vargrad"), True),
    }


class SmoothGradExplorer(PhotoMapExplorer):
    """A method dropdown and n_samples / noise_level sliders redraw a saliency map of one photo
    (max |value| over the channels, clipped at its 99th percentile). Taught in chapter 01."""

    SAMPLE_COUNTS = (1, 5, 10, 25, 50, 100)
    map_label = "|saliency| / 99th percentile"

    def __init__(self, image_model, img, target=None, *, n_samples: int = 25, noise_level: float = 0.15,
                 method: str = "SmoothGrad", seed: int = 0):
        self.methods, self.seed = saliency_methods(), seed
        if method not in self.methods:
            raise ValueError(f"unknown method {method!r}: choose one of {list(self.methods)}")
        self.method = ipywidgets.Dropdown(description="method", options=list(self.methods), value=method)
        self.n_samples = ipywidgets.SelectionSlider(description="n_samples", continuous_update=False,
                                                    options=sorted({*self.SAMPLE_COUNTS, n_samples}), value=n_samples)
        self.noise_level = ipywidgets.FloatSlider(description="noise_level", min=0.0, max=0.5, step=0.05,
                                                  value=noise_level, continuous_update=False, readout_format=".2f")
        super().__init__(image_model, img, target, [self.method, self.n_samples, self.noise_level])

    def uses_noise(self) -> bool:
        return self.methods[self.method.value][1]

    def key(self) -> tuple:
        """Noise settings only matter for the noisy methods."""
        return (self.method.value, *((self.n_samples.value, self.noise_level.value) if self.uses_noise() else ()))

    def compute(self):
        from . import saliency

        fn, uses_noise = self.methods[self.method.value]
        kwargs = {"n_samples": self.n_samples.value, "noise_level": self.noise_level.value, "seed": self.seed} if uses_noise else {}
        heat = saliency.clip_map(saliency.to_map(fn(self.model, self.x, self.target, **kwargs), "max_abs"))[0].cpu().numpy()
        setting = f", n={self.n_samples.value}, noise={self.noise_level.value:.2f}" if uses_noise else ""
        return heat, f"{self.method.value}{setting}", ""

    def redraw(self):
        self.n_samples.disabled = self.noise_level.disabled = not self.uses_noise()


def smoothgrad_explorer(image_model, img, target=None, *, n_samples: int = 25, noise_level: float = 0.15,
                        method: str = "SmoothGrad", seed: int = 0) -> SmoothGradExplorer:
    """A :class:`SmoothGradExplorer` for one photo and an :class:`~xaicourse.models.ImageModel`
    (``target``: class index or name; None = the top class). Taught in chapter 01."""
    return SmoothGradExplorer(image_model, img, target, n_samples=n_samples, noise_level=noise_level,
                              method=method, seed=seed)


class IGExplorer(PhotoMapExplorer):
    """An n_steps slider, a rule dropdown and a baseline dropdown redraw the IG map of one photo
    (sum of |IG| over the channels, clipped at its 99th percentile). The left panel shows the
    baseline; the status line gives the relative completeness error
    |sum(IG) - (F(x) - F(x'))| / |F(x) - F(x')| of the setting. Taught in chapter 03."""

    STEPS = (4, 8, 16, 32, 64, 128, 256)
    map_label = "sum |IG| / 99th percentile"

    def __init__(self, image_model, img, target=None, *, n_steps: int = 16, method: str = "gausslegendre",
                 baseline: str = "black"):
        from . import ig

        if method not in ig.RULES:
            raise ValueError(f"unknown method {method!r}: choose one of {ig.RULES}")
        if baseline not in ig.BASELINES:
            raise ValueError(f"unknown baseline {baseline!r}: choose one of {ig.BASELINES}")
        self.n_steps = ipywidgets.SelectionSlider(description="n_steps", continuous_update=False,
                                                  options=sorted({*self.STEPS, n_steps}), value=n_steps)
        self.method = ipywidgets.Dropdown(description="rule", options=list(ig.RULES), value=method)
        self.baseline = ipywidgets.Dropdown(description="baseline", options=list(ig.BASELINES), value=baseline)
        super().__init__(image_model, img, target, [self.n_steps, self.method, self.baseline])

    @functools.cached_property
    def baselines(self) -> dict:
        """Every baseline of the dropdown, in the model's input space."""
        from . import ig

        return {name: ig.make_baseline(name, self.x, self.image_model) for name in ig.BASELINES}

    def key(self) -> tuple:
        return (self.method.value, self.n_steps.value, self.baseline.value)

    def compute(self):
        from . import ig, saliency

        baseline = self.baselines[self.baseline.value]
        attr = ig.integrated_gradients(self.model, self.x, self.target, baseline=baseline, n_steps=self.n_steps.value,
                                       method=self.method.value)
        error = ig.completeness_delta(self.model, self.x, attr, self.target, baseline=baseline, relative=True)
        heat = saliency.clip_map(saliency.to_map(attr, "abs_sum"))[0].cpu().numpy()
        title = f"IG, {self.method.value}, {self.n_steps.value} steps"
        return heat, title, f"relative completeness error {float(error[0]):.1%}  |  "

    def redraw(self):
        self.input.set_data(self.image_model.to_image(self.baselines[self.baseline.value]))
        self.ax_input.set_title(f"baseline: {self.baseline.value} (target: {self.label})")


def ig_explorer(image_model, img, target=None, *, n_steps: int = 16, method: str = "gausslegendre",
                baseline: str = "black") -> IGExplorer:
    """An :class:`IGExplorer` for one photo and an :class:`~xaicourse.models.ImageModel`
    (``target``: class index or name; None = the top class). Taught in chapter 03."""
    return IGExplorer(image_model, img, target, n_steps=n_steps, method=method, baseline=baseline)


def cam_methods() -> dict:
    """The explorer's methods: name -> function(model, layer, x, target) -> (B, H, W)."""
    from . import cam

    return {"Grad-CAM": cam.grad_cam, "Grad-CAM++": cam.grad_cam_pp}


class GradCAMExplorer(PhotoMapExplorer):
    """Layer and method dropdowns redraw the CAM of one photo: how the map changes with depth (the
    layer's grid size is in the title). Taught in chapter 02."""

    cmap, map_label = "jet", "CAM (scaled to [0, 1])"

    def __init__(self, image_model, img, target=None, *, layers: dict | None = None, layer: str | None = None,
                 method: str = "Grad-CAM"):
        from . import cam

        self.methods = cam_methods()
        if method not in self.methods:
            raise ValueError(f"unknown method {method!r}: choose one of {list(self.methods)}")
        self.layers = layers or cam.depth_layers(image_model.model)
        layer = layer or list(self.layers)[-1]
        if layer not in self.layers:
            raise ValueError(f"unknown layer {layer!r}: choose one of {list(self.layers)}")
        self.layer = ipywidgets.Dropdown(description="layer", options=list(self.layers), value=layer)
        self.method = ipywidgets.Dropdown(description="method", options=list(self.methods), value=method)
        super().__init__(image_model, img, target, [self.layer, self.method])

    @functools.cached_property
    def grids(self) -> dict:
        """Each layer's (h, w) grid for this photo."""
        from . import cam

        return cam.layer_grids(self.model, self.layers, self.x)

    def key(self) -> tuple:
        return (self.layer.value, self.method.value)

    def compute(self):
        heat = self.methods[self.method.value](self.model, self.layers[self.layer.value], self.x, self.target)[0].cpu().numpy()
        h, w = self.grids[self.layer.value]
        return heat, f"{self.method.value} at {self.layer.value} ({h} x {w} grid)", ""


def gradcam_explorer(image_model, img, target=None, *, layers: dict | None = None, layer: str | None = None,
                     method: str = "Grad-CAM") -> GradCAMExplorer:
    """A :class:`GradCAMExplorer` for one photo and an :class:`~xaicourse.models.ImageModel`
    (``layers``: name -> module, default ``cam.depth_layers(model)``; ``target``: class index or
    name, None = the top class). Taught in chapter 02."""
    return GradCAMExplorer(image_model, img, target, layers=layers, layer=layer, method=method)
