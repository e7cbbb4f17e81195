"""Checks of chapter 12's exercises: per-example gradients, one checkpoint of TracIn, the linear datamodeling score.

Each section grades one exercise against the package's reference (:mod:`xaicourse.influence`,
:mod:`xaicourse.tda`) on its own small fixed case, and keeps its own catalogue of typical wrong
answers, rebuilt from the case with the reference's pieces.
"""
from __future__ import annotations

import contextlib
import numbers
import warnings

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from .. import influence, tda
from .core import CheckFailed, Mistake, ModelState, compare, expect, expect_as_found, expect_returned, expect_unchanged, grader

__all__ = ["check_lds", "check_per_example_gradients", "check_tracin_checkpoint", "gradient_case", "lds_case",
           "tracin_case"]


# --------------------------------------------------------------------------------------------
# Exercise 12.1: per-example gradients with torch.func
# --------------------------------------------------------------------------------------------
def gradient_case(seed: int = 1200):
    """The grader's fixed case: a float64 MLP 4 -> 5 -> 3 in training mode, 6 inputs (6, 4) and labels (6,). Chapter 12.

    The weights come from a seeded generator (the global random state is not touched); 43 parameters
    in the order 0.weight (5, 4), 0.bias (5,), 2.weight (3, 5), 2.bias (3,). Training mode, as during
    training (the model has no dropout or BatchNorm, so the gradients are the same): a function that
    switches it to eval mode and does not switch back shows.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # nn.Linear's own initialisation draws from the global state
        model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double().train()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.8 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    x = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 1, 0, 2])
    return model, x, y


def _cross_entropy(logits, y):
    return nn.functional.cross_entropy(logits, y)


def _smoothed(logits, y):
    return nn.functional.cross_entropy(logits, y, label_smoothing=0.3)


def _per_example(model, fn, x, y, *, wrt: str = "params") -> dict:
    """{name: (N, ...)} gradients of ``fn(logits (1, C), y (1,))`` per example, w.r.t. the parameters or the input."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    if wrt == "x":
        def of_x(x_i, y_i):
            return fn(functional_call(model, params, (x_i[None],)), y_i[None])
        return {"x": vmap(grad(of_x))(x, y)}

    def of_params(p, x_i, y_i):
        return fn(functional_call(model, p, (x_i[None],)), y_i[None])
    return vmap(grad(of_params), in_dims=(None, 0, 0))(params, x, y)


def _flat(grads: dict, names) -> torch.Tensor:
    return torch.cat([grads[n].flatten(1) for n in names], dim=1)


