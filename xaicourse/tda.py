"""Training-data attribution scored against retraining: which method predicts what removing data does. Chapter 12.

:mod:`xaicourse.influence` estimates how each training example moved a test prediction;
:mod:`xaicourse.retraining` measures it, by leave-one-out and by 200 retrainings on random halves.
This module scores the first against the second:

* :func:`lds`, the *linear datamodeling score* (Park et al. 2023): do a method's scores, summed over
  a subset, rank the subsets as retraining does?
* :func:`loo_correlation`: do they rank the training examples as leave-one-out does?
* :func:`method_scores`: every method on the retrained head; :func:`results` and :func:`table`.

What the numbers show (``python -m xaicourse.retraining``; 300 training x 100 test examples)
---------------------------------------------------------------------------------------------
| method | LDS (200 halves) | Spearman with LOO |
|---|---:|---:|
| random control | 0.004 | -0.000 |
| gradient similarity (dot) | 0.402 | 0.252 |
| gradient similarity (cosine) | 0.241 | 0.254 |
| TracIn (10 checkpoints) | 0.292 | 0.191 |
| TracIn (every step) | 0.388 | 0.221 |
| influence function, last layer, exact Hessian | 0.611 | 0.429 |
| influence function, whole model, exact Hessian | 0.238 | 0.254 |
| influence function, whole model, CG | 0.541 | 0.528 |
| influence function, whole model, CG, damping x10 | 0.573 | 0.400 |

Random scores give an LDS of 0.000 +- 0.005 and a LOO Spearman of 0.000 +- 0.006 (20 draws,
tests/test_retraining.py): every method is far above chance, and none is close to 1. Damping is the
weight decay (1e-3) unless marked; CG runs 100 steps.

TracIn and gradient similarity rank the LOO effects worst (0.19 to 0.25): they measure what an
example contributed along the trajectory (or at the end of it), not what removing it changes, and
the retrained network compensates for a missing example with the others. Saving every step instead
of 10 checkpoints helps TracIn's LDS (0.29 to 0.39) more than its LOO correlation.

Planted mislabels (15 of 300 labels flipped): self-influence (TracIn's diagonal over the 10
checkpoints) puts 4 of them in its top 5, 8 in its top 10 and 11 in its top 15 (precision 0.80,
0.80, 0.73; random ranking: 0.05). Test accuracy on 500 correctly labelled images: 0.916 trained on
everything, 0.924 without the 15 flagged examples (+0.8 points: 4 images), 0.942 without exactly
the 15 flipped ones (the best one could do), 0.900 without 15 random examples.

**Where influence functions fail here.** They are derived for a convex loss at its minimum. This
head is neither: 343 of the 1,155 eigenvalues of the training loss's Hessian at the trained weights
are negative (33 more are zero to rounding) (down to -0.011, against the damping of 0.001), and 300 steps stop before
convergence. The exact whole-model solve of ``(H + damping I)^-1`` is then dominated by directions of
near-zero and negative curvature, and it scores worst of the influence functions (LDS 0.24, no better
than the cosine). Restricted to the last layer, where the loss is convex in the weights (a softmax
regression on fixed hidden features), the same formula is the best method by LDS (0.61). Conjugate
gradients on the whole model does well (LOO 0.53), but not because it solves the system: CG assumes
a positive-definite matrix, and after 100 steps its residual is still up to 81 times the right-hand
side (``influence_function`` warns). It is a truncated Krylov solve, a regularised inverse, not the
influence function of the theory; more steps or less damping move it towards the poor exact
solve. This is Basu et al.'s (2021) finding at toy scale: on a non-convex network the answer depends
on the damping, the solver and where it stops, and only a retraining check tells which setting to
trust. Even the best method predicts a random half's effect with a rank correlation of about 0.6:
first-order estimates miss the interactions of removing 150 examples at once.

Print the table from the cache with ``python -m xaicourse.tda`` (about 10 s).
"""
from __future__ import annotations

import argparse

import torch

from . import influence
from .retraining import SETUP, Problem, Run, check_problem, load, loss_fn, new_model, problem, train

__all__ = ["lds", "loo_correlation", "method_scores", "results", "table"]


