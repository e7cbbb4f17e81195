"""Chapter 12: what training-data attribution costs, side by side in one run.

TracInCP for 1,000 training x 100 test examples on the retraining head (``retraining.new_model()``: Linear(32, 32) -
tanh - Linear(32, 3), float64, 1,155 parameters) with the 10 checkpoints of ``retraining.train`` on 1,000 random
float64 examples (``torch.randn(1000, 32)`` seeded, labels in {0, 1, 2}; retraining.problem() has only 300): ours
(`influence.tracin`, torch.func vmap per-example gradients) against Captum's `TracInCP` on the same checkpoints,
saved to files (as tests/test_influence.py sets it up). Target: ours under 10 s on 2 threads; the peak memory is
reported. Then per-example gradients (vmap against a loop of autograd.grad) and the influence function on the
retraining problem (exact Hessian, conjugate gradients, the last layer's exact solve).

    python -m benchmarks influence
"""
from __future__ import annotations

import functools

from .harness import compare, table

TITLE = "Training-data attribution: TracIn against Captum's TracInCP, per-example gradients, influence functions"
N_TRAIN, N_TEST, THREADS, TRACIN_TARGET_S, N_IMAGES = 1000, 100, 2, 10.0, 200
LAST_LAYER = ["2.weight", "2.bias"]
CNN_PARAMS = ["features.8.weight", "features.9.weight", "features.9.bias", "head.2.weight", "head.2.bias"]


# --------------------------------------------------------------------------------------------
# TracIn: 1,000 x 100 on the retraining head's 10 checkpoints
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _tracin_setup():
    """The random 1,000 training / 100 test examples (float64, seeded) and the head trained on them (a Run)."""
    import torch

    from xaicourse import retraining

    torch.set_num_threads(THREADS)
    g = torch.Generator().manual_seed(0)
    x_train = torch.randn(N_TRAIN, 32, generator=g, dtype=torch.float64)
    y_train = torch.randint(0, 3, (N_TRAIN,), generator=g)
    x_test = torch.randn(N_TEST, 32, generator=g, dtype=torch.float64)
    y_test = torch.randint(0, 3, (N_TEST,), generator=g)
    run = retraining.train(x_train, y_train)  # one thread inside, restored to THREADS after
    return run, (x_train, y_train), (x_test, y_test)


def ours_tracin():
    from xaicourse import influence, retraining

    run, train, test = _tracin_setup()
    return lambda: influence.tracin(run.model, run.checkpoints, retraining.loss_fn, train, test,
                                    learning_rates=run.learning_rates)


def captum_tracin():
    """Captum's TracInCP on the same checkpoints (saved to a temporary directory: it wants files) and learning rates,
    with the per-example loss (reduction="none"), as tests/test_influence.py::test_tracin_equals_captums_tracincp."""
    import tempfile

    import torch
    from captum.influence import TracInCP
    from torch import nn

    run, (x_train, y_train), test = _tracin_setup()
    tmp = tempfile.TemporaryDirectory()
    paths = []
    for k, state in enumerate(run.checkpoints):
        paths.append(f"{tmp.name}/ck{k}.pt")
        torch.save(state, paths[-1])
    rate = dict(zip(paths, run.learning_rates))

    def load(model, path):
        model.load_state_dict(torch.load(path))
        return rate[path]

    model = run.model  # a copy is not needed: TracInCP loads each checkpoint into it; ours restores the weights
    original = {k: v.clone() for k, v in model.state_dict().items()}

    def go():
        try:
            tracin = TracInCP(model, torch.utils.data.TensorDataset(x_train, y_train), paths, checkpoints_load_func=load,
                              loss_fn=nn.CrossEntropyLoss(reduction="none"), batch_size=100)
            return tracin.influence(test)
        finally:
            model.load_state_dict(original)
    go.tmp = tmp  # keep the directory alive as long as the callable
    return go


def _tracin_agreement() -> str:
    """Both score matrices once more (untimed): the largest difference relative to the largest score."""
    ours, theirs = ours_tracin()(), captum_tracin()()
    diff = (ours - theirs).abs().max() / ours.abs().max()
    return (f"- the two score matrices ({N_TEST} x {N_TRAIN}) agree: max |ours - Captum| / max |ours| = {float(diff):.1e} "
            f"(largest elementwise relative difference {float(((ours - theirs).abs() / ours.abs().clamp_min(1e-12)).max()):.1e})")


# --------------------------------------------------------------------------------------------
# Per-example gradients: vmap against a loop of autograd.grad
# --------------------------------------------------------------------------------------------
def _loop_gradients(model, loss_fn, x, y, names=None):
    import torch

    named = dict(model.named_parameters())
    params = [named[n] for n in (names or named)]

    def run():
        return torch.stack([torch.cat([g.flatten() for g in torch.autograd.grad(loss_fn(model(x[i:i + 1]), y[i:i + 1]), params)])
                            for i in range(len(x))])
    return run


def ours_gradients_head():
    from xaicourse import influence, retraining

    run, (x, y), _ = _tracin_setup()
    return lambda: influence.per_example_gradients(run.model, retraining.loss_fn, x, y)


def loop_gradients_head():
    from xaicourse import retraining

    run, (x, y), _ = _tracin_setup()
    return _loop_gradients(run.model, retraining.loss_fn, x, y)


@functools.lru_cache(maxsize=1)
def _cnn_setup():
    import torch

    import xaicourse as xc

    torch.set_num_threads(THREADS)
    d = xc.data.shapes(N_IMAGES, seed=1, marker=0.0, **xc.models.SHAPES_CNN_DATA)
    return xc.models.shapes_cnn("clean").eval(), d.images, d.labels


