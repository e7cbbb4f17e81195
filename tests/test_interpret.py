"""xaicourse.interpret (chapter 05): image and text reports with real values, the misclassification
analysis, and clear errors. Oracles: the package's own methods (tested against Captum and
pytorch-grad-cam in their chapters) and Captum's IntegratedGradients for the text side."""
import pytest
import torch

import xaicourse as xc
from xaicourse import cam, interpret, models
from xaicourse.testing import assert_unchanged, snapshot

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def coffee_report(cnn):
    interpreter = interpret.ImageClassifierInterpreter(cnn, ig_steps=20, smoothgrad_samples=10)
    return interpreter.interpret(xc.data.image("coffee"))


def test_image_report_fields(cnn, coffee_report):
    r = coffee_report
    assert r.top5[0][0] == "espresso" and r.top5[0][1] > 0.9
    assert [p for _, p in r.top5] == sorted((p for _, p in r.top5), reverse=True) and len(r.top5) == 5
    assert r.target == cnn.class_index("espresso") and r.target_label == "espresso"
    assert r.image.shape == (224, 224, 3) and tuple(r.x.shape) == (1, 3, 224, 224)
    assert set(r.maps) == {"gradcam", "ig", "smoothgrad"}
    for heat in r.maps.values():
        assert heat.shape == (224, 224) and torch.isfinite(heat).all() and heat.min() >= 0 and heat.max() > 0
    assert 0 <= r.ig_error < 0.3  # 20 Gauss-Legendre steps: a few per cent on this photo


def test_image_maps_are_the_chapters_methods(cnn, coffee_report):
    expected = cam.grad_cam(cnn.model, cnn.target_layer, coffee_report.x, coffee_report.target)[0]
    torch.testing.assert_close(coffee_report.maps["gradcam"], expected)
    baseline = xc.ig.black_baseline(coffee_report.x, cnn)
    attribution = xc.ig.integrated_gradients(cnn.model, coffee_report.x, coffee_report.target, baseline=baseline, n_steps=20)
    torch.testing.assert_close(coffee_report.maps["ig"], attribution.abs().sum(1)[0])


def test_coffee_maps_have_more_energy_on_the_cup(coffee_report):
    cup = torch.zeros(224, 224, dtype=torch.bool)
    cup[0:150, 25:175] = True  # the cup and the coffee in the 224 x 224 crop
    for method, heat in coffee_report.maps.items():
        inside, outside = heat[cup].mean(), heat[~cup].mean()
        assert inside > 1.5 * outside, f"{method}: {inside:.4f} on the cup vs {outside:.4f} around it"


def test_cat_top1_and_target_by_name(cnn):
    interpreter = interpret.ImageClassifierInterpreter(cnn)
    r = interpreter.interpret(xc.data.image("cat"), methods=("gradcam",))
    assert r.top5[0][0] in {"tiger cat", "Egyptian cat", "tabby"}
    assert list(r.maps) == ["gradcam"] and r.ig_error is None
    tabby = interpreter.interpret(xc.data.image("cat"), methods=["gradcam"], target="Tabby")
    assert tabby.target == cnn.class_index("tabby") and tabby.target_label == "tabby"
    assert not torch.allclose(tabby.maps["gradcam"], r.maps["gradcam"])


def test_image_plot_has_labelled_panels(cnn, coffee_report):
    fig = interpret.ImageClassifierInterpreter(cnn).plot(coffee_report)
    titles = [ax.get_title() for ax in fig.axes]
    assert "1. espresso" in titles[0] and any("Grad-CAM" in t for t in titles)
    assert any("Integrated Gradients" in t for t in titles) and any("SmoothGrad" in t for t in titles)
    assert len(fig.axes) == 4 + 3  # photo, three maps, three colour bars


def test_image_bad_input(cnn, tmp_path):
    interpreter = interpret.ImageClassifierInterpreter(cnn)
    with pytest.raises(FileNotFoundError, match="no image file"):
        interpreter.interpret(tmp_path / "missing.jpg")
    with pytest.raises(ValueError, match="unknown method"):
        interpreter.interpret(xc.data.image("cat"), methods=("gradcam", "lime"))
    with pytest.raises(ValueError, match="unknown class name 'tabbby'"):
        interpreter.interpret(xc.data.image("cat"), target="tabbby")
    with pytest.raises(TypeError, match="ImageModel"):
        interpret.ImageClassifierInterpreter(cnn.model)


