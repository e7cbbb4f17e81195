"""`make gpu-check`: every method on CUDA, compared with the same call on the CPU (skipped without a GPU).

Runs on the course's real models (EfficientNet-Lite0 at 224 px, the shapes CNN, the tiny ViT, the
sentiment classifier, the tiny GPT of chapter 10, the retrained head of chapter 12) in well under
three minutes on one GPU. SmoothGrad's noise comes from a
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


@pytest.fixture(autouse=True)
def full_float32():
    """Compare like with like: PyTorch runs cuDNN convolutions in TF32 (10-bit mantissa) by default on
    Ampere and later, which moves EfficientNet's gradient maps by 17 % of their largest value on an H200
    (test_tf32_moves_the_gradients below measures it). The methods are checked in full float32."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture(scope="module")
def lite0():
    cpu = xc.models.imagenet_cnn()
    gpu = xc.models.imagenet_cnn(device="cuda")
    x = cpu.preprocess(xc.data.image("cat"))
    return cpu.model, gpu.model, x


def relative_difference(cpu_result, gpu_result) -> float:
    cpu_result, gpu_result = cpu_result.detach().double(), gpu_result.detach().double()
    return float((gpu_result.cpu() - cpu_result).abs().max() / cpu_result.abs().max().clamp_min(1e-12))


def close(cpu_result, gpu_result, tol=1e-3):
    """On the GPU, and within ``tol`` of the CPU's result (largest difference / largest value)."""
    assert gpu_result.device.type == "cuda"
    difference = relative_difference(cpu_result, gpu_result)
    correlation = float(torch.corrcoef(torch.stack([cpu_result.detach().double().flatten(),
                                                    gpu_result.detach().double().cpu().flatten()]))[0, 1])
    print(f"largest difference / largest value {difference:.1e}, correlation {correlation:.6f}")
    assert difference < tol and correlation > 0.999


def test_tf32_moves_the_gradients(lite0):
    """What the fixture above avoids, measured: the vanilla gradient with TF32 on and off."""
    cpu_model, gpu_model, x = lite0
    cpu = xc.saliency.vanilla_gradient(cpu_model, x, 282)
    full = relative_difference(cpu, xc.saliency.vanilla_gradient(gpu_model, x.to(CUDA), 282))
    torch.backends.cudnn.allow_tf32 = True
    tf32 = relative_difference(cpu, xc.saliency.vanilla_gradient(gpu_model, x.to(CUDA), 282))
    print(f"vanilla gradient on CUDA vs CPU, largest difference / largest value: float32 {full:.1e}, TF32 {tf32:.1e}")
    assert full < LITE0_TOL and tf32 > 3 * full   # measured on an H200: 7.1e-03 and 1.7e-01


# EfficientNet-Lite0's input gradients in full float32 differ from the CPU's by up to 8.5e-3 of their largest
# value on an H200 (cuDNN's convolutions sum in another order than the CPU's); Grad-CAM by 1e-6
LITE0_TOL = 3e-2
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
    close(CNN_METHODS[name](cpu_model, x), CNN_METHODS[name](gpu_model, x.to(CUDA)), tol=LITE0_TOL)


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


