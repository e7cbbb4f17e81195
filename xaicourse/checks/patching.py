"""Checks of chapter 10's exercises: activation patching of one module, direct logit attribution, the induction head.

Graded on the tiny GPT (``models.tiny_gpt()``) against :mod:`xaicourse.patching`; each catalogue
rebuilds the typical wrong answers with the reference's own pieces.
"""
from __future__ import annotations

import copy

import torch

from .. import models, patching
from ..hooks import eval_mode, record_layer, replace_output
from .core import CheckFailed, Mistake, ModelState, compare, expect, expect_as_found, grader

__all__ = ["check_direct_logit_attribution", "check_find_induction_head", "check_patch_module", "gpt_case"]


def gpt_case(n: int = 16, seed: int = 7000):
    """The graders' fixed case: the tiny GPT, clean ids, corrupt ids (first copy replaced) and the second-copy metric. Chapter 10."""
    bundle = copy.deepcopy(models.tiny_gpt())  # a hook the learner's code leaves behind stays on the grader's copy
    clean = bundle.sequences(n, seed=seed)
    corrupt = clean.clone()
    corrupt[:, 1:bundle.half + 1] = bundle.sequences(n, seed=seed + 1)[:, 1:bundle.half + 1]
    return bundle, clean, corrupt, patching.next_token_metric(clean, range(bundle.half + 1, 2 * bundle.half))


# --------------------------------------------------------------------------------------------
# Exercise 10.1: activation patching of one module
# --------------------------------------------------------------------------------------------
def _patched_metric(model, source_ids, run_ids, metric, module) -> float:
    """The metric on ``run_ids`` with ``module``'s output taken from a run on ``source_ids``."""
    with torch.no_grad(), eval_mode(model):
        with record_layer(model, module) as rec:
            model(source_ids)
        with replace_output(model, module, lambda out: rec.activations):
            return patching._mean_metric(metric, model(run_ids)).item()


def _metric(model, ids, metric) -> float:
    with torch.no_grad(), eval_mode(model):
        return patching._mean_metric(metric, model(ids)).item()


@grader
def check_patch_module(patch_module) -> str:
    """Grade ``patch_module(model, clean_ids, corrupt_ids, metric, module) -> float``. Chapter 10.

    Expected: run the corrupt ids with ``module``'s output replaced by its output on the clean ids,
    and return (metric_patched - metric_corrupt) / (metric_clean - metric_corrupt), as
    :func:`xaicourse.patching.activation_patching` for one module name. The model is left as found.
    """
    bundle, clean, corrupt, metric = gpt_case()
    model = bundle.model
    c, k = _metric(model, clean, metric), _metric(model, corrupt, metric)
    for module in ("blocks.0.attn", "blocks.1.attn", "blocks.0.hook_resid_post"):  # the first tells the mistakes apart
        before = ModelState.of(model)
        got = patch_module(model, clean, corrupt, metric, module)
        expect_as_found(model, before, grad_of="nothing (patching needs no gradient: use torch.no_grad())")
        want = patching.activation_patching(model, clean, corrupt, metric, [module]).item()
        patched = _patched_metric(model, clean, corrupt, metric, module)
        compare(got, want, [
            Mistake(f"for {module!r} you returned the patched metric itself ({patched:.3f}), not the normalised effect: "
                    "divide (patched - corrupt) by (clean - corrupt)", patched),
            Mistake(f"for {module!r} you returned patched - corrupt without dividing by clean - corrupt "
                    f"({c - k:.3f})", patched - k),
            Mistake(f"for {module!r} you patched the corrupt output into the clean run (noising), not the clean "
                    "output into the corrupt run: record on clean_ids, run corrupt_ids",
                    lambda: (_patched_metric(model, corrupt, clean, metric, module) - k) / (c - k)),
            Mistake(f"for {module!r} your effect is measured from the clean end: (patched - clean) / (corrupt - "
                    "clean) gives 1 - effect; measure from the corrupt run, (patched - corrupt) / (clean - corrupt)",
                    (patched - c) / (k - c)),
            Mistake(f"for {module!r} your effect is 0: the value you patched in is the corrupt run's own (record "
                    "the module's output during a run on clean_ids, then patch it into the corrupt run)",
                    0.0),
        ], atol=2e-4, rtol=1e-3,
            otherwise=lambda g: f"for {module!r} your effect is {float(g):.4f}, the reference "
                                f"activation_patching gives {want:.4f}: record the output on clean_ids, replace it "
                                "while running corrupt_ids, normalise")
    return ("the effects of 'blocks.0.attn', 'blocks.1.attn' and 'blocks.0.hook_resid_post' match "
            "activation_patching, and no hook is left behind")


