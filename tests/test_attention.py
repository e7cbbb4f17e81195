"""Chapter 04: attention weights, rollout, ViT maps, bertviz offline and the explorer widgets."""
import re
import types

import pytest
import torch

import xaicourse as xc
from xaicourse import attention
from xaicourse.hooks import hooks_left
from xaicourse.testing import assert_unchanged, snapshot

TEXT = "The cat sat on the mat"


@pytest.fixture(scope="module")
def cat_sentence(bert):
    return attention.get_attentions(bert, TEXT)


@pytest.fixture(scope="module")
def vit():
    return xc.models.tiny_vit()


@pytest.fixture(scope="module")
def shapes_test():
    return xc.data.shapes(**xc.train.TINY_VIT_DATA["test"])


# --------------------------------------------------------------------------------------------
# BERT attentions
# --------------------------------------------------------------------------------------------
def test_attentions_match_the_config_and_rows_sum_to_one(bert, cat_sentence):
    attentions, tokens = cat_sentence
    config = bert.model.config
    assert tokens == ["[CLS]", "the", "cat", "sat", "on", "the", "mat", "[SEP]"]
    assert attentions.shape == (config.num_hidden_layers, config.num_attention_heads, len(tokens), len(tokens))
    torch.testing.assert_close(attentions.sum(-1), torch.ones(attentions.shape[:-1]), atol=1e-5, rtol=0)
    assert (attentions >= 0).all()


def test_hand_computed_attention_equals_the_model(bert, cat_sentence):
    encoded = bert.encode(TEXT)
    with torch.no_grad():
        hidden = bert.model(**encoded, output_hidden_states=True).hidden_states
    config = bert.model.config
    heads, width = config.num_attention_heads, config.hidden_size // config.num_attention_heads
    for layer in (0, 3):
        block = bert.model.encoder.layer[layer].attention.self
        with torch.no_grad():
            q = block.query(hidden[layer][0]).view(-1, heads, width).transpose(0, 1)
            k = block.key(hidden[layer][0]).view(-1, heads, width).transpose(0, 1)
        by_hand = (q @ k.transpose(-1, -2) / width**0.5).softmax(dim=-1)
        torch.testing.assert_close(by_hand, cat_sentence.attentions[layer], atol=1e-5, rtol=0)


class _NoAttentions(torch.nn.Module):
    """Stands for a model loaded with SDPA attention: output_attentions=True gives None or ()."""

    def __init__(self, returned, config):
        super().__init__()
        self.returned, self.config, self.weight = returned, config, torch.nn.Parameter(torch.zeros(1))

    def forward(self, **_):
        return types.SimpleNamespace(attentions=self.returned)


def test_missing_attentions_raise_instead_of_returning_nothing(bert):
    for returned in (None, ()):
        fake = _NoAttentions(returned, bert.model.config)
        model = xc.models.TextModel(model=fake, tokenizer=bert.tokenizer, name="sdpa-bert")
        with pytest.raises(RuntimeError, match="eager"):
            attention.get_attentions(model, TEXT)


def test_empty_text_is_an_error_and_long_text_is_truncated_with_a_warning(bert):
    with pytest.raises(ValueError, match="empty"):
        attention.get_attentions(bert, "   ")
    with pytest.warns(UserWarning, match="truncated"):
        attentions, tokens = attention.get_attentions(bert, "word " * 600)
    assert len(tokens) == bert.max_length and attentions.shape[-1] == bert.max_length


# --------------------------------------------------------------------------------------------
# Rollout and most_attended on hand-made examples
# --------------------------------------------------------------------------------------------
A1 = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
A2 = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def test_rollout_on_a_three_token_example():
    attentions = torch.stack([A1, A2]).unsqueeze(1)  # (2 layers, 1 head, 3, 3)
    # (0.5 A2 + 0.5 I) @ (0.5 A1 + 0.5 I), worked out by hand
    expected = torch.tensor([[0.25, 0.25, 0.5], [0.25, 0.75, 0.0], [0.0, 0.5, 0.5]])
    torch.testing.assert_close(attention.rollout(attentions), expected)
    # without the residual: A2 @ A1 routes 0 -> 2 -> 2, 1 -> 0 -> 1, 2 -> 1 -> 1
    expected_plain = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    torch.testing.assert_close(attention.rollout(attentions, residual=False), expected_plain)


