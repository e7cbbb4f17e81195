"""A practitioner's zoo: the package on models nobody tuned it to (issue "no silent garbage").

Randomly initialised torchvision and timm models of different families, small inputs: a plain CNN
with in-place ReLU (VGG), residual (ResNet), inverted residual with ReLU6 (MobileNetV2), ConvNeXt, ViTs
with one, two and five prefix tokens, and a model whose forward returns a dict. Every method runs with
``layer=None``; the maps must be finite and carry evidence, and the model must be left exactly as found.
"""
import copy
import warnings

import pytest
import torch
from torch import nn

import xaicourse as xc

SIZE = 64


class DictOutput(nn.Module):
    """A model whose forward returns {"logits": ...}, like many research codebases."""

    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        return {"logits": self.body(x), "features": x.mean()}


def _vgg():
    from torchvision.models import vgg11

    return vgg11(num_classes=5)


def _resnet():
    from torchvision.models import resnet18

    return resnet18(num_classes=5)


def _mobilenet():
    from torchvision.models import mobilenet_v2

    return mobilenet_v2(num_classes=5)


def _convnext():
    import timm

    return timm.create_model("convnext_atto", pretrained=False, num_classes=5)


def _vit():
    import timm

    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=SIZE, num_classes=5)


def _deit():
    import timm

    return timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, img_size=SIZE, num_classes=5)


def _vit_registers():
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=SIZE, patch_size=16, embed_dim=64, depth=2, num_heads=2, reg_tokens=4,
                             num_classes=5)


def _dict_model():
    torch.manual_seed(0)
    return DictOutput(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                                    nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)))


ZOO = {"vgg11": _vgg, "resnet18": _resnet, "mobilenet_v2": _mobilenet, "convnext_atto": _convnext,
       "vit_tiny": _vit, "deit_distilled": _deit, "vit_registers": _vit_registers, "dict_output": _dict_model}
PREFIX = {"vit_tiny": 1, "deit_distilled": 2, "vit_registers": 5}


@pytest.fixture(scope="module", params=list(ZOO))
def zoo_model(request):
    torch.manual_seed(0)
    return request.param, ZOO[request.param]().eval()


X = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))

METHODS = {
    "grad_cam": lambda m, x: xc.cam.grad_cam(m, None, x, [1, 3]),
    "grad_cam_pp": lambda m, x: xc.cam.grad_cam_pp(m, None, x, [1, 3]),
    "guided_grad_cam": lambda m, x: xc.cam.guided_grad_cam(m, None, x, [1, 3]),
    "vanilla_gradient": lambda m, x: xc.saliency.vanilla_gradient(m, x, [1, 3]),
    "smoothgrad": lambda m, x: xc.saliency.smoothgrad(m, x, [1, 3], n_samples=2),
    "integrated_gradients": lambda m, x: xc.ig.integrated_gradients(m, x, [1, 3], n_steps=4),
}


def snapshot(model):
    return ({k: v.clone() for k, v in model.state_dict().items()}, [m.training for m in model.modules()],
            xc.hooks.hooks_left(model), [p.grad for p in model.parameters()])


def same(a, b):
    return (a[0].keys() == b[0].keys() and all(torch.equal(a[0][k], b[0][k]) for k in a[0])
            and a[1:3] == b[1:3] and all(g is None for g in b[3]))


