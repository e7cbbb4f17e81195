"""Chapter 08's explorers: KernelSHAP / LIME with sample-count and superpixel sliders, LRP composites.

To be moved into :mod:`xaicourse.widgets` (as ``widgets/beyond.py``). They follow the widgets'
rule: the computation is :func:`xaicourse.shapley.kernel_shap`, :func:`xaicourse.lime.lime` and
:func:`xaicourse.lrp.lrp` (unit-tested there); a widget only wires the controls to them, caches
each setting (and each superpixel count's segmentation) and renders its first view when executed
headless. The maps show the positive evidence for the target, clipped at the 99th percentile.
"""
from __future__ import annotations

import ipywidgets
import torch

from .. import ig, lime, lrp, shapley
from ..maps import to_map
from ..viz import clip_map
from .frame import PhotoMapExplorer

__all__ = ["LRPExplorer", "PerturbationExplorer", "lrp_explorer", "perturbation_explorer"]


def _positive(attribution: torch.Tensor):
    """The positive part of the channel-summed map (H, W), scaled to [0, 1] for display."""
    return clip_map(to_map(attribution, "sum").clamp(min=0))[0].cpu().numpy()


class PerturbationExplorer(PhotoMapExplorer):
    """A method dropdown (KernelSHAP / LIME), an n_samples slider and an n_segments slider redraw the
    superpixel attribution of one photo; absent superpixels are black. The status line shows the
    number of superpixels and how far the map's sum is from F(x) - F(black) (zero for KernelSHAP:
    efficiency). Taught in chapter 08."""

    SAMPLE_COUNTS = (32, 64, 128, 256, 512)
    SEGMENT_COUNTS = (8, 16, 32, 50)
    map_label = "positive attribution / 99th percentile"

    def __init__(self, image_model, img, target=None, *, method: str = "KernelSHAP", n_samples: int = 64,
                 n_segments: int = 16, seed: int = 0):
        self.methods = {"KernelSHAP": shapley.kernel_shap, "LIME": lime.lime}
        if method not in self.methods:
            raise ValueError(f"unknown method {method!r}: choose one of {list(self.methods)}")
        self.seed, self.segmentations = seed, {}
        self.method = ipywidgets.Dropdown(description="method", options=list(self.methods), value=method)
        self.n_samples = ipywidgets.SelectionSlider(description="n_samples", continuous_update=False,
                                                    options=sorted({*self.SAMPLE_COUNTS, n_samples}), value=n_samples)
        self.n_segments = ipywidgets.SelectionSlider(description="superpixels", continuous_update=False,
                                                     options=sorted({*self.SEGMENT_COUNTS, n_segments}), value=n_segments)
        self._black = None
        super().__init__(image_model, img, target, [self.method, self.n_samples, self.n_segments])

    def key(self) -> tuple:
        return self.method.value, self.n_samples.value, self.n_segments.value

    def segments(self) -> torch.Tensor:
        if self.n_segments.value not in self.segmentations:
            self.segmentations[self.n_segments.value] = lime.superpixels(self.x, n_segments=self.n_segments.value)
        return self.segmentations[self.n_segments.value]

    def compute(self):
        if self._black is None:
            self._black = ig.black_baseline(self.x, self.image_model)
        segments = self.segments()
        m = int(segments.max()) + 1
        needed = 2 * m if self.method.value == "KernelSHAP" else m + 1
        n = max(self.n_samples.value, needed)
        attr = self.methods[self.method.value](self.model, self.x, self.target, feature_mask=segments,
                                               baseline=self._black, n_samples=n, seed=self.seed)
        with torch.no_grad():
            scores = self.model(torch.cat([self.x, self._black]))[:, self.target]
        gap = attr.sum().item() - (scores[0] - scores[1]).item()
        raised = f" (raised to {n}: {self.method.value} needs {needed} for {m} superpixels)" if n > self.n_samples.value else ""
        status = f"{m} superpixels, {n} samples{raised}; sum - (F(x) - F(black)) = {gap:+.3f}. "
        return _positive(attr), f"{self.method.value}, n={n}, {m} superpixels", status


def perturbation_explorer(image_model, img, target=None, *, method: str = "KernelSHAP", n_samples: int = 64,
                          n_segments: int = 16, seed: int = 0) -> PerturbationExplorer:
    """A :class:`PerturbationExplorer` for one photo and an :class:`~xaicourse.models.ImageModel`
    (``target``: class index or name; None = the top class). Taught in chapter 08."""
    return PerturbationExplorer(image_model, img, target, method=method, n_samples=n_samples, n_segments=n_segments,
                                seed=seed)


class LRPExplorer(PhotoMapExplorer):
    """A composite dropdown redraws the LRP relevance of one photo (epsilon_gamma_box is bounded by the
    black and white images); the status line compares the relevance's sum with the logit. Taught in
    chapter 08."""

    map_label = "positive relevance / 99th percentile"

    def __init__(self, image_model, img, target=None, *, composite: str = "epsilon_plus_flat"):
        if composite not in lrp.COMPOSITES:
            raise ValueError(f"unknown composite {composite!r}: choose one of {list(lrp.COMPOSITES)}")
        self.composite = ipywidgets.Dropdown(description="composite", options=list(lrp.COMPOSITES), value=composite)
        super().__init__(image_model, img, target, [self.composite])

    def key(self) -> tuple:
        return (self.composite.value,)

    def compute(self):
        bounds = {}
        if self.composite.value == "epsilon_gamma_box":
            bounds = {"low": ig.black_baseline(self.x, self.image_model)[0],
                      "high": ig.white_baseline(self.x, self.image_model)[0]}
        relevance = lrp.lrp(self.model, self.x, self.target, composite=self.composite.value, **bounds)
        with torch.no_grad():
            logit = self.model(self.x)[0, self.target].item()
        status = f"relevance sum {relevance.sum().item():.2f}, logit {logit:.2f}. "
        return _positive(relevance), f"LRP {self.composite.value}", status


def lrp_explorer(image_model, img, target=None, *, composite: str = "epsilon_plus_flat") -> LRPExplorer:
    """An :class:`LRPExplorer` for one photo and an :class:`~xaicourse.models.ImageModel`. Chapter 08."""
    return LRPExplorer(image_model, img, target, composite=composite)
