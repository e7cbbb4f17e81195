"""xaicourse.diagnose on constructed maps (one per warning pattern) and on the trained shapes CNNs."""
import pytest
import torch

import xaicourse as xc
from xaicourse.diagnose import cam_patterns as diagnose, corner_masks, diagnose_model, dilate
from xaicourse.maps import mask_share


def region_share(cams, masks, margin=0):
    return mask_share(cams, dilate(masks, margin))

S = 32


def blob(cy, cx, sigma=3.0, size=S):
    y, x = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    return torch.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma**2))


def centred_objects(n=4):
    masks = torch.zeros(n, S, S, dtype=torch.bool)
    masks[:, 10:22, 10:22] = True
    return masks


def test_healthy_maps_raise_no_warning():
    cams = torch.stack([blob(16, 16), blob(15, 17), blob(17, 15), blob(16, 16)])
    result = diagnose(cams, centred_objects())
    assert result.ok, str(result)
    assert result.object_share.min() > 0.85 and result.corner_share.max() < 0.05


def test_corner_maps_are_flagged():
    corners = [(2, 2), (2, 29), (29, 2), (29, 29)]
    result = diagnose(torch.stack([blob(y, x, 2.0) for y, x in corners]), centred_objects())
    assert result.corner_peak.all() and result.flags["corners"] == 1.0 and result.flags["outside"] == 1.0
    assert result.flags["one_sided"] < 0.05  # corners on all sides: no position bias
    assert any(w.startswith("corners") for w in result.warnings)


def test_uniform_and_empty_maps_are_flagged():
    cams = torch.stack([torch.ones(S, S), torch.zeros(S, S), 0.9 + 0.1 * torch.rand(S, S), blob(16, 16)])
    result = diagnose(cams)
    assert result.spread.tolist()[:2] == [1.0, 1.0] and result.spread[2] > 0.9 and result.spread[3] < 0.2
    assert result.flags["uniform"] == 0.75 and "outside" not in result.flags
    assert not torch.isnan(result.centroid).any()


def test_one_sided_maps_are_flagged():
    cams = torch.stack([blob(16, 27), blob(13, 26), blob(19, 28), blob(16, 25)])
    result = diagnose(cams)
    assert result.centroid[:, 0].min() > 0.5
    assert result.flags["one_sided"] > 0.5 and [w.split()[0] for w in result.warnings] == ["one_sided"]


def test_region_share_dilate_and_corner_masks():
    masks = torch.zeros(1, 8, 8, dtype=torch.bool)
    masks[0, 3, 3] = True
    assert dilate(masks, 1).sum() == 9 and dilate(masks, 0).sum() == 1
    cams = torch.zeros(1, 8, 8)
    cams[0, 3, 4] = 1.0
    assert region_share(cams, masks).item() == 0.0 and region_share(cams, masks, margin=1).item() == 1.0
    corners = corner_masks(8, 8, 0.25)
    assert corners.sum() == 16 and corners[0, 0] and corners[7, 7] and not corners[3, 3]


def test_bad_input():
    with pytest.raises(ValueError, match="batch, height, width"):
        diagnose(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="masks must match"):
        diagnose(torch.zeros(2, 8, 8), torch.zeros(2, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="NaN"):
        diagnose(torch.full((1, 4, 4), float("nan")))


def test_diagnose_model_tells_the_shortcut_from_the_clean_model():
    test = xc.data.shapes(48, seed=3, marker=1.0, **xc.models.SHAPES_CNN_DATA)
    verdicts = {}
    for variant in ("shortcut", "clean"):
        model = xc.models.shapes_cnn(variant)
        verdicts[variant] = diagnose_model(model, model.features, test.images, test.labels, masks=test.masks, margin=4)
    assert verdicts["shortcut"].flags["corners"] > 0.8 and verdicts["shortcut"].flags["outside"] > 0.5
    assert verdicts["clean"].flags["corners"] < 0.3 and verdicts["clean"].flags["outside"] < 0.1
    assert verdicts["shortcut"].cams.shape == (48, S, S)
