"""Why did the model not say the true class? The numbers, the maps and findings drawn from them. Chapter 05 (exercise 5)."""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

from .. import cam
from ..hooks import eval_mode
from ..inputs import check_number, check_types, model_input
from ..maps import top_overlap, top_region
from ..models import ImageModel
from ..viz import map_panel
from .image import IG_TOLERANCE, METHOD_TITLES, ImageClassifierInterpreter

__all__ = ["MisclassificationAnalyzer", "MisclassificationReport", "MisclassificationStats", "findings",
           "map_overlap", "misclassification_stats", "top_region"]


@dataclass(frozen=True)
class MisclassificationStats:
    """The numbers behind a misclassification report. ``cam_overlap`` / ``ig_overlap``: IoU of the
    top-``top`` regions of the predicted and the true class's maps (``ig_overlap`` None when IG was
    not computed); ``ig_errors``: IG's relative completeness errors (predicted, true), the number that
    says whether the IG maps may be read (under :data:`IG_TOLERANCE`). Reads like the exercise's dict too: ``stats["true_rank"]``, ``dict(stats)``."""

    predicted: int
    predicted_probability: float
    true: int
    true_rank: int
    true_probability: float
    cam_overlap: float
    top: float = 0.2
    ig_overlap: float | None = None
    ig_errors: tuple[float, float] | None = None

    def __getitem__(self, key: str):
        return asdict(self)[key]

    def keys(self):
        return asdict(self).keys()


@check_types
def map_overlap(a: torch.Tensor, b: torch.Tensor, top: float = 0.2) -> float:
    """Intersection over union of the top-``top`` regions of two maps (H, W); 0 when both are empty. Chapter 05."""
    return float(top_overlap(torch.as_tensor(a), torch.as_tensor(b), top))


def misclassification_stats(model, target_layer, x: torch.Tensor, true_class: int, *,
                            top: float = 0.2) -> MisclassificationStats:
    """The numbers behind a misclassification report for one input ``x`` (1, C, H, W) (exercise 5). Chapter 05.

    Probabilities are the softmax of the logits; ``true_rank`` is 1 for the top class;
    ``cam_overlap`` is :func:`map_overlap` of the Grad-CAMs of the predicted and the true class.
    """
    stats, _ = _stats_and_cams(model, target_layer, x, true_class, top)
    return stats


def _stats_and_cams(model, target_layer, x, true_class: int, top: float):
    check_number("top", top, above=0, maximum=1, hint=" (a fraction of the pixels)")
    x = model_input(model, x)
    with torch.no_grad(), eval_mode(model):
        probs = model(x).softmax(-1)[0]
    predicted = int(probs.argmax())
    cams = cam.grad_cam(model, target_layer, x.expand(2, *x.shape[1:]), [predicted, true_class])
    stats = MisclassificationStats(
        predicted=predicted, predicted_probability=float(probs[predicted]), true=int(true_class),
        true_rank=int((probs > probs[true_class]).sum()) + 1, true_probability=float(probs[true_class]),
        cam_overlap=map_overlap(cams[0], cams[1], top), top=top)
    return stats, cams


def findings(stats: MisclassificationStats, labels: list[str]) -> list[str]:
    """Findings, each drawn from a measured number of :func:`misclassification_stats` (exercise 5). Chapter 05."""
    if not isinstance(stats, MisclassificationStats):
        raise TypeError(f"stats must be what misclassification_stats returns (MisclassificationStats), got "
                        f"{type(stats).__name__}")
    pred, true = labels[stats.predicted], labels[stats.true]
    rank, p_true, p_pred, overlap = stats.true_rank, stats.true_probability, stats.predicted_probability, stats.cam_overlap
    if rank == 1:
        return [f"correct: '{true}' is the top class with probability {p_true:.1%}."]
    ratio = p_pred / max(p_true, 1e-12)
    result = [f"'{pred}' ({p_pred:.1%}) beats the true class '{true}' ({p_true:.2%}, rank {rank}) "
              f"by a factor of {ratio:.2f}." if ratio < 10 else
              f"'{pred}' ({p_pred:.1%}) beats the true class '{true}' ({p_true:.2%}, rank {rank}) by a factor of {ratio:.0f}."]
    if rank <= 5:
        result.append(f"near miss: the true class is in the top 5 (rank {rank}); the classes compete, "
                      "look for what tells them apart.")
    elif p_true < 0.01:
        result.append(f"the model hardly considers '{true}' (rank {rank}, below 1%): the evidence it "
                      "learned for that class is missing or looks different in this image.")
    else:
        result.append(f"'{true}' is plausible to the model ({p_true:.1%}) but outranked by {rank - 1} classes.")
    if overlap >= 0.5:
        result.append(f"same place, different reading: the Grad-CAMs of both classes overlap (IoU {overlap:.2f}); "
                      f"the model looks at the right region but reads it as '{pred}'.")
    elif overlap < 0.2:
        result.append(f"different places: the Grad-CAMs barely overlap (IoU {overlap:.2f}); '{pred}' comes from "
                      "another part of the image: check whether that region is the object or its context.")
    else:
        result.append(f"partial overlap: the Grad-CAMs share part of their top regions (IoU {overlap:.2f}).")
    return result


