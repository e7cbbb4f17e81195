"""Reliability under bad input: every public entry point fails at the boundary, clearly.

Each case feeds one bad input and asserts (1) the exception type, (2) a message that names the problem,
and (3) that it was raised by xaicourse's own code (the innermost frame is in the package), not deep
inside torch. Then: no hooks left and bounded memory over many repeated calls.
"""
import functools
import gc
import importlib
import inspect
import resource
import tempfile
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import xaicourse as xc
from xaicourse.checks import hooks_left

PACKAGE = str(Path(xc.__file__).parent)


def tiny_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()


NET = tiny_cnn()
LAYER = NET[3]
X = torch.randn(2, 3, 8, 8)
MASK8 = (torch.arange(8).view(1, 8) >= 4).long().expand(8, 8)  # two features: left and right half
LINEAR = nn.Linear(4, 3)

IMAGE_METHODS = {
    "saliency.vanilla_gradient": lambda x, **kw: xc.saliency.vanilla_gradient(NET, x, **kw),
    "saliency.gradient_x_input": lambda x, **kw: xc.saliency.gradient_x_input(NET, x, **kw),
    "saliency.smoothgrad": lambda x, **kw: xc.saliency.smoothgrad(NET, x, n_samples=3, **kw),
    "cam.grad_cam": lambda x, **kw: xc.cam.grad_cam(NET, LAYER, x, **kw),
    "cam.grad_cam_pp": lambda x, **kw: xc.cam.grad_cam_pp(NET, LAYER, x, **kw),
    "cam.score_cam": lambda x, **kw: xc.cam.score_cam(NET, LAYER, x, **kw),
    "ig.integrated_gradients": lambda x, **kw: xc.ig.integrated_gradients(NET, x, n_steps=4, **kw),
}

BAD_INPUTS = {
    "3-D tensor": (torch.randn(3, 8, 8), {}, ValueError, r"\(B, C, H, W\)|batch"),
    "integer tensor": (torch.ones(1, 3, 8, 8, dtype=torch.long), {}, TypeError, "floating"),
    "NaN input": (torch.full((1, 3, 8, 8), float("nan")), {}, ValueError, "NaN"),
    "inf input": (torch.full((1, 3, 8, 8), float("inf")), {}, ValueError, "inf"),
    "empty batch": (torch.zeros(0, 3, 8, 8), {}, ValueError, "empty"),
    "a list, not a tensor": ([[0.0]], {}, TypeError, "Tensor|tensor"),
    "target out of range": (X, {"target": 7}, ValueError, r"0\.\.2"),
    "target of the wrong type": (X, {"target": "cat"}, TypeError, "int"),
    "one target for two samples": (X, {"target": [1]}, ValueError, "one target per sample"),
}


def raised_by_package(excinfo) -> bool:
    innermost = traceback.extract_tb(excinfo.tb)[-1].filename
    return innermost.startswith(PACKAGE)


@pytest.mark.parametrize("bad", BAD_INPUTS)
@pytest.mark.parametrize("method", IMAGE_METHODS)
def test_image_methods_reject_bad_input_at_the_boundary(method, bad):
    x, kwargs, error, match = BAD_INPUTS[bad]
    with pytest.raises(error, match=match) as excinfo:
        IMAGE_METHODS[method](x, **kwargs)
    assert raised_by_package(excinfo), f"{method} failed deep inside torch on {bad}: {excinfo.value}"
    assert hooks_left(NET) == 0


class Zoo:
    """Models the cases need, loaded on first use (collecting the tests loads nothing)."""

    @functools.cached_property
    def bert(self):
        return xc.models.bert()

    @functools.cached_property
    def cnn(self):
        return xc.models.imagenet_cnn()

    @functools.cached_property
    def vit(self):
        return xc.models.tiny_vit()

    @functools.cached_property
    def sentiment(self):
        return xc.models.sentiment_classifier()


ZOO = Zoo()
MASKS = torch.zeros(2, 8, 8, dtype=torch.bool)
ATT = torch.softmax(torch.randn(2, 2, 5, 5), -1)  # (layers, heads, T, T): CLS + a 2 x 2 patch grid
TOKENS = ["[CLS]", "a", "b", "c", "[SEP]"]
PHOTO = np.zeros((8, 8, 3), dtype=np.float32)
GPT = lambda: xc.models.tiny_gpt().model  # noqa: E731  (chapter 10's model, loaded when a case runs)
IDS = torch.zeros(2, 9, dtype=torch.long)
METRIC = lambda logits: logits[:, -1, 0]  # noqa: E731
SCRATCH = str(Path(tempfile.gettempdir()) / "xaicourse-reliability-weights")  # never data/: a bad case must not overwrite it


def _hook_left_behind():
    layer = nn.Linear(2, 2)
    layer.register_forward_hook(lambda *_: None)
    xc.hooks.expect_no_hooks(layer)


def _recording_with_foreign_layer():
    with xc.hooks.record_layer(NET, nn.Conv2d(4, 4, 1)):
        pass


def _load_a_text_file():
    path = Path(tempfile.gettempdir()) / "xaicourse-reliability-not-a-cache.pt"
    path.write_text("not a torch file")
    xc.retraining.load(path)


