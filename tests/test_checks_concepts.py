"""Chapter 11's checks: each accepts the reference, reports the stub, and names typical mistakes."""
import pytest
import torch

from xaicourse import probes, sae
from xaicourse.checks import check_control_labels, check_decoder_norm, check_sae_loss, check_tcav_score
from xaicourse.checks.core import CheckFailed


def stub(*_args):
    raise NotImplementedError


def _own_control_labels(types, n_classes, seed):
    _, index = torch.unique(types, dim=0, return_inverse=True)
    g = torch.Generator().manual_seed(seed)
    return torch.randint(n_classes, (int(index.max()) + 1,), generator=g)[index]


def my_sae_loss(x, x_hat, f, l1):
    return ((x - x_hat) ** 2).sum(dim=1).mean() + l1 * f.abs().sum(dim=1).mean()


@pytest.mark.parametrize("check, reference", [
    (check_sae_loss, sae.sae_loss), (check_sae_loss, my_sae_loss),
    (check_decoder_norm, lambda W: W / W.norm(dim=0, keepdim=True)),
    (check_decoder_norm, lambda W: torch.nn.functional.normalize(W, dim=0)),
    (check_tcav_score, lambda g, v: float(((g @ v) > 0).float().mean())),
    (check_tcav_score, lambda g, v: ((g * v).sum(1) > 0).double().mean()),          # a tensor with one value
    (check_control_labels, lambda types, n, seed: probes.control_labels(types, n, seed=seed)),
    (check_control_labels, _own_control_labels)],
    ids=["loss", "loss-own", "norm", "norm-F", "tcav", "tcav-tensor", "control", "control-own"])
def test_reference_passes_and_stub_is_reported(check, reference, capsys):
    assert check(reference) is True
    assert "[passed]" in capsys.readouterr().out
    assert check(stub) is False
    assert "not implemented yet" in capsys.readouterr().out


def _recon(x, x_hat):
    return ((x - x_hat) ** 2).sum(-1).mean()


def _inplace(x, x_hat, f, l1):
    f.abs_()
    return sae.sae_loss(x, x_hat, f.mul_(1.0).add_(0.0), l1) if False else sae.sae_loss(x.sub_(0.0), x_hat, f, l1)


@pytest.mark.parametrize("wrong, hint", [
    (lambda x, xh, f, l1: _recon(x, xh), "left out the sparsity term"),
    (lambda x, xh, f, l1: _recon(x, xh) + l1 * xh.abs().sum(-1).mean(), "L1 term is on x_hat"),
    (lambda x, xh, f, l1: _recon(x, xh) + l1 * (f ** 2).sum(-1).mean(), "an L2 penalty"),
    (lambda x, xh, f, l1: ((x - xh) ** 2).mean() + l1 * f.abs().sum(-1).mean(), "averaged over the d input dimensions"),
    (lambda x, xh, f, l1: ((x - xh) ** 2).mean() + l1 * f.abs().mean(), "averaged over every element"),
    (lambda x, xh, f, l1: _recon(x, xh) + l1 * f.abs().sum(), "L1 term is summed over the batch"),
    (lambda x, xh, f, l1: ((x - xh) ** 2).sum() + l1 * f.abs().sum(), "summed over the batch instead of averaging"),
    (lambda x, xh, f, l1: ((x - xh) ** 2).sum(-1).sqrt().mean() + l1 * f.abs().sum(-1).mean(), "not squared"),
    (lambda x, xh, f, l1: l1 * _recon(x, xh) + f.abs().sum(-1).mean(), "l1 multiplies the reconstruction"),
    (lambda x, xh, f, l1: ((x - xh) ** 2).sum(-1) + l1 * f.abs().sum(-1), "one loss per example"),
    (lambda x, xh, f, l1: sae.sae_loss(x, xh, f, l1).item(), "without .item"),
    (lambda x, xh, f, l1: sae.sae_loss(x, xh.detach(), f, l1), "no gradient"),
    (lambda x, xh, f, l1: sae.sae_loss(x, xh, f.detach(), l1), "reaches the encoder through f"),
    (lambda x, xh, f, l1: sae.sae_loss(x, xh, f.mul_(2.0), l1), "in-place"),
    (lambda x, xh, f, l1: None, "returned None"),
    (lambda x, xh, f, l1: torch.tensor(1.0), "the reference"),
], ids=["no-l1", "l1-on-x_hat", "l2", "feature-mean", "all-mean", "l1-batch-sum", "batch-sum", "sqrt", "swapped",
        "per-example", "item", "detached", "f-detached", "in-place", "none", "other"])
