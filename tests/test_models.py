import socket
import time

import pytest
import torch

import xaicourse as xc
from xaicourse.models import OfflineError


def _online(host):
    try:
        socket.create_connection((host, 443), timeout=2).close()
        return True
    except OSError:
        return False


def test_cat_photo_is_a_cat(cnn):
    top1, p = cnn.predict(xc.data.image("cat"), k=1)[0]
    assert top1 in {"tiger cat", "Egyptian cat", "tabby"}
    assert p > 0.3


def test_coffee_is_espresso(cnn):
    label, p = cnn.predict(xc.data.image("coffee"), k=1)[0]
    assert label == "espresso" and p > 0.9


def test_image_bundle(cnn, cat_x):
    assert not cnn.model.training
    assert len(cnn.labels) == 1000 and cnn.labels[281] == "tabby"
    assert cat_x.shape == (1, 3, 224, 224) and cat_x.dtype == torch.float32
    # mean = std = 0.5: inputs live in [-1, 1] and to_image undoes it exactly
    assert cat_x.min() >= -1 and cat_x.max() <= 1
    assert torch.allclose(torch.from_numpy(cnn.to_image(cat_x)), torch.from_numpy(cnn.view(xc.data.image("cat"))), atol=1e-6)
    preds = cnn.predict(cat_x, k=5)
    assert len(preds) == 5 and all(a[1] >= b[1] for a, b in zip(preds, preds[1:]))
    assert abs(sum(cnn.probabilities(cat_x)[0]).item() - 1) < 1e-4


def test_target_layer_is_the_last_feature_map(cnn, cat_x):
    with xc.hooks.record_layer(cnn.model, cnn.target_layer) as rec, torch.no_grad():
        cnn.model(cat_x)
    assert rec.activations.shape == (1, 1280, 7, 7)
    assert rec.activations.min() >= 0  # after ReLU6


def test_loaders_are_cached():
    assert xc.models.imagenet_cnn() is xc.models.imagenet_cnn()
    assert xc.models.bert() is xc.models.bert()
    start = time.perf_counter()
    xc.models.imagenet_cnn()
    assert time.perf_counter() - start < 0.01


def test_class_index_by_name_and_typo(cnn):
    assert cnn.class_index("Tabby") == 281 and cnn.class_index(281) == 281
    with pytest.raises(ValueError, match="football helmet"):
        cnn.class_index("footbal helmet")
    with pytest.raises(ValueError, match="0..999"):
        cnn.class_index(1000)


def test_bert_has_eager_attention(bert):
    enc = bert.encode("The cat sat on the mat")
    assert bert.tokens(enc) == ["[CLS]", "the", "cat", "sat", "on", "the", "mat", "[SEP]"]
    with torch.no_grad():
        out = bert.model(**enc, output_attentions=True)
    assert len(out.attentions) == 6
    for layer in out.attentions:
        assert layer.shape == (1, 12, 8, 8)
        assert torch.allclose(layer.sum(-1), torch.ones(1, 12, 8), atol=1e-5)


def test_text_encoding_errors_and_truncation(bert):
    with pytest.raises(ValueError, match="empty"):
        bert.encode("   ")
    with pytest.raises(TypeError):
        bert.encode(None)
    with pytest.warns(UserWarning, match="truncated"):
        enc = bert.encode("word " * 1000)
    assert enc["input_ids"].shape[1] == bert.max_length


def test_unknown_model_names():
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        xc.models.imagenet_cnn("vgg16")
    with pytest.raises(ValueError, match="all-MiniLM-L6-v2"):
        xc.models.bert("roberta")


@pytest.mark.skipif(_online("download.pytorch.org"), reason="network available: the offline failure cannot be tested")
def test_resnet50_offline_fails_fast_naming_the_default():
    start = time.perf_counter()
    with pytest.raises(OfflineError, match="efficientnet_lite0"):
        xc.models.imagenet_cnn("resnet50")
    assert time.perf_counter() - start < 10


@pytest.mark.skipif(_online("huggingface.co"), reason="network available: the offline failure cannot be tested")
def test_bert_base_offline_fails_fast_naming_the_default():
    start = time.perf_counter()
    with pytest.raises(OfflineError, match="all-MiniLM-L6-v2"):
        xc.models.bert("bert-base-uncased")
    assert time.perf_counter() - start < 10


def test_lite0_key_mapping():
    from xaicourse.models import _lite0_key

    assert _lite0_key("_conv_stem.weight") == "conv_stem.weight"
    assert _lite0_key("_blocks.0._depthwise_conv.weight") == "blocks.0.0.conv_dw.weight"
    assert _lite0_key("_blocks.0._bn1.bias") == "blocks.0.0.bn1.bias"
    assert _lite0_key("_blocks.2._expand_conv.weight") == "blocks.1.1.conv_pw.weight"
    assert _lite0_key("_blocks.15._bn2.running_mean") == "blocks.6.0.bn3.running_mean"
    assert _lite0_key("_fc.bias") == "classifier.bias"
