"""Chapter 10: what finding the circuit costs, side by side in one run.

Activation patching of the tiny GPT's 8 heads on 64 clean / corrupt pairs (one forward pass per head;
target: a full per-head sweep in under 1 s) and per head and position (168 sites), against attribution
patching (two forward passes and one backward pass for every site; target: at least 10x faster than the
real per-position sweep). Then attribution for generation on 20 sequences (9 generated tokens each):
ours (batched over the sequences) against Captum's ``LLMGradientAttribution`` / ``LLMAttribution``
(one sequence at a time, as their API takes one prompt), and one move of the circuit explorer.

    python -m benchmarks patching
"""
from functools import partial

from .harness import compare, measure, table

TITLE = "Inside a language model: activation patching vs attribution patching; generation attribution vs Captum"
N_PAIRS, N_SEQUENCES, IG_STEPS, MOVES, TARGET_S = 64, 20, 50, 20, 0.1


def _pair():
    import xaicourse as xc

    gpt = xc.models.tiny_gpt()
    clean = gpt.sequences(N_PAIRS, seed=4000)
    corrupt = clean.clone()
    corrupt[:, 1:gpt.half + 1] = gpt.sequences(N_PAIRS, seed=4500)[:, 1:gpt.half + 1]
    return gpt, clean, corrupt, xc.patching.next_token_metric(clean, range(gpt.half + 1, 2 * gpt.half))


def heads_sweep():
    import xaicourse as xc

    gpt, clean, corrupt, metric = _pair()
    return partial(xc.patching.activation_patching, gpt.model, clean, corrupt, metric, gpt.heads)


def positions_sweep():
    import xaicourse as xc

    gpt, clean, corrupt, metric = _pair()
    return partial(xc.patching.activation_patching, gpt.model, clean, corrupt, metric, gpt.heads, per_position=True)


def attribution_patching():
    import xaicourse as xc

    gpt, clean, corrupt, metric = _pair()
    return partial(xc.patching.attribution_patching, gpt.model, clean, corrupt, metric, gpt.heads, per_position=True)


def _generations():
    import xaicourse as xc

    gpt = xc.models.tiny_gpt()
    return gpt, gpt.sequences(N_SEQUENCES, seed=3000), gpt.half + 2


def ours_ig():
    import xaicourse as xc

    gpt, ids, prompt_len = _generations()
    return partial(xc.generation.integrated_gradients, gpt.model, ids, prompt_len, n_steps=IG_STEPS)


def ours_ablation():
    import xaicourse as xc

    gpt, ids, prompt_len = _generations()
    return partial(xc.generation.ablation, gpt.model, ids, prompt_len)


def _captum(kind: str):
    from captum.attr import FeatureAblation, LayerIntegratedGradients, LLMAttribution, LLMGradientAttribution, TextTokenInput

    gpt, ids, prompt_len = _generations()
    model, tok = gpt.for_captum()
    cases = [(TextTokenInput(gpt.tokenizer.decode(row[1:prompt_len]), tok, baselines=0),
              gpt.tokenizer.decode(row[prompt_len:])) for row in ids]
    if kind == "ig":
        method = LLMGradientAttribution(LayerIntegratedGradients(model, model.embed), tok)
        return lambda: [method.attribute(text, target=target, n_steps=IG_STEPS) for text, target in cases]
    method = LLMAttribution(FeatureAblation(model), tok)
    return lambda: [method.attribute(text, target=target, forward_in_tokens=False) for text, target in cases]


def captum_ig():
    return _captum("ig")


def captum_ablation():
    return _captum("ablation")


def explorer_move():
    import torch

    import xaicourse as xc

    gpt, clean, corrupt, metric = _pair()
    effects = xc.patching.activation_patching(gpt.model, clean, corrupt, metric, gpt.heads, per_position=True)
    names = [f"blocks.{l}.attn.hook_pattern" for l in range(gpt.n_layers)]
    patterns = torch.stack(list(xc.patching.cache(gpt.model, clean[:1], names).values()), 1)[0]
    T = clean.shape[1]
    explorer = xc.widgets.circuit_explorer(patterns, effects.view(gpt.n_layers, gpt.n_heads, T), [str(i) for i in range(T)])
    state = {"head": 0}

    def move():
        state["head"] = (state["head"] + 1) % gpt.n_heads
        explorer.head.value = state["head"]
    return move


GROUPS = {
    f"Activation patching, {N_PAIRS} pairs (per head: 8 sites; per position: 168 sites)": [
        ("attribution patching, per head and position", "attribution_patching"),
        ("activation patching, per head", "heads_sweep"),
        ("activation patching, per head and position", "positions_sweep")],
    f"Generation attribution, {N_SEQUENCES} sequences x 9 generated tokens (IG: {IG_STEPS} steps)": [
        ("ours: integrated gradients", "ours_ig"), ("Captum LLMGradientAttribution(LayerIntegratedGradients)", "captum_ig"),
        ("ours: token ablation", "ours_ablation"), ("Captum LLMAttribution(FeatureAblation)", "captum_ablation")],
}


def run() -> str:
    sections = []
    for title, rows in GROUPS.items():
        measured = compare([(label, f"benchmarks.bench_patching:{case}") for label, case in rows], rounds=3, repeat=3)
        sections += [f"{title}:", table(measured, measured[0][0])]
        times = {label: m.median_s for label, m in measured}
        if "activation patching, per head" in times:
            ratio = times["activation patching, per head and position"] / times["attribution patching, per head and position"]
            sections.append(f"- per-head sweep {times['activation patching, per head'] * 1000:.0f} ms -> "
                            f"{'meets' if times['activation patching, per head'] < 1 else 'MISSES'} the 1 s target; "
                            f"attribution patching is {ratio:.0f}x faster than the real per-position sweep -> "
                            f"{'meets' if ratio >= 10 else 'MISSES'} the 10x target")
    move = measure("benchmarks.bench_patching:explorer_move", repeat=MOVES, warmup=2)
    sections.append(f"Circuit explorer: median {move.median_s * 1000:.1f} ms per slider move over {MOVES} moves -> "
                    f"{'meets' if move.median_s <= TARGET_S else 'MISSES'} the {TARGET_S * 1000:.0f} ms target")
    return "\n\n".join(sections)
