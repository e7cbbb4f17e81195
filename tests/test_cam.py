"""xaicourse.cam against pytorch-grad-cam and Captum, hand-computed cases, hygiene and bad input."""
import numpy as np
import pytest
import torch
from torch import nn

import xaicourse as xc
from xaicourse import cam
from xaicourse.hooks import hooks_left
from xaicourse.testing import assert_unchanged, snapshot

TOL = 1e-5


def minmax(t):
    return xc.maps.minmax(t)


@pytest.fixture(scope="module")
def resnet():
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


@pytest.fixture(scope="module")
def batch():
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def cat(cnn):
    return cnn.preprocess(xc.data.image("cat"))


def pgc(method, model, layer, x, targets, **kwargs):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with method(model, [layer], **kwargs) as explainer:
        return torch.from_numpy(explainer(x, [ClassifierOutputTarget(int(t)) for t in targets]))


def captum_grad_cam(model, layer, x, targets):
    from captum.attr import LayerAttribution, LayerGradCam

    raw = LayerGradCam(model, layer).attribute(x, target=list(targets), relu_attributions=True)
    return minmax(LayerAttribution.interpolate(raw, tuple(x.shape[-2:]), "bilinear")[:, 0]).detach()


# --------------------------------------------------------------------------------------------
# Oracles
# --------------------------------------------------------------------------------------------
def test_grad_cam_matches_both_oracles_on_resnet18_batch(resnet, batch):
    from pytorch_grad_cam import GradCAM

    targets = [3, 7, 0]
    ours = cam.grad_cam(resnet, resnet.layer4[-1], batch, targets)
    assert ours.shape == (3, 64, 64)
    assert (ours - pgc(GradCAM, resnet, resnet.layer4[-1], batch, targets)).abs().max() < TOL
    assert (ours - captum_grad_cam(resnet, resnet.layer4[-1], batch, targets)).abs().max() < TOL
    assert hooks_left(resnet) == 0


def test_grad_cam_matches_both_oracles_on_efficientnet(cnn, cat):
    from pytorch_grad_cam import GradCAM

    target = cnn.predict(cat, 1)[0][0]
    index = cnn.class_index(target)
    ours = cam.grad_cam(cnn.model, cnn.target_layer, cat)  # None = top class
    assert (ours - pgc(GradCAM, cnn.model, cnn.target_layer, cat, [index])).abs().max() < TOL
    assert (ours - captum_grad_cam(cnn.model, cnn.target_layer, cat, [index])).abs().max() < TOL


def test_grad_cam_pp_matches_pytorch_grad_cam(resnet, batch, cnn, cat):
    from pytorch_grad_cam import GradCAMPlusPlus

    targets = [1, 2, 9]
    ours = cam.grad_cam_pp(resnet, resnet.layer4[-1], batch, targets)
    assert (ours - pgc(GradCAMPlusPlus, resnet, resnet.layer4[-1], batch, targets)).abs().max() < TOL
    ours = cam.grad_cam_pp(cnn.model, cnn.target_layer, cat, 281)
    assert (ours - pgc(GradCAMPlusPlus, cnn.model, cnn.target_layer, cat, [281])).abs().max() < TOL


def test_score_cam_matches_pytorch_grad_cam():
    from pytorch_grad_cam import ScoreCAM

    model = xc.models.shapes_cnn("clean")
    data = xc.data.shapes(3, seed=5, marker=0.0, **xc.models.SHAPES_CNN_DATA)
    targets = data.labels.tolist()
    ours = cam.score_cam(model, model.features, data.images, targets)
    reference = pgc(ScoreCAM, model, model.features, data.images, targets)
    assert (ours - reference).abs().max() < TOL
    assert torch.allclose(ours, cam.score_cam(model, model.features, data.images, targets, batch_size=5), atol=1e-6)


def test_vit_token_grid_matches_pytorch_grad_cam():
    import timm
    from pytorch_grad_cam import GradCAM

    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, num_classes=5).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    layer = vit.blocks[-1].norm1

    def reshape(t):
        return t[:, 1:].reshape(t.shape[0], 4, 4, t.shape[2]).permute(0, 3, 1, 2)

    ours = cam.grad_cam(vit, layer, x, [1, 4], reshape="vit")
    assert (ours - pgc(GradCAM, vit, layer, x, [1, 4], reshape_transform=reshape)).abs().max() < TOL
    with pytest.raises(ValueError, match="reshape='vit'"):
        cam.grad_cam(vit, layer, x, [1, 4])


