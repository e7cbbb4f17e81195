"""Interactive explorers for the notebooks (ipywidgets). Chapters 01-04, 08-12.

* :mod:`~xaicourse.widgets.frame`: the shared frame (blitted figure, three-panel photo explorer).
* :mod:`~xaicourse.widgets.photo`: SmoothGrad, Grad-CAM and IG explorers of one photo.
* :mod:`~xaicourse.widgets.attention`: BERT head and ViT CLS-map explorers over cached attentions.
* :mod:`~xaicourse.widgets.beyond`: KernelSHAP / LIME sample and superpixel sliders, the LRP composite dropdown.
* :mod:`~xaicourse.widgets.relevance`: method x layer explorers of a ViT image and a sentence (chapter 09).
* :mod:`~xaicourse.widgets.circuit`: a head's attention pattern beside its per-position patching effect (chapter 10).
* :mod:`~xaicourse.widgets.concepts`: a TCAV grid by layer and concept, with the random spread (chapter 11).
* :mod:`~xaicourse.widgets.tda`: a test image's proponents and opponents under each method and under retraining (chapter 12).
"""
from .attention import AttentionExplorer, ViTAttentionExplorer, attention_explorer, vit_attention_explorer
from .circuit import CircuitExplorer, circuit_explorer
from .concepts import TCAVExplorer, tcav_explorer
from .tda import InfluenceExplorer, influence_explorer
from .beyond import LRPExplorer, PerturbationExplorer, lrp_explorer, perturbation_explorer
from .frame import BlitFigure, PhotoMapExplorer
from .relevance import RelevanceExplorer, TextRelevanceExplorer, relevance_explorer, text_relevance_explorer
from .photo import (GradCAMExplorer, IGExplorer, SmoothGradExplorer, cam_methods, gradcam_explorer, ig_explorer,
                    saliency_methods, smoothgrad_explorer)

__all__ = ["AttentionExplorer", "BlitFigure", "CircuitExplorer", "circuit_explorer", "GradCAMExplorer", "IGExplorer", "InfluenceExplorer", "LRPExplorer", "PerturbationExplorer",
           "PhotoMapExplorer", "RelevanceExplorer", "SmoothGradExplorer", "TCAVExplorer", "TextRelevanceExplorer", "ViTAttentionExplorer",
           "attention_explorer", "cam_methods", "gradcam_explorer", "ig_explorer", "influence_explorer", "lrp_explorer", "perturbation_explorer",
           "relevance_explorer", "saliency_methods", "smoothgrad_explorer", "tcav_explorer", "text_relevance_explorer",
           "vit_attention_explorer"]
