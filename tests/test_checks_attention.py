"""check_attention_rollout: accepts the reference, reports a stub, and names each typical mistake."""
import pytest
import torch

from xaicourse import attention, testing
from xaicourse.checks import CheckFailed, check_attention_rollout
from xaicourse.checks.attention import rollout_with


def _wrong(**mistake):
    def rollout(attentions, head_fusion="mean"):
        return rollout_with(attentions, head_fusion, **mistake)

    return rollout


def test_accepts_the_reference_and_a_loop_written_by_hand(capsys):
    assert check_attention_rollout(attention.rollout) is True
    assert check_attention_rollout(_wrong()) is True  # the hand-written correct variant
    assert "[passed] check_attention_rollout" in capsys.readouterr().out


def test_reports_a_stub_as_not_implemented(capsys):
    def stub(attentions, head_fusion="mean"):
        raise NotImplementedError

    assert check_attention_rollout(stub) is False
    assert "[not implemented yet]" in capsys.readouterr().out


@pytest.mark.parametrize("mistake, hint", [
    (dict(residual="none"), "residual connection is missing"),
    (dict(residual="plus", renormalise=False), "without halving"),
    (dict(renormalise=False), "not re-normalised"),
    (dict(last_on_left=False), "order is reversed"),
    (dict(heads_dim=0), "wrong axis"),
])
def test_names_each_typical_mistake(mistake, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_attention_rollout(_wrong(**mistake))


def test_the_fixed_case_tells_the_mistakes_apart():
    attentions = testing.attention_case()
    variants = [dict(residual="none"), dict(residual="plus", renormalise=False), dict(last_on_left=False), dict(heads_dim=0)]
    for fusion in ("mean", "max"):
        right = attention.rollout(attentions, head_fusion=fusion)
        for mistake in variants:
            assert not torch.allclose(rollout_with(attentions, fusion, **mistake), right, atol=1e-3)
    # without re-normalisation only max (or min) fusion goes wrong: the check uses both
    wrong_max = rollout_with(attentions, "max", renormalise=False)
    assert not torch.allclose(wrong_max, attention.rollout(attentions, head_fusion="max"), atol=1e-3)


def test_other_failures_get_shape_row_sum_and_in_place_hints():
    with pytest.raises(CheckFailed, match=r"\(5, 5\)"):
        check_attention_rollout(lambda a, head_fusion="mean": a.mean(1))
    with pytest.raises(CheckFailed, match="changed the attentions"):
        check_attention_rollout(lambda a, head_fusion="mean": attention.rollout(a.mul_(1.0).add_(0.1), head_fusion))
    with pytest.raises(CheckFailed, match="sum to"):
        check_attention_rollout(lambda a, head_fusion="mean": 2 * attention.rollout(a, head_fusion))
    with pytest.raises(CheckFailed, match="differs from the reference"):
        check_attention_rollout(lambda a, head_fusion="mean": attention.rollout(a, head_fusion).softmax(-1))
