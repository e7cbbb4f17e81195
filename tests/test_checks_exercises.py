"""Chapter 06's new graded tasks: check_contrastive_grad_cam, check_occlusion and check_grad_cam_pp
accept a learner's own solution, report a stub, and name the typical mistakes."""
import pytest
import torch
import torch.nn.functional as F

from xaicourse import cam, testing
from xaicourse.checks import CheckFailed
from xaicourse.checks.exercises import (check_contrastive_grad_cam, check_grad_cam_pp, check_occlusion,
                                       check_remove_evidence, contrastive_grad_cam, grad_cam_pp, occlusion,
                                       remove_evidence)


# --------------------------------------------------------------------------------------------
# A learner's contrastive Grad-CAM, with hooks, and its mistakes
# --------------------------------------------------------------------------------------------
def make_contrastive(mistake=None):
    def learner(model, layer, x, a, b):
        store = {}

        def hook(module, inputs, output):
            store["A"] = output.detach()
            output.register_hook(lambda g: store.__setitem__("G", g.detach()))

        handle = layer.register_forward_hook(hook)
        try:
            x = x.clone().requires_grad_(True)
            logits = model(x)
            score = {None: logits[:, a] - logits[:, b], "swapped": logits[:, b] - logits[:, a],
                     "only_a": logits[:, a]}.get(mistake, logits[:, a] - logits[:, b])
            torch.autograd.grad(score.sum(), x)
        finally:
            handle.remove()
        cam_map = (store["G"].mean(dim=(2, 3), keepdim=True) * store["A"]).sum(1).clamp(min=0)
        cam_map = F.interpolate(cam_map[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        low, high = cam_map.amin(dim=(1, 2), keepdim=True), cam_map.amax(dim=(1, 2), keepdim=True)
        return (cam_map - low) / (high - low).clamp(min=1e-12)

    return learner


def finished_difference(model, layer, x, a, b):
    return cam.grad_cam(model, layer, x, a) - cam.grad_cam(model, layer, x, b)


def clipped_difference(model, layer, x, a, b):
    diff = finished_difference(model, layer, x, a, b).clamp(min=0)
    low, high = diff.amin(dim=(1, 2), keepdim=True), diff.amax(dim=(1, 2), keepdim=True)
    return (diff - low) / (high - low).clamp(min=1e-12)


def test_contrastive_reference_is_grad_cam_of_the_logit_difference():
    model, layer, x, _ = testing.grad_cam_case()

    class Difference(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, v):
            out = self.model(v)
            return (out[:, 0] - out[:, 2]).unsqueeze(1)

    torch.testing.assert_close(contrastive_grad_cam(model, layer, x, 0, 2),
                               cam.grad_cam(Difference().eval(), layer, x, 0), atol=1e-5, rtol=1e-4)
    # and it is not either class's own map, nor the other contrast: the checker can tell them apart
    own = cam.grad_cam(model, layer, x, 0)
    assert (contrastive_grad_cam(model, layer, x, 0, 2) - own).abs().max() > 0.1
    assert (contrastive_grad_cam(model, layer, x, 0, 2) - contrastive_grad_cam(model, layer, x, 2, 0)).abs().max() > 0.1


def test_contrastive_accepts_a_solution_with_hooks(capsys):
    assert check_contrastive_grad_cam(make_contrastive()) is True
    assert "[passed] check_contrastive_grad_cam" in capsys.readouterr().out


@pytest.mark.parametrize("learner, hint", [
    (make_contrastive("swapped"), "b rather than a"),
    (make_contrastive("only_a"), "plain Grad-CAM of class a"),
    (finished_difference, "without clipping"),
    (lambda m, l, x, a, b: clipped_difference(m, l, x, a, b), "finished"),
])
def test_contrastive_names_the_mistake(learner, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_contrastive_grad_cam(learner)


def test_contrastive_stub_and_unrelated_answer(capsys):
    def stub(*args):
        raise NotImplementedError

    assert check_contrastive_grad_cam(stub) is False
    assert "not implemented yet" in capsys.readouterr().out
    with pytest.raises(CheckFailed, match="expected ReLU"):
        check_contrastive_grad_cam(lambda m, l, x, a, b: torch.rand(len(x), *x.shape[-2:]))


# --------------------------------------------------------------------------------------------
# Occlusion
# --------------------------------------------------------------------------------------------
def make_occlusion(mistake=None):
    def learner(model, x, target, window, stride):
        t = torch.as_tensor(target)
        score = (lambda out: out.softmax(-1)) if mistake == "probability" else (lambda out: out)
        with torch.no_grad():
            base = score(model(x))[torch.arange(len(x)), t]
            total = torch.zeros(len(x), *x.shape[-2:])
            count = torch.zeros(x.shape[-2:])
            for top in range(0, x.shape[-2] - window + 1, stride):
                for left in range(0, x.shape[-1] - window + 1, stride):
                    covered = x.clone()
                    covered[..., top:top + window, left:left + window] = 0
                    drop = base - score(model(covered))[torch.arange(len(x)), t]
                    if mistake == "sign":
                        drop = -drop
                    total[:, top:top + window, left:left + window] += drop[:, None, None]
                    count[top:top + window, left:left + window] += 1
        return total if mistake == "summed" else total / count.clamp(min=1)

    return learner


def test_occlusion_reference_agrees_with_captum():
    from captum.attr import Occlusion

    model, _, x, targets = testing.grad_cam_case()
    theirs = Occlusion(model).attribute(x, target=torch.tensor(targets), sliding_window_shapes=(3, 8, 8),
                                        strides=(3, 4, 4), baselines=0)
    torch.testing.assert_close(occlusion(model, x, targets, 8, 4), theirs[:, 0], atol=1e-5, rtol=1e-4)
    assert occlusion(model, x, targets, 8, 4).abs().max() > 1e-3   # a map with something in it


def test_occlusion_accepts_a_solution(capsys):
    assert check_occlusion(make_occlusion()) is True
    assert "Captum's Occlusion" in capsys.readouterr().out


@pytest.mark.parametrize("mistake, hint", [("sign", "sign is flipped"), ("summed", "divide by how many windows"),
                                           ("probability", "softmax probability")])
def test_occlusion_names_the_mistake(mistake, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_occlusion(make_occlusion(mistake))


def test_occlusion_unrelated_answer():
    with pytest.raises(CheckFailed, match="mean over the windows"):
        check_occlusion(lambda m, x, t, w, s: torch.zeros(len(x), *x.shape[-2:]))


# --------------------------------------------------------------------------------------------
# Grad-CAM++
# --------------------------------------------------------------------------------------------
def make_grad_cam_pp(mistake=None):
    def learner(model, layer, x, target):
        store = {}
        handle = layer.register_forward_hook(lambda module, inputs, output: store.update(A=output))
        try:
            logits = model(x)
        finally:
            handle.remove()
        acts = store["A"]
        (g,) = torch.autograd.grad(logits[torch.arange(len(x)), torch.as_tensor(target)].sum(), acts)
        acts, g = acts.detach(), g.detach()
        a_sum = acts if mistake == "per_position" else acts.sum(dim=(2, 3), keepdim=True)
        factor = 1.0 if mistake == "no_two" else 2.0
        third = (acts * g**3).sum(dim=(2, 3), keepdim=True) if mistake == "source" else a_sum * g**3
        alpha = g**2 / (factor * g**2 + third + 1e-6)
        alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
        positive = g if mistake == "signed" else g.clamp(min=0)
        weights = (alpha * positive).sum(dim=(2, 3), keepdim=True)
        if mistake == "plain":
            weights = g.mean(dim=(2, 3), keepdim=True)
        cam_map = (weights * acts).sum(1).clamp(min=0)
        cam_map = F.interpolate(cam_map[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        low, high = cam_map.amin(dim=(1, 2), keepdim=True), cam_map.amax(dim=(1, 2), keepdim=True)
        return (cam_map - low) / (high - low).clamp(min=1e-12)

    return learner


def test_grad_cam_pp_reference_is_the_package_method():
    model, layer, x, targets = testing.grad_cam_case()
    torch.testing.assert_close(grad_cam_pp(model, layer, x, targets), cam.grad_cam_pp(model, layer, x, targets),
                               atol=1e-5, rtol=1e-4)
    assert (grad_cam_pp(model, layer, x, targets) - cam.grad_cam(model, layer, x, targets)).abs().max() > 0.1


def test_grad_cam_pp_accepts_a_solution_with_hooks(capsys):
    assert check_grad_cam_pp(make_grad_cam_pp()) is True
    assert "[passed] check_grad_cam_pp" in capsys.readouterr().out


@pytest.mark.parametrize("mistake, hint", [("plain", "plain Grad-CAM"), ("signed", "with their sign"),
                                           ("no_two", "factor 2"), ("per_position", "sum of A"),
                                           ("source", "source chapter's code")])
def test_grad_cam_pp_names_the_mistake(mistake, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_grad_cam_pp(make_grad_cam_pp(mistake))


# --------------------------------------------------------------------------------------------
# Text IG over word embeddings
# --------------------------------------------------------------------------------------------
from xaicourse.checks.exercises import check_text_ig, text_case, text_ig  # noqa: E402


def make_text_ig(mistake=None):
    def learner(embedding, head, ids, baseline_ids, target, n_steps):
        with torch.no_grad():
            vectors, reference = embedding(ids), embedding(baseline_ids)
        if mistake == "zero":
            reference = torch.zeros_like(vectors)
        forward = (lambda v: head(v).softmax(-1)) if mistake == "probability" else head
        nodes, weights = xc_ig.quadrature("gausslegendre", n_steps)
        total = torch.zeros_like(vectors)
        for alpha, w in zip(nodes.tolist(), weights.tolist()):
            point = (reference + alpha * (vectors - reference)).requires_grad_(True)
            (grad,) = torch.autograd.grad(forward(point)[0, target], point)
            total += w * grad
        attr = (vectors - reference) * total
        if mistake == "one_step":
            point = vectors.clone().requires_grad_(True)
            attr = (vectors - reference) * torch.autograd.grad(head(point)[0, target], point)[0]
        attr = attr[0]
        if mistake == "tokens":
            return attr.sum(0)
        return attr.abs().sum(-1) if mistake == "abs" else attr.sum(-1)

    return learner


from xaicourse import ig as xc_ig  # noqa: E402


def test_text_ig_reference_is_complete_and_zero_on_special_tokens():
    embedding, head, ids, baseline = text_case()
    attr = text_ig(embedding, head, ids, baseline, 1, 32)
    with torch.no_grad():
        change = head(embedding(ids))[0, 1] - head(embedding(baseline))[0, 1]
    assert float(attr.sum()) == pytest.approx(float(change), abs=1e-4)
    assert attr[0] == 0 and attr[-1] == 0 and attr[1:-1].abs().min() > 1e-3


@pytest.mark.parametrize("mistake", ["zero", "one_step", "abs", "probability"])
def test_text_ig_mistakes_are_distinguishable(mistake):
    embedding, head, ids, baseline = text_case()
    wrong = make_text_ig(mistake)(embedding, head, ids, baseline, 1, 32)
    assert (wrong - text_ig(embedding, head, ids, baseline, 1, 32)).abs().max() > 1e-2


def test_text_ig_accepts_a_hand_written_solution(capsys):
    assert check_text_ig(make_text_ig()) is True
    assert "[passed] check_text_ig" in capsys.readouterr().out


@pytest.mark.parametrize("mistake, hint", [("zero", "all-zero word vectors"), ("one_step", "at the sentence only"),
                                           ("abs", "signs are gone"), ("probability", "softmax probability"),
                                           ("tokens", "one attribution per token")])
def test_text_ig_names_the_mistake(mistake, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_text_ig(make_text_ig(mistake))


# --------------------------------------------------------------------------------------------
# Exercise 6.5: remove the evidence
# --------------------------------------------------------------------------------------------
def make_remove_evidence(mistake=None):
    def learner(model, layer, x, target, top=0.2):
        with torch.no_grad():
            predicted = int(model(x).argmax())
        heat = cam.grad_cam(model, layer, x, predicted if mistake == "predicted" else target)
        flat = heat.flatten(1)
        threshold = flat.quantile(1 - (1 - top if mistake == "top80" else top), dim=1).view(-1, 1, 1)
        region = (heat >= threshold) & (heat > 0)
        image = x.clone()
        if mistake == "kept":
            image = image * region[:, None]
        elif mistake == "channel":
            image[:, 0][region] = 0
        elif mistake != "untouched":
            image[region[:, None].expand_as(image)] = 0
        with torch.no_grad():
            out = model(image)
        return out if mistake == "logits" else out.softmax(-1)

    return learner


def test_remove_evidence_reference_changes_the_probabilities():
    model, layer, x, _ = testing.misclassification_case()
    with torch.no_grad():
        before = model(x).softmax(-1)
    after = remove_evidence(model, layer, x, 2, 0.2)
    torch.testing.assert_close(after.sum(-1), torch.ones(1))
    assert (after - before).abs().max() > 1e-3   # the region matters, so the mistakes below are distinguishable


def test_remove_evidence_accepts_a_solution(capsys):
    assert check_remove_evidence(make_remove_evidence()) is True
    assert "[passed] check_remove_evidence" in capsys.readouterr().out


@pytest.mark.parametrize("mistake, hint", [
    ("untouched", "untouched input"), ("kept", "kept the region"), ("predicted", "region of the predicted class"),
    ("top80", "top 80%"), ("channel", "only the first channel"), ("logits", "these are logits"),
])
def test_remove_evidence_names_the_mistake(mistake, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_remove_evidence(make_remove_evidence(mistake))


def test_remove_evidence_unrelated_answer():
    with pytest.raises(CheckFailed, match="top 20% of target's Grad-CAM"):
        check_remove_evidence(lambda model, layer, x, t, top: torch.full((1, 6), 1 / 6))
