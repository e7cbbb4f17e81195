"""Device-agnostic for real: no tensor is made on the CPU next to the model's tensors.

Without a GPU, the meta device proves it: meta tensors have shapes but no values, and mixing a CPU
tensor into an operation on meta tensors raises. Each method runs here on a model moved to "meta";
`make gpu-check` (scripts/gpu_check.py) runs them on CUDA and compares with the CPU.
"""
import pytest
import torch

import xaicourse as xc
from xaicourse.testing import tiny_cnn

META = torch.device("meta")


def cnn():
    return tiny_cnn((4, 4), 3, strides=1, paddings=1, seed=0).to(META)


X = torch.empty(2, 3, 8, 8, device=META)

METHODS = {
    "vanilla_gradient": lambda m: xc.saliency.vanilla_gradient(m, X, [0, 1]),
    "gradient_x_input": lambda m: xc.saliency.gradient_x_input(m, X, [0, 1]),
    "smoothgrad": lambda m: xc.saliency.smoothgrad(m, X, [0, 1], n_samples=3, batch_size=2),
    "smoothgrad auto chunks": lambda m: xc.saliency.smoothgrad(m, X, [0, 1], n_samples=3),
    "guided_backprop": lambda m: xc.saliency.guided_backprop(m, X, [0, 1]),
    "grad_cam": lambda m: xc.cam.grad_cam(m, m[2], X, [0, 1]),
    "grad_cam_pp": lambda m: xc.cam.grad_cam_pp(m, m[2], X, [0, 1]),
    "score_cam": lambda m: xc.cam.score_cam(m, m[2], X, [0, 1], batch_size=2),
    "integrated_gradients": lambda m: xc.ig.integrated_gradients(m, X, [0, 1], n_steps=4),
    "ig noise baseline": lambda m: xc.ig.integrated_gradients(m, X, [0, 1], n_steps=3, baseline=xc.ig.noise_baseline(X)),
    "completeness_delta": lambda m: xc.ig.completeness_delta(m, X, torch.empty_like(X), [0, 1]),
}


@pytest.mark.parametrize("name", METHODS)
def test_methods_create_no_cpu_tensors(name):
    out = METHODS[name](cnn())
    assert out.device == META


def test_attention_maths_on_meta():
    attentions = torch.empty(2, 3, 4, 5, 5, device=META)  # (B, layers, heads, T, T)
    assert xc.attention.rollout(attentions).device == META
    assert xc.attention.fuse_heads(attentions, "max").device == META
    maps = xc.attention.cls_maps(attentions, 2)
    assert xc.attention.mask_mass(maps, torch.empty(2, 8, 8, device=META)).device == META


def test_map_operations_on_meta():
    maps = torch.empty(2, 4, 4, device=META)
    masks = torch.empty(2, 4, 4, dtype=torch.bool, device=META)
    for out in (xc.maps.minmax(maps), xc.maps.upsample(maps, 8, normalize=True), xc.maps.mask_share(maps, masks),
                xc.maps.to_map(X), xc.diagnose.dilate(masks, 1)):
        assert out.device == META
