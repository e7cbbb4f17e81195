"""check_misclassification_stats (chapter 05, exercise 5): the reference passes, the stub is reported,
typical mistakes are rejected with a hint that names them."""
import pytest
import torch

from xaicourse import cam, checks, interpret


def stub(model, target_layer, x, true_class):
    raise NotImplementedError


def zero_based_rank(model, target_layer, x, true_class):
    stats = interpret.misclassification_stats(model, target_layer, x, true_class)
    return {**stats, "true_rank": stats["true_rank"] - 1}


def logits_not_probabilities(model, target_layer, x, true_class):
    stats = interpret.misclassification_stats(model, target_layer, x, true_class)
    with torch.no_grad():
        logits = model(x)[0]
    return {**stats, "true_probability": float(logits[true_class]),
            "predicted_probability": float(logits[stats["predicted"]])}


def predicted_map_twice(model, target_layer, x, true_class):
    stats = interpret.misclassification_stats(model, target_layer, x, true_class)
    heat = cam.grad_cam(model, target_layer, x, stats["predicted"])[0]
    return {**stats, "cam_overlap": interpret.map_overlap(heat, heat)}


def overlap_without_top_region(model, target_layer, x, true_class):
    stats = interpret.misclassification_stats(model, target_layer, x, true_class)
    maps = cam.grad_cam(model, target_layer, x.expand(2, -1, -1, -1), [stats["predicted"], true_class])
    a, b = maps[0] > 0, maps[1] > 0  # every positive pixel instead of the top 20 %
    return {**stats, "cam_overlap": float((a & b).sum() / (a | b).sum())}


def leaves_a_hook(model, target_layer, x, true_class):
    target_layer.register_forward_hook(lambda *args: None)
    return interpret.misclassification_stats(model, target_layer, x, true_class)


def missing_key(model, target_layer, x, true_class):
    stats = interpret.misclassification_stats(model, target_layer, x, true_class)
    return {k: v for k, v in dict(stats).items() if k != "cam_overlap"}


def test_reference_passes(capsys):
    assert checks.check_misclassification_stats(interpret.misclassification_stats) is True
    assert "[passed]" in capsys.readouterr().out


def test_stub_is_not_implemented_yet(capsys):
    assert checks.check_misclassification_stats(stub) is False
    assert "not implemented yet" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (zero_based_rank, "ranks start at 1"),
    (logits_not_probabilities, "softmax"),
    (predicted_map_twice, "with itself"),
    (overlap_without_top_region, "top 20%"),
    (leaves_a_hook, "hook"),
    (missing_key, "missing the key"),
])
def test_typical_mistakes_are_named(wrong, hint):
    with pytest.raises(checks.CheckFailed, match=hint):
        checks.check_misclassification_stats(wrong)

