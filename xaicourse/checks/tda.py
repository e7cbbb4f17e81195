"""Checks of chapter 12's exercises: per-example gradients, one checkpoint of TracIn, the LDS.

Each grades one exercise against the package's reference (:mod:`xaicourse.influence`,
:mod:`xaicourse.tda`) on its own fixed case, with a catalogue of typical wrong answers.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import influence, tda
from .core import CheckFailed, Mistake, ModelState, compare, expect, expect_as_found, expect_returned, expect_unchanged, grader

__all__ = ["check_lds", "check_per_example_gradients", "check_tracin_checkpoint"]


def _cross_entropy(logits, y):
    return nn.functional.cross_entropy(logits, y)


# --------------------------------------------------------------------------------------------
# Per-example gradients with torch.func
# --------------------------------------------------------------------------------------------
def _gradient_case():
    torch.manual_seed(1201)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double().eval()
    g = torch.Generator().manual_seed(1202)
    return model, torch.randn(6, 4, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2, 2, 1, 0])


@grader
def check_per_example_gradients(per_example_gradients) -> str:
    """Grade ``per_example_gradients(model, loss_fn, x, y) -> (N, P)``: one flattened loss gradient per example. Chapter 12."""
    model, x, y = _gradient_case()
    before, inputs = ModelState.of(model), (x.clone(), y.clone())
    got = per_example_gradients(model, _cross_entropy, x, y)
    expect_returned(got)
    expect(not isinstance(got, (dict, list, tuple)), "return one (N, P) tensor: flatten each parameter's gradients to "
                                                     "(N, -1) and torch.cat them along dim 1, in named_parameters() order")
    expect_as_found(model, before, grad_of="params")
    expect_unchanged("your function changed x or y in place: compute on new tensors", (x, inputs[0]), (y, inputs[1]))
    want = influence.per_example_gradients(model, _cross_entropy, x, y)
    names = [n for n, _ in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    blocks = want.split(sizes, dim=1)
    mean = want.mean(0, keepdim=True).expand_as(want)
    by_name = dict(zip(names, blocks))
    compare(got, want, [
        Mistake("every row is the same: that is the gradient of the batch's mean loss, repeated. vmap(grad(loss)) "
                "with in_dims=(None, 0, 0) computes one gradient per example (loss of x_i[None], y_i[None])", mean),
        Mistake("every row is N times the gradient of the batch's loss: a loss summed over the batch, repeated; "
                "compute the loss of one example at a time", len(x) * mean),
        Mistake("your gradients have the wrong sign: the gradient of the loss itself, not of minus the loss "
                "(or of the logit)", -want),
        Mistake("the parameters are concatenated in sorted-name order: keep model.named_parameters()'s order "
                "(0.weight, 0.bias, 2.weight, 2.bias)", torch.cat([by_name[n] for n in sorted(names)], 1)),
        Mistake("the biases come before the weights: concatenate in model.named_parameters()'s order",
                torch.cat([blocks[1], blocks[0], blocks[3], blocks[2]], 1)),
        Mistake("you returned only the last layer's gradients: take every parameter of model.named_parameters()",
                torch.cat(blocks[2:], 1)),
        Mistake(f"your result has the shape of x, {tuple(x.shape)}: you differentiated with respect to x, not the "
                "parameters; pass the parameters dict as grad's first argument", when=lambda g: g.shape == x.shape),
    ], otherwise="your gradients differ from the reference: for each example, grad of "
                 "loss_fn(functional_call(model, params, (x_i[None],)), y_i[None]) with respect to params "
                 "(all of them), each flattened, concatenated in order",
       shape_hint="one row per example and one column per parameter")
    return "one gradient per example over every parameter, in order, model left as found"


# --------------------------------------------------------------------------------------------
# One checkpoint of TracIn (Pruthi et al. 2020)
# --------------------------------------------------------------------------------------------
@grader
def check_tracin_checkpoint(tracin_one) -> str:
    """Grade ``tracin_one(g_train (n_train, P), g_test (n_test, P), lr) -> (n_test, n_train)``: lr * g_test @ g_train.T. Chapter 12."""
    g = torch.Generator().manual_seed(1203)
    g_train, g_test, lr = torch.randn(7, 5, generator=g), torch.randn(3, 5, generator=g), 0.3
    g_train[2] *= 10                                       # one large gradient: the cosine differs from the dot
    before = (g_train.clone(), g_test.clone())
    got = tracin_one(g_train, g_test, lr)
    expect_unchanged("your function changed g_train or g_test in place: compute on new tensors",
                     (g_train, before[0]), (g_test, before[1]))
    dot = g_test @ g_train.T
    cosine = nn.functional.normalize(g_test, dim=1) @ nn.functional.normalize(g_train, dim=1).T
    compare(got, lr * dot, [
        Mistake("your result is (n_train, n_test): rows are test examples, columns training examples; "
                "g_test @ g_train.T", lambda: lr * dot.T),
        Mistake("you left out the learning rate: each checkpoint's dot products are multiplied by its lr", dot),
        Mistake("you squared the learning rate: multiply by lr once", lambda: lr ** 2 * dot),
        Mistake("you divided by the learning rate: multiply by it (a step of size lr moves the loss by about "
                "lr * g_test . g_train)", lambda: dot / lr),
        Mistake("you took the cosine: TracIn uses the dot product, so that an example with a large gradient (one the "
                "model has not fitted) counts more", lambda: lr * cosine),
        Mistake("your scores have the wrong sign: a training example whose gradient points like the test example's "
                "is a proponent, with a positive score: + lr * g_test @ g_train.T", lambda: -lr * dot),
        Mistake("you took absolute values: the sign says proponent (+) or opponent (-); keep it", lambda: lr * dot.abs()),
        Mistake("you summed over the training examples: return the whole (n_test, n_train) matrix",
                lambda: lr * dot.sum(1)),
    ], otherwise="your scores differ from lr * g_test @ g_train.T", shape_hint="(n_test, n_train)")
    return "lr times the dot products, test examples by training examples"


# --------------------------------------------------------------------------------------------
# The linear datamodeling score (Park et al. 2023)
# --------------------------------------------------------------------------------------------
def _lds_case():
    """Subsets of different sizes (so a mean differs from a sum), outputs with a few ties, and scores whose
    Pearson and Spearman correlations with the outputs differ."""
    g = torch.Generator().manual_seed(1204)
    n_subsets, n_train, n_test = 24, 10, 4
    subsets = torch.rand(n_subsets, n_train, generator=g) < torch.linspace(0.2, 0.8, n_subsets)[:, None]
    subsets[:, 0] = True
    scores = torch.randn(n_test, n_train, generator=g, dtype=torch.float64)
    scores[:, 3] *= 6                                     # one dominant example: Pearson and Spearman part
    noise = torch.randn(n_subsets, n_test, generator=g, dtype=torch.float64)
    outputs = (subsets.double() @ scores.T).exp() + 2 * noise
    outputs[:4] = outputs[4]                              # ties among the outputs
    return scores, subsets, outputs


@grader
def check_lds(lds) -> str:
    """Grade ``lds(scores, subsets, outputs) -> float``: the linear datamodeling score. Chapter 12."""
    scores, subsets, outputs = _lds_case()
    before = (scores.clone(), subsets.clone(), outputs.clone())
    got = lds(scores, subsets, outputs)
    expect_unchanged("your function changed scores, subsets or outputs in place: compute on new tensors",
                     *zip((scores, subsets, outputs), before))
    if isinstance(got, torch.Tensor) and got.numel() > 1:
        raise CheckFailed(f"return one number, the mean over test examples, not {tuple(got.shape)} values "
                          "(one per test example): average them")
    from scipy.stats import pearsonr, spearmanr

    predicted = subsets.double() @ scores.T
    size = subsets.double().sum(1, keepdim=True)

    def mean_of(per_test):
        return float(torch.tensor(per_test, dtype=torch.float64).nanmean())

    def spearman(pred, out=outputs):
        return mean_of([spearmanr(pred[:, j], out[:, j]).statistic for j in range(out.shape[1])])
    compare(got, tda.lds(scores, subsets, outputs), [
        Mistake("you took Pearson's correlation: the LDS is a rank (Spearman) correlation, so that the scale of "
                "the scores does not matter; scipy.stats.spearmanr",
                lambda: mean_of([pearsonr(predicted[:, j], outputs[:, j]).statistic for j in range(outputs.shape[1])])),
        Mistake("you summed the scores of the examples *left out* of each subset: the prediction for subset s is "
                "the sum over the examples it keeps (subsets[s] True)", lambda: spearman((~subsets).double() @ scores.T)),
        Mistake("you averaged the scores over each subset: the datamodel adds them up (a subset with more "
                "proponents predicts a higher output); take the sum", lambda: spearman(predicted / size)),
        Mistake("you correlated across test examples (one correlation per subset): correlate each test example's "
                "predictions with its outputs over the subsets, outputs[:, j]",
                lambda: mean_of([spearmanr(predicted[s], outputs[s]).statistic for s in range(len(outputs))])),
        Mistake("you took absolute values of the correlations: a method that predicts the outputs backwards "
                "must score below 0; keep the sign",
                lambda: mean_of([abs(spearmanr(predicted[:, j], outputs[:, j]).statistic) for j in range(outputs.shape[1])])),
    ], otherwise=lambda g: f"your LDS is {float(g):.4f}, the reference {tda.lds(scores, subsets, outputs):.4f}: for each "
                           "test example j, spearmanr(subsets @ scores[j], outputs[:, j]), then the mean over j")
    return "the Spearman correlation of summed scores with the retrained outputs, averaged over test examples"
