"""Chapter 10: the tiny GPT's planted induction circuit, found by patching and ablation; Captum as the oracle."""
import pytest
import torch
from scipy.stats import spearmanr

import xaicourse as xc
from xaicourse import patching as P
from xaicourse.testing import assert_unchanged, snapshot


@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(0)
    return xc.models.tiny_gpt()


@pytest.fixture(scope="module")
def pair(gpt):
    clean = gpt.sequences(64, seed=1000)
    corrupt = clean.clone()
    corrupt[:, 1:gpt.half + 1] = gpt.sequences(64, seed=2000)[:, 1:gpt.half + 1]
    return clean, corrupt, P.next_token_metric(clean, range(gpt.half + 1, 2 * gpt.half))


def test_the_model_does_induction_and_nothing_else(gpt):
    acc = xc.train.gpt_accuracy(gpt.model, gpt.sequences(500, seed=1000))
    assert acc["repeat_accuracy"] >= 0.99
    assert acc["first_half_accuracy"] < 0.05  # chance is 1/47 = 0.021


def test_denoising_patching_finds_the_induction_head_only(gpt, pair):
    effects = P.activation_patching(gpt.model, *pair, gpt.heads)
    assert effects.argmax().item() == gpt.head_labels.index("L1H0")
    assert 0.8 < effects[4] < 1.0
    others = torch.cat([effects[:4], effects[5:]])
    assert others.abs().max() < 0.05


def test_noising_patching_also_finds_the_previous_token_heads(gpt, pair):
    clean, corrupt, metric = pair
    effects = dict(zip(gpt.head_labels, P.activation_patching(gpt.model, corrupt, clean, metric, gpt.heads).tolist()))
    assert effects["L0H0"] > 0.4 and effects["L0H2"] > 0.4 and effects["L1H0"] > 0.8
    assert max(abs(effects[h]) for h in ("L0H1", "L0H3", "L1H1", "L1H2", "L1H3")) < 0.05


def test_ablating_the_circuit_breaks_induction_ablating_others_does_not(gpt):
    ids, ref = gpt.sequences(256, seed=1000), gpt.sequences(200, seed=3000)
    heads = dict(zip(gpt.head_labels, gpt.heads))

    def accuracy(*names, mode="mean"):
        with P.ablate(gpt.model, [heads[n] for n in names], mode, ref):
            return xc.train.gpt_accuracy(gpt.model, ids)["repeat_accuracy"]
    assert accuracy("L0H0", "L1H0") < 0.3
    assert accuracy("L0H0", "L0H2") < 0.2
    assert accuracy("L0H1", "L0H3") > 0.98 and accuracy("L1H1", "L1H2") > 0.98
    assert accuracy("L1H0", mode="zero") < 0.5
    assert xc.hooks.hooks_left(gpt.model) == 0


def test_attribution_patching_matches_real_patching_where_it_is_linear(gpt, pair):
    real = P.activation_patching(gpt.model, *pair, gpt.heads, per_position=True)
    approx = P.attribution_patching(gpt.model, *pair, gpt.heads, per_position=True)
    assert real.shape == approx.shape == (8, pair[0].shape[1])
    assert spearmanr(real.flatten(), approx.flatten()).correlation > 0.8
    # the last layer's heads act on the logits linearly (no later nonlinearity): first order is exact there
    assert torch.allclose(real[4:].sum(1), approx[4:].sum(1), atol=0.02)


def test_patching_is_exact_at_the_ends(gpt, pair):
    clean, corrupt, metric = pair
    # patching the whole residual stream after the last block restores everything
    full = P.activation_patching(gpt.model, clean, corrupt, metric, ["blocks.1.hook_resid_post"])
    assert full.item() == pytest.approx(1.0, abs=1e-5)


def test_direct_logit_attribution_sums_to_the_logit(gpt):
    ids = gpt.sequences(16, seed=5000)
    targets = torch.roll(ids, -1, dims=1)
    dla = P.direct_logit_attribution(gpt.model, ids, targets)
    m = gpt.model
    with torch.no_grad():
        logits = m(ids).gather(-1, targets[..., None])[..., 0]
        w_u = m.unembed.weight[targets]
        rest = (m.embed(ids) * w_u).sum(-1) + m.unembed.bias[targets]
        rest += sum((blk.attn.out.bias * w_u).sum(-1) for blk in m.blocks)
    torch.testing.assert_close(dla.sum((2, 3)) + rest, logits, atol=1e-4, rtol=1e-4)
    lens = P.logit_lens(m, ids)
    torch.testing.assert_close(lens[-1], m(ids).detach())


def test_patching_leaves_the_model_as_found(gpt, pair):
    model = gpt.model.train()
    before = snapshot(model)
    P.activation_patching(model, *pair, gpt.heads[:2])
    P.attribution_patching(model, *pair, gpt.heads[:2])
    assert_unchanged(model, before)
    model.eval()


def test_bad_sites_say_what_is_wrong(gpt, pair):
    with pytest.raises(ValueError, match="no layer named"):
        P.activation_patching(gpt.model, *pair, ["blocks.7.attn.hook_z"])
    with pytest.raises(ValueError, match="head 9"):
        P.activation_patching(gpt.model, *pair, [("blocks.0.attn.hook_z", 9)])
    with pytest.raises(ValueError, match="same on the clean and the corrupt"):
        P.activation_patching(gpt.model, pair[0], pair[0], pair[2], gpt.heads[:1])
