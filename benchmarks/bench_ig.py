"""Integrated Gradients, 50 steps at 224 on EfficientNet-Lite0: ours (defaults) vs Captum.

Captum evaluates all steps in one batch unless told ``internal_batch_size``; ours sizes its chunks
from ``xaicourse.batching.DEFAULT_BUDGET_BYTES``. Targets: ours <= 1.05x Captum's best time with no tuning,
>= 2x faster than Captum's default, peak RSS <= 1.5 GB even at 300 steps.

    python -m benchmarks ig
"""
from functools import partial

from .harness import compare, measure, table

TITLE = "Integrated Gradients (50 steps, 224 px, EfficientNet-Lite0)"
CAPTUM_BATCH_SIZES = (5, 10, 25)


def _setup():
    import xaicourse as xc

    cnn = xc.models.imagenet_cnn()
    x = cnn.preprocess(xc.data.image("cat"))
    return cnn.model, x, cnn.model(x).argmax().item()


def ours(n_steps=50):
    from xaicourse.ig import integrated_gradients

    model, x, target = _setup()
    return partial(integrated_gradients, model, x, target, n_steps=n_steps)


def ours_300():
    return ours(300)


def captum(internal_batch_size=None):
    from captum.attr import IntegratedGradients

    model, x, target = _setup()
    explainer = IntegratedGradients(model)
    return partial(explainer.attribute, x, target=target, n_steps=50, method="gausslegendre",
                   internal_batch_size=internal_batch_size)


def captum_5():
    return captum(5)


def captum_10():
    return captum(10)


def captum_25():
    return captum(25)


def run() -> str:
    rows = compare([("ours, defaults", "benchmarks.bench_ig:ours"), ("Captum, default batching", "benchmarks.bench_ig:captum")]
                   + [(f"Captum, internal_batch_size={b}", f"benchmarks.bench_ig:captum_{b}") for b in CAPTUM_BATCH_SIZES])
    best_label, best = min(rows[2:], key=lambda row: row[1].median_s)
    ours_300 = measure("benchmarks.bench_ig:ours_300", repeat=1)
    rows.append(("ours, defaults, 300 steps", ours_300))
    ratio_best = rows[0][1].median_s / best.median_s
    speedup_default = rows[1][1].median_s / rows[0][1].median_s
    verdict = [
        f"- ours / Captum best ({best_label}): {ratio_best:.2f}x (target <= 1.05x): {'met' if ratio_best <= 1.05 else 'NOT met'}",
        f"- Captum default / ours: {speedup_default:.2f}x faster (target >= 2x): {'met' if speedup_default >= 2 else 'NOT met'}",
        f"- peak RSS at 300 steps: {ours_300.peak_rss_mb:.0f} MB (target <= 1536 MB): {'met' if ours_300.peak_rss_mb <= 1536 else 'NOT met'}",
    ]
    return table(rows, reference="ours, defaults") + "\n\n" + "\n".join(verdict)
