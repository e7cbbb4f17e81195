"""Chapter 12: the retraining ground truth (leave-one-out, random halves, planted mislabels; xaicourse.retraining) and
the methods scored against it (xaicourse.tda)."""
import math
import re

import pytest
import torch

from xaicourse import influence as I
from xaicourse import paths
from xaicourse import retraining as R
from xaicourse import tda as T


@pytest.fixture(scope="module")
def truth():
    return R.load()


@pytest.fixture(scope="module")
def measured(truth):
    """Every method's LDS and LOO Spearman on the cached retrainings (about 10 s: the CG solves dominate)."""
    with pytest.warns(UserWarning, match="did not converge"):  # CG on the non-convex head: the docstring says so
        return T.results(truth)


def test_retraining_is_bit_identical():
    p = R.problem()
    a, b = R.train(*p.train), R.train(*p.train)
    for state_a, state_b in zip([a.model.state_dict(), *a.checkpoints], [b.model.state_dict(), *b.checkpoints]):
        assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    keep = torch.arange(300) != 3  # indices and a mask name the same subset
    torch.testing.assert_close(R.retrain(p, keep), R.retrain(p, keep.nonzero()[:, 0]), atol=0, rtol=0)


def test_the_cache_is_what_the_script_recreates(truth):
    assert paths.weights(R.CACHE_FILE).stat().st_size < 1_000_000
    p = R.problem()
    run = R.train(*p.train)
    # bit-identical on the machine that made the cache; another CPU's float64 kernels may differ in the last bits
    for k in truth["state_dict"]:
        torch.testing.assert_close(run.model.state_dict()[k], truth["state_dict"][k], atol=1e-10, rtol=0)
    assert len(truth["checkpoints"]) == 10 and truth["learning_rates"] == run.learning_rates
    torch.testing.assert_close(R.margins(run.model, *p.test), truth["full_margins"], atol=1e-10, rtol=0)
    torch.testing.assert_close(R.retrain(p, truth["subsets"][17]), truth["outputs"][17].double(), atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(R.leave_one_out(p, [0, 123], progress=False), truth["loo"][:, [0, 123]].double(),
                               atol=1e-5, rtol=1e-6)
    subsets = R.random_subsets(300, R.SETUP["n_subsets"], R.SETUP["subset_fraction"], R.SETUP["subset_seed"])
    assert torch.equal(subsets, truth["subsets"]) and (subsets.sum(1) == 150).all()


def test_lds_by_hand():
    scores = torch.tensor([[1.0, 2.0, 3.0], [3.0, 0.0, -1.0]])
    subsets = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 1, 1]], dtype=torch.bool)
    outputs = torch.tensor([[0.1, 4.0], [0.2, 3.0], [0.3, 2.0], [0.4, 1.0]])
    # test 0: summed scores 1, 2, 3, 5 rise with the outputs: Spearman 1.
    # test 1: summed scores 3, 0, 3, -1 have ranks 3.5, 2, 3.5, 1 (a tie, averaged); the outputs 4, 3, 2, 1;
    # deviations from the mean rank 2.5: (1, -0.5, 1, -1.5) and (1.5, 0.5, -0.5, -1.5): 3 / sqrt(4.5 * 5).
    expected = (1 + 3 / math.sqrt(4.5 * 5)) / 2
    assert T.lds(scores, subsets, outputs) == pytest.approx(expected, abs=1e-12)
    assert T.lds(-scores, subsets, outputs) == pytest.approx(-expected, abs=1e-12)
    assert T.lds(scores, subsets.numpy(), outputs.numpy()) == pytest.approx(expected, abs=1e-12)


def test_the_best_method_beats_random_by_a_margin_measured_from_the_data(truth, measured):
    g = torch.Generator().manual_seed(1)
    null_lds = torch.tensor([T.lds(torch.randn(100, 300, generator=g), truth["subsets"], truth["outputs"])
                             for _ in range(20)])
    null_loo = torch.tensor([T.loo_correlation(torch.randn(100, 300, generator=g), truth["loo"]) for _ in range(20)])
    # the spread of a random method's scores, measured: about 0.005 (LDS) and 0.006 (LOO)
    methods = {name: r for name, r in measured.items() if name != "random control"}
    best_lds = max(r["LDS"] for r in methods.values())
    best_loo = max(r["LOO Spearman"] for r in methods.values())
    assert best_lds > null_lds.max() + 20 * null_lds.std() and best_lds > 0.5
    assert best_loo > null_loo.max() + 20 * null_loo.std() and best_loo > 0.4
    assert abs(measured["random control"]["LDS"]) < null_lds.abs().max() + 3 * null_lds.std()
    # the exact whole-model influence function does worse than its last-layer version (the docstring's point)
    assert measured["influence function, whole model, exact Hessian"]["LDS"] < \
        measured["influence function, last layer, exact Hessian"]["LDS"] - 0.2


