"""check_grad_cam: accepts the reference solution, reports a stub, and names typical mistakes."""
import pytest
import torch
import torch.nn.functional as F

from xaicourse import testing
from xaicourse.checks import CheckFailed, check_grad_cam


def make_grad_cam(*, relu=True, weight_dims=(2, 3), upsample=True, normalise=True, remove_hooks=True,
                  score="target", backward=False, summed=False):
    """A learner's Grad-CAM with hooks registered by hand; each keyword switches on one mistake
    (upsample="nearest", "align_corners" or "bicubic"; normalise="max": divide by the maximum only)."""

    def grad_cam(model, layer, x, target):
        store = {}

        def forward_hook(module, inputs, output):
            store["A"] = output.detach()
            output.register_hook(lambda g: store.__setitem__("G", g.detach()))

        handle = layer.register_forward_hook(forward_hook)
        try:
            x = x.clone().requires_grad_(True)
            logits = model(x)
            chosen = logits[torch.arange(len(x)), torch.as_tensor(target)].sum() if score == "target" else logits.sum()
            if backward:
                chosen.backward()
            else:
                torch.autograd.grad(chosen, x)
        finally:
            if remove_hooks:
                handle.remove()
        reduce = torch.sum if summed else torch.mean
        weights = reduce(store["G"], dim=weight_dims, keepdim=True)
        cam = (weights * store["A"]).sum(dim=1)
        if relu:
            cam = cam.clamp(min=0)
        if upsample:
            how = {"nearest": dict(mode="nearest"), "align_corners": dict(mode="bilinear", align_corners=True),
                   "bicubic": dict(mode="bicubic", align_corners=False)}.get(upsample, dict(mode="bilinear", align_corners=False))
            cam = F.interpolate(cam[:, None], size=x.shape[-2:], **how)[:, 0]
        if normalise == "max":
            cam = cam / cam.amax(dim=(1, 2), keepdim=True)
        elif normalise:
            low = cam.amin(dim=(1, 2), keepdim=True)
            span = cam.amax(dim=(1, 2), keepdim=True) - low
            cam = torch.where(span > 0, (cam - low) / span.clamp(min=1e-12), torch.zeros_like(cam))
        return cam

    return grad_cam


def test_reference_passes(capsys):
    assert check_grad_cam(make_grad_cam()) is True
    assert "[passed] check_grad_cam" in capsys.readouterr().out


def test_spatial_sum_is_accepted_because_it_only_rescales_the_map():
    assert check_grad_cam(make_grad_cam(summed=True)) is True  # sum = mean * h * w


def test_stub_reports_not_implemented(capsys):
    def stub(model, layer, x, target):
        raise NotImplementedError("Your turn")

    assert check_grad_cam(stub) is False
    assert "not implemented yet" in capsys.readouterr().out


@pytest.mark.parametrize("mistake, message", [
    (dict(relu=False), "no ReLU"),
    (dict(weight_dims=(1,)), "averaged over the channels"),
    (dict(weight_dims=(0, 2, 3)), "averaged over the batch"),
    (dict(upsample=False), "upsample it"),
    (dict(normalise=False), "scale each map to"),
    (dict(remove_hooks=False), "hook(s) are still registered"),
    (dict(backward=True), "carry .grad"),
    (dict(score="all"), "each sample's own target score"),
])
def test_typical_mistakes_are_named(mistake, message):
    with pytest.raises(CheckFailed, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_grad_cam(make_grad_cam(**mistake))


@pytest.mark.parametrize("mistake, message", [
    (dict(normalise="max"), "maximum only"),
    (dict(upsample="nearest"), "nearest-neighbour upsampling"),
    (dict(upsample="align_corners"), "align_corners=True"),
    (dict(upsample="bicubic"), "upsample with mode='bilinear'"),
])
def test_post_processing_mistakes_get_an_upsampling_or_scaling_hint(mistake, message):
    with pytest.raises(CheckFailed) as failure:
        check_grad_cam(make_grad_cam(**mistake))
    assert message in str(failure.value) and "backpropagate" not in str(failure.value)


def test_the_case_has_a_map_whose_minimum_is_not_zero():
    model, layer, x, targets = testing.grad_cam_case()
    raw = make_grad_cam(upsample=False, normalise=False, relu=False)(model, layer, x, targets)
    assert (raw[0] < 0).float().mean() > 0.5          # sample 0: the ReLU matters
    assert raw[1].min() > 0.3 * raw[1].max()          # sample 1: max-only scaling is not min-max scaling
    scaled = make_grad_cam()(model, layer, x, targets)
    max_only = make_grad_cam(normalise="max")(model, layer, x, targets)
    assert (max_only[1] - scaled[1]).abs().max() > 0.2 and torch.allclose(max_only[0], scaled[0], atol=1e-6)


def test_a_float64_grad_cam_passes():
    assert check_grad_cam(lambda *args: make_grad_cam()(*args).double()) is True


def test_wrong_types_and_shapes_are_named():
    with pytest.raises(CheckFailed, match="torch.Tensor"):
        check_grad_cam(lambda model, layer, x, target: make_grad_cam()(model, layer, x, target).numpy())
    with pytest.raises(CheckFailed, match="channel dimension"):
        check_grad_cam(lambda model, layer, x, target: make_grad_cam()(model, layer, x, target)[:, None])
