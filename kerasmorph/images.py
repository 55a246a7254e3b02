"""Image and mask input for image-conditioned work (numpy and Pillow only).

Images come as a path, a PIL image, or an array (uint8 in [0, 255], or float
in [0, 1]; greyscale, RGB or RGBA). They are brought to the model's size by
an explicit policy — never silently:

| fit | what happens | aspect ratio |
|---|---|---|
| `"resize"` | stretched to exactly (height, width) | not kept |
| `"center-crop"` | scaled to cover, then the centre cut out | kept; edges cut |
| `"pad"` | scaled to fit inside, then padded with black | kept; black bars |

Masks follow the inpainting convention: white = repaint, black = keep. Any
size or mode is accepted; a mask is converted to greyscale, resized to the
image size (bilinear) and binarised at `threshold`.

Files (and PIL images) of any mode are brought to 8 bits the same way for
images and masks: 16-bit greyscale (`I;16`, `I;16B`, `I;16L`, and `I`,
read as 0–65535) is scaled by 255/65535, not clipped; palette images (`P`,
with or without transparency) and `PA` go through RGBA; `CMYK` and `YCbCr`
through Pillow's conversion to RGB (an embedded ICC profile is not applied);
alpha is then dropped (`LA`, `RGBA`). A file's EXIF orientation is applied
(`PIL.ImageOps.exif_transpose`), so a phone photo loads the way it is shown.
A file of more than `max_pixels` pixels (default `MAX_IMAGE_PIXELS`,
8192 × 8192) is refused from its header, before it is decoded, with one
`ResourceLimitError` line naming the file, its size and the limit, instead
of Pillow's `DecompressionBombError` (Pillow's own limit, 2 ×
`PIL.Image.MAX_IMAGE_PIXELS` ≈ 179 Mpx, still applies above that).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from kerasmorph.errors import InputError, ResourceLimitError

Fit = Literal["resize", "center-crop", "pad"]
FITS: tuple[str, ...] = ("resize", "center-crop", "pad")

# The most pixels an image or mask file may have: 8192 x 8192 (67 Mpx, 201 MB
# as RGB), far above any model size, far below what decoding could exhaust.
MAX_IMAGE_PIXELS = 8192 * 8192
# Modes holding one 16-bit grey channel (mode "I", 32-bit, is read as 0-65535 too).
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
# Modes kept as they are by `_to_8bit`: Pillow converts them to RGB or L exactly.
_EIGHT_BIT_MODES = ("L", "LA", "RGB", "RGBA")


def _to_pil(source: Any, name: str, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Opens a path, passes a PIL image through, or wraps an array.

    Returns an image of mode L, LA, RGB or RGBA (`_to_8bit`), EXIF
    orientation applied to files and PIL images.
    """
    if isinstance(source, Image.Image):
        return _to_8bit(ImageOps.exif_transpose(source), name)
    if isinstance(source, (str, os.PathLike)):
        return _open(source, name, max_pixels)
    array = np.asarray(source)
    if (
        array.size == 0
        or array.ndim not in (2, 3)
        or (array.ndim == 3 and array.shape[-1] not in (1, 3, 4))
    ):
        raise ValueError(
            f"The {name} array must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) "
            f"with H, W > 0. Received: {name}.shape={array.shape}"
        )
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
            raise ValueError(
                f"The float {name} array must hold values in [0, 1]. Received: values in "
                f"[{np.nanmin(array):.3g}, {np.nanmax(array):.3g}]"
            )
        array = np.round(array * 255).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ValueError(
            f"The {name} array must be uint8, bool or float in [0, 1]. "
            f"Received: {name}.dtype={array.dtype}"
        )
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return Image.fromarray(array)


def _open(
    path: str | os.PathLike, name: str, max_pixels: int, *, eight_bit: bool = True
) -> Image.Image:
    """Reads an image file: size checked from the header, then decoded and made 8-bit
    (unless `eight_bit=False`: a 16-bit depth map keeps its levels)."""
    try:
        with warnings.catch_warnings():
            # The size is checked below, against `max_pixels`, before decoding.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            check_pixel_count(image.size, path, name, max_pixels)
            image.load()
            image = ImageOps.exif_transpose(image)
            return _to_8bit(image, name) if eight_bit else image.copy()
    except FileNotFoundError:
        raise FileNotFoundError(f"No such {name} file. Received: {name}={str(path)!r}") from None
    except Image.DecompressionBombError as error:
        # Over Pillow's own limit (2 x Image.MAX_IMAGE_PIXELS), which refuses
        # the file inside Image.open, before its size can be read here.
        raise ResourceLimitError(
            f"The {name} file {str(path)!r} is too large to open ({error}); "
            f"the limit is {max_pixels:,} pixels. Downscale it first."
        ) from None
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(
            f"Could not read the {name} file as an image ({error}). Received: {name}={str(path)!r}"
        ) from None


