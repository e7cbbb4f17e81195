"""Chapter 12's explorer: a test image, its strongest proponents and opponents under each method, next to retraining's.

The scores (:func:`xaicourse.tda.method_scores`) and the leave-one-out truth
(:func:`xaicourse.retraining.leave_one_out`) are computed before the explorer is built; the slider and
the dropdown only index them and redraw the changed artists.
"""
from __future__ import annotations

import ipywidgets
import numpy as np
import torch
from matplotlib.figure import Figure
from scipy.stats import spearmanr

from .frame import BlitFigure

__all__ = ["InfluenceExplorer", "influence_explorer"]

TRUTH = "leave-one-out retraining (the truth)"


def _picture(image: torch.Tensor) -> np.ndarray:
    return image.detach().permute(1, 2, 0).clamp(0, 1).numpy()


class InfluenceExplorer(ipywidgets.VBox):
    """Test-example slider and method dropdown. Chapter 12.

    Row 1: the test image and the ``k`` training images the chosen method ranks as the strongest
    proponents (highest scores); row 2: the strongest opponents (lowest scores); rows 3-4: the same
    under leave-one-out retraining (the margin drop when the image is removed). Each panel is titled
    with the image's label and its score; the status line gives the method's rank correlation with
    the truth for this test example and how many of its top ``k`` proponents are the truth's.
    """

    def __init__(self, test_images, train_images, scores: dict, truth, *, test_labels, train_labels,
                 class_names=None, k: int = 5):
        for name, value in (("test_images", test_images), ("train_images", train_images)):
            if not isinstance(value, torch.Tensor) or value.dim() != 4:
                raise TypeError(f"{name} must be a tensor of images (N, 3, H, W), got {type(value).__name__}")
        if not isinstance(scores, dict):
            raise TypeError(f"scores must be a dict {{method name: (n_test, n_train) scores}}, as tda.method_scores "
                            f"returns, got {type(scores).__name__}")
        if not scores:
            raise ValueError("scores must be a non-empty dict {method name: (n_test, n_train) scores}, "
                             "as tda.method_scores returns")
        if not isinstance(truth, torch.Tensor):
            raise TypeError(f"truth must be a tensor (n_test, n_train) of leave-one-out effects, got {type(truth).__name__}")
        if truth.ndim != 2 or truth.shape != (len(test_images), len(train_images)):
            raise ValueError(f"truth must be (n_test, n_train) = ({len(test_images)}, {len(train_images)}) leave-one-out "
                             f"effects, got {tuple(truth.shape)}")
        bad = [name for name, s in scores.items() if tuple(torch.as_tensor(s).shape) != tuple(truth.shape)]
        if bad:
            raise ValueError(f"every method's scores must be (n_test, n_train) = {tuple(truth.shape)} like the truth; "
                             f"{bad[:3]} are not")
        if not 1 <= k <= min(8, truth.shape[1]):
            raise ValueError(f"k is the number of proponents (and opponents) shown, 1 to 8; got {k}")
        self.scores = {name: torch.as_tensor(s).double() for name, s in scores.items()}
        self.truth, self.k = truth.double(), k
        self.test_images, self.train_images = test_images, train_images
        self.test_labels, self.train_labels = list(map(int, test_labels)), list(map(int, train_labels))
        n_classes = max(self.train_labels + self.test_labels) + 1
        self.names = [str(c) for c in (class_names if class_names is not None else range(n_classes))]
        self.test = ipywidgets.IntSlider(description="test image", min=0, max=len(test_images) - 1, value=0)
        self.method = ipywidgets.Dropdown(description="method", options=list(self.scores),
                                          layout=ipywidgets.Layout(width="460px"))
        self.status = ipywidgets.HTML()
        self.image = ipywidgets.Image(format="png")
        fig = Figure(figsize=(1.45 * (k + 1), 6.4), dpi=72)
        axes = fig.subplots(4, k + 1)
        blank = np.zeros_like(_picture(train_images[0]))
        self.panels = []
        for row, label in enumerate(["method:\nproponents", "method:\nopponents", "retraining:\nproponents",
                                     "retraining:\nopponents"]):
            axes[row, 0].set_axis_off()
            for ax in axes[row, 1:]:
                ax.set_xticks([])
                ax.set_yticks([])
                self.panels.append((ax.imshow(blank), ax.set_title(" ", fontsize=8)))
            axes[row, 1].set_ylabel(label, fontsize=9)
        self.test_artist = axes[0, 0].imshow(blank)
        self.test_title = axes[0, 0].set_title(" ", fontsize=8)
        axes[1, 0].text(0.5, 0.5, "score under each\nimage: the\nmethod's (rows\n1-2) or the\nmargin drop when\n"
                        "retrained without\nit (rows 3-4)", ha="center", va="center", fontsize=7,
                        transform=axes[1, 0].transAxes)
        fig.tight_layout()
        dynamic = [self.test_artist, self.test_title] + [a for pair in self.panels for a in pair]
        self.figure = BlitFigure(fig, dynamic)
        for control in (self.test, self.method):
            control.observe(self.update, names="value")
        super().__init__([ipywidgets.HBox([self.test, self.method]), self.status, self.image])
        self.update()

    def _fill(self, panels, order, values):
        for (artist, title), i in zip(panels, order):
            artist.set_data(_picture(self.train_images[i]))
            title.set_text(f"#{i} {self.names[self.train_labels[i]]}\n{values[i]:+.3g}")

    def update(self, *_):
        j, name = self.test.value, self.method.value
        s, t = self.scores[name][j], self.truth[j]
        k = self.k
        self.test_artist.set_data(_picture(self.test_images[j]))
        self.test_title.set_text(f"test #{j}: {self.names[self.test_labels[j]]}")
        rows = [s.argsort(descending=True)[:k], s.argsort()[:k], t.argsort(descending=True)[:k], t.argsort()[:k]]
        for row, (order, values) in enumerate(zip(rows, (s, s, t, t))):
            self._fill(self.panels[row * k:(row + 1) * k], order.tolist(), values)
        shared = len(set(rows[0].tolist()) & set(rows[2].tolist()))
        rho = spearmanr(s.numpy(), t.numpy()).statistic
        self.status.value = (f"<b>{name}</b> on test image {j}: Spearman {rho:+.2f} with the leave-one-out effects over all "
                             f"{len(t)} training images; {shared} of its top {k} proponents are retraining's top {k}.")
        self.image.value = self.figure.png()


def influence_explorer(test_images, train_images, scores: dict, truth, *, test_labels, train_labels,
                       class_names=None, k: int = 5) -> InfluenceExplorer:
    """An :class:`InfluenceExplorer` over precomputed scores and leave-one-out effects. Chapter 12."""
    return InfluenceExplorer(test_images, train_images, scores, truth, test_labels=test_labels,
                             train_labels=train_labels, class_names=class_names, k=k)
