"""check_vanilla_gradient: accepts the reference, reports the stub, names typical mistakes."""
import pytest
import torch

from xaicourse import saliency
from xaicourse.checks import CheckFailed, check_vanilla_gradient
from xaicourse.targets import resolve_targets, select


def make_gradient(*, score="logit", targets="given", reduce="sum", post=None, backward=False, on_caller=False,
                  freeze=False, hook=False):
    """A vanilla gradient with one ingredient swapped for a typical mistake."""
    def vanilla_gradient(model, x, target=None):
        if on_caller:
            x.requires_grad_(True)
        else:
            x = x.detach().clone().requires_grad_(True)
        if freeze:
            for p in model.parameters():
                p.requires_grad_(False)
        if hook:
            model[0].register_forward_hook(lambda *args: None)
        logits = model(x)
        chosen = resolve_targets(target, logits)
        if targets == "argmax":
            chosen = logits.argmax(1)
        elif targets == "first":
            chosen = chosen[:1].expand(len(x))
        out = {"logit": logits, "softmax": logits.softmax(1), "log_softmax": logits.log_softmax(1)}[score]
        selected = select(out, chosen)
        total = selected.sum() if reduce == "sum" else selected.mean()
        if backward:
            total.backward()
            gradient = x.grad
        else:
            (gradient,) = torch.autograd.grad(total, x)
        return post(gradient) if post else gradient
    return vanilla_gradient


def test_reference_passes(capsys):
    assert check_vanilla_gradient(saliency.vanilla_gradient) is True
    assert "[passed] check_vanilla_gradient" in capsys.readouterr().out


def test_a_correct_learner_version_passes(capsys):
    assert check_vanilla_gradient(make_gradient()) is True


def test_stub_is_not_implemented_yet(capsys):
    def vanilla_gradient(model, x, target=None):
        raise NotImplementedError("Your turn: replace this line with your solution")

    assert check_vanilla_gradient(vanilla_gradient) is False
    assert "not implemented yet" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (make_gradient(post=torch.abs), "absolute value"),
    (make_gradient(score="softmax"), "softmax probability"),
    (make_gradient(score="log_softmax"), "log-probability"),
    (make_gradient(targets="argmax"), "ignoring target"),
    (make_gradient(targets="first"), "sample 0's target"),
    (make_gradient(reduce="mean"), r"\.mean\(\)"),
    (make_gradient(post=lambda g: g.sum(0, keepdim=True)), "one gradient per input value"),
    (make_gradient(post=lambda g: g.abs().amax(1)), "keep the batch and the channels"),
    (make_gradient(backward=True), r"carry \.grad"),
    (make_gradient(on_caller=True, backward=True), "changed the caller's x"),
    (make_gradient(freeze=True), "no longer require grad"),
    (make_gradient(hook=True), "hook"),
])
def test_typical_mistakes_are_named(wrong, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_vanilla_gradient(wrong)


def test_gradients_accumulated_across_calls_are_caught():
    cache = {}

    def vanilla_gradient(model, x, target=None):  # reuses one leaf tensor: .grad piles up
        leaf = cache.setdefault(id(x), x.detach().clone().requires_grad_(True))
        logits = model(leaf)
        select(logits, resolve_targets(target, logits)).sum().backward(inputs=[leaf])
        return leaf.grad.clone()

    with pytest.raises(CheckFailed, match="second call"):
        check_vanilla_gradient(vanilla_gradient)