def test_rollout_head_fusion_discarding_and_batches():
    heads = torch.stack([A1, A2])  # one layer, two heads
    attentions = heads.unsqueeze(0)
    fused_max = torch.maximum(A1, A2)
    want = 0.5 * fused_max + 0.5 * torch.eye(3)
    torch.testing.assert_close(attention.rollout(attentions, head_fusion="max"), want / want.sum(-1, keepdim=True))
    mean = attention.rollout(attentions, head_fusion="mean")
    torch.testing.assert_close(mean, 0.5 * (A1 + A2) / 2 + 0.5 * torch.eye(3))
    # min of two one-hot heads keeps only where both agree (row 1: none) -> identity after the residual
    torch.testing.assert_close(attention.rollout(attentions, head_fusion="min")[1], torch.tensor([0.0, 1.0, 0.0]))
    # discarding the smallest third of each row zeroes exactly one weight per row
    soft = torch.tensor([[[[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]]]])
    dropped = attention.rollout(soft, discard_ratio=0.34, residual=False)
    torch.testing.assert_close(dropped[0], torch.tensor([0.5, 0.3, 0.0]) / 0.8)
    # batches: leading dimensions are independent
    batch = torch.stack([attentions, attentions.flip(1)])
    torch.testing.assert_close(attention.rollout(batch)[1], attention.rollout(attentions.flip(1)))
    with pytest.raises(ValueError, match="head_fusion"):
        attention.rollout(attentions, head_fusion="median")
    with pytest.raises(ValueError, match="discard_ratio"):
        attention.rollout(attentions, discard_ratio=1.0)


def test_rollout_rows_sum_to_one_on_real_attentions(cat_sentence):
    for fusion in attention.HEAD_FUSIONS:
        result = attention.rollout(cat_sentence.attentions, head_fusion=fusion, discard_ratio=0.5)
        torch.testing.assert_close(result.sum(-1), torch.ones(len(cat_sentence.tokens)))


def test_most_attended_skips_self_and_special_tokens():
    tokens = ["[CLS]", "a", "b", "c", "[SEP]"]
    matrix = torch.tensor([
        [0.2, 0.2, 0.2, 0.2, 0.2],
        [0.1, 0.5, 0.1, 0.05, 0.25],  # a: itself and [SEP] are larger, but b is the top ordinary token
        [0.3, 0.1, 0.2, 0.3, 0.1],    # b: c (0.3) ties with [CLS]; [CLS] is special
        [0.0, 0.4, 0.1, 0.1, 0.4],    # c: a
        [0.2, 0.2, 0.2, 0.2, 0.2],
    ])
    result = attention.most_attended(matrix, tokens)
    assert [(r.query, r.key) for r in result] == [("a", "b"), ("b", "c"), ("c", "a")]
    assert [r.key_index for r in result] == [2, 3, 1] and result[2].weight == pytest.approx(0.4)
    # a (layers, heads, T, T) tensor is averaged over layers and heads first
    stacked = torch.stack([matrix, matrix.roll(1, dims=1)]).reshape(2, 1, 5, 5)
    mean = (matrix + matrix.roll(1, dims=1)) / 2
    assert attention.most_attended(stacked, tokens) == attention.most_attended(mean, tokens)
    with pytest.raises(ValueError, match="tokens"):
        attention.most_attended(matrix, tokens[:4])