# "module.function: what is wrong" -> (call, exception type, regex the message must match)
OTHER_CASES = {
    "attention.stack_attentions: no layers": (lambda: xc.attention.stack_attentions([]), RuntimeError, "no attention weights"),
    "attention.get_attentions: empty text": (lambda: xc.attention.get_attentions(ZOO.bert, ""), ValueError, "empty"),
    "attention.vit_attentions: wrong image size": (lambda: xc.attention.vit_attentions(ZOO.vit, torch.rand(1, 3, 32, 32)), ValueError, "64, 64"),
    "attention.fuse_heads: unknown fusion": (lambda: xc.attention.fuse_heads(ATT, "median"), ValueError, "mean"),
    "attention.rollout: a 2-D tensor": (lambda: xc.attention.rollout(torch.rand(4, 4)), ValueError, "layers, heads"),
    "attention.rollout: unknown head fusion": (lambda: xc.attention.rollout(ATT, head_fusion="median"), ValueError, "mean"),
    "attention.is_special: not a string": (lambda: xc.attention.is_special(3), TypeError, "str"),
    "attention.most_attended: tokens of another length": (lambda: xc.attention.most_attended(ATT[0, 0], TOKENS[:3]), ValueError, "tokens"),
    "attention.cls_maps: grid that does not fit": (lambda: xc.attention.cls_maps(ATT, 3), ValueError, "grid"),
    "maps.upsample: not a stack of maps": (lambda: xc.maps.upsample(torch.rand(4), 8), ValueError, "shape"),
    "attention.patch_coverage: grid that does not divide": (lambda: xc.attention.patch_coverage(MASKS, 3), ValueError, "grid"),
    "attention.mask_mass: masks of another count": (lambda: xc.attention.mask_mass(torch.rand(3, 2, 2), MASKS), ValueError, "3 maps"),
    "viz.heatmap: tokens of another length": (lambda: xc.viz.heatmap(ATT[0, 0], TOKENS[:3]), ValueError, "tokens"),
    "viz.head_grid: not one layer": (lambda: xc.viz.head_grid(ATT, TOKENS), ValueError, "heads"),
    "viz.bertviz_offline: unknown view": (lambda: xc.viz.bertviz_offline(ATT, TOKENS, kind="graph"), ValueError, "head"),
    "viz.offline_html: HTML without the libraries": (lambda: xc.viz.offline_html("<p>", "", {"d3": b""}), RuntimeError, "d3"),
    "attention.layer_map: layer out of range": (lambda: xc.attention.layer_map(ATT, 2, 5), ValueError, "out of range"),
    "attention.object_attention_share: masks of another count": (
        lambda: xc.attention.object_attention_share(ZOO.vit, torch.rand(2, 3, 64, 64), torch.zeros(3, 64, 64, dtype=torch.bool)), ValueError, "masks"),
    "cam.upsample: not a stack of maps": (lambda: xc.cam.upsample(torch.rand(7), 224), ValueError, "shape"),
    "cam.vit_reshape: tokens that are not a square grid": (lambda: xc.cam.vit_reshape(torch.rand(1, 11, 8)), ValueError, "square"),
    "cam.find_target_layer: no spatial layer": (lambda: xc.cam.find_target_layer(nn.Sequential(nn.Linear(3, 2))), ValueError, "Linear"),
    "cam.depth_layers: no spatial layer": (lambda: xc.cam.depth_layers(nn.Sequential(nn.Linear(3, 2))), ValueError, "Conv2d/BatchNorm2d"),
    "cam.grad_cam: layer not in the model": (lambda: xc.cam.grad_cam(NET, nn.Conv2d(4, 4, 1), X), ValueError, "not part of this model"),
    "cam.grad_cam: layer name not in the model": (lambda: xc.cam.grad_cam(NET, "layer4", X), ValueError, "no layer named"),
    "cam.grad_cam: Linear layer without reshape": (lambda: xc.cam.grad_cam(NET, NET[6], X), ValueError, "feature map"),
    "cam.layer_grids: layer not in the model": (lambda: xc.cam.layer_grids(NET, {"x": nn.Conv2d(4, 4, 1)}, X), ValueError, "not part of this model"),
    "viz.overlay: not a map": (lambda: xc.viz.overlay(PHOTO, torch.rand(7)), ValueError, "shape"),
    "data.image: unknown photo": (lambda: xc.data.image("eagle"), ValueError, "choose one of"),
    "data.load_image: missing file": (lambda: xc.data.load_image("no/such/photo.jpg"), FileNotFoundError, "no image file"),
    "data.to_pil: not an image array": (lambda: xc.data.to_pil(np.zeros(3)), ValueError, "H, W"),
    "data.shapes: no images": (lambda: xc.data.shapes(n=0), ValueError, "n must be"),
    "data.movie_reviews: unknown split": (lambda: xc.data.movie_reviews("dev"), ValueError, "'train', 'test' or 'all'"),
    "diagnose.cam_patterns: one map, not a batch": (lambda: xc.diagnose.cam_patterns(torch.rand(8, 8)), ValueError, "batch, height, width"),
    "diagnose.diagnose_model: 3-D images": (lambda: xc.diagnose.diagnose_model(NET, LAYER, torch.rand(3, 8, 8)), ValueError, r"\(B, C, H, W\)"),
    "maps.mask_share: masks of another shape": (lambda: xc.maps.mask_share(torch.rand(2, 8, 8), MASKS[:, :4]), ValueError, "shape"),
    "diagnose.dilate: negative margin": (lambda: xc.diagnose.dilate(MASKS, -1), ValueError, "pixels"),
    "diagnose.corner_masks: corner over half": (lambda: xc.diagnose.corner_masks(8, 8, corner=0.7), ValueError, "corner"),
    "hooks.find_layer: name not in the model": (lambda: xc.hooks.find_layer(NET, "layer4"), ValueError, "no layer named"),
    "hooks.record_layer: layer not in the model": (_recording_with_foreign_layer, ValueError, "not part of this model"),
    "ig.quadrature: unknown rule": (lambda: xc.ig.quadrature("simpson", 5), ValueError, "gausslegendre"),
    "ig.path: baseline of another shape": (lambda: xc.ig.path(X, torch.zeros(3, 4, 4), [0.5]), ValueError, "baseline"),
    "ig.integrated_gradients: baseline of another shape": (lambda: xc.ig.integrated_gradients(NET, X, baseline=torch.zeros(1, 3, 4, 4)), ValueError, "baseline"),
    "ig.integrated_gradients: n_steps < 1": (lambda: xc.ig.integrated_gradients(NET, X, n_steps=0), ValueError, "n_steps"),
    "ig.integrated_gradients: unknown rule": (lambda: xc.ig.integrated_gradients(NET, X, method="simpson"), ValueError, "gausslegendre"),
    "ig.path_derivative: no alphas": (lambda: xc.ig.path_derivative(NET, X, alphas=[]), ValueError, "alphas"),
    "ig.completeness_delta: attributions of another shape": (lambda: xc.ig.completeness_delta(NET, X, torch.zeros(2, 3)), ValueError, "shape"),
    "ig.steps_for_tolerance: tol <= 0": (lambda: xc.ig.steps_for_tolerance(NET, X, tol=0), ValueError, "tol"),
    "ig.multi_baseline_ig: baselines not a stack": (lambda: xc.ig.multi_baseline_ig(NET, X, baselines=torch.zeros(3, 8, 8)), ValueError, "stack"),
    "ig.from_pixels: normalisation for another channel count": (lambda: xc.ig.from_pixels(X, ([0.5] * 2, [0.2] * 2)), ValueError, "channel"),
    "ig.black_baseline: normalisation for another channel count": (lambda: xc.ig.black_baseline(X, ([0.5] * 2, [0.2] * 2)), ValueError, "channel"),
    "ig.white_baseline: normalisation for another channel count": (lambda: xc.ig.white_baseline(X, ([0.5] * 2, [0.2] * 2)), ValueError, "channel"),
    "ig.noise_baseline: normalisation for another channel count": (lambda: xc.ig.noise_baseline(X, ([0.5] * 2, [0.2] * 2)), ValueError, "channel"),
    "ig.blur_baseline: 3-D tensor": (lambda: xc.ig.blur_baseline(torch.rand(3, 8, 8)), ValueError, r"\(B, C, H, W\)"),
    "ig.make_baseline: unknown name": (lambda: xc.ig.make_baseline("grey", X), ValueError, "black"),
    "inputs.model_input: not a model": (lambda: xc.inputs.model_input("resnet", X), TypeError, "nn.Module"),
    "inputs.positive_int: zero": (lambda: xc.inputs.positive_int("n_steps", 0), ValueError, "n_steps"),
    "inputs.run_model: wrong channel count": (lambda: xc.inputs.run_model(NET, torch.rand(1, 5, 8, 8)), ValueError, "shape"),
    "interpret.TextClassifierInterpreter: unknown baseline": (
        lambda: xc.interpret.TextClassifierInterpreter(ZOO.sentiment, baseline="zeros"), ValueError, "pad"),
    "interpret.TextClassifierInterpreter.interpret: empty text": (
        lambda: xc.interpret.TextClassifierInterpreter(ZOO.sentiment).interpret(""), ValueError, "empty"),
    "viz.token_html: attributions of another length": (lambda: xc.viz.token_html(["a", "b"], torch.rand(3)), ValueError, "tokens"),
    "interpret.ImageClassifierInterpreter: ig_steps < 1": (lambda: xc.interpret.ImageClassifierInterpreter(ZOO.cnn, ig_steps=0), ValueError, "ig_steps"),
    "interpret.ImageClassifierInterpreter.interpret: unknown class": (
        lambda: xc.interpret.ImageClassifierInterpreter(ZOO.cnn).interpret(PHOTO, target="tabby kat"), ValueError, "tabby"),
    "interpret.top_region: fraction over 1": (lambda: xc.interpret.top_region(torch.rand(8, 8), top=1.5), ValueError, "top"),
    "interpret.map_overlap: maps of another shape": (lambda: xc.interpret.map_overlap(torch.rand(8, 8), torch.rand(4, 4)), ValueError, "shape"),
    "interpret.misclassification_stats: true class out of range": (
        lambda: xc.interpret.misclassification_stats(NET, LAYER, X[:1], 7), ValueError, r"0\.\.2"),
    "interpret.findings: not the stats of misclassification_stats": (lambda: xc.interpret.findings({}, ["a"]), TypeError, "misclassification_stats"),
    "interpret.MisclassificationAnalyzer.analyze: unknown class": (
        lambda: xc.interpret.MisclassificationAnalyzer(ZOO.cnn).analyze(PHOTO, "tabby kat"), ValueError, "tabby"),
    "metrics.pixel_map: one value per sample": (lambda: xc.metrics.pixel_map(torch.rand(2, 8)), ValueError, "shape"),
    "metrics.deletion_auc: attribution of another shape": (lambda: xc.metrics.deletion_auc(NET, X, torch.rand(2, 5, 5)), ValueError, "shape"),
    "metrics.insertion_auc: attribution of another shape": (lambda: xc.metrics.insertion_auc(NET, X, torch.rand(2, 5, 5)), ValueError, "shape"),
    "metrics.pointing_game: masks of another shape": (lambda: xc.metrics.pointing_game(torch.rand(2, 8, 8), MASKS[:, :4]), ValueError, "shape"),
    "metrics.mask_energy: masks of another shape": (lambda: xc.metrics.mask_energy(torch.rand(2, 8, 8), MASKS[:, :4]), ValueError, "shape"),
    "metrics.randomization_sanity_check: unknown layer": (
        lambda: xc.metrics.randomization_sanity_check(NET, xc.saliency.vanilla_gradient, X, layers=["layer4"]), ValueError, "layer4"),
    "models.class_index: misspelt class": (lambda: xc.models.class_index(["tabby cat", "tiger cat"], "tabby kat"), ValueError, "tabby"),
    "models.ImageModel.class_index: index out of range": (lambda: ZOO.cnn.class_index(1000), ValueError, r"0\.\.999"),
    "models.imagenet_cnn: unknown model": (lambda: xc.models.imagenet_cnn("vgg16"), ValueError, "efficientnet_lite0"),
    "models.bert: unknown model": (lambda: xc.models.bert("gpt2"), ValueError, "all-MiniLM-L6-v2"),
    "models.hub_source: model not cached, offline": (lambda: xc.models.hub_source("no-one/no-model", "the offline default"), xc.models.OfflineError, "offline default"),
    "models.sentiment_classifier: unknown model": (lambda: xc.models.sentiment_classifier("no-one/no-model"), ValueError, "choose None"),
    "models.minilm_classifier: wrong trained parameters": (lambda: xc.models.minilm_classifier({"x": torch.zeros(1)}), ValueError, "parameters"),
    "models.vit: unknown model": (lambda: xc.models.vit("no-one/no-model"), ValueError, "tiny_vit"),
    "models.shapes_cnn_path: unknown variant": (lambda: xc.models.shapes_cnn_path("dirty"), ValueError, "shortcut"),
    "models.shapes_cnn: unknown variant": (lambda: xc.models.shapes_cnn("dirty"), ValueError, "shortcut"),
    "saliency.to_map: unknown channel reduction": (lambda: xc.saliency.to_map(X, reduce="mean"), ValueError, "max_abs"),
    "saliency.smoothgrad: n_samples < 1": (lambda: xc.saliency.smoothgrad(NET, X, n_samples=0), ValueError, "n_samples"),
    "saliency.smoothgrad: noise_level < 0": (lambda: xc.saliency.smoothgrad(NET, X, noise_level=-0.1), ValueError, "noise_level"),
    "viz.clip_map: percentile over 100": (lambda: xc.viz.clip_map(torch.rand(2, 8, 8), percentile=150), ValueError, "percentile"),
    "saliency.copy_with_captum_relus: not a model": (lambda: xc.saliency.copy_with_captum_relus("resnet"), TypeError, "nn.Module"),
    "targets.resolve_targets: target out of range": (lambda: xc.targets.resolve_targets(7, torch.zeros(2, 3)), ValueError, r"0\.\.2"),
    "targets.select: one target for two samples": (lambda: xc.targets.select(torch.zeros(2, 3), torch.tensor([1])), ValueError, "one target per sample"),
    "targets: bool target": (lambda: xc.saliency.vanilla_gradient(NET, X, target=True), TypeError, "bool"),
    "train.train_sentiment: epochs < 1": (lambda: xc.train.train_sentiment(epochs=0, path=SCRATCH), ValueError, "epochs"),
    "train.train_tiny_vit: epochs < 1": (lambda: xc.train.train_tiny_vit(epochs=0, path=SCRATCH), ValueError, "epochs"),
    "train.train_shapes_cnn: unknown variant": (lambda: xc.train.train_shapes_cnn("dirty", path=SCRATCH), ValueError, "shortcut"),
    "train.train_shapes_resnet: epochs < 1": (lambda: xc.train.train_shapes_resnet(epochs=0, path=SCRATCH), ValueError, "epochs"),
    "train.shapes_accuracy: marker out of [0, 1]": (lambda: xc.train.shapes_accuracy(NET, marker=2.0), ValueError, "marker"),
    "train.train_head: labels of another length": (lambda: xc.train.train_head(["good", "bad"], [1]), ValueError, "labels"),
    "train.predict_texts: a string, not a list": (lambda: xc.train.predict_texts(ZOO.sentiment, "A single sentence."), ValueError, "list of strings"),
    "viz.to_numpy: not an array": (lambda: xc.viz.to_numpy("photo"), TypeError, "array"),
    "viz.to_numpy: not a map": (lambda: xc.viz.to_numpy("photo"), TypeError, "array"),
    "viz.overlay: a map, not a photo": (lambda: xc.viz.overlay(np.zeros((4, 4)), np.zeros((4, 4))), ValueError, "photo"),
    "viz.map_panel: unknown kind": (lambda: xc.viz.map_panel(None, np.zeros((4, 4)), kind="rainbow"), ValueError, "pixels"),
    "viz.token_bars: values of another length": (lambda: xc.viz.token_bars(["a"], torch.rand(2)), ValueError, "tokens"),
    "viz.no_colorbar: no reason": (lambda: xc.viz.no_colorbar(__import__("matplotlib.pyplot").pyplot.figure().gca().imshow(torch.rand(2, 2)), " "), ValueError, "reason"),
    "viz.watch_figures: outside a notebook": (lambda: xc.viz.watch_figures("/tmp/report.jsonl"), RuntimeError, "IPython kernel"),
    "batching.chunks: chunks of 0": (lambda: xc.batching.chunks(10, 0), ValueError, "limit"),
    "batching.chunk_limit: not a function": (lambda: xc.batching.chunk_limit(NET, 3, grad=True, n_items=2), TypeError, "function"),
    "baselines.as_baseline: a NaN number": (lambda: xc.baselines.as_baseline(float("nan"), X), ValueError, "finite"),
    "baselines.as_baselines: a list": (lambda: xc.baselines.as_baselines([0.0], X), TypeError, "tensor"),
    "guarantees.check_conservation: an unknown bound": (lambda: xc.guarantees.check_conservation(
        torch.zeros(2), torch.zeros(2), torch.zeros(2), method="m", property="p", causes="", bound="below"), ValueError, "bound"),
    "numerics.safe_divide: a number": (lambda: xc.numerics.safe_divide(1.0, torch.ones(2)), TypeError, "two tensors"),
    "targets.check_targets: target out of range": (lambda: xc.targets.check_targets(7, 2, 3), ValueError, r"0\.\.2"),
    "targets.chunk_targets: a float target": (lambda: xc.targets.chunk_targets(1.5, torch.zeros(2, 3), slice(0, 2), 2, {}),
                                              TypeError, "target"),
    "deeplift.unknown_modules: not a model": (lambda: xc.deeplift.unknown_modules(3), TypeError, "nn.Module"),
    "lrp.unfitting_modules: not a model": (lambda: xc.lrp.unfitting_modules(3), TypeError, "nn.Module"),
    "guarantees.leaf_modules_except: not a model": (lambda: xc.guarantees.leaf_modules_except(3, ()), TypeError, "nn.Module"),
    "guarantees.name_list: not a list": (lambda: xc.guarantees.name_list(3), TypeError, "name_list"),
    "inputs.in_training: not a model": (lambda: xc.inputs.in_training("model"), TypeError, "nn.Module"),
    "inputs.check_types: not a function": (lambda: xc.inputs.check_types(3), TypeError, "decorates a function"),
    "shapley.check_samples: too few samples": (lambda: xc.shapley.check_samples(3, 10), ValueError, "too small"),
    "shapley.spread_values: an index of another kind": (lambda: xc.shapley.spread_values(torch.ones(2), [0, 1]),
                                                        TypeError, "index"),
    "batching.measure_bytes: not a function": (lambda: xc.batching.measure_bytes(NET, 3, grad=True), TypeError, "function"),
    "batching.batched: batch_size 0": (lambda: list(xc.batching.batched(3, lambda s: s, model=NET, batch_size=0)), ValueError, "batch_size"),
    "maps.as_maps: not a tensor": (lambda: xc.maps.as_maps([1.0]), TypeError, "Tensor"),
    "maps.to_map: unknown channel reduction": (lambda: xc.maps.to_map(X, reduce="median"), ValueError, "max_abs"),
    "maps.minmax: one value, not maps": (lambda: xc.maps.minmax(torch.rand(4)), ValueError, "one map per row"),
    "maps.top_region: fraction 0": (lambda: xc.maps.top_region(torch.rand(2, 8, 8), top=0), ValueError, "fraction"),
    "maps.top_overlap: maps of another shape": (lambda: xc.maps.top_overlap(torch.rand(8, 8), torch.rand(4, 4)), ValueError, "shape"),
    "cam.guided_grad_cam: a layer without a feature map": (lambda: xc.cam.guided_grad_cam(NET, NET[6], X), ValueError, "feature map"),
    "cam.prefix_tokens: a token count that is not an int": (lambda: xc.cam.prefix_tokens(NET, 2.5), TypeError, "n_tokens"),
    "saliency.guided_backprop: a model without ReLU modules": (lambda: xc.saliency.guided_backprop(nn.Sequential(nn.Flatten(), nn.Linear(192, 2)), X), ValueError, "ReLU"),
    "hooks.eval_mode: not a model": (lambda: xc.hooks.eval_mode("resnet").__enter__(), TypeError, "nn.Module"),
    "hooks.hooks_left: not a model": (lambda: xc.hooks.hooks_left("resnet"), TypeError, "nn.Module"),
    "hooks.expect_no_hooks: a hook left behind": (_hook_left_behind, AssertionError, "handle.remove"),
    "inputs.check_choice: unknown value": (lambda: xc.inputs.check_choice("rule", "simpson", ("left", "right")), ValueError, "choose one of"),
    "inputs.check_int: a float count": (lambda: xc.inputs.check_int("n_steps", 2.5), TypeError, "n_steps"),
    "inputs.check_model: not a model": (lambda: xc.inputs.check_model("resnet"), TypeError, "nn.Module"),
    "inputs.check_number: NaN": (lambda: xc.inputs.check_number("noise_level", float("nan"), minimum=0), ValueError, "noise_level"),
    "inputs.explainer: not a function": (lambda: xc.inputs.explainer(5), TypeError, "function"),
    "inputs.generator: negative seed": (lambda: xc.inputs.generator(-1, "cpu"), ValueError, "seed"),
    "inputs.logits: a dict without logits": (lambda: xc.inputs.logits({"a": torch.zeros(1, 2), "b": torch.zeros(1)}), TypeError, "logits"),
    "targets.score_gradient: target out of range": (lambda: xc.targets.score_gradient(NET, X, 7), ValueError, r"0\.\.2"),
    "deeplift.deeplift: baseline of another shape": (lambda: xc.deeplift.deeplift(NET, X, baseline=torch.zeros(1, 3, 4, 4)), ValueError, 'baseline'),
    "deeplift.deeplift_shap: baselines of another shape": (lambda: xc.deeplift.deeplift_shap(NET, X, baselines=torch.zeros(2, 3, 4, 4)), ValueError, "stack"),
    "deeplift.rescale_multiplier: not a function": (lambda: xc.deeplift.rescale_multiplier(3, torch.ones(2), torch.zeros(2)), TypeError, 'elementwise function'),
    "deeplift.summation_delta: attributions of another shape": (lambda: xc.deeplift.summation_delta(NET, X, torch.zeros(2, 3)), ValueError, 'attributions'),
    "shapley.coalition_scores: a batch, not one sample": (lambda: xc.shapley.coalition_scores(NET, X, torch.zeros_like(X), torch.zeros_like(X).long(), 0, torch.ones(1, 2, dtype=torch.bool)), ValueError, 'one sample'),
    "shapley.exact_shapley: too many players": (lambda: xc.shapley.exact_shapley(lambda s: 0.0, 40), ValueError, 'exact_shapley'),
    "shapley.feature_index: mask of another shape": (lambda: xc.shapley.feature_index(torch.zeros(5, 5, dtype=torch.long), X), ValueError, 'feature_mask'),
    "shapley.feature_values: mask of another shape": (lambda: xc.shapley.feature_values(X, torch.zeros(5, 5, dtype=torch.long)), ValueError, 'feature_mask'),
    "shapley.kernel_shap: one feature": (lambda: xc.shapley.kernel_shap(NET, X, feature_mask=torch.zeros(8, 8, dtype=torch.long)), ValueError, 'feature_mask'),
    "shapley.kernel_shap_values: one player": (lambda: xc.shapley.kernel_shap_values(lambda s: 0.0, 1), ValueError, 'n_players'),
    "shapley.sample_coalitions: zero samples": (lambda: xc.shapley.sample_coalitions(4, 0), ValueError, 'n_samples'),
    "shapley.shapley_kernel_weight: size out of range": (lambda: xc.shapley.shapley_kernel_weight(4, 7), ValueError, 'size'),
    "lime.lime: mask of another shape": (lambda: xc.lime.lime(NET, X, feature_mask=torch.zeros(5, 5, dtype=torch.long)), ValueError, 'feature_mask'),
    "lime.lime_samples: zero samples": (lambda: xc.lime.lime_samples(4, 0), ValueError, 'n_samples'),
    "lime.lime_weights: kernel width 0": (lambda: xc.lime.lime_weights(torch.ones(3, 4), kernel_width=0), ValueError, 'kernel_width'),
    "lime.superpixels: not an image": (lambda: xc.lime.superpixels(torch.zeros(8)), ValueError, 'image'),
    "lime.weighted_ridge: weights of another length": (lambda: xc.lime.weighted_ridge(torch.ones(5, 3), torch.ones(5), torch.ones(4)), ValueError, 'must'),
    "lrp.layer_relevances: not a Sequential": (lambda: xc.lrp.layer_relevances(xc.models.shapes_cnn(), torch.rand(1, 3, 32, 32)), TypeError, 'layer_relevances'),
    "lrp.lrp: unknown composite": (lambda: xc.lrp.lrp(NET, X, composite="alpha_beta_9"), ValueError, 'unknown'),
    "lrp.lrp_epsilon: not a Linear or Conv2d layer": (lambda: xc.lrp.lrp_epsilon(nn.ReLU(), torch.ones(1, 4), torch.ones(1, 4)), TypeError, 'rules'),
    "lrp.lrp_flat: relevance of another shape": (lambda: xc.lrp.lrp_flat(LINEAR, torch.ones(1, 4), torch.ones(1, 5)), ValueError, 'relevance'),
    "lrp.lrp_gamma: negative gamma": (lambda: xc.lrp.lrp_gamma(LINEAR, torch.ones(1, 4), torch.ones(1, 3), gamma=-1.0), ValueError, 'gamma'),
    "lrp.lrp_wsquare: activations of another shape": (lambda: xc.lrp.lrp_wsquare(LINEAR, torch.ones(1, 5), torch.ones(1, 3)), ValueError, 'layer'),
    "lrp.lrp_zplus: relevance of another shape": (lambda: xc.lrp.lrp_zplus(LINEAR, torch.ones(1, 4), torch.ones(1, 5)), ValueError, 'relevance'),
    "lrp.merge_batchnorm: BatchNorm of another width": (lambda: xc.lrp.merge_batchnorm(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(5)), ValueError, 'BatchNorm'),
    "relevance.attention_relevance: a CNN": (lambda: xc.relevance.attention_relevance(NET, X), TypeError, "not a Transformer"),
    "relevance.attention_relevance: unknown method": (lambda: xc.relevance.attention_relevance(NET, X, method="lrp"), ValueError, "unknown method"),
    "relevance.gradient_rollout: shapes differ": (lambda: xc.relevance.gradient_rollout(torch.ones(2, 1, 3, 3), torch.ones(1, 1, 3, 3)), ValueError, "same shape"),
    "relevance.class_token_rows: layer out of range": (lambda: xc.relevance.class_token_rows(torch.ones(2, 1, 3, 3), torch.ones(2, 1, 3, 3), "rollout", 5), ValueError, "layer must be"),
    "relevance.record_attentions: a CNN": (lambda: xc.relevance.record_attentions(NET, X), TypeError, "not a Transformer"),
    "relevance.prepare_inputs: text without a tokenizer": (lambda: xc.relevance.prepare_inputs(NET, "some text"), TypeError, "tokenizer"),
    "relevance.patch_grid: not square": (lambda: xc.relevance.patch_grid(torch.ones(1, 7)), ValueError, "square grid"),
    "relevance.patch_integrated_gradients: no patch embedding": (lambda: xc.relevance.patch_integrated_gradients(NET, X), ValueError, "no patch embedding"),
    "widgets.relevance_explorer: wrong image size": (lambda: xc.widgets.relevance_explorer(ZOO.vit, torch.rand(3, 32, 32)), ValueError, "64, 64"),
    "widgets.text_relevance_explorer: empty text": (lambda: xc.widgets.text_relevance_explorer(ZOO.bert, " "), ValueError, "empty"),
    "metrics.road: unknown order": (lambda: xc.metrics.road(NET, X, torch.rand(2, 8, 8), order="random"), ValueError, "morf"),
    "metrics.noisy_linear_imputation: every pixel removed": (lambda: xc.metrics.noisy_linear_imputation(X, torch.ones(2, 8, 8, dtype=torch.bool)), ValueError, "every pixel"),
    "metrics.roar: methods not a dict": (lambda: xc.metrics.roar(NET, [xc.saliency.vanilla_gradient]), TypeError, "dict"),
    "metrics.max_sensitivity: radius 0": (lambda: xc.metrics.max_sensitivity(NET, xc.saliency.vanilla_gradient, X, radius=0), ValueError, "radius"),
    "metrics.local_lipschitz: method not callable": (lambda: xc.metrics.local_lipschitz(NET, "gradient", X), TypeError, "method"),
    "metrics.sparseness: one map, not a batch": (lambda: xc.metrics.sparseness(torch.rand(8, 8)), ValueError, r"m\[None\]"),
    "metrics.effective_complexity: negative eps": (lambda: xc.metrics.effective_complexity(torch.rand(2, 8, 8), eps=-1), ValueError, "eps"),
    "metrics.entropy_complexity: NaN map": (lambda: xc.metrics.entropy_complexity(torch.full((1, 4, 4), float("nan"))), ValueError, "NaN"),
    "metrics.relevance_mass_accuracy: masks of another shape": (lambda: xc.metrics.relevance_mass_accuracy(torch.rand(2, 8, 8), MASKS[:, :4]), ValueError, "shape"),
    "metrics.relevance_rank_accuracy: empty mask": (lambda: xc.metrics.relevance_rank_accuracy(torch.rand(2, 8, 8), MASKS), ValueError, "empty"),
    "metrics.noise_floor: one seed": (lambda: xc.metrics.noise_floor(NET, xc.saliency.vanilla_gradient, X, seeds=(0,)), ValueError, "two or more"),
    "metrics.randomization_passed: ratio over 1": (lambda: xc.metrics.randomization_passed(torch.tensor([0.1]), torch.tensor([1.0]), ratio=2), ValueError, "ratio"),
    "metrics.data_randomization: models not the pair": (lambda: xc.metrics.data_randomization(xc.saliency.vanilla_gradient, X, models=(NET,)), TypeError, "permuted_label_models"),
    "metrics.permuted_label_models: epochs 0": (lambda: xc.metrics.permuted_label_models(epochs=0), ValueError, "epochs"),
    "metrics.shifted_model: no layer to absorb the shift": (lambda: xc.metrics.shifted_model(nn.Sequential(nn.ReLU()), 1.0), ValueError, "Conv2d or Linear"),
    "metrics.input_invariance: method not callable": (lambda: xc.metrics.input_invariance(NET, None, X), TypeError, "method"),
    "metrics.report: deletion_steps 0": (lambda: xc.metrics.report(NET, xc.saliency.vanilla_gradient, X, deletion_steps=0), ValueError, "deletion_steps"),
    "shapley.gradient_shap: baselines of another shape": (lambda: xc.shapley.gradient_shap(NET, X, baselines=torch.zeros(2, 3, 4, 4)), ValueError, "stack"),
    "widgets.perturbation_explorer: unknown method": (lambda: xc.widgets.perturbation_explorer(ZOO.cnn, PHOTO, method="Anchors"), ValueError, "KernelSHAP"),
    "widgets.lrp_explorer: unknown composite": (lambda: xc.widgets.lrp_explorer(ZOO.cnn, PHOTO, composite="alpha_beta_9"), ValueError, "epsilon_plus_flat"),
    "models.Normalization: a zero std": (lambda: xc.models.Normalization((0.5,), (0.0,)), ValueError, "std"),
    "viz.show_maps: no maps": (lambda: xc.viz.show_maps(PHOTO, {}), ValueError, "map"),
    "viz.topk_bar: no predictions": (lambda: xc.viz.topk_bar([]), ValueError, "prediction"),
    "widgets.attention_explorer: not (layers, heads, T, T)": (lambda: xc.widgets.attention_explorer(ATT[0], TOKENS), ValueError, "layers, heads"),
    "widgets.vit_attention_explorer: grid that does not fit": (lambda: xc.widgets.vit_attention_explorer(PHOTO, ATT, 3), ValueError, "grid"),
    "widgets.smoothgrad_explorer: unknown method": (lambda: xc.widgets.smoothgrad_explorer(ZOO.cnn, PHOTO, method="LRP"), ValueError, "SmoothGrad"),
    "widgets.ig_explorer: unknown baseline": (lambda: xc.widgets.ig_explorer(ZOO.cnn, PHOTO, baseline="grey"), ValueError, "black"),
    "hooks.replace_output: replace is not a function": (lambda: xc.hooks.replace_output(nn.Linear(2, 2), "", None).__enter__(), TypeError, "replace must be a function"),
    "models.repeated_tokens: more distinct tokens than the vocabulary": (lambda: xc.models.repeated_tokens(2, half=60), ValueError, "distinct"),
    "train.gpt_accuracy: ids too short": (lambda: xc.train.gpt_accuracy(xc.models.TinyGPT(), torch.zeros(2, 2, dtype=torch.long)), ValueError, "[BOS, x, x]"),
    "widgets.gradcam_explorer: unknown layer": (lambda: xc.widgets.gradcam_explorer(ZOO.cnn, PHOTO, layer="layer4"), ValueError, "layer4"),
    "widgets.circuit_explorer: effects of the wrong shape": (lambda: xc.widgets.circuit_explorer(torch.zeros(2, 4, 5, 5), torch.zeros(8, 5), list("abcde")), ValueError, "3 dimensions"),
    "patching.activation_patching: a site that is not a name": (lambda: xc.patching.activation_patching(GPT(), IDS, IDS, METRIC, [3]), TypeError, "module name"),
    "patching.attribution_patching: unknown module": (lambda: xc.patching.attribution_patching(GPT(), IDS, IDS, METRIC, ["blocks.9"]), ValueError, "no layer named"),
    "patching.cache: unknown module": (lambda: xc.patching.cache(GPT(), IDS, ["blocks.9"]), ValueError, "no layer named"),
    "patching.next_token_metric: a position without a next token": (lambda: xc.patching.next_token_metric(IDS, [IDS.shape[1] - 1]), ValueError, "next token must exist"),
    "patching.ablate: unknown mode": (lambda: xc.patching.ablate(GPT(), [("blocks.0.attn.hook_z", 0)], "resample").__enter__(), ValueError, "'mean' or 'zero'"),
    "patching.logit_lens: ids as floats": (lambda: xc.patching.logit_lens(GPT(), IDS.float()), TypeError, "dtype long"),
    "patching.direct_logit_attribution: targets not a tensor": (lambda: xc.patching.direct_logit_attribution(GPT(), IDS, [1, 2]), TypeError, "targets"),
    "generation.generate: ids not a tensor": (lambda: xc.generation.generate(GPT(), [[0, 1]], 2), TypeError, "ids"),
    "generation.integrated_gradients: prompt longer than the sequence": (lambda: xc.generation.integrated_gradients(GPT(), IDS, 99), ValueError, "prompt_len"),
    "generation.ablation: unknown score": (lambda: xc.generation.ablation(GPT(), IDS, 5, score="prob"), ValueError, "score must be one of"),
    "generation.attention_x_gradient: no such layer": (lambda: xc.generation.attention_x_gradient(GPT(), IDS, 5, layer=4), ValueError, "layer must be in"),
    "generation.token_attribution: unknown method": (lambda: xc.generation.token_attribution(GPT(), IDS, 5, "saliency"), ValueError, "method must be one of"),
    "concepts.cav: activations of different widths": (lambda: xc.concepts.cav(torch.zeros(5, 3), torch.zeros(5, 4)), ValueError, "same D"),
    "concepts.layer_activations: unknown layer": (lambda: xc.concepts.layer_activations(NET, "conv9", torch.zeros(1, 3, 8, 8)), ValueError, "no layer named"),
    "concepts.layer_gradients: unknown layer": (lambda: xc.concepts.layer_gradients(NET, "conv9", torch.zeros(1, 3, 8, 8), 0), ValueError, "no layer named"),
    "concepts.directional_derivatives: vector of the wrong size": (lambda: xc.concepts.directional_derivatives(xc.models.shapes_cnn("clean"), "features.6", torch.zeros(2, 3, 32, 32), 0, torch.ones(3)), ValueError, "trained on this layer"),
    "concepts.tcav_score: vector of the wrong size": (lambda: xc.concepts.tcav_score(xc.models.shapes_cnn("clean"), "features.6", torch.zeros(2, 3, 32, 32), 0, torch.ones(3)), ValueError, "trained on this layer"),
    "concepts.tcav: too few random sets": (lambda: xc.concepts.tcav(NET, "conv1", torch.zeros(4, 3, 8, 8), [torch.zeros(4, 3, 8, 8)], torch.zeros(2, 3, 8, 8), 0), ValueError, "at least 3 random sets"),
    "widgets.tcav_explorer: not a tcav_grid result": (lambda: xc.widgets.tcav_explorer({}), ValueError, "non-empty dict concepts.tcav_grid returns"),
    "concepts.tcav_grid: an unknown null": (lambda: xc.concepts.tcav_grid(NET, "conv1", {"c": torch.zeros(4, 3, 8, 8)}, [torch.zeros(4, 3, 8, 8)] * 3, {0: torch.zeros(2, 3, 8, 8)}, null="none"), ValueError, "null must be one of"),
    "concepts.tcav: pairs from too few random sets": (lambda: xc.concepts.tcav(NET, "conv1", torch.zeros(4, 3, 8, 8), [torch.zeros(4, 3, 8, 8)] * 3, torch.zeros(2, 3, 8, 8), 0, null="pairs"), ValueError, "at least 4 random sets"),
    "concepts.tcav_grid: no concepts": (lambda: xc.concepts.tcav_grid(NET, "conv1", {}, [torch.zeros(4, 3, 8, 8)] * 3, {0: torch.zeros(2, 3, 8, 8)}), ValueError, "at least one concept"),
    "data.with_marker: a corner that does not exist": (lambda: xc.data.with_marker(torch.zeros(2, 3, 32, 32), 5), ValueError, "corner must be 0"),
    "data.marker_corners: not a tensor": (lambda: xc.data.marker_corners("masks"), TypeError, "masks"),
    "probes.control_labels: float types": (lambda: xc.probes.control_labels(torch.randn(5), 2), ValueError, "types must be integers"),
    "probes.linear_probe: labels of another length": (lambda: xc.probes.linear_probe(torch.randn(5, 2), torch.zeros(3, dtype=torch.long)), ValueError, "one label per row"),
    "probes.probe_layers: no property": (lambda: xc.probes.probe_layers(NET, "conv1", torch.zeros(2, 3, 8, 8), {}, torch.zeros(2, dtype=torch.long)), ValueError, "at least one property"),
    "probes.selectivity: types of another length": (lambda: xc.probes.selectivity(torch.randn(6, 2), torch.tensor([0, 1] * 3), torch.zeros(2, dtype=torch.long)), ValueError, "one row per input"),
    "retraining.check_problem: not a Problem": (lambda: xc.retraining.check_problem((1, 2)), TypeError, r"retraining.problem\(\)"),
    "retraining.leave_one_out: an index out of range": (lambda: xc.retraining.leave_one_out(xc.retraining.problem(), [300], progress=False), ValueError, r"indices must lie in \[0, 300\)"),
    "retraining.load: a missing cache": (lambda: xc.retraining.load("/nonexistent/influence_truth.pt"), FileNotFoundError, "python -m xaicourse.retraining"),
    "retraining.margins: labels of another length": (lambda: xc.retraining.margins(xc.retraining.new_model(), torch.zeros(2, 32, dtype=torch.float64), torch.zeros(3, dtype=torch.long)), ValueError, "one label per row"),
    "retraining.mislabel_experiment: k of 0": (lambda: xc.retraining.mislabel_experiment(ks=(0,), progress=False), ValueError, "each in"),
    "retraining.problem: mislabelled not a bool": (lambda: xc.retraining.problem(mislabelled="yes"), TypeError, "True or False"),
    "retraining.random_subsets: keep everything": (lambda: xc.retraining.random_subsets(300, 4, fraction=1.0), ValueError, r"in \(0, 1\)"),
    "retraining.retrain: keep nothing": (lambda: xc.retraining.retrain(xc.retraining.problem(), torch.zeros(300, dtype=torch.bool)), ValueError, "keep at least one"),
    "retraining.subset_outputs: subsets of the wrong width": (lambda: xc.retraining.subset_outputs(xc.retraining.problem(), torch.zeros(2, 5, dtype=torch.bool), progress=False), ValueError, "bool mask of length 300"),
    "retraining.train: labels of another length": (lambda: xc.retraining.train(torch.zeros(4, 32), torch.zeros(3, dtype=torch.long)), ValueError, "one label per row"),
    "sae.SparseAutoencoder: no input dimensions": (lambda: xc.sae.SparseAutoencoder(0, 4), ValueError, "d must be an int >= 1"),
    "sae.latent_auroc: labels of one kind": (lambda: xc.sae.latent_auroc(torch.zeros(4, 2), torch.ones(4, dtype=torch.bool)), ValueError, "both True and False"),
    "sae.match_features: different d": (lambda: xc.sae.match_features(torch.zeros(3, 4), torch.zeros(5, 6)), ValueError, "must share d"),
    "sae.recover_toy_features: no hidden dimensions": (lambda: xc.sae.recover_toy_features(n_hidden=0), ValueError, "n_hidden must be"),
    "sae.sae_loss: shapes that do not match": (lambda: xc.sae.sae_loss(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, 5), 0.1), ValueError, "same shape"),
    "sae.sae_stats: a density threshold above 1": (lambda: xc.sae.sae_stats(xc.sae.SparseAutoencoder(3, 4), torch.zeros(2, 3), dense_threshold=2.0), ValueError, "dense_threshold must be"),
    "sae.shapes_marker_sae: an unknown model": (lambda: xc.sae.shapes_marker_sae("painted"), ValueError, "choose 'shortcut', 'clean'"),
    "sae.train_sae: one activation": (lambda: xc.sae.train_sae(torch.zeros(1, 3), 4), ValueError, "N >= 2"),
    "superposition.ToyModel: no hidden dimensions": (lambda: xc.superposition.ToyModel(5, 0), ValueError, "n_hidden must be"),
    "superposition.dimensions_per_feature: a vector": (lambda: xc.superposition.dimensions_per_feature(torch.zeros(5)), TypeError, "ToyModel or its W"),
    "superposition.feature_norms: a string": (lambda: xc.superposition.feature_norms("W"), TypeError, "ToyModel or its W"),
    "superposition.features_represented: a vector": (lambda: xc.superposition.features_represented(torch.zeros(5)), TypeError, "ToyModel or its W"),
    "superposition.sparse_features: sparsity above 1": (lambda: xc.superposition.sparse_features(4, 3, 1.5), ValueError, "in \\[0, 1\\)"),
    "superposition.sparsity_sweep: sparsity above 1": (lambda: xc.superposition.sparsity_sweep((0.5, 2.0)), ValueError, "probability that a feature is zero"),
    "superposition.superposition: four dimensions": (lambda: xc.superposition.superposition(torch.zeros(2, 3, 4, 5)), TypeError, "ToyModel or its W"),
    "superposition.train_toy_model: no steps": (lambda: xc.superposition.train_toy_model(5, 2, 0.9, steps=0), ValueError, "steps must be"),
    "tda.lds: outputs for other retrainings": (lambda: xc.tda.lds(torch.zeros(2, 3), torch.zeros(4, 3, dtype=torch.bool), torch.zeros(5, 2)), ValueError, "one row per retraining"),
    "tda.loo_correlation: scores of the wrong shape": (lambda: xc.tda.loo_correlation(torch.zeros(2, 3), torch.zeros(3, 3)), ValueError, r"scores must be \(n_test, n_train\)"),
    "tda.method_scores: not a Run": (lambda: xc.tda.method_scores(xc.retraining.problem(), "run"), TypeError, "retraining.Run"),
    "tda.results: not the cache": (lambda: xc.tda.results({"setup": {}}), ValueError, "retraining.load"),
    "tda.table: not a dict": (lambda: xc.tda.table([("x", 1)]), TypeError, "rows must be the dict"),
    "retraining.train: float32 features": (lambda: xc.retraining.train(torch.zeros(4, 32), torch.zeros(4, dtype=torch.long)), TypeError, r"pass x.to\(torch.float64\)"),
    "retraining.train: a label out of range": (lambda: xc.retraining.train(torch.zeros(4, 32, dtype=torch.float64), torch.full((4,), 5)), ValueError, r"class labels in \[0, 3\)"),
    "retraining.train: features of another width": (lambda: xc.retraining.train(torch.zeros(4, 31, dtype=torch.float64), torch.zeros(4, dtype=torch.long)), ValueError, r"\(n, 32\)"),
    "retraining.train: fractional indices to keep": (lambda: xc.retraining.train(torch.zeros(4, 32, dtype=torch.float64), torch.zeros(4, dtype=torch.long), [0.5]), ValueError, "integer indices"),
    "retraining.margins: float labels": (lambda: xc.retraining.margins(xc.retraining.new_model(), torch.zeros(2, 32, dtype=torch.float64), torch.zeros(2)), TypeError, "integer class labels"),
    "retraining.leave_one_out: no indices": (lambda: xc.retraining.leave_one_out(xc.retraining.problem(), [], progress=False), ValueError, "non-empty sequence of ints"),
    "retraining.leave_one_out: indices a string": (lambda: xc.retraining.leave_one_out(xc.retraining.problem(), "ab", progress=False), TypeError, "indices must be ints"),
    "retraining.random_subsets: a negative count": (lambda: xc.retraining.random_subsets(300, -1), ValueError, "n_subsets must be an int >= 1"),
    "retraining.subset_outputs: no subsets": (lambda: xc.retraining.subset_outputs(xc.retraining.problem(), torch.zeros(0, 300, dtype=torch.bool), progress=False), ValueError, "one bool mask of length 300 per retraining"),
    "retraining.mislabel_experiment: ks one number": (lambda: xc.retraining.mislabel_experiment(ks=5, progress=False), TypeError, "ks must be a tuple of ints"),
    "retraining.load: not a torch file": (_load_a_text_file, ValueError, "not a retraining cache"),
    "tda.lds: subsets not bool masks": (lambda: xc.tda.lds(torch.zeros(2, 3), torch.ones(4, 3, dtype=torch.long), torch.zeros(4, 2)), TypeError, "bool masks"),
    "tda.lds: one retraining": (lambda: xc.tda.lds(torch.zeros(2, 3), torch.ones(1, 3, dtype=torch.bool), torch.zeros(1, 2)), ValueError, "at least 2"),
    "tda.loo_correlation: effects a vector": (lambda: xc.tda.loo_correlation(torch.zeros(3), torch.zeros(3)), ValueError, r"effects must be \(n_test, n_train\)"),
    "tda.results: not a dict": (lambda: xc.tda.results(5), TypeError, "truth must be the dict"),
    "tda.table: a row without its scores": (lambda: xc.tda.table({"method": 0.4}), ValueError, "'LDS': ..., 'LOO Spearman'"),
    "tda.table: mislabel not the experiment's dict": (lambda: xc.tda.table({}, {"k": 3}), ValueError, "it lacks"),
    "superposition.sparse_features: sparsity a string": (lambda: xc.superposition.sparse_features(4, 3, "high"), TypeError, "sparsity must be a number"),
    "superposition.train_toy_model: negative learning rate": (lambda: xc.superposition.train_toy_model(5, 2, 0.9, steps=1, lr=-1.0), ValueError, "lr must be a number > 0"),
    "superposition.ToyModel.forward: features of another width": (lambda: xc.superposition.ToyModel(5, 2)(torch.zeros(2, 4)), ValueError, r"\(B, 5\)"),
    "superposition.ToyModel.forward: a list": (lambda: xc.superposition.ToyModel(5, 2)([[0.0] * 5]), TypeError, "sparse_features"),
    "superposition.features_represented: threshold a string": (lambda: xc.superposition.features_represented(torch.zeros(2, 5), "high"), TypeError, "threshold must be a number"),
    "superposition.sparsity_sweep: one number": (lambda: xc.superposition.sparsity_sweep(0.9, steps=1), TypeError, "sequence of sparsities"),
    "sae.SparseAutoencoder.encode: activations of another width": (lambda: xc.sae.SparseAutoencoder(3, 4).encode(torch.zeros(2, 5)), ValueError, r"\(N, 3\)"),
    "sae.SparseAutoencoder.decode: latents of another width": (lambda: xc.sae.SparseAutoencoder(3, 4).decode(torch.zeros(2, 5)), ValueError, r"\(N, 4\)"),
    "sae.train_sae: negative learning rate": (lambda: xc.sae.train_sae(torch.rand(4, 3), 4, steps=1, lr=-1.0), ValueError, "lr must be a number > 0"),
    "sae.sae_stats: no activations": (lambda: xc.sae.sae_stats(xc.sae.SparseAutoencoder(3, 4), torch.zeros(0, 3)), ValueError, "N >= 1"),
    "sae.sae_stats: NaN activations": (lambda: xc.sae.sae_stats(xc.sae.SparseAutoencoder(3, 4), torch.full((2, 3), float("nan"))), ValueError, "NaN"),
    "sae.sae_stats: not an autoencoder": (lambda: xc.sae.sae_stats(nn.Linear(3, 3), torch.zeros(2, 3)), TypeError, r"\(x_hat, f\)"),
    "sae.sae_loss: negative l1": (lambda: xc.sae.sae_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 5), -1.0), ValueError, "l1 must be a number >= 0"),
    "sae.latent_auroc: labels of three classes": (lambda: xc.sae.latent_auroc(torch.rand(4, 2), torch.tensor([0, 1, 2, 2])), ValueError, r"bool \(or 0/1\)"),
    "sae.latent_auroc: labels of another shape": (lambda: xc.sae.latent_auroc(torch.rand(4, 2), torch.ones(2, 2, dtype=torch.bool)), ValueError, r"labels \(N,\)"),
    "sae.recover_toy_features: threshold above 1": (lambda: xc.sae.recover_toy_features(threshold=2.0), ValueError, "a cosine"),
    "sae.shapes_marker_sae: too few test images": (lambda: xc.sae.shapes_marker_sae(n_test=2), ValueError, "use more images"),
    "influence.per_example_gradients: x and y of different lengths": (lambda: xc.influence.per_example_gradients(NET, torch.nn.functional.cross_entropy, torch.zeros(2, 3, 8, 8), torch.zeros(3, dtype=torch.long)), ValueError, "same examples"),
    "influence.gradient_similarity: unknown kind": (lambda: xc.influence.gradient_similarity(NET, torch.nn.functional.cross_entropy, (torch.zeros(1, 3, 8, 8), torch.zeros(1, dtype=torch.long)), (torch.zeros(1, 3, 8, 8), torch.zeros(1, dtype=torch.long)), kind="l2"), ValueError, "kind must be"),
    "influence.tracin: no checkpoints": (lambda: xc.influence.tracin(NET, [], torch.nn.functional.cross_entropy, (torch.zeros(1, 3, 8, 8), torch.zeros(1, dtype=torch.long)), (torch.zeros(1, 3, 8, 8), torch.zeros(1, dtype=torch.long))), ValueError, "checkpoints is empty"),
    "influence.self_influence: no checkpoints": (lambda: xc.influence.self_influence(NET, [], torch.nn.functional.cross_entropy, (torch.zeros(1, 3, 8, 8), torch.zeros(1, dtype=torch.long))), ValueError, "checkpoints is empty"),
    "influence.hessian: too many parameters": (lambda: xc.influence.hessian(torch.nn.Linear(100, 60), torch.nn.functional.cross_entropy, (torch.zeros(2, 100), torch.zeros(2, dtype=torch.long))), ValueError, "too large"),
    "widgets.influence_explorer: scores of the wrong shape": (lambda: xc.widgets.influence_explorer(torch.zeros(2, 3, 8, 8), torch.zeros(3, 3, 8, 8), {"m": torch.zeros(3, 2)}, torch.zeros(2, 3), test_labels=[0, 0], train_labels=[0, 0, 0]), ValueError, "like the truth"),
    "influence.influence_function: unknown method": (lambda: xc.influence.influence_function(NET, torch.nn.functional.cross_entropy, (torch.zeros(1, 3, 8, 8), torch.zeros(1, dtype=torch.long)), (torch.zeros(1, 3, 8, 8), torch.zeros(1, dtype=torch.long)), method="lissa"), ValueError, "method must be"),
    "generation.hit_rate: truth of the wrong shape": (lambda: xc.generation.hit_rate(torch.zeros(1, 2, 3), torch.zeros(2, dtype=torch.long)), ValueError, "one source position per row"),
}

