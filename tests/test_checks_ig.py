"""check_integrated_gradients: accepts a correct trapezoid IG, reports the stub, names typical mistakes."""
import pytest
import torch

from xaicourse.checks import CheckFailed, check_integrated_gradients


def _shaped(x, values):
    return values.view(-1, *[1] * (x.ndim - 1))


def make_ig(*, alphas=None, weights=None, factor="diff", probability=False, backward=False):
    """A trapezoid IG with one ingredient swapped for a typical mistake."""
    def ig_trapezoid(model, x, target, baseline, n_steps):
        a = torch.linspace(0, 1, n_steps, dtype=x.dtype) if alphas is None else alphas(n_steps).to(x.dtype)
        w = torch.full((n_steps,), 1.0 / (n_steps - 1), dtype=x.dtype)
        w[0] = w[-1] = 0.5 / (n_steps - 1)
        w = w if weights is None else weights(n_steps).to(x.dtype)
        path = (baseline + _shaped(x, a) * (x - baseline)).requires_grad_(True)
        out = model(path)
        score = (out.softmax(-1) if probability else out)[:, target].sum()
        if backward:
            score.backward()
            grads = path.grad
        else:
            (grads,) = torch.autograd.grad(score, path)
        avg = (_shaped(x, w) * grads).sum(0, keepdim=True)
        return {"diff": x - baseline, "none": 1.0, "x": x, "flipped": baseline - x}[factor] * avg
    return ig_trapezoid


def test_reference_passes(capsys):
    assert check_integrated_gradients(make_ig()) is True
    assert "[passed]" in capsys.readouterr().out


def test_stub_is_not_implemented_yet(capsys):
    def ig_trapezoid(model, x, target, baseline, n_steps):
        raise NotImplementedError

    assert check_integrated_gradients(ig_trapezoid) is False
    assert "not implemented yet" in capsys.readouterr().out


MISTAKES = {
    "missing (x - x') factor": (make_ig(factor="none"), "multiplied by \\(x - baseline\\)"),
    "multiplied by x": (make_ig(factor="x"), "you multiplied by x"),
    "path in the wrong direction": (make_ig(factor="flipped"), "wrong sign"),
    "Captum's 1/n trapezoid weights": (make_ig(weights=lambda n: torch.tensor([0.5] + [1.0] * (n - 2) + [0.5]) / n), "\\(n-1\\)/n"),
    "plain mean of the gradients": (make_ig(weights=lambda n: torch.full((n,), 1.0 / n)), "plain mean"),
    "left Riemann nodes": (make_ig(alphas=lambda n: torch.arange(n) / n, weights=lambda n: torch.full((n,), 1.0 / n)), "left Riemann"),
    "right Riemann nodes": (make_ig(alphas=lambda n: torch.arange(1, n + 1) / n, weights=lambda n: torch.full((n,), 1.0 / n)), "right Riemann"),
    "softmax instead of the logit": (make_ig(probability=True), "IG of the model.s probabilities: explain the logit"),
    "score.backward() fills parameter grads": (make_ig(backward=True), "carry .grad"),
    "summed over features": (lambda *a: make_ig()(*a).sum(1, keepdim=True), "one attribution per input feature"),
    "middle Riemann (unnamed rule)": (make_ig(alphas=lambda n: (torch.arange(n) + 0.5) / n, weights=lambda n: torch.full((n,), 1.0 / n)),
                                      "check the nodes"),
}


@pytest.mark.parametrize("name", MISTAKES)
def test_mistakes_are_named(name):
    wrong, hint = MISTAKES[name]
    with pytest.raises(CheckFailed, match=hint):
        check_integrated_gradients(wrong)
