"""End-to-end interpretation: one report per prediction, for an image and a text classifier.

Taught in chapter 05 (source section 4.5 and exercise 5). Three tools, built on the course's methods:

* :class:`ImageClassifierInterpreter`: top-5 predictions plus Grad-CAM (:mod:`xaicourse.cam`),
  Integrated Gradients (:mod:`xaicourse.ig`) and SmoothGrad (:mod:`xaicourse.saliency`) maps.
* :class:`TextClassifierInterpreter`: per-token Integrated Gradients of a sentence classifier,
  computed in the space of the word embeddings with Captum's ``LayerIntegratedGradients``.
* :class:`MisclassificationAnalyzer`: predicted vs true class, the true class's rank and
  probability, both classes' maps, and a diagnosis computed from those numbers.

About the text side. The source chapter runs DistilBERT's whole embedding module (word + position
embeddings + LayerNorm) and feeds its output back in as ``inputs_embeds``; the model then adds the
position embeddings and applies LayerNorm a second time, so the function it explains is not the
classifier that made the prediction. Here the explained function is ``model(input_ids,
attention_mask).logits`` itself, and the attribution is taken at the word-embedding table
(``model.get_input_embeddings()``), the only part that differs between a sentence and its baseline.
"""
from __future__ import annotations

import html as html_lib
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import torch

from . import cam, ig, saliency, viz
from .inputs import positive_int
from .models import ImageModel, TextModel, class_index
from .targets import resolve_targets

IMAGE_METHODS = ("gradcam", "ig", "smoothgrad")
TEXT_BASELINES = ("pad", "zero")
METHOD_TITLES = {"gradcam": "Grad-CAM", "ig": "Integrated Gradients", "smoothgrad": "SmoothGrad"}


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------
@dataclass
class TextExplanation:
    """One sentence explained. ``attributions`` (T,) has one value per token, in logit units:
    ``attributions.sum() == logit(text) - logit(baseline) + delta`` for the ``target`` class."""

    text: str
    tokens: list[str]
    attributions: torch.Tensor
    target: int
    target_label: str
    prediction: int
    label: str
    probability: float
    probabilities: torch.Tensor
    delta: float
    baseline: str
    n_steps: int

    @property
    def completeness(self) -> float:
        """logit(text) - logit(baseline) of the target class: what the attributions add up to."""
        return float(self.attributions.sum()) - self.delta