# --------------------------------------------------------------------------------------------
def _tensor(name: str, value) -> torch.Tensor:
    try:
        return torch.as_tensor(value)
    except (TypeError, RuntimeError, ValueError):
        raise TypeError(f"{name} must be a tensor or an array of numbers, got {type(value).__name__}") from None


def _check_scores(scores, n_test: int, n_train: int, against: str):
    scores = _tensor("scores", scores)
    if scores.shape != (n_test, n_train):
        raise ValueError(f"scores must be (n_test, n_train) = ({n_test}, {n_train}) to match {against}, "
                         f"got {tuple(scores.shape)}")
    return scores


def lds(scores, subsets, outputs) -> float:
    """The linear datamodeling score (Park et al. 2023): how well summed scores predict retraining. Chapter 12.

    ``scores`` (n_test, n_train): a method's attribution of each test example to each training
    example; ``subsets`` (n_subsets, n_train) bool: the training examples each retraining kept;
    ``outputs`` (n_subsets, n_test): each retrained model's margin on each test example. For each
    test example, the Spearman correlation across subsets between the summed scores of the kept
    examples and the retrained output; the mean over test examples (in [-1, 1]; 0 for random scores).
    """
    subsets, outputs = _tensor("subsets", subsets), _tensor("outputs", outputs)
    if subsets.dim() != 2 or outputs.dim() != 2 or len(subsets) != len(outputs) or len(subsets) < 2:
        raise ValueError(f"subsets (n_subsets, n_train) and outputs (n_subsets, n_test) must have one row per "
                         f"retraining, at least 2 (a rank correlation across them), got {tuple(subsets.shape)} and "
                         f"{tuple(outputs.shape)}")
    if subsets.dtype != torch.bool:
        raise TypeError(f"subsets must be bool masks (True: the retraining kept that training example), got {subsets.dtype}: "
                        "make them with retraining.random_subsets")
    scores = _check_scores(scores, outputs.shape[1], subsets.shape[1], "subsets and outputs").double()
    from scipy.stats import spearmanr  # after the checks: bad input fails before the import

    predicted = subsets.double() @ scores.T  # (n_subsets, n_test): the sum of each subset's scores
    per_test = [spearmanr(predicted[:, j], outputs[:, j]).statistic for j in range(outputs.shape[1])]
    return float(torch.tensor(per_test, dtype=torch.float64).nanmean())


def loo_correlation(scores, effects) -> float:
    """The mean over test examples of the Spearman correlation between scores and true LOO effects. Chapter 12.

    ``scores`` and ``effects`` are both (n_test, n_train) (``effects`` from :func:`leave_one_out`).
    """
    effects = _tensor("effects", effects)
    if effects.dim() != 2 or effects.shape[1] < 2:
        raise ValueError(f"effects must be (n_test, n_train) with n_train >= 2 (a rank correlation over the training "
                         f"examples), from retraining.leave_one_out; got {tuple(effects.shape)}")
    scores = _check_scores(scores, *effects.shape, "the leave-one-out effects")
    from scipy.stats import spearmanr

    per_test = [spearmanr(scores[j], effects[j]).statistic for j in range(len(effects))]
    return float(torch.tensor(per_test, dtype=torch.float64).nanmean())


