"""xaicourse.saliency: values against Captum and hand-computed cases, SmoothGrad axioms, hygiene, errors."""
import warnings

import pytest
import torch
from captum.attr import Deconvolution, GuidedBackprop, InputXGradient, NoiseTunnel, Saliency
from captum.attr._core.noise_tunnel import NoiseTunnel as _NoiseTunnel
from torch import nn

import xaicourse as xc
from xaicourse.hooks import hooks_left
from xaicourse.testing import assert_unchanged, snapshot
from xaicourse.viz import clip_map
from xaicourse.saliency import (copy_with_captum_relus, gradient_x_input, smoothgrad, to_map,
                                vanilla_gradient)


def tiny_relu_net() -> nn.Module:
    """logits = W2 relu(W1 x) on a (B, 1, 1, 2) input, with small integer weights."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 1.0], [2.0, -1.0]]))
        model[3].weight.copy_(torch.tensor([[1.0, 1.0], [-1.0, 3.0]]))
    return model.eval()


# x = (1, -2): hidden pre-activations (-1, 4) -> ReLU (0, 4) -> logits (4, 12): the top class is 1.
# d logit_1 / dx = W2[1] * relu'(pre) @ W1 = (0, 3) @ W1 = (6, -3);  d logit_0 / dx = (0, 1) @ W1 = (2, -1).
# x = (3, 1): pre (4, 5), both active: d logit_0 / dx = (1, 1) @ W1 = (3, 0).
X_TINY = torch.tensor([[1.0, -2.0], [3.0, 1.0]]).view(2, 1, 1, 2)


@pytest.fixture(scope="module")
def small_x(cat_x):
    """The cat at 64 x 64: the same network, a fraction of the cost. (At this size oneDNN's convolution
    gradients change by ~0.5 % with the batch size, so batch-size comparisons use the 224 input.)"""
    return nn.functional.interpolate(cat_x, size=(64, 64), mode="bilinear", antialias=True)


# --------------------------------------------------------------------------------------------
# Known values
# --------------------------------------------------------------------------------------------
def test_hand_computed_gradients_per_sample_targets():
    model = tiny_relu_net()
    got = vanilla_gradient(model, X_TINY, [1, 0])
    assert torch.equal(got.view(2, 2), torch.tensor([[6.0, -3.0], [3.0, 0.0]]))
    assert torch.equal(vanilla_gradient(model, X_TINY[:1]).view(2), torch.tensor([6.0, -3.0]))  # None = top class 1
    assert torch.equal(vanilla_gradient(model, X_TINY, 0).view(2, 2), torch.tensor([[2.0, -1.0], [3.0, 0.0]]))
    assert torch.equal(gradient_x_input(model, X_TINY, [1, 0]).view(2, 2), torch.tensor([[6.0, 6.0], [9.0, 0.0]]))


def test_tiny_model_matches_captum():
    model = tiny_relu_net()
    targets = torch.tensor([1, 0])
    torch.testing.assert_close(vanilla_gradient(model, X_TINY, targets),
                               Saliency(model).attribute(X_TINY.clone(), target=targets, abs=False), rtol=0, atol=1e-6)
    torch.testing.assert_close(gradient_x_input(model, X_TINY, targets),
                               InputXGradient(model).attribute(X_TINY.clone(), target=targets), rtol=0, atol=1e-6)


def test_cnn_matches_captum(cnn, cat_x):
    model, target = cnn.model, cnn.class_index("tiger cat")
    ours = vanilla_gradient(model, cat_x, target)
    assert ours.shape == cat_x.shape and ours.abs().max() > 1e-3
    torch.testing.assert_close(ours, Saliency(model).attribute(cat_x.clone(), target=target, abs=False), rtol=0, atol=1e-6)
    torch.testing.assert_close(gradient_x_input(model, cat_x, target),
                               InputXGradient(model).attribute(cat_x.clone(), target=target), rtol=0, atol=1e-6)


def test_to_map_reductions():
    attribution = torch.tensor([[1.0, -3.0], [2.0, 2.0], [-0.5, 0.0]]).view(1, 3, 1, 2)
    assert torch.equal(to_map(attribution), torch.tensor([[[2.0, 3.0]]]))
    assert torch.equal(to_map(attribution, "abs_sum"), torch.tensor([[[3.5, 5.0]]]))
    assert torch.equal(to_map(attribution, "sum"), torch.tensor([[[2.5, -1.0]]]))


def test_clip_map_saturates_the_top_and_guards_zero():
    maps = torch.stack([torch.arange(100.0).view(10, 10), torch.zeros(10, 10)])
    clipped = clip_map(maps, percentile=90)
    assert clipped[0].max() == 1 and (clipped[0] == 1).sum() == 10 and clipped[0, 0, 0] == 0
    assert torch.equal(clipped[1], torch.zeros(10, 10))


# --------------------------------------------------------------------------------------------
# SmoothGrad
# --------------------------------------------------------------------------------------------
def documented_noise(x, n_samples, noise_level, seed):
    """The noise the docstring promises: one randn per copy, sample-major, sigma from each input's range."""
    g = torch.Generator().manual_seed(seed)
    sigma = noise_level * (x.flatten(1).amax(1) - x.flatten(1).amin(1))
    return [[sigma[b] * torch.randn(x.shape[1:], generator=g) for _ in range(n_samples)] for b in range(len(x))]


