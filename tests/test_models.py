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
    from xaicourse.models.remap import lite0_key

    assert lite0_key("_conv_stem.weight") == "conv_stem.weight"
    assert lite0_key("_blocks.0._depthwise_conv.weight") == "blocks.0.0.conv_dw.weight"
    assert lite0_key("_blocks.0._bn1.bias") == "blocks.0.0.bn1.bias"
    assert lite0_key("_blocks.2._expand_conv.weight") == "blocks.1.1.conv_pw.weight"
    assert lite0_key("_blocks.15._bn2.running_mean") == "blocks.6.0.bn3.running_mean"
    assert lite0_key("_fc.bias") == "classifier.bias"


def test_block_position_walks_the_stages_and_names_the_block_it_was_given():
    from xaicourse.models.remap import LITE0_STAGE_REPEATS, block_position

    positions = [block_position(i) for i in range(sum(LITE0_STAGE_REPEATS))]
    assert positions[:6] == [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (3, 0)]
    assert positions[-2:] == [(5, 3), (6, 0)]
    assert [sum(1 for s, _ in positions if s == stage) for stage in range(7)] == list(LITE0_STAGE_REPEATS)
    for index in (16, 40, -1):  # the message names the block asked for, not what was left of the count
        with pytest.raises(KeyError, match=rf"block {index} is beyond EfficientNet-Lite0's 16 blocks"):
            block_position(index)


def test_normalization_round_trip_and_errors():
    norm = xc.models.Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    pixels = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    x = norm.normalize(pixels)
    assert x.dtype == torch.float64
    assert torch.allclose(x[:, 1], (pixels[:, 1] - 0.456) / 0.224)
    assert torch.allclose(norm.denormalize(x), pixels, atol=1e-12)
    assert torch.allclose(norm.denormalize(norm.normalize(pixels[0])), pixels[0], atol=1e-12)  # (C, H, W)
    assert torch.equal(xc.models.Normalization.identity().normalize(pixels), pixels)
    one_for_all = xc.models.Normalization(0.5, 0.5)
    assert torch.equal(one_for_all.normalize(torch.ones(1, 3, 2, 2)), torch.ones(1, 3, 2, 2))
    with pytest.raises(ValueError, match="positive"):
        xc.models.Normalization((0.5, 0.5, 0.5), (0.5, 0.0, 0.5))
    with pytest.raises(ValueError, match="3 means but 2 stds"):
        xc.models.Normalization((0.5, 0.5, 0.5), (0.5, 0.5))
    with pytest.raises(ValueError, match="C = 3 channels"):
        norm.normalize(torch.rand(1, 4, 2, 2))
    with pytest.raises(TypeError, match="torch.Tensor"):
        norm.normalize([[0.5]])


def test_bundles_share_one_normalization(cnn, cat_x):
    assert cnn.normalization == xc.models.Normalization((0.5,) * 3, (0.5,) * 3)
    assert (cnn.mean, cnn.std) == (cnn.normalization.mean, cnn.normalization.std)
    pixels = torch.from_numpy(cnn.view(xc.data.image("cat"))).permute(2, 0, 1)
    assert torch.equal(cat_x[0], cnn.normalization.normalize(pixels))
    vit = xc.models.tiny_vit()
    assert vit.normalization == xc.models.Normalization.identity()
    image = xc.data.shapes(1, seed=0).images
    assert torch.equal(vit.preprocess(image), image)
    assert torch.allclose(torch.from_numpy(vit.to_image(vit.preprocess(image))), image[0].permute(1, 2, 0))


def test_image_model_checks_labels_against_the_outputs():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 10)).train()
    norm = xc.models.Normalization.identity()
    with pytest.raises(ValueError, match="10 class scores but labels has 3 names"):
        xc.models.ImageModel(model, ["a", "b", "c"], model[0], "mine", norm, resize=32, crop=32)
    assert model.training and model[3].num_batches_tracked == 0  # probed in eval mode, mode restored
    bundle = xc.models.ImageModel(model.eval(), [f"class {i}" for i in range(10)], model[0], "mine", norm, resize=32, crop=32)
    assert len(bundle.predict(torch.zeros(1, 3, 32, 32), k=20)) == 10
    with pytest.raises(ValueError, match="12 names"):
        xc.models.VisionTransformer(xc.models.TinyViT(n_classes=3), list("abcdefghijkl"), "vit", 64, 8)
    with pytest.raises(ValueError, match="cannot read an input of shape \\(1, 3, 32, 32\\)"):
        xc.models.ImageModel(torch.nn.Linear(5, 2), ["a", "b"], None, "flat", norm, resize=32, crop=32)
    with pytest.raises(TypeError, match="list of class names"):
        xc.models.ImageModel(model, "abcdefghij", model[0], "mine", norm, resize=32, crop=32)
    with pytest.raises(TypeError, match="Normalization"):
        xc.models.ImageModel(model, list("abcdefghij"), model[0], "mine", ((0.5,) * 3, (0.5,) * 3), resize=32, crop=32)


def test_text_model_checks_labels_against_the_head():
    sentiment = xc.models.sentiment_classifier()
    with pytest.raises(ValueError, match="2 class scores but labels has 3 names"):
        xc.models.TextModel(sentiment.model, sentiment.tokenizer, "three", labels=["neg", "neutral", "pos"])
    assert not hasattr(xc.models.TextModel(sentiment.model, sentiment.tokenizer, "plain"), "config")


def test_registry_lists_every_loader_with_its_offline_default():
    families = xc.models.registry.FAMILIES
    assert {name: family.default for name, family in families.items()} == {
        "imagenet_cnn": "efficientnet_lite0", "bert": "all-MiniLM-L6-v2", "vit": "tiny_vit",
        "sentiment_classifier": "minilm-movie-reviews", "shapes_cnn": "shortcut", "shapes_resnet": "clean",
        "tiny_gpt": "tiny_gpt"}
    for name, family in families.items():
        assert set(family.builders) == set(family.offline) | set(family.online), name
        assert callable(getattr(xc.models, name)) and family.default_call.startswith(name)
    with pytest.raises(TypeError, match="is a str"):
        xc.models.vit(None)


def test_missing_weights_say_how_to_train_them(monkeypatch, tmp_path):
    monkeypatch.setattr(xc.paths, "data_dir", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match=r"tiny_vit.pt is missing: train it with .*train_tiny_vit\(\)"):
        xc.paths.trained("tiny_vit.pt")
    with pytest.raises(FileNotFoundError, match=r"train_shapes_cnn\('clean'\)"):
        xc.models.loaders._shapes_cnn("clean")
    with pytest.raises(ValueError, match="ships 'sentiment_minilm.safetensors'"):
        xc.paths.weights("resnet.pt")


def test_shapes_resnet_is_built_of_torchvision_blocks_and_scores_what_it_recorded():
    from torchvision.models.resnet import BasicBlock

    resnet = xc.models.shapes_resnet()
    saved = torch.load(xc.paths.trained("shapes_resnet.pt"), map_location="cpu", weights_only=True)
    assert sum(isinstance(m, BasicBlock) for m in resnet.modules()) == 4 and not resnet.training
    assert xc.train.shapes_accuracy(resnet, marker=0.0) == pytest.approx(saved["test_accuracy"], abs=1e-6)
    assert saved["test_accuracy"] > 0.95
    assert xc.models.shapes_resnet() is resnet  # cached