# --------------------------------------------------------------------------------------------
# Exercise 10.2: direct logit attribution
# --------------------------------------------------------------------------------------------
def dla_with(model, ids, targets, *, transpose_out=False, current_token=False, with_bias=False,
             all_tokens_mean=False) -> torch.Tensor:
    """Direct logit attribution done right (the defaults) or with one known mistake. Chapter 10."""
    names = [f"blocks.{i}.attn.hook_z" for i in range(len(model.blocks))]
    acts = patching.cache(model, ids, names)
    picked = ids if current_token else targets
    w_u = model.unembed.weight[picked]  # (B, T, d_model)
    layers = []
    with torch.no_grad():
        for blk, name in zip(model.blocks, names):
            attn = blk.attn
            w = attn.out.weight.T if transpose_out else attn.out.weight
            results = torch.einsum("bthd,mhd->bthm", acts[name], w.reshape(-1, attn.n_heads, attn.d_head))
            if with_bias:
                results = results + attn.out.bias / attn.n_heads
            if all_tokens_mean:
                layers.append(torch.einsum("bthm,vm->bthv", results, model.unembed.weight).mean(-1))
            else:
                layers.append(torch.einsum("bthm,btm->bth", results, w_u))
    return torch.stack(layers, dim=2)


@grader
def check_direct_logit_attribution(dla) -> str:
    """Grade ``dla(model, ids, targets) -> (B, T, n_layers, n_heads)``. Chapter 10.

    Expected: each head's output before the projection, ``z`` (B, T, H, d_head) from
    ``blocks.<l>.attn.hook_z``, times its slice of the output projection ``W_O[:, h]`` (d_model x
    d_head), dotted with the unembedding row of the target token, ``W_U[targets]``: as
    :func:`xaicourse.patching.direct_logit_attribution`.
    """
    bundle, clean, _, _ = gpt_case(n=8)
    model = bundle.model
    targets = torch.roll(clean, -1, dims=1)
    before = ModelState.of(model)
    got = dla(model, clean, targets)
    expect_as_found(model, before, grad_of="nothing (use torch.no_grad())")
    want = patching.direct_logit_attribution(model, clean, targets)
    compare(got, want, [
        Mistake("you used the output projection transposed: nn.Linear stores its weight as (out_features, "
                "in_features) = (d_model, H * d_head), so head h's columns are weight.view(d_model, H, d_head)[:, h]",
                lambda: dla_with(model, clean, targets, transpose_out=True)),
        Mistake("you dotted each head with the unembedding of the current token (ids), not of the token it "
                "predicts (targets, the next token)", lambda: dla_with(model, clean, targets, current_token=True)),
        Mistake("you added the projection's bias to the heads: the bias belongs to no head (it is a constant the "
                "layer adds whatever the heads do); leave it out", lambda: dla_with(model, clean, targets, with_bias=True)),
        Mistake("you averaged over the whole vocabulary: direct logit attribution is about one logit, the target's: "
                "dot with W_U[targets] (B, T, d_model)", lambda: dla_with(model, clean, targets, all_tokens_mean=True)),
    ], atol=1e-4, rtol=1e-4, otherwise="your values differ from the reference: z (B, T, H, d_head) -> per head "
                                        "z[:, :, h] @ W_O[:, h].T -> dot with W_U[targets]",
        shape_hint="one number per sample, position, layer and head: stack the layers on dim 2, heads on dim 3")
    other = torch.randint(1, len(bundle.tokenizer), clean.shape, generator=torch.Generator().manual_seed(0))
    compare(dla(model, clean, other), patching.direct_logit_attribution(model, clean, other), [
        Mistake("with targets that are not the next tokens your answer is still the next tokens' DLA: use the "
                "`targets` argument (W_U[targets]), not torch.roll(ids, -1)",
                lambda: patching.direct_logit_attribution(model, clean, targets)),
    ], atol=1e-4, rtol=1e-4, otherwise="with other target tokens your values differ from the reference: dot each "
                                       "head's output with W_U[targets]")
    return "per-head direct logit attributions match the reference on 8 sequences, for the next tokens and for other targets"