def _gradient_mistakes(model, x, y, want: torch.Tensor) -> list[Mistake]:
    names = [n for n, _ in model.named_parameters()]
    n = len(x)
    per = _per_example(model, _cross_entropy, x, y)
    params = {k: p.detach() for k, p in model.named_parameters()}
    batch = grad(lambda p: _cross_entropy(functional_call(model, p, (x,)), y))(params)
    batch_row = torch.cat([batch[k].flatten() for k in names])

    def logit(logits, target):
        return logits.gather(1, target[:, None]).sum()

    def same_values_reordered(got):
        return got.shape == want.shape and torch.allclose(got.sort(1).values, want.sort(1).values, rtol=1e-5, atol=1e-8)

    return [
        Mistake("every row is the gradient of the batch's mean loss: you differentiated loss_fn(model(x), y) once "
                "for the whole batch; differentiate each example's own loss, loss_fn(model(x_i[None]), y_i[None]) "
                "(vmap(grad(loss), in_dims=(None, 0, 0)) does it for all i at once)",
                lambda: batch_row.expand(n, -1)),
        Mistake("every row is the gradient of the loss summed over the batch (N times its mean): that is one "
                "gradient for the whole batch, repeated; differentiate each example's own loss, "
                "loss_fn(model(x_i[None]), y_i[None])", lambda: n * batch_row.expand(n, -1)),
        Mistake("every row is the same: your gradient does not depend on the example; inside vmap, the loss must "
                "be computed from the example x_i that vmap hands you, not from the whole batch x",
                when=lambda got: got.shape == want.shape and bool(torch.allclose(got, got[:1].expand_as(got)))),
        Mistake("your gradients are 1/N of each example's: you divided each example's loss by the batch size (as "
                "the batch mean would); the gradient of one example's loss, loss_fn(model(x_i[None]), y_i[None]), "
                "is not divided by anything", lambda: want / n),
        Mistake("you returned one gradient (P,) for the whole batch: the exercise asks for one row per example, "
                f"an (N, P) = ({n}, {want.shape[1]}) tensor", when=lambda got: got.shape == (want.shape[1],)),
        Mistake("you differentiated with respect to x (the input), not the parameters: training-data attribution "
                "needs d loss / d parameters; pass the parameters to grad (grad differentiates its first argument) "
                "and functional_call(model, params, (x_i[None],))",
                lambda: _per_example(model, _cross_entropy, x, y, wrt="x")["x"]),
        Mistake("you returned only the last layer's gradients: concatenate every parameter of "
                "model.named_parameters(), the first layer's as well", lambda: _flat(per, names[2:])),
        Mistake("you returned only the first layer's gradients: concatenate every parameter of "
                "model.named_parameters(), the last layer's as well", lambda: _flat(per, names[:2])),
        Mistake("you kept the weights and dropped the biases: every parameter of model.named_parameters() has a "
                "gradient, the biases too", lambda: _flat(per, [k for k in names if k.endswith("weight")])),
        Mistake("your gradients have the wrong sign: you differentiated minus the loss (or subtracted it); "
                "take the gradient of loss_fn(model(x_i[None]), y_i[None]) itself", lambda: -want),
        Mistake("you differentiated the target class's logit, as a saliency map would: these methods use the "
                "gradient of the *loss*, loss_fn(model(x_i[None]), y_i[None])",
                lambda: _flat(_per_example(model, logit, x, y), names)),
        Mistake("your parameters are in sorted order (sorted names put '0.bias' before '0.weight'): concatenate "
                "them in the order of model.named_parameters()", lambda: _flat(per, sorted(names))),
        Mistake("your parameters are in reverse order (last layer first): concatenate them in the order of "
                "model.named_parameters()", lambda: _flat(per, names[::-1])),
        Mistake("you put all the biases before the weights: concatenate the parameters in the order of "
                "model.named_parameters() (0.weight, 0.bias, 2.weight, 2.bias)",
                lambda: _flat(per, sorted(names, key=lambda k: not k.endswith("bias")))),
        Mistake("your values are right but in another order: flatten each parameter's gradient with "
                "g.flatten(1) (row-major, not transposed) and concatenate them in the order of "
                "model.named_parameters()", when=same_values_reordered),
    ]


def _expect_flat_tensor(got, shape) -> None:
    expect_returned(got)
    if isinstance(got, dict) or (isinstance(got, (list, tuple)) and any(isinstance(g, torch.Tensor) for g in got)):
        raise CheckFailed(f"you returned the gradients per parameter ({type(got).__name__} of {len(got)}): return one "
                          f"(N, P) tensor, {shape}: flatten each gradient to (N, -1) with g.flatten(1) and torch.cat "
                          "them along dim=1, in the order of model.named_parameters()")


