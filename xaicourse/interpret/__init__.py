"""End-to-end interpretation: one report per prediction, for an image and a text classifier. Chapter 05.

Built on the course's methods (source section 4.5 and exercise 5):

* :mod:`~xaicourse.interpret.image`: :class:`ImageClassifierInterpreter`: top-5 predictions plus
  Grad-CAM, Integrated Gradients and SmoothGrad maps.
* :mod:`~xaicourse.interpret.text`: :class:`TextClassifierInterpreter`: per-token Integrated
  Gradients of a sentence classifier, in the space of the word embeddings.
* :mod:`~xaicourse.interpret.misclassification`: :class:`MisclassificationAnalyzer`: predicted vs
  true class, the true class's rank and probability, both classes' maps, and findings computed from
  those numbers (:class:`MisclassificationStats`).
"""
from .image import IG_TOLERANCE, IMAGE_METHODS, METHOD_TITLES, ImageClassifierInterpreter, ImageExplanation
from .misclassification import (MisclassificationAnalyzer, MisclassificationReport, MisclassificationStats,
                                findings, map_overlap, misclassification_stats, top_region)
from .text import TEXT_BASELINES, TextClassifierInterpreter, TextExplanation

__all__ = ["IG_TOLERANCE", "IMAGE_METHODS", "METHOD_TITLES", "TEXT_BASELINES", "ImageClassifierInterpreter", "ImageExplanation",
           "MisclassificationAnalyzer", "MisclassificationReport", "MisclassificationStats", "TextClassifierInterpreter",
           "TextExplanation", "findings", "map_overlap", "misclassification_stats", "top_region"]