def test_patching_and_generation_attribution_on_the_tiny_gpt():
    """Chapter 10: activation and attribution patching of every head, the logit lens, IG over a generation."""
    cpu, gpu = xc.models.tiny_gpt(), xc.models.tiny_gpt(device="cuda")
    clean = cpu.sequences(16, seed=1000)
    corrupt = clean.clone()
    corrupt[:, 1:cpu.half + 1] = cpu.sequences(16, seed=2000)[:, 1:cpu.half + 1]
    positions = range(cpu.half + 1, 2 * cpu.half)
    for method in (xc.patching.activation_patching, xc.patching.attribution_patching):
        on_cpu = method(cpu.model, clean, corrupt, xc.patching.next_token_metric(clean, positions), cpu.heads)
        on_gpu = method(gpu.model, clean.to(CUDA), corrupt.to(CUDA),
                        xc.patching.next_token_metric(clean.to(CUDA), positions), gpu.heads)
        torch.testing.assert_close(on_gpu.cpu().float(), on_cpu.float(), atol=1e-3, rtol=1e-3)
    close(xc.patching.logit_lens(cpu.model, clean[:4]), xc.patching.logit_lens(gpu.model, clean[:4].to(CUDA)))
    ids, prompt_len = cpu.sequences(4, seed=6000), cpu.half + 2
    close(xc.generation.integrated_gradients(cpu.model, ids, prompt_len),
          xc.generation.integrated_gradients(gpu.model, ids.to(CUDA), prompt_len), tol=1e-2)


def test_tcav_on_the_shapes_cnn():
    """Chapter 11: layer activations and gradients on the GPU, and the TCAV score of a CAV trained on them."""
    model = xc.models.shapes_cnn("shortcut")
    gpu = copy.deepcopy(model).to(CUDA)
    data = xc.data.shapes(60, seed=21, marker=0.0, **xc.models.SHAPES_CNN_DATA)
    images, labels = torch.as_tensor(data.images), torch.as_tensor(data.labels)
    acts_cpu = xc.concepts.layer_activations(model, "features.6", images)
    acts_gpu = xc.concepts.layer_activations(gpu, "features.6", images.to(CUDA))
    torch.testing.assert_close(acts_gpu, acts_cpu, atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(xc.concepts.layer_gradients(gpu, "features.6", images.to(CUDA), 1),
                               xc.concepts.layer_gradients(model, "features.6", images, 1), atol=1e-4, rtol=1e-3)
    vector = xc.concepts.cav(acts_cpu[labels == 0], acts_cpu[labels == 2]).vector
    x = images[labels == 1]
    assert xc.concepts.tcav_score(gpu, "features.6", x.to(CUDA), 1, vector) == \
        xc.concepts.tcav_score(model, "features.6", x, 1, vector)


def test_training_data_attribution_on_the_retrained_head():
    """Chapter 12: per-example gradients, TracIn, self-influence and influence functions (exact, CG) in float64."""
    p = xc.retraining.problem()
    run = xc.retraining.train(*p.train)
    gpu = copy.deepcopy(run.model).to(CUDA)
    train, test = p.train, (p.x_test[:20], p.y_test[:20])
    train_gpu, test_gpu = tuple(t.to(CUDA) for t in train), tuple(t.to(CUDA) for t in test)
    loss_fn, influence = xc.retraining.loss_fn, xc.influence
    close(influence.per_example_gradients(run.model, loss_fn, *train),
          influence.per_example_gradients(gpu, loss_fn, *train_gpu), tol=1e-9)
    close(influence.tracin(run.model, run.checkpoints, loss_fn, train, test, learning_rates=run.learning_rates),
          influence.tracin(gpu, run.checkpoints, loss_fn, train_gpu, test_gpu, learning_rates=run.learning_rates), tol=1e-9)
    close(influence.self_influence(run.model, run.checkpoints, loss_fn, train, learning_rates=run.learning_rates),
          influence.self_influence(gpu, run.checkpoints, loss_fn, train_gpu, learning_rates=run.learning_rates), tol=1e-9)
    last = ["2.weight", "2.bias"]
    close(influence.influence_function(run.model, loss_fn, train, test, params=last),
          influence.influence_function(gpu, loss_fn, train_gpu, test_gpu, params=last), tol=1e-8)
    close(influence.influence_function(run.model, loss_fn, train, test, method="cg", damping=0.1),
          influence.influence_function(gpu, loss_fn, train_gpu, test_gpu, method="cg", damping=0.1), tol=1e-6)
    assert next(gpu.parameters()).device.type == "cuda"   # the checkpoints (CPU state dicts) were loaded onto the GPU