def method_scores(p: Problem, run: Run, *, seed: int = 0) -> dict:
    """Every method's scores (n_test, n_train) for the trained ``run``, by name, and a random control. Chapter 12.

    TracIn runs twice: over the run's 10 checkpoints (TracInCP as used in practice) and over all 300
    steps (the first-order sum TracIn approximates; the head is retrained to save every step).

    Damping of the influence functions: the training's weight decay (the curvature the regulariser
    adds to the mean loss's Hessian), and ten times that for comparison.
    """
    check_problem(p)
    if not isinstance(run, Run):
        raise TypeError(f"run must be a retraining.Run (from retraining.train(...)), got {type(run).__name__}")
    model, ckpts, lrs, wd = run.model, run.checkpoints, run.learning_rates, SETUP["weight_decay"]
    every_step = train(*p.train, checkpoint_every=1)  # 300 checkpoints: retrained (0.2 s) rather than cached
    g = torch.Generator().manual_seed(seed)
    return {
        "random control": torch.randn(len(p.x_test), len(p.x_train), generator=g, dtype=torch.float64),
        "gradient similarity (dot)": influence.gradient_similarity(model, loss_fn, p.train, p.test),
        "gradient similarity (cosine)": influence.gradient_similarity(model, loss_fn, p.train, p.test, kind="cosine"),
        f"TracIn ({len(ckpts)} checkpoints)": influence.tracin(model, ckpts, loss_fn, p.train, p.test,
                                                               learning_rates=lrs),
        "TracIn (every step)": influence.tracin(model, every_step.checkpoints, loss_fn, p.train, p.test,
                                                learning_rates=every_step.learning_rates),
        "influence function, last layer, exact Hessian": influence.influence_function(
            model, loss_fn, p.train, p.test, params=["2.weight", "2.bias"], damping=wd),
        "influence function, whole model, exact Hessian": influence.influence_function(
            model, loss_fn, p.train, p.test, damping=wd),
        "influence function, whole model, CG": influence.influence_function(
            model, loss_fn, p.train, p.test, damping=wd, method="cg"),
        "influence function, whole model, CG, damping x10": influence.influence_function(
            model, loss_fn, p.train, p.test, damping=10 * wd, method="cg"),
    }


def results(truth: dict | None = None) -> dict:
    """{method: {"LDS": ..., "LOO Spearman": ...}} for every method of :func:`method_scores`, from the cache. Chapter 12."""
    truth = load() if truth is None else truth
    if not isinstance(truth, dict):
        raise TypeError(f"truth must be the dict retraining.load() returns (or None to load it), got {type(truth).__name__}")
    missing = {"state_dict", "checkpoints", "learning_rates", "subsets", "outputs", "loo"} - set(truth)
    if missing:
        raise ValueError(f"truth must be the dict retraining.load() returns; it lacks {sorted(missing)}")
    p = problem()
    model = new_model()
    model.load_state_dict(truth["state_dict"])
    run = Run(model, truth["checkpoints"], truth["learning_rates"])
    return {name: {"LDS": lds(s, truth["subsets"], truth["outputs"]), "LOO Spearman": loo_correlation(s, truth["loo"])}
            for name, s in method_scores(p, run).items()}


def table(rows: dict, mislabel: dict | None = None) -> str:
    """The results as a markdown table (and the mislabel lines, when given). Chapter 12."""
    if not isinstance(rows, dict):
        raise TypeError(f"rows must be the dict results() returns ({{method: {{'LDS': ..., 'LOO Spearman': ...}}}}), "
                        f"got {type(rows).__name__}")
    bad = [name for name, r in rows.items() if not isinstance(r, dict) or {"LDS", "LOO Spearman"} - set(r)]
    if bad:
        raise ValueError(f"rows must map each method to {{'LDS': ..., 'LOO Spearman': ...}} as results() returns; "
                         f"{bad[:3]} do not")
    if mislabel is not None and not isinstance(mislabel, dict):
        raise TypeError(f"mislabel must be the dict retraining.mislabel_experiment() returns, got {type(mislabel).__name__}")
    if mislabel and (missing := {"precision_at", "accuracy", "k", "flipped", "random_precision"} - set(mislabel)):
        raise ValueError("mislabel must be the dict retraining.mislabel_experiment() returns (truth['mislabel'] of the cache); "
                         f"it lacks {sorted(missing)}")
    lines = ["| method | LDS (200 halves) | Spearman with LOO |", "|---|---:|---:|"]
    lines += [f"| {name} | {r['LDS']:.3f} | {r['LOO Spearman']:.3f} |" for name, r in rows.items()]
    if mislabel:
        precision = ", ".join(f"{k}: {v:.2f}" for k, v in mislabel["precision_at"].items())
        acc = mislabel["accuracy"]
        lines += ["", f"Planted mislabels ({mislabel['k']} of {len(mislabel['flipped'])}): self-influence precision at k "
                      f"{precision} (random: {mislabel['random_precision']:.2f}). Test accuracy: "
                  + ", ".join(f"{name} {value:.3f}" for name, value in acc.items()) + "."]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m xaicourse.tda", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    truth = load()
    print(table(results(truth), truth["mislabel"]))


if __name__ == "__main__":
    main()
