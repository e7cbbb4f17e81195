"""Wrong answers the cold read of chapters 00-07 found the graders accepting (issue 24): each is now named."""
import pytest
import torch

import xaicourse as xc
from xaicourse.checks import (check_integrated_gradients, check_map_resolution, check_remove_evidence, check_softmax,
                              check_vanilla_gradient)
from xaicourse.checks.core import CheckFailed


def test_softmax_shifted_by_the_batch_max_is_named():
    def batch_max(logits):
        e = (logits - logits.max()).exp()
        return e / e.sum(-1, keepdim=True)
    with pytest.raises(CheckFailed, match="one max for the whole batch"):
        check_softmax(batch_max)


def test_vanilla_gradient_gets_a_plain_list():
    def tensor_only(model, x, target=None):
        x = x.detach().clone().requires_grad_(True)
        out = model(x)
        t = out.argmax(1) if target is None else torch.full((len(x),), target) if isinstance(target, int) else target
        grad, = torch.autograd.grad(out.gather(1, t.view(-1, 1)).sum(), x)   # a list has no .view
        return grad
    with pytest.raises(AttributeError, match="view"):
        check_vanilla_gradient(tensor_only)


def _ig(model, x, target, baseline, n, alpha_shape=None):
    alphas = torch.linspace(0, 1, n)
    shape = alpha_shape or (-1, *[1] * (x.dim() - 1))
    weights = torch.full((n,), 1 / (n - 1))
    weights[0] = weights[-1] = 0.5 / (n - 1)
    points = (baseline + alphas.view(*shape) * (x - baseline)).requires_grad_(True)
    grad, = torch.autograd.grad(model(points)[:, target].sum(), points)
    return (x - baseline) * (weights.view(*shape) * grad).sum(0, keepdim=True)


def test_ig_written_for_flat_inputs_fails_on_an_image():
    assert check_integrated_gradients(_ig) is True
    with pytest.raises(CheckFailed, match="on an image"):
        check_integrated_gradients(lambda m, x, t, b, n: _ig(m, x, t, b, n, alpha_shape=(-1, 1)))


def test_a_fixed_downsampling_factor_is_named():
    with pytest.raises(CheckFailed, match="fixed factor"):
        check_map_resolution(lambda model, layer, x: (x.shape[-2] // 4, x.shape[-1] // 4))


def _remove(model, layer, x, target, top=0.2, *, ignore_top=False, in_place=False):
    region = xc.maps.top_region(xc.cam.grad_cam(model, layer, x, target), 0.2 if ignore_top else top)[:, None]
    with torch.no_grad():
        return model(x.masked_fill_(region, 0.0) if in_place else x.masked_fill(region, 0.0)).softmax(-1)


@pytest.mark.parametrize("flag, hint", [("ignore_top", "top=0.35"), ("in_place", "changed the image")])
def test_remove_evidence_mistakes_are_named(flag, hint):
    assert check_remove_evidence(_remove) is True
    with pytest.raises(CheckFailed, match=hint):
        check_remove_evidence(lambda *args: _remove(*args, **{flag: True}))