@grader
def check_per_example_gradients(per_example_gradients) -> str:
    """Grade ``per_example_gradients(model, loss_fn, x, y) -> (N, P)``. Chapter 12.

    Row i: the gradient of ``loss_fn(model(x[i:i+1]), y[i:i+1])`` with respect to every parameter,
    flattened and concatenated in the order of ``model.named_parameters()``, as
    :func:`xaicourse.influence.per_example_gradients`. Graded with cross-entropy, then with another
    loss (the function must use ``loss_fn``); the model, x and y are left as found.
    """
    model, x, y = gradient_case()
    for loss_fn in (_cross_entropy, _smoothed):
        before, copies = ModelState.of(model), (x.clone(), y.clone())
        with _counting_backward() as calls:
            got = per_example_gradients(model, loss_fn, x, y)
        expect(calls[0] < len(x), f"you ran {calls[0]} backward passes for {len(x)} examples, a loop over the "
                                  "examples: the exercise asks for one vmap(grad(loss), in_dims=(None, 0, 0)) call")
        expect(all(p.grad is None for p in model.parameters()),
               "the model's parameters now carry .grad (left by .backward()): torch.func.grad returns the gradients "
               "without filling .grad; if you loop with .backward(), end with model.zero_grad(set_to_none=True)")
        expect_as_found(model, before, grad_of="the parameters passed to torch.func.grad")
        expect_unchanged("your function changed x or y in place: compute on new tensors", (x, copies[0]),
                         (y, copies[1]))
        want = influence.per_example_gradients(model, loss_fn, x, y)
        _expect_flat_tensor(got, tuple(want.shape))
        if isinstance(got, torch.Tensor) and got.dtype != want.dtype:   # right to float32's digits, not the check's
            values = got.detach().double().cpu()
            expect(not torch.allclose(values, want, rtol=1e-3, atol=1e-6) or torch.allclose(values, want, rtol=1e-6, atol=1e-9),
                   f"your gradients are {got.dtype}, the model's parameters float64: float32 loses the digits this "
                   "check compares; keep the model's dtype (no .float())")
        if loss_fn is _cross_entropy:
            mistakes = _gradient_mistakes(model, x, y, want)
        else:
            ce = influence.per_example_gradients(model, _cross_entropy, x, y)
            mistakes = [Mistake("you ignored loss_fn: with a label-smoothed cross-entropy as loss_fn your gradients are "
                                "those of the plain cross-entropy; call the loss_fn you are given", ce)]
        compare(got, want, mistakes, rtol=1e-6, atol=1e-9,
                shape_hint="one row per example, one column per parameter entry (all of model.named_parameters())",
                otherwise=lambda g: f"your gradients differ from the reference by up to {float((g - want).abs().max()):.3g}: "
                                    "row i is the gradient of loss_fn(model(x[i:i+1]), y[i:i+1]) with respect to every "
                                    "parameter, flattened and concatenated in the order of model.named_parameters()")
    return ("one gradient per example over all 43 parameters of the grader's small model, in named_parameters() "
            "order, for two losses, without a loop; the model left as found")


@contextlib.contextmanager
def _counting_backward():
    """Count the calls of Tensor.backward and torch.autograd.grad (a loop over examples makes one per example;
    torch.func.grad under vmap makes none of them by that name)."""
    calls = [0]
    backward, autograd_grad = torch.Tensor.backward, torch.autograd.grad

    def counted_backward(self, *args, **kwargs):
        calls[0] += 1
        return backward(self, *args, **kwargs)

    def counted_grad(*args, **kwargs):
        calls[0] += 1
        return autograd_grad(*args, **kwargs)
    torch.Tensor.backward, torch.autograd.grad = counted_backward, counted_grad
    try:
        yield calls
    finally:
        torch.Tensor.backward, torch.autograd.grad = backward, autograd_grad


# --------------------------------------------------------------------------------------------
# Exercise 12.2: one checkpoint of TracIn (Pruthi et al. 2020)
# --------------------------------------------------------------------------------------------
def tracin_case(seed: int = 1210):
    """The grader's fixed case: g_train (5, 7), g_test (3, 7) float64 and a learning rate of 0.3. Chapter 12.

    Some dot products are negative, so a sign, an absolute value and a cosine all show."""
    gen = torch.Generator().manual_seed(seed)
    g_train = torch.randn(5, 7, generator=gen, dtype=torch.float64) * torch.tensor([[1.0], [3.0], [0.5], [2.0], [1.5]],
                                                                                     dtype=torch.float64)
    g_test = torch.randn(3, 7, generator=gen, dtype=torch.float64)
    return g_train, g_test, 0.3


