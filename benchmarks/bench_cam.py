"""Grad-CAM family on EfficientNet-Lite0 (one 224 x 224 photo): ours vs a plain forward+backward,
Captum and pytorch-grad-cam; Score-CAM time and peak memory vs pytorch-grad-cam's ScoreCAM.

Every case is a zero-argument factory (setup outside the timing) run in its own process by
``benchmarks.harness.measure``. pytorch-grad-cam's explainer objects are built in the setup, so only
their call is timed (the favourable case for them).
"""
from __future__ import annotations

TITLE = "Grad-CAM, Grad-CAM++ and Score-CAM (chapter 02)"


def _case():
    import torch

    import xaicourse as xc

    torch.manual_seed(0)
    cnn = xc.models.imagenet_cnn()
    x = cnn.preprocess(xc.data.image("cat"))
    with torch.no_grad():
        target = int(cnn.model(x).argmax())
    return cnn.model, cnn.target_layer, x, target


def forward_backward():
    model, _, x, target = _case()

    def run():
        model.zero_grad(set_to_none=True)
        model(x)[0, target].backward()

    return run


def forward_only():
    model, _, x, target = _case()
    return lambda: model(x)[0, target]


def ours_grad_cam():
    from xaicourse.cam import grad_cam

    model, layer, x, target = _case()
    return lambda: grad_cam(model, layer, x, target)


def ours_grad_cam_pp():
    from xaicourse.cam import grad_cam_pp

    model, layer, x, target = _case()
    return lambda: grad_cam_pp(model, layer, x, target)


def captum_grad_cam():
    from captum.attr import LayerGradCam

    from xaicourse.cam import upsample

    model, layer, x, target = _case()
    explainer = LayerGradCam(model, layer)

    def run():  # the same output as ours: upsampled and scaled to [0, 1]
        raw = explainer.attribute(x, target=target, relu_attributions=True)
        return upsample(raw[:, 0].detach(), x.shape[-2:])

    return run


def _pgc(name: str, **kwargs):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, layer, x, target = _case()
    explainer = getattr(pytorch_grad_cam, name)(model, [layer])
    for key, value in kwargs.items():
        setattr(explainer, key, value)
    return lambda: explainer(x, [ClassifierOutputTarget(target)])


def pgc_grad_cam():
    return _pgc("GradCAM")


def pgc_grad_cam_pp():
    return _pgc("GradCAMPlusPlus")


def ours_score_cam():
    from xaicourse.cam import score_cam

    model, layer, x, target = _case()
    return lambda: score_cam(model, layer, x, target)


def pgc_score_cam():
    return _pgc("ScoreCAM")


def run() -> str:
    from .harness import compare, measure, table

    here = "benchmarks.bench_cam"
    fast = [("forward+backward", "forward_backward"), ("forward only (autograd on)", "forward_only"),
            ("ours: grad_cam", "ours_grad_cam"),
            ("Captum LayerGradCam (+ upsample)", "captum_grad_cam"), ("pytorch-grad-cam GradCAM", "pgc_grad_cam"),
            ("ours: grad_cam_pp", "ours_grad_cam_pp"), ("pytorch-grad-cam GradCAMPlusPlus", "pgc_grad_cam_pp")]
    rows = compare([(label, f"{here}:{name}") for label, name in fast], repeat=5, warmup=2)
    slow = [("ours: score_cam (batch_size=None)", "ours_score_cam"), ("pytorch-grad-cam ScoreCAM (batch 16)", "pgc_score_cam")]
    score_rows = [(label, measure(f"{here}:{name}", repeat=1, warmup=0)) for label, name in slow]
    return ("EfficientNet-Lite0, one 224 x 224 photo, target = top class, layer = bn2 (1280 x 7 x 7). "
            "Targets: Grad-CAM <= 1.15x a plain forward+backward, and faster than pytorch-grad-cam. The plain "
            "backward computes every parameter's gradient; Grad-CAM only needs the gradient at the layer, which sits "
            "near the output, so it costs little more than the forward pass.\n\n"
            + table(rows, "forward+backward")
            + "\n\nScore-CAM: 1280 masked forward passes per image (one run each, no warm-up).\n\n"
            + table(score_rows, "ours: score_cam (batch_size=None)"))
