"""`make gpu-check`: every method on CUDA, compared with the same call on the CPU (skipped without a GPU).

Runs on the course's real models (EfficientNet-Lite0 at 224 px, the shapes CNN, the tiny ViT, the
sentiment classifier) in well under three minutes on one GPU. SmoothGrad's noise comes from a
generator on the model's device, so CUDA draws other numbers than the CPU: it is compared with zero
noise (where it must equal the gradient) and checked for its device and its agreement in rank.
"""
import copy

import pytest
import torch
from scipy.stats import spearmanr

import xaicourse as xc

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run `make gpu-check` there)")]
CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def lite0():
    cpu = xc.models.imagenet_cnn()
    gpu = xc.models.imagenet_cnn(device="cuda")
    x = cpu.preprocess(xc.data.image("cat"))
    return cpu.model, gpu.model, x


def close(cpu_result, gpu_result, tol=1e-3):
    cpu_result, gpu_result = cpu_result.detach().float(), gpu_result.detach().float()
    assert gpu_result.device.type == "cuda"
    scale = cpu_result.abs().max().clamp_min(1e-12)
    assert ((gpu_result.cpu() - cpu_result).abs().max() / scale) < tol


CNN_METHODS = {
    "vanilla_gradient": lambda m, x: xc.saliency.vanilla_gradient(m, x, 282),
    "gradient_x_input": lambda m, x: xc.saliency.gradient_x_input(m, x, 282),
    "smoothgrad, no noise": lambda m, x: xc.saliency.smoothgrad(m, x, 282, n_samples=4, noise_level=0.0),
    "guided_backprop": lambda m, x: xc.saliency.guided_backprop(m, x, 282),
    "grad_cam": lambda m, x: xc.cam.grad_cam(m, "bn2", x, 282),
    "grad_cam_pp": lambda m, x: xc.cam.grad_cam_pp(m, "bn2", x, 282),
    "integrated_gradients": lambda m, x: xc.ig.integrated_gradients(m, x, 282, n_steps=16),
}


@pytest.mark.parametrize("name", CNN_METHODS)
def test_cnn_methods_match_the_cpu(lite0, name):
    cpu_model, gpu_model, x = lite0
    close(CNN_METHODS[name](cpu_model, x), CNN_METHODS[name](gpu_model, x.to(CUDA)))


def test_smoothgrad_noise_is_drawn_on_the_gpu(lite0):
    cpu_model, gpu_model, x = lite0
    cpu = xc.maps.to_map(xc.saliency.smoothgrad(cpu_model, x, 282, n_samples=32))
    gpu = xc.maps.to_map(xc.saliency.smoothgrad(gpu_model, x.to(CUDA), 282, n_samples=32))
    assert gpu.device.type == "cuda"
    assert spearmanr(cpu.flatten().numpy(), gpu.cpu().flatten().numpy()).statistic > 0.3


def test_score_cam_and_metrics_on_the_shapes_cnn():
    model = xc.models.shapes_cnn("clean")
    gpu = copy.deepcopy(model).to(CUDA)
    data = xc.data.shapes(4, seed=3, marker=0.0, **xc.models.SHAPES_CNN_DATA)
    x, masks = data.images, data.masks
    close(xc.cam.score_cam(model, "features", x), xc.cam.score_cam(gpu, "features", x.to(CUDA)))
    maps = xc.cam.grad_cam(model, "features", x)
    cpu_curve = xc.metrics.deletion_auc(model, x, maps)
    gpu_curve = xc.metrics.deletion_auc(gpu, x.to(CUDA), maps.to(CUDA))
    assert torch.allclose(cpu_curve.auc, gpu_curve.auc.cpu(), atol=1e-4)
    assert torch.equal(xc.metrics.pointing_game(maps, masks), xc.metrics.pointing_game(maps.to(CUDA), masks.to(CUDA)).cpu())


def test_attention_and_rollout_on_the_tiny_vit():
    vit = xc.models.tiny_vit()
    data = xc.data.shapes(4, seed=2, size=64)
    x = vit.preprocess(data.images)
    cpu = xc.attention.vit_attentions(vit, x)
    gpu_vit = xc.models.tiny_vit(device="cuda")
    gpu = xc.attention.vit_attentions(gpu_vit, x.to(CUDA))
    close(xc.attention.rollout(cpu), xc.attention.rollout(gpu.to(CUDA)))


def test_text_interpreter_on_the_gpu():
    cpu = xc.interpret.TextClassifierInterpreter(xc.models.sentiment_classifier(), n_steps=16)
    gpu = xc.interpret.TextClassifierInterpreter(xc.models.sentiment_classifier(device="cuda"), n_steps=16)
    text = "A wonderful, moving film."
    on_gpu = gpu.interpret(text).attributions
    close(cpu.interpret(text).attributions, on_gpu.to(CUDA), tol=1e-2)
