"""xc.relevance (chapter 09): attention relevance against an independent implementation of Chefer et al.'s rule.

The reference here records the attention weights with its own hooks (retain_grad + .backward() on a
deep copy of the model) and applies the rule as the paper's code writes it, sample by sample:
cam = (grad * cam).clamp(min=0).mean(heads); R = R + cam @ R.
"""
import copy
import warnings

import pytest
import timm
import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

import xaicourse as xc
from xaicourse import relevance
from xaicourse.hooks import hooks_left
from xaicourse.testing import assert_unchanged, snapshot


# --------------------------------------------------------------------------------------------
# The independent reference
# --------------------------------------------------------------------------------------------
def _paper_rule(attentions, gradients):
    """attentions, gradients: lists over layers of (heads, T, T) for one sample -> R (T, T)."""
    n = attentions[0].shape[-1]
    R = torch.eye(n)
    for cam, grad in zip(attentions, gradients):
        cam = (grad * cam).clamp(min=0).mean(dim=0)
        R = R + torch.matmul(cam, R)
    return R


def _reference_tiny_vit(model, x, target):
    """Attentions and gradients of the course's TinyViT, recorded at each block's attention output."""
    clone = copy.deepcopy(model).eval()
    saved = []

    def keep(_m, _inp, out):
        out[1].retain_grad()
        saved.append(out[1])

    handles = [block.attn.register_forward_hook(keep) for block in clone.blocks]
    logits = clone(x)
    logits.gather(1, torch.as_tensor(target).view(-1, 1)).sum().backward()
    for h in handles:
        h.remove()
    return [a.detach() for a in saved], [a.grad for a in saved]


def _reference_timm(model, x, target):
    clone = copy.deepcopy(model).eval()
    saved = []

    def keep(_m, _inp, out):
        out.retain_grad()
        saved.append(out)

    for block in clone.blocks:
        block.attn.fused_attn = False
        block.attn.attn_drop.register_forward_hook(keep)
    logits = clone(x)
    logits.gather(1, torch.as_tensor(target).view(-1, 1)).sum().backward()
    return [a.detach() for a in saved], [a.grad for a in saved]


def _rows(attentions, gradients, sample, method):
    A = [a[sample] for a in attentions]
    G = [g[sample] for g in gradients]
    if method == "gradient_rollout":
        return _paper_rule(A, G)[0]
    if method == "attention_x_gradient":
        return (G[-1] * A[-1]).clamp(min=0).mean(dim=0)[0]
    return A[-1].mean(dim=0)[0]  # "attention"


@pytest.fixture(scope="module")
def tiny():
    vit = xc.models.tiny_vit()
    images = xc.data.shapes(4, seed=3, size=64)
    return vit, vit.preprocess(images.images)


def _timm_vit(name, seed=0, **kwargs):
    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False, img_size=32, patch_size=8, depth=3, num_heads=2, embed_dim=32,
                             num_classes=4, **kwargs).eval()


# --------------------------------------------------------------------------------------------
# Values against the reference
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["gradient_rollout", "attention_x_gradient", "attention"])
def test_tiny_vit_matches_the_papers_rule(tiny, method):
    vit, x = tiny
    target = torch.tensor([0, 1, 2, 1])
    got = relevance.attention_relevance(vit, x, target, method=method)
    attentions, gradients = _reference_tiny_vit(vit.model, x, target)
    want = torch.stack([_rows(attentions, gradients, b, method)[1:] for b in range(len(x))])
    assert got.shape == (4, 64)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)
    assert got.abs().sum() > 0


@pytest.mark.parametrize("name, n_prefix, kwargs", [("vit_tiny_patch16_224", 1, {}),
                                                    ("deit_tiny_distilled_patch16_224", 2, {}),
                                                    ("vit_tiny_patch16_224", 5, {"reg_tokens": 4})])
@pytest.mark.parametrize("method", ["gradient_rollout", "attention_x_gradient", "attention"])
def test_timm_vit_matches_the_papers_rule_and_drops_prefix_tokens(name, n_prefix, kwargs, method):
    model = _timm_vit(name, **kwargs)
    assert model.num_prefix_tokens == n_prefix
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    target = [3, 0]
    got = relevance.attention_relevance(model, x, target, method=method)
    attentions, gradients = _reference_timm(model, x, target)
    assert attentions[0].shape[-1] == 16 + n_prefix
    want = torch.stack([_rows(attentions, gradients, b, method)[n_prefix:] for b in range(len(x))])
    assert got.shape == (2, 16)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)
    assert [block.attn.fused_attn for block in model.blocks] == [timm.layers.use_fused_attn()] * 3  # restored
    assert hooks_left(model) == 0


