"""Memory-bounded chunks: the one batching routine of the course (chapters 01-03, 07-09).

Every method that runs the model on many inputs made from one sample (SmoothGrad's noisy copies,
IG's path points, Score-CAM's masked images, deletion steps, KernelSHAP / LIME perturbations) goes
through :func:`batched`. With ``batch_size=None`` a first chunk runs while the bytes it needs are
measured, and the chunk size is the memory ``budget`` divided by that measurement per item. The
first chunk is one item, or as many as a guess from their input's size fits into the budget when
the caller says that size (``item_bytes``); a batch that plainly fits runs at once, unmeasured:

* ``grad=True``: the bytes autograd saves for the backward pass (``saved_tensors_hooks``, parameters
  excluded). This is what SmoothGrad and IG keep alive per input.
* ``grad=False``: :data:`NO_GRAD_FACTOR` times the largest activation of one forward pass. Without a
  graph, activations are freed as the pass goes on; the factor was measured as peak RSS on
  EfficientNet-Lite0 at 224 px (about 60x the input image, 8x its largest activation). On a CPU
  the chunk is also kept small enough that its largest activation fills at most half of the
  last-level cache (:func:`cache_bytes`), so that a layer's input and output stay in the cache
  (on EfficientNet-Lite0 at 224 px this picks chunks of 3; the timings that chose it are in
  benchmarks/RESULTS.md).

Chunks are equal in size (``chunks(10, 4)`` gives 4, 3, 3) and results come back in order, so a
method that sums them in that order gives the same answer whatever the chunk size. Long runs show a
progress bar (tqdm) once the first chunk predicts more than :data:`PROGRESS_AFTER_S` seconds.
"""
from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

__all__ = ["DEFAULT_BUDGET_BYTES", "GUESS_FACTOR", "NO_GRAD_FACTOR", "PROGRESS_AFTER_S", "batched", "cache_bytes", "chunk_limit",
           "chunks", "measure_bytes"]

DEFAULT_BUDGET_BYTES = 384 * 2**20
NO_GRAD_FACTOR = 8
#: Bytes a method's chunk needs per byte of its input, for sizing a first chunk before anything is measured
#: (``item_bytes``): EfficientNet-Lite0 at 224 px keeps 127x its input for the backward pass and peaks at about
#: 60x without gradients. A heavier model may overshoot the budget with its first chunk; the rest is measured.
GUESS_FACTOR = {True: 128, False: 64}
PROGRESS_AFTER_S = 2.0


@functools.lru_cache(maxsize=None)
def cache_bytes(sysfs: str = "/sys/devices/system/cpu/cpu0/cache") -> int:
    """The size of the CPU's last-level cache in bytes (Linux sysfs; 32 MiB where it cannot be read). Chapter 01."""
    best_level, size = 0, 32 * 2**20
    for entry in Path(sysfs).glob("index*"):
        try:
            level = int((entry / "level").read_text())
            text = (entry / "size").read_text().strip().upper()
        except (OSError, ValueError):
            continue
        units = {"K": 2**10, "M": 2**20, "G": 2**30}
        if level > best_level and text[:-1].isdigit() and text[-1] in units:
            best_level, size = level, int(text[:-1]) * units[text[-1]]
    return size


def _on_cpu(model: nn.Module) -> bool:
    parameter = next(model.parameters(), None)
    return parameter is None or parameter.device.type == "cpu"


def chunks(total: int, limit: int) -> list[tuple[int, int]]:
    """(start, stop) ranges covering ``range(total)`` in equal chunks of at most ``limit`` items. Chapters 01-03."""
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"limit is the largest chunk and must be an int >= 1, got {type(limit).__name__}")
    if limit < 1:
        raise ValueError(f"limit is the largest chunk and must be an int >= 1, got {limit!r}")
    if total <= 0:
        return []
    size = math.ceil(total / math.ceil(total / limit))
    return [(start, min(start + size, total)) for start in range(0, total, size)]


