"""Chapter 11 (core): concept activation vectors and TCAV, against Captum's TCAV and planted directions."""
import pytest
import torch

import xaicourse as xc
from xaicourse import concepts as C


@pytest.fixture(scope="module")
def shapes():
    data = xc.data.shapes(90, seed=21, marker=0.0, **xc.models.SHAPES_CNN_DATA)
    return torch.as_tensor(data.images), torch.as_tensor(data.labels)


def test_cav_finds_a_planted_direction_and_says_when_there_is_none():
    g = torch.Generator().manual_seed(0)
    direction = torch.zeros(40)
    direction[5], direction[9] = 3.0, -1.5
    concept = torch.randn(400, 40, generator=g) + direction
    random = torch.randn(400, 40, generator=g)
    found = C.cav(concept, random)
    assert torch.nn.functional.cosine_similarity(found.vector, direction, dim=0) > 0.9
    few = C.cav(concept[:30], random[:30])   # 40 dimensions, 20 training points a side: a noisy direction
    assert torch.nn.functional.cosine_similarity(few.vector, direction, dim=0) < \
        torch.nn.functional.cosine_similarity(found.vector, direction, dim=0)
    assert found.accuracy > 0.9 and found.vector.norm().item() == pytest.approx(1.0, abs=1e-5)
    nothing = C.cav(torch.randn(80, 40, generator=g), torch.randn(80, 40, generator=g))
    assert nothing.accuracy < 0.75   # the same distribution: the held-out accuracy is near chance


def test_tcav_score_equals_captums_given_the_same_cav(shapes, tmp_path):
    from captum.concept import TCAV, Classifier, Concept

    images, labels = shapes
    model = xc.models.shapes_cnn("shortcut")
    layer = "features.6"
    acts = C.layer_activations(model, layer, images)
    vector = C.cav(acts[labels == 0], acts[labels == 2]).vector

    class Fixed(Classifier):   # Captum's TCAV with our CAV: the classifier hands Captum the vector
        def __init__(self):
            pass

        def train_and_eval(self, dataloader, **kwargs):
            return {"accs": torch.tensor(1.0)}

        def weights(self):
            return torch.stack([vector, -vector])

        def classes(self):
            return [0, 1]

    def loader(x):
        return torch.utils.data.DataLoader(x, batch_size=16)
    experiment = [[Concept(0, "class-0 images", loader(images[labels == 0])),
                   Concept(1, "class-2 images", loader(images[labels == 2]))]]
    tcav = TCAV(model, [layer], classifier=Fixed(), save_path=str(tmp_path) + "/")
    x = images[labels == 1]
    theirs = tcav.interpret(x, experiment, target=1)["0-1"][layer]["sign_count"][0].item()
    ours = C.tcav_score(model, layer, x, 1, vector)
    assert ours == pytest.approx(theirs, abs=1e-6)
    derivatives = C.directional_derivatives(model, layer, x, 1, vector)
    assert derivatives.shape == (len(x),) and 0 < ours < 1


def test_before_a_pooled_linear_head_every_input_has_the_same_sign(shapes):
    """Where TCAV cannot work: features.10 feeds global average pooling and a linear layer, so the
    gradient of a logit there is the same for every input, and a TCAV score can only be 0 or 1."""
    images, labels = shapes
    model = xc.models.shapes_cnn("shortcut")
    grads = C.layer_gradients(model, "features.10", images, 1)
    torch.testing.assert_close(grads, grads[:1].expand_as(grads))
    vector = torch.randn(grads.shape[1], generator=torch.Generator().manual_seed(1))
    assert C.tcav_score(model, "features.10", images, 1, vector) in (0.0, 1.0)
    assert 0 < C.tcav_score(model, "features.6", images, 1, torch.randn(16 * 16 * 32,
                                                                        generator=torch.Generator().manual_seed(1))) < 1