def check_pixel_count(
    size: tuple[int, int],
    path: str | os.PathLike,
    name: str = "image",
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> None:
    """Refuses an image file with more than `max_pixels` pixels, before decoding it.

    Args:
        size: `(width, height)` as `PIL.Image.open(path).size` reads it from
            the header.
        path: the file, for the message.
        name: what the file is (`"image"`, `"mask"`), for the message.
        max_pixels: the most pixels accepted; default `MAX_IMAGE_PIXELS`.

    Raises:
        ResourceLimitError: a `ValueError` of one line naming the file, its
            size and the limit.
    """
    width, height = size
    if width * height > max_pixels:
        limit = "MAX_IMAGE_PIXELS, 8192x8192" if max_pixels == MAX_IMAGE_PIXELS else "max_pixels"
        raise ResourceLimitError(
            f"The {name} file {str(path)!r} is {width}x{height} = {width * height:,} pixels, "
            f"over the limit of {max_pixels:,} pixels ({limit}). Downscale it first."
        )


def _to_8bit(image: Image.Image, name: str) -> Image.Image:
    """Brings any Pillow mode to L, LA, RGB or RGBA (8 bits per channel).

    16-bit grey is scaled by 255/65535 (Pillow's `convert("L")` would clip
    it at 255); palette images go through RGBA so a transparent index keeps
    its alpha (Pillow warns when converting them straight to RGB).
    """
    mode = image.mode
    if mode in _EIGHT_BIT_MODES:
        return image
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.float64)
        grey = np.round(np.clip(values, 0, 65535) * (255 / 65535)).astype(np.uint8)
        return Image.fromarray(grey, mode="L")
    if mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if mode in ("PA", "RGBa"):
        return image.convert("RGBA")
    if mode == "La":
        return image.convert("LA")
    if mode == "1":
        return image.convert("L")
    try:
        return image.convert("RGB")
    except ValueError as error:
        raise ValueError(
            f"Cannot convert the {name} from mode {mode!r} to RGB ({error}). Accepted: "
            "greyscale (8 or 16 bits), palette, RGB(A), CMYK or YCbCr images."
        ) from None


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"`size` must be (height, width) > 0. Received: size={size!r}")
    return int(size[0]), int(size[1])


