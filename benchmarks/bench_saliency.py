"""Gradient saliency on EfficientNet-Lite0 at 224 x 224 on the CPU: ours vs the source's code vs Captum.

Vanilla gradient and gradient x input (one image): ours vs Captum's Saliency / InputXGradient vs the
source's single pass (``.backward()``, which also fills every parameter's ``.grad``).

SmoothGrad, 50 samples:

* ours: ``xc.saliency.smoothgrad`` with its defaults (chunks picked from the memory budget);
* source loop: the source chapter's ``smooth_grad``, 50 single forward/backward passes with
  ``model.zero_grad()`` and ``.backward()`` (copied below, minus image loading and plotting);
* Captum: ``NoiseTunnel(Saliency)`` at several ``nt_samples_batch_size`` (a batch of 50 needs ~4.4 GB).

    python -m benchmarks saliency      # writes benchmarks/RESULTS_saliency.md
"""
from __future__ import annotations

import torch

from .harness import compare, table

TITLE = "Vanilla gradient, gradient x input and SmoothGrad (50 samples) on EfficientNet-Lite0 at 224 (CPU)"
N_SAMPLES, NOISE_LEVEL = 50, 0.15
CAPTUM_BATCH_SIZES = (5, 10, 25)


def _setup():
    import xaicourse as xc

    cnn = xc.models.imagenet_cnn()
    x = cnn.preprocess(xc.data.image("cat"))
    return cnn.model, x, cnn.class_index("tiger cat")


def source_smooth_grad(model, img_tensor, target_class=None, n_samples=50, noise_level=0.15):
    """The source chapter's SmoothGrad (section 4.1), as written there (comments translated), from the preprocessed tensor on."""
    # decide the target class
    with torch.no_grad():
        output = model(img_tensor)
        if target_class is None:
            target_class = output.argmax(dim=1).item()

    # gradients of the noisy samples
    gradients = []
    for _ in range(n_samples):
        # add noise
        noise = torch.randn_like(img_tensor) * noise_level
        noisy_img = img_tensor + noise
        noisy_img.requires_grad = True

        # compute the gradient
        output = model(noisy_img)
        model.zero_grad()
        output[0, target_class].backward()

        gradients.append(noisy_img.grad.data)

    # average
    avg_gradient = torch.stack(gradients).mean(dim=0)
    saliency = avg_gradient.abs().max(dim=1)[0]
    saliency = saliency.squeeze().cpu().numpy()

    return saliency, target_class


# --- factories: each returns the callable to time (see harness.measure) ---
def source_single_pass():
    model, x, target = _setup()
    return lambda: source_smooth_grad(model, x, target, n_samples=1, noise_level=0.0)


def ours_vanilla():
    from xaicourse.saliency import vanilla_gradient

    model, x, target = _setup()
    return lambda: vanilla_gradient(model, x, target)


def ours_x_input():
    from xaicourse.saliency import gradient_x_input

    model, x, target = _setup()
    return lambda: gradient_x_input(model, x, target)


def _captum_plain(name: str):
    import captum.attr

    model, x, target = _setup()
    explainer = getattr(captum.attr, name)(model)
    return lambda: explainer.attribute(x, target=target)


def captum_saliency():
    return _captum_plain("Saliency")


def captum_x_input():
    return _captum_plain("InputXGradient")


def ours():
    from xaicourse.saliency import smoothgrad

    model, x, target = _setup()
    return lambda: smoothgrad(model, x, target, n_samples=N_SAMPLES, noise_level=NOISE_LEVEL)


def source_loop():
    model, x, target = _setup()
    sigma = NOISE_LEVEL * float(x.max() - x.min())  # the same noise as ours (the source's is not range-scaled)
    return lambda: source_smooth_grad(model, x, target, n_samples=N_SAMPLES, noise_level=sigma)


def _captum(batch_size: int):
    from captum.attr import NoiseTunnel, Saliency

    model, x, target = _setup()
    tunnel = NoiseTunnel(Saliency(model))
    sigma = NOISE_LEVEL * float(x.max() - x.min())
    return lambda: tunnel.attribute(x, nt_type="smoothgrad", nt_samples=N_SAMPLES, nt_samples_batch_size=batch_size,
                                    stdevs=sigma, target=target, abs=False)


def captum_5():
    return _captum(5)


def captum_10():
    return _captum(10)


def captum_25():
    return _captum(25)


def run() -> str:
    here = __name__
    plain = compare([("source: one pass with .backward()", f"{here}:source_single_pass"),
                     ("Captum Saliency", f"{here}:captum_saliency"), ("ours: vanilla_gradient", f"{here}:ours_vanilla"),
                     ("Captum InputXGradient", f"{here}:captum_x_input"), ("ours: gradient_x_input", f"{here}:ours_x_input")],
                    repeat=7, warmup=2)
    rows = compare([("source loop (50 single passes)", f"{__name__}:source_loop")]
                   + [(f"Captum NoiseTunnel(Saliency), nt_samples_batch_size={b}", f"{__name__}:captum_{b}")
                      for b in CAPTUM_BATCH_SIZES]
                   + [("ours: xc.saliency.smoothgrad (defaults)", f"{__name__}:ours")])
    captum = rows[1:-1]
    best_label, best = min(captum, key=lambda row: row[1].median_s)
    ours_m, source_m = rows[-1][1], rows[0][1]
    verdict = (f"\n\nours / source loop = {ours_m.median_s / source_m.median_s:.2f}x (target <= 0.85x); "
               f"ours / best Captum ({best_label.split(', ')[-1]}) = {ours_m.median_s / best.median_s:.2f}x "
               f"(target <= 1.0x); ours peak RSS = {ours_m.peak_rss_mb:.0f} MB (target <= 1536 MB).")
    return ("One image:\n\n" + table(plain, reference=plain[0][0])
            + "\n\nSmoothGrad, 50 samples:\n\n" + table(rows, reference=rows[0][0]) + verdict)
