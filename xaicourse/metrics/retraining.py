"""ROAR, RemOve And Retrain (Hooker et al. 2019), at laptop scale on the shapes CNN. Chapter 07.

Deletion curves ask a trained model about images it never saw (holes, blur); ROAR retrains on the
modified images instead: remove each image's top k % pixels by a method's map, train a fresh model
on the modified training set, measure its accuracy on the modified test set. A method whose top
pixels carry the class makes the accuracy fall faster than a random ranking does.

Two fills: ``"mean"`` (Hooker et al.: the training set's per-channel mean) and ``"impute"`` (ROAD's
noisy linear imputation, Rong et al. 2022). With the mean, the removed region keeps the *shape* of
what the map highlighted, and a retrained model can read the class from that silhouette; the
imputation continues the surrounding image instead. A model trains in about two seconds (8 epochs
of 1000 images of 32 x 32), two at a time on a 2-core CPU, so the default 63 trainings take about two minutes.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..hooks import eval_mode
from ..inputs import check_int
from . import _training
from ..inputs import check_choice
from ._common import call_method, check_method, constant, pixel_map, warn_no_map
from .faithfulness import impute_weighted, removal_weights

__all__ = ["RoarResult", "roar"]

RANDOM = "random ranking"


@dataclass(frozen=True)
class RoarResult:
    """Result of :func:`roar`. Chapter 07.

    ``methods``: the rankings, the random control last; ``fractions`` (K,): shares of pixels removed;
    ``seeds`` (S,); ``accuracy`` (M, K, S): test accuracy after retraining; ``intact`` (S,): accuracy
    with nothing removed. ``mean`` and ``std`` are over the seeds, (M, K).
    """

    methods: list[str]
    fractions: torch.Tensor
    seeds: list[int]
    accuracy: torch.Tensor
    intact: torch.Tensor

    @property
    def mean(self) -> torch.Tensor:
        return self.accuracy.mean(dim=2)

    @property
    def std(self) -> torch.Tensor:
        return self.accuracy.std(dim=2) if len(self.seeds) > 1 else torch.zeros_like(self.mean)


def _remove(images: torch.Tensor, maps: torch.Tensor, fraction: float, fill) -> torch.Tensor:
    """images with each one's top ``fraction`` of pixels (by its map) set to ``fill`` (C,), or imputed ("impute").

    Ties are averaged as in the deletion curves (:func:`~xaicourse.metrics.faithfulness.removal_weights`):
    a tied group straddling the count is blended with the fill by its expected share.
    """
    _, _, h, w = images.shape
    weights = removal_weights(maps, [int(fraction * h * w)])[:, 0]
    if isinstance(fill, str):
        return impute_weighted(images, weights, noise=0.01, seed=0)
    return torch.lerp(images, fill.view(1, -1, 1, 1).to(images.dtype).expand_as(images), weights[:, None])


def _maps(model, method, images, labels, seed) -> torch.Tensor:
    with eval_mode(model):
        return torch.cat([pixel_map(call_method(method, model, chunk, t, seed)).cpu().float()
                          for chunk, t in zip(images.split(256), labels.split(256))])


def roar(model: nn.Module, methods: dict, *, train=None, test=None, fractions=(0.1, 0.3, 0.5, 0.7, 0.9),
         seeds=(0, 1, 2), epochs: int = 8, fill: str = "mean", make_model=None, cache=None,
         progress: bool = True) -> RoarResult:
    """Remove the top pixels by each method, retrain, and measure test accuracy (Hooker et al. 2019). Chapter 07.

    ``model`` is the trained model the maps explain (e.g. ``xc.models.shapes_cnn("clean")``);
    ``methods``: {name: method(model, x, targets)} explained for the true labels on every train and
    test image, once, or {name: maps} already computed, a (N_train + N_test, H, W) tensor for the
    training images then the test images (to reuse them across calls); a random ranking, seeded,
    is added as the control. For each fraction of
    ``fractions`` and each seed of ``seeds``, a fresh ``make_model()`` (default ``ShapesCNN(width=8)``)
    is trained for ``epochs`` on the modified ``train`` set (default: 1000 shapes images, 32 x 32,
    no marker) and tested on the modified ``test`` set (default: 300); ``fill``: "mean" (the training
    set's per-channel mean, as Hooker et al.) or "impute" (:func:`noisy_linear_imputation`).
    ``cache``: a file path; a result computed with the same model, data, method names and settings
    is loaded from it instead of recomputed (the methods' code is not compared: rename a method you
    change; precomputed maps are compared by shape, mean and spread to three digits, so a result
    shipped from another machine is found), and a new one is saved there.
    """
    if not isinstance(methods, dict) or not methods:
        raise TypeError("methods must be a non-empty dict {name: method(model, x, targets) or precomputed maps}")
    for method in methods.values():
        if not isinstance(method, torch.Tensor):
            check_method(method)
    epochs = check_int("epochs", epochs)
    check_choice("ROAR fill", fill, ("mean", "impute"))
    fractions = [float(f) for f in fractions]
    if not fractions or not all(0 < f < 1 for f in fractions):
        raise ValueError(f"fractions must be shares of the pixels in (0, 1), got {fractions}")
    seeds = [check_int("seed", s, 0) for s in seeds]
    train = _training.default_split("train") if train is None else train
    test = _training.default_split("test") if test is None else test
    names = [*methods, RANDOM]
    key = _cache_key(model, methods, names, fractions, seeds, (epochs, fill), train, test)
    if cache is not None and Path(cache).exists():
        saved = torch.load(cache, weights_only=False)
        if saved.get("key") == key:
            return saved["result"]
    result = _run(model, methods, train, test, fractions, seeds, epochs, fill, make_model, progress)
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"key": key, "result": result}, cache)
    return result


def _run(model, methods, train, test, fractions, seeds, epochs, fill, make_model, progress) -> RoarResult:
    from tqdm.auto import tqdm

    n_classes = int(train.labels.max()) + 1
    make_model = make_model or (lambda: _training.shapes_model(n_classes))
    images = torch.cat([train.images, test.images])
    labels = torch.cat([train.labels, test.labels])
    generator = torch.Generator().manual_seed(0)
    maps = {name: _check_maps(name, method, images) if isinstance(method, torch.Tensor)
            else _maps(model, method, images, labels, 0) for name, method in methods.items()}
    maps[RANDOM] = torch.rand(images.shape[0], *images.shape[-2:], generator=generator)
    for name, m in maps.items():
        warn_no_map(f"roar ({name!r})", constant(m), "a constant map", "its pixels are removed as one tied group, "
                    "each faded by the fraction: those images test nothing about the ranking")
    desc = f"ROAR ({fill}): retraining"
    fill = train.images.mean(dim=(0, 2, 3)) if fill == "mean" else fill
    n_train = len(train.labels)
    bar = tqdm(total=len(seeds) * (1 + len(maps) * len(fractions)), desc=desc,
               disable=not progress)

    def retrain(modified: list[torch.Tensor]) -> torch.Tensor:
        """Test accuracy (len(modified), S) of one model per (image set, seed), two trainings at a time."""
        sets = [m for m in modified for _ in seeds]
        jobs = [(m[:n_train], train.labels, s) for m in modified for s in seeds]
        trained = _training.fit_many(make_model, jobs, epochs=epochs, on_done=bar.update)
        scores = [_training.accuracy(t, m[n_train:], test.labels) for t, m in zip(trained, sets)]
        return torch.tensor(scores).view(len(modified), len(seeds))

    intact = retrain([images])[0]
    _training.warn_if_chance(intact.mean().item(), test.labels, "ROAR's model trained on the intact images")
    accuracy = torch.stack([retrain([_remove(images, maps[name], f, fill) for f in fractions]) for name in maps])
    bar.close()
    return RoarResult(list(maps), torch.tensor(fractions), seeds, accuracy, intact)


def _check_maps(name: str, maps: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    expected = (images.shape[0], *images.shape[-2:])
    if tuple(maps.shape) != expected:
        raise ValueError(f"the maps of {name!r} must be (N_train + N_test, H, W) = {expected}, got {tuple(maps.shape)}")
    return maps.detach().float().cpu()


def _cache_key(model, methods, names, fractions, seeds, epochs, train, test) -> str:
    digest = hashlib.sha256()
    for t in [*model.state_dict().values(), train.images, train.labels, test.images, test.labels]:
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    # "ties averaged": results made before ties were averaged (index order) are not reused
    digest.update(repr((names, fractions, seeds, epochs, "ties averaged")).encode())
    # precomputed maps by a coarse fingerprint (shape, mean and spread to 3 digits), not their bytes: the
    # same method on another CPU differs in the last bits, and a shipped result must still be found
    for maps in (m for m in methods.values() if isinstance(m, torch.Tensor)):
        values = maps.detach().cpu().double()
        digest.update(repr((tuple(values.shape), f"{values.mean():.3g}", f"{values.std():.3g}")).encode())
    return digest.hexdigest()
