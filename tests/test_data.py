import sys

import numpy as np
import pytest
import torch
from PIL import Image

import xaicourse as xc


@pytest.mark.parametrize("name", sorted(xc.data.PHOTOS))
def test_bundled_photos_load_as_rgb(name):
    img = xc.data.image(name)
    assert img.mode == "RGB" and min(img.size) >= 300


def test_unknown_photo_lists_the_choices():
    with pytest.raises(ValueError, match="cat, coffee"):
        xc.data.image("eagle")


def test_load_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no image file"):
        xc.data.load_image(tmp_path / "missing.jpg")
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    with pytest.raises(ValueError, match="not a readable image"):
        xc.data.load_image(bad)
    with pytest.raises(TypeError, match="tensor"):
        xc.data.load_image(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="shape"):
        xc.data.load_image(np.zeros((4, 4, 2)))


def test_load_image_conversions(tmp_path):
    gray = np.array([[0, 128], [255, 64]], np.uint8)
    assert (xc.data.load_image(gray) == gray[..., None]).all() and xc.data.load_image(gray).shape == (2, 2, 3)
    sixteen = np.array([[0, 65535]], np.uint16)
    assert xc.data.load_image(sixteen)[0, :, 0].tolist() == [0, 255]
    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[0, 0] = [255, 0, 0, 255]  # opaque red
    rgba[0, 1] = [255, 0, 0, 0]    # fully transparent -> white background
    out = xc.data.load_image(rgba)
    assert out[0, 0].tolist() == [255, 0, 0] and out[0, 1].tolist() == [255, 255, 255]
    floats = np.full((2, 2, 3), 0.5, np.float32)
    assert (xc.data.load_image(floats) == 128).all()
    path = tmp_path / "gray.png"
    Image.fromarray(gray).save(path)
    assert xc.data.load_image(path).shape == (2, 2, 3)
    with pytest.raises(ValueError, match="NaN"):
        xc.data.load_image(np.full((2, 2), np.nan))


def test_shapes_is_deterministic_and_has_ground_truth():
    a, b = xc.data.shapes(32, seed=3), xc.data.shapes(32, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, xc.data.shapes(32, seed=4).images)
    assert a.images.shape == (32, 3, 64, 64) and a.images.min() >= 0 and a.images.max() <= 1
    assert set(a.labels.tolist()) == {0, 1, 2}
    area = a.masks.float().mean(dim=(1, 2))
    assert (area > 0.02).all() and (area < 0.3).all()
    assert not a.marker_masks.any()


def _marker_corner(marker_mask):
    rows, cols = torch.nonzero(marker_mask, as_tuple=True)
    size = marker_mask.shape[-1]
    return int(rows.float().mean() > size / 2) * 2 + int(cols.float().mean() > size / 2)


def test_marker_correlates_with_label_as_asked():
    perfect = xc.data.shapes(300, seed=0, marker=1.0)
    corners = torch.tensor([_marker_corner(m) for m in perfect.marker_masks])
    assert (corners == perfect.labels).all()
    assert (perfect.images[perfect.marker_masks.unsqueeze(1).expand_as(perfect.images)] == 1.0).all()
    assert not (perfect.masks & perfect.marker_masks).any()
    random = xc.data.shapes(300, seed=0, marker=0.0)
    agreement = (torch.tensor([_marker_corner(m) for m in random.marker_masks]) == random.labels).float().mean()
    assert 0.2 < agreement < 0.47  # chance is 1/3


@pytest.mark.parametrize("kwargs, match", [
    ({"n": 0}, "n must be"), ({"size": 10}, "size"), ({"marker": 1.5}, "probability"),
    ({"classes": ("circle", "hexagon")}, "classes"),
])
def test_shapes_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        xc.data.shapes(**kwargs)


@pytest.mark.parametrize("url", ["https://example.com/cat.jpg", "http://localhost/photo.png", "ftp://host/img.jpg"])
def test_a_url_is_refused_saying_the_course_downloads_nothing(url):
    with pytest.raises(ValueError, match=r"is a URL, and the course does not download images.*xc\.data\.image\(name\)"):
        xc.data.load_image(url)
    with pytest.raises(ValueError, match="is a URL"):
        xc.models.imagenet_cnn().preprocess(url)


def test_assets_folder_follows_the_environment_variable_then_the_checkout(monkeypatch, tmp_path):
    from xaicourse import environment, paths

    monkeypatch.setenv(paths.ASSETS_ENV, str(tmp_path / "mine"))
    assert paths.assets_dir() == environment.ASSETS == tmp_path / "mine"
    with pytest.raises(paths.MissingAsset, match=r"mine/hutto_ICWSM_2014 is missing: run `python -m xaicourse.environment setup`"):
        xc.data.movie_reviews("test")
    for name in environment.NPM_ASSETS:
        (tmp_path / "mine").mkdir(exist_ok=True)
        (tmp_path / "mine" / name).write_text("// fetched")
    assert environment.fetch_npm_assets() == "bertviz JavaScript: present"  # nothing fetched: already there
    monkeypatch.delenv(paths.ASSETS_ENV)
    assert paths.checkout() is not None and paths.assets_dir() == paths.checkout() / ".assets"
    monkeypatch.setattr(paths, "checkout", lambda: None)  # an installed package: a per-user cache
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    expected = tmp_path / "cache" if sys.platform.startswith("linux") else paths._user_cache().parent.parent
    assert paths.assets_dir() == expected / "xaicourse" / "assets"


def test_with_marker_paints_the_marker_shapes_paints_and_marker_corners_reads_it_back():
    marked = xc.data.shapes(60, seed=4, marker=1.0, **xc.models.SHAPES_CNN_DATA)   # every marker in its class's corner
    assert torch.equal(xc.data.marker_corners(marked.marker_masks), marked.labels)
    assert (xc.data.marker_corners(xc.data.shapes(5, seed=4, marker=None).marker_masks) == -1).all()
    for k in range(3):
        own = marked.images[marked.labels == k]
        torch.testing.assert_close(xc.data.with_marker(own, k), own, rtol=0, atol=0)   # already there: unchanged
    plain = xc.data.shapes(8, seed=5, marker=None, **xc.models.SHAPES_CNN_DATA).images
    painted = xc.data.with_marker(plain, 3, colour=(0.5, 0.5, 0.5))
    changed = (painted != plain).any(1)
    assert torch.equal(xc.data.marker_corners(changed), torch.full((8,), 3))
    assert (painted[:, :, changed[0]] == 0.5).all() and changed[0].sum() == 16   # 4 x 4 pixels, grey
    assert torch.equal(plain, xc.data.shapes(8, seed=5, marker=None, **xc.models.SHAPES_CNN_DATA).images)  # a copy
    with pytest.raises(ValueError, match="corner must be 0"):
        xc.data.with_marker(plain, 4)
    with pytest.raises(ValueError, match=r"square RGB images \(N, 3, S, S\)"):
        xc.data.with_marker(plain[0], 1)
    with pytest.raises(ValueError, match="marker_size must be between 1 and"):
        xc.data.with_marker(plain, 1, marker_size=9)
