"""Interactive explorers for the notebooks (ipywidgets).

Compute functions live in the package modules and are unit-tested; a widget here only wires
sliders and dropdowns to them, caches what is expensive, and renders an initial view when run
headless (an ``ipywidgets.Image`` or ``Output`` inside the returned box).
"""
from __future__ import annotations


# --------------------------------------------------------------------------------------------
# Chapter 04: attention explorers (BERT heads, ViT CLS maps) over cached attentions
# --------------------------------------------------------------------------------------------
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


class AttentionExplorer(ipywidgets.VBox):
    """Layer / head sliders and a token selector over cached attentions (layers, heads, T, T).

    Left: the selected head's (T, T) heatmap with token labels, on one colour scale for all heads;
    right: the selected token's attention row as bars (for "all tokens": the attention each token
    receives, averaged over the queries). A slider move only indexes the cached tensor and redraws
    the changed artists: no forward pass. Taught in chapter 04.
    """

    def __init__(self, attentions, tokens: list[str]):
        from . import attention

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
# Chapter 01: SmoothGrad explorer
# --------------------------------------------------------------------------------------------
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


class SmoothGradExplorer(ipywidgets.VBox):
    """A method dropdown and n_samples / noise_level sliders redraw a saliency map of one photo.

    Panels: the photo as the model sees it, the map (max |value| over the channels, clipped at its
    99th percentile) and the map over the photo. Each setting is computed once and cached, so going
    back to a setting is instant. Taught in chapter 01.
    """

    SAMPLE_COUNTS = (1, 5, 10, 25, 50, 100)

    def __init__(self, image_model, img, target=None, *, n_samples: int = 25, noise_level: float = 0.15,
                 method: str = "SmoothGrad", seed: int = 0):
        from .targets import resolve_targets

        self.methods = saliency_methods()
        if method not in self.methods:
            raise ValueError(f"unknown method {method!r}: choose one of {list(self.methods)}")
        self.model, self.seed, self.cache = image_model.model, seed, {}
        self.x = image_model.preprocess(img)
        self.picture = image_model.view(img)
        index = None if target is None else image_model.class_index(target)
        self.target = int(resolve_targets(index, image_model.probabilities(self.x))[0])
        self.label = image_model.labels[self.target]

        self.method = ipywidgets.Dropdown(description="method", options=list(self.methods), value=method)
        self.n_samples = ipywidgets.SelectionSlider(description="n_samples", continuous_update=False,
                                                    options=sorted({*self.SAMPLE_COUNTS, n_samples}), value=n_samples)
        self.noise_level = ipywidgets.FloatSlider(description="noise_level", min=0.0, max=0.5, step=0.05,
                                                  value=noise_level, continuous_update=False, readout_format=".2f")
        self.status = ipywidgets.Label()
        self.image = ipywidgets.Image(format="png")
        fig = Figure(figsize=(10.5, 3.6), dpi=72)
        ax_photo, self.ax_map, ax_overlay = fig.subplots(1, 3)
        ax_photo.imshow(self.picture)
        ax_photo.set_title(f"input (target: {self.label})")
        self.map = self.ax_map.imshow(np.zeros(self.picture.shape[:2]), cmap="hot", vmin=0, vmax=1)
        fig.colorbar(self.map, ax=self.ax_map, fraction=0.046, pad=0.04, label="|saliency| / 99th percentile")
        self.ax_map.set_title(" ")
        self.blend = ax_overlay.imshow(self.picture)
        ax_overlay.set_title("over the input")
        for ax in (ax_photo, self.ax_map, ax_overlay):
            ax.axis("off")
        fig.tight_layout()
        self.figure = BlitFigure(fig, [self.map, self.blend, self.ax_map.title])
        for control in (self.method, self.n_samples, self.noise_level):
            control.observe(self.update, names="value")
        super().__init__([ipywidgets.HBox([self.method, self.n_samples, self.noise_level]), self.status, self.image])
        self.update()

    def key(self) -> tuple:
        """The cache key of the current setting (noise settings only matter for the noisy methods)."""
        uses_noise = self.methods[self.method.value][1]
        return (self.method.value, *((self.n_samples.value, self.noise_level.value) if uses_noise else ()))

    def compute(self) -> np.ndarray:
        """The current setting's map (H, W) in [0, 1], from the cache when it was computed before."""
        from . import saliency

        key = self.key()
        if key not in self.cache:
            fn, uses_noise = self.methods[self.method.value]
            kwargs = {"n_samples": self.n_samples.value, "noise_level": self.noise_level.value, "seed": self.seed} if uses_noise else {}
            attribution = fn(self.model, self.x, self.target, **kwargs)
            self.cache[key] = saliency.clip_map(saliency.to_map(attribution, "max_abs"))[0].cpu().numpy()
        return self.cache[key]

    def update(self, *_):
        from . import viz

        uses_noise = self.methods[self.method.value][1]
        self.n_samples.disabled = self.noise_level.disabled = not uses_noise
        cached = self.key() in self.cache
        heat = self.compute()
        self.map.set_data(heat)
        self.blend.set_data(viz.overlay(self.picture, heat, alpha=0.5))
        setting = f", n={self.n_samples.value}, noise={self.noise_level.value:.2f}" if uses_noise else ""
        self.ax_map.set_title(f"{self.method.value}{setting}")
        self.status.value = f"{len(self.cache)} setting(s) computed; this one {'from the cache' if cached else 'just computed'}"
        self.image.value = self.figure.png()


