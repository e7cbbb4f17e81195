"""Chapter 10: attribution for generation on the tiny GPT, against Captum's LLM attribution and the planted source."""
import pytest
import torch

import xaicourse as xc
from xaicourse import generation as G
from xaicourse.testing import assert_unchanged, snapshot


@pytest.fixture(scope="module")
def gpt():
    return xc.models.tiny_gpt()


@pytest.fixture(scope="module")
def batch(gpt):
    ids = gpt.sequences(24, seed=6000)
    prompt_len = gpt.half + 2
    source = torch.arange(prompt_len, ids.shape[1])[None].expand(len(ids), -1) - gpt.half
    return ids, prompt_len, source


def test_generate_continues_the_copy(gpt, batch):
    ids, prompt_len, _ = batch
    assert torch.equal(G.generate(gpt.model, ids[:, :prompt_len], ids.shape[1] - prompt_len), ids)


def test_ours_equal_captums_llm_attribution(gpt, batch):
    from captum.attr import FeatureAblation, LayerIntegratedGradients, LLMAttribution, LLMGradientAttribution, TextTokenInput

    ids, prompt_len, _ = batch
    hf_model, hf_tok = gpt.for_captum()
    before = snapshot(gpt.model)
    for i in range(3):
        text = TextTokenInput(gpt.tokenizer.decode(ids[i, 1:prompt_len]), hf_tok, baselines=0)
        target = gpt.tokenizer.decode(ids[i, prompt_len:])
        lig = LLMGradientAttribution(LayerIntegratedGradients(hf_model, hf_model.embed), hf_tok).attribute(
            text, target=target, n_steps=32).token_attr
        fa = LLMAttribution(FeatureAblation(hf_model), hf_tok).attribute(text, target=target,
                                                                          forward_in_tokens=False).token_attr
        torch.testing.assert_close(G.integrated_gradients(gpt.model, ids[i:i + 1], prompt_len, n_steps=32)[0], lig,
                                   atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(G.ablation(gpt.model, ids[i:i + 1], prompt_len)[0], fa, atol=1e-5, rtol=1e-5)
    assert_unchanged(gpt.model, before)


def test_ig_rows_add_up_to_the_score_change(gpt, batch):
    ids, prompt_len, _ = batch
    a = G.integrated_gradients(gpt.model, ids, prompt_len, score="logit", n_steps=64)
    base = ids.clone()
    base[:, :prompt_len] = 0
    with torch.no_grad():
        full, empty = gpt.model(ids), gpt.model(base)
    pos = torch.arange(prompt_len - 1, ids.shape[1] - 1)
    targets = ids[:, prompt_len:]
    change = (full[:, pos].gather(-1, targets[..., None]) - empty[:, pos].gather(-1, targets[..., None]))[..., 0]
    torch.testing.assert_close(a.sum(-1), change, atol=0.05 * change.abs().max().item(), rtol=0.05)


def test_contrast_is_the_logit_difference_and_the_log_prob_difference(gpt, batch):
    ids, prompt_len, source = batch
    other = ids.gather(1, source + 1)
    contrast = G.ablation(gpt.model, ids, prompt_len, contrast=other)
    # the first generated token sees only the prompt, so scoring the other token there is a swap of that token;
    # ablation is linear in the score: score(target) - score(other), with the logit or the log-probability
    swapped = ids.clone()
    swapped[:, prompt_len] = other[:, 0]
    for score in ("logit", "log_prob"):
        a = G.ablation(gpt.model, ids, prompt_len, score=score)[:, 0]
        b = G.ablation(gpt.model, swapped, prompt_len, score=score)[:, 0]
        torch.testing.assert_close(a - b, contrast[:, 0], atol=1e-4, rtol=1e-4)


def test_scored_against_the_planted_source(gpt, batch):
    ids, prompt_len, source = batch
    axg = G.attention_x_gradient(gpt.model, ids, prompt_len)
    assert G.hit_rate(axg, source) > 0.99
    for method in ("integrated gradients", "ablation"):
        a = G.token_attribution(gpt.model, ids, prompt_len, method, **({"n_steps": 16} if method.startswith("int") else {}))
        top = a.argmax(-1)
        assert ((top == source) | (top == source - 1)).float().mean() > 0.85, method
    assert xc.hooks.hooks_left(gpt.model) == 0


def test_hit_rate_ties_and_constant_rows_cannot_hit():
    truth = torch.tensor([[1, 0]])
    assert G.hit_rate(torch.tensor([[[0.0, 2.0, 1.0], [3.0, 1.0, 0.0]]]), truth) == 1.0
    assert G.hit_rate(torch.zeros(1, 2, 3), truth) == 0.0           # constant rows: a tie everywhere
    assert G.hit_rate(torch.tensor([[[1.0, 2.0, 2.0], [3.0, 3.0, 0.0]]]), truth) == 0.0
    with pytest.raises(ValueError, match="one source position per row"):
        G.hit_rate(torch.zeros(1, 2, 3), torch.zeros(2, 2, dtype=torch.long))


def test_bad_arguments_say_what_to_do(gpt, batch):
    ids, prompt_len, _ = batch
    with pytest.raises(ValueError, match="prompt_len must leave at least one generated token"):
        G.ablation(gpt.model, ids, ids.shape[1])
    with pytest.raises(ValueError, match="score must be one of"):
        G.ablation(gpt.model, ids, prompt_len, score="prob")
    with pytest.raises(ValueError, match="one token per generated token"):
        G.ablation(gpt.model, ids, prompt_len, contrast=ids[:, :2])
    with pytest.raises(ValueError, match="layer must be in"):
        G.attention_x_gradient(gpt.model, ids, prompt_len, layer=5)
    with pytest.raises(ValueError, match="method must be one of"):
        G.token_attribution(gpt.model, ids, prompt_len, "saliency")
    with pytest.raises(ValueError, match="dtype long"):
        G.ablation(gpt.model, ids.float(), prompt_len)
