"""Chapter 12 (core): training-data attribution against Captum's TracInCP and against retraining."""
import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from torch import nn

from xaicourse import influence as I


def blobs(n, seed, flip=0.0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 5, generator=g) + 1.5 * (2 * y[:, None] - 1) * torch.tensor([1.0, 0.5, 0, 0, 0])
    flipped = torch.rand(n, generator=g) < flip
    return x, torch.where(flipped, 1 - y, y), flipped


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2))


def train_with_checkpoints(model, x, y, epochs=6, lr=0.1):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    checkpoints = []
    for _ in range(epochs):
        for i in range(0, len(x), 10):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i:i + 10]), y[i:i + 10]).backward()
            opt.step()
        checkpoints.append({k: v.clone() for k, v in model.state_dict().items()})
    return checkpoints


def test_per_example_gradients_equal_a_loop():
    model = mlp()
    x, y, _ = blobs(6, 0)
    grads = I.per_example_gradients(model, nn.functional.cross_entropy, x, y)
    for i in range(6):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        torch.testing.assert_close(grads[i], torch.cat([p.grad.flatten() for p in model.parameters()]))
    model.zero_grad(set_to_none=True)
    last = I.per_example_gradients(model, nn.functional.cross_entropy, x, y, params=["2.weight", "2.bias"])
    assert last.shape == (6, 18)


def test_tracin_equals_captums_tracincp(tmp_path):
    from captum.influence import TracInCP

    model = mlp()
    x, y, _ = blobs(40, 1)
    checkpoints = train_with_checkpoints(model, x, y, epochs=3)
    paths = []
    for k, state in enumerate(checkpoints):
        paths.append(str(tmp_path / f"ck{k}.pt"))
        torch.save(state, paths[-1])
    test_x, test_y, _ = blobs(5, 2)
    ours = I.tracin(model, checkpoints, nn.functional.cross_entropy, (x, y), (test_x, test_y), learning_rates=0.1)

    def load(m, path):
        m.load_state_dict(torch.load(path))
        return 0.1
    theirs = TracInCP(model, torch.utils.data.TensorDataset(x, y), paths, checkpoints_load_func=load,
                      loss_fn=nn.CrossEntropyLoss(reduction="none"), batch_size=8).influence((test_x, test_y))
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


def _fit(x, y, l2, init=None, steps=25):
    """L2-regularised softmax regression fitted to machine precision by Newton's method (10 parameters)."""
    def objective(flat):
        w = flat.view(5, 2)
        return nn.functional.cross_entropy(x @ w, y) + l2 * (w ** 2).sum()
    flat = torch.zeros(10, dtype=torch.float64) if init is None else init.flatten().clone()
    for _ in range(steps):
        flat = flat - torch.linalg.solve(torch.func.hessian(objective)(flat), torch.func.grad(objective)(flat))
    return flat.view(5, 2)


def test_influence_function_predicts_leave_one_out_on_a_convex_model():
    x, y, _ = blobs(60, 3, flip=0.1)
    x = x.double()
    test_x, test_y, _ = blobs(4, 4)
    test_x = test_x.double()
    l2 = 0.01
    w = _fit(x, y, l2)
    model = nn.Linear(5, 2, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(w.T)
    predicted = I.influence_function(model, nn.functional.cross_entropy, (x, y), (test_x, test_y), damping=2 * l2)
    base = nn.functional.cross_entropy(test_x @ w, test_y, reduction="none")
    actual = torch.zeros_like(predicted)
    for i in range(len(x)):
        keep = torch.arange(len(x)) != i
        w_i = _fit(x[keep], y[keep], l2, init=w, steps=6)   # Newton from the trained weights: a few steps
        actual[:, i] = nn.functional.cross_entropy(test_x @ w_i, test_y, reduction="none") - base
    for t in range(len(test_x)):
        assert pearsonr(predicted[t], actual[t]).statistic > 0.95
    cg = I.influence_function(model, nn.functional.cross_entropy, (x, y), (test_x, test_y), damping=2 * l2, method="cg")
    torch.testing.assert_close(cg, predicted, atol=1e-6, rtol=1e-4)


def test_self_influence_ranks_planted_mislabels_first():
    x, y, flipped = blobs(200, 5, flip=0.1)
    model = mlp(1)
    checkpoints = train_with_checkpoints(model, x, y, epochs=8)
    scores = I.self_influence(model, checkpoints, nn.functional.cross_entropy, (x, y), learning_rates=0.1)
    k = int(flipped.sum())
    precision = flipped[scores.argsort(descending=True)[:k]].float().mean().item()
    assert precision > 0.6 and precision > 3 * flipped.float().mean().item()


def test_bad_arguments_say_what_to_do():
    model = mlp()
    x, y, _ = blobs(4, 0)
    with pytest.raises(ValueError, match="same examples"):
        I.per_example_gradients(model, nn.functional.cross_entropy, x, y[:2])
    with pytest.raises(ValueError, match="no parameters named"):
        I.per_example_gradients(model, nn.functional.cross_entropy, x, y, params=["fc.weight"])
    with pytest.raises(ValueError, match="checkpoints is empty"):
        I.tracin(model, [], nn.functional.cross_entropy, (x, y), (x, y))
    with pytest.raises(ValueError, match="one learning rate per checkpoint"):
        I.tracin(model, [model.state_dict()], nn.functional.cross_entropy, (x, y), (x, y), learning_rates=[1, 2])
    with pytest.raises(ValueError, match="kind must be"):
        I.gradient_similarity(model, nn.functional.cross_entropy, (x, y), (x, y), kind="l2")
    with pytest.raises(ValueError, match="method must be"):
        I.influence_function(model, nn.functional.cross_entropy, (x, y), (x, y), method="lissa")


def test_cg_solves_a_confident_test_example_too():
    """A test example far from the boundary has a tiny gradient; CG's tolerance is relative, so it is solved, not 0."""
    x, y, _ = blobs(60, 3, flip=0.1)
    x = x.double()
    w = _fit(x, y, 0.01)
    model = nn.Linear(5, 2, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(w.T)
    far = (torch.tensor([[40.0, 20.0, 0, 0, 0]], dtype=torch.float64), torch.tensor([1]))
    exact = I.influence_function(model, nn.functional.cross_entropy, (x, y), far, damping=0.02)
    assert exact.abs().max() < 1e-6  # the gradient is tiny ...
    cg = I.influence_function(model, nn.functional.cross_entropy, (x, y), far, damping=0.02, method="cg")
    torch.testing.assert_close(cg, exact, atol=0, rtol=1e-4)  # ... and still solved to the same relative accuracy


def test_cg_warns_when_it_does_not_converge():
    model = mlp(2).double()
    x, y, _ = blobs(40, 6)
    x = x.double()
    with pytest.warns(UserWarning, match="did not converge in cg_steps=2"):
        I.influence_function(model, nn.functional.cross_entropy, (x, y), (x[:3], y[:3]), damping=0.0, method="cg",
                             cg_steps=2)
