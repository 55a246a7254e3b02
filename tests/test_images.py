"""Image and mask input: explicit fit policies and clear errors."""

import numpy as np
import pytest
from PIL import Image

from kerasmorph import images


def test_resize_center_crop_and_pad(tmp_path):
    wide = np.zeros((50, 100, 3), np.uint8)
    wide[:, :50] = 255  # Left half white.
    resized = images.load_image(wide, (64, 64), fit="resize")
    cropped = images.load_image(wide, (64, 64), fit="center-crop")
    padded = images.load_image(wide, (64, 64), fit="pad")
    assert resized.shape == cropped.shape == padded.shape == (64, 64, 3)
    assert resized[:, :28].min() > 200 and resized[:, 36:].max() < 50  # Stretched halves.
    assert cropped[:, :28].min() > 200 and cropped[:, 36:].max() < 50  # Centre keeps the boundary.
    assert padded[:14].max() == 0 and padded[-14:].max() == 0  # Black bars top and bottom.
    path = tmp_path / "wide.png"
    Image.fromarray(wide).save(path)
    np.testing.assert_array_equal(images.load_image(path, (64, 64)), resized)


@pytest.mark.parametrize(
    "source",
    [
        np.full((8, 8), 128, np.uint8),
        np.full((8, 8, 4), 128, np.uint8),
        np.full((8, 8, 3), 128 / 255, np.float32),
        Image.new("L", (8, 8), 128),
    ],
)
def test_any_mode_becomes_rgb(source):
    loaded = images.load_image(source, (8, 8))
    assert loaded.shape == (8, 8, 3) and abs(int(loaded.mean()) - 128) <= 1


@pytest.mark.parametrize(
    "source, error, match",
    [
        (np.zeros((8, 8, 2), np.uint8), ValueError, r"shape.*Received: image.shape=\(8, 8, 2\)"),
        (np.zeros((0, 8, 3), np.uint8), ValueError, "H, W > 0"),
        (np.full((8, 8, 3), 2.0), ValueError, r"\[0, 1\]"),
        (np.zeros((8, 8, 3), np.int64), ValueError, "dtype=int64"),
        ("missing.png", FileNotFoundError, "missing.png"),
    ],
)
def test_bad_images_are_clear_errors(source, error, match):
    with pytest.raises(error, match=match):
        images.load_image(source, (8, 8))


def test_unreadable_file(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="Could not read"):
        images.load_image(path, (8, 8))
    with pytest.raises(ValueError, match="`fit` must be one of"):
        images.load_image(np.zeros((8, 8, 3), np.uint8), (8, 8), fit="stretch")


def test_masks_any_size_and_mode_are_binarised():
    small = np.zeros((4, 4), np.uint8)
    small[:, 2:] = 255
    mask = images.load_mask(small, (16, 16))
    assert mask.dtype == np.float32 and set(np.unique(mask)) == {0.0, 1.0}
    assert mask[:, :6].max() == 0 and mask[:, 10:].min() == 1
    rgb = images.load_mask(Image.new("RGB", (32, 32), (255, 255, 255)), (16, 16))
    assert rgb.min() == 1
    with pytest.warns(UserWarning, match="all black"):
        assert images.load_mask(np.zeros((8, 8), bool), (16, 16)).max() == 0
    with pytest.raises(ValueError, match="threshold"):
        images.load_mask(small, (16, 16), threshold=1.5)


def test_latent_mask_covers_every_repainted_pixel():
    mask = np.zeros((16, 16), np.float32)
    mask[3, 12] = 1
    latent = images.latent_mask(mask)
    assert latent.shape == (2, 2, 1)
    assert latent[0, 1, 0] == 1 and latent.sum() == 1


def test_feathered_composite():
    generated = np.full((16, 16, 3), 200, np.uint8)
    original = np.zeros((16, 16, 3), np.uint8)
    mask = np.zeros((16, 16), np.float32)
    mask[:, 8:] = 1
    hard = images.feathered_composite(generated, original, mask, feather_radius=0)
    np.testing.assert_array_equal(hard[:, :8], 0)
    np.testing.assert_array_equal(hard[:, 8:], 200)
    soft = images.feathered_composite(generated, original, mask, feather_radius=2)
    assert 0 < soft[0, 7, 0] < 200 and soft[0, 0, 0] == 0 and soft[0, 15, 0] == 200
