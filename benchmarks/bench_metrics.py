"""Chapter 07's metrics: ours vs Quantus 0.6.0 on the same work (time, peak memory), and ROAR's total time.

Every case is a zero-argument factory (setup outside the timing) run in its own process by
``benchmarks.harness.compare``. The same quantity both ways (tests/test_metrics_quantus.py checks
that the values agree): map-level metrics on 64 maps of 224 x 224; max-sensitivity, pixel
flipping and model parameter randomisation with the gradient of the clean shapes CNN on 16 images
of 32 x 32. ROAR is timed once with its defaults (5 fractions, 3 seeds, 3 rankings + random).
"""
from __future__ import annotations

import warnings
from functools import partial

from .harness import compare, measure, table

TITLE = "Evaluation metrics: ours vs Quantus, and ROAR (chapter 07)"
N_MAPS, SIDE = 64, 224
N_IMAGES, N_SAMPLES, FLIP_STEPS = 16, 10, 48


def _maps(n: int = N_MAPS, side: int = SIDE):
    import torch

    g = torch.Generator().manual_seed(0)
    maps = torch.rand(n, side, side, generator=g)
    masks = torch.zeros(n, side, side, dtype=torch.bool)
    masks[:, side // 4: side // 2, side // 3: 2 * side // 3] = True
    return maps, masks, torch.rand(n, 3, side, side, generator=g), torch.zeros(n, dtype=torch.long)


def _quantus_map_metric(name: str, n: int = N_MAPS, side: int = SIDE, **kwargs):
    import quantus

    warnings.filterwarnings("ignore")
    maps, masks, x, y = _maps(n, side)
    metric = getattr(quantus, name)(disable_warnings=True, **kwargs)
    a, s, xs, ys = maps[:, None].numpy(), masks[:, None].numpy(), x.numpy(), y.numpy()
    return lambda: metric(model=None, x_batch=xs, y_batch=ys, a_batch=a, s_batch=s)


def _ours_map_metric(name: str, n: int = N_MAPS, side: int = SIDE):
    import xaicourse as xc

    maps, masks, _, _ = _maps(n, side)
    fn = getattr(xc.metrics, name)
    return (lambda: fn(maps, masks)) if name in ("pointing_game", "relevance_mass_accuracy",
                                                  "relevance_rank_accuracy") else (lambda: fn(maps))


MAP_METRICS = {"sparseness": "Sparseness", "effective_complexity": "EffectiveComplexity",
               "entropy_complexity": "Complexity", "pointing_game": "PointingGame",
               "relevance_mass_accuracy": "RelevanceMassAccuracy", "relevance_rank_accuracy": "RelevanceRankAccuracy"}
for _ours, _theirs in MAP_METRICS.items():
    globals()[f"ours_{_ours}"] = partial(_ours_map_metric, _ours)
    globals()[f"quantus_{_ours}"] = partial(_quantus_map_metric, _theirs)


def _shapes(n: int = N_IMAGES):
    import xaicourse as xc

    data = xc.data.shapes(n=n, seed=12, marker=0.0, **xc.models.SHAPES_CNN_DATA)
    return xc.models.shapes_cnn("clean"), data.images, data.labels


def _explain_func(model, inputs, targets, **kwargs):
    import torch

    import xaicourse as xc

    return xc.saliency.vanilla_gradient(model, torch.as_tensor(inputs), torch.as_tensor(targets)).numpy()


def ours_max_sensitivity(n: int = N_IMAGES, samples: int = N_SAMPLES):
    import xaicourse as xc

    model, x, y = _shapes(n)
    return lambda: xc.metrics.max_sensitivity(model, xc.saliency.vanilla_gradient, x, y, n_samples=samples)


def quantus_max_sensitivity(n: int = N_IMAGES, samples: int = N_SAMPLES):
    import quantus

    warnings.filterwarnings("ignore")
    model, x, y = _shapes(n)
    metric = quantus.MaxSensitivity(nr_samples=samples, disable_warnings=True)
    return lambda: metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=None,
                          explain_func=_explain_func, device="cpu")


def ours_deletion(n: int = N_IMAGES, steps: int = FLIP_STEPS):
    import xaicourse as xc

    model, x, y = _shapes(n)
    maps = xc.metrics.pixel_map(xc.saliency.vanilla_gradient(model, x, y))
    return lambda: xc.metrics.deletion_auc(model, x, maps, y, n_steps=steps, baseline=0.0)