def ours_gradients_cnn():
    from torch import nn

    from xaicourse import influence

    model, x, y = _cnn_setup()
    return lambda: influence.per_example_gradients(model, nn.functional.cross_entropy, x, y, params=CNN_PARAMS)


def loop_gradients_cnn():
    from torch import nn

    model, x, y = _cnn_setup()
    return _loop_gradients(model, nn.functional.cross_entropy, x, y, CNN_PARAMS)


def _gradients_agreement() -> str:
    import torch

    diffs = []
    for ours, loop in ((ours_gradients_head, loop_gradients_head), (ours_gradients_cnn, loop_gradients_cnn)):
        a, b = ours()(), loop()()
        diffs.append(float((a - b).abs().max() / b.abs().max().clamp_min(torch.finfo(b.dtype).tiny)))
    return (f"- vmap and the loop give the same gradients: max |difference| / max |gradient| {diffs[0]:.1e} (head, float64), "
            f"{diffs[1]:.1e} (CNN, float32)")


# --------------------------------------------------------------------------------------------
# Influence functions on the retraining problem
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _problem_setup():
    import torch

    from xaicourse import retraining

    torch.set_num_threads(THREADS)
    p = retraining.problem()
    return retraining.train(*p.train).model, p


def _influence(**kwargs):
    from xaicourse import influence, retraining

    model, p = _problem_setup()
    return lambda: influence.influence_function(model, retraining.loss_fn, p.train, p.test, **kwargs)


def influence_exact():
    return _influence()


def influence_cg():
    return _influence(method="cg")


def influence_last_layer():
    return _influence(params=LAST_LAYER)


def _influence_agreement() -> str:
    import warnings

    from scipy.stats import spearmanr

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        exact, cg, last = influence_exact()(), influence_cg()(), influence_last_layer()()
    converged = not any("did not converge" in str(w.message) for w in caught)
    rank = sum(spearmanr(e, l).statistic for e, l in zip(exact, last)) / len(exact)
    return (f"- CG against the exact solve: max |difference| / max |exact| = {float((cg - exact).abs().max() / exact.abs().max()):.1e} "
            f"({'converged' if converged else 'did NOT converge'} in the default 100 steps); the last layer alone is another "
            f"estimate, not an approximation of the same number (mean Spearman with the whole model's scores per test "
            f"example {rank:.2f})")


def run() -> str:
    import torch

    base = torch.get_num_threads()
    labels = {"ours": "ours: influence.tracin (vmap)", "captum": "Captum TracInCP (same checkpoint files)"}
    measured = compare([(labels["ours"], "benchmarks.bench_influence:ours_tracin"),
                        (labels["captum"], "benchmarks.bench_influence:captum_tracin")], rounds=2, repeat=1)
    m = dict(measured)
    ours, theirs = m[labels["ours"]], m[labels["captum"]]
    sections = [f"TracInCP, {N_TRAIN} training x {N_TEST} test examples, the retraining head (1,155 float64 parameters) "
                f"and its 10 checkpoints, {THREADS} threads:", table(measured, labels["ours"]),
                f"- ours {ours.median_s:.2f} s -> {'meets' if ours.median_s < TRACIN_TARGET_S else 'MISSES'} the "
                f"{TRACIN_TARGET_S:.0f} s target; peak RSS {ours.peak_rss_mb:.0f} MB ({ours.extra_rss_mb:.0f} MB above "
                f"the setup); Captum {theirs.median_s:.2f} s ({theirs.median_s / ours.median_s:.1f}x ours), peak RSS "
                f"{theirs.peak_rss_mb:.0f} MB",
                _tracin_agreement()]

    grads = compare([("vmap, head (1,000 x 1,155)", "benchmarks.bench_influence:ours_gradients_head"),
                     ("loop of autograd.grad, head", "benchmarks.bench_influence:loop_gradients_head"),
                     (f"vmap, shapes CNN last block + head ({N_IMAGES} images)", "benchmarks.bench_influence:ours_gradients_cnn"),
                     ("loop of autograd.grad, shapes CNN", "benchmarks.bench_influence:loop_gradients_cnn")],
                    rounds=2, repeat=1)
    g = [m.median_s for _, m in grads]
    n_cnn = sum(p.numel() for n, p in _cnn_setup()[0].named_parameters() if n in CNN_PARAMS)
    sections += [f"Per-example gradients (`influence.per_example_gradients`, torch.func vmap over grad) against a Python "
                 f"loop of `torch.autograd.grad`, one example at a time: the head on the {N_TRAIN} training examples, and "
                 f"the clean shapes CNN's last conv block and head ({n_cnn:,} parameters) on {N_IMAGES} images:",
                 table(grads, grads[0][0]),
                 f"- vmap is {g[1] / g[0]:.1f}x faster than the loop on the head, {g[3] / g[2]:.1f}x on the CNN",
                 _gradients_agreement()]

    infl = compare([("exact Hessian, whole model (1,155)", "benchmarks.bench_influence:influence_exact"),
                    ("conjugate gradients, whole model", "benchmarks.bench_influence:influence_cg"),
                    ("exact, last layer only (99)", "benchmarks.bench_influence:influence_last_layer")],
                   rounds=2, repeat=1)
    sections += ["Influence function (`influence.influence_function`, damping 0.01) on the retraining problem "
                 "(300 training x 100 test examples, the trained head):", table(infl, infl[0][0]), _influence_agreement()]
    torch.set_num_threads(base)
    return "\n\n".join(sections)
