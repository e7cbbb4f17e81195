"""Integrated Gradients (xaicourse.ig): axioms, Captum oracle, chunking, baselines, bad input, hygiene."""
import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients
from torch import nn

import xaicourse as xc
from xaicourse import ig
from xaicourse.hooks import hooks_left
from xaicourse.testing import assert_unchanged, snapshot, tiny_cnn, tiny_mlp


def small_cnn(seed=0):
    """Conv -> ReLU -> strided conv -> ReLU -> 2 x 2 average pool -> dense (5 classes), float64."""
    return tiny_cnn((4, 4), 5, head_pool=2, dtype=torch.float64, seed=seed)


def relu_mlp(seed=0):
    return tiny_mlp((6, 32, 32, 3), dtype=torch.float64, seed=seed)


@pytest.fixture
def images():
    return torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


# ---------------------------------------------------------------------------------------------- rules
@pytest.mark.parametrize("method", ig.RULES)
def test_weights_sum_to_one_and_integrate_polynomials(method):
    alphas, weights = ig.quadrature(method, 12)
    assert weights.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert (alphas >= 0).all() and (alphas <= 1).all()
    # integral of 3 a^2 over [0, 1] is 1; Gauss-Legendre is exact, the others within O(1/n)
    tol = 1e-12 if method == "gausslegendre" else 0.2
    assert (weights * 3 * alphas**2).sum().item() == pytest.approx(1.0, abs=tol)


def test_trapezoid_by_hand():
    alphas, weights = ig.quadrature("riemann_trapezoid", 3)
    assert alphas.tolist() == [0.0, 0.5, 1.0] and weights.tolist() == [0.25, 0.5, 0.25]


def test_path_endpoints():
    x, b = torch.ones(2, 3), torch.zeros(2, 3)
    p = ig.path(x, b, [0.0, 0.25, 1.0])
    assert p.shape == (3, 2, 3)
    assert torch.equal(p[0], b) and torch.equal(p[2], x) and torch.allclose(p[1], torch.full((2, 3), 0.25))


# ---------------------------------------------------------------------------------------------- axioms
@pytest.mark.parametrize("method", ig.RULES)
def test_linear_model_completeness_is_exact(method):
    torch.manual_seed(0)
    model = nn.Linear(6, 3).double()
    x, b = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    attr = ig.integrated_gradients(model, x, 1, baseline=b, n_steps=3, method=method)
    # on a linear model IG is exactly w * (x - x')
    assert torch.allclose(attr, model.weight[1].detach() * (x - b), atol=1e-12)
    assert ig.completeness_delta(model, x, attr, 1, baseline=b).abs().max() < 1e-12


def test_relu_net_gauss_legendre_converges():
    model = relu_mlp()
    x = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 3
    errors = {n: ig.completeness_delta(model, x, ig.integrated_gradients(model, x, 0, n_steps=n), 0, relative=True).max().item()
              for n in (2, 64, 512)}
    assert errors[512] < 0.01 and errors[512] < errors[2]


def test_steps_for_tolerance_is_smallest_passing():
    model = relu_mlp()
    x = torch.randn(1, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 3

    def err(n):
        return ig.completeness_delta(model, x, ig.integrated_gradients(model, x, 0, n_steps=n), 0, relative=True).item()

    n = ig.steps_for_tolerance(model, x, 0, tol=0.01)
    assert err(n) < 0.01 and err(n - 1) >= 0.01
    with pytest.raises(ValueError, match="max_steps"):
        ig.steps_for_tolerance(model, x, 0, tol=1e-9, max_steps=8)


# ---------------------------------------------------------------------------------------------- Captum oracle
@pytest.mark.parametrize("method", ig.RULES)
def test_matches_captum(method, images):
    model = small_cnn()
    n = 7
    ours = ig.integrated_gradients(model, images, [1, 3], baseline=0.5, n_steps=n, method=method)
    theirs = IntegratedGradients(model).attribute(images, baselines=0.5, target=[1, 3], n_steps=n, method=method)
    if method == "riemann_trapezoid":
        # Captum's trapezoid weights are 1/n with halved ends: they sum to (n - 1) / n, ours to 1
        theirs = theirs * n / (n - 1)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0)
    assert ours.abs().max() > 1e-3


def test_return_delta_matches_captum(images):
    model = small_cnn()
    attr, delta = ig.integrated_gradients(model, images, [1, 3], baseline=0.5, n_steps=5, return_delta=True)
    theirs, their_delta = IntegratedGradients(model).attribute(images, baselines=0.5, target=[1, 3], n_steps=5,
                                                               return_convergence_delta=True)
    assert torch.equal(attr, ig.integrated_gradients(model, images, [1, 3], baseline=0.5, n_steps=5))
    assert delta.shape == (2,) and delta.abs().max() > 1e-6  # 5 steps leave a visible error
    assert torch.allclose(delta, their_delta, atol=1e-6, rtol=0)