class TextClassifierInterpreter:
    """Explain a sentence classifier token by token (chapter 05, section 4.5).

    ``text_model`` is a :class:`~xaicourse.models.TextModel` whose ``model(**encoding).logits`` is
    (1, C), e.g. ``xc.models.sentiment_classifier()``. ``baseline`` is the "absence of text" the
    sentence is compared with:

    * ``"pad"`` (default): the same sentence with every word replaced by [PAD] ([CLS] and [SEP]
      kept). The baseline is a real input the tokenizer could produce; special tokens get exactly
      zero attribution, and the attributions say what the words add over an empty sentence.
    * ``"zero"``: all-zero word embeddings (also for [CLS]/[SEP]), the source chapter's choice. It
      is not a text the model ever saw, and [CLS]/[SEP] then take part of the attribution.

    Both are Integrated Gradients over the word embeddings with ``n_steps`` Gauss-Legendre steps,
    explaining the target class's logit. The [PAD] baseline goes through Captum's
    ``LayerIntegratedGradients`` on the embedding table (its baselines are token ids); zero
    embeddings are not the embedding of any token, so that baseline goes through Captum's
    ``IntegratedGradients`` on ``inputs_embeds`` (the same integral, entered one step later).
    """

    def __init__(self, text_model: TextModel, *, baseline: str = "pad", n_steps: int = 50):
        if not isinstance(text_model, TextModel):
            raise TypeError(f"text_model must be a xaicourse TextModel (e.g. xc.models.sentiment_classifier()), "
                            f"got {type(text_model).__name__}")
        _check_baseline(baseline)
        self.text_model = text_model
        self.baseline = baseline
        self.n_steps = n_steps

    def logits(self, text: str) -> torch.Tensor:
        """The classifier's logits for one text, shape (1, C)."""
        enc = self.text_model.encode(text)
        with torch.no_grad():
            return self._forward(enc["input_ids"], enc["attention_mask"])

    def interpret(self, text: str, target=None, *, baseline: str | None = None,
                  n_steps: int | None = None) -> TextExplanation:
        """Attribute the ``target`` class's logit (None: the predicted class; an index or a label
        name) to the tokens of ``text``. Empty text is a ValueError."""
        from captum.attr import IntegratedGradients, LayerIntegratedGradients

        baseline = baseline or self.baseline
        n_steps = n_steps or self.n_steps
        _check_baseline(baseline)
        tm = self.text_model
        enc = tm.encode(text)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        with torch.no_grad():
            logits = self._forward(ids, mask)
        probs = logits.softmax(-1)[0]
        if isinstance(target, str):
            target = class_index(self._labels(), target)
        target = int(resolve_targets(target, logits)[0])
        embeddings = tm.model.get_input_embeddings()
        if baseline == "pad":
            lig = LayerIntegratedGradients(self._forward, embeddings)
            attr, delta = lig.attribute(ids, baselines=self._pad_baseline(ids), target=target,
                                        additional_forward_args=(mask,), n_steps=n_steps,
                                        return_convergence_delta=True)
        else:
            with torch.no_grad():
                word_vectors = embeddings(ids)
            integrated = IntegratedGradients(self._forward_embeddings)
            attr, delta = integrated.attribute(word_vectors, baselines=torch.zeros_like(word_vectors), target=target,
                                               additional_forward_args=(mask,), n_steps=n_steps,
                                               return_convergence_delta=True)
        prediction = int(probs.argmax())
        labels = self._labels()
        return TextExplanation(
            text=text, tokens=tm.tokens(enc), attributions=attr.sum(-1)[0].detach().cpu(),
            target=target, target_label=labels[target], prediction=prediction, label=labels[prediction],
            probability=float(probs[prediction]), probabilities=probs.cpu(), delta=float(delta[0]),
            baseline=baseline, n_steps=n_steps,
        )

    def plot(self, result: TextExplanation, ax=None):
        """Bar chart of the per-token attributions (green: towards the target class, red: against)."""
        if ax is None:
            _, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(result.tokens) + 1.5), 3.2))
        values = result.attributions.numpy()
        ax.bar(range(len(values)), values, color=np.where(values >= 0, "tab:green", "tab:red"))
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(values)), result.tokens, rotation=60, ha="right")
        ax.set_ylabel(f"attribution to '{result.target_label}'\n(logit units)")
        ax.set_title(f"prediction: {result.label} ({result.probability:.1%}); sum {result.attributions.sum():.2f} "
                     f"= logit change {result.completeness:.2f} + delta {result.delta:.3f} "
                     f"[{result.baseline} baseline]", fontsize=9)
        ax.figure.tight_layout()
        return ax.figure

    def html(self, result: TextExplanation) -> str:
        """The tokens as coloured HTML spans: green supports the target class, red opposes it,
        the strength of the colour is |attribution| / max |attribution|."""
        return token_html(result.tokens, result.attributions,
                          caption=f"prediction: {result.label} ({result.probability:.1%}), "
                                  f"attributions to '{result.target_label}'")

    # the function explained: exactly the classifier, from token ids or from word embeddings
    def _forward(self, input_ids, attention_mask):
        return self.text_model.model(input_ids=input_ids, attention_mask=attention_mask).logits

    def _forward_embeddings(self, word_vectors, attention_mask):
        return self.text_model.model(inputs_embeds=word_vectors, attention_mask=attention_mask).logits

    def _pad_baseline(self, ids: torch.Tensor) -> torch.Tensor:
        tokenizer = self.text_model.tokenizer
        special = torch.tensor(tokenizer.get_special_tokens_mask(ids[0].tolist(), already_has_special_tokens=True),
                               dtype=torch.bool, device=ids.device)
        return torch.where(special, ids, torch.full_like(ids, tokenizer.pad_token_id))

    def _labels(self) -> list[str]:
        config = self.text_model.model.config
        return self.text_model.labels or [config.id2label[i] for i in range(config.num_labels)]


def _check_baseline(baseline) -> None:
    if baseline not in TEXT_BASELINES:
        raise ValueError(f"unknown text baseline {baseline!r}: choose 'pad' ([PAD] tokens) or 'zero' (zero embeddings)")


