"""Explorers of one photo's attribution map: SmoothGrad (chapter 01), Grad-CAM (chapter 02), IG (chapter 03).
Each setting is computed once and cached."""
from __future__ import annotations

import functools

import ipywidgets

from .. import cam, ig, saliency
from ..maps import to_map
from ..viz import clip_map
from .frame import PhotoMapExplorer, check_image_model

__all__ = ["GradCAMExplorer", "IGExplorer", "SmoothGradExplorer", "cam_methods", "gradcam_explorer", "ig_explorer",
           "saliency_methods", "smoothgrad_explorer"]


def _smoothgrad_variant(variant: str):
    return lambda model, x, target, **kw: saliency.smoothgrad(model, x, target, variant=variant, **kw)


def saliency_methods() -> dict:
    """The explorer's methods: name -> (function(model, x, target, **kw), whether it uses noise). Chapter 01."""
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
                 method: str = "SmoothGrad^2", seed: int = 0):
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
        fn, uses_noise = self.methods[self.method.value]
        kwargs = {"n_samples": self.n_samples.value, "noise_level": self.noise_level.value, "seed": self.seed} if uses_noise else {}
        heat = clip_map(to_map(fn(self.model, self.x, self.target, **kwargs), "max_abs"))[0].cpu().numpy()
        setting = f", n={self.n_samples.value}, noise={self.noise_level.value:.2f}" if uses_noise else ""
        return heat, f"{self.method.value}{setting}", ""

    def redraw(self):
        self.n_samples.disabled = self.noise_level.disabled = not self.uses_noise()


def smoothgrad_explorer(image_model, img, target=None, *, n_samples: int = 25, noise_level: float = 0.15,
                        method: str = "SmoothGrad^2", seed: int = 0) -> SmoothGradExplorer:
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
        return {name: ig.make_baseline(name, self.x, self.image_model) for name in ig.BASELINES}

    def key(self) -> tuple:
        return (self.method.value, self.n_steps.value, self.baseline.value)

    def compute(self):
        baseline = self.baselines[self.baseline.value]
        attr = ig.integrated_gradients(self.model, self.x, self.target, baseline=baseline, n_steps=self.n_steps.value,
                                       method=self.method.value)
        error = ig.completeness_delta(self.model, self.x, attr, self.target, baseline=baseline, relative=True)
        heat = clip_map(to_map(attr, "abs_sum"))[0].cpu().numpy()
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
    """The explorer's methods: name -> function(model, layer, x, target) -> (B, H, W). Chapter 02."""
    return {"Grad-CAM": cam.grad_cam, "Grad-CAM++": cam.grad_cam_pp}


class GradCAMExplorer(PhotoMapExplorer):
    """Layer and method dropdowns redraw the CAM of one photo: how the map changes with depth (the
    layer's grid size is in the title). Taught in chapter 02."""

    cmap, map_label = "jet", "CAM (scaled to [0, 1])"

    def __init__(self, image_model, img, target=None, *, layers: dict | None = None, layer: str | None = None,
                 method: str = "Grad-CAM"):
        check_image_model(image_model)
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