@grader
def check_tracin_checkpoint(tracin_one) -> str:
    """Grade ``tracin_one(g_train (n_train, P), g_test (n_test, P), lr) -> (n_test, n_train)``. Chapter 12.

    Expected: ``lr * g_test @ g_train.T``, one checkpoint's term of TracInCP as
    :func:`xaicourse.influence.tracin` sums them; the gradients are left unchanged.
    """
    g_train, g_test, lr = tracin_case()
    copies = (g_train.clone(), g_test.clone())
    got = tracin_one(g_train, g_test, lr)
    expect_unchanged("your function changed g_train or g_test in place: compute on new tensors",
                     (g_train, copies[0]), (g_test, copies[1]))
    dots = g_test @ g_train.T
    want = lr * dots
    norms = g_test.norm(dim=1)[:, None] * g_train.norm(dim=1)[None, :]
    cosine = dots / norms
    n_test, n_train = len(g_test), len(g_train)
    compare(got, want, [
        Mistake(f"your scores are transposed, (n_train, n_test) = ({n_train}, {n_test}): rows are test examples and "
                "columns training examples, lr * g_test @ g_train.T", want.T),
        Mistake("you left out the learning rate: each checkpoint's term is lr times the dot products "
                "(the step gradient descent took there), lr * g_test @ g_train.T", dots),
        Mistake("you multiplied by lr twice (lr squared): the term is lr * g_test @ g_train.T, one factor of lr",
                lr ** 2 * dots),
        Mistake("you divided by the learning rate: TracIn multiplies by it (a larger step moves the test loss more), "
                "lr * g_test @ g_train.T", dots / lr),
        Mistake("you computed cosines: TracIn uses the dot products of the raw gradients, whose lengths count "
                "(a large gradient moved the weights more); lr * g_test @ g_train.T", lr * cosine),
        Mistake("you computed cosines without the learning rate: TracIn is lr times the dot products of the raw "
                "gradients, lr * g_test @ g_train.T", cosine),
        Mistake("your scores have the wrong sign: TracIn's term is + lr * g_test . g_train (the test loss goes "
                "down by about that much when the step is taken on the training example), so proponents are positive",
                -want),
        Mistake("you took absolute values of the dot products: the sign says whether the training example pushed "
                "the test loss down (+) or up (-); keep it, lr * g_test @ g_train.T", lr * dots.abs()),
        Mistake("you multiplied the gradients' norms: that is |g_test| |g_train|, whatever their directions; "
                "TracIn takes their dot product, lr * g_test @ g_train.T", lr * norms),
        Mistake(f"you summed over the training examples: return every pair, an (n_test, n_train) = ({n_test}, "
                f"{n_train}) tensor, lr * g_test @ g_train.T", want.sum(1)),
        Mistake(f"you summed over the test examples: return every pair, an (n_test, n_train) = ({n_test}, "
                f"{n_train}) tensor, lr * g_test @ g_train.T", want.sum(0)),
        Mistake(f"you returned one number: TracIn scores every (test, training) pair, an (n_test, n_train) = "
                f"({n_test}, {n_train}) tensor, lr * g_test @ g_train.T", when=lambda g: g.numel() == 1),
    ], rtol=1e-6, atol=1e-9, shape_hint="rows are test examples, columns training examples",
        otherwise=lambda g: f"your scores differ from lr * g_test @ g_train.T by up to "
                            f"{float((g - want).abs().max()):.3g}")
    return "lr times the dot product of every test gradient with every training gradient, (n_test, n_train)"


