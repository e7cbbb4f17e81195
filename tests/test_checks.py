"""The exercise checks of chapters 00 and 06: each accepts the reference, reports an untouched stub as
"not implemented yet" (no traceback), and rejects a catalogue of realistic wrong answers with a hint
that names the mistake. (The chapter authors test their own checks in tests/test_checks_<topic>.py.)"""
import json

import pytest
import torch

from xaicourse import checks
from xaicourse.hooks import record_layer
from xaicourse.targets import resolve_targets, select


def stub(*args, **kwargs):
    raise NotImplementedError("Your turn: replace this line with your solution")


# --------------------------------------------------------------------------------------------
# References (the solutions of the exercise notebook)
# --------------------------------------------------------------------------------------------
def softmax(logits):
    z = logits - logits.max(dim=-1, keepdim=True).values
    return z.exp() / z.exp().sum(dim=-1, keepdim=True)


def native_resolution(model, layer, x):
    with record_layer(model, layer) as rec:
        model(x)
    return tuple(rec.activations.shape[-2:])


def share_in_region(attribution, region):
    positive = attribution.clamp(min=0)
    total = positive.sum((1, 2))
    return torch.where(total > 0, (positive * region).sum((1, 2)) / total.clamp(min=1e-12), torch.zeros(()))


def first_mask_only(attribution, region):
    return share_in_region(attribution, region[0])


def my_smoothgrad(model, x, target=None, n_samples=50, noise_level=0.15, seed=0):
    return smoothgrad_variant(model, x, target, n_samples, noise_level, seed)


def smoothgrad_variant(model, x, target, n_samples, noise_level, seed, *, scale=True, reduce="mean",
                       abs_each=False, generator=True, backward=False, in_place=False, noise=True, fixed_target=None):
    """A learner's SmoothGrad with one switch per typical mistake."""
    g = torch.Generator().manual_seed(seed) if generator else None
    with torch.no_grad():
        targets = resolve_targets(target if fixed_target is None else fixed_target, model(x))
    span = (x.flatten(1).amax(1) - x.flatten(1).amin(1)).view(-1, *[1] * (x.ndim - 1)) if scale else 1.0
    grads = []
    for _ in range(n_samples):
        eps = noise_level * span * torch.randn(x.shape, generator=g) if noise else 0.0
        if in_place:
            x += eps
            noisy = x.clone().requires_grad_(True)
        else:
            noisy = (x + eps).requires_grad_(True)
        score = select(model(noisy), targets).sum()
        if backward:
            score.backward()
            grad = noisy.grad
        else:
            grad = torch.autograd.grad(score, noisy)[0]
        grads.append(grad.abs() if abs_each else grad)
    stacked = torch.stack(grads)
    return {"mean": stacked.mean(0), "sum": stacked.sum(0), "last": stacked[-1]}[reduce]


def smoothgrad_with(**mistake):
    return lambda model, x, target=None, n_samples=50, noise_level=0.15, seed=0: smoothgrad_variant(
        model, x, target, n_samples, noise_level, seed, **mistake)


REFERENCES = {
    checks.check_softmax: softmax,
    checks.check_map_resolution: native_resolution,
    checks.check_smoothgrad: my_smoothgrad,
    checks.check_shortcut_detector: share_in_region,
}


# --------------------------------------------------------------------------------------------
# The catalogue: (check, wrong answer, words the hint must contain)
# --------------------------------------------------------------------------------------------
def leaky_resolution(model, layer, x):
    seen = {}
    layer.register_forward_hook(lambda m, i, o: seen.update(shape=o.shape))
    model(x)
    return tuple(seen["shape"][-2:])


def channels_and_height(model, layer, x):
    with record_layer(model, layer) as rec:
        model(x)
    return tuple(rec.activations.shape[1:3])


def region_mistake(kind):
    def share(attribution, region):
        a = {"signed": attribution, "abs": attribution.abs()}.get(kind, attribution.clamp(min=0))
        inside = (a * region).sum((1, 2))
        if kind == "area":
            return inside / region.sum((1, 2))
        if kind == "batch":
            return inside / a.sum()
        if kind == "scalar":
            return inside.sum() / a.sum()
        if kind == "one_axis":
            return (a * region).sum(1) / a.sum(1)
        return inside / a.sum((1, 2))            # "signed", "abs", and "unguarded" (0/0 -> NaN)
    return share