# --------------------------------------------------------------------------------------------
# Misclassification analysis
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def helmet(cnn):
    # 16 steps keep the test fast; they are too few for IG to converge on this photo, and the report says so
    with pytest.warns(UserWarning, match="Integrated Gradients has not converged.*ig_steps \\(now 16\\)"):
        return interpret.MisclassificationAnalyzer(cnn, ig_steps=16).analyze(xc.data.image("astronaut"), "crash helmet")


def test_astronaut_is_a_near_miss_on_the_helmet(cnn, helmet):
    s = helmet.stats
    assert helmet.predicted_label == "football helmet" and helmet.true_label == "crash helmet"
    probs = cnn.probabilities(xc.data.image("astronaut"))[0]
    true = cnn.class_index("crash helmet")
    assert s["true"] == true and s["true_probability"] == pytest.approx(float(probs[true]), rel=1e-5)
    assert s["true_rank"] == int((probs > probs[true]).sum()) + 1 and 5 < s["true_rank"] <= 10
    assert s["predicted_probability"] == pytest.approx(float(probs.max()), rel=1e-5)
    assert 0 <= s["cam_overlap"] <= 1 and 0 <= s["ig_overlap"] <= 1
    assert set(helmet.maps) == {"gradcam", "ig"} and set(helmet.maps["ig"]) == {"predicted", "true"}
    assert f"rank {s['true_rank']}" in helmet.diagnosis[0]
    assert f"IoU {s['cam_overlap']:.2f}" in helmet.diagnosis[-1]
    text = str(helmet)
    assert "true class:  crash helmet (rank" in text and "diagnosis:" in text
    assert max(s["ig_errors"]) >= interpret.IG_TOLERANCE
    assert f"IG completeness errors {s['ig_errors'][0]:.1%} / {s['ig_errors'][1]:.1%}" in text


def test_analyzer_accepts_an_index_and_rejects_typos(cnn, helmet):
    analyzer = interpret.MisclassificationAnalyzer(cnn, ig_steps=4)
    again = analyzer.analyze(xc.data.image("astronaut"), cnn.class_index("crash helmet"))
    assert again.stats["true_rank"] == helmet.stats["true_rank"]
    with pytest.raises(ValueError, match="crash helmet"):
        analyzer.analyze(xc.data.image("astronaut"), "crash helmit")
    with pytest.raises(ValueError, match="out of range"):
        analyzer.analyze(xc.data.image("astronaut"), 1000)
    with pytest.raises(FileNotFoundError):
        analyzer.analyze("no/such/photo.png", "crash helmet")


def test_stats_on_a_tiny_model_by_hand():
    model, layer, x, _ = xc.testing.misclassification_case()
    before = snapshot(model)
    with torch.no_grad():
        probs = model(x).softmax(-1)[0]
    order = probs.argsort(descending=True)
    stats = interpret.misclassification_stats(model, layer, x, int(order[3]))
    assert stats["predicted"] == int(order[0]) and stats["true_rank"] == 4
    assert stats["true_probability"] == pytest.approx(float(probs[order[3]]))
    same = interpret.misclassification_stats(model, layer, x, int(order[0]))
    assert same["true_rank"] == 1 and same["cam_overlap"] == 1.0
    assert_unchanged(model, before)


def test_map_overlap_by_hand():
    a = torch.zeros(10, 10)
    b = torch.zeros(10, 10)
    a[:2] = 1.0   # top 20 % = rows 0-1
    b[1:3] = 1.0  # rows 1-2: one shared row of two
    assert interpret.map_overlap(a, b) == pytest.approx(10 / 30)
    assert interpret.map_overlap(a, a) == 1.0
    assert interpret.map_overlap(torch.zeros(4, 4), torch.zeros(4, 4)) == 0.0  # no evidence: 0, not NaN
    with pytest.raises(ValueError, match="fraction"):
        interpret.top_region(a, top=0)


@pytest.mark.parametrize("rank, p_true, overlap, expect", [
    (1, 0.6, 1.0, "correct"),
    (3, 0.10, 0.7, "near miss"),
    (40, 0.001, 0.1, "hardly considers"),
    (12, 0.02, 0.3, "outranked by 11"),
])
def test_diagnosis_follows_the_numbers(rank, p_true, overlap, expect):
    labels = ["a", "b"]
    stats = interpret.MisclassificationStats(predicted=0, true=0 if rank == 1 else 1, true_rank=rank,
                                             true_probability=p_true, predicted_probability=0.6, cam_overlap=overlap)
    findings = " ".join(interpret.findings(stats, labels))
    assert expect in findings
    if rank > 1:
        assert ("same place" in findings) == (overlap >= 0.5) and ("different places" in findings) == (overlap < 0.2)


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sentiment():
    return models.sentiment_classifier()


