"""The exercise checks of chapters 00 and 06: each accepts the reference, reports an untouched stub as
"not implemented yet" (no traceback), and rejects a catalogue of realistic wrong answers with a hint
that names the mistake. (The chapter authors test their own checks in tests/test_checks_<topic>.py.)"""
import json

import pytest
import torch

from xaicourse import attention, cam, checks, ig, interpret, metrics, saliency, testing
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


NOISE = {  # how a learner may draw the noise, given its shape and generator
    True: torch.randn,
    "uniform": torch.rand,
    "symmetric uniform": lambda shape, generator: 2 * torch.rand(shape, generator=generator) - 1,
    "half normal": lambda shape, generator: torch.randn(shape, generator=generator).abs(),
}


def smoothgrad_variant(model, x, target, n_samples, noise_level, seed, *, scale=True, reduce="mean",
                       abs_each=False, generator=True, backward=False, in_place=False, noise=True, fixed_target=None,
                       shared=False):
    """A learner's SmoothGrad with one switch per typical mistake (scale="batch": one range for the whole
    batch; shared: one noise draw for every sample; noise: the distribution, see NOISE)."""
    g = torch.Generator().manual_seed(seed) if generator else None
    with torch.no_grad():
        targets = resolve_targets(target if fixed_target is None else fixed_target, model(x))
    span = (x.flatten(1).amax(1) - x.flatten(1).amin(1)).view(-1, *[1] * (x.ndim - 1)) if scale else 1.0
    if scale == "batch":
        span = x.max() - x.min()
    grads = []
    for _ in range(n_samples):
        eps = noise_level * span * NOISE[noise](x.shape[1:] if shared else x.shape, generator=g) if noise else 0.0
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


def softmax_in_place(logits):
    logits -= logits.max(dim=-1, keepdim=True).values
    logits.exp_()
    return logits / logits.sum(dim=-1, keepdim=True)