def token_html(tokens: list[str], attributions, caption: str = "") -> str:
    """Tokens as HTML spans on a green (positive) / red (negative) background. Chapter 05."""
    values = viz.to_numpy(attributions).astype(float)
    if values.shape != (len(tokens),):
        raise ValueError(f"{values.size} attributions for {len(tokens)} tokens: give one value per token")
    scale = np.abs(values).max()
    spans = []
    for token, value in zip(tokens, values):
        strength = abs(value) / scale if scale > 0 else 0.0
        rgb = "40, 160, 60" if value >= 0 else "210, 50, 50"
        spans.append(f'<span title="{value:+.3f}" style="background: rgba({rgb}, {strength:.2f}); '
                     f'padding: 1px 3px; margin: 1px; border-radius: 3px">{html_lib.escape(token)}</span>')
    head = f"<div><small>{html_lib.escape(caption)}</small></div>" if caption else ""
    return f'<div style="font-family: monospace; line-height: 1.9">{head}{" ".join(spans)}</div>'


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------
@dataclass
class ImageExplanation:
    """One photo explained. ``image`` (H, W, 3) in [0, 1] is what the model saw; ``x`` (1, 3, H, W)
    its input; ``top5`` (label, probability) pairs; ``maps`` method -> (H, W) map >= 0 (Grad-CAM in
    [0, 1]; IG and SmoothGrad as |attribution| summed / maxed over the colour channels);
    ``ig_error``: IG's relative completeness error |sum - (F(x) - F(baseline))| / |F(x) - F(baseline)|."""

    image: np.ndarray
    x: torch.Tensor
    top5: list[tuple[str, float]]
    target: int
    target_label: str
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    ig_error: float | None = None


class ImageClassifierInterpreter:
    """Top-5 predictions and Grad-CAM, Integrated Gradients and SmoothGrad maps for one photo
    (chapter 05, section 4.5).

    IG runs ``ig_steps`` Gauss-Legendre steps from an all-black image; SmoothGrad averages
    ``smoothgrad_samples`` gradients with noise of ``noise_level`` times the input's range, drawn
    from ``seed``. Grad-CAM uses ``image_model.target_layer``. The model is left as found.
    """

    def __init__(self, image_model: ImageModel, *, ig_steps: int = 50, smoothgrad_samples: int = 50,
                 noise_level: float = 0.15, seed: int = 0):
        if not isinstance(image_model, ImageModel):
            raise TypeError(f"image_model must be a xaicourse ImageModel (e.g. xc.models.imagenet_cnn()), "
                            f"got {type(image_model).__name__}")
        self.image_model = image_model
        self.ig_steps = positive_int("ig_steps", ig_steps)
        self.smoothgrad_samples = positive_int("smoothgrad_samples", smoothgrad_samples)
        self.noise_level = noise_level
        self.seed = seed

    def interpret(self, img, methods=IMAGE_METHODS, target=None) -> ImageExplanation:
        """Explain ``target`` (None: the top class; an index or an ImageNet name) for a photo
        (path, PIL image or array). ``methods``: any of "gradcam", "ig", "smoothgrad"."""
        methods = (methods,) if isinstance(methods, str) else tuple(methods)
        unknown = [m for m in methods if m not in IMAGE_METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}: choose from {IMAGE_METHODS}")
        im = self.image_model
        x = im.preprocess(img)
        probs = im.probabilities(x)
        target = int(resolve_targets(None if target is None else im.class_index(target), probs)[0])
        result = ImageExplanation(image=im.view(img), x=x, top5=im.predict(x, 5), target=target,
                                  target_label=im.labels[target])
        for method in methods:
            if method == "ig":
                attribution, baseline = self._ig(x, target)
                result.maps[method] = saliency.to_map(attribution, "abs_sum")[0]
                result.ig_error = float(ig.completeness_delta(im.model, x, attribution, target, baseline=baseline,
                                                              relative=True)[0])
            else:
                result.maps[method] = self._map(method, x, target)
        return result

    def _ig(self, x: torch.Tensor, target: int) -> tuple[torch.Tensor, torch.Tensor]:
        baseline = ig.black_baseline(x, self.image_model)
        return ig.integrated_gradients(self.image_model.model, x, target, baseline=baseline,
                                       n_steps=self.ig_steps), baseline

    def _map(self, method: str, x: torch.Tensor, target: int) -> torch.Tensor:
        im = self.image_model
        if method == "gradcam":
            return cam.grad_cam(im.model, im.target_layer, x, target)[0]
        if method == "ig":
            return saliency.to_map(self._ig(x, target)[0], "abs_sum")[0]
        gradients = saliency.smoothgrad(im.model, x, target, n_samples=self.smoothgrad_samples,
                                        noise_level=self.noise_level, seed=self.seed)
        return saliency.to_map(gradients, "max_abs")[0]

    def plot(self, result: ImageExplanation, size: float = 3.6):
        """The photo with its top-3 predictions, then one labelled panel (with colour bar) per map."""
        fig, axes = plt.subplots(1, len(result.maps) + 1, figsize=(size * (len(result.maps) + 1), size + 0.6))
        axes = np.atleast_1d(axes)
        axes[0].imshow(result.image)
        axes[0].set_title("\n".join(f"{i + 1}. {label}: {p:.1%}" for i, (label, p) in enumerate(result.top5[:3])),
                          fontsize=9)
        for ax, (method, heat) in zip(axes[1:], result.maps.items()):
            _heat_panel(ax, result.image, heat, f"{METHOD_TITLES[method]}\nfor '{result.target_label}'", method)
        for ax in axes:
            ax.axis("off")
        fig.tight_layout()
        return fig