def measure_bytes(model: nn.Module, run: Callable[[], object], *, grad: bool) -> tuple[object, int]:
    """``run()``'s result and the working memory it needed, in bytes (see the module docstring). Chapters 01-03."""
    if not callable(run):
        raise TypeError(f"run must be a function of no arguments, got {type(run).__name__}")
    if grad:
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        storages: dict[int, int] = {}

        def pack(t):
            storage = t.untyped_storage()
            if storage.data_ptr() not in params:
                storages[storage.data_ptr()] = storage.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            result = run()
        return result, sum(storages.values())
    largest = [0]

    def on_output(_module, _inputs, output):
        for t in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(t, torch.Tensor):
                largest[0] = max(largest[0], t.nbytes)

    handles = [m.register_forward_hook(on_output) for m in model.modules() if next(m.children(), None) is None]
    try:
        result = run()
    finally:
        for handle in handles:
            handle.remove()
    return result, NO_GRAD_FACTOR * largest[0]


def chunk_limit(model: nn.Module, run_one: Callable[[], object], *, grad: bool, n_items: int,
                budget: int = DEFAULT_BUDGET_BYTES) -> int:
    """How many items fit in one chunk: ``budget`` over the bytes ``run_one()`` (one item) needs. Chapter 01.

    For code that hands the chunk size to another library (Captum's ``internal_batch_size``) instead
    of looping with :func:`batched`: the same measurement and the same rule (at least 1, at most
    ``n_items``; on a CPU without gradients, also the cache cap of the module docstring).
    """
    _, nbytes = measure_bytes(model, run_one, grad=grad)
    return _limit(model, nbytes, grad, budget, n_items)


def _limit(model, nbytes: int, grad: bool, budget: int, n_items: int) -> int:
    limit = max(1, budget // max(nbytes, 1))
    if not grad and _on_cpu(model):  # keep a chunk's activations in the CPU's cache (module docstring)
        limit = min(limit, max(1, cache_bytes() // 2 // max(nbytes // NO_GRAD_FACTOR, 1)))
    return max(1, min(limit, n_items))


def batched(n_items: int, run: Callable[[slice], object], *, model: nn.Module, batch_size: int | None = None,
            budget: int = DEFAULT_BUDGET_BYTES, grad: bool = True, desc: str | None = None,
            progress: bool | None = None, item_bytes: int | None = None) -> Iterator[tuple[slice, object]]:
    """Yield ``(items, run(items))`` for consecutive slices covering ``range(n_items)``, in order. Chapters 01-03.

    ``run(items)`` evaluates the items of one chunk (e.g. a slice of IG's path points) and returns
    anything (usually a tensor whose first dimension is the chunk). ``batch_size``: items per chunk;
    None measures the first chunk and fits the others into ``budget`` bytes. The first chunk is one
    item, or, when the caller gives ``item_bytes`` (the bytes of one item's input), as many items as
    :data:`GUESS_FACTOR` times their input bytes fit into the budget: when that is all of them, the
    batch runs in one pass with nothing measured (no extra pass for small batches). ``progress``:
    True always shows a bar, False never, None when the first chunk predicts more than two seconds.
    """
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1 or None (sized from the memory budget), got {batch_size!r}")
        ranges = chunks(n_items, batch_size)
        first, head = None, 0
    else:
        if n_items <= 0:
            return
        guess = GUESS_FACTOR[grad] * item_bytes if item_bytes else budget
        head = max(1, min(n_items, budget // max(guess, 1)))
        if head == n_items:  # the whole batch plainly fits (or is one item): nothing to size
            ranges, first, head = [(0, n_items)], None, 0
        else:
            started = time.perf_counter()
            first, nbytes = measure_bytes(model, lambda: run(slice(0, head)), grad=grad)
            elapsed = time.perf_counter() - started
            limit = _limit(model, math.ceil(nbytes / head), grad, budget, n_items)
            ranges = [(head + a, head + b) for a, b in chunks(n_items - head, limit)]
            if progress is None:
                progress = elapsed / head * n_items > PROGRESS_AFTER_S
    bar = _bar(n_items, desc, progress, started=head)
    try:
        if first is not None:
            yield slice(0, head), first
        for start, stop in ranges:
            started = time.perf_counter()
            result = run(slice(start, stop))
            if bar is None and progress is None and (time.perf_counter() - started) / (stop - start) * n_items > PROGRESS_AFTER_S:
                bar = _bar(n_items, desc, True, started=start)
            if bar is not None:
                bar.update(stop - start)
            yield slice(start, stop), result
    finally:
        if bar is not None:
            bar.close()


def _bar(total: int, desc: str | None, show: bool | None, started: int | bool = 0):
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc or "model passes", initial=int(started), leave=False)