def test_smoothgrad_zero_noise_is_the_gradient(cnn, cat_x):
    target = cnn.class_index("tiger cat")
    torch.testing.assert_close(smoothgrad(cnn.model, cat_x, target, n_samples=3, noise_level=0.0, variant="mean"),
                               vanilla_gradient(cnn.model, cat_x, target), rtol=0, atol=1e-6)


def test_smoothgrad_is_the_mean_gradient_of_the_documented_noise(cnn, cat_x):
    x = torch.cat([cat_x, cat_x.flip(-1)])
    targets = [cnn.class_index("tiger cat"), cnn.class_index("tabby")]
    noise = documented_noise(x, 2, 0.2, seed=7)
    expected = torch.stack([
        torch.stack([vanilla_gradient(cnn.model, (x[b] + e)[None], targets[b])[0] for e in noise[b]]).mean(0)
        for b in range(2)])
    torch.testing.assert_close(smoothgrad(cnn.model, x, targets, n_samples=2, noise_level=0.2, seed=7, batch_size=3, variant="mean"),
                               expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("variant, nt_type", [("mean", "smoothgrad"), ("squared", "smoothgrad_sq"), ("vargrad", "vargrad")])
def test_smoothgrad_matches_captum_noise_tunnel_on_the_same_noise(cnn, cat_x, monkeypatch, variant, nt_type):
    """Captum draws its noise from the global RNG; we hand it ours, so the aggregation is compared exactly."""
    x, target, n = cat_x, cnn.class_index("tiger cat"), 3
    queue = documented_noise(x, n, 0.15, seed=0)

    def add_our_noise(inputs, stdev, n_partition):
        noise = torch.stack([queue[b].pop(0) for b in range(len(inputs)) for _ in range(n_partition)])
        return inputs.repeat_interleave(n_partition, dim=0) + noise

    monkeypatch.setattr(_NoiseTunnel, "_add_noise_to_input", staticmethod(add_our_noise))
    theirs = NoiseTunnel(Saliency(cnn.model)).attribute(x.clone(), nt_type=nt_type, nt_samples=n,
                                                        nt_samples_batch_size=2, stdevs=1.0, target=target, abs=False)
    ours = smoothgrad(cnn.model, x, target, n_samples=n, noise_level=0.15, variant=variant, batch_size=2)
    scale = ours.abs().max()
    assert scale > 0
    torch.testing.assert_close(ours / scale, theirs / scale, rtol=0, atol=1e-6)


def test_smoothgrad_variants_on_the_tiny_model():
    """On a ReLU net the gradient is piecewise constant: with tiny noise no ReLU flips, so VarGrad is 0."""
    model = tiny_relu_net()
    kw = dict(n_samples=16, noise_level=1e-4, seed=3)
    grad = vanilla_gradient(model, X_TINY, [1, 0])
    torch.testing.assert_close(smoothgrad(model, X_TINY, [1, 0], variant="mean", **kw), grad)
    torch.testing.assert_close(smoothgrad(model, X_TINY, [1, 0], **kw), grad**2)  # the default: SmoothGrad^2
    torch.testing.assert_close(smoothgrad(model, X_TINY, [1, 0], variant="squared", **kw), grad**2)
    torch.testing.assert_close(smoothgrad(model, X_TINY, [1, 0], variant="vargrad", **kw), torch.zeros_like(grad))


def test_smoothgrad_seed_and_batch_size(cnn, cat_x):
    run = lambda **kw: smoothgrad(cnn.model, cat_x, 282, n_samples=3, **kw)  # noqa: E731
    reference = run(seed=1)
    assert torch.equal(reference, run(seed=1))
    assert not torch.allclose(reference, run(seed=2))
    for batch_size in (1, 2):
        torch.testing.assert_close(run(seed=1, batch_size=batch_size), reference, rtol=0, atol=1e-6)


def test_default_chunks_follow_the_measured_memory(cnn, cat_x):
    """SmoothGrad's chunks come from the bytes one noisy copy keeps for backward (batching's budget)."""
    from xaicourse.batching import DEFAULT_BUDGET_BYTES, measure_bytes
    from xaicourse.targets import score_gradient

    _, per_copy = measure_bytes(cnn.model, lambda: score_gradient(cnn.model, cat_x, 282), grad=True)
    assert 40e6 < per_copy < 120e6  # about 76 MB for EfficientNet-Lite0 at 224 x 224
    assert DEFAULT_BUDGET_BYTES // per_copy == 5  # chunks of 4-5 were fastest on 2 cores, ~0.9 GB peak


# --------------------------------------------------------------------------------------------
# The model and the input are left as found
# --------------------------------------------------------------------------------------------
def test_model_and_input_left_as_found():
    model = tiny_relu_net()
    model[1].weight.requires_grad_(False)
    model[3].weight.grad = torch.full((2, 2), 5.0)
    before = snapshot(model)
    x = X_TINY.clone()
    vanilla_gradient(model, x)
    gradient_x_input(model, x, 0)
    smoothgrad(model, x, [0, 1], n_samples=3)
    assert_unchanged(model, before)
    assert not x.requires_grad and x.grad is None and torch.equal(x, X_TINY)


def test_cnn_state_unchanged_and_works_under_no_grad(cnn, small_x):
    before = snapshot(cnn.model)
    with torch.no_grad():
        grad = smoothgrad(cnn.model, small_x, n_samples=2)
    assert grad.abs().sum() > 0
    assert_unchanged(cnn.model, before)


def test_training_mode_warns_and_is_kept():
    model = tiny_relu_net().train()
    with pytest.warns(UserWarning, match="training mode"):
        vanilla_gradient(model, X_TINY)
    assert model.training


def test_no_hooks_left_after_an_error():
    model = tiny_relu_net()
    with pytest.raises(ValueError):
        vanilla_gradient(model, X_TINY, 5)
    assert hooks_left(model) == 0


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, error, message", [
    (lambda m: vanilla_gradient(m, X_TINY[0]), ValueError, r"\(B, C, H, W\).*unsqueeze"),
    (lambda m: vanilla_gradient(m, X_TINY.long()), TypeError, "floating-point"),
    (lambda m: vanilla_gradient(m, X_TINY.numpy()), TypeError, "torch.Tensor"),
    (lambda m: vanilla_gradient("model", X_TINY), TypeError, "nn.Module"),
    (lambda m: vanilla_gradient(m, X_TINY, 2), ValueError, "out of range.*0..1"),
    (lambda m: gradient_x_input(m, X_TINY, [0]), ValueError, "one target per sample"),
    (lambda m: smoothgrad(m, X_TINY, n_samples=0), ValueError, "n_samples must be an int >= 1"),
    (lambda m: smoothgrad(m, X_TINY, n_samples=2.5), TypeError, "n_samples"),  # wrong kind of thing
    (lambda m: smoothgrad(m, X_TINY, noise_level=-0.1), ValueError, "noise_level must be a number >= 0"),
    (lambda m: smoothgrad(m, X_TINY, noise_level=float("nan")), ValueError, "noise_level"),
    (lambda m: smoothgrad(m, X_TINY, batch_size=0), ValueError, "batch_size"),
    (lambda m: smoothgrad(m, X_TINY, variant="max"), ValueError, "variant"),
    (lambda m: to_map(X_TINY[0]), ValueError, r"\(B, C, H, W\)"),
    (lambda m: to_map(X_TINY, "mean"), ValueError, "max_abs"),
])
def test_bad_input_is_rejected_clearly(call, error, message):
    with pytest.raises(error, match=message):
        call(tiny_relu_net())


