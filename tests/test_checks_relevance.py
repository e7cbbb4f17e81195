"""check_attention_relevance (chapter 09): accepts the reference, reports a stub, and names each typical mistake."""
import itertools

import numpy as np
import pytest
import torch

from xaicourse import relevance
from xaicourse.checks import CheckFailed
from xaicourse.checks.relevance import _MISTAKES, check_attention_relevance, gradient_case, relevance_with


def _wrong(**mistake):
    def fn(attentions, gradients):
        return relevance_with(attentions, gradients, **mistake)

    return fn


def _by_hand(attentions, gradients):
    R = torch.eye(attentions.shape[-1], dtype=attentions.dtype)
    for A, G in zip(attentions, gradients):
        R = R + (G * A).clamp(min=0).mean(dim=0) @ R
    return R


def test_accepts_the_reference_a_loop_by_hand_and_other_dtypes(capsys):
    assert check_attention_relevance(lambda a, g: relevance.gradient_rollout(a, g)) is True
    assert check_attention_relevance(_by_hand) is True
    assert check_attention_relevance(_wrong()) is True
    assert check_attention_relevance(lambda a, g: _by_hand(a.double(), g.double())) is True
    assert "[passed] check_attention_relevance" in capsys.readouterr().out


def test_reports_a_stub_as_not_implemented(capsys):
    def stub(attentions, gradients):
        raise NotImplementedError

    assert check_attention_relevance(stub) is False
    assert "[not implemented yet]" in capsys.readouterr().out


@pytest.mark.parametrize("mistake, hint", [
    (dict(relu="none"), "negative part is kept"),
    (dict(relu="after"), "clamp after averaging"),
    (dict(heads="sum"), "summed, not averaged"),
    (dict(heads="max"), "with max"),
    (dict(heads="layers"), "over the layers axis"),
    (dict(identity="none"), "identity is missing"),
    (dict(order="right"), "order is reversed"),
    (dict(layers="reversed"), "order is reversed"),  # (I + W1)(I + W2)(I + W3) either way
    (dict(weight="attention"), "gradient is missing"),
    (dict(weight="gradient"), "attention is missing"),
])
def test_names_each_typical_mistake(mistake, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_attention_relevance(_wrong(**mistake))


def test_the_fixed_case_tells_the_mistakes_apart():
    attentions, gradients = gradient_case()
    answers = [relevance.gradient_rollout(attentions, gradients)]
    answers += [relevance_with(attentions, gradients, **kw) for kw in _MISTAKES.values()]
    for a, b in itertools.combinations(answers, 2):
        assert not torch.allclose(a, b, atol=1e-3)
    torch.testing.assert_close(relevance_with(attentions, gradients, layers="reversed"),
                               relevance_with(attentions, gradients, order="right"))


def test_other_failures_get_shape_zero_in_place_and_none_hints():
    with pytest.raises(CheckFailed, match=r"\(5, 5\)"):
        check_attention_relevance(lambda a, g: relevance.gradient_rollout(a, g)[0])
    with pytest.raises(CheckFailed, match="all zeros"):
        check_attention_relevance(lambda a, g: torch.zeros(5, 5))
    with pytest.raises(CheckFailed, match="changed the attentions"):
        check_attention_relevance(lambda a, g: _by_hand(a, g.clamp_(min=0)))
    with pytest.raises(CheckFailed, match="returned None"):
        check_attention_relevance(lambda a, g: None)
    with pytest.raises(CheckFailed, match="numpy"):
        check_attention_relevance(lambda a, g: np.eye(5))
    with pytest.raises(CheckFailed, match="below 1"):
        check_attention_relevance(lambda a, g: _by_hand(a, g) - 2 * torch.eye(5))
    with pytest.raises(CheckFailed, match="differs from the reference"):
        check_attention_relevance(lambda a, g: _by_hand(a, g) * 1.1)
