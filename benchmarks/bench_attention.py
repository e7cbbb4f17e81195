"""Chapter 04: how fast the attention explorers answer a slider move, and how fast rollout is.

A slider move re-indexes attentions cached when the widget was built and redraws only the artists
that changed (no forward pass). Target: median over 20 moves <= 100 ms for both explorers.

    python -m benchmarks attention
"""
from itertools import count

from .harness import measure, table

TITLE = "Attention explorers (slider move) and attention rollout"
TEXT = "The cat sat on the mat because it was tired"
MOVES = 20
TARGET_S = 0.100


def _bert_attentions():
    import xaicourse as xc

    return xc.attention.get_attentions(xc.models.bert(), TEXT)


def _vit_image_and_attentions():
    import xaicourse as xc

    vit = xc.models.tiny_vit()
    image = xc.data.shapes(1, seed=1).images[0]
    return vit, image, xc.attention.vit_attentions(vit, vit.preprocess(image))


def _mover(slider):
    """One call = one slider move to the next value (wrapping around), as a learner would drag it."""
    values = count(1)
    span = slider.max - slider.min + 1

    def move():
        slider.value = slider.min + next(values) % span

    return move


def bert_head_slider():
    import xaicourse as xc

    explorer = xc.widgets.attention_explorer(*_bert_attentions())
    return _mover(explorer.head)


def bert_layer_slider():
    import xaicourse as xc

    explorer = xc.widgets.attention_explorer(*_bert_attentions())
    explorer.token.value = 2
    return _mover(explorer.layer)


def vit_head_slider():
    import xaicourse as xc

    vit, image, attentions = _vit_image_and_attentions()
    explorer = xc.widgets.vit_attention_explorer(image.permute(1, 2, 0), attentions[0], vit.grid)
    return _mover(explorer.head)


def vit_rollout_layer_slider():
    import xaicourse as xc

    vit, image, attentions = _vit_image_and_attentions()
    explorer = xc.widgets.vit_attention_explorer(image.permute(1, 2, 0), attentions[0], vit.grid)
    explorer.mode.value = "rollout"
    return _mover(explorer.layer)


def rollout_bert():
    from functools import partial

    import xaicourse as xc

    return partial(xc.attention.rollout, _bert_attentions().attentions)


def rollout_vit_batch_64():
    from functools import partial

    import xaicourse as xc

    vit = xc.models.tiny_vit()
    x = vit.preprocess(xc.data.shapes(64, seed=1).images)
    return partial(xc.attention.rollout, xc.attention.vit_attentions(vit, x))


def run() -> str:
    sliders = [
        ("BERT explorer: head slider", "bert_head_slider"),
        ("BERT explorer: layer slider (token selected)", "bert_layer_slider"),
        ("ViT explorer: head slider", "vit_head_slider"),
        ("ViT explorer: layer slider, rollout mode", "vit_rollout_layer_slider"),
    ]
    rows = [(label, measure(f"benchmarks.bench_attention:{case}", repeat=MOVES, warmup=2)) for label, case in sliders]
    verdicts = [f"- {label}: median {m.median_s * 1000:.1f} ms per move over {MOVES} moves -> "
                f"{'meets' if m.median_s <= TARGET_S else 'MISSES'} the {TARGET_S * 1000:.0f} ms target"
                for label, m in rows]
    rollouts = [("rollout, BERT 6 layers x 12 heads, 11 tokens", measure("benchmarks.bench_attention:rollout_bert", repeat=20)),
                ("rollout, tiny ViT batch of 64 (4 layers x 4 heads, 65 tokens)",
                 measure("benchmarks.bench_attention:rollout_vit_batch_64", repeat=20))]
    return "\n\n".join([
        "Slider moves (attentions cached; each move redraws the view into the widget's PNG):",
        table(rows, rows[0][0]), "\n".join(verdicts),
        "Attention rollout:", table(rollouts, rollouts[0][0]),
        "\n".join(f"- {label}: {m.median_s * 1000:.2f} ms" for label, m in rollouts),
    ])