CATALOGUE = [
    (checks.check_softmax, lambda z: z.exp() / z.exp().sum(dim=0, keepdim=True), "dim=-1"),
    (checks.check_softmax, lambda z: z.exp(), "sum to 1"),
    (checks.check_softmax, lambda z: z.exp() / z.exp().sum(dim=-1, keepdim=True), "subtract each row's max"),
    (checks.check_softmax, lambda z: z.tolist(), "torch.Tensor"),
    (checks.check_map_resolution, lambda m, layer, x: tuple(x.shape[-2:]), "input's size"),
    (checks.check_map_resolution, lambda m, layer, x: native_resolution(m, layer, x)[::-1], "swapped"),
    (checks.check_map_resolution, channels_and_height, "channel"),
    (checks.check_map_resolution, leaky_resolution, "hook"),
    (checks.check_smoothgrad, smoothgrad_with(reduce="sum"), "do not sum"),
    (checks.check_smoothgrad, smoothgrad_with(abs_each=True), "abs() (if at all) after averaging"),
    (checks.check_smoothgrad, smoothgrad_with(scale=False), "scale it to the input range"),
    (checks.check_smoothgrad, smoothgrad_with(generator=False), "seed=0 give different maps"),
    (checks.check_smoothgrad, smoothgrad_with(reduce="last"), "average the gradients of all n_samples"),
    (checks.check_smoothgrad, smoothgrad_with(noise=False), "does not depend on noise_level"),
    (checks.check_smoothgrad, smoothgrad_with(fixed_target=[1, 0]), "wrong class"),
    (checks.check_smoothgrad, smoothgrad_with(backward=True), ".grad"),
    (checks.check_smoothgrad, smoothgrad_with(in_place=True), "in place"),
    (checks.check_shortcut_detector, region_mistake("signed"), "signed attribution"),
    (checks.check_shortcut_detector, region_mistake("abs"), "abs()"),
    (checks.check_shortcut_detector, region_mistake("area"), "region's area"),
    (checks.check_shortcut_detector, region_mistake("batch"), "whole batch"),
    (checks.check_shortcut_detector, region_mistake("scalar"), "one number for the whole batch"),
    (checks.check_shortcut_detector, region_mistake("one_axis"), "both pixel dimensions"),
    (checks.check_shortcut_detector, region_mistake("unguarded"), "NaN"),
    (checks.check_shortcut_detector, first_mask_only, "its own mask"),
]


@pytest.mark.parametrize("check", list(REFERENCES), ids=lambda c: c.__name__)
def test_reference_passes(check, capsys):
    assert check(REFERENCES[check]) is True
    assert capsys.readouterr().out.startswith(f"[passed] {check.__name__}: ")


@pytest.mark.parametrize("check", list(REFERENCES), ids=lambda c: c.__name__)
def test_stub_is_not_implemented_yet(check, capsys):
    assert check(stub) is False
    out = capsys.readouterr()
    assert out.out.startswith(f"[not implemented yet] {check.__name__}")
    assert "Traceback" not in out.out + out.err


@pytest.mark.parametrize("check, wrong, hint", CATALOGUE,
                         ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(CATALOGUE)])
def test_wrong_answer_is_rejected_with_a_hint(check, wrong, hint):
    with pytest.raises(checks.CheckFailed) as failure:
        check(wrong)
    assert hint in str(failure.value), f"hint {str(failure.value)!r} does not mention {hint!r}"


def test_at_least_three_mistakes_per_check():
    counts = {check: sum(c is check for c, _, _ in CATALOGUE) for check in REFERENCES}
    assert min(counts.values()) >= 3, counts


def test_package_smoothgrad_passes_the_check():
    saliency = pytest.importorskip("xaicourse.saliency")
    assert checks.check_smoothgrad(saliency.smoothgrad) is True


def test_outcomes_are_recorded_for_the_grader(tmp_path, monkeypatch):
    results = tmp_path / "results.jsonl"
    monkeypatch.setenv(checks.RESULTS_ENV, str(results))
    checks.check_softmax(softmax)
    checks.check_softmax(stub)
    with pytest.raises(checks.CheckFailed):
        checks.check_softmax(lambda z: z.exp())
    with pytest.raises(ZeroDivisionError):
        checks.check_softmax(lambda z: 1 / 0)
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["status"] for r in rows] == ["passed", "not attempted", "failed", "failed"]
    assert {r["check"] for r in rows} == {"check_softmax"}
    assert "sum to 1" in rows[2]["message"] and rows[3]["message"].startswith("ZeroDivisionError")