@pytest.fixture(scope="module")
def text_interpreter(sentiment):
    return interpret.TextClassifierInterpreter(sentiment)


def _baseline_logit(sentiment, text, target, baseline):
    enc = sentiment.encode(text)
    with torch.no_grad():
        if baseline == "zero":
            zeros = torch.zeros(*enc["input_ids"].shape, sentiment.model.config.hidden_size)
            return float(sentiment.model(inputs_embeds=zeros, attention_mask=enc["attention_mask"]).logits[0, target])
        ids = enc["input_ids"].clone()
        filler = sentiment.tokenizer.mask_token_id if baseline == "mask" else sentiment.tokenizer.pad_token_id
        ids[0, 1:-1] = filler  # [CLS] words... [SEP] -> [CLS] [PAD]... [SEP] (or [MASK]...)
        return float(sentiment.model(input_ids=ids, attention_mask=enc["attention_mask"]).logits[0, target])


def test_text_report_fields(sentiment, text_interpreter):
    r = text_interpreter.interpret("A wonderful, moving film.")
    assert r.label == "positive" and r.prediction == 1 and r.target == 1 and r.probability > 0.8
    assert r.tokens == ["[CLS]", "a", "wonderful", ",", "moving", "film", ".", "[SEP]"]
    assert r.attributions.shape == (8,) and torch.isfinite(r.attributions).all()
    assert r.attributions[0] == 0 and r.attributions[-1] == 0  # [CLS]/[SEP] are in the [PAD] baseline too
    assert int(r.attributions.argmax()) == 2  # "wonderful"
    assert r.probabilities.sum().item() == pytest.approx(1.0, abs=1e-5)
    with torch.no_grad():
        logits = sentiment.model(**sentiment.encode(r.text)).logits[0]
    assert r.probability == pytest.approx(float(logits.softmax(-1)[1]), rel=1e-5)


@pytest.mark.parametrize("baseline", ["pad", "zero", "mask"])
@pytest.mark.parametrize("text, target", [("The plot is a predictable mess.", None),
                                          ("Not bad at all, a pleasant surprise.", "negative")])
def test_text_attributions_sum_to_the_logit_change_within_delta(sentiment, text_interpreter, baseline, text, target):
    r = text_interpreter.interpret(text, target=target, baseline=baseline)
    with torch.no_grad():
        logit = float(sentiment.model(**sentiment.encode(text)).logits[0, r.target])
    change = logit - _baseline_logit(sentiment, text, r.target, baseline)
    assert float(r.attributions.sum()) - change == pytest.approx(r.delta, abs=1e-4)
    assert r.completeness == pytest.approx(change, abs=1e-4)
    assert abs(r.delta) < 0.05 * abs(change) + 0.02


def test_the_explained_model_is_the_predicting_model(sentiment, text_interpreter):
    """LIG over the embedding table == IG over inputs_embeds through the unchanged model; the
    source chapter's shortcut (embedding module output fed back as inputs_embeds) is another model."""
    from captum.attr import IntegratedGradients

    text = "An utterly charmless, tedious comedy."
    r = text_interpreter.interpret(text)
    enc = sentiment.encode(text)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    table = sentiment.model.get_input_embeddings()
    pad_ids = ids.clone()
    pad_ids[0, 1:-1] = sentiment.tokenizer.pad_token_id
    forward = lambda e, m: sentiment.model(inputs_embeds=e, attention_mask=m).logits  # noqa: E731
    with torch.no_grad():
        words, pad_words = table(ids), table(pad_ids)
        torch.testing.assert_close(forward(words, mask), sentiment.model(input_ids=ids, attention_mask=mask).logits)
        doubled = forward(sentiment.model.base_model.embeddings(ids), mask)
    assert not torch.allclose(doubled, forward(words, mask), atol=1e-2)
    expected = IntegratedGradients(forward).attribute(words, baselines=pad_words, target=r.target,
                                                      additional_forward_args=(mask,), n_steps=50)
    torch.testing.assert_close(r.attributions, expected.sum(-1)[0], atol=1e-4, rtol=1e-3)


def test_text_baselines_differ_on_special_tokens(text_interpreter):
    pad = text_interpreter.interpret("A dull movie.", baseline="pad")
    zero = text_interpreter.interpret("A dull movie.", baseline="zero")
    assert pad.baseline == "pad" and zero.baseline == "zero"
    assert pad.attributions[[0, -1]].abs().sum() == 0 and zero.attributions[[0, -1]].abs().sum() > 0


