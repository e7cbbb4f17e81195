"""Chapter 08's checks: each accepts the reference, reports the stub, and names typical mistakes."""
import math

import pytest
import torch

from xaicourse.checks.beyond import check_lrp_epsilon, check_rescale_multiplier, check_shapley_kernel_weight
from xaicourse.checks.core import CheckFailed
from xaicourse.deeplift import rescale_multiplier
from xaicourse.lrp import lrp_epsilon
from xaicourse.shapley import shapley_kernel_weight


def stub(*_args):
    raise NotImplementedError


@pytest.mark.parametrize("check, reference", [
    (check_shapley_kernel_weight, shapley_kernel_weight),
    (check_shapley_kernel_weight, lambda m, s: torch.tensor((m - 1) / (math.comb(m, s) * s * (m - s)))),
    (check_rescale_multiplier, rescale_multiplier),
    (check_lrp_epsilon, lambda layer, a, r, eps: lrp_epsilon(layer, a, r, epsilon=eps)),
], ids=["kernel", "kernel-as-tensor", "rescale", "lrp-epsilon"])
def test_reference_passes_and_stub_is_reported(check, reference, capsys):
    assert check(reference) is True
    assert "[passed]" in capsys.readouterr().out
    assert check(stub) is False
    assert "not implemented yet" in capsys.readouterr().out


KERNEL_MISTAKES = {
    "no binomial": (lambda m, s: (m - 1) / (s * (m - s)), "left out the binomial"),
    "Shapley order weight": (lambda m, s: math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m),
                             "weight s! \\(M - s - 1\\)! / M! of the Shapley formula"),
    "inverted": (lambda m, s: math.comb(m, s) * s * (m - s) / (m - 1), "inverted"),
    "numerator M": (lambda m, s: m / (math.comb(m, s) * s * (m - s)), "numerator is M - 1"),
    "off by one": (lambda m, s: (m - 1) / (math.comb(m, s) * s * (m - s + 1)), "off by one"),
    "normalised": (lambda m, s: 2 * (m - 1) / (math.comb(m, s) * s * (m - s)), "proportional"),
    "returns None": (lambda m, s: None, "returned None"),
    "returns a list": (lambda m, s: [1.0], "one number"),
    "unknown": (lambda m, s: 0.1 * s, "for M = 4, s = 1 that is 0.25"),
}


@pytest.mark.parametrize("name", KERNEL_MISTAKES)
def test_kernel_mistakes_are_named(name):
    wrong, hint = KERNEL_MISTAKES[name]
    with pytest.raises(CheckFailed, match=hint):
        check_shapley_kernel_weight(wrong)


def _secant(f, x, x0):
    return (f(x) - f(x0)) / (x - x0)


def _grad(f, x):
    leaf = x.clone().requires_grad_(True)
    return torch.autograd.grad(f(leaf).sum(), leaf)[0]


RESCALE_MISTAKES = {
    "0/0 at x == x0": (_secant, "NaN"),
    "the gradient": (lambda f, x, x0: _grad(f, x), "returned the gradient f'\\(x\\)"),
    "gradient at the reference": (lambda f, x, x0: _grad(f, x0), "gradient at the reference"),
    "ratio to zero": (lambda f, x, x0: f(x) / x, "divided f\\(x\\) by x"),
    "flipped sign": (lambda f, x, x0: -rescale_multiplier(f, x, x0), "sign is flipped"),
    "zero where equal": (lambda f, x, x0: torch.nan_to_num(_secant(f, x, x0), nan=0.0), "returned 0"),
    "the mean slope where equal": (lambda f, x, x0: torch.nan_to_num(_secant(f, x, x0), nan=0.3), "not at x == x0"),
    "in place": (lambda f, x, x0: (rescale_multiplier(f, x.clone(), x0), x.add_(1.0))[0], "in place"),
    "one number": (lambda f, x, x0: rescale_multiplier(f, x, x0).mean(), "expected shape"),
}


@pytest.mark.parametrize("name", RESCALE_MISTAKES)
def test_rescale_mistakes_are_named(name):
    wrong, hint = RESCALE_MISTAKES[name]
    with pytest.raises(CheckFailed, match=hint):
        check_rescale_multiplier(wrong)