# Public names with no bad input of their own to catalogue, and why.
NOT_CATALOGUED = {
    **{f"{module}.{name}": "a result container returned by the package" for module, names in {
        "attention": ("TextAttentions", "Attended"), "data": ("ShapesDataset", "TextDataset"), "diagnose": ("Diagnosis",),
        "hooks": ("Recording",), "interpret": ("TextExplanation", "ImageExplanation", "MisclassificationReport", "MisclassificationStats"),
        "concepts": ("CAV", "TCAVResult"), "metrics": ("PerturbationCurve", "SanityCheck", "DataRandomization", "RoarResult", "SanityBadge"), "models": ("ImageModel", "TextModel", "VisionTransformer")}.items()
       for name in names},
    **{f"models.{name}": "an nn.Module architecture; its loaders are catalogued"
       for name in ("SelfAttention", "ViTBlock", "TinyViT", "ShapesCNN", "ShapesResNet")},
    **{f"widgets.{name}": "built by its factory function, which is catalogued" for name in (
        "AttentionExplorer", "ViTAttentionExplorer", "PhotoMapExplorer", "SmoothGradExplorer", "IGExplorer", "GradCAMExplorer",
        "PerturbationExplorer", "LRPExplorer", "RelevanceExplorer", "TextRelevanceExplorer", "CircuitExplorer", "TCAVExplorer", "InfluenceExplorer")},
    **{f"{name}": "a result container returned by the package" for name in (
        "probes.ProbeResult", "probes.Selectivity", "retraining.Problem", "retraining.Run", "sae.MarkerSAE", "sae.Recovery",
        "sae.SAEStats", "superposition.Trained")},
    "retraining.build": "the cache script (two minutes of retraining); it takes only a path and a progress flag",
    "retraining.new_model": "takes no arguments",
    "retraining.loss_fn": "nn.functional.cross_entropy, called inside vmap by every method: its own messages, no checks in the hot loop",
    "widgets.BlitFigure": "an internal drawing helper of the explorers (takes a figure the package built)",
    **{f"models.{name}": "chapter 10's tiny GPT parts (an nn.Module, its bundle, its tokenizer); bad input is tested in tests/test_patching.py"
       for name in ("TinyGPT", "HeadAttention", "GPTBundle", "CharTokenizer")},
    "models.tiny_gpt": "takes only a device, which torch.device checks as for every loader",
    "train.train_tiny_gpt": "a training script (minutes); its steps argument is checked by positive_int",
    "models.OfflineError": "the exception itself",
    "viz.FigureWarning": "the warning itself",
    "viz.figure_problems": "takes only a figure; a non-figure is a TypeError (tests/test_exceptions.py) and its findings are tested in tests/test_figure_checks.py",
    "models.imagenet_labels": "takes no arguments",
    "models.tiny_vit": "takes only a device: the loader is catalogued through models.vit",
    "models.shapes_resnet": "takes only a device, which torch.device checks as for every loader",
    "widgets.saliency_methods": "takes no arguments",
    "widgets.cam_methods": "takes no arguments",
    "inputs.warn_if_zero": "inspects any result and warns; it never raises",
    "inputs.has_values": "reads a tensor's device; any tensor is valid",
    "metrics.NoMapWarning": "a warning class",
    "guarantees.ConservationWarning": "a warning class",
    "guarantees.Conservation": "a result container returned by the package (attributions.conservation)",
}
# Modules outside the catalogue: the graders are tested against wrong learner code in tests/test_checks*.py;
# environment and notebooks are command-line tools tested in tests/test_project.py and tests/test_notebooks.py.
CATALOGUED_MODULES = ("attention", "baselines", "batching", "cam", "concepts", "data", "deeplift", "diagnose", "generation", "guarantees", "hooks",
                      "ig", "influence", "inputs", "interpret", "lime", "lrp", "maps", "metrics", "models", "numerics", "patching", "probes", "relevance", "retraining", "sae", "saliency",
                      "shapley", "superposition", "tda", "targets", "train", "viz", "widgets")