def test_the_docstring_table_is_what_the_cache_gives(measured):
    rows = dict(re.findall(r"^\| ([^|]+?) \| (-?\d\.\d{3} \| -?\d\.\d{3}) \|$", T.__doc__, re.M))
    assert set(rows) == set(measured), "the module docstring's table lists other methods than method_scores"
    for name, r in measured.items():
        lds, loo = map(float, rows[name].split(" | "))
        assert (lds, loo) == pytest.approx((r["LDS"], r["LOO Spearman"]), abs=0.002), name


def test_self_influence_finds_the_planted_mislabels(truth):
    result = R.mislabel_experiment(progress=False)
    cached = truth["mislabel"]
    assert result["k"] == 15 and torch.equal(result["flipped"], cached["flipped"])
    torch.testing.assert_close(result["self_influence"], cached["self_influence"], atol=0, rtol=1e-9)
    assert result["accuracy"] == cached["accuracy"]
    assert result["random_precision"] == pytest.approx(0.05)
    assert result["precision_at"][15] > 0.6 and result["precision_at"][15] > 10 * result["random_precision"]
    # the oracle (removing exactly the flipped labels) helps; removing as many random examples does not
    assert result["accuracy"]["without the flipped"] > result["accuracy"]["all"] > result["accuracy"]["without k random"]


def test_bad_arguments_say_what_to_do(tmp_path):
    p = R.problem()
    with pytest.raises(ValueError, match="bool mask of length 300"):
        R.train(*p.train, torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="selects no training examples"):
        R.train(*p.train, torch.zeros(300, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"indices in \[0, 300\)"):
        R.train(*p.train, [0, 300])
    with pytest.raises(ValueError, match="indices must lie in"):
        R.leave_one_out(p, [-1], progress=False)
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        R.random_subsets(300, 4, fraction=1.0)
    with pytest.raises(ValueError, match=r"scores must be \(n_test, n_train\) = \(2, 3\)"):
        T.lds(torch.zeros(3, 2), torch.zeros(4, 3, dtype=torch.bool), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="one row per retraining"):
        T.lds(torch.zeros(2, 3), torch.zeros(4, 3, dtype=torch.bool), torch.zeros(5, 2))
    with pytest.raises(FileNotFoundError, match="python -m xaicourse.retraining"):
        R.load(tmp_path / "missing.pt")
    stale = dict(R.load(), setup={**R.SETUP, "steps": 10})
    torch.save(stale, tmp_path / "stale.pt")
    with pytest.raises(ValueError, match="other settings.*python -m xaicourse.retraining"):
        R.load(tmp_path / "stale.pt")
    edited = R.load()
    edited["features"] = tuple((x + 1e-3, y) for x, y in edited["features"])
    torch.save(edited, tmp_path / "edited.pt")
    with pytest.raises(ValueError, match="the clean shapes CNN changed.*python -m xaicourse.retraining"):
        R.load(tmp_path / "edited.pt")


def test_the_problem_reads_the_stored_features_which_the_cnn_still_computes(truth):
    stored, fresh = R.problem(), R.problem(fresh=True)
    for name in ("x_train", "x_test", "x_accuracy"):
        assert torch.equal(getattr(stored, name), truth["features"][("x_train", "x_test", "x_accuracy").index(name)][0])
        assert (getattr(stored, name) - getattr(fresh, name)).abs().max() < 1e-4
    assert torch.equal(stored.y_train, fresh.y_train) and torch.equal(stored.y_test, fresh.y_test)


def test_tracin_learning_rates_give_the_loss_drop_along_training():
    """With lr * interval / n per checkpoint, TracIn of all training examples sums to each test loss's drop.

    Over every step it is the first-order sum of the whole trajectory (correlation > 0.95); over the
    10 checkpoints the first one (the initial weights, large gradients) stands for 30 steps and the sum
    is only loosely related (the docstring's 0.49): saving more checkpoints is what TracIn needs.
    """
    p = R.problem()
    start = R.new_model()
    with torch.no_grad():
        initial = torch.nn.functional.cross_entropy(start(p.x_test), p.y_test, reduction="none")

    def correlation(run):
        scores = I.tracin(run.model, run.checkpoints, R.loss_fn, p.train, p.test, learning_rates=run.learning_rates)
        with torch.no_grad():
            drop = initial - torch.nn.functional.cross_entropy(run.model(p.x_test), p.y_test, reduction="none")
        return torch.corrcoef(torch.stack([scores.sum(1), drop]))[0, 1].item()
    every_step = correlation(R.train(*p.train, checkpoint_every=1))
    ten = correlation(R.train(*p.train))
    assert every_step > 0.95
    assert ten < every_step - 0.2