@pytest.mark.parametrize("method", METHODS)
def test_every_method_makes_a_map_with_evidence_and_leaves_the_model_as_found(zoo_model, method):
    name, model = zoo_model
    if method == "guided_grad_cam" and not any(isinstance(m, (nn.ReLU, nn.ReLU6)) for m in model.modules()):
        with pytest.raises(ValueError, match="ReLU"):
            METHODS[method](model, X)
        return
    before = snapshot(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = METHODS[method](model, X)
    assert torch.isfinite(out).all()
    empty = (out.flatten(1).abs().amax(dim=1) == 0).nonzero().flatten().tolist()
    said = " ".join(str(w.message) for w in caught)
    # a random model may have no evidence for a class: then the map is empty and a warning says why
    assert not empty or ("zero" in said and str(empty[0]) in said), f"{method} on {name}: silent empty map {empty}"
    assert len(empty) < len(out), f"{method} on {name}: no map has any evidence"
    assert same(before, snapshot(model)), f"{method} changed {name}"


def test_token_models_get_a_usable_layer_and_their_prefix_tokens(zoo_model):
    name, model = zoo_model
    if name not in PREFIX:
        pytest.skip("not a token model")
    assert xc.cam.find_target_layer(model) is model.blocks[-1].norm1
    assert xc.cam.prefix_tokens(model, 16 + PREFIX[name]) == PREFIX[name]
    cams = xc.cam.grad_cam(model, None, X, [1, 3])
    assert cams.shape == (2, SIZE, SIZE) and (cams.flatten(1).amax(1) == 1).all()


def test_the_last_block_of_a_vit_warns_instead_of_returning_silent_zeros():
    model = _vit().eval()
    with pytest.warns(UserWarning, match="class token gets a gradient.*norm1"):
        cams = xc.cam.grad_cam(model, model.blocks[-1], X, [1, 3], reshape="vit")
    assert (cams == 0).all()


def _without_inplace(model):
    clone = copy.deepcopy(model)
    for module in clone.modules():
        if hasattr(module, "inplace"):
            module.inplace = False
    return clone


@pytest.mark.parametrize("name, layer", [("vgg11", "features.18"), ("resnet18", "layer3.1.bn2"),
                                         ("mobilenet_v2", "features.17.conv.0.1")])
def test_in_place_activations_after_the_layer_do_not_change_the_map(name, layer):
    """VGG's and ResNet's ReLU(inplace=True) follow these layers: the recorded output must be the layer's own."""
    torch.manual_seed(0)
    model = ZOO[name]().eval()
    reference = _without_inplace(model)
    for method in (xc.cam.grad_cam, xc.cam.grad_cam_pp):
        torch.testing.assert_close(method(model, layer, X, [1, 3]), method(reference, layer, X, [1, 3]), atol=1e-5, rtol=0)
    with xc.hooks.record_layer(model, layer) as rec, torch.no_grad():
        model(X)
    assert rec.activations.min() < 0  # the BatchNorm output before the ReLU, not after it


def test_train_mode_models_are_explained_in_eval_mode_and_restored():
    """Batch-norm statistics are not updated, dropout is off (two runs agree), the mode is restored."""
    torch.manual_seed(0)
    model = _resnet().train()
    vgg = _vgg().train()  # has dropout
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(UserWarning, match="training mode"):
        first = xc.saliency.vanilla_gradient(vgg, X, [1, 3])
    with pytest.warns(UserWarning, match="training mode"):
        assert torch.equal(first, xc.saliency.vanilla_gradient(vgg, X, [1, 3]))
    for method in METHODS.values():
        with pytest.warns(UserWarning, match="training mode"):
            method(model, X)
    assert all(torch.equal(buffers[k], v) for k, v in model.state_dict().items())
    assert model.training and all(m.training for m in model.modules())


def test_model_outputs_that_are_not_a_tensor():
    base = _dict_model().body.eval()

    class TupleOutput(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = base

        def forward(self, x):
            return self.body(x), x.sum()

    expected = xc.saliency.vanilla_gradient(base, X, [1, 3])
    for wrapped in (TupleOutput().eval(), DictOutput(base).eval()):
        torch.testing.assert_close(xc.saliency.vanilla_gradient(wrapped, X, [1, 3]), expected)
    with pytest.raises(TypeError, match="logits"):
        xc.inputs.logits({"a": torch.zeros(2, 5), "b": torch.zeros(2, 5)})
    with pytest.raises(TypeError, match="class scores"):
        xc.inputs.logits("scores")


def test_dead_relus_warn_instead_of_returning_silent_zeros():
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    with torch.no_grad():
        net[1].bias.fill_(-1e4)  # every hidden unit dead
    with pytest.warns(UserWarning, match="entirely zero.*dead ReLUs"):
        out = xc.saliency.vanilla_gradient(net, X)
    assert (out == 0).all()


def test_float64_models_and_numpy_targets():
    import numpy as np

    model = _dict_model().body.double().eval()
    out = xc.saliency.vanilla_gradient(model, X, np.array([1, 3]))
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, xc.saliency.vanilla_gradient(model, X.double(), [1, 3]))
    cams = xc.cam.grad_cam(model, None, X, np.int64(2))
    assert cams.shape == (2, SIZE, SIZE)


def test_nan_and_inf_baselines_are_refused():
    model = _dict_model().body.eval()
    for bad in (float("nan"), torch.full_like(X, float("inf"))):
        with pytest.raises(ValueError, match="NaN or inf|finite"):
            xc.ig.integrated_gradients(model, X, [1, 3], baseline=bad, n_steps=4)


def test_unknown_tokens_get_attributions_and_a_warning():
    """Emoji become [UNK]; the [PAD] baseline replaces them like any word, so they are attributed."""
    interpreter = xc.interpret.TextClassifierInterpreter(xc.models.sentiment_classifier(), n_steps=16)
    result = interpreter.interpret("A fine film \N{GRINNING FACE}")
    unk = [i for i, t in enumerate(result.tokens) if t == "[UNK]"]
    assert unk and all(result.attributions[i] != 0 for i in unk)
    with pytest.warns(UserWarning, match=r"unknown to the tokenizer \(\[UNK\]"):
        interpreter.interpret("\N{GRINNING FACE} \N{HEAVY BLACK HEART} \N{THUMBS UP SIGN} ok")


# --------------------------------------------------------------------------------------------
# Methods that keep their promises (issue "methods that keep their promises"): every guarantee is checked on
# the result, and a fallback or a miss is never silent.
# --------------------------------------------------------------------------------------------
PROMISED = {
    "deeplift": lambda m, x: xc.deeplift.deeplift(m, x, [1, 3]),
    "lrp": lambda m, x: xc.lrp.lrp(m, x, [1, 3]),
}


@pytest.mark.parametrize("method", PROMISED)
def test_a_promise_is_kept_or_the_miss_is_named(zoo_model, method):
    name, model = zoo_model
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = PROMISED[method](model, X)
        except ValueError as err:  # a layer the method cannot pair or read: refused, with the reason
            assert "deeplift" in str(err) or "LRP" in str(err) or "layer" in str(err), str(err)
            return
    said = [str(w.message) for w in caught if issubclass(w.category, xc.guarantees.ConservationWarning)]
    check = out.conservation
    unsupported = (xc.deeplift.unknown_modules if method == "deeplift" else xc.lrp.unfitting_modules)(model)
    if not check.holds.all():
        assert any("broken" in s for s in said), f"{method} on {name}: a silent miss of {check.relative.max():.1%}"
    if unsupported:
        assert any(unsupported[0] in s for s in said), f"{method} on {name}: {unsupported[0]} falls back silently"
    if check.holds.all() and not unsupported:
        assert not said


def test_nan_baselines_in_every_form_are_refused_by_every_baseline_method():
    model = _dict_model().body.eval()
    mask = (torch.arange(SIZE).view(-1, 1) // 32 * 2 + torch.arange(SIZE).view(1, -1) // 32).expand(2, 1, SIZE, SIZE)
    calls = {
        "deeplift": lambda b: xc.deeplift.deeplift(model, X, [1, 3], baseline=b),
        "kernel_shap": lambda b: xc.shapley.kernel_shap(model, X, [1, 3], feature_mask=mask, baseline=b, n_samples=8),
        "lime": lambda b: xc.lime.lime(model, X, [1, 3], feature_mask=mask, baseline=b, n_samples=8),
        "integrated_gradients": lambda b: xc.ig.integrated_gradients(model, X, [1, 3], baseline=b, n_steps=4),
    }
    for name, call in calls.items():
        for bad in (float("nan"), float("inf"), torch.full(X.shape[1:], float("nan")), torch.full((1, *X.shape[1:]), float("inf"))):
            with pytest.raises(ValueError, match="finite|NaN or inf"):
                call(bad)
    with pytest.raises(ValueError, match="NaN or inf"):
        xc.deeplift.deeplift_shap(model, X, [1, 3], baselines=torch.full((3, *X.shape[1:]), float("nan")))


def test_a_vit_without_a_class_token_is_refused_by_the_relevance_methods():
    import timm

    torch.manual_seed(0)
    pooled = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=SIZE, num_classes=5,
                               global_pool="avg", class_token=False).eval()
    with pytest.raises(ValueError, match="no class token"):
        xc.relevance.attention_relevance(pooled, X, [1, 3])


def test_a_vit_on_a_non_square_grid_gets_a_cam_on_its_grid():
    import timm

    torch.manual_seed(0)
    wide = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=(64, 96), num_classes=5).eval()
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    cams = xc.cam.grad_cam(wide, None, x, [1, 3])
    assert cams.shape == (2, 64, 96) and torch.isfinite(cams).all() and cams.amax() > 0
    with pytest.raises(ValueError, match=r"grid=\(h, w\)"):
        xc.cam.vit_reshape(torch.zeros(1, 25, 8), 1)


