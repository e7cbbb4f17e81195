"""ROAR (chapter 07): the removal by hand, retraining reproduces itself, the cache returns the same result."""
import torch

import xaicourse as xc
from xaicourse.metrics import _training, retraining as roar


def test_remove_fills_the_top_fraction_with_the_fill_value():
    images = torch.zeros(1, 2, 2, 2)
    maps = torch.tensor([[[0.1, 0.9], [0.5, 0.2]]])
    out = roar._remove(images, maps, 0.5, torch.tensor([7.0, 8.0]))
    assert out[0, 0].tolist() == [[0.0, 7.0], [7.0, 0.0]] and out[0, 1].tolist() == [[0.0, 8.0], [8.0, 0.0]]


def small_splits():
    train = xc.data.shapes(n=200, seed=5, marker=None, **xc.models.SHAPES_CNN_DATA)
    test = xc.data.shapes(n=60, seed=6, marker=None, **xc.models.SHAPES_CNN_DATA)
    return train, test


def test_roar_matches_a_manual_run_and_caches(tmp_path):
    model = xc.models.shapes_cnn("clean")
    train, test = small_splits()
    methods = {"gradient": xc.saliency.vanilla_gradient}
    cache = tmp_path / "roar.pt"
    result = xc.metrics.roar(model, methods, train=train, test=test, fractions=(0.5,), seeds=(0,), epochs=2,
                             cache=cache, progress=False)
    assert result.methods == ["gradient", "random ranking"] and result.accuracy.shape == (2, 1, 1)
    maps = xc.metrics.pixel_map(xc.saliency.vanilla_gradient(model, train.images, train.labels))
    fill = train.images.mean(dim=(0, 2, 3))
    trained = _training.fit(lambda: _training.shapes_model(3), roar._remove(train.images, maps, 0.5, fill),
                            train.labels, seed=0, epochs=2)
    test_maps = xc.metrics.pixel_map(xc.saliency.vanilla_gradient(model, test.images, test.labels))
    manual = _training.accuracy(trained, roar._remove(test.images, test_maps, 0.5, fill), test.labels)
    assert abs(result.accuracy[0, 0, 0].item() - manual) < 1e-6
    again = xc.metrics.roar(model, methods, train=train, test=test, fractions=(0.5,), seeds=(0,), epochs=2,
                            cache=cache, progress=False)
    assert torch.equal(again.accuracy, result.accuracy) and torch.equal(again.intact, result.intact)
    assert cache.exists()


def test_precomputed_maps_give_the_same_result():
    model = xc.models.shapes_cnn("clean")
    train, test = small_splits()
    images = torch.cat([train.images, test.images])
    labels = torch.cat([train.labels, test.labels])
    maps = xc.metrics.pixel_map(xc.saliency.vanilla_gradient(model, images, labels))
    settings = dict(train=train, test=test, fractions=(0.3,), seeds=(1,), epochs=1, progress=False)
    by_method = xc.metrics.roar(model, {"gradient": xc.saliency.vanilla_gradient}, **settings)
    by_maps = xc.metrics.roar(model, {"gradient": maps}, **settings)
    assert torch.equal(by_method.accuracy, by_maps.accuracy)
    import pytest
    with pytest.raises(ValueError, match="N_train"):
        xc.metrics.roar(model, {"gradient": maps[:10]}, **settings)


def test_two_trainings_at_a_time_give_the_weights_of_one_after_the_other():
    data = _training.default_split("test")
    images, labels = data.images[:96], data.labels[:96]
    make = lambda: _training.shapes_model(3)  # noqa: E731
    jobs = [(images, labels, seed) for seed in (0, 1, 2)]
    threads = torch.get_num_threads()
    together = _training.fit_many(make, jobs, epochs=2)
    assert torch.get_num_threads() == threads
    for (x, y, seed), model in zip(jobs, together):
        alone = _training.fit(make, x, y, seed=seed, epochs=2)
        for name, value in alone.state_dict().items():
            assert torch.equal(value, model.state_dict()[name]), (seed, name)
    first = list(together[0].parameters())[0]
    assert not torch.equal(first, list(together[1].parameters())[0])  # the seeds differ, so the models do