def quantus_pixel_flipping(n: int = N_IMAGES, steps: int = FLIP_STEPS):
    import quantus

    import xaicourse as xc

    warnings.filterwarnings("ignore")
    model, x, y = _shapes(n)
    maps = xc.metrics.pixel_map(xc.saliency.vanilla_gradient(model, x, y))[:, None].numpy()
    metric = quantus.PixelFlipping(features_in_step=3 * 32 * 32 // steps, perturb_baseline=0.0, normalise=False,
                                   disable_warnings=True)
    return lambda: metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps, device="cpu", softmax=True)


def ours_randomisation(n: int = N_IMAGES):
    import xaicourse as xc

    model, x, y = _shapes(n)
    return lambda: xc.metrics.randomization_sanity_check(model, xc.saliency.vanilla_gradient, x, y)


def quantus_mprt(n: int = N_IMAGES):
    import quantus

    warnings.filterwarnings("ignore")
    model, x, y = _shapes(n)
    metric = quantus.MPRT(similarity_func=quantus.similarity_func.correlation_spearman, disable_warnings=True)
    return lambda: metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=None,
                          explain_func=_explain_func, device="cpu")


ROAR_SMALL = dict(fractions=(0.5,), seeds=(0,), epochs=1)


def ours_roar(small: bool = False):
    import xaicourse as xc

    model = xc.models.shapes_cnn("clean")
    methods = {"gradient": xc.saliency.vanilla_gradient,
               "SmoothGrad²": lambda m, x, t, seed=0: xc.saliency.smoothgrad(m, x, t, n_samples=16, variant="squared",
                                                                           seed=seed),
               "VarGrad": lambda m, x, t, seed=0: xc.saliency.smoothgrad(m, x, t, n_samples=16, variant="vargrad",
                                                                       seed=seed)}
    if not small:
        return lambda: xc.metrics.roar(model, methods, progress=False)
    train = xc.data.shapes(n=64, seed=1, marker=None, **xc.models.SHAPES_CNN_DATA)
    return lambda: xc.metrics.roar(model, methods, train=train, test=train, progress=False, **ROAR_SMALL)


#: (title, [(label, factory)]): the first row of each group is the reference of its ratios.
GROUPS = {
    **{f"{ours} ({N_MAPS} maps of {SIDE} x {SIDE})": [("ours", f"ours_{ours}"), (f"Quantus {theirs}", f"quantus_{ours}")]
       for ours, theirs in MAP_METRICS.items()},
    f"max-sensitivity ({N_IMAGES} images, {N_SAMPLES} noisy copies, gradient)": [
        ("ours", "ours_max_sensitivity"), ("Quantus MaxSensitivity", "quantus_max_sensitivity")],
    f"deletion / pixel flipping ({N_IMAGES} images, {FLIP_STEPS} steps, fill 0)": [
        ("ours deletion_auc", "ours_deletion"), ("Quantus PixelFlipping", "quantus_pixel_flipping")],
    f"model parameter randomisation ({N_IMAGES} images, every layer, gradient)": [
        ("ours randomization_sanity_check", "ours_randomisation"), ("Quantus MPRT", "quantus_mprt")],
}


def smoke() -> list[str]:
    """Run every case once with tiny settings (no timing): the factories and callables work. Chapter 07."""
    import sys

    module = sys.modules[__name__]
    small = {name: partial(getattr(module, name), n=4) for rows in GROUPS.values() for _, name in rows}
    for ours in MAP_METRICS:
        small[f"ours_{ours}"] = partial(_ours_map_metric, ours, 4, 16)
        small[f"quantus_{ours}"] = partial(_quantus_map_metric, MAP_METRICS[ours], 4, 16)
    small["ours_max_sensitivity"] = partial(ours_max_sensitivity, 2, 2)
    small["quantus_max_sensitivity"] = partial(quantus_max_sensitivity, 2, 2)
    small["ours_roar"] = partial(ours_roar, small=True)
    ran = []
    for name, factory in small.items():
        factory()()
        ran.append(name)
    return ran


def run() -> str:
    sections = []
    for title, rows in GROUPS.items():
        measured = compare([(label, f"benchmarks.bench_metrics:{case}") for label, case in rows], rounds=3, repeat=3)
        sections += [f"{title}:", table(measured, measured[0][0])]
    roar = measure("benchmarks.bench_metrics:ours_roar", repeat=1, warmup=0)
    sections.append(f"ROAR with its defaults (3 rankings + random, 5 fractions, 3 seeds: 63 trainings): "
                    f"{roar.median_s:.0f} s, peak RSS {roar.peak_rss_mb:.0f} MB.")
    return "\n\n".join(sections)