def public_api() -> set[str]:
    names = set()
    for module_name in CATALOGUED_MODULES:
        module = importlib.import_module(f"xaicourse.{module_name}")
        names |= {f"{module_name}.{name}" for name in module.__all__
                  if (inspect.isfunction(obj := getattr(module, name)) or inspect.isclass(obj))
                  and obj.__module__.startswith(module.__name__)}  # defined in the module or its subpackage
    return names


def test_catalogue_covers_every_public_function():
    covered = {case.split(":")[0] for case in OTHER_CASES} | set(IMAGE_METHODS)
    covered |= {name.rsplit(".", 1)[0] for name in covered}  # "interpret.X.interpret" covers the class X
    missing = public_api() - covered - set(NOT_CATALOGUED)
    assert not missing, f"public functions without a bad-input case in OTHER_CASES (or a reason in NOT_CATALOGUED): {sorted(missing)}"
    assert not set(NOT_CATALOGUED) - public_api(), "NOT_CATALOGUED names something that is no longer public"


@pytest.mark.parametrize("case", OTHER_CASES)
def test_other_entry_points_reject_bad_input(case):
    call, error, match = OTHER_CASES[case]
    with pytest.raises(error, match=match) as excinfo:
        call()
    assert raised_by_package(excinfo), f"{case}: failed deep inside a library: {excinfo.value}"
    assert hooks_left(NET) == 0


def test_corrupt_image_file(tmp_path):
    bad = tmp_path / "photo.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(ValueError, match="not a readable image"):
        xc.data.load_image(bad)


def test_over_long_text_is_truncated_with_a_warning(bert):
    with pytest.warns(UserWarning, match="truncated"):
        result = xc.attention.get_attentions(bert, "word " * 600)
    assert result.attentions.shape[-1] == bert.max_length


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("method", IMAGE_METHODS)
def test_repeated_calls_leave_no_hooks_and_do_not_grow_memory(method):
    x = torch.randn(2, 3, 32, 32)
    for _ in range(10):  # warm up allocator caches
        IMAGE_METHODS[method](x)
    gc.collect()
    before = _rss_mb()
    for _ in range(100):
        IMAGE_METHODS[method](x)
    gc.collect()
    assert hooks_left(NET) == 0
    assert all(p.grad is None for p in NET.parameters())
    assert _rss_mb() - before < 50