@dataclass
class MisclassificationReport:
    """Predicted vs true class with their maps (each (H, W) >= 0), the measured numbers and the
    findings drawn from them."""

    image: np.ndarray
    top5: list[tuple[str, float]]
    stats: MisclassificationStats
    predicted_label: str
    true_label: str
    maps: dict[str, dict[str, torch.Tensor]]
    diagnosis: list[str]

    def __str__(self) -> str:
        s, share = self.stats, f"top {self.stats.top:.0%}"
        lines = [f"true class:  {self.true_label} (rank {s.true_rank}, {s.true_probability:.2%})",
                 f"predicted:   {self.predicted_label} ({s.predicted_probability:.1%})", "top-5:"]
        lines += [f"  {'*' if label == self.true_label else ' '} {i + 1}. {label}: {p:.2%}"
                  for i, (label, p) in enumerate(self.top5)]
        errors = "" if s.ig_errors is None else f" (IG completeness errors {s.ig_errors[0]:.1%} / {s.ig_errors[1]:.1%})"
        lines += [f"Grad-CAM overlap (IoU of the {share} regions): {s.cam_overlap:.2f}",
                  f"IG overlap (IoU of the {share} regions): {s.ig_overlap:.2f}{errors}", "diagnosis:"]
        return "\n".join(lines + [f"  - {finding}" for finding in self.diagnosis])


class MisclassificationAnalyzer:
    """Why did the model not say ``true_label``? (chapter 05, exercise 5)

    ``analyze(img, true_label)`` takes a class index or an ImageNet name (typos get suggestions)
    and returns a :class:`MisclassificationReport`: the true class's rank and probability, Grad-CAM
    and IG for the predicted and the true class (each computed once, both classes in one batch),
    how much their top regions overlap, and findings computed from those numbers. ``plot(report)``
    draws the 2 x 3 panel of the source.
    """

    def __init__(self, image_model: ImageModel, *, ig_steps: int = 200, top: float = 0.2):
        self.interpreter = ImageClassifierInterpreter(image_model, ig_steps=ig_steps)
        self.top = check_number("top", top, above=0, maximum=1, hint=" (a fraction of the pixels)")

    def analyze(self, img, true_label) -> MisclassificationReport:
        im = self.interpreter.image_model
        true = im.class_index(true_label)
        x = im.preprocess(img)
        stats, cams = _stats_and_cams(im.model, im.target_layer, x, true, self.top)
        igs, errors = self.interpreter.maps("ig", x, [stats.predicted, true])
        errors = (float(errors[0]), float(errors[1]))
        if max(errors) >= IG_TOLERANCE:
            warnings.warn(f"Integrated Gradients has not converged: its attributions miss completeness by "
                          f"{max(errors):.1%} (over {IG_TOLERANCE:.0%}); raise ig_steps (now "
                          f"{self.interpreter.ig_steps}) before reading the IG maps or their overlap", stacklevel=2)
        stats = MisclassificationStats(**{**asdict(stats), "ig_overlap": map_overlap(igs[0], igs[1], self.top),
                                          "ig_errors": errors})
        maps = {"gradcam": {"predicted": cams[0], "true": cams[1]}, "ig": {"predicted": igs[0], "true": igs[1]}}
        return MisclassificationReport(
            image=im.view(img), top5=im.predict(x, 5), stats=stats, predicted_label=im.labels[stats.predicted],
            true_label=im.labels[true], maps=maps, diagnosis=findings(stats, im.labels))

    def plot(self, report: MisclassificationReport, size: float = 3.6):
        """Row 1: photo, Grad-CAM (predicted), Grad-CAM (true); row 2: IG (predicted), IG (true)."""
        fig, axes = plt.subplots(2, 3, figsize=(3 * size, 2 * size + 0.8))
        axes[0, 0].imshow(report.image)
        axes[0, 0].set_title(f"true: {report.true_label} (rank {report.stats.true_rank})\n"
                             f"predicted: {report.predicted_label}", fontsize=9)
        for row, method in enumerate(("gradcam", "ig")):
            for col, which in enumerate(("predicted", "true"), start=1):
                label = report.predicted_label if which == "predicted" else report.true_label
                map_panel(axes[row, col], report.maps[method][which], image=report.image,
                          kind="cam" if method == "gradcam" else "pixels",
                          title=f"{METHOD_TITLES[method]}: {which}\n'{label}'")
        s = report.stats
        axes[1, 0].text(0.0, 0.5, f"overlap of the top {s.top:.0%} regions (IoU)\nGrad-CAM: {s.cam_overlap:.2f}\n"
                                  f"IG: {s.ig_overlap:.2f}", fontsize=10, va="center")
        for ax in axes.flat:
            ax.axis("off")
        fig.tight_layout()
        return fig
