"""xaicourse.batching: equal chunks, in order, sized from measured bytes, the same result at any size."""
import torch
from torch import nn

from xaicourse import batching
from xaicourse.batching import batched, cache_bytes, chunks, measure_bytes


def test_chunks_are_equal_and_cover_the_range():
    assert chunks(50, 11) == [(0, 10), (10, 20), (20, 30), (30, 40), (40, 50)]
    assert chunks(7, 100) == [(0, 7)]
    assert chunks(10, 4) == [(0, 4), (4, 8), (8, 10)]  # ceil(10 / 3) = 4 per chunk
    assert chunks(0, 3) == []


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(100, 1000), nn.ReLU(), nn.Linear(1000, 1))


def test_measured_bytes_under_grad_are_the_saved_activations():
    model, x = net(), torch.randn(1, 100)
    _, nbytes = measure_bytes(model, lambda: model(x.requires_grad_(True)).sum(), grad=True)
    # the input (400 B, kept by the first Linear) and the ReLU output (4000 B, kept by the ReLU and the
    # second Linear, one storage); the weights are excluded
    assert nbytes == 4400
    _, no_grad = measure_bytes(model, lambda: model(x), grad=False)
    assert no_grad == 8 * 4000  # NO_GRAD_FACTOR x the largest activation


def test_batched_sizes_chunks_from_the_budget_and_keeps_the_order():
    model = net()
    seen = []
    x = torch.randn(10, 100)

    def run(items):
        seen.append((items.start, items.stop))
        return model(x[items])

    results = list(batched(10, run, model=model, budget=3 * 32000, grad=False))
    assert seen[0] == (0, 1)  # the measured first item
    assert all(stop - start <= 3 for start, stop in seen)
    torch.testing.assert_close(torch.cat([r for _, r in results]), model(x))  # float rounding differs by batch
    fixed = [items for items, _ in batched(10, lambda items: None, model=model, batch_size=4)]
    assert [(s.start, s.stop) for s in fixed] == [(0, 4), (4, 8), (8, 10)]


def test_no_grad_chunks_on_cpu_keep_their_largest_activation_in_half_the_cache(monkeypatch):
    # largest activation 4000 B (the ReLU's): half of a 20,000 B cache holds two of them, whatever the budget
    model, x = net(), torch.randn(9, 100)
    monkeypatch.setattr(batching, "cache_bytes", lambda: 20000)
    seen = [(items.start, items.stop) for items, _ in batched(9, lambda items: model(x[items]), model=model,
                                                                budget=2**30, grad=False)]
    assert seen == [(0, 1), (1, 3), (3, 5), (5, 7), (7, 9)]
    # with gradients the budget alone decides (the saved activations do not fit any cache)
    grads = [(items.start, items.stop) for items, _ in batched(9, lambda items: model(x[items]).sum(), model=model,
                                                               budget=2**30, grad=True)]
    assert grads == [(0, 1), (1, 9)]


def test_cache_size_is_the_last_level_or_defaults_to_32_mib(tmp_path):
    for index, (level, size) in enumerate([(1, "32K"), (2, "1024K"), (3, "16384K"), (1, "32K")]):
        (tmp_path / f"index{index}").mkdir()
        (tmp_path / f"index{index}" / "level").write_text(f"{level}\n")
        (tmp_path / f"index{index}" / "size").write_text(f"{size}\n")
    assert cache_bytes(str(tmp_path)) == 16 * 2**20
    assert cache_bytes(str(tmp_path / "missing")) == 32 * 2**20


def test_a_batch_that_plainly_fits_runs_in_one_unmeasured_pass(monkeypatch):
    # item_bytes: the first chunk is sized from the input (GUESS_FACTOR x its bytes); all of it fits -> one pass, no hooks
    from xaicourse import batching

    model = nn.Linear(4, 2)
    measured = []
    monkeypatch.setattr(batching, "measure_bytes", lambda *a, **k: measured.append(1) or (None, 0))
    calls = [items for items, _ in batching.batched(16, lambda s: s, model=model, item_bytes=1000)]
    assert calls == [slice(0, 16)] and measured == []


def test_a_first_chunk_is_measured_per_item_and_sizes_the_rest():
    from xaicourse import batching

    model = nn.Linear(1000, 1000)
    x = torch.randn(40, 1000)
    budget = 10 * batching.GUESS_FACTOR[True] * x[0].nbytes  # the guess allows 10 items in the first chunk

    def run(items):
        with torch.enable_grad():
            return model(x[items].requires_grad_(True)).tanh().sum()

    sizes = [s.stop - s.start for s, _ in batching.batched(40, run, model=model, budget=budget, item_bytes=x[0].nbytes)]
    assert sizes[0] == 10 and sum(sizes) == 40
    # the measured bytes per item (input and tanh output saved, 8 kB) let far more than 10 into the later chunks
    assert sizes[1] == 30