# --------------------------------------------------------------------------------------------
# Vision Transformer maps
# --------------------------------------------------------------------------------------------
def test_cls_maps_coverage_and_mask_mass_by_hand():
    weights = torch.zeros(5, 5)
    weights[0, 1:] = torch.tensor([0.1, 0.2, 0.3, 0.4])
    torch.testing.assert_close(attention.cls_maps(weights, 2), torch.tensor([[0.1, 0.2], [0.3, 0.4]]))
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[:2, :2] = True  # the top-left patch, fully
    mask[2, 2] = True    # a quarter of the bottom-right patch
    torch.testing.assert_close(attention.patch_coverage(mask, 2), torch.tensor([[1.0, 0.0], [0.0, 0.25]]))
    maps = torch.tensor([[0.1, 0.2], [0.3, 0.4]])
    assert attention.mask_mass(maps, mask).item() == pytest.approx((0.1 + 0.25 * 0.4) / 1.0)
    assert attention.mask_mass(torch.ones(2, 2), mask).item() == pytest.approx(mask.float().mean().item())
    assert attention.mask_mass(torch.zeros(2, 2), mask).item() == 0.0  # guarded, not NaN
    batch = attention.mask_mass(torch.stack([maps, torch.ones(2, 2)]).unsqueeze(1), torch.stack([mask, mask]))
    assert batch.shape == (2, 1) and batch[1, 0].item() == pytest.approx(1.25 / 4)
    with pytest.raises(ValueError, match="grid"):
        attention.cls_maps(weights, 3)


def test_layer_map_modes():
    attentions = torch.rand(3, 2, 5, 5).softmax(-1)
    torch.testing.assert_close(attention.layer_map(attentions, 2, 1, 0), attention.cls_maps(attentions[1, 0], 2))
    torch.testing.assert_close(attention.layer_map(attentions, 2, 1, "mean"), attention.cls_maps(attentions[1].mean(0), 2))
    torch.testing.assert_close(attention.layer_map(attentions, 2, 1, "rollout"),
                               attention.cls_maps(attention.rollout(attentions[:2]), 2))
    with pytest.raises(ValueError, match="head"):
        attention.layer_map(attentions, 2, 0, 5)


def test_tiny_vit_attentions_accuracy_and_object_focus(vit, shapes_test):
    x = vit.preprocess(shapes_test.images[:64])
    attentions = attention.vit_attentions(vit, x)
    assert attentions.shape == (64, 4, 4, 1 + vit.grid**2, 1 + vit.grid**2)
    torch.testing.assert_close(attentions.sum(-1), torch.ones(attentions.shape[:-1]), atol=1e-5, rtol=0)
    with torch.no_grad():
        accuracy = (vit.model(vit.preprocess(shapes_test.images)).argmax(1) == shapes_test.labels).float().mean().item()
    assert accuracy >= 0.88  # 0.902 for the committed weights
    masks = shapes_test.masks[:64]
    mass = attention.mask_mass(attention.cls_maps(attentions, vit.grid).mean(dim=2), masks)  # (64, layers)
    uniform = attention.mask_mass(torch.ones(vit.grid, vit.grid), masks)
    assert (mass[:, -1] > uniform).float().mean() > 0.8  # the last layer's CLS looks at the object
    rolled = attention.mask_mass(attention.cls_maps(attention.rollout(attentions), vit.grid), masks)
    assert rolled.mean() > uniform.mean()