def _filled_logit(sentiment, text, target, token_id):
    enc = sentiment.encode(text)
    ids = enc["input_ids"].clone()
    ids[0, 1:-1] = token_id
    with torch.no_grad():
        return float(sentiment.model(input_ids=ids, attention_mask=enc["attention_mask"]).logits[0, target])


def test_mask_baseline_is_mask_tokens_between_cls_and_sep(sentiment, text_interpreter):
    """Was: "mask" rejected. Now: [MASK] for every word, [CLS]/[SEP] kept, completeness against it."""
    text = "This is the worst film I have ever seen."
    r = text_interpreter.interpret(text, baseline="mask")
    assert r.baseline == "mask"
    assert r.baseline_tokens == ["[CLS]"] + ["[MASK]"] * (len(r.tokens) - 2) + ["[SEP]"]
    assert r.attributions[0] == 0 and r.attributions[-1] == 0
    with torch.no_grad():
        logit = float(sentiment.model(**sentiment.encode(text)).logits[0, r.target])
    change = logit - _filled_logit(sentiment, text, r.target, sentiment.tokenizer.mask_token_id)
    assert r.completeness == pytest.approx(change, abs=1e-4)
    ids = sentiment.encode(text)["input_ids"].clone()
    ids[0, 1:-1] = sentiment.tokenizer.mask_token_id
    with torch.no_grad():
        expected = sentiment.model(input_ids=ids).logits.softmax(-1)[0]
    torch.testing.assert_close(r.baseline_probabilities, expected, atol=1e-5, rtol=1e-4)
    # the [MASK] baseline differs from the [PAD] one: [PAD] reads as 90 % negative on this model
    pad = text_interpreter.interpret(text, baseline="pad")
    assert float(pad.baseline_probabilities[0]) > 0.8 > float(r.baseline_probabilities[0])


def test_neutral_baseline_is_the_filler_closest_to_uniform(sentiment, text_interpreter):
    text = "The movie was not bad at all."
    r = text_interpreter.interpret(text, baseline="neutral")
    fillers = set(r.baseline_tokens[1:-1])
    assert len(fillers) == 1 and fillers <= set(interpret.text.NEUTRAL_FILLERS)
    vocab = sentiment.tokenizer.get_vocab()
    distance = {w: abs(torch.tensor([_filled_logit(sentiment, text, c, vocab[w]) for c in (0, 1)]).softmax(0)[0] - 0.5)
                for w in interpret.text.NEUTRAL_FILLERS}
    assert fillers == {min(distance, key=distance.get)}
    assert abs(float(r.baseline_probabilities[0]) - 0.5) == pytest.approx(float(min(distance.values())), abs=1e-4)
    assert abs(float(r.baseline_probabilities[0]) - 0.5) < 0.1  # far closer to 50/50 than [PAD]'s 0.90
    with torch.no_grad():
        logit = float(sentiment.model(**sentiment.encode(text)).logits[0, r.target])
    base = _filled_logit(sentiment, text, r.target, vocab[fillers.pop()])
    assert r.completeness == pytest.approx(logit - base, abs=1e-4)
    assert abs(r.delta) < 0.05 * abs(logit - base) + 0.02


def test_text_model_left_as_found(sentiment, text_interpreter):
    before = snapshot(sentiment.model)
    text_interpreter.interpret("Fine.")
    text_interpreter.interpret("Fine.", baseline="zero")
    assert_unchanged(sentiment.model, before)
    assert xc.hooks.hooks_left(sentiment.model) == 0
    assert all(p.grad is None for p in sentiment.model.parameters()) and not sentiment.model.training


def test_text_renderings(text_interpreter):
    r = text_interpreter.interpret("Great <b>fun</b> & games.")
    page = text_interpreter.html(r)
    assert page.count("<span") == len(r.tokens) and "&lt;" in page and "<b>" not in page
    assert "rgba(40, 160, 60" in page and "prediction: " in page
    fig = text_interpreter.plot(r)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == r.tokens
    assert "prediction:" in ax.get_title() and "delta" in ax.get_title() and "logit" in ax.get_ylabel()


def test_text_bad_input(sentiment, text_interpreter):
    with pytest.raises(ValueError, match="empty"):
        text_interpreter.interpret("   ")
    with pytest.raises(ValueError, match="'positive'"):
        text_interpreter.interpret("Fine.", target="positve")
    with pytest.raises(ValueError, match="out of range"):
        text_interpreter.interpret("Fine.", target=2)
    with pytest.raises(TypeError, match="TextModel"):
        interpret.TextClassifierInterpreter(sentiment.model)
    with pytest.raises(ValueError, match="baseline"):
        interpret.TextClassifierInterpreter(sentiment, baseline="unk")
