"""Interactive explorers for the notebooks (ipywidgets). Chapters 01-04 and 08.

* :mod:`~xaicourse.widgets.frame`: the shared frame (blitted figure, three-panel photo explorer).
* :mod:`~xaicourse.widgets.photo`: SmoothGrad, Grad-CAM and IG explorers of one photo.
* :mod:`~xaicourse.widgets.attention`: BERT head and ViT CLS-map explorers over cached attentions.
* :mod:`~xaicourse.widgets.beyond`: KernelSHAP / LIME sample and superpixel sliders, the LRP composite dropdown.
"""
from .attention import AttentionExplorer, ViTAttentionExplorer, attention_explorer, vit_attention_explorer
from .beyond import LRPExplorer, PerturbationExplorer, lrp_explorer, perturbation_explorer
from .frame import BlitFigure, PhotoMapExplorer
from .photo import (GradCAMExplorer, IGExplorer, SmoothGradExplorer, cam_methods, gradcam_explorer, ig_explorer,
                    saliency_methods, smoothgrad_explorer)

__all__ = ["AttentionExplorer", "BlitFigure", "GradCAMExplorer", "IGExplorer", "LRPExplorer", "PerturbationExplorer",
           "PhotoMapExplorer", "SmoothGradExplorer", "ViTAttentionExplorer", "attention_explorer", "cam_methods",
           "gradcam_explorer", "ig_explorer", "lrp_explorer", "perturbation_explorer", "saliency_methods",
           "smoothgrad_explorer", "vit_attention_explorer"]