def _heat_panel(ax, image, heat, title: str, method: str) -> None:
    """Grad-CAM over the photo; IG and SmoothGrad as heat maps scaled to their 99th percentile."""
    heat = viz.to_numpy(heat)
    if method == "gradcam":
        ax.imshow(image)
        shown = ax.imshow(heat, cmap="jet", alpha=0.5, vmin=0, vmax=1)
    else:
        top = np.percentile(heat, 99)
        shown = ax.imshow(heat, cmap="hot", vmin=0, vmax=top if top > 0 else 1)
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)


# --------------------------------------------------------------------------------------------
# Misclassifications (exercise 5)
# --------------------------------------------------------------------------------------------
def top_region(heat: torch.Tensor, top: float = 0.2) -> torch.Tensor:
    """The pixels of a map (H, W) in its top ``top`` fraction (and > 0), as a bool mask (H, W)."""
    if not 0 < top <= 1:
        raise ValueError(f"top is a fraction of the pixels in (0, 1], got {top}")
    heat = torch.as_tensor(heat).float()
    return (heat >= torch.quantile(heat.flatten(), 1 - top)) & (heat > 0)


def map_overlap(a: torch.Tensor, b: torch.Tensor, top: float = 0.2) -> float:
    """Intersection over union of the top-``top`` regions of two maps (H, W); 0 when both are empty."""
    if a.shape != b.shape:
        raise ValueError(f"the maps must have the same shape to overlap, got {tuple(a.shape)} and {tuple(b.shape)}")
    ra, rb = top_region(a, top), top_region(b, top)
    union = (ra | rb).sum()
    return float((ra & rb).sum() / union) if union > 0 else 0.0


def misclassification_stats(model, target_layer, x: torch.Tensor, true_class: int, *, top: float = 0.2) -> dict:
    """The numbers behind a misclassification report for one input ``x`` (1, C, H, W) (exercise 5).

    Returns {"predicted": top class index, "predicted_probability", "true_rank": 1 for the top class,
    "true_probability", "cam_overlap": :func:`map_overlap` of the Grad-CAMs of the predicted and the
    true class}. Probabilities are the softmax of the logits.
    """
    with torch.no_grad():
        probs = model(x).softmax(-1)[0]
    predicted = int(probs.argmax())
    cams = cam.grad_cam(model, target_layer, x.expand(2, *x.shape[1:]), [predicted, true_class])
    return {
        "predicted": predicted,
        "predicted_probability": float(probs[predicted]),
        "true_rank": int((probs > probs[true_class]).sum()) + 1,
        "true_probability": float(probs[true_class]),
        "cam_overlap": map_overlap(cams[0], cams[1], top),
    }


def diagnose(stats: dict, labels: list[str]) -> list[str]:
    """Findings, each drawn from a measured number of :func:`misclassification_stats` (exercise 5)."""
    missing = {"predicted", "true", "true_rank", "true_probability", "predicted_probability", "cam_overlap"} - set(stats)
    if missing:
        raise ValueError(f"stats lacks {sorted(missing)}: pass the dict that misclassification_stats returns")
    pred, true = labels[stats["predicted"]], labels[stats["true"]]
    rank, p_true, p_pred = stats["true_rank"], stats["true_probability"], stats["predicted_probability"]
    overlap = stats["cam_overlap"]
    if rank == 1:
        return [f"correct: '{true}' is the top class with probability {p_true:.1%}."]
    findings = [f"'{pred}' ({p_pred:.1%}) beats the true class '{true}' ({p_true:.2%}, rank {rank}) "
                f"by a factor of {p_pred / max(p_true, 1e-12):.0f}."]
    if rank <= 5:
        findings.append(f"near miss: the true class is in the top 5 (rank {rank}); the classes compete, "
                        "look for what tells them apart.")
    elif p_true < 0.01:
        findings.append(f"the model hardly considers '{true}' (rank {rank}, below 1%): the evidence it "
                        "learned for that class is missing or looks different in this image.")
    else:
        findings.append(f"'{true}' is plausible to the model ({p_true:.1%}) but outranked by {rank - 1} classes.")
    if overlap >= 0.5:
        findings.append(f"same place, different reading: the Grad-CAMs of both classes overlap (IoU {overlap:.2f}); "
                        f"the model looks at the right region but reads it as '{pred}'.")
    elif overlap < 0.2:
        findings.append(f"different places: the Grad-CAMs barely overlap (IoU {overlap:.2f}); '{pred}' comes from "
                        "another part of the image: check whether that region is the object or its context.")
    else:
        findings.append(f"partial overlap: the Grad-CAMs share part of their top regions (IoU {overlap:.2f}).")
    return findings