def test_tcav_compares_against_random_concepts(shapes):
    images, labels = shapes
    model = xc.models.shapes_cnn("clean")
    g = torch.Generator().manual_seed(2)
    randoms = [images[torch.randperm(len(images), generator=g)[:20]] for _ in range(4)]
    result = C.tcav(model, "features.6", images[labels == 0][:20], randoms, images[labels == 0], 0)
    assert result.scores.shape == (4,) and result.null.shape == (3,)
    assert ((result.scores >= 0) & (result.scores <= 1)).all() and 0 <= result.p_value <= 1
    assert isinstance(result.significant, bool)


def test_bad_arguments_say_what_to_do(shapes):
    images, _ = shapes
    with pytest.raises(ValueError, match="same D"):
        C.cav(torch.zeros(5, 3), torch.zeros(5, 4))
    with pytest.raises(ValueError, match="at least 4"):
        C.cav(torch.zeros(2, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="at least 3 random sets"):
        C.tcav(xc.models.shapes_cnn("clean"), "features.6", images[:8], [images[:8]], images[:4], 0)
    with pytest.raises(ValueError, match="trained on this layer"):
        C.tcav_score(xc.models.shapes_cnn("clean"), "features.6", images[:4], 0, torch.ones(7))


def test_tcav_grid_gives_each_cell_what_tcav_gives_and_corrects_alpha(shapes):
    images, labels = shapes
    model = xc.models.shapes_cnn("shortcut")
    g = torch.Generator().manual_seed(3)
    randoms = [images[torch.randperm(len(images), generator=g)[:20]] for _ in range(4)]
    concepts = {f"marker {k}": xc.data.with_marker(images[:20], k) for k in (0, 1)}
    inputs = {0: images[labels == 0][:15], 2: images[labels == 2][:15]}
    grid = C.tcav_grid(model, ["features.6", "features.9"], concepts, randoms, inputs, seed=5, progress=False)
    assert len(grid) == 8
    for (layer, name, target), result in grid.items():
        alone = C.tcav(model, layer, concepts[name], randoms, inputs[target], target, seed=5, alpha=0.05 / 8)
        torch.testing.assert_close(result.scores, alone.scores)
        torch.testing.assert_close(result.null, alone.null)
        assert result.p_value == pytest.approx(alone.p_value, rel=1e-6) and result.alpha == pytest.approx(0.05 / 8)
    # the shortcut model reads its own marker: marker 0 raises class 0 at the last conv block
    own = grid[("features.9", "marker 0", 0)]
    assert own.mean > 0.8 and own.mean > own.null.mean() + 0.4 and own.p_value < 0.05
    with pytest.raises(ValueError, match="at least one concept"):
        C.tcav_grid(model, "features.9", {}, randoms, inputs)
    # the null of disjoint random pairs (0, 1), (2, 3): half as many null CAVs, the same in tcav and tcav_grid
    paired = C.tcav_grid(model, ["features.9"], concepts, randoms, inputs, seed=5, null="pairs", progress=False)
    for (layer, name, target), result in paired.items():
        alone = C.tcav(model, layer, concepts[name], randoms, inputs[target], target, seed=5, alpha=0.05 / 4, null="pairs")
        assert len(result.null) == 2 and len(grid[(layer, name, target)].null) == 3
        torch.testing.assert_close(result.null, alone.null)
        torch.testing.assert_close(result.scores, grid[(layer, name, target)].scores)   # the concept's CAVs do not change
    with pytest.raises(ValueError, match="null must be one of"):
        C.tcav_grid(model, "features.9", concepts, randoms, inputs, null="disjoint")
    with pytest.raises(ValueError, match="at least 4 random sets"):
        C.tcav(model, "features.9", concepts["marker 0"], randoms[:3], inputs[0], 0, null="pairs")


def test_a_concept_that_moves_no_gradient_gets_p_one_not_nan(shapes):
    images, _ = shapes
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 2))
    with torch.no_grad():
        model[1].weight[0] = 0.0   # class 0's logit ignores the input: every directional derivative is 0
    randoms = [images[i * 20:(i + 1) * 20] for i in range(3)]
    result = C.tcav(model, "0", images[60:80], randoms, images[:30], 0)
    assert (result.scores == 0).all() and (result.null == 0).all()
    assert result.p_value == 1.0 and not result.significant   # identical scores: no evidence, not a NaN p-value