# --------------------------------------------------------------------------------------------
# Exercise 10.3: the induction head from a patching table
# --------------------------------------------------------------------------------------------
_TABLES = [  # (effects (n_layers, n_heads), the induction head, why the case is there)
    (torch.tensor([[0.02, -0.01, 0.03, 0.00], [0.01, 0.87, -0.02, 0.00]]), (1, 1), "a plain table"),
    (torch.tensor([[0.01, 0.00, 0.02], [0.00, 0.03, -0.01], [0.01, 0.02, 0.71]]), (2, 2),
     "3 layers x 3 heads"),
    (torch.tensor([[0.00, 0.01, 0.00, 0.02, 0.01, 0.00], [0.01, 0.02, 0.00, 0.00, 0.64, 0.01]]), (1, 4),
     "2 layers x 6 heads"),
    (torch.tensor([[0.01, 0.02, 0.00, 0.01], [-0.93, 0.05, 0.61, 0.02]]), (1, 2),
     "a head whose patch makes things worse"),
    (torch.tensor([[0.88, 0.02, 0.79, 0.01], [0.03, 0.02, 0.74, 0.00]]), (1, 2),
     "noising: previous-token heads in layer 0 score high too"),
    (torch.tensor([[0.02, 0.01, 0.00], [0.00, 0.81, 0.03], [0.12, 0.00, 0.05]]), (1, 1),
     "3 layers, the induction head in the middle one"),
]


def _wrong_answers(table: torch.Tensor) -> dict:
    n_layers, n_heads = table.shape
    flat_abs = int(table.abs().flatten().argmax())
    flat = int(table.flatten().argmax())
    by_abs = divmod(flat_abs, n_heads)
    return {
        "a layer-0 head cannot be the induction head: it sees each token and its position but not yet which token "
        "came before (that is what a previous-token head in an earlier layer writes); look in layers >= 1":
            divmod(flat, n_heads) if flat // n_heads == 0 else None,
        "you took the largest |effect|: a negative effect means the patch made the clean behaviour less likely; "
        "the head that restores it has the largest positive effect": by_abs if table[by_abs] < 0 else None,
        "you unravelled the flat index with the wrong axis: for a (n_layers, n_heads) table, flat index i is layer "
        "i // n_heads, head i % n_heads": (flat % n_layers, flat // n_layers) if n_layers != n_heads else None,
    }


@grader
def check_find_induction_head(find_induction_head) -> str:
    """Grade ``find_induction_head(effects) -> (layer, head)`` for a patching table (n_layers, n_heads). Chapter 10.

    Expected: the head with the largest positive effect among layers >= 1 (an induction head needs a
    previous-token head in an earlier layer), as Python ints.
    """
    for table, answer, why in _TABLES:
        got = find_induction_head(table.clone())
        expect(isinstance(got, (tuple, list)) and len(got) == 2,
               f"return a pair (layer, head), got {got!r}")
        try:
            got = (int(got[0]), int(got[1]))
        except (TypeError, ValueError):
            raise CheckFailed(f"return two integers (layer, head), got {got!r}") from None
        if got != answer:
            for hint, wrong in _wrong_answers(table).items():
                if wrong is not None and got == tuple(wrong):
                    raise CheckFailed(f"on {why}: {hint}")
            raise CheckFailed(f"on {why} (table {table.tolist()}) the induction head is layer {answer[0]}, head "
                              f"{answer[1]}; you returned {got}")
    return (f"the induction head found in all {len(_TABLES)} tables (several shapes, a negative effect, a noising table, "
            "an induction head below the last layer)")