def test_gradient_rollout_rule_by_hand():
    # two tokens, one layer, one head: R = I + (G * A)^+
    A = torch.tensor([[[[[0.25, 0.75], [0.5, 0.5]]]]])  # (layers=1, heads=1, 2, 2) with a batch of 1
    G = torch.tensor([[[[[2.0, -1.0], [1.0, 4.0]]]]])
    R = relevance.gradient_rollout(A, G)
    torch.testing.assert_close(R, torch.tensor([[[1.5, 0.0], [0.5, 3.0]]]))
    # two layers multiply with the later layer on the left of R: R2 = R1 + W2 @ R1
    A2, G2 = torch.cat([A, A], dim=1), torch.cat([G, torch.ones_like(G)], dim=1)
    R1 = torch.tensor([[1.5, 0.0], [0.5, 3.0]])
    W2 = torch.tensor([[0.25, 0.75], [0.5, 0.5]])
    torch.testing.assert_close(relevance.gradient_rollout(A2, G2)[0], R1 + W2 @ R1)


def test_rollout_is_chapter_04s_rollout(tiny):
    vit, x = tiny
    got = relevance.attention_relevance(vit, x, method="rollout")
    want = xc.attention.rollout(xc.attention.vit_attentions(vit, x))[:, 0, 1:]
    torch.testing.assert_close(got, want)
    # the other methods are not the rollout
    assert not torch.allclose(relevance.attention_relevance(vit, x), want, atol=1e-3)


