"""Chapter 12's checks: each accepts the reference, reports the stub, and names typical mistakes."""
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
    return sum(spearmanr(pred[:, j], outputs[:, j]).statistic for j in range(outputs.shape[1])) / outputs.shape[1]


@pytest.mark.parametrize("check, reference", [
    (check_per_example_gradients, lambda m, f, x, y: influence.per_example_gradients(m, f, x, y)),
    (check_per_example_gradients, own_gradients), (check_per_example_gradients, loop_gradients),
    (check_tracin_checkpoint, lambda a, b, lr: lr * b @ a.T), (check_tracin_checkpoint, lambda a, b, lr: torch.einsum("ip,jp->ji", a, b) * lr),
    (check_lds, tda.lds), (check_lds, own_lds)],
    ids=["grad", "grad-own", "grad-loop", "tracin", "tracin-einsum", "lds", "lds-own"])
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
