"""Chapter 12's checks: each accepts the reference, reports the stub, and names typical mistakes."""
import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch.func import functional_call, grad, vmap

from xaicourse import influence, tda
from xaicourse.checks import check_lds, check_per_example_gradients, check_tracin_checkpoint
from xaicourse.checks.core import CheckFailed


def stub(*_args):
    raise NotImplementedError


def own_gradients(model, loss_fn, x, y):
    params = {n: p.detach() for n, p in model.named_parameters()}

    def loss(p, xi, yi):
        return loss_fn(functional_call(model, p, (xi[None],)), yi[None])
    g = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    return torch.cat([g[n].flatten(1) for n in params], 1)


def loop_gradients(model, loss_fn, x, y):
    rows = []
    for xi, yi in zip(x, y):
        grads = torch.autograd.grad(loss_fn(model(xi[None]), yi[None]), list(model.parameters()))
        rows.append(torch.cat([g.flatten() for g in grads]))
    return torch.stack(rows)


def own_lds(scores, subsets, outputs):
    pred = subsets.double() @ scores.double().T
    return np.nanmean([spearmanr(pred[:, j], outputs[:, j]).statistic for j in range(outputs.shape[1])])


def test_a_loop_and_a_plain_mean_are_named():
    with pytest.raises(CheckFailed, match="a loop over the examples"):
        check_per_example_gradients(loop_gradients)

    def plain_mean(scores, subsets, outputs):
        pred = subsets.double() @ scores.double().T
        return sum(spearmanr(pred[:, j], outputs[:, j]).statistic for j in range(outputs.shape[1])) / outputs.shape[1]
    with pytest.raises(CheckFailed, match="np.nanmean"):
        check_lds(plain_mean)

    def in_float32(model, loss_fn, x, y):   # computed in float32: right to 1e-7, not to the check's 1e-9
        params = {n: p.detach().float() for n, p in model.named_parameters()}

        def loss(p, xi, yi):
            return loss_fn(functional_call(model, p, (xi[None].float(),)), yi[None])
        g = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
        return torch.cat([g[n].flatten(1) for n in params], 1)
    with pytest.raises(CheckFailed, match="float32 loses the digits"):
        check_per_example_gradients(in_float32)


@pytest.mark.parametrize("check, reference", [
    (check_per_example_gradients, lambda m, f, x, y: influence.per_example_gradients(m, f, x, y)),
    (check_per_example_gradients, own_gradients),
    (check_tracin_checkpoint, lambda a, b, lr: lr * b @ a.T), (check_tracin_checkpoint, lambda a, b, lr: torch.einsum("ip,jp->ji", a, b) * lr),
    (check_lds, tda.lds), (check_lds, own_lds)],
    ids=["grad", "grad-own", "tracin", "tracin-einsum", "lds", "lds-own"])
def test_reference_passes_and_stub_is_reported(check, reference, capsys):
    assert check(reference) is True
    assert "[passed]" in capsys.readouterr().out
    assert check(stub) is False
    assert "not implemented yet" in capsys.readouterr().out


def _batch_mean(model, loss_fn, x, y):
    g = torch.autograd.grad(loss_fn(model(x), y), list(model.parameters()))
    return torch.cat([t.flatten() for t in g]).expand(len(x), -1)


def _wrt_input(model, loss_fn, x, y):
    return vmap(grad(lambda xi, yi: loss_fn(model(xi[None]), yi[None])))(x, y)


def _with_backward(model, loss_fn, x, y):
    loss_fn(model(x), y).backward()
    return own_gradients(model, loss_fn, x, y)


def _as_dict(model, loss_fn, x, y):
    return dict(zip(["a"], [own_gradients(model, loss_fn, x, y)]))


def _pearson(scores, subsets, outputs):
    pred = subsets.double() @ scores.T
    return float(torch.stack([torch.corrcoef(torch.stack([pred[:, j], outputs[:, j]]))[0, 1] for j in range(outputs.shape[1])]).mean())


