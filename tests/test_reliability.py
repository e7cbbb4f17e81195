"""Reliability under bad input: every public entry point fails at the boundary, clearly.

Each case feeds one bad input and asserts (1) the exception type, (2) a message that names the problem,
and (3) that it was raised by xaicourse's own code (the innermost frame is in the package), not deep
inside torch. Then: no hooks left and bounded memory over many repeated calls.
"""
import gc
import resource
import traceback
from pathlib import Path

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

IMAGE_METHODS = {
    "vanilla_gradient": lambda x, **kw: xc.saliency.vanilla_gradient(NET, x, **kw),
    "gradient_x_input": lambda x, **kw: xc.saliency.gradient_x_input(NET, x, **kw),
    "smoothgrad": lambda x, **kw: xc.saliency.smoothgrad(NET, x, n_samples=3, **kw),
    "grad_cam": lambda x, **kw: xc.cam.grad_cam(NET, LAYER, x, **kw),
    "grad_cam_pp": lambda x, **kw: xc.cam.grad_cam_pp(NET, LAYER, x, **kw),
    "score_cam": lambda x, **kw: xc.cam.score_cam(NET, LAYER, x, **kw),
    "integrated_gradients": lambda x, **kw: xc.ig.integrated_gradients(NET, x, n_steps=4, **kw),
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


def _other_cases():
    bert = xc.models.bert()
    mask = torch.zeros(2, 8, 8, dtype=torch.bool)
    attention = torch.softmax(torch.randn(2, 2, 4, 4), -1)
    return {
        "ig: baseline of another shape": (lambda: xc.ig.integrated_gradients(NET, X, baseline=torch.zeros(1, 3, 4, 4)), ValueError, "baseline"),
        "ig: n_steps < 1": (lambda: xc.ig.integrated_gradients(NET, X, n_steps=0), ValueError, "n_steps"),
        "ig: unknown rule": (lambda: xc.ig.integrated_gradients(NET, X, method="simpson"), ValueError, "gausslegendre"),
        "smoothgrad: n_samples < 1": (lambda: xc.saliency.smoothgrad(NET, X, n_samples=0), ValueError, "n_samples"),
        "smoothgrad: noise_level < 0": (lambda: xc.saliency.smoothgrad(NET, X, noise_level=-0.1), ValueError, "noise_level"),
        "saliency: unknown channel reduction": (lambda: xc.saliency.to_map(X, reduce="mean"), ValueError, "max_abs"),
        "cam: layer not in the model": (lambda: xc.cam.grad_cam(NET, nn.Conv2d(4, 4, 1), X), ValueError, "not part of this model"),
        "cam: layer name not in the model": (lambda: xc.cam.grad_cam(NET, "layer4", X), ValueError, "no layer named"),
        "cam: Linear layer without reshape": (lambda: xc.cam.grad_cam(NET, NET[6], X), ValueError, "feature map"),
        "metrics: attribution of another shape": (lambda: xc.metrics.deletion_auc(NET, X, torch.rand(2, 5, 5)), ValueError, "shape"),
        "metrics: mask of another shape": (lambda: xc.metrics.mask_energy(torch.rand(2, 8, 8), mask[:, :4]), ValueError, "shape"),
        "attention: empty text": (lambda: xc.attention.get_attentions(bert, ""), ValueError, "empty"),
        "attention: rollout of a 2-D tensor": (lambda: xc.attention.rollout(torch.rand(4, 4)), ValueError, "layers, heads"),
        "attention: unknown head fusion": (lambda: xc.attention.rollout(attention, head_fusion="median"), ValueError, "mean"),
        "data: missing image file": (lambda: xc.data.load_image("no/such/photo.jpg"), FileNotFoundError, "no image file"),
        "data: unknown photo": (lambda: xc.data.image("eagle"), ValueError, "choose one of"),
        "models: unknown image model": (lambda: xc.models.imagenet_cnn("vgg16"), ValueError, "efficientnet_lite0"),
        "models: unknown text model": (lambda: xc.models.bert("gpt2"), ValueError, "all-MiniLM-L6-v2"),
        "models: wrong class name": (lambda: xc.models.imagenet_cnn().class_index("tabby kat"), ValueError, "tabby"),
        "targets: bool target": (lambda: xc.saliency.vanilla_gradient(NET, X, target=True), TypeError, "bool"),
    }


@pytest.fixture(scope="module")
def other_cases():
    return _other_cases()


@pytest.mark.parametrize("case", list(_other_cases()))
def test_other_entry_points_reject_bad_input(other_cases, case):
    call, error, match = other_cases[case]
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