# --------------------------------------------------------------------------------------------
# Exercise 12.3: the linear datamodeling score (Park et al. 2023)
# --------------------------------------------------------------------------------------------
def lds_case():
    """The grader's fixed case: scores (4, 6) and outputs (8, 4) float64, subsets (8, 6) bool of sizes 1 to 5. Chapter 12.

    Integer scores give tied predictions and the outputs have ties of their own (so average ranks
    matter); one test example's outputs fall as its predictions rise (an absolute value shows); the
    subsets' sizes differ (a mean instead of a sum shows); Pearson and Spearman differ clearly.
    """
    scores = torch.tensor([[2., 1., 0., -1., 3., 1.],
                           [1., 2., 2., 0., -1., 1.],
                           [0., 3., -2., 1., 1., 2.],
                           [-1., 0., 1., 2., 0., 3.]], dtype=torch.float64)
    subsets = torch.tensor([[1, 1, 0, 0, 1, 0],
                            [0, 1, 1, 0, 0, 1],
                            [1, 0, 1, 1, 0, 0],
                            [1, 1, 1, 1, 1, 0],
                            [0, 0, 0, 1, 0, 0],
                            [0, 1, 0, 1, 1, 1],
                            [1, 0, 0, 0, 1, 1],
                            [0, 0, 1, 0, 0, 0]], dtype=torch.bool)
    outputs = torch.tensor([[5.0, 0.2, 1.0, 0.5],
                            [2.0, -2.0, 2.0, 2.5],
                            [1.0, 0.1, -1.0, 1.5],
                            [4.0, -1.0, 2.0, 1.5],
                            [-1.0, 0.3, 0.4, 2.5],
                            [3.0, -0.5, 9.0, 4.0],
                            [6.5, -1.5, 3.0, 4.0],
                            [0.5, 1.8, -0.5, -3.0]], dtype=torch.float64)
    return scores, subsets, outputs


def _mean_correlation(a: torch.Tensor, b: torch.Tensor, correlation) -> float:
    """The nanmean over columns of ``correlation(a[:, j], b[:, j])``."""
    values = [correlation(a[:, j].numpy(), b[:, j].numpy()) for j in range(a.shape[1])]
    return float(np.nanmean(values))


def _lds_mistakes(scores, subsets, outputs, want: float) -> list[Mistake]:
    from scipy.stats import kendalltau, pearsonr, rankdata, spearmanr

    s, d, out = scores.double(), subsets.double(), outputs.double()
    predicted = d @ s.T

    def spearman(a, b):
        return spearmanr(a, b).statistic

    def pearson(a, b):
        return pearsonr(a, b).statistic

    def broken_ties(method):
        return lambda a, b: pearson(rankdata(a, method=method), rankdata(b, method=method))

    def torch_ranks(a, b):
        def ranks(v):
            return torch.as_tensor(v).argsort().argsort().double().numpy()
        return pearson(ranks(a), ranks(b))

    tie_variants = [_mean_correlation(predicted, out, f)
                    for f in (broken_ties("ordinal"), broken_ties("min"), broken_ties("max"), broken_ties("dense"),
                              torch_ranks)]
    per_test = [spearman(predicted[:, j].numpy(), out[:, j].numpy()) for j in range(out.shape[1])]
    return [
        Mistake("you used Pearson's correlation of the values: the LDS is a *rank* correlation (Spearman), which asks "
                "only whether the predictions order the subsets as retraining does; scipy.stats.spearmanr",
                _mean_correlation(predicted, out, pearson)),
        Mistake("you used Kendall's tau: the LDS of Park et al. is Spearman's rank correlation, "
                "scipy.stats.spearmanr(predicted, actual).statistic", _mean_correlation(predicted, out,
                                                                                          lambda a, b: kendalltau(a, b).statistic)),
        Mistake("your LDS has the wrong sign: you summed the scores of the examples *left out* of each subset "
                "(~subsets), or flipped a sign; a subset's prediction is the sum of scores[j, i] over the "
                "examples i it contains, subsets.double() @ scores.T", -want),
        Mistake("you averaged the scores over each subset: the prediction is their *sum* (a linear datamodel adds "
                "up the examples' contributions, so a larger subset moves the output more); "
                "subsets.double() @ scores.T, not divided by the subset's size",
                lambda: _mean_correlation(predicted / d.sum(1, keepdim=True), out, spearman)),
        Mistake("you correlated along the wrong axis (over the test examples, one correlation per subset): for each "
                "test example j, correlate its predictions with outputs[:, j] across the subsets, then average over j",
                lambda: _mean_correlation(predicted.T, out.T, spearman)),
        Mistake("you pooled every (subset, test example) pair into one correlation: compute one Spearman "
                "correlation per test example (across the subsets), then average them",
                lambda: float(spearman(predicted.flatten().numpy(), out.flatten().numpy()))),
        Mistake("you averaged the absolute values of the correlations: a test example whose outputs fall as its "
                "predictions rise is badly predicted (a negative correlation); average the signed correlations",
                float(np.nanmean(np.abs(per_test)))),
        Mistake("your ranks break ties by position (or give tied values the lowest rank): Spearman gives tied "
                "values their average rank; scipy.stats.spearmanr (or scipy.stats.rankdata) does it",
                when=lambda got: any(abs(float(got) - v) <= 1e-6 for v in tie_variants)),
    ]