def _lrp(layer, a, r, eps, *, times_a=True, signed=True, bias=True, divide=True, absolute=False, torch_sign=False,
         abs_times=False, abs_everywhere=False):
    w, b = layer.weight.detach(), layer.bias.detach()
    if abs_everywhere:
        a = a.abs()
    z = a @ w.T + (b if bias else 0)
    if absolute:
        denom = z.abs() + eps
    elif torch_sign:
        denom = z + eps * torch.sign(z)
    else:
        denom = z + eps * (torch.where(z >= 0, 1.0, -1.0) if signed else 1.0)
    s = r / denom if divide else r
    return (a.abs() if abs_times else a if times_a else 1.0) * (s @ w)


LRP_MISTAKES = {
    "not times a": (lambda l, a, r, e: _lrp(l, a, r, e, times_a=False), "did not multiply by the activations"),
    "unsigned eps": (lambda l, a, r, e: _lrp(l, a, r, e, signed=False), "eps must carry the sign"),
    "LRP-0": (lambda l, a, r, e: _lrp(l, a, r, 0.0), "left out epsilon"),
    "no bias in z": (lambda l, a, r, e: _lrp(l, a, r, e, bias=False), "include the bias"),
    "no division": (lambda l, a, r, e: _lrp(l, a, r, e, divide=False), "did not divide by z"),
    "absolute z": (lambda l, a, r, e: _lrp(l, a, r, e, absolute=True), "\\|z\\| \\+ eps"),
    "torch.sign(z)": (lambda l, a, r, e: _lrp(l, a, r, e, torch_sign=True), "torch.sign\\(z\\) is 0 where z = 0"),
    "z.sign()": (lambda l, a, r, e: (lambda z: a * ((r / (z + e * z.sign())) @ l.weight.detach()))(l(a).detach()),
                 "sign\\(0\\) = \\+1"),
    "times |a|": (lambda l, a, r, e: _lrp(l, a, r, e, abs_times=True), "multiplied by \\|a\\| \\(a.abs\\(\\)\\)"),
    "|a| everywhere": (lambda l, a, r, e: _lrp(l, a, r, e, abs_everywhere=True), "used \\|a\\| \\(a.abs\\(\\)\\)"),
    "backward leaves .grad": (lambda l, a, r, e: (l(a).sum().backward(), _lrp(l, a, r, e))[1], "carry .grad"),
    "summed over inputs": (lambda l, a, r, e: _lrp(l, a, r, e).sum(1), "one relevance per input"),
    "unknown": (lambda l, a, r, e: _lrp(l, a, r, e) * 1.1, "check the transpose"),
}


@pytest.mark.parametrize("name", LRP_MISTAKES)
def test_lrp_mistakes_are_named(name):
    wrong, hint = LRP_MISTAKES[name]
    with pytest.raises(CheckFailed, match=hint):
        check_lrp_epsilon(wrong)


def test_lrp_cases_can_tell_sign_and_abs_apart():
    """The grader's cases hold an output with z exactly 0 and inputs below 0: without them torch.sign(z) and
    a.abs() would give the reference's numbers (the first case alone has neither)."""
    from xaicourse.checks.beyond import _epsilon_cases

    (_, hidden, a, r), (_, first, x, r_first) = _epsilon_cases()
    assert (a >= 0).all() and (hidden(a) != 0).all()
    reference = lrp_epsilon(hidden, a, r, epsilon=0.5)
    for wrong in (dict(torch_sign=True), dict(abs_times=True), dict(abs_everywhere=True)):
        torch.testing.assert_close(_lrp(hidden, a, r, 0.5, **wrong), reference)  # the hidden case cannot tell
    z = first(x).detach()
    assert (z == 0).sum() == 1 and (x < 0).any()
    reference = lrp_epsilon(first, x, r_first, epsilon=0.5)
    assert torch.isfinite(reference).all()
    assert not torch.isfinite(_lrp(first, x, r_first, 0.5, torch_sign=True)).all()
    for wrong in (dict(abs_times=True), dict(abs_everywhere=True)):
        assert not torch.allclose(_lrp(first, x, r_first, 0.5, **wrong), reference)
