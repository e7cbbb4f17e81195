"""Chapter 11: linear probes and Hewitt & Liang's control task, on planted directions and the shapes CNNs."""
import pytest
import torch

import xaicourse as xc
from xaicourse import probes


def test_a_planted_direction_is_read_and_noise_is_not():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 10, generator=g)
    directions = torch.zeros(10, 3)
    directions[3, 0], directions[7, 1], directions[8, 2] = 3.0, 3.0, 3.0
    y = (x @ directions).argmax(1)                                       # three classes, linear in x
    found = probes.linear_probe(x, y)
    assert found.test_accuracy > 0.95 and found.n_features == 10
    noise = probes.linear_probe(x, torch.randint(3, (2000,), generator=g))
    assert noise.test_accuracy < noise.chance + 0.08   # nothing to read: near the majority share
    assert probes.linear_probe(x, y) == found          # deterministic


def test_control_labels_are_fixed_per_type_and_unlearnable_linearly():
    g = torch.Generator().manual_seed(1)
    types = torch.randint(0, 5, (800, 2), generator=g)                 # 25 types
    labels = probes.control_labels(types, 3)
    for t in types.unique(dim=0):
        same = (types == t).all(1)
        assert len(labels[same].unique()) == 1                         # one label per type
    assert torch.equal(labels, probes.control_labels(types, 3)) and not torch.equal(labels, probes.control_labels(types, 3, seed=1))
    assert set(labels.tolist()) == {0, 1, 2}
    # the types written one-hot: a linear probe reads each type exactly, so it learns the control task ...
    one_hot = torch.cat([torch.nn.functional.one_hot(types[:, k], 5) for k in range(2)], 1).float()
    both = torch.nn.functional.one_hot(types[:, 0] * 5 + types[:, 1], 25).float()
    assert probes.linear_probe(both, labels).test_accuracy == 1.0
    # ... but from the two attributes separately it cannot: random labels of 25 types are not linear in them
    assert probes.linear_probe(one_hot, labels).test_accuracy < 0.8
    assert probes.control_labels(torch.tensor([4, 4, 9]), 2)[0] == probes.control_labels(torch.tensor([4, 4, 9]), 2)[1]


def test_the_control_task_is_learnt_only_for_types_seen_in_training():
    """Hewitt & Liang's guarantee: control labels carry nothing but the type's identity. A probe that
    recognises types learns them for types it was trained on and is at chance on unseen types; a real
    property is read on both, and selectivity is high only where the types cannot explain the task."""
    g = torch.Generator().manual_seed(3)
    embedding = torch.randn(1000, 64, generator=g)                      # one vector per type, as word vectors
    prop = (embedding[:, 0] > 0).long()                                  # a property the features carry
    seen = torch.randint(0, 40, (600,), generator=g)                    # 40 types, about 10 times each in training
    x_seen = embedding[seen] + 0.1 * torch.randn(600, 64, generator=g)
    assert probes.linear_probe(x_seen, probes.control_labels(seen, 3)).test_accuracy > 0.9
    unseen = torch.randperm(1000, generator=g)[:600]                    # 600 types, each once: test types never seen
    x_unseen = embedding[unseen] + 0.1 * torch.randn(600, 64, generator=g)
    control = probes.linear_probe(x_unseen, probes.control_labels(unseen, 3))
    assert control.test_accuracy < control.chance + 0.05
    read = probes.selectivity(x_unseen, prop[unseen], unseen)
    assert read.task.test_accuracy > 0.9 and read.selectivity > 0.3              # read, not memorised
    memorised = probes.selectivity(x_seen, prop[seen], seen)
    assert memorised.task.test_accuracy > 0.95 and abs(memorised.selectivity) < 0.05   # the types explain it all


def test_selectivity_is_task_minus_control_on_one_split():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(500, 10, generator=g)
    y = (x[:, 0] > 0).long()
    types = torch.randint(0, 40, (500,), generator=g)
    s = probes.selectivity(x, y, types)
    assert s.task == probes.linear_probe(x, y)
    assert s.control == probes.linear_probe(x, probes.control_labels(types, 2))
    assert s.selectivity == pytest.approx(s.task.test_accuracy - s.control.test_accuracy)
    assert s.selectivity > 0.3


def _shapes_probe_data():
    d = xc.data.shapes(900, seed=31, marker=0.0, **xc.models.SHAPES_CNN_DATA)
    corner = xc.data.marker_corners(d.marker_masks)
    colour = torch.stack([d.images[i][:, d.masks[i]].mean(1) for i in range(len(d.labels))]).argmax(1)
    return d, corner, torch.stack([d.labels, colour, corner], 1)


def test_the_docstring_table_on_the_shapes_cnns():
    """The clean model discards the marker's corner at the pooled layer; the shortcut model keeps it; both read it before."""
    d, corner, types = _shapes_probe_data()
    assert len(types.unique(dim=0)) == 27
    props = {"shape": d.labels, "marker corner": corner}
    clean = probes.probe_layers(xc.models.shapes_cnn("clean"), ["features.10", "head.1"], d.images, props, types)
    shortcut = probes.probe_layers(xc.models.shapes_cnn("shortcut"), "head.1", d.images, {"marker corner": corner}, types)
    assert clean[("features.10", "marker corner")].task.test_accuracy == pytest.approx(0.974, abs=0.002)
    assert clean[("head.1", "marker corner")].task.test_accuracy == pytest.approx(0.478, abs=0.002)
    assert clean[("head.1", "shape")].task.test_accuracy == pytest.approx(0.978, abs=0.002)
    assert shortcut[("head.1", "marker corner")].task.test_accuracy == pytest.approx(0.996, abs=0.002)
    assert all(abs(r.control.test_accuracy - r.control.chance) < 0.12 for r in clean.values())
    acts = xc.concepts.layer_activations(xc.models.shapes_cnn("clean"), "features.10", d.images, pool=4)
    assert clean[("features.10", "shape")] == probes.selectivity(acts, d.labels, types)   # per cell, as selectivity


def test_pooled_activations_average_regions():
    model = xc.models.shapes_cnn("clean")
    x = xc.data.shapes(4, seed=0, **xc.models.SHAPES_CNN_DATA).images
    full = xc.concepts.layer_activations(model, "features.6", x).view(4, 32, 16, 16)
    pooled = xc.concepts.layer_activations(model, "features.6", x, pool=2).view(4, 32, 2, 2)
    torch.testing.assert_close(pooled[:, :, 1, 0], full[:, :, 8:, :8].mean((2, 3)))
    head = xc.concepts.layer_activations(model, "head.1", x, pool=2)      # not convolutional: as it is
    assert head.shape == (4, 32)


def test_bad_arguments_say_what_to_do():
    x, y = torch.randn(20, 3), torch.randint(2, (20,))
    with pytest.raises(ValueError, match=r"one label per row"):
        probes.linear_probe(x, y[:5])
    with pytest.raises(ValueError, match="integer class labels with at least two classes"):
        probes.linear_probe(x, torch.zeros(20, dtype=torch.long))
    with pytest.raises(ValueError, match="test_fraction must be"):
        probes.linear_probe(x, y, test_fraction=1.0)
    with pytest.raises(ValueError, match="types must be integers"):
        probes.control_labels(torch.randn(20), 2)
    with pytest.raises(ValueError, match="one row per input"):
        probes.selectivity(x, y, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="at least one property"):
        probes.probe_layers(xc.models.shapes_cnn("clean"), "head.1", torch.zeros(2, 3, 32, 32), {}, torch.zeros(2, dtype=torch.long))