def _size(value) -> int | None:
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return int(value.size) if isinstance(value, np.ndarray) else value.numel()
    if isinstance(value, (list, tuple)):
        return len(value)
    return None


@grader
def check_lds(lds) -> str:
    """Grade ``lds(scores (n_test, n_train), subsets (n_subsets, n_train) bool, outputs (n_subsets, n_test)) -> float``. Chapter 12.

    Expected as :func:`xaicourse.tda.lds`: for each test example j, the Spearman correlation across
    the subsets between ``subsets @ scores[j]`` (the summed scores of each subset) and
    ``outputs[:, j]``, averaged over the test examples. A float, or a tensor or array of one value.
    """
    scores, subsets, outputs = lds_case()
    copies = (scores.clone(), subsets.clone(), outputs.clone())
    got = lds(scores, subsets, outputs)
    expect_unchanged("your function changed scores, subsets or outputs in place: compute on new tensors",
                     (scores, copies[0]), (subsets, copies[1]), (outputs, copies[2]))
    expect_returned(got)
    n_test = outputs.shape[1]
    if _size(got) == n_test and not isinstance(got, numbers.Real):
        raise CheckFailed(f"you returned {n_test} correlations (one per test example): the LDS is their mean, "
                          "one number (float(np.nanmean(per_test)))")
    want = tda.lds(scores, subsets, outputs)
    compare(got, want, _lds_mistakes(scores, subsets, outputs, want), rtol=1e-6, atol=1e-6,
            otherwise=lambda g: f"your LDS is {float(g):.4f}, the reference {want:.4f}: for each test example j, "
                                "spearmanr(subsets.double() @ scores[j].double(), outputs[:, j]).statistic, then the "
                                "mean over j")
    constant = outputs.clone()
    constant[:, 1] = 1.0            # a test example whose output is the same after every retraining: no correlation
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # scipy warns about the constant column, as it should
        got_constant = lds(scores, subsets, constant)
        want_constant = tda.lds(scores, subsets, constant)
    expect(got_constant is not None and np.isfinite(float(got_constant)),
           "with one test example whose outputs are all equal your LDS is NaN: its rank correlation is undefined; "
           "skip it (np.nanmean over the test examples), as the exercise says")
    compare(got_constant, want_constant, [], rtol=1e-6, atol=1e-6,
            otherwise=lambda g: f"with one constant output column your LDS is {float(g):.4f}, the reference "
                                f"{want_constant:.4f}: average only the defined correlations (np.nanmean)")
    return (f"LDS {want:.4f}: Spearman across subsets of the summed scores against the outputs, averaged over test "
            "examples, with ties ranked right")
