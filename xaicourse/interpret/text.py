"""Explaining a sentence classifier token by token. Chapter 05 (source section 4.5).

The source chapter runs DistilBERT's whole embedding module (word + position embeddings +
LayerNorm) and feeds its output back in as ``inputs_embeds``; the model then adds the position
embeddings and applies LayerNorm a second time, so the function it explains is not the classifier
that made the prediction. Here the explained function is ``model(input_ids, attention_mask).logits``
itself, and the attribution is taken at the word-embedding table (``model.get_input_embeddings()``),
the only part that differs between a sentence and its baseline.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from ..batching import chunk_limit
from ..hooks import eval_mode
from ..inputs import check_int
from ..models import TextModel, class_index
from ..targets import resolve_targets
from ..viz import token_bars, token_html

__all__ = ["NEUTRAL_FILLERS", "TEXT_BASELINES", "TextClassifierInterpreter", "TextExplanation", "UNKNOWN_SHARE_WARNING"]

TEXT_BASELINES = ("pad", "zero", "mask", "neutral")
#: The filler words the "neutral" baseline chooses from: common words without sentiment of their own.
NEUTRAL_FILLERS = ("the", "movie", "film", "a", "is", "and", "it", ".", "of", "this")
#: Warn when more than this share of a text's words are the tokenizer's unknown token.
UNKNOWN_SHARE_WARNING = 0.2
# Integrated Gradients path points per backward pass are sized to fit this many bytes.


@dataclass
class TextExplanation:
    """One sentence explained. ``attributions`` (T,) has one value per token, in logit units:
    ``attributions.sum() == logit(text) - logit(baseline) + delta`` for the ``target`` class.
    ``baseline_probabilities`` (C,) is what the model says about the baseline itself: a baseline
    that already predicts the target class explains little (chapter 03's rule)."""

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
    baseline_probabilities: torch.Tensor | None = None
    baseline_tokens: list[str] | None = None

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
      kept). The baseline is a real input the tokenizer could produce; [CLS]/[SEP] get exactly zero
      attribution. Unknown words ([UNK], e.g. emoji) are words too: they are replaced and attributed.
    * ``"zero"``: all-zero word embeddings (also for [CLS]/[SEP]), the source chapter's choice. It
      is not a text the model ever saw, and [CLS]/[SEP] then take part of the attribution.
    * ``"mask"``: every word replaced by [MASK] ([CLS]/[SEP] kept, as for "pad"): the token a
      masked-language model was pre-trained to read as "a word is missing here".
    * ``"neutral"``: a neutral reference text of the same token length: every word replaced by one
      filler word from :data:`NEUTRAL_FILLERS`, the one whose repetition the model scores closest to
      uniform over the classes (chosen per sentence length; ``baseline_tokens`` shows it). It is
      chapter 03's rule made explicit: a baseline should carry no evidence for any class.

    All four are Integrated Gradients over the word embeddings with ``n_steps`` Gauss-Legendre steps,
    explaining the target class's logit, with the path points batched to a memory budget.
    """

    def __init__(self, text_model: TextModel, *, baseline: str = "pad", n_steps: int = 50):
        if not isinstance(text_model, TextModel):
            raise TypeError(f"text_model must be a xaicourse TextModel (e.g. xc.models.sentiment_classifier()), "
                            f"got {type(text_model).__name__}")
        _check_baseline(baseline)
        self.text_model = text_model
        self.baseline = baseline
        self.n_steps = check_int("n_steps", n_steps)

    def logits(self, text: str) -> torch.Tensor:
        """The classifier's logits for one text, shape (1, C)."""
        enc = self.text_model.encode(text)
        with torch.no_grad(), eval_mode(self.text_model.model):
            return self._forward(enc["input_ids"], enc["attention_mask"])

    def interpret(self, text: str, target=None, *, baseline: str | None = None,
                  n_steps: int | None = None) -> TextExplanation:
        """Attribute the ``target`` class's logit (None: the predicted class; an index or a label
        name) to the tokens of ``text``. Empty text is a ValueError."""
        baseline = self.baseline if baseline is None else baseline
        n_steps = self.n_steps if n_steps is None else check_int("n_steps", n_steps)
        _check_baseline(baseline)
        enc = self.text_model.encode(text)
        self._warn_unknown(enc["input_ids"])
        with eval_mode(self.text_model.model):
            return self._explain(text, enc, target, baseline, n_steps)

    def _explain(self, text, enc, target, baseline, n_steps) -> TextExplanation:
        from captum.attr import IntegratedGradients, LayerIntegratedGradients

        ids, mask = enc["input_ids"], enc["attention_mask"]
        with torch.no_grad():
            logits = self._forward(ids, mask)
        probs = logits.softmax(-1)[0]
        labels = self._labels()
        if isinstance(target, str):
            target = class_index(labels, target)
        target = int(resolve_targets(target, logits)[0])
        embeddings = self.text_model.model.get_input_embeddings()
        if baseline != "zero":
            reference = self._token_baseline(ids, mask, baseline)
            method, inputs, forward_inputs = LayerIntegratedGradients(self._forward, embeddings), ids, (reference, mask)
        else:
            with torch.no_grad():
                inputs = embeddings(ids)
            reference = torch.zeros_like(inputs)
            method, forward_inputs = IntegratedGradients(self._forward_embeddings), (reference, mask)
        with torch.no_grad():
            base_logits = (self._forward if baseline != "zero" else self._forward_embeddings)(*forward_inputs)
        attr, delta = method.attribute(inputs, baselines=reference, target=target, additional_forward_args=(mask,),
                                       n_steps=n_steps, return_convergence_delta=True,
                                       internal_batch_size=self._points_per_pass(ids, mask, n_steps))
        prediction = int(probs.argmax())
        return TextExplanation(
            text=text, tokens=self.text_model.tokens(enc), attributions=attr.sum(-1)[0].detach().cpu(),
            target=target, target_label=labels[target], prediction=prediction, label=labels[prediction],
            probability=float(probs[prediction]), probabilities=probs.cpu(), delta=float(delta[0]),
            baseline=baseline, n_steps=n_steps, baseline_probabilities=base_logits.softmax(-1)[0].cpu(),
            baseline_tokens=(self.text_model.tokenizer.convert_ids_to_tokens(reference[0].tolist())
                             if baseline != "zero" else None))

    def plot(self, result: TextExplanation, ax=None):
        """Bar chart of the per-token attributions (green: towards the target class, red: against)."""
        base = ""
        if result.baseline_probabilities is not None:
            base = f"; baseline says '{result.target_label}' with p = {float(result.baseline_probabilities[result.target]):.2f}"
        return token_bars(result.tokens, result.attributions, ax=ax,
                          ylabel=f"attribution to '{result.target_label}'\n(logit units)",
                          title=f"prediction: {result.label} ({result.probability:.1%}); sum {result.attributions.sum():.2f} "
                                f"= logit change {result.completeness:.2f} + delta {result.delta:.3f} "
                                f"[{result.baseline} baseline{base}]")

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
        return self._fill_words(ids, self.text_model.tokenizer.pad_token_id)

    def _fill_words(self, ids: torch.Tensor, token_id: int) -> torch.Tensor:
        """``ids`` with every word replaced by ``token_id``; [CLS], [SEP] and padding kept."""
        tokenizer = self.text_model.tokenizer
        keep = [t for t in (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.bos_token_id,
                            tokenizer.eos_token_id, tokenizer.pad_token_id) if t is not None]
        structural = torch.isin(ids, torch.tensor(keep, device=ids.device))
        return torch.where(structural, ids, torch.full_like(ids, token_id))

    def _token_baseline(self, ids: torch.Tensor, mask: torch.Tensor, baseline: str) -> torch.Tensor:
        """The token ids of a "pad", "mask" or "neutral" baseline for ``ids``."""
        tokenizer = self.text_model.tokenizer
        if baseline == "pad":
            return self._pad_baseline(ids)
        if baseline == "mask":
            if tokenizer.mask_token_id is None:
                raise ValueError(f"the tokenizer of this model ({type(tokenizer).__name__}) has no [MASK] token: "
                                 "use baseline='pad', 'zero' or 'neutral'")
            return self._fill_words(ids, tokenizer.mask_token_id)
        vocab = tokenizer.get_vocab()
        candidates = [self._fill_words(ids, vocab[w]) for w in NEUTRAL_FILLERS if w in vocab]
        if not candidates:
            raise ValueError("none of the neutral filler words xc.interpret.text.NEUTRAL_FILLERS is in this "
                             "tokenizer's vocabulary: use baseline='pad', 'mask' or 'zero'")
        batch = torch.cat(candidates)
        with torch.no_grad():
            probs = self._forward(batch, mask.expand_as(batch)).softmax(-1)
        distance = (probs - 1.0 / probs.shape[-1]).abs().amax(-1)
        return candidates[int(distance.argmin())]

    def _points_per_pass(self, ids, mask, n_steps: int) -> int:
        """IG path points per backward pass: the bytes one point keeps, measured, against the budget."""
        model = self.text_model.model
        with torch.enable_grad():
            vectors = model.get_input_embeddings()(ids).detach().requires_grad_(True)
            return chunk_limit(model, lambda: self._forward_embeddings(vectors, mask).sum(), grad=True, n_items=n_steps)

    def _warn_unknown(self, ids: torch.Tensor) -> None:
        unk = self.text_model.tokenizer.unk_token_id
        words = ids.numel() - 2
        if unk is None or words <= 0:
            return
        share = float((ids == unk).sum()) / words
        if share > UNKNOWN_SHARE_WARNING:
            warnings.warn(f"{share:.0%} of the text's tokens are unknown to the tokenizer ([UNK], e.g. emoji or rare "
                          "characters): the model cannot tell them apart, so their attributions say little",
                          stacklevel=3)

    def _labels(self) -> list[str]:
        config = self.text_model.model.config
        return self.text_model.labels or [config.id2label[i] for i in range(config.num_labels)]


def _check_baseline(baseline) -> None:
    if baseline not in TEXT_BASELINES:
        raise ValueError(f"unknown text baseline {baseline!r}: choose 'pad' ([PAD] tokens), 'mask' ([MASK] tokens), "
                         "'neutral' (a neutral filler word of the same length) or 'zero' (zero embeddings)")