def test_captum_trapezoid_falls_short_by_n_minus_1_over_n():
    model = nn.Linear(6, 3).double()
    x = torch.randn(1, 6, dtype=torch.float64)
    theirs = IntegratedGradients(model).attribute(x, target=0, n_steps=10, method="riemann_trapezoid")
    change = (model(x) - model(torch.zeros_like(x)))[0, 0]
    assert theirs.sum().item() == pytest.approx(0.9 * change.item(), rel=1e-6)


# ---------------------------------------------------------------------------------------------- batching
def test_chunking_invariance(images):
    model = small_cnn()
    ref = ig.integrated_gradients(model, images, 2, n_steps=13, batch_size=13)
    for size in (1, 4, 5):
        assert torch.allclose(ig.integrated_gradients(model, images, 2, n_steps=13, batch_size=size), ref, atol=1e-12, rtol=0)
    assert torch.allclose(ig.integrated_gradients(model, images, 2, n_steps=13), ref, atol=1e-12, rtol=0)


def test_memory_budget_sets_chunk(images, monkeypatch):
    model = small_cnn()
    sizes = []
    handle = model.register_forward_pre_hook(lambda _m, args: sizes.append(len(args[0]) // len(images)))
    try:
        monkeypatch.setattr(xc.batching, "DEFAULT_BUDGET_BYTES", 1)
        ig.integrated_gradients(model, images, 0, n_steps=4)
        assert sizes[2:] == [1, 1, 1, 1]  # after the passes of x (targets) and the baseline (completeness): one at a time
        sizes.clear()
        monkeypatch.setattr(xc.batching, "DEFAULT_BUDGET_BYTES", 2**30)
        ig.integrated_gradients(model, images, 0, n_steps=10)
        assert sizes[2:] == [1, 9]  # the first point alone while its bytes are measured, then the rest
    finally:
        handle.remove()


def test_per_sample_targets_and_baselines(images):
    model = small_cnn()
    baselines = torch.stack([torch.zeros(3, 8, 8), torch.ones(3, 8, 8)]).double()
    both = ig.integrated_gradients(model, images, [0, 4], baseline=baselines, n_steps=9)
    for i, (t, b) in enumerate(zip([0, 4], baselines)):
        alone = ig.integrated_gradients(model, images[i:i + 1], t, baseline=b, n_steps=9)
        assert torch.allclose(both[i:i + 1], alone, atol=1e-12)
    theirs = IntegratedGradients(model).attribute(images, baselines=baselines, target=[0, 4], n_steps=9, method="gausslegendre")
    assert torch.allclose(both, theirs, atol=1e-5)


def test_default_target_is_argmax(images):
    model = small_cnn()
    top = model(images).argmax(1).tolist()
    assert torch.equal(ig.integrated_gradients(model, images, n_steps=5), ig.integrated_gradients(model, images, top, n_steps=5))


def test_multi_baseline_completeness_against_mean_output(images):
    torch.manual_seed(0)
    model = small_cnn(seed=None)  # from the global stream, which the baselines continue
    stack = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    attr = ig.multi_baseline_ig(model, images, 1, baselines=stack, n_steps=64)
    with torch.no_grad():
        expected = model(images)[:, 1] - model(stack)[:, 1].mean()
    assert torch.allclose(attr.flatten(1).sum(1), expected, atol=5e-4)
    assert expected.abs().max() > 0.02


# ---------------------------------------------------------------------------------------------- baselines
def test_baselines_live_in_input_space():
    x = torch.zeros(1, 3, 16, 16)
    norm = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert torch.all(ig.black_baseline(x, norm) == -1) and torch.all(ig.white_baseline(x, norm) == 1)
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert ig.black_baseline(x, imagenet)[0, :, 0, 0].tolist() == pytest.approx([-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225])
    assert torch.all(ig.black_baseline(x) == 0)
    noise = ig.noise_baseline(x, norm, seed=3)
    assert torch.equal(noise, ig.noise_baseline(x, norm, seed=3)) and noise.min() >= -1 and noise.max() <= 1


def test_baselines_accept_an_image_model(cnn, cat_x):
    assert torch.all(ig.make_baseline("black", cat_x, cnn) == -1)
    assert torch.allclose(torch.from_numpy(cnn.to_image(ig.white_baseline(cat_x, cnn))), torch.ones(224, 224, 3))


def test_blur_keeps_mean_and_removes_detail():
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    blurred = ig.blur_baseline(x, sigma=4)
    assert blurred.shape == x.shape
    assert blurred.std() < 0.5 * x.std()
    assert blurred.mean().item() == pytest.approx(x.mean().item(), abs=0.02)
    flat = torch.full((1, 3, 32, 32), 0.3)
    assert torch.allclose(ig.blur_baseline(flat, sigma=30), flat, atol=1e-6)


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, error, match", [
    ({"baseline": torch.zeros(2, 3, 4, 4)}, ValueError, "baseline shape"),
    ({"baseline": "black"}, TypeError, "baseline must be"),
    ({"n_steps": 0}, ValueError, "n_steps must be at least 1"),
    ({"n_steps": 1, "method": "riemann_trapezoid"}, ValueError, "at least 2"),
    ({"n_steps": 2.5}, TypeError, "n_steps must be an int"),
    ({"method": "simpson"}, ValueError, "unknown method 'simpson'"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"target": 7}, ValueError, "out of range"),
])
def test_bad_input(kwargs, error, match, images):
    with pytest.raises(error, match=match):
        ig.integrated_gradients(small_cnn(), images, **{"target": 0, **kwargs})