# --------------------------------------------------------------------------------------------
# Hand-computed cases
# --------------------------------------------------------------------------------------------
class Toy(nn.Module):
    """1x1 conv with fixed weights -> GAP -> fixed linear: Grad-CAM is exactly sum_k W[c, k] A^k / (h w)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1, bias=False)
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            self.fc.weight.copy_(torch.tensor([[2.0, 1.0], [-1.0, -3.0]]))

    def forward(self, x):
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def test_grad_cam_by_hand():
    x = torch.tensor([[0.0, 1.0], [2.0, -1.0]]).view(1, 1, 2, 2)
    # A^1 = x, A^2 = -x; class 0 weights (2, 1) / 4: cam = (2x - x) / 4 = x / 4 -> relu -> /max
    expected = torch.tensor([[0.0, 0.5], [1.0, 0.0]])
    assert torch.allclose(cam.grad_cam(Toy(), "conv", x, 0)[0], expected)
    # class 1 weights (-1, -3) / 4: cam = (-x + 3x) / 4 = x / 2: same map after scaling
    assert torch.allclose(cam.grad_cam(Toy(), "conv", x, 1)[0], expected)


def test_all_negative_evidence_gives_zeros_not_nan():
    x = -torch.ones(2, 1, 4, 4)  # class 1: gradients < 0 and cam = x / 2 < 0 everywhere -> all zeros
    for method in (cam.grad_cam, cam.grad_cam_pp, cam.score_cam):
        out = method(Toy(), "conv", x, 1)
        assert torch.isfinite(out).all() and out.abs().sum() == 0, method.__name__


def test_outputs_in_unit_range_and_batch_equals_singles(resnet, batch):
    targets = [3, 7, 0]
    whole = cam.grad_cam_pp(resnet, resnet.layer4, batch, targets)
    singles = torch.cat([cam.grad_cam_pp(resnet, resnet.layer4, batch[i:i + 1], t) for i, t in enumerate(targets)])
    assert torch.allclose(whole, singles, atol=1e-6)
    assert whole.min() >= 0 and whole.amax(dim=(1, 2)).allclose(torch.ones(3))


def test_target_none_is_the_top_class(resnet, batch):
    top = resnet(batch).argmax(1).tolist()
    assert torch.equal(cam.grad_cam(resnet, None, batch), cam.grad_cam(resnet, resnet.layer4, batch, top))


# --------------------------------------------------------------------------------------------
# Hygiene
# --------------------------------------------------------------------------------------------
def test_model_left_as_found():
    model = Toy().train()
    model.fc.weight.requires_grad_(False)
    before = snapshot(model)
    x = torch.randn(2, 1, 4, 4)
    x_before = x.clone()
    cam.grad_cam(model, model.conv, x, [0, 1])
    cam.grad_cam_pp(model, model.conv, x, [0, 1])
    assert_unchanged(model, before)
    assert model.training and not model.fc.weight.requires_grad and model.conv.weight.requires_grad
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(x, x_before) and x.grad is None and hooks_left(model) == 0


class Exploding(Toy):
    def forward(self, x):
        self.conv(x)
        raise RuntimeError("boom")


@pytest.mark.parametrize("method", [cam.grad_cam, cam.grad_cam_pp, cam.score_cam])
def test_hooks_removed_after_errors(method):
    model = Exploding()
    with pytest.raises(RuntimeError, match="boom"):
        method(model, model.conv, torch.randn(1, 1, 4, 4))
    assert hooks_left(model) == 0
    toy = Toy()
    with pytest.raises(ValueError, match="out of range"):
        method(toy, toy.conv, torch.randn(1, 1, 4, 4), 5)
    assert hooks_left(toy) == 0


# --------------------------------------------------------------------------------------------
# Bad input and layer choice
# --------------------------------------------------------------------------------------------
def test_bad_inputs_give_clear_errors(resnet, batch):
    with pytest.raises(ValueError, match="not part of this model"):
        cam.grad_cam(resnet, nn.Conv2d(3, 3, 1), batch)
    with pytest.raises(ValueError, match="no layer named"):
        cam.grad_cam(resnet, "layer9", batch)
    with pytest.raises(ValueError, match="cannot make a CAM"):
        cam.grad_cam(resnet, resnet.fc, batch)
    with pytest.raises(ValueError, match="out of range"):
        cam.grad_cam(resnet, resnet.layer4, batch, 10)
    with pytest.raises(ValueError, match="one target per sample"):
        cam.grad_cam(resnet, resnet.layer4, batch, [1, 2])
    with pytest.raises(ValueError, match="batch dimension"):
        cam.grad_cam(resnet, resnet.layer4, batch[0])
    with pytest.raises(TypeError, match="tensor"):
        cam.grad_cam(resnet, resnet.layer4, np.zeros((1, 3, 8, 8)))
    with pytest.raises(ValueError, match="reshape must be"):
        cam.grad_cam(resnet, resnet.layer4, batch, reshape="swin")
    with pytest.raises(ValueError, match="batch_size"):
        cam.score_cam(resnet, resnet.layer4, batch, batch_size=0)
    assert hooks_left(resnet) == 0


def test_find_target_layer(resnet, cnn):
    assert cam.find_target_layer(resnet) is resnet.layer4
    assert cam.find_target_layer(cnn.model) is cnn.target_layer
    shapes = xc.models.shapes_cnn()
    assert cam.find_target_layer(shapes) is shapes.features
    with pytest.raises(ValueError, match=r"no Conv2d.*0 \(Linear\)"):
        cam.find_target_layer(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)))


def test_vit_reshape_rejects_non_square_grids():
    assert cam.vit_reshape(torch.zeros(2, 17, 8)).shape == (2, 8, 4, 4)
    with pytest.raises(ValueError, match="square grid"):
        cam.vit_reshape(torch.zeros(2, 16, 8))


def test_overlay_resizes_the_map_to_the_photo():
    photo = np.zeros((50, 70, 3), np.float32)
    out = xc.viz.overlay(photo, torch.rand(1, 7, 7))
    assert out.shape == (50, 70, 3) and out.min() >= 0 and out.max() <= 1


def test_depth_layers_go_from_shallow_to_deep(resnet, cnn):
    assert list(cam.depth_layers(resnet)) == ["layer1", "layer2", "layer3", "layer4"]
    assert list(cam.depth_layers(cnn.model)) == [f"blocks.{i}" for i in range(7)] + ["bn2"]
    assert list(cam.depth_layers(xc.models.shapes_cnn())) == ["features.2", "features.6", "features.10"]


def test_gradcam_explorer_redraws_and_caches(cnn):
    explorer = xc.widgets.gradcam_explorer(cnn, xc.data.image("cat"), layers={
        "blocks.5": cnn.model.blocks[5], "bn2": cnn.model.bn2})
    first = explorer.image.value
    assert explorer.grids["bn2"] == (7, 7)
    explorer.layer.value = "blocks.5"
    assert explorer.image.value != first and len(explorer.cache) == 2
    explorer.layer.value = "bn2"
    assert "from the cache" in explorer.status.value and hooks_left(cnn.model) == 0


def test_layer_grids_from_one_forward_pass(resnet):
    grids = cam.layer_grids(resnet, cam.depth_layers(resnet), torch.zeros(1, 3, 64, 64))
    assert grids == {"layer1": (16, 16), "layer2": (8, 8), "layer3": (4, 4), "layer4": (2, 2)}
    assert hooks_left(resnet) == 0


def test_guided_grad_cam_follows_the_paper_and_matches_captum():
    # Guided Backprop x the ReLU'd Grad-CAM, upsampled without a shift (Captum's GuidedGradCam with the same bilinear
    # upsampling); the min-max CAM of the old form zeroed the lowest-CAM region even where the CAM was positive.
    # (A ReLU model: Captum's Guided Backprop overrides nn.ReLU only, so on EfficientNet-Lite0's ReLU6 it is the gradient.)
    import warnings

    from captum.attr import GuidedGradCam

    model = xc.models.shapes_cnn("clean")  # trained, ReLU, its last conv block at 16 x 16
    data = xc.data.shapes(6, seed=3)
    layer, batch, targets = model.features[8], data.images, data.labels.tolist()
    ours = cam.guided_grad_cam(model, layer, batch, targets)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = GuidedGradCam(model, layer).attribute(batch, target=targets, interpolate_mode="bilinear").detach()
    for a, b in zip(ours, theirs):
        r = np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1]
        assert r > 0.99, r
    shifted = cam.guided_grad_cam(model, layer, batch, targets, minmax=True)
    raw = cam._cam(model, layer, batch, targets, None, cam._grad_cam_weights, True, normalize=False)
    positive = raw.flatten(1).amin(1) > 0  # a CAM positive everywhere: min-max would zero its lowest region
    assert not torch.allclose(shifted, ours)
    for a, b, p in zip(ours, theirs, positive):
        if p:
            assert ((a == 0) == (b == 0)).all()