def load_image(
    image: Any,
    size: tuple[int, int],
    *,
    fit: Fit = "resize",
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> np.ndarray:
    """Loads an image and brings it to `size` by an explicit policy.

    Args:
        image: a path, a PIL image, or an array (uint8, or float in [0, 1];
            greyscale, RGB or RGBA — alpha is dropped, greyscale repeated).
            Files of any mode are read as the module docstring says (16-bit
            grey scaled, palette, CMYK, EXIF orientation applied).
        size: `(height, width)` in pixels.
        fit: `"resize"`, `"center-crop"` or `"pad"` (see the module docstring).
        max_pixels: the most pixels an image file may have; default
            `MAX_IMAGE_PIXELS` (8192 × 8192).

    Returns:
        uint8 array (height, width, 3).

    Raises:
        FileNotFoundError: for a missing file.
        ResourceLimitError: (a `ValueError`) for a file over `max_pixels`.
        ValueError: for an unreadable file, a wrong array shape or range, or
            an unknown `fit`.

    Example:

    ```python
    image = kerasmorph.images.load_image("photo.jpg", (512, 512), fit="center-crop")
    ```
    """
    if fit not in FITS:
        valid = ", ".join(repr(f) for f in FITS)
        raise ValueError(f"`fit` must be one of {valid}. Received: fit={fit!r}")
    height, width = _check_size(size)
    pil = _to_pil(image, "image", max_pixels).convert("RGB")
    if fit == "resize":
        pil = pil.resize((width, height), Image.Resampling.LANCZOS)
    elif fit == "center-crop":
        scale = max(width / pil.width, height / pil.height)
        scaled = pil.resize(
            (max(width, round(pil.width * scale)), max(height, round(pil.height * scale))),
            Image.Resampling.LANCZOS,
        )
        left = (scaled.width - width) // 2
        top = (scaled.height - height) // 2
        pil = scaled.crop((left, top, left + width, top + height))
    else:
        scale = min(width / pil.width, height / pil.height)
        scaled = pil.resize(
            (max(1, round(pil.width * scale)), max(1, round(pil.height * scale))),
            Image.Resampling.LANCZOS,
        )
        canvas = Image.new("RGB", (width, height))
        canvas.paste(scaled, ((width - scaled.width) // 2, (height - scaled.height) // 2))
        pil = canvas
    return np.asarray(pil, dtype=np.uint8)


def load_mask(
    mask: Any,
    size: tuple[int, int],
    *,
    threshold: float = 0.5,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> np.ndarray:
    """Loads an inpainting mask: white = repaint, black = keep.

    Args:
        mask: a path, a PIL image or an array of any size and mode (colour
            masks are converted to greyscale, 16-bit ones scaled to 8 bits;
            bool arrays are used as is; a file's EXIF orientation is applied).
        size: `(height, width)` of the image it applies to.
        threshold: grey level in (0, 1) above which a pixel is repainted.
        max_pixels: the most pixels a mask file may have; default
            `MAX_IMAGE_PIXELS` (8192 × 8192).

    Returns:
        float32 array (height, width) of 0.0 (keep) and 1.0 (repaint).

    Raises:
        ResourceLimitError: (a `ValueError`) for a file over `max_pixels`.
        ValueError: for an unreadable or empty mask, or a bad threshold.
    """
    if not 0 < threshold < 1:
        raise ValueError(f"`threshold` must be in (0, 1). Received: threshold={threshold!r}")
    height, width = _check_size(size)
    pil = _to_pil(mask, "mask", max_pixels)
    if pil.mode in ("RGBA", "LA") and pil.getextrema()[-1][0] < 255:
        warnings.warn(
            "The mask has transparency; only its grey levels are used (white = repaint).",
            stacklevel=2,
        )
    grey = pil.convert("L").resize((width, height), Image.Resampling.BILINEAR)
    binary = (np.asarray(grey, dtype=np.float32) / 255.0 > threshold).astype(np.float32)
    if not binary.any():
        warnings.warn(
            "The mask is all black: every pixel is kept and nothing is repainted.",
            stacklevel=2,
        )
    return binary


def latent_mask(mask: np.ndarray, factor: int = 8) -> np.ndarray:
    """Downsamples a pixel mask to the latent grid.

    A latent cell is repainted when any of its `factor × factor` pixels is,
    so the repainted region in latent space covers the whole pixel mask.

    Args:
        mask: float (H, W) of 0/1, H and W multiples of `factor`.

    Returns:
        float32 (H/factor, W/factor, 1).
    """
    height, width = mask.shape
    if height % factor or width % factor:
        raise ValueError(
            f"The mask size must be a multiple of {factor}. Received: mask.shape={mask.shape}"
        )
    cells = mask.reshape(height // factor, factor, width // factor, factor)
    return (cells.max(axis=(1, 3)) > 0).astype(np.float32)[..., None]


def to_model_input(image: np.ndarray) -> np.ndarray:
    """uint8 (…, H, W, 3) -> float32 in [-1, 1], the VAE encoder's range."""
    return image.astype(np.float32) / 127.5 - 1.0


def feathered_composite(
    generated: np.ndarray,
    original: np.ndarray,
    mask: np.ndarray,
    feather_radius: float = 4.0,
) -> np.ndarray:
    """Pastes the original outside the mask, blending across a feathered edge.

    Args:
        generated: uint8 (H, W, 3), the inpainted image.
        original: uint8 (H, W, 3), the input image.
        mask: float (H, W), 1 = repainted.
        feather_radius: Gaussian blur radius of the mask edge in pixels; 0
            for a hard edge.

    Returns:
        uint8 (H, W, 3): `generated` inside the mask, `original` outside.
    """
    if generated.shape != original.shape or generated.shape[:2] != mask.shape:
        raise ValueError(
            "`generated`, `original` and `mask` must have the same height and width. "
            f"Received: {generated.shape}, {original.shape}, {mask.shape}"
        )
    soft = Image.fromarray((mask * 255).astype(np.uint8))
    if feather_radius > 0:
        soft = soft.filter(ImageFilter.GaussianBlur(feather_radius))
    weight = (np.asarray(soft, dtype=np.float32) / 255.0)[..., None]
    blended = weight * generated.astype(np.float32) + (1 - weight) * original.astype(np.float32)
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def depth_to_latent(depth: np.ndarray, latent_size: tuple[int, int]) -> np.ndarray:
    """A depth map at the latent size, normalised as Stable Diffusion 2 depth models expect.

    Bicubic resize to (h, w), then per image `2·(d − min)/(max − min) − 1`
    (diffusers' `StableDiffusionDepth2ImgPipeline.prepare_depth_map`), so the
    nearest point is 1 and the farthest −1 (MiDaS' relative inverse depth:
    larger is nearer).

    Args:
        depth: float (H, W) or (N, H, W), larger values nearer.
        latent_size: (h, w), the image size / 8.

    Returns:
        float32 (N, h, w, 1) in [−1, 1].

    Raises:
        InputError: for a constant map (max == min: no depth to follow) or a
            non-finite value.
    """
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim == 2:
        depth = depth[None]
    if depth.ndim != 3:
        raise InputError(
            f"A depth map must be (H, W) or (N, H, W). Received: depth.shape={depth.shape}"
        )
    if not np.isfinite(depth).all():
        raise InputError("The depth map has NaN or infinite values; expected finite depths.")
    height, width = _check_size(latent_size)
    maps = []
    for index, one in enumerate(depth):
        low, high = float(one.min()), float(one.max())
        if high == low:
            raise InputError(
                f"Depth map {index} is constant ({low:g} everywhere): there is no layout to "
                "follow. Pass a map whose values vary (larger is nearer)."
            )
        resized = np.asarray(
            Image.fromarray(one, mode="F").resize((width, height), Image.Resampling.BICUBIC),
            dtype=np.float32,
        )
        # Normalised with the full map's range: bicubic overshoot stays slightly beyond ±1,
        # as diffusers' resize-then-normalise would not; clip it.
        maps.append(np.clip(2 * (resized - low) / (high - low) - 1, -1, 1))
    return np.stack(maps)[..., None].astype(np.float32)


DEPTH_SUFFIXES = (".png", ".tif", ".tiff", ".npy")


def load_depth_map(depth: Any, size: tuple[int, int] | None = None) -> np.ndarray:
    """Reads a depth map (larger is nearer) as float32 (H, W).

    Args:
        depth: an array (H, W) or (H, W, 1); a PIL image; a file: an 8- or
            16-bit greyscale PNG/TIFF, or `.npy`. An RGB(A) image or array is
            converted to grey with a warning (a depth map has one channel).
        size: the model's (height, width): a map of another aspect ratio is
            warned about (it is resized to the latent size, so it stretches).

    Returns:
        float32 (H, W), the values as stored (not normalised).

    Raises:
        FileNotFoundError: for a missing file.
        InputError: for another suffix or a shape that is not a map.
    """
    name = "the depth map"
    if isinstance(depth, (str, os.PathLike)):
        path = Path(depth).expanduser()
        name = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"No depth map at {path}. Received: depth={str(depth)!r}")
        if path.suffix.lower() not in DEPTH_SUFFIXES:
            raise InputError(
                f"A depth map file must be {', '.join(DEPTH_SUFFIXES)}. Received: {path.name!r}"
            )
        if path.suffix.lower() == ".npy":
            depth = np.load(path, allow_pickle=False)
        else:
            depth = _open(path, "depth map", MAX_IMAGE_PIXELS, eight_bit=False)
    if isinstance(depth, Image.Image):
        if depth.mode in ("I;16", "I;16B", "I;16L", "I", "F", "L"):
            depth = np.asarray(depth.convert("F") if depth.mode != "F" else depth)
        else:
            warnings.warn(
                f"{name} is {depth.mode}, not greyscale; its grey level is used as the depth.",
                stacklevel=2,
            )
            depth = np.asarray(depth.convert("L"))
    array = np.asarray(depth)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    elif array.ndim == 3 and array.shape[-1] in (3, 4):
        warnings.warn(
            f"{name} has {array.shape[-1]} channels, not one; their mean is used as the depth.",
            stacklevel=2,
        )
        array = array[..., :3].astype(np.float32).mean(-1)
    if array.ndim != 2 or min(array.shape) < 1:
        raise InputError(
            f"A depth map must be (H, W) or (H, W, 1). Received: {name} of shape {array.shape}"
        )
    if size is not None:
        height, width = size
        if abs(array.shape[0] / array.shape[1] - height / width) > 0.01:
            warnings.warn(
                f"{name} is {array.shape[1]}×{array.shape[0]}, another aspect ratio than the "
                f"model's {width}×{height}; it is stretched to fit.",
                stacklevel=2,
            )
    return array.astype(np.float32)