def test_online_vit_fails_fast_offline_naming_the_default(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(xc.models.OfflineError, match="tiny_vit"):
        xc.models.vit("google/vit-base-patch16-224")


def test_vit_bundle_errors():
    with pytest.raises(ValueError, match="tiny_vit"):
        xc.models.vit("not-a-vit")
    with pytest.raises(TypeError, match="forward_attentions"):
        attention.vit_attentions(torch.nn.Linear(2, 2), torch.zeros(1, 3, 4, 4))


# --------------------------------------------------------------------------------------------
# bertviz offline
# --------------------------------------------------------------------------------------------
def _assets_present() -> bool:
    return all((xc.environment.ASSETS / name).exists() for name in xc.environment.NPM_ASSETS)


@pytest.mark.skipif(not _assets_present(), reason="bertviz JavaScript not fetched (run make setup)")
@pytest.mark.parametrize("kind", ["head", "model"])
def test_bertviz_html_references_no_network(cat_sentence, kind):
    html = xc.viz.bertviz_offline(*cat_sentence, kind=kind).data
    assert not re.search(r"https?://", html)
    assert "var requirejs, require, define" in html  # require.js inlined
    assert html.count("data:text/javascript;base64,") == 2  # d3 and jQuery
    assert "requirejs(['jquery', 'd3']" in html and '"[CLS]"' in html


def test_bertviz_without_assets_says_what_to_do(cat_sentence, monkeypatch, tmp_path):
    """A view cannot fall back to a widget (views sit below apps): it says which file is missing,
    how to get it, and which course explorer shows the same weights."""
    monkeypatch.setenv(xc.paths.ASSETS_ENV, str(tmp_path))
    notice = xc.viz.bertviz_offline(*cat_sentence, kind="head").data
    assert "make setup" in notice and "require.js" in notice and "attention_explorer" in notice
    assert "://" not in notice
    with pytest.raises(ValueError, match="kind"):
        xc.viz.bertviz_offline(*cat_sentence, kind="neuron")


# --------------------------------------------------------------------------------------------
# Widgets: sliders a browser test can find, and a view that changes when they move
# --------------------------------------------------------------------------------------------
def _sliders(box):
    import ipywidgets

    found, stack = {}, [box]
    while stack:
        widget = stack.pop()
        if isinstance(widget, ipywidgets.IntSlider):
            found[widget.description] = widget
        stack.extend(getattr(widget, "children", ()))
    return found


def test_attention_explorer_sliders_change_the_view(cat_sentence):
    explorer = xc.widgets.attention_explorer(*cat_sentence)
    sliders = _sliders(explorer)
    assert set(sliders) == {"layer", "head"} and sliders["head"].max == 11 and sliders["layer"].max == 5
    before = explorer.image.value
    assert before[:4] == b"\x89PNG"
    sliders["head"].value = 3
    assert explorer.image.value != before
    explorer.token.value = 2
    assert explorer.row.get_visible()
    assert [b.get_height() for b in explorer.bars] == pytest.approx(cat_sentence.attentions[0, 3, 2].tolist())


def test_vit_explorer_sliders_change_the_view(vit, shapes_test):
    image = shapes_test.images[0]
    attentions = attention.vit_attentions(vit, vit.preprocess(image))[0]
    explorer = xc.widgets.vit_attention_explorer(image.permute(1, 2, 0), attentions, vit.grid)
    sliders = _sliders(explorer)
    assert set(sliders) == {"layer", "head"}
    before = explorer.image.value
    sliders["head"].value = 1
    after = explorer.image.value
    assert after != before
    explorer.mode.value = "rollout"
    assert explorer.image.value != after and sliders["head"].disabled


def test_reading_attentions_leaves_the_models_as_found(bert, vit):
    vit.model.train()
    try:
        before = snapshot(vit.model)
        attention.vit_attentions(vit, torch.zeros(1, 3, 64, 64))
        assert_unchanged(vit.model, before)
        assert vit.model.training and all(p.grad is None for p in vit.model.parameters())
    finally:
        vit.model.eval()
    attention.get_attentions(bert, TEXT)
    # transformers 5 installs its own output-capturing hooks (2 per layer) once, on the first call
    # with output_attentions=True; they must not grow with further calls
    before = snapshot(bert.model)
    attention.get_attentions(bert, TEXT)
    assert_unchanged(bert.model, before)
    assert not bert.model.training and hooks_left(bert.model) == before.hooks <= 12
    assert hooks_left(vit.model) == 0