def smoothgrad_explorer(image_model, img, target=None, *, n_samples: int = 25, noise_level: float = 0.15,
                        method: str = "SmoothGrad", seed: int = 0) -> SmoothGradExplorer:
    """A :class:`SmoothGradExplorer` for one photo and an :class:`~xaicourse.models.ImageModel`
    (``target``: class index or name; None = the top class). Taught in chapter 01."""
    return SmoothGradExplorer(image_model, img, target, n_samples=n_samples, noise_level=noise_level,
                              method=method, seed=seed)


# --------------------------------------------------------------------------------------------
# Chapter 03: Integrated Gradients explorer
# --------------------------------------------------------------------------------------------
class IGExplorer(ipywidgets.VBox):
    """An n_steps slider, a rule dropdown and a baseline dropdown redraw the IG map of one photo.

    Panels: the baseline, the map (sum of |IG| over the channels, clipped at its 99th percentile)
    and the map over the photo; a line gives the relative completeness error
    |sum(IG) - (F(x) - F(x'))| / |F(x) - F(x')| of the setting. Each setting is computed once and
    cached. Taught in chapter 03.
    """

    STEPS = (4, 8, 16, 32, 64, 128, 256)

    def __init__(self, image_model, img, target=None, *, n_steps: int = 16, method: str = "gausslegendre",
                 baseline: str = "black"):
        from . import ig
        from .targets import resolve_targets

        if method not in ig.RULES:
            raise ValueError(f"unknown method {method!r}: choose one of {ig.RULES}")
        if baseline not in ig.BASELINES:
            raise ValueError(f"unknown baseline {baseline!r}: choose one of {ig.BASELINES}")
        self.image_model, self.cache = image_model, {}
        self.x = image_model.preprocess(img)
        self.picture = image_model.view(img)
        index = None if target is None else image_model.class_index(target)
        self.target = int(resolve_targets(index, image_model.probabilities(self.x))[0])
        self.baselines = {name: ig.make_baseline(name, self.x, image_model) for name in ig.BASELINES}

        self.n_steps = ipywidgets.SelectionSlider(description="n_steps", continuous_update=False,
                                                  options=sorted({*self.STEPS, n_steps}), value=n_steps)
        self.method = ipywidgets.Dropdown(description="rule", options=list(ig.RULES), value=method)
        self.baseline = ipywidgets.Dropdown(description="baseline", options=list(ig.BASELINES), value=baseline)
        self.status = ipywidgets.Label()
        self.image = ipywidgets.Image(format="png")
        fig = Figure(figsize=(10.5, 3.6), dpi=72)
        self.ax_base, self.ax_map, ax_overlay = fig.subplots(1, 3)
        self.base = self.ax_base.imshow(self.picture)
        self.ax_base.set_title(" ")
        self.map = self.ax_map.imshow(np.zeros(self.picture.shape[:2]), cmap="hot", vmin=0, vmax=1)
        fig.colorbar(self.map, ax=self.ax_map, fraction=0.046, pad=0.04, label="sum |IG| / 99th percentile")
        self.ax_map.set_title(" ")
        self.blend = ax_overlay.imshow(self.picture)
        ax_overlay.set_title(f"over the input ({image_model.labels[self.target]})")
        for ax in (self.ax_base, self.ax_map, ax_overlay):
            ax.axis("off")
        fig.tight_layout()
        self.figure = BlitFigure(fig, [self.base, self.map, self.blend, self.ax_base.title, self.ax_map.title])
        for control in (self.n_steps, self.method, self.baseline):
            control.observe(self.update, names="value")
        super().__init__([ipywidgets.HBox([self.n_steps, self.method, self.baseline]), self.status, self.image])
        self.update()

    def key(self) -> tuple:
        return (self.method.value, self.n_steps.value, self.baseline.value)

    def compute(self) -> tuple[np.ndarray, float]:
        """The current setting's map (H, W) in [0, 1] and its relative completeness error (cached)."""
        from . import ig, saliency

        if self.key() not in self.cache:
            baseline = self.baselines[self.baseline.value]
            attr = ig.integrated_gradients(self.image_model.model, self.x, self.target, baseline=baseline,
                                           n_steps=self.n_steps.value, method=self.method.value)
            error = ig.completeness_delta(self.image_model.model, self.x, attr, self.target, baseline=baseline, relative=True)
            heat = saliency.clip_map(saliency.to_map(attr, "abs_sum"))[0].cpu().numpy()
            self.cache[self.key()] = heat, float(error[0])
        return self.cache[self.key()]

    def update(self, *_):
        from . import viz

        cached = self.key() in self.cache
        heat, error = self.compute()
        self.base.set_data(self.image_model.to_image(self.baselines[self.baseline.value]))
        self.ax_base.set_title(f"baseline: {self.baseline.value}")
        self.map.set_data(heat)
        self.blend.set_data(viz.overlay(self.picture, heat, alpha=0.5))
        self.ax_map.set_title(f"IG, {self.method.value}, {self.n_steps.value} steps")
        self.status.value = (f"relative completeness error {error:.1%}  |  {len(self.cache)} setting(s) computed; "
                             f"this one {'from the cache' if cached else 'just computed'}")
        self.image.value = self.figure.png()