@dataclass
class MisclassificationReport:
    """Predicted vs true class with their maps (each (H, W) >= 0), the measured numbers and the
    diagnosis drawn from them."""

    image: np.ndarray
    top5: list[tuple[str, float]]
    stats: dict
    predicted_label: str
    true_label: str
    maps: dict[str, dict[str, torch.Tensor]]
    diagnosis: list[str]

    def __str__(self) -> str:
        s = self.stats
        lines = [f"true class:  {self.true_label} (rank {s['true_rank']}, {s['true_probability']:.2%})",
                 f"predicted:   {self.predicted_label} ({s['predicted_probability']:.1%})", "top-5:"]
        lines += [f"  {'*' if label == self.true_label else ' '} {i + 1}. {label}: {p:.2%}"
                  for i, (label, p) in enumerate(self.top5)]
        lines += [f"Grad-CAM overlap (IoU of the top 20% regions): {s['cam_overlap']:.2f}",
                  f"IG overlap (IoU of the top 20% regions): {s['ig_overlap']:.2f}", "diagnosis:"]
        return "\n".join(lines + [f"  - {finding}" for finding in self.diagnosis])


class MisclassificationAnalyzer:
    """Why did the model not say ``true_label``? (chapter 05, exercise 5)

    ``analyze(img, true_label)`` takes a class index or an ImageNet name (typos get suggestions)
    and returns a :class:`MisclassificationReport`: the true class's rank and probability, Grad-CAM
    and IG for the predicted and the true class, how much their top regions overlap, and findings
    computed from those numbers. ``plot(report)`` draws the 2 x 3 panel of the source.
    """

    def __init__(self, image_model: ImageModel, *, ig_steps: int = 50, top: float = 0.2):
        self.interpreter = ImageClassifierInterpreter(image_model, ig_steps=ig_steps)
        self.top = top

    def analyze(self, img, true_label) -> MisclassificationReport:
        im = self.interpreter.image_model
        true = im.class_index(true_label)
        x = im.preprocess(img)
        stats = misclassification_stats(im.model, im.target_layer, x, true, top=self.top)
        stats["true"] = true
        predicted = stats["predicted"]
        maps = {method: {"predicted": self.interpreter._map(method, x, predicted),
                         "true": self.interpreter._map(method, x, true)} for method in ("gradcam", "ig")}
        stats["ig_overlap"] = map_overlap(maps["ig"]["predicted"], maps["ig"]["true"], self.top)
        return MisclassificationReport(
            image=im.view(img), top5=im.predict(x, 5), stats=stats, predicted_label=im.labels[predicted],
            true_label=im.labels[true], maps=maps, diagnosis=diagnose(stats, im.labels))

    def plot(self, report: MisclassificationReport, size: float = 3.6):
        """Row 1: photo, Grad-CAM (predicted), Grad-CAM (true); row 2: IG (predicted), IG (true)."""
        fig, axes = plt.subplots(2, 3, figsize=(3 * size, 2 * size + 0.8))
        axes[0, 0].imshow(report.image)
        axes[0, 0].set_title(f"true: {report.true_label} (rank {report.stats['true_rank']})\n"
                             f"predicted: {report.predicted_label}", fontsize=9)
        for row, method in enumerate(("gradcam", "ig")):
            for col, which in enumerate(("predicted", "true"), start=1):
                label = report.predicted_label if which == "predicted" else report.true_label
                _heat_panel(axes[row, col], report.image, report.maps[method][which],
                            f"{METHOD_TITLES[method]}: {which}\n'{label}'", method)
        overlaps = report.stats
        axes[1, 0].text(0.0, 0.5, f"overlap of the top 20% regions (IoU)\nGrad-CAM: {overlaps['cam_overlap']:.2f}\n"
                                  f"IG: {overlaps['ig_overlap']:.2f}", fontsize=10, va="center")
        for ax in axes.flat:
            ax.axis("off")
        fig.tight_layout()
        return fig