CATALOGUE = [
    (checks.check_softmax, lambda z: z.exp() / z.exp().sum(dim=0, keepdim=True), "dim=-1"),
    (checks.check_softmax, softmax_in_place, "changed the logits passed in"),
    (checks.check_softmax, lambda z: z.exp_() / z.sum(dim=-1, keepdim=True), "in-place operation"),
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
    (checks.check_smoothgrad, smoothgrad_with(scale="batch"), "one noise scale for the whole batch"),
    (checks.check_smoothgrad, smoothgrad_with(shared=True), "every sample of the batch got the same noise"),
    (checks.check_smoothgrad, smoothgrad_with(noise="uniform"), "your noise is uniform"),
    (checks.check_smoothgrad, smoothgrad_with(noise="symmetric uniform"), "your noise is uniform"),
    (checks.check_smoothgrad, smoothgrad_with(noise="half normal"), "not centred on 0"),
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
    from functools import partial

    from xaicourse import saliency

    assert checks.check_smoothgrad(partial(saliency.smoothgrad, variant="mean")) is True  # the exercise: plain SmoothGrad


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


# --------------------------------------------------------------------------------------------
# Every check: answers of another dtype, type or device are read, never crashed on
# --------------------------------------------------------------------------------------------
EVERY_CHECK = {  # a correct answer for each check of the course, from the package where it has one
    checks.check_softmax: softmax,
    checks.check_map_resolution: native_resolution,
    checks.check_smoothgrad: my_smoothgrad,
    checks.check_shortcut_detector: share_in_region,
    checks.check_vanilla_gradient: saliency.vanilla_gradient,
    checks.check_grad_cam: cam.grad_cam,
    checks.check_integrated_gradients: lambda model, x, target, baseline, n_steps: ig.integrated_gradients(
        model, x, target, baseline=baseline, n_steps=n_steps, method="riemann_trapezoid"),
    checks.check_attention_rollout: attention.rollout,
    checks.check_misclassification_stats: interpret.misclassification_stats,
    checks.check_deletion_auc: lambda model, x, s, target, n_steps: metrics.deletion_auc(
        model, x, s[None], target, n_steps=n_steps, baseline=0.0).auc,
}


def answered(reference, change):
    """The reference with its answer changed: each tensor (or number) inside it goes through ``change``."""
    def convert(value):
        if isinstance(value, (tuple, torch.Size)):
            return tuple(change(torch.as_tensor(v)) for v in value)
        if isinstance(value, torch.Tensor):
            return change(value)
        if isinstance(value, (int, float)):
            return change(torch.as_tensor(value))
        return {key: convert(v) for key, v in dict(value).items() if v is not None}

    return lambda *args, **kwargs: convert(reference(*args, **kwargs))


@pytest.mark.parametrize("check", list(EVERY_CHECK), ids=lambda c: c.__name__)
def test_every_check_has_a_reference_here(check):
    assert check(EVERY_CHECK[check]) is True


@pytest.mark.parametrize("check", list(EVERY_CHECK), ids=lambda c: c.__name__)
def test_a_float64_answer_passes(check):
    assert check(answered(EVERY_CHECK[check], lambda t: t.double() if t.is_floating_point() else t)) is True


@pytest.mark.parametrize("check", list(EVERY_CHECK), ids=lambda c: c.__name__)
def test_a_numpy_number_or_int64_answer_never_crashes(check):
    def numpy(t):
        return t.numpy().astype("float64") if t.ndim else t.numpy().astype("float64")[()]
    try:
        assert check(answered(EVERY_CHECK[check], numpy)) is True   # numbers and pairs: any real number is fine
    except checks.CheckFailed as failure:
        assert "torch.Tensor" in str(failure) and "numpy" in str(failure)  # tensors: say what to return


OTHER_KINDS = {  # an answer of another kind, and the words the hint must contain (one of them)
    "None": (lambda reference: lambda *args, **kwargs: None, ("returned None",)),
    "a string": (lambda reference: lambda *args, **kwargs: "an answer", ("not str", "got 'an answer'")),
    "a meta tensor": (lambda reference: answered(reference, lambda t: t.to("meta")),
                      ("cannot be read", "return a pair of two numbers")),
}


@pytest.mark.parametrize("kind", list(OTHER_KINDS))
@pytest.mark.parametrize("check", list(EVERY_CHECK), ids=lambda c: c.__name__)
def test_answers_of_another_kind_fail_with_a_hint(check, kind):
    make, hints = OTHER_KINDS[kind]
    with pytest.raises(checks.CheckFailed) as failure:
        check(make(EVERY_CHECK[check]))
    assert failure.value.check == check.__name__
    assert any(hint in str(failure.value) for hint in hints), str(failure.value)


def test_passing_something_else_than_a_function_is_a_hint():
    with pytest.raises(checks.CheckFailed, match="pass your function itself"):
        checks.check_softmax(softmax(torch.zeros(1, 2)))


# --------------------------------------------------------------------------------------------
# A failed check shows its hint, not a traceback through the package
# --------------------------------------------------------------------------------------------
def test_a_failed_check_renders_as_its_hint():
    with pytest.raises(checks.CheckFailed) as failure:
        checks.check_softmax(lambda z: z.exp())
    lines = failure.value._render_traceback_()
    assert lines[0].startswith("\x1b[1;31mCheckFailed\x1b[0m: check_softmax failed: each row should sum to 1")
    assert " ".join(lines).count("normalise by the sum over the classes (dim=-1)") == 1
    assert len(lines) <= 6 and not any("File " in line or "xaicourse/" in line for line in lines)


def test_ipython_shows_the_hint_instead_of_the_traceback(capsys):
    interactiveshell = pytest.importorskip("IPython.core.interactiveshell")
    shell = interactiveshell.InteractiveShell.instance()
    try:
        result = shell.run_cell("from xaicourse import checks\nchecks.check_softmax(lambda z: z.exp())")
    finally:
        interactiveshell.InteractiveShell.clear_instance()
    assert isinstance(result.error_in_exec, checks.CheckFailed)
    shown = capsys.readouterr().out
    assert "check_softmax failed: each row should sum to 1" in shown
    assert "Traceback" not in shown and "core.py" not in shown and len(shown.splitlines()) <= 6


# --------------------------------------------------------------------------------------------
# xaicourse.testing: the cases are fixed and leave the global random state alone
# --------------------------------------------------------------------------------------------
CASES = [testing.gradient_case, testing.grad_cam_case, testing.resolution_case, testing.misclassification_case,
         testing.smoothgrad_case, testing.noise_probe_case, testing.region_case, lambda: testing.deletion_case(0),
         testing.ig_case, testing.attention_case]


@pytest.mark.parametrize("make", CASES, ids=range(len(CASES)))
def test_cases_are_fixed_and_leave_the_global_random_state_alone(make):
    state = torch.random.get_rng_state()
    first, second = make(), make()
    assert torch.equal(torch.random.get_rng_state(), state)

    def tensors(case):
        return [t for t in (case if isinstance(case, tuple) else (case,)) if isinstance(t, torch.Tensor)]

    assert all(torch.equal(a, b) for a, b in zip(tensors(first), tensors(second)))
    models = [m for m in (first if isinstance(first, tuple) else ()) if isinstance(m, torch.nn.Module)]
    assert all(not m.training for m in models)
    for m, again in zip(models, [m for m in second if isinstance(m, torch.nn.Module)]):
        assert all(torch.equal(p, q) for p, q in zip(m.state_dict().values(), again.state_dict().values()))


def test_smoothgrad_case_tells_one_scale_per_batch_from_one_per_sample():
    _, _, x, _ = testing.smoothgrad_case()
    flat = x.flatten(1)
    assert (flat.amax(1) - flat.amin(1)).tolist() == [4.0, 2.0]
    probe = testing.noise_probe_case().x.flatten(1)
    assert probe.amin() == 4.0 and probe.amax() == 6.0 and probe.shape == (2, 3072)


def test_split_at_gives_the_layer_output_and_the_same_logits():
    model, layer, x, _ = testing.grad_cam_case()
    front, back = testing.split_at(model, layer)
    with record_layer(model, layer) as rec:
        logits = model(x)
    assert torch.equal(front(x), rec.activations) and torch.equal(back(front(x)), logits)


def test_cubic_scores_gradient_by_hand():
    model = testing.CubicScores((2,))
    x = torch.tensor([[1.0, -2.0]], requires_grad=True)
    (grad,) = torch.autograd.grad(model(x)[0, 1], x)
    w, v = model.w.detach()[1], model.v.detach()[1]
    assert torch.allclose(grad[0], 3 * w * torch.tensor([1.0, 4.0]) + v)


def test_a_function_that_changes_the_model_is_told_so():
    def in_float64(model, x, target=None):
        model.double()  # changes the dtype of every weight, for good
        return saliency.vanilla_gradient(model, x.double(), target)

    with pytest.raises(checks.CheckFailed, match="changed the model's weights"):
        checks.check_vanilla_gradient(in_float64)

    def bumps_a_weight(model, x, target=None):
        with torch.no_grad():
            model[0].bias += 1.0
        return saliency.vanilla_gradient(model, x, target)

    with pytest.raises(checks.CheckFailed, match="changed the model's weights"):
        checks.check_vanilla_gradient(bumps_a_weight)