def test_bundle_and_module_give_the_same_relevance_and_batches_are_independent(tiny):
    vit, x = tiny
    both = relevance.attention_relevance(vit.model, x, 1)
    torch.testing.assert_close(relevance.attention_relevance(vit, x[2:3], 1), both[2:3], rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(relevance.patch_grid(both)[0, 0], both[0, :8])


def test_patch_integrated_gradients_add_up_to_the_logit_change(tiny):
    vit, x = tiny
    ig = relevance.patch_integrated_gradients(vit, x[:2], target=[0, 1], n_steps=64)
    with torch.no_grad():
        change = (vit.model(x[:2]) - vit.model(torch.zeros_like(x[:2])))[[0, 1], [0, 1]]
    assert ig.shape == (2, 64)
    torch.testing.assert_close(ig.sum(dim=1), change, rtol=0.05, atol=0.05)
    assert hooks_left(vit.model) == 0


def test_patch_integrated_gradients_on_a_timm_vit_are_complete():
    model = _timm_vit("deit_tiny_distilled_patch16_224")
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    ig = relevance.patch_integrated_gradients(model, x, target=2, n_steps=64, batch_size=16)
    with torch.no_grad():
        change = model(x)[0, 2] - model(torch.zeros_like(x))[0, 2]
    assert ig.shape == (1, 16)
    torch.testing.assert_close(ig.sum(), change, rtol=0.05, atol=0.02)


# --------------------------------------------------------------------------------------------
# The model is left as found, also after errors
# --------------------------------------------------------------------------------------------
def test_model_left_as_found_after_success_and_after_errors():
    model = _timm_vit("vit_tiny_patch16_224").train()
    for p in list(model.parameters())[:3]:
        p.requires_grad_(False)
    before = snapshot(model)
    x = torch.randn(1, 3, 32, 32)
    with pytest.warns(UserWarning, match="training mode"):
        relevance.attention_relevance(model, x)
    with pytest.raises(ValueError, match="out of range"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        relevance.attention_relevance(model, x, target=99)  # fails after the hooks were registered
    with pytest.raises((ValueError, RuntimeError, AssertionError)), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        relevance.attention_relevance(model, torch.randn(1, 3, 48, 48))  # fails inside the forward pass
    assert_unchanged(model, before)
    assert hooks_left(model) == 0
    assert [block.attn.fused_attn for block in model.blocks] == [timm.layers.use_fused_attn()] * 3
    assert all(m.training for m in model.modules()) and not list(model.parameters())[0].requires_grad
    assert all(p.grad is None for p in model.parameters())


# --------------------------------------------------------------------------------------------
# Text: Hugging Face BERT with eager attention
# --------------------------------------------------------------------------------------------
def _tiny_bert(implementation="eager", seed=0):
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=16, num_labels=2)
    config._attn_implementation = implementation
    return BertForSequenceClassification(config).eval()


@pytest.fixture(scope="module")
def text_model(bert):
    return xc.models.TextModel(model=_tiny_bert(), tokenizer=bert.tokenizer, name="tiny-bert",
                               labels=["negative", "positive"])


def _reference_bert(model, encodings, target):
    clone = copy.deepcopy(model).eval()
    out = clone(**encodings, output_attentions=True)
    for a in out.attentions:
        a.retain_grad()
    out.logits[:, target].sum().backward()
    return [a.detach() for a in out.attentions], [a.grad for a in out.attentions]


def test_text_relevance_matches_the_papers_rule(text_model):
    encodings = text_model.encode("a dull and lifeless film")
    got = relevance.attention_relevance(text_model, "a dull and lifeless film", target=1)
    attentions, gradients = _reference_bert(text_model.model, encodings, 1)
    want = _paper_rule([a[0] for a in attentions], [g[0] for g in gradients])[0]
    want[0] = 0.0  # the class token's relevance to itself is left out
    assert got.shape == (1, encodings["input_ids"].shape[1])
    torch.testing.assert_close(got[0], want, rtol=1e-4, atol=1e-7)
    # encodings and input ids give the same answer as the string
    torch.testing.assert_close(relevance.attention_relevance(text_model.model, encodings, 1), got)
    torch.testing.assert_close(relevance.attention_relevance(text_model.model, encodings["input_ids"], 1), got)


def test_a_batch_of_texts_zeroes_padding(text_model):
    got = relevance.attention_relevance(text_model, ["a dull and lifeless film", "great"], target=1)
    alone = relevance.attention_relevance(text_model, "great", target=1)
    assert got.shape == (2, 7)
    assert (got[1, alone.shape[1]:] == 0).all() and (got[:, 0] == 0).all()
    torch.testing.assert_close(got[1, :alone.shape[1]], alone[0], rtol=1e-4, atol=1e-6)


def test_sdpa_attention_is_refused_with_the_fix():
    model = _tiny_bert("sdpa")
    with pytest.raises(ValueError, match='attn_implementation="eager"'):
        relevance.attention_relevance(model, torch.tensor([[101, 2307, 102]]))
    assert hooks_left(model) == 0


def test_text_too_long(text_model):
    long_text = " ".join(["good"] * 40)
    with pytest.warns(UserWarning, match="truncated"):
        got = relevance.attention_relevance(text_model, long_text)
    assert got.shape == (1, 16)
    encodings = text_model.tokenizer(long_text, return_tensors="pt")
    with pytest.raises(ValueError, match="reads at most 16"):
        relevance.attention_relevance(text_model.model, dict(encodings))
    with pytest.raises(ValueError, match="empty"):
        relevance.attention_relevance(text_model, "   ")


# --------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------
def test_bad_inputs_give_clear_errors(tiny, text_model):
    vit, x = tiny
    cnn = xc.testing.tiny_cnn()
    with pytest.raises(TypeError, match="not a Transformer"):
        relevance.attention_relevance(cnn, torch.randn(1, 3, 8, 8))
    assert hooks_left(cnn) == 0
    with pytest.raises(ValueError, match="unknown method"):
        relevance.attention_relevance(vit, x, method="lrp")
    with pytest.raises(TypeError, match="tokenizer"):
        relevance.attention_relevance(text_model.model, "a string without its tokenizer")
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        relevance.attention_relevance(vit, x[0])
    with pytest.raises(TypeError, match="nn.Module"):
        relevance.attention_relevance("vit", x)
    with pytest.raises(ValueError, match="same shape"):
        relevance.gradient_rollout(torch.ones(2, 1, 3, 3), torch.ones(1, 1, 3, 3))
    with pytest.raises(ValueError, match="square grid"):
        relevance.patch_grid(torch.ones(1, 7))
    with pytest.raises(ValueError, match="no patch embedding"):
        relevance.patch_integrated_gradients(nn.Sequential(nn.Flatten(), nn.Linear(12, 2)).eval(),
                                             torch.ones(1, 3, 2, 2))


def test_class_token_rows_per_layer(tiny):
    vit, x = tiny
    attentions, gradients, targets = relevance.record_attentions(vit.model, x[:2], [0, 2])
    assert attentions.shape == gradients.shape == (2, 4, 4, 65, 65)
    torch.testing.assert_close(relevance.class_token_rows(attentions, gradients, "gradient_rollout", -1)[:, 1:],
                               relevance.attention_relevance(vit, x[:2], [0, 2]))
    first = (gradients[:, 0] * attentions[:, 0]).clamp(min=0).mean(dim=1)[:, 0]  # R = I + W_0: row 0
    first[:, 0] += 1.0
    torch.testing.assert_close(relevance.class_token_rows(attentions, gradients, "gradient_rollout", 0), first)
    torch.testing.assert_close(relevance.class_token_rows(attentions, gradients, "attention", 1),
                               attentions[:, 1].mean(dim=1)[:, 0])
    torch.testing.assert_close(relevance.class_token_rows(attentions, gradients, "rollout", 2),
                               xc.attention.rollout(attentions[:, :3])[:, 0])
    with pytest.raises(ValueError, match="layer must be"):
        relevance.class_token_rows(attentions, gradients, "rollout", 4)


def test_relevance_explorers_show_the_cached_rows_and_a_move_changes_the_view(tiny, text_model):
    from xaicourse.widgets.relevance import relevance_explorer, text_relevance_explorer

    vit, _ = tiny
    image = xc.data.shapes(1, seed=3, size=64).images[0]
    explorer = relevance_explorer(vit, image)
    want = relevance.attention_relevance(vit, vit.preprocess(image))[0].reshape(8, 8)
    torch.testing.assert_close(explorer.heat(), want)
    before = explorer.image.value
    explorer.layer.value = 0
    assert explorer.image.value != before
    explorer.method.value = "attention"
    attentions = xc.attention.vit_attentions(vit, vit.preprocess(image))
    torch.testing.assert_close(explorer.heat(), attentions[0, 0].mean(dim=0)[0, 1:].reshape(8, 8))
    assert hooks_left(vit.model) == 0

    words = text_relevance_explorer(text_model, "a dull and lifeless film", target=1)
    want = relevance.attention_relevance(text_model, "a dull and lifeless film", 1)[0]
    torch.testing.assert_close(words.scores(), want)
    before = words.image.value
    words.method.value = "rollout"
    assert words.image.value != before


def test_hugging_face_vit_and_the_courses_hub_wrapper_match_the_papers_rule():
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, num_labels=3)
    config._attn_implementation = "eager"
    hf = ViTForImageClassification(config).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    clone = copy.deepcopy(hf)
    out = clone(pixel_values=x, output_attentions=True)
    for a in out.attentions:
        a.retain_grad()
    out.logits[:, 2].sum().backward()
    want = torch.stack([_paper_rule([a[b] for a in out.attentions], [a.grad[b] for a in out.attentions])[0, 1:]
                        for b in range(2)])
    torch.testing.assert_close(relevance.attention_relevance(hf, x, 2), want, rtol=1e-4, atol=1e-7)
    hub = xc.models.architectures.HubViT(hf).eval()
    torch.testing.assert_close(relevance.attention_relevance(hub, x, 2), want, rtol=1e-4, atol=1e-7)
    config_sdpa = copy.deepcopy(hf)
    config_sdpa.config._attn_implementation = "sdpa"
    with pytest.raises(ValueError, match="eager"):
        relevance.attention_relevance(xc.models.architectures.HubViT(config_sdpa).eval(), x)


def test_text_model_left_as_found(text_model):
    model = text_model.model
    with torch.no_grad():  # transformers registers its own output-capturing hooks at the first such call
        model(**text_model.encode("warm up"), output_attentions=True)
    model.train()
    try:
        before = snapshot(model)
        with pytest.warns(UserWarning, match="training mode"):
            relevance.attention_relevance(text_model, "a dull and lifeless film")
        assert_unchanged(model, before)
        assert all(m.training for m in model.modules())
    finally:
        model.eval()
    assert all(p.grad is None for p in model.parameters())
    assert model.config._attn_implementation == "eager"
