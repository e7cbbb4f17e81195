"""check_deletion_auc (chapter 07): accepts the reference, reports the stub, names typical mistakes."""
import numpy as np
import pytest
import torch

from xaicourse import checks


def stub(model, x, saliency, target, n_steps):
    raise NotImplementedError("Your turn: replace this line with your solution")


def deletion_curve(model, x, saliency, target, n_steps, descending=True, channels=slice(None), score="prob"):
    """The deletion scores of the exercise, with switches for the mistakes."""
    order = saliency.flatten().argsort(descending=descending)
    scores = []
    for k in range(n_steps + 1):
        image = x.clone().flatten(2)
        image[:, channels, order[: k * order.numel() // n_steps]] = 0.0
        with torch.no_grad():
            logits = model(image.view_as(x))
        probs = logits.softmax(dim=-1)
        t = probs.argmax().item() if target == "argmax" else target
        scores.append((logits if score == "logit" else probs)[0, t].item())
    return scores


def reference(model, x, saliency, target, n_steps):  # the notebook's solution
    return float(np.trapezoid(deletion_curve(model, x, saliency, target, n_steps), dx=1 / n_steps))


def least_important_first(model, x, saliency, target, n_steps):
    return float(np.trapezoid(deletion_curve(model, x, saliency, target, n_steps, descending=False), dx=1 / n_steps))


def x_axis_in_steps(model, x, saliency, target, n_steps):
    return float(np.trapezoid(deletion_curve(model, x, saliency, target, n_steps)))


def predicted_class(model, x, saliency, target, n_steps):
    return float(np.trapezoid(deletion_curve(model, x, saliency, "argmax", n_steps), dx=1 / n_steps))


def class_zero(model, x, saliency, target, n_steps):
    return reference(model, x, saliency, 1 if target == 0 else 0, n_steps)


def no_starting_point(model, x, saliency, target, n_steps):
    return float(np.trapezoid(deletion_curve(model, x, saliency, target, n_steps)[1:], dx=1 / n_steps))


def logits(model, x, saliency, target, n_steps):
    return float(np.trapezoid(deletion_curve(model, x, saliency, target, n_steps, score="logit"), dx=1 / n_steps))


def one_channel(model, x, saliency, target, n_steps):
    return float(np.trapezoid(deletion_curve(model, x, saliency, target, n_steps, channels=0), dx=1 / n_steps))


def mean_score(model, x, saliency, target, n_steps):
    return float(np.mean(deletion_curve(model, x, saliency, target, n_steps)))


def in_place(model, x, saliency, target, n_steps):
    order = saliency.flatten().argsort(descending=True)
    scores = []
    for k in range(n_steps + 1):
        x.view(*x.shape[:2], -1)[:, :, order[: k * order.numel() // n_steps]] = 0.0
        with torch.no_grad():
            scores.append(model(x).softmax(-1)[0, target].item())
    return float(np.trapezoid(scores, dx=1 / n_steps))


def test_reference_passes(capsys):
    assert checks.check_deletion_auc(reference) is True
    assert "[passed] check_deletion_auc" in capsys.readouterr().out


def test_tensor_result_is_accepted():
    assert checks.check_deletion_auc(lambda *a: torch.tensor(reference(*a))) is True


def test_stub_is_not_implemented_yet(capsys):
    assert checks.check_deletion_auc(stub) is False
    assert "not implemented yet" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, phrase", [
    (least_important_first, "LEAST important pixels first"),
    (x_axis_in_steps, "FRACTION of pixels"),
    (predicted_class, "predicted class of each perturbed image"),
    (class_zero, "not the target"),
    (no_starting_point, "include the unperturbed image"),
    (logits, "softmax"),
    (one_channel, "every channel"),
    (mean_score, "trapezoidal rule"),
    (in_place, "in place"),
])
def test_wrong_answers_are_named(wrong, phrase):
    with pytest.raises(checks.CheckFailed, match=phrase):
        checks.check_deletion_auc(wrong)



# ------------------------------------------------------------------ check_max_sensitivity (chapter 07)
def norms(t):
    return t.flatten(1).norm(dim=1)


def sensitivity(explain, x, noise, combine="max", denominator="clean", numerator="difference", power=1):
    a = explain(x)
    ratios = []
    for d in noise:
        b = explain(x + d)
        top = norms(b - a) if numerator == "difference" else (norms(b) - norms(a)).abs()
        bottom = {"clean": norms(a), "noise": norms(d), "noisy": norms(b), "none": torch.ones(len(x))}[denominator]
        ratios.append((top / bottom) ** power)
    ratios = torch.stack(ratios)
    return ratios.amax(0) if combine == "max" else ratios.mean(0)


def ms_reference(explain, x, noise):  # the notebook's solution
    return sensitivity(explain, x, noise)


def ms_stub(explain, x, noise):
    raise NotImplementedError("Your turn")


def ms_whole_batch(explain, x, noise):
    a = explain(x)
    return max((explain(x + d) - a).norm() / a.norm() for d in noise)


def ms_in_place(explain, x, noise):
    a = explain(x).clone()
    out = []
    for d in noise:
        x += d
        out.append(norms(explain(x) - a) / norms(a))
        x -= d
    return torch.stack(out).amax(0)


@pytest.mark.parametrize("wrong, phrase", [
    (lambda e, x, n: sensitivity(e, x, n, combine="mean"), "WORST case"),
    (lambda e, x, n: sensitivity(e, x, n, denominator="none"), r"unnormalised SENS_MAX.*divides it by \|\|a\(x\)\|\|"),
    (lambda e, x, n: sensitivity(e, x, n, denominator="noise"), "Lipschitz"),
    (lambda e, x, n: sensitivity(e, x, n, denominator="noisy"), "noisy attribution"),
    (lambda e, x, n: sensitivity(e, x, n, numerator="sizes"), "norm of the difference"),
    (lambda e, x, n: sensitivity(e, x, n, power=2), "squared norms"),
    (ms_whole_batch, "whole batch"),
    (ms_in_place, "in place"),
])
def test_max_sensitivity_mistakes_are_named(wrong, phrase):
    with pytest.raises(checks.CheckFailed, match=phrase):
        checks.check_max_sensitivity(wrong)


def test_max_sensitivity_reference_passes_and_stub_is_reported(capsys):
    assert checks.check_max_sensitivity(ms_reference) is True
    assert checks.check_max_sensitivity(lambda e, x, n: ms_reference(e, x, n).double()) is True
    assert checks.check_max_sensitivity(ms_stub) is False
    out = capsys.readouterr().out
    assert "[passed] check_max_sensitivity" in out and "not implemented yet" in out


def test_max_sensitivity_rejects_a_none_and_a_scalar():
    with pytest.raises(checks.CheckFailed, match="returned None"):
        checks.check_max_sensitivity(lambda e, x, n: None)
    with pytest.raises(checks.CheckFailed, match="torch.Tensor"):
        checks.check_max_sensitivity(lambda e, x, n: 0.5)


def ms_pixel_maps(explain, x, noise):
    def pixel(t):
        return t.abs().sum(1)
    a = pixel(explain(x))
    return torch.stack([norms(pixel(explain(x + d)) - a) / norms(a) for d in noise]).amax(0)


def test_max_sensitivity_on_pixel_maps_is_named():
    with pytest.raises(checks.CheckFailed, match="pixel maps"):
        checks.check_max_sensitivity(ms_pixel_maps)


def _listed(message, word):
    """The numbers of the list after ``word`` in a failure message, as printed."""
    import re

    return re.search(rf"{word} \[([^\]]*)\]", message).group(1).split(", ")


@pytest.mark.parametrize("scale", [1.0003, 1.0002])
def test_max_sensitivity_failure_prints_the_digits_that_differ(scale):
    """A close wrong answer (0.03 % or 0.02 % off, outside the tolerance) must not read
    "expected [0.827, 0.621], got [0.827, 0.621]": the grader prints the digits where they differ."""
    with pytest.raises(checks.CheckFailed, match="expected") as failure:
        checks.check_max_sensitivity(lambda e, x, n: ms_reference(e, x, n) * scale)
    message = str(failure.value)
    want, got = _listed(message, "expected"), _listed(message, "got")
    assert want != got and len(want) == len(got) == 2
    assert all(len(v.split(".")[1]) >= 4 for v in want)  # three decimals were not enough here
    # the printed numbers are the true ones, rounded
    model, x, targets, noise = checks.metrics._sensitivity_case(0)
    expected = checks.metrics.metrics.max_sensitivity(model, checks.metrics.saliency.vanilla_gradient, x, targets,
                                                      radius=0.3, n_samples=5, seed=0)
    assert [float(v) for v in want] == pytest.approx(expected.tolist(), abs=10 ** -len(want[0].split(".")[1]))


def test_shortcut_failure_prints_the_digits_that_differ():
    from xaicourse.maps import mask_share

    with pytest.raises(checks.CheckFailed, match="expected shares") as failure:
        checks.check_shortcut_detector(lambda a, r: mask_share(a, r) * 1.0004)
    want, got = _listed(str(failure.value), "shares"), _listed(str(failure.value), "got")
    assert want != got


def test_max_sensitivity_reference_is_the_metric_on_a_case_without_zero_maps():
    """The grader's reference, xc.metrics.max_sensitivity, scores NaN for an all-zero map: its cases have none."""
    for seed in (0, 1):
        model, x, targets, _ = checks.metrics._sensitivity_case(seed)
        a = checks.metrics.saliency.vanilla_gradient(model, x, targets)
        assert (a.flatten(1).abs().amax(dim=1) > 0).all()
