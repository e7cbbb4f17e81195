"""Chapter 10's checks: each accepts the reference, reports the stub, and names typical mistakes."""
import pytest
import torch

from xaicourse import patching
from xaicourse.checks.core import CheckFailed
from xaicourse.checks.patching import (check_direct_logit_attribution, check_find_induction_head, check_patch_module,
                                       dla_with)


def stub(*_args):
    raise NotImplementedError


def patch_module(model, clean_ids, corrupt_ids, metric, module, *, raw=False, keep_hook=False, from_clean=False,
                 noising=False):
    layer = model.get_submodule(module)
    source, run = (corrupt_ids, clean_ids) if noising else (clean_ids, corrupt_ids)
    stored = {}
    with torch.no_grad():
        h = layer.register_forward_hook(lambda m, i, o: stored.update(out=o))
        model(source)
        h.remove()
        c, k = metric(model(clean_ids)).mean().item(), metric(model(corrupt_ids)).mean().item()
        h = layer.register_forward_hook(lambda m, i, o: stored["out"])
        patched = metric(model(run)).mean().item()
        if not keep_hook:
            h.remove()
    if raw:
        return patched
    if from_clean:
        return (patched - c) / (k - c)
    return (patched - k) / (c - k)


def my_dla(model, ids, targets):
    return dla_with(model, ids, targets)


def find(effects):
    layer, head = divmod(int(effects[1:].argmax()), effects.shape[1])
    return layer + 1, head


@pytest.mark.parametrize("check, reference", [
    (check_patch_module, patch_module), (check_direct_logit_attribution, patching.direct_logit_attribution),
    (check_direct_logit_attribution, my_dla), (check_find_induction_head, find)], ids=["patch", "dla", "dla-own", "find"])
def test_reference_passes_and_stub_is_reported(check, reference, capsys):
    assert check(reference) is True
    assert "[passed]" in capsys.readouterr().out
    assert check(stub) is False
    assert "not implemented yet" in capsys.readouterr().out


@pytest.mark.parametrize("flags, hint", [
    ({"raw": True}, "the patched metric itself"),
    ({"from_clean": True}, "from the clean end"),
    ({"noising": True}, "noising"),
    ({"keep_hook": True}, "still registered"),
])
def test_patching_mistakes_are_named(flags, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_patch_module(lambda *args: patch_module(*args, **flags))


@pytest.mark.parametrize("flags, hint", [
    ({"transpose_out": True}, "transposed"), ({"current_token": True}, "current token"),
    ({"with_bias": True}, "bias"), ({"all_tokens_mean": True}, "whole vocabulary")])
def test_dla_mistakes_are_named(flags, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_direct_logit_attribution(lambda m, i, t: dla_with(m, i, t, **flags))


@pytest.mark.parametrize("wrong, hint", [
    (lambda e: divmod(int(e.argmax()), e.shape[1]), "layer-0 head cannot be"),
    (lambda e: (1 + int(e[1:].abs().argmax()) // e.shape[1], int(e[1:].abs().argmax()) % e.shape[1]), r"largest \|effect\|"),
    (lambda e: (int(e.argmax()) % e.shape[0], int(e.argmax()) // e.shape[0]), "wrong axis"),
    (lambda e: "L1H0", "return a pair"),
    (lambda e: (e.shape[0] - 1, int(e[-1].argmax())), "induction head is layer 1"),
])
def test_find_mistakes_are_named(wrong, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_find_induction_head(wrong)


def test_dla_that_ignores_its_targets_is_named():
    with pytest.raises(CheckFailed, match="use the `targets` argument"):
        check_direct_logit_attribution(lambda m, ids, t: dla_with(m, ids, torch.roll(ids, -1, dims=1)))
