"""The offline sentiment classifier (chapter 05): data split, trained parameters, accuracy, errors."""
import os
import time

import pytest
import torch
from safetensors import safe_open

import xaicourse as xc
from xaicourse import environment, models, train

needs_reviews = pytest.mark.skipif(not (environment.ASSETS / "hutto_ICWSM_2014").exists(),
                                   reason="the movie-review sentences are fetched by `make setup`")


@pytest.fixture(scope="module")
def sentiment():
    return models.sentiment_classifier()


@needs_reviews
def test_movie_review_split_is_fixed_and_disjoint():
    train_set, test_set = xc.data.movie_reviews("train"), xc.data.movie_reviews("test")
    assert (len(train_set), len(test_set)) == (8457, 2111)
    assert (test_set.ids % 5 == 0).all() and (train_set.ids % 5 != 0).all()
    assert len(xc.data.movie_reviews("all")) == len(train_set) + len(test_set)
    for d in (train_set, test_set):
        assert torch.equal(d.labels, (d.scores > 0).long()) and (d.scores != 0).all()
        assert 0.45 < d.labels.float().mean() < 0.55 and d.classes == ("negative", "positive")
    text, label = test_set[0]
    assert isinstance(text, str) and text and int(label) in (0, 1)
    with pytest.raises(ValueError, match="'train', 'test' or 'all'"):
        xc.data.movie_reviews("validation")


def test_bundle_and_obvious_sentences(sentiment):
    assert sentiment.labels == ["negative", "positive"] and sentiment.name == models.OFFLINE_SENTIMENT
    assert not sentiment.model.training
    assert models.sentiment_classifier() is sentiment  # cached
    positive = ["A wonderful, moving film.", "Brilliant acting and a beautiful story.",
                "This movie is absolutely fantastic and amazing!", "One of the best films of the year."]
    negative = ["A dull, boring mess.", "This is the worst film I have ever seen.",
                "The plot is predictable and the acting is terrible.", "A tedious waste of two hours."]
    probs = train.predict_texts(sentiment, positive + negative)
    assert probs.shape == (8, 2) and torch.allclose(probs.sum(1), torch.ones(8))
    assert probs.argmax(1).tolist() == [1] * 4 + [0] * 4, probs


@needs_reviews
def test_held_out_accuracy_at_least_80_percent(sentiment):
    test_set = xc.data.movie_reviews("test")
    accuracy = (train.predict_texts(sentiment, test_set.texts).argmax(1) == test_set.labels).float().mean().item()
    assert accuracy >= 0.80, accuracy


def test_committed_parameters_are_small_and_only_the_trained_ones():
    assert os.path.getsize(models.SENTIMENT_WEIGHTS) < 20 * 2**20
    with safe_open(models.SENTIMENT_WEIGHTS, "pt") as f:
        keys, meta = set(f.keys()), f.metadata()
    assert keys and all(k.startswith(models.SENTIMENT_TRAINED) for k in keys)
    assert float(meta["test_accuracy"]) >= 0.80 and meta["seed"] == "0"
    with pytest.raises(ValueError, match="do not fit"):
        models.minilm_classifier({"classifier.weight": torch.zeros(2, 384)})


@needs_reviews
def test_training_top_matches_the_full_model():
    """The cached-feature path used for training computes exactly the classifier's logits."""
    torch.manual_seed(0)
    model = models.minilm_classifier()
    tokenizer = models.bert().tokenizer
    texts = ["A great movie.", "This is the worst film I have ever seen, truly awful and boring."]
    features = train._frozen_features(model, tokenizer, texts, 128, "test")
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        torch.testing.assert_close(train._top_logits(model, features), model(**enc).logits, atol=1e-3, rtol=1e-3)


def test_unknown_and_offline_models_fail_fast(monkeypatch):
    with pytest.raises(ValueError, match="distilbert-base-uncased-finetuned-sst-2-english"):
        models.sentiment_classifier("roberta-sentiment")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    try:
        models.sentiment_classifier("distilbert-base-uncased-finetuned-sst-2-english")
    except models.OfflineError as err:
        assert "sentiment_classifier()" in str(err)
    else:  # cached on this machine: then it must have the same interface
        assert models.sentiment_classifier("distilbert-base-uncased-finetuned-sst-2-english").labels == ["negative", "positive"]
    assert time.monotonic() - start < 10


def test_predict_texts_rejects_a_single_string(sentiment):
    with pytest.raises(ValueError, match="list of strings"):
        train.predict_texts(sentiment, "A single sentence.")