# --------------------------------------------------------------------------------------------
# Guided Backprop / Deconvolution on EfficientNet-Lite0's ReLU6
# --------------------------------------------------------------------------------------------
def test_captum_relu_copy(cnn, small_x):
    model, target = cnn.model, 282
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Captum warns about setting backward hooks
        plain = GuidedBackprop(model).attribute(small_x.clone(), target=target)
        clone = copy_with_captum_relus(model)
        guided = GuidedBackprop(clone).attribute(small_x.clone(), target=target)
        deconv = Deconvolution(clone).attribute(small_x.clone(), target=target)
    gradient = vanilla_gradient(model, small_x, target)
    torch.testing.assert_close(plain, gradient)            # on ReLU6 Captum silently computes the plain gradient
    assert not torch.allclose(guided, gradient, atol=1e-4) and not torch.allclose(deconv, guided, atol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(clone(small_x), model(small_x))
    assert hooks_left(clone) == 0 and not clone.training


# --------------------------------------------------------------------------------------------
# The SmoothGrad explorer widget
# --------------------------------------------------------------------------------------------
def test_smoothgrad_explorer_renders_and_caches(cnn):
    import PIL.Image

    img = PIL.Image.fromarray((cnn.view(xc.data.image("cat")) * 255).astype("uint8")).resize((72, 72))
    small = type(cnn)(**{**cnn.__dict__, "resize": 64, "crop": 64})
    explorer = xc.widgets.smoothgrad_explorer(small, img, "tiger cat", n_samples=2, method="vanilla gradient")
    first = explorer.image.value
    assert first[:4] == b"\x89PNG" and len(explorer.cache) == 1
    assert explorer.n_samples.disabled
    explorer.method.value = "SmoothGrad"
    assert len(explorer.cache) == 2 and explorer.image.value != first and not explorer.n_samples.disabled
    explorer.method.value = "vanilla gradient"
    assert len(explorer.cache) == 2 and explorer.image.value == first and "from the cache" in explorer.status.value
    assert explorer.target == cnn.class_index("tiger cat")
    expected = clip_map(to_map(vanilla_gradient(cnn.model, small.preprocess(img), explorer.target)))[0].numpy()
    heat, title, _ = explorer.cache[("vanilla gradient",)]
    assert (heat == expected).all() and title == "vanilla gradient"
