"""The small training loop ROAR and the data randomisation test retrain with (chapter 07).

One seeded Adam + one-cycle loop on one thread (small convolutions run fastest there, and the
result is reproducible), the recipe of :func:`xaicourse.train.train_shapes_cnn` shortened to
seconds: ``models.ShapesCNN(width=8)``, 8 epochs of 1000 images reach 0.78 to 0.90 test accuracy
(seeds 0, 1, 2) on ``data.shapes`` without a marker, in about two seconds each.
"""
from __future__ import annotations

import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn

from .. import data, models

__all__ = ["accuracy", "default_split", "fit", "fit_many", "warn_if_chance"]

_INIT_LOCK = threading.Lock()  # model initialisation draws from the global RNG: one thread at a time


def default_split(split: str):
    """The shapes images (32 x 32, no marker) ROAR and data randomisation train and test on."""
    n, seed = {"train": (1000, 21), "test": (300, 22)}[split]
    return data.shapes(n=n, seed=seed, marker=None, **models.SHAPES_CNN_DATA)


def shapes_model(n_classes: int) -> nn.Module:
    """A fresh ``ShapesCNN(width=8)``: the architecture retrained by default."""
    return models.ShapesCNN(n_classes=n_classes, width=8)


def fit(make_model, images: torch.Tensor, labels: torch.Tensor, *, seed: int, epochs: int, lr: float = 1e-2,
        batch_size: int = 32) -> nn.Module:
    """A model from ``make_model()`` trained on (images, labels) with Adam and a one-cycle schedule; eval mode."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit(make_model, images, labels, seed=seed, epochs=epochs, lr=lr, batch_size=batch_size)
    finally:
        torch.set_num_threads(threads)


def fit_many(make_model, jobs, *, epochs: int, on_done=None, workers: int | None = None) -> list[nn.Module]:
    """:func:`fit` for each ``(images, labels, seed)`` of ``jobs``, two (or ``workers``) at a time.

    Each training runs on one thread of its own, so on a 2-core CPU two of them run side by side; the
    models are the ones :func:`fit` would train one after the other (same seeds, same single-thread
    arithmetic). ``on_done()`` is called after each training (a progress bar's update)."""
    workers = workers or max(1, min(2, os.cpu_count() or 1))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def one(job):
        images, labels, seed = job
        trained = _fit(make_model, images, labels, seed=seed, epochs=epochs)
        if on_done is not None:
            on_done()
        return trained

    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(one, jobs))
    finally:
        torch.set_num_threads(threads)


def _fit(make_model, images, labels, *, seed: int, epochs: int, lr: float = 1e-2, batch_size: int = 32) -> nn.Module:
    """The training loop of :func:`fit`, on the threads the caller set."""
    with _INIT_LOCK, torch.random.fork_rng():
        torch.manual_seed(seed)
        model = make_model()
    device = next(model.parameters()).device
    images, labels = images.to(device), labels.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * -(-len(images) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    order = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(images), generator=order).split(batch_size):
            loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of ``images`` whose predicted class is the label."""
    device = next(model.parameters()).device
    predictions = torch.cat([model(chunk.to(device)).argmax(1).cpu() for chunk in images.split(512)])
    return (predictions == labels.cpu()).float().mean().item()


def warn_if_chance(accuracy: float, labels: torch.Tensor, what: str, margin: float = 0.1) -> None:
    """Warn when a trained model's test ``accuracy`` is within ``margin`` of chance (the most frequent class). Chapter 07.

    A metric that compares retrained models (ROAR's drop, data randomisation's "learned" model) says
    nothing when the reference model learned nothing: with 3 epochs the shapes CNN can stay at 0.31
    for 3 classes.
    """
    chance = torch.bincount(labels.long()).max().item() / len(labels)
    if accuracy < chance + margin:
        warnings.warn(f"{what} reaches {accuracy:.2f} test accuracy, chance is {chance:.2f}: it has learned (almost) "
                      "nothing, so the comparison measures nothing; train longer (raise epochs) or check the data",
                      stacklevel=3)