@pytest.mark.parametrize("check, wrong, hint", [
    (check_per_example_gradients, _batch_mean, "batch's mean loss"),
    (check_per_example_gradients, lambda m, f, x, y: -own_gradients(m, f, x, y), "wrong sign"),
    (check_per_example_gradients, lambda m, f, x, y: own_gradients(m, f, x, y)[:, -18:], "only the last layer"),
    (check_per_example_gradients, _wrt_input, "with respect to x"),
    (check_per_example_gradients, _with_backward, ".grad"),
    (check_per_example_gradients, _as_dict, "one (N, P) tensor"),
    (check_per_example_gradients, lambda m, f, x, y: own_gradients(m, torch.nn.functional.cross_entropy, x, y), "call the loss_fn you are given"),
    (check_per_example_gradients, lambda m, f, x, y: (m.eval(), own_gradients(m, f, x, y))[1], "mode"),
    (check_tracin_checkpoint, lambda a, b, lr: lr * a @ b.T, "(n_train, n_test)"),
    (check_tracin_checkpoint, lambda a, b, lr: b @ a.T, "left out the learning rate"),
    (check_tracin_checkpoint, lambda a, b, lr: lr * torch.nn.functional.cosine_similarity(b[:, None], a[None], dim=-1), "cosine"),
    (check_tracin_checkpoint, lambda a, b, lr: -lr * b @ a.T, "wrong sign"),
    (check_tracin_checkpoint, lambda a, b, lr: (lr * b @ a.T).sum(1), "summed over the training examples"),
    (check_lds, _pearson, "Pearson"),
    (check_lds, lambda s, sub, out: tda.lds(s, ~sub, out), "*left out* of each subset"),
    (check_lds, lambda s, sub, out: torch.tensor([tda.lds(s[j:j + 1], sub, out[:, j:j + 1]) for j in range(len(s))]), "one per test example"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_mistakes_get_their_hint(check, wrong, hint, capsys):
    with pytest.raises(CheckFailed) as err:
        check(wrong)
    assert hint in str(err.value), str(err.value)


# --------------------------------------------------------------------------------------------
# Every catalogued mistake, written as a learner would, gets its own hint
# --------------------------------------------------------------------------------------------
from scipy.stats import kendalltau, rankdata  # noqa: E402

from xaicourse.checks import tda as tda_checks  # noqa: E402


def _grads_by_name(model, loss_fn, x, y, of=None):
    params = {n: p.detach() for n, p in model.named_parameters()}

    def loss(p, xi, yi):
        return (of or loss_fn)(functional_call(model, p, (xi[None],)), yi[None])
    return vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)


def _ordered(order):
    def gradients(model, loss_fn, x, y):
        g = _grads_by_name(model, loss_fn, x, y)
        return torch.cat([g[n].flatten(1) for n in order(list(g))], 1)
    return gradients


def _batch_sum(model, loss_fn, x, y):
    g = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), y, reduction="sum"), list(model.parameters()))
    return torch.cat([t.flatten() for t in g]).expand(len(x), -1)


def _transposed_weights(model, loss_fn, x, y):
    g = _grads_by_name(model, loss_fn, x, y)
    return torch.cat([(t.transpose(1, 2) if t.dim() == 3 else t).flatten(1) for t in g.values()], 1)


def _logit(model, loss_fn, x, y):
    g = _grads_by_name(model, loss_fn, x, y, of=lambda out, t: out.gather(1, t[:, None]).sum())
    return torch.cat([t.flatten(1) for t in g.values()], 1)


def _sgd_step(model, loss_fn, x, y):
    out = own_gradients(model, loss_fn, x, y)
    with torch.no_grad():
        for p in model.parameters():
            p.sub_(0.1)
    return out