def ig_explorer(image_model, img, target=None, *, n_steps: int = 16, method: str = "gausslegendre",
                baseline: str = "black") -> IGExplorer:
    """An :class:`IGExplorer` for one photo and an :class:`~xaicourse.models.ImageModel`
    (``target``: class index or name; None = the top class). Taught in chapter 03."""
    return IGExplorer(image_model, img, target, n_steps=n_steps, method=method, baseline=baseline)


# --------------------------------------------------------------------------------------------
# Chapter 02: Grad-CAM layer explorer
# --------------------------------------------------------------------------------------------
def cam_methods() -> dict:
    """The explorer's methods: name -> function(model, layer, x, target) -> (B, H, W)."""
    from . import cam

    return {"Grad-CAM": cam.grad_cam, "Grad-CAM++": cam.grad_cam_pp}


class GradCAMExplorer(ipywidgets.VBox):
    """Layer and method dropdowns redraw the CAM of one photo: how the map changes with depth.

    Panels: the photo as the model sees it, the CAM (with the layer's grid size in the title) and
    the CAM over the photo. Each (layer, method) is computed once and cached. Taught in chapter 02.
    """

    def __init__(self, image_model, img, target=None, *, layers: dict | None = None, layer: str | None = None,
                 method: str = "Grad-CAM"):
        from . import cam
        from .targets import resolve_targets

        self.methods = cam_methods()
        if method not in self.methods:
            raise ValueError(f"unknown method {method!r}: choose one of {list(self.methods)}")
        self.model, self.cache = image_model.model, {}
        self.layers = layers or cam.depth_layers(self.model)
        layer = layer or list(self.layers)[-1]
        if layer not in self.layers:
            raise ValueError(f"unknown layer {layer!r}: choose one of {list(self.layers)}")
        self.x = image_model.preprocess(img)
        self.picture = image_model.view(img)
        index = None if target is None else image_model.class_index(target)
        self.target = int(resolve_targets(index, image_model.probabilities(self.x))[0])
        self.grids = cam.layer_grids(self.model, self.layers, self.x)

        self.layer = ipywidgets.Dropdown(description="layer", options=list(self.layers), value=layer)
        self.method = ipywidgets.Dropdown(description="method", options=list(self.methods), value=method)
        self.status = ipywidgets.Label()
        self.image = ipywidgets.Image(format="png")
        fig = Figure(figsize=(10.5, 3.6), dpi=72)
        ax_photo, self.ax_map, ax_overlay = fig.subplots(1, 3)
        ax_photo.imshow(self.picture)
        ax_photo.set_title(f"input (target: {image_model.labels[self.target]})")
        self.map = self.ax_map.imshow(np.zeros(self.picture.shape[:2]), cmap="jet", vmin=0, vmax=1)
        fig.colorbar(self.map, ax=self.ax_map, fraction=0.046, pad=0.04, label="CAM (scaled to [0, 1])")
        self.ax_map.set_title(" ")
        self.blend = ax_overlay.imshow(self.picture)
        ax_overlay.set_title("over the input")
        for ax in (ax_photo, self.ax_map, ax_overlay):
            ax.axis("off")
        fig.tight_layout()
        self.figure = BlitFigure(fig, [self.map, self.blend, self.ax_map.title])
        for control in (self.layer, self.method):
            control.observe(self.update, names="value")
        super().__init__([ipywidgets.HBox([self.layer, self.method]), self.status, self.image])
        self.update()

    def compute(self) -> np.ndarray:
        """The current (layer, method) CAM (H, W) in [0, 1], cached."""
        key = (self.layer.value, self.method.value)
        if key not in self.cache:
            fn = self.methods[self.method.value]
            self.cache[key] = fn(self.model, self.layers[self.layer.value], self.x, self.target)[0].cpu().numpy()
        return self.cache[key]

    def update(self, *_):
        from . import viz

        cached = (self.layer.value, self.method.value) in self.cache
        heat = self.compute()
        self.map.set_data(heat)
        self.blend.set_data(viz.overlay(self.picture, heat, alpha=0.5))
        h, w = self.grids[self.layer.value]
        self.ax_map.set_title(f"{self.method.value} at {self.layer.value} ({h} x {w} grid)")
        self.status.value = f"{len(self.cache)} map(s) computed; this one {'from the cache' if cached else 'just computed'}"
        self.image.value = self.figure.png()


def gradcam_explorer(image_model, img, target=None, *, layers: dict | None = None, layer: str | None = None,
                     method: str = "Grad-CAM") -> GradCAMExplorer:
    """A :class:`GradCAMExplorer` for one photo and an :class:`~xaicourse.models.ImageModel`
    (``layers``: name -> module, default ``cam.depth_layers(model)``; ``target``: class index or
    name, None = the top class). Taught in chapter 02."""
    return GradCAMExplorer(image_model, img, target, layers=layers, layer=layer, method=method)