def test_kernel_shap_fits_many_coalitions_in_bounded_chunks(monkeypatch):
    # the regression sums its normal equations chunk by chunk: the same values as in one piece
    masks, weights = xc.shapley.sample_coalitions(12, 3000, seed=1)
    values = torch.randn(len(masks), dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    whole = xc.shapley._constrained_fit(masks, values, weights, 0.1, 2.0)
    monkeypatch.setattr(xc.shapley, "FIT_ROWS", 64)
    chunked = xc.shapley._constrained_fit(masks, values, weights, 0.1, 2.0)
    assert torch.allclose(whole, chunked, atol=1e-10) and chunked.sum().item() == pytest.approx(1.9)
    again, _ = xc.shapley.sample_coalitions(12, 3000, seed=1)
    assert torch.equal(again, masks)  # chunked sampling draws the same coalitions


def test_models_at_chance_make_roar_and_data_randomisation_warn():
    data = xc.data.shapes(48, seed=5, size=32)
    train = xc.data.ShapesDataset(data.images[:36], data.labels[:36], data.masks[:36], data.marker_masks[:36], data.classes)
    test = xc.data.ShapesDataset(data.images[36:], data.labels[36:], data.masks[36:], data.marker_masks[36:], data.classes)
    class Constant(nn.Module):  # trainable, but its output ignores the image: it can only learn the class frequencies
        def __init__(self):
            super().__init__()
            self.bias = nn.Parameter(torch.zeros(3))

        def forward(self, x):
            return self.bias.expand(len(x), 3) + 0 * x.flatten(1)[:, :1]

    with pytest.warns(UserWarning, match="chance is"):
        xc.metrics.permuted_label_models(train, test, make_model=Constant, epochs=1)
    with pytest.warns(UserWarning, match="ROAR's model .* chance is"):
        xc.metrics.roar(Constant(), {"random": lambda m, x, t: torch.rand(x.shape, generator=torch.Generator().manual_seed(0))},
                        train=train, test=test, fractions=(0.5,), seeds=(0,), epochs=1, make_model=Constant, progress=False)


def test_epsilon_gamma_box_refuses_low_above_high():
    model = _dict_model().body.eval()
    with pytest.raises(ValueError, match="swapped"):
        xc.lrp.lrp(model, X, [1, 3], composite="epsilon_gamma_box", low=1.0, high=-1.0)


def test_a_parameterless_wrapper_in_training_mode_does_not_warn():
    class Wrapper(nn.Module):
        def __init__(self, body):
            super().__init__()
            self.body = body

        def forward(self, x):
            return self.body(x)

    wrapper = Wrapper(_dict_model().body.eval())  # the wrapper itself is in training mode, as every new module
    assert wrapper.training
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xc.saliency.vanilla_gradient(wrapper, X, [1, 3])
    with pytest.warns(UserWarning, match="training mode"):
        xc.saliency.vanilla_gradient(Wrapper(nn.Sequential(nn.Dropout(0.0), _dict_model().body.eval())), X, [1, 3])


def test_chapter_08_methods_on_the_meta_device_run_or_say_why():
    meta = torch.device("meta")
    model = copy.deepcopy(_dict_model().body).eval().to(meta)
    x = torch.empty(2, 3, 8, 8, device=meta)
    refs = torch.empty(3, 3, 8, 8, device=meta)
    for call in (lambda: xc.deeplift.deeplift(model, x, [0, 1]), lambda: xc.deeplift.deeplift_shap(model, x, [0, 1], baselines=refs),
                 lambda: xc.shapley.gradient_shap(model, x, [0, 1], baselines=refs, n_samples=3),
                 lambda: xc.lrp.lrp(model, x, [0, 1])):
        assert call().device == meta
    mask = torch.zeros(2, 1, 8, 8, dtype=torch.long, device=meta)
    with pytest.raises(ValueError, match="meta device"):
        xc.shapley.kernel_shap(model, x, [0, 1], feature_mask=mask, n_samples=8)


def test_a_frozen_text_model_gets_its_attention_relevance():
    bundle = xc.models.sentiment_classifier()
    frozen = [p for p in bundle.model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        relevance = xc.relevance.attention_relevance(bundle, "a warm and funny film")
    finally:
        for p in frozen:
            p.requires_grad_(True)
    assert torch.isfinite(relevance).all() and relevance.abs().sum() > 0