def _frozen(model, loss_fn, x, y):
    out = own_gradients(model, loss_fn, x, y)
    for p in model.parameters():
        p.requires_grad_(False)
    return out


def _x_in_place(model, loss_fn, x, y):
    x.mul_(2.0)
    return own_gradients(model, loss_fn, x / 2, y)


@pytest.mark.parametrize("wrong, hint", [
    (_batch_mean, "batch's mean loss"),
    (_batch_sum, "summed over the batch"),
    (lambda m, f, x, y: own_gradients(m, f, x, y)[:1].expand(len(x), -1), "does not depend on the example"),
    (lambda m, f, x, y: own_gradients(m, f, x, y) / len(x), "1/N"),
    (lambda m, f, x, y: own_gradients(m, f, x, y).sum(0), "one gradient (P,) for the whole batch"),
    (_wrt_input, "with respect to x"),
    (lambda m, f, x, y: own_gradients(m, f, x, y)[:, -18:], "only the last layer"),
    (lambda m, f, x, y: own_gradients(m, f, x, y)[:, :25], "only the first layer"),
    (_ordered(lambda names: [n for n in names if n.endswith("weight")]), "dropped the biases"),
    (lambda m, f, x, y: -own_gradients(m, f, x, y), "wrong sign"),
    (_logit, "target class's logit"),
    (_ordered(sorted), "sorted order"),
    (_ordered(lambda names: names[::-1]), "reverse order"),
    (_ordered(lambda names: sorted(names, key=lambda n: not n.endswith("bias"))), "biases before the weights"),
    (_transposed_weights, "right but in another order"),
    (_with_backward, ".grad"),
    (lambda m, f, x, y: (m.eval(), own_gradients(m, f, x, y))[1], "mode"),
    (_sgd_step, "changed the model's weights"),
    (_frozen, "no longer require grad"),
    (_x_in_place, "changed x or y in place"),
    (_as_dict, "one (N, P) tensor"),
    (lambda m, f, x, y: list(_grads_by_name(m, f, x, y).values()), "one (N, P) tensor"),
    (lambda m, f, x, y: own_gradients(m, torch.nn.functional.cross_entropy, x, y), "call the loss_fn you are given"),
    (lambda m, f, x, y: own_gradients(m, f, x, y)[:, :40], "expected shape (6, 43)"),
    (lambda m, f, x, y: own_gradients(m, f, x, y).numpy(), "torch.Tensor"),
    (lambda m, f, x, y: None, "returned None"),
    (lambda m, f, x, y: torch.arange(len(x) * 43.0).reshape(len(x), 43), "differ from the reference"),
], ids=["batch-mean", "batch-sum", "constant-rows", "over-N", "one-vector", "wrt-x", "last-layer", "first-layer",
        "weights-only", "sign", "logit", "sorted", "reversed", "biases-first", "transposed", "backward", "mode", "sgd-step",
        "frozen", "x-in-place", "dict", "list", "loss-ignored", "shape", "numpy", "none", "other"])
def test_per_example_gradient_mistakes_are_named(wrong, hint):
    with pytest.raises(CheckFailed) as err:
        check_per_example_gradients(wrong)
    assert hint in str(err.value), str(err.value)


def _scaled_in_place(a, b, lr):
    a.mul_(lr)
    return b @ a.T