def test_sae_loss_mistakes_are_named(wrong, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_sae_loss(wrong)


@pytest.mark.parametrize("wrong, hint", [
    (lambda W: W / W.norm(dim=1, keepdim=True), "normalised the rows"),
    (lambda W: W / W.norm(), "norm of the whole matrix"),
    (lambda W: W / (W ** 2).sum(0, keepdim=True), "squared norm"),
    (lambda W: W / W.abs().sum(0, keepdim=True), "L1 norm"),
    (lambda W: W.div_(W.norm(dim=0, keepdim=True)), "in place"),
    (lambda W: W.norm(dim=0), "expected shape"),
])
def test_decoder_norm_mistakes_are_named(wrong, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_decoder_norm(wrong)


def test_a_float64_loss_passes_and_a_numpy_number_gets_a_hint():
    assert check_sae_loss(lambda *args: sae.sae_loss(*args).double()) is True
    with pytest.raises(CheckFailed, match="as a tensor"):
        check_sae_loss(lambda *args: sae.sae_loss(*args).detach().numpy())


@pytest.mark.parametrize("wrong, hint", [
    (lambda g, v: float(((g @ v) >= 0).float().mean()), "counted derivatives >= 0"),
    (lambda g, v: float((g @ v).mean()), "mean directional derivative"),
    (lambda g, v: float(((g @ v).abs() > 0).float().mean()), "absolute values"),
    (lambda g, v: float(((g @ v) < 0).float().mean()), "counted the negative"),
    (lambda g, v: int(((g @ v) > 0).sum()), "a count, not a share"),
    (lambda g, v: float(torch.sign(g @ v).mean()), "averaged the signs"),
    (lambda g, v: float((g > 0).float().mean()), "positive entries of the gradients"),
    (lambda g, v: (g @ v) > 0, "one number"),
    (lambda g, v: None, "returned None"),
    (lambda g, v: 0.123, "the reference"),
])
def test_tcav_score_mistakes_are_named(wrong, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_tcav_score(wrong)


def _fresh_seed_each_call():
    calls = iter(range(1000))
    return lambda types, n, seed: _own_control_labels(types, n, seed + next(calls))


def _per_input(types, n, seed):
    return torch.randint(n, (len(types),), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("wrong, hint", [
    (_per_input, "drew a label per input"),
    (lambda types, n, seed: torch.zeros(len(types), dtype=torch.long), "every type got the same label"),
    (lambda types, n, seed: _own_control_labels(types, n, 0), "seed 1 gave the same labels"),
    (lambda types, n, seed: _own_control_labels(types, n, seed).float(), "integer labels"),
    (lambda types, n, seed: _own_control_labels(types, n + 1, seed) + 1, r"in \[0, n_classes\)"),
    (lambda types, n, seed: _own_control_labels(types, n, seed)[:10], "one label per input"),
    (lambda types, n, seed: types[:, 0] % 3, "simple function of the first attribute"),
    (lambda types, n, seed: types.tolist(), "as a tensor"),
    (lambda types, n, seed: _own_control_labels(types.add_(0), n, seed) if types.mul_(1) is None else types.zero_()[:, 0],
     "changed types in place"),
    (_fresh_seed_each_call(), "same seed gave different"),
    (lambda types, n, seed: torch.manual_seed(seed) and torch.randint(n, (len(types),))[
        torch.unique(types, dim=0, return_inverse=True)[1]], "global random generator"),
    (lambda types, n, seed: (types.sum(1) + seed) % n, "function of a \\+ b"),
    (lambda types, n, seed: torch.randint(n, (20,), generator=torch.Generator().manual_seed(seed))[types.sum(1)],
     "function of a \\+ b"),
    (lambda types, n, seed: torch.randint(n, (100,), generator=torch.Generator().manual_seed(seed))[types[:, 1]],
     "depend only on column 1"),
    (lambda types, n, seed: _own_control_labels(types, n - 1, seed), "use only"),
    (lambda types, n, seed: (torch.unique(types, dim=0, return_inverse=True)[1] + seed) % n, "a function of"),
])
def test_control_labels_mistakes_are_named(wrong, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_control_labels(wrong)
