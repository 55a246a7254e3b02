"""Image and mask files of every mode load right (issue 17, point 5).

Hand-made files: a 16-bit ramp must map to the 0–255 ramp (not clip to 255),
an EXIF orientation 6 photo loads rotated, CMYK and palette images give the
RGB values their pixels stand for, and a file claiming a huge size is refused
from its header in one line, before it is decoded.
"""

import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from kerasmorph import images
from kerasmorph.errors import ResourceLimitError


def _ramp16():
    """A 1x256 16-bit ramp 0, 257, ..., 65535 (exactly k * 257 for the 8-bit k)."""
    return (np.arange(256, dtype=np.uint16) * 257)[None, :]


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I;16L", "I"])
def test_sixteen_bit_grey_is_scaled_not_clipped(mode):
    values = _ramp16()
    if mode == "I":
        pil = Image.fromarray(values.astype(np.int32), mode="I")
    else:
        dtype = ">u2" if mode == "I;16B" else "<u2"
        pil = Image.frombytes(mode, (256, 1), values.astype(dtype).tobytes())
    assert pil.mode == mode
    loaded = images.load_image(pil, (1, 256))
    np.testing.assert_array_equal(loaded[0, :, 0], np.arange(256))
    np.testing.assert_array_equal(loaded[..., 0], loaded[..., 2])  # Grey, repeated.


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_sixteen_bit_files_for_images_and_masks(tmp_path, suffix):
    path = tmp_path / f"ramp{suffix}"
    Image.frombytes("I;16B", (256, 1), _ramp16().astype(">u2").tobytes()).save(path)
    with Image.open(path) as opened:
        assert opened.mode.startswith("I;16")  # What Pillow reads such a file as.
    loaded = images.load_image(path, (1, 256))
    np.testing.assert_array_equal(loaded[0, :, 1], np.arange(256))
    # Below the threshold (128 of 255) kept, above repainted: not all 1 (clipped).
    mask = images.load_mask(path, (1, 256))
    np.testing.assert_array_equal(mask[0], (np.arange(256) / 255 > 0.5).astype(np.float32))


def test_a_mid_grey_sixteen_bit_mask_is_kept(tmp_path):
    path = tmp_path / "grey16.png"
    Image.frombytes("I;16", (8, 8), np.full((8, 8), 20000, "<u2").tobytes()).save(path)
    # 20000 / 65535 = 0.31 < 0.5: keep (clipping to 255 used to repaint it all).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "all black".
        assert images.load_mask(path, (8, 8)).max() == 0


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((2, 4, 3), np.uint8)
    stored[:, :2] = (255, 0, 0)  # Left half red,
    stored[:, 2:] = (0, 0, 255)  # right half blue, as stored.
    pil = Image.fromarray(stored)
    exif = pil.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display.
    path = tmp_path / "phone.png"
    pil.save(path, exif=exif)
    loaded = images.load_image(path, (4, 2))  # Shown 2 wide and 4 tall.
    assert loaded.shape == (4, 2, 3)
    np.testing.assert_array_equal(loaded[:2], np.full((2, 2, 3), (255, 0, 0)))  # Red on top.
    np.testing.assert_array_equal(loaded[2:], np.full((2, 2, 3), (0, 0, 255)))
    mask_source = np.zeros((2, 4), np.uint8)
    mask_source[:, :2] = 255
    mask_pil = Image.fromarray(mask_source)
    mask_exif = mask_pil.getexif()
    mask_exif[0x0112] = 6
    mask_pil.save(tmp_path / "mask.png", exif=mask_exif)
    mask = images.load_mask(tmp_path / "mask.png", (4, 2))
    np.testing.assert_array_equal(mask, [[1, 1], [1, 1], [0, 0], [0, 0]])


@pytest.mark.parametrize(
    "cmyk, rgb",
    [
        ((0, 0, 0, 0), (255, 255, 255)),
        ((255, 0, 0, 0), (0, 255, 255)),  # Cyan.
        ((0, 0, 0, 255), (0, 0, 0)),
        ((0, 128, 0, 64), (191, 95, 191)),  # (255 - c)(255 - k) / 255 per channel.
    ],
)
def test_cmyk_files_give_their_rgb(tmp_path, cmyk, rgb):
    path = tmp_path / "cmyk.tif"
    Image.new("CMYK", (4, 4), cmyk).save(path)
    loaded = images.load_image(path, (4, 4))
    assert tuple(int(v) for v in loaded[0, 0]) == rgb
    assert (loaded == loaded[0, 0]).all()


def test_palette_with_transparency_and_la(tmp_path):
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([10, 20, 30, 250, 240, 230] + [0] * 762)
    palette.putpixel((3, 3), 1)
    palette.info["transparency"] = 1
    path = tmp_path / "palette.png"
    palette.save(path, transparency=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # No "Palette images with Transparency" warning.
        loaded = images.load_image(path, (4, 4))
    assert tuple(int(v) for v in loaded[0, 0]) == (10, 20, 30)
    assert tuple(int(v) for v in loaded[3, 3]) == (250, 240, 230)  # Its colour; alpha dropped.
    la = Image.new("LA", (4, 4), (77, 0))
    la.save(tmp_path / "la.png")
    assert (images.load_image(tmp_path / "la.png", (4, 4)) == 77).all()
    with pytest.warns(UserWarning, match="transparency"):
        mask = images.load_mask(path, (4, 4))
    assert mask[0, 0] == 0 and mask[3, 3] == 1  # Dark kept, light repainted.


def _png_header(width, height):
    """A PNG file of just a header claiming `width` x `height`: no pixel data."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


@pytest.mark.parametrize("loader", [images.load_image, images.load_mask])
def test_too_many_pixels_is_one_line_naming_the_file(tmp_path, loader):
    # 9000 x 9000 = 81 Mpx: over the 67 Mpx limit, under Pillow's own.
    path = tmp_path / "big.png"
    path.write_bytes(_png_header(9000, 9000))
    with pytest.raises(ResourceLimitError) as error:
        loader(path, (64, 64))
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    assert "9000x9000" in message and "81,000,000" in message and "67,108,864" in message
    # 100000 x 100000: Pillow's own bomb check, reported the same way.
    path.write_bytes(_png_header(100_000, 100_000))
    with pytest.raises(ResourceLimitError, match="too large to open") as error:
        loader(path, (64, 64))
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_the_limit_is_an_argument(tmp_path):
    path = tmp_path / "small.png"
    Image.new("RGB", (20, 20)).save(path)
    assert images.MAX_IMAGE_PIXELS == 8192 * 8192
    with pytest.raises(ValueError, match=r"20x20 = 400 pixels, over the limit of 100 pixels"):
        images.load_image(path, (8, 8), max_pixels=100)
    assert images.load_image(path, (8, 8), max_pixels=400).shape == (8, 8, 3)
    with pytest.raises(ValueError, match="max_pixels"):
        images.load_mask(path, (8, 8), max_pixels=399)