@pytest.mark.parametrize("wrong, hint", [
    (lambda a, b, lr: lr * a @ b.T, "(n_train, n_test)"),
    (lambda a, b, lr: b @ a.T, "left out the learning rate"),
    (lambda a, b, lr: lr * lr * b @ a.T, "lr squared"),
    (lambda a, b, lr: b @ a.T / lr, "divided by the learning rate"),
    (lambda a, b, lr: lr * torch.nn.functional.cosine_similarity(b[:, None], a[None], dim=-1), "you computed cosines:"),
    (lambda a, b, lr: torch.nn.functional.normalize(b, dim=1) @ torch.nn.functional.normalize(a, dim=1).T,
     "cosines without the learning rate"),
    (lambda a, b, lr: -lr * b @ a.T, "wrong sign"),
    (lambda a, b, lr: lr * (b @ a.T).abs(), "absolute values"),
    (lambda a, b, lr: lr * b.norm(dim=1)[:, None] * a.norm(dim=1)[None], "multiplied the gradients' norms"),
    (lambda a, b, lr: (lr * b @ a.T).sum(1), "summed over the training examples"),
    (lambda a, b, lr: (lr * b @ a.T).sum(0), "summed over the test examples"),
    (lambda a, b, lr: (lr * b @ a.T).sum(), "you returned one number"),
    (_scaled_in_place, "in place"),
    (lambda a, b, lr: (lr * b @ a.T).numpy(), "torch.Tensor"),
    (lambda a, b, lr: None, "returned None"),
    (lambda a, b, lr: torch.ones(len(b), len(a)), "differ from lr * g_test @ g_train.T"),
], ids=["transposed", "no-lr", "lr-squared", "over-lr", "cosine", "cosine-no-lr", "sign", "abs", "norms", "sum-train",
        "sum-test", "scalar", "in-place", "numpy", "none", "other"])
def test_tracin_checkpoint_mistakes_are_named(wrong, hint):
    with pytest.raises(CheckFailed) as err:
        check_tracin_checkpoint(wrong)
    assert hint in str(err.value), str(err.value)


def _per_test(correlation, pred_of=lambda s, sub: sub.double() @ s.T, axis=0):
    def lds(scores, subsets, outputs):
        pred = pred_of(scores, subsets)
        if axis == 1:
            pred, outputs = pred.T, outputs.T
        return float(torch.tensor([correlation(pred[:, j].numpy(), outputs[:, j].numpy())
                                   for j in range(outputs.shape[1])]).mean())
    return lds


def _spearman(a, b):
    return spearmanr(a, b).statistic


def _argsort_ranks(a, b):
    def ranks(v):
        return torch.as_tensor(v).argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ranks(a), ranks(b)]))[0, 1])


def _pooled(scores, subsets, outputs):
    return float(spearmanr((subsets.double() @ scores.T).flatten(), outputs.flatten()).statistic)


def _lds_in_place(scores, subsets, outputs):
    scores.mul_(2.0)                      # a positive scale leaves the ranks, and the LDS, unchanged
    return tda.lds(scores, subsets, outputs)


@pytest.mark.parametrize("wrong, hint", [
    (_pearson, "Pearson"),
    (_per_test(lambda a, b: kendalltau(a, b).statistic), "Kendall's tau"),
    (lambda s, sub, out: tda.lds(s, ~sub, out), "*left out* of each subset"),
    (lambda s, sub, out: -tda.lds(s, sub, out), "wrong sign"),
    (_per_test(_spearman, pred_of=lambda s, sub: (sub.double() @ s.T) / sub.sum(1, keepdim=True)),
     "averaged the scores over each subset"),
    (_per_test(_spearman, axis=1), "wrong axis"),
    (_pooled, "pooled every (subset, test example) pair"),
    (_per_test(lambda a, b: abs(spearmanr(a, b).statistic)), "absolute values of the correlations"),
    (_per_test(_argsort_ranks), "ranks break ties"),
    (_per_test(lambda a, b: pearsonr_ranks(a, b, "min")), "ranks break ties"),
    (lambda s, sub, out: torch.tensor([tda.lds(s[j:j + 1], sub, out[:, j:j + 1]) for j in range(len(s))]),
     "one per test example"),
    (lambda s, sub, out: [tda.lds(s[j:j + 1], sub, out[:, j:j + 1]) for j in range(len(s))], "one per test example"),
    (_lds_in_place, "in place"),
    (lambda s, sub, out: None, "returned None"),
    (lambda s, sub, out: "0.5", "one number"),
    (lambda s, sub, out: 0.123, "the reference"),
], ids=["pearson", "kendall", "complement", "sign", "mean", "axis", "pooled", "abs", "argsort-ranks", "min-ranks",
        "per-test", "per-test-list", "in-place", "none", "string", "other"])
