"""Chapter 09: what an explanation of a Transformer costs, side by side in one run.

Attention relevance (Chefer et al. 2021: one forward and one backward pass) against chapter 04's
rollout (one forward pass, no gradient), Integrated Gradients with 50 steps (the attribution
reference) and Grad-CAM (one forward and backward pass), on the tiny ViT (one image and a batch of
64) and on the MiniLM sentiment classifier (one sentence). Grad-CAM needs a feature map, so it has
no text row. Each case is measured in its own process, in alternating rounds (harness.compare).
Then the chapter's relevance explorers: a slider or dropdown move (target: <= 100 ms).

    python -m benchmarks relevance
"""
from functools import partial

from .harness import compare, measure, table

TITLE = "Explaining Transformers: relevance vs rollout vs IG (50 steps) vs Grad-CAM"
SENTENCE = "a tedious, lifeless film with a dreadful script, saved only by its lead."
IG_STEPS = 50


def _vit(batch: int):
    import xaicourse as xc

    vit = xc.models.tiny_vit()
    x = vit.preprocess(xc.data.shapes(batch, seed=1).images)
    return vit, x


def _sentiment():
    import xaicourse as xc

    text_model = xc.models.sentiment_classifier()
    if text_model.model.config._attn_implementation != "eager":
        text_model.model.set_attn_implementation("eager")  # SDPA forms no attention weights
    return text_model


def vit_relevance(batch: int = 1):
    import xaicourse as xc

    vit, x = _vit(batch)
    return partial(xc.relevance.attention_relevance, vit.model, x)


def vit_relevance_64():
    return vit_relevance(64)


def vit_rollout(batch: int = 1):
    import xaicourse as xc

    vit, x = _vit(batch)
    return lambda: xc.attention.rollout(xc.attention.vit_attentions(vit, x))[:, 0, 1:]


def vit_rollout_64():
    return vit_rollout(64)


def vit_ig(batch: int = 1, n_steps: int = IG_STEPS):
    import xaicourse as xc

    vit, x = _vit(batch)
    return partial(xc.relevance.patch_integrated_gradients, vit.model, x, n_steps=n_steps)


def vit_ig_64():
    return vit_ig(64)


def vit_grad_cam(batch: int = 1):
    import xaicourse as xc

    vit, x = _vit(batch)
    return partial(xc.cam.grad_cam, vit.model, None, x)  # blocks[-1].norm1, reshape="vit"


def vit_grad_cam_64():
    return vit_grad_cam(64)


def text_relevance():
    import xaicourse as xc

    text_model = _sentiment()
    return partial(xc.relevance.attention_relevance, text_model, SENTENCE)


def text_rollout():
    import xaicourse as xc

    text_model = _sentiment()
    return lambda: xc.attention.rollout(xc.attention.get_attentions(text_model, SENTENCE).attentions)[0]


def text_ig(n_steps: int = IG_STEPS):
    import xaicourse as xc

    interpreter = xc.interpret.TextClassifierInterpreter(_sentiment(), n_steps=n_steps)
    return partial(interpreter.interpret, SENTENCE)


def _mover(control, values):
    """One call = one move of ``control`` to the next of ``values`` (wrapping around), as a learner would."""
    state = {"i": 0}

    def move():
        state["i"] += 1
        control.value = values[state["i"] % len(values)]

    return move


def vit_explorer_layer_slider():
    from xaicourse.widgets.relevance import relevance_explorer

    import xaicourse as xc

    explorer = relevance_explorer(xc.models.tiny_vit(), xc.data.shapes(1, seed=1).images[0])  # pixels in [0, 1]
    return _mover(explorer.layer, list(range(explorer.layer.min, explorer.layer.max + 1)))


def vit_explorer_method():
    from xaicourse.widgets.relevance import relevance_explorer

    import xaicourse as xc

    explorer = relevance_explorer(xc.models.tiny_vit(), xc.data.shapes(1, seed=1).images[0])  # pixels in [0, 1]
    return _mover(explorer.method, [value for _, value in explorer.method.options])


def text_explorer_layer_slider():
    from xaicourse.widgets.relevance import text_relevance_explorer

    explorer = text_relevance_explorer(_sentiment(), SENTENCE)
    return _mover(explorer.layer, list(range(explorer.layer.min, explorer.layer.max + 1)))


SLIDERS = [("ViT relevance explorer: layer slider", "vit_explorer_layer_slider"),
           ("ViT relevance explorer: method dropdown", "vit_explorer_method"),
           ("text relevance explorer: layer slider", "text_explorer_layer_slider")]
MOVES = 20
TARGET_S = 0.100

#: (label, factory) per group; the first row of each group is the reference of its ratios.
GROUPS = {
    "tiny ViT, one 64 x 64 image": [("relevance (gradient rollout)", "vit_relevance"),
                                    ("rollout (chapter 04)", "vit_rollout"),
                                    (f"IG, {IG_STEPS} steps, patch embeddings", "vit_ig"),
                                    ("Grad-CAM, blocks[-1].norm1", "vit_grad_cam")],
    "tiny ViT, a batch of 64 images": [("relevance (gradient rollout)", "vit_relevance_64"),
                                       ("rollout (chapter 04)", "vit_rollout_64"),
                                       (f"IG, {IG_STEPS} steps, patch embeddings", "vit_ig_64"),
                                       ("Grad-CAM, blocks[-1].norm1", "vit_grad_cam_64")],
    "MiniLM sentiment classifier, one sentence": [("relevance (gradient rollout)", "text_relevance"),
                                                  ("rollout (chapter 04)", "text_rollout"),
                                                  (f"IG, {IG_STEPS} steps, word embeddings", "text_ig")],
}


def smoke() -> list[str]:
    """Run every case once with tiny settings (no timing): the factories and callables work. Chapter 09."""
    import sys

    module = sys.modules[__name__]
    small = {"vit_ig": lambda: vit_ig(1, n_steps=4), "vit_ig_64": lambda: vit_ig(2, n_steps=4),
             "text_ig": lambda: text_ig(n_steps=4), "vit_relevance_64": lambda: vit_relevance(2),
             "vit_rollout_64": lambda: vit_rollout(2), "vit_grad_cam_64": lambda: vit_grad_cam(2)}
    ran = []
    for rows in [*GROUPS.values(), SLIDERS]:
        for _, case in rows:
            small.get(case, getattr(module, case))()()
            ran.append(case)
    return ran


def run() -> str:
    sections = []
    for title, rows in GROUPS.items():
        measured = compare([(label, f"benchmarks.bench_relevance:{case}") for label, case in rows], rounds=3, repeat=3)
        sections += [f"{title}:", table(measured, measured[0][0])]
    sections.append("Grad-CAM needs a feature map (B, C, h, w): there is no Grad-CAM row for text.")
    moves = [(label, measure(f"benchmarks.bench_relevance:{case}", repeat=MOVES, warmup=2)) for label, case in SLIDERS]
    sections += ["Explorer moves (attentions and gradients recorded once; a (method, layer) map is computed on first "
                 "use, then cached):", table(moves, moves[0][0]),
                 "\n".join(f"- {label}: median {m.median_s * 1000:.1f} ms per move over {MOVES} moves -> "
                           f"{'meets' if m.median_s <= TARGET_S else 'MISSES'} the {TARGET_S * 1000:.0f} ms target"
                           for label, m in moves)]
    return "\n\n".join(sections)


if __name__ == "__main__":
    print("ran:", ", ".join(smoke()))