def test_bad_x_and_names():
    with pytest.raises(TypeError, match="floating-point"):
        ig.integrated_gradients(small_cnn(), torch.zeros(1, 3, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="batch dimension"):
        ig.integrated_gradients(nn.Linear(3, 2), torch.zeros(3))
    with pytest.raises(ValueError, match="unknown baseline"):
        ig.make_baseline("grey", torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="attributions"):
        ig.completeness_delta(nn.Linear(3, 2), torch.zeros(1, 3), torch.zeros(1, 2))


# ---------------------------------------------------------------------------------------------- hygiene
def test_model_left_as_found(images):
    model = small_cnn().train()
    model[0].weight.requires_grad_(False)
    model[-1].weight.grad = torch.ones_like(model[-1].weight)
    before = snapshot(model)
    ig.integrated_gradients(model, images, 0, n_steps=4)
    assert_unchanged(model, before)
    assert model.training and not model[0].weight.requires_grad and model[0].bias.requires_grad
    assert torch.equal(model[-1].weight.grad, torch.ones_like(model[-1].weight)) and model[0].bias.grad is None
    assert not images.requires_grad


def test_no_hooks_after_error(images):
    model = small_cnn()

    class Boom(nn.Module):
        def forward(self, x):
            if x.requires_grad:
                raise RuntimeError("boom")
            return model(x)

    boom = Boom()
    with pytest.raises(RuntimeError, match="boom"):
        ig.integrated_gradients(boom, images, 0, n_steps=3)
    assert hooks_left(boom) == 0


def test_float32_follows_input_dtype():
    model = nn.Linear(4, 2)
    x = torch.randn(2, 4)
    attr = ig.integrated_gradients(model, x, 0, n_steps=4)
    assert attr.dtype == torch.float32 and np.isfinite(attr.numpy()).all()


def test_path_derivative_gives_every_rules_sum(images):
    model = small_cnn()
    grid = torch.linspace(0, 1, 9, dtype=torch.float64)
    g = ig.path_derivative(model, images, [1, 2], baseline=0.3, alphas=grid, batch_size=4)
    assert g.shape == (9, 2)
    for method in ("riemann_trapezoid", "gausslegendre"):
        alphas, weights = ig.quadrature(method, 9)
        attr = ig.integrated_gradients(model, images, [1, 2], baseline=0.3, n_steps=9, method=method)
        sums = (weights.view(-1, 1) * ig.path_derivative(model, images, [1, 2], baseline=0.3, alphas=alphas)).sum(0)
        assert torch.allclose(sums, attr.flatten(1).sum(1), atol=1e-12)
    assert torch.allclose(g[1:], ig.path_derivative(model, images, [1, 2], baseline=0.3, alphas=grid[1:]), atol=1e-12)


def test_ig_explorer_renders_and_caches(cnn):
    from xaicourse import widgets

    explorer = widgets.ig_explorer(cnn, xc.data.image("cat"), n_steps=4)
    first = explorer.image.value
    assert first[:4] == b"\x89PNG" and "relative completeness error" in explorer.status.value
    explorer.method.value = "riemann_middle"
    assert explorer.image.value != first and len(explorer.cache) == 2
    explorer.method.value = "gausslegendre"
    assert "from the cache" in explorer.status.value and len(explorer.cache) == 2
    with pytest.raises(ValueError, match="unknown baseline"):
        widgets.ig_explorer(cnn, xc.data.image("cat"), baseline="grey")