def test_lds_mistakes_are_named(wrong, hint):
    with pytest.raises(CheckFailed) as err:
        check_lds(wrong)
    assert hint in str(err.value), str(err.value)


def pearsonr_ranks(a, b, method):
    return float(torch.corrcoef(torch.tensor(np.stack([rankdata(a, method=method), rankdata(b, method=method)])))[0, 1])


def _rank_lds(scores, subsets, outputs):
    pred = (subsets.double() @ scores.T).numpy()
    return float(np.nanmean([pearsonr_ranks(pred[:, j], outputs[:, j].numpy(), "average") for j in range(outputs.shape[1])]))


@pytest.mark.parametrize("reference", [
    _rank_lds,                                                                  # average ranks, then Pearson
    lambda s, sub, out: torch.tensor(tda.lds(s, sub, out)),                     # a 0-d tensor
    lambda s, sub, out: np.float64(tda.lds(s, sub, out)),                       # a numpy number
    lambda s, sub, out: torch.tensor([tda.lds(s, sub, out)], dtype=torch.float32)],   # one float32 value
    ids=["ranks", "tensor-0d", "numpy", "float32"])
def test_other_correct_lds_answers_pass(reference):
    assert check_lds(reference) is True


def test_other_correct_gradient_and_tracin_answers_pass():
    assert check_per_example_gradients(lambda m, f, x, y: own_gradients(m, f, x, y).float()) is True
    assert check_tracin_checkpoint(lambda a, b, lr: (b * lr) @ a.T) is True
    assert check_tracin_checkpoint(lambda a, b, lr: (b[:, None] * a[None]).sum(-1) * lr) is True


def _values(mistakes):
    return [m.answer() if callable(m.answer) else m.answer for m in mistakes if m.when is None]


def _tellable_apart(want, values):
    values = [torch.as_tensor(v, dtype=torch.float64) for v in values]
    for i, v in enumerate(values):
        if v.shape == want.shape:
            assert not torch.allclose(v, want, rtol=1e-4, atol=1e-6), f"mistake {i} gives the right answer"
        for j in range(i):
            w = values[j]
            assert not (v.shape == w.shape and torch.allclose(v, w, rtol=1e-4, atol=1e-6)), f"mistakes {j} and {i} agree"


def test_the_fixed_cases_tell_every_catalogued_mistake_apart():
    model, x, y = tda_checks.gradient_case()
    want = influence.per_example_gradients(model, tda_checks._cross_entropy, x, y)
    gradient_mistakes = tda_checks._gradient_mistakes(model, x, y, want)
    _tellable_apart(want, _values(gradient_mistakes))
    scores, subsets, outputs = tda_checks.lds_case()
    want_lds = tda.lds(scores, subsets, outputs)
    lds_mistakes = tda_checks._lds_mistakes(scores, subsets, outputs, want_lds)
    _tellable_apart(torch.tensor(want_lds, dtype=torch.float64), _values(lds_mistakes))
    for mistakes in (gradient_mistakes, lds_mistakes):
        hints = [m.hint for m in mistakes]
        assert len(set(hints)) == len(hints)
    assert len(set(subsets.sum(1).tolist())) > 2                    # sizes differ: a mean is not a sum
    per_test = [spearmanr(subsets.double() @ scores[j], outputs[:, j]).statistic for j in range(len(scores))]
    assert min(per_test) < 0 < max(per_test)                         # an absolute value shows


def test_the_gradient_case_leaves_the_global_random_state_alone():
    state = torch.random.get_rng_state()
    tda_checks.gradient_case()
    assert torch.equal(torch.random.get_rng_state(), state)
