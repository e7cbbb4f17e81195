import pytest
import torch

from xaicourse.targets import resolve_targets, select

LOGITS = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 1.0]])


def test_none_is_argmax():
    assert resolve_targets(None, LOGITS).tolist() == [1, 0]


@pytest.mark.parametrize("target, expected", [(2, [2, 2]), ([0, 2], [0, 2]), (torch.tensor([2, 1]), [2, 1]), (torch.tensor(1), [1, 1])])
def test_int_and_per_sample(target, expected):
    assert resolve_targets(target, LOGITS).tolist() == expected


def test_select_scores():
    assert select(LOGITS, torch.tensor([1, 2])).tolist() == [2.0, 1.0]


@pytest.mark.parametrize("target, error, match", [
    (3, ValueError, r"0\.\.2"), (-1, ValueError, "out of range"), ([0, 5], ValueError, "5 is out of range"),
    ([0], ValueError, "one target per sample"), ([0.5, 1.0], TypeError, "integer"), ("cat", TypeError, "int"),
    (True, TypeError, "bool"),
])
def test_bad_targets(target, error, match):
    with pytest.raises(error, match=match):
        resolve_targets(target, LOGITS)
