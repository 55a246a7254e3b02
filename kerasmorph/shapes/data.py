"""The `shapes` dataset and the pixel measurements that score generated images.

Every sample is one anti-aliased shape — a circle, a square or an upright
triangle — in one of four colours, on a white 128×128 background, with a
templated caption:

    "a red circle"
    "a small blue square in the top left"
    "a large yellow triangle on the right on a white background"

Samples are drawn on the fly from a numpy generator, so a seed fixes the whole
stream and nothing is stored. Only numpy is needed (no TensorFlow).

The measurements (`measure`) are what the semantic tests use to score an image
without a classifier:

- **shape pixels**: HSV saturation `(max − min) / max` > 0.35 and value > 0.15
  (the white background has saturation 0; anti-aliased edges more than about
  one-third covered count), minus specks: 4-connected groups of fewer than
  `MIN_SPECK_PIXELS` = 32 pixels (0.2% of the image; the smallest shape has
  over 700) are dropped, so one stray dot does not stretch the bounding box;
- **colour**: circular mean of the shape pixels' HSV hue → the nearest of the
  four colours' hues (red 5°, yellow 50°, green 135°, blue 222°);
- **shape**: fill ratio = shape pixels / area of their bounding box:
  > 0.89 square, > 0.64 circle (π/4 ≈ 0.785), else triangle (0.5);
- **centroid**: mean (x, y) of the shape pixels, in [0, 1] of the width/height;
- **edge energy**: mean squared finite difference of the grey image (sharpness).

On real samples these score 100% colour and ≥ 97% shape (tests check it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

IMAGE_SIZE = 128
COLOURS: dict[str, tuple[int, int, int]] = {
    # Each colour has one channel at 0, so its coverage is max(1 − rgb/255).
    "red": (220, 20, 0),
    "green": (0, 160, 40),
    "blue": (0, 70, 230),
    "yellow": (240, 200, 0),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
# Background colours: the dataset's white, and the black of the style fine-tune
# (`shapes.train --background black`) that stands in for a style fine-tune in
# the depth + task-arithmetic recipe.
BACKGROUNDS: dict[str, int] = {"white": 255, "black": 0}
# Width of the black outline around each shape (`render(..., outline=True)`), as a
# fraction of the image width: one latent pixel at 128², so a local change of the
# latent (a black background changes all of it), for the outlined style fine-tune.
OUTLINE_WIDTH = 0.0625
# Shape width as a fraction of the image width.
MIN_SIZE, MAX_SIZE = 0.3, 0.7
SMALL_BELOW, LARGE_ABOVE = 0.42, 0.58
SQUARE_FILL, CIRCLE_FILL = 0.89, 0.64
MIN_SHAPE_PIXELS = 16
MIN_SPECK_PIXELS = 32
EMPTY_PROMPT = ""


@dataclasses.dataclass(frozen=True)
class CaptionOptions:
    """How often a caption names more than colour and shape.

    Attributes:
        size: probability of "small"/"large" when the size is clearly one.
        position: probability of a position phrase ("in the top left").
        background: probability of the suffix " on a white background".
    """

    size: float = 0.3
    position: float = 0.3
    background: float = 0.15


@dataclasses.dataclass(frozen=True)
class Sample:
    """One shape's parameters (no pixels).

    Attributes:
        colour: a key of `COLOURS`.
        shape: one of `SHAPES`.
        size: width (and height) as a fraction of the image, in [0.3, 0.7].
        center: (x, y) of the bounding box centre, fractions of the image.
    """

    colour: str
    shape: str
    size: float
    center: tuple[float, float]


def _hue(rgb: np.ndarray) -> np.ndarray:
    """HSV hue in degrees [0, 360) of float rgb (..., 3) in [0, 1]."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    maximum, minimum = rgb.max(-1), rgb.min(-1)
    delta = np.maximum(maximum - minimum, 1e-8)
    hue = np.where(
        maximum == r,
        ((g - b) / delta) % 6,
        np.where(maximum == g, (b - r) / delta + 2, (r - g) / delta + 4),
    )
    return hue * 60.0


COLOUR_HUES: dict[str, float] = {
    name: float(_hue(np.asarray(rgb, dtype=np.float64) / 255)) for name, rgb in COLOURS.items()
}


def sample_shapes(rng: np.random.Generator, num: int) -> list[Sample]:
    """Draws `num` random shapes: uniform colour, shape, size and position."""
    samples = []
    for _ in range(num):
        size = float(rng.uniform(MIN_SIZE, MAX_SIZE))
        margin = size / 2 + 2 / IMAGE_SIZE
        center = tuple(float(v) for v in rng.uniform(margin, 1 - margin, size=2))
        samples.append(
            Sample(
                colour=list(COLOURS)[rng.integers(len(COLOURS))],
                shape=SHAPES[rng.integers(len(SHAPES))],
                size=size,
                center=center,
            )
        )
    return samples


def coverage(sample: Sample, image_size: int = IMAGE_SIZE, supersample: int = 4) -> np.ndarray:
    """Anti-aliased coverage of a shape: float32 (image_size, image_size) in [0, 1].

    Each pixel is the fraction of its `supersample`² sub-pixel centres inside
    the shape.
    """
    n = image_size * supersample
    coords = (np.arange(n) + 0.5) / n
    x, y = coords[None, :], coords[:, None]
    cx, cy = sample.center
    half = sample.size / 2
    if sample.shape == "circle":
        inside = (x - cx) ** 2 + (y - cy) ** 2 <= half**2
    elif sample.shape == "square":
        inside = (np.abs(x - cx) <= half) & (np.abs(y - cy) <= half)
    elif sample.shape == "triangle":
        # Upright isosceles: apex at the top centre, base along the bottom.
        top = cy - half
        depth = (y - top) / sample.size  # 0 at the apex, 1 at the base.
        inside = (depth >= 0) & (depth <= 1) & (np.abs(x - cx) <= depth * half)
    else:
        raise ValueError(f"`shape` must be one of {SHAPES}. Received: shape={sample.shape!r}")
    inside = inside.astype(np.float32)
    return inside.reshape(image_size, supersample, image_size, supersample).mean((1, 3))


def render(
    sample: Sample,
    image_size: int = IMAGE_SIZE,
    supersample: int = 4,
    background: str = "white",
    outline: bool = False,
) -> np.ndarray:
    """Draws a sample: uint8 (image_size, image_size, 3), on a `BACKGROUNDS` colour.

    `outline=True` draws a black band `OUTLINE_WIDTH` wide around the shape
    (the shape itself keeps its size; only its anti-aliased edge pixels change).
    """
    if background not in BACKGROUNDS:
        raise ValueError(
            f"`background` must be one of {tuple(BACKGROUNDS)}. Received: background={background!r}"
        )
    alpha = coverage(sample, image_size, supersample)[..., None]
    colour = np.asarray(COLOURS[sample.colour], dtype=np.float32)
    outer = alpha
    if outline:
        # The same shape grown about its centre contains it: the band is outer − alpha.
        grown = dataclasses.replace(sample, size=sample.size + 2 * OUTLINE_WIDTH)
        outer = np.maximum(coverage(grown, image_size, supersample)[..., None], alpha)
    image = BACKGROUNDS[background] * (1 - outer) + colour * alpha  # The band is black (0).
    return np.round(image).astype(np.uint8)


def size_word(sample: Sample) -> str | None:
    """ "small", "large" or None (sizes in between are not named)."""
    if sample.size < SMALL_BELOW:
        return "small"
    if sample.size > LARGE_ABOVE:
        return "large"
    return None


def position_phrase(sample: Sample) -> str:
    """Where the shape's centre is, by thirds: "in the top left", "at the top", "in the center"…"""
    cx, cy = sample.center
    horizontal = "left" if cx < 0.4 else "right" if cx > 0.6 else None
    vertical = "top" if cy < 0.4 else "bottom" if cy > 0.6 else None
    if horizontal and vertical:
        return f"in the {vertical} {horizontal}"
    if vertical:
        return f"at the {vertical}"
    if horizontal:
        return f"on the {horizontal}"
    return "in the center"


def caption(
    sample: Sample, rng: np.random.Generator, options: CaptionOptions = CaptionOptions()
) -> str:
    """A templated caption; always names colour and shape, sometimes size and position."""
    words = ["a"]
    size = size_word(sample)
    if size and rng.random() < options.size:
        words.append(size)
    words += [sample.colour, sample.shape]
    if rng.random() < options.position:
        words.append(position_phrase(sample))
    if rng.random() < options.background:
        words.append("on a white background")
    return " ".join(words)


def generate_batch(
    rng: np.random.Generator,
    batch_size: int,
    *,
    image_size: int = IMAGE_SIZE,
    supersample: int = 4,
    options: CaptionOptions = CaptionOptions(),
    background: str = "white",
    outline: bool = False,
) -> tuple[np.ndarray, list[str], list[Sample]]:
    """Draws a batch of images and captions.

    Args:
        rng: the numpy generator (the whole stream follows from its seed).
        batch_size: number of samples.
        image_size: image side in pixels.
        supersample: sub-pixels per side for anti-aliasing.
        options: caption probabilities. On a black background the suffix
            " on a white background" is never added (it would be false).
        background: a `BACKGROUNDS` name.
        outline: draw a black outline around each shape (`render`).

    Returns:
        `(images, captions, samples)`: uint8 (N, S, S, 3), N strings, N `Sample`s.

    Example:

    ```python
    images, captions, _ = kerasmorph.shapes.data.generate_batch(
        np.random.default_rng(0), 8)
    ```
    """
    samples = sample_shapes(rng, batch_size)
    images = np.stack([render(s, image_size, supersample, background, outline) for s in samples])
    if background != "white":
        options = dataclasses.replace(options, background=0.0)
    captions = [caption(s, rng, options) for s in samples]
    return images, captions, samples


def concept_batch(
    rng: np.random.Generator,
    num: int,
    *,
    colour: str,
    shape: str,
    size: tuple[float, float] = (MIN_SIZE, MAX_SIZE),
    center: tuple[float, float] = (0.0, 1.0),
    image_size: int = IMAGE_SIZE,
) -> np.ndarray:
    """Images of one concept (e.g. a large green circle in the top left), for textual inversion.

    Args:
        rng: the numpy generator.
        num: number of images.
        colour: a key of `COLOURS`.
        shape: one of `SHAPES`.
        size: (smallest, largest) width as a fraction of the image, within [0.3, 0.7].
        center: (lowest, highest) x and y of the centre, fractions of the image;
            clamped so that the shape stays inside it.
        image_size: image side in pixels.

    Returns:
        uint8 (num, image_size, image_size, 3).

    Example:

    ```python
    # Green circles 60-70% wide, centred in the top-left 35% of the image.
    images = kerasmorph.shapes.data.concept_batch(
        np.random.default_rng(0), 12, colour="green", shape="circle",
        size=(0.6, 0.7), center=(0.0, 0.35))
    ```
    """
    if colour not in COLOURS or shape not in SHAPES:
        raise ValueError(
            f"Expected a colour in {list(COLOURS)} and a shape in {list(SHAPES)}. "
            f"Received: colour={colour!r}, shape={shape!r}"
        )
    if not MIN_SIZE <= size[0] <= size[1] <= MAX_SIZE:
        raise ValueError(
            f"`size` must be (low, high) within [{MIN_SIZE}, {MAX_SIZE}]. Received: size={size}"
        )
    images = []
    for _ in range(num):
        width = float(rng.uniform(*size))
        margin = width / 2 + 2 / image_size
        low = min(max(center[0], margin), 1 - margin)
        high = max(min(center[1], 1 - margin), low)
        centre = tuple(float(v) for v in rng.uniform(low, high, size=2))
        images.append(render(Sample(colour, shape, width, centre), image_size))
    return np.stack(images)


def depth_map(sample: Sample, image_size: int = IMAGE_SIZE, blur: float = 4.0) -> np.ndarray:
    """The scene's "depth": the shape near (1), the background far (0), edges blurred.

    What the `shapes-depth` model is trained to follow, standing in for a MiDaS map
    (relative inverse depth: larger is nearer).

    Args:
        sample: the shape.
        image_size: side in pixels.
        blur: Gaussian sigma in pixels.

    Returns:
        float32 (image_size, image_size) in [0, 1].
    """
    mask = coverage(sample, image_size, supersample=2).astype(np.float64)
    radius = int(3 * blur)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / blur) ** 2)
    taps /= taps.sum()
    padded = np.pad(mask, radius, mode="constant")
    rows = np.apply_along_axis(lambda r: np.convolve(r, taps, mode="valid"), 1, padded)
    blurred = np.apply_along_axis(lambda c: np.convolve(c, taps, mode="valid"), 0, rows)
    return blurred.astype(np.float32)


# ----------------------------------------------------------------- measurements


def shape_mask(image: np.ndarray) -> np.ndarray:
    """Boolean (H, W): the saturated pixels of a uint8 (H, W, 3) image."""
    rgb = np.asarray(image, dtype=np.float32) / 255.0
    maximum, minimum = rgb.max(-1), rgb.min(-1)
    saturation = (maximum - minimum) / np.maximum(maximum, 1e-8)
    return _drop_specks((saturation > 0.35) & (maximum > 0.15))


def _drop_specks(mask: np.ndarray) -> np.ndarray:
    """Removes 4-connected groups of fewer than `MIN_SPECK_PIXELS` pixels."""
    height, width = mask.shape
    seen = np.zeros_like(mask)
    kept = mask.copy()
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        seen[start] = True
        group, stack = [start], [start]
        while stack:
            row, col = stack.pop()
            for r, c in ((row - 1, col), (row + 1, col), (row, col - 1), (row, col + 1)):
                if 0 <= r < height and 0 <= c < width and mask[r, c] and not seen[r, c]:
                    seen[r, c] = True
                    group.append((r, c))
                    stack.append((r, c))
        if len(group) < MIN_SPECK_PIXELS:
            rows, cols = zip(*group)
            kept[list(rows), list(cols)] = False
    return kept


def _nearest_colour(hue: float) -> str:
    def distance(name: str) -> float:
        gap = abs(hue - COLOUR_HUES[name]) % 360
        return min(gap, 360 - gap)

    return min(COLOUR_HUES, key=distance)


def colour_shares(image: np.ndarray) -> dict[str, float]:
    """Fraction of the shape pixels whose hue is nearest each colour (0 when none)."""
    mask = shape_mask(image)
    shares = dict.fromkeys(COLOURS, 0.0)
    if mask.sum() == 0:
        return shares
    hues = _hue(np.asarray(image, dtype=np.float32)[mask] / 255.0)
    centres = np.asarray([COLOUR_HUES[name] for name in COLOURS])
    gaps = np.abs(hues[:, None] - centres[None]) % 360
    nearest = np.minimum(gaps, 360 - gaps).argmin(-1)
    for index, name in enumerate(COLOURS):
        shares[name] = float(np.mean(nearest == index))
    return shares


def background_darkness(image: np.ndarray) -> float:
    """1 − the mean grey level of the pixels outside the shape, in [0, 1].

    About 0 on the dataset's white background, about 1 on the black one of
    the style fine-tune (`shapes-black`); 1 for an image that is all shape.
    """
    mask = shape_mask(image)
    if mask.all():
        return 1.0
    grey = np.asarray(image, dtype=np.float32).mean(-1) / 255.0
    return float(1.0 - grey[~mask].mean())


def outline_darkness(image: np.ndarray, band: int = 4) -> float:
    """Mean darkness (1 − the brightest channel) of the pixels within `band` of the shape's
    edge, inside or outside it, in [0, 1].

    About 0.05 for the dataset's shapes on white (0.16 for green, the darkest
    colour), about 0.6 for outlined ones (`render(..., outline=True)`: the band
    outside is black, the band inside the shape's colour), as the outlined style
    fine-tune `shapes-outlined` draws them. A dark rim counts whether the mask
    takes it in (dark red) or not (black). 0 when there is no shape.
    """
    mask = shape_mask(image)
    if not mask.any() or mask.all():
        return 0.0
    edge = _dilate(mask, band) & _dilate(~mask, band)
    value = np.asarray(image, dtype=np.float32).max(-1) / 255.0
    return float(1.0 - value[edge].mean())


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Boolean (H, W): `mask` grown by a disc of `radius` pixels."""
    height, width = mask.shape
    padded = np.pad(mask, radius)
    grown = mask.copy()
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx <= radius * radius:
                row, col = radius + dy, radius + dx
                grown |= padded[row : row + height, col : col + width]
    return grown


def edge_energy(image: np.ndarray) -> float:
    """Mean squared horizontal + vertical difference of the grey image in [0, 1]."""
    grey = np.asarray(image, dtype=np.float32).mean(-1) / 255.0
    return float(np.mean(np.diff(grey, axis=0) ** 2) + np.mean(np.diff(grey, axis=1) ** 2))


@dataclasses.dataclass(frozen=True)
class Measurement:
    """What `measure` reads off one image.

    Attributes:
        colour: nearest colour name of the mean hue, None when no shape.
        shape: "square", "circle" or "triangle" from the fill ratio, None when no shape.
        fill: shape pixels / bounding-box area (0 when no shape).
        centroid: (x, y) in [0, 1], None when no shape.
        num_pixels: number of shape pixels.
    """

    colour: str | None
    shape: str | None
    fill: float
    centroid: tuple[float, float] | None
    num_pixels: int


def measure(image: np.ndarray) -> Measurement:
    """Measures the colour, shape and position of the one shape in an image.

    Args:
        image: uint8 (H, W, 3).

    Returns:
        A `Measurement`; colour and shape are None when fewer than 16 pixels
        are saturated.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"`image` must have shape (H, W, 3). Received: image.shape={image.shape}")
    mask = shape_mask(image)
    num_pixels = int(mask.sum())
    if num_pixels < MIN_SHAPE_PIXELS:
        return Measurement(None, None, 0.0, None, num_pixels)
    rows, cols = np.nonzero(mask)
    box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    fill = num_pixels / box
    shape = "square" if fill > SQUARE_FILL else "circle" if fill > CIRCLE_FILL else "triangle"
    angles = np.deg2rad(_hue(image[mask].astype(np.float32) / 255.0))
    mean_hue = np.rad2deg(np.arctan2(np.sin(angles).mean(), np.cos(angles).mean())) % 360
    height, width = mask.shape
    centroid = ((cols.mean() + 0.5) / width, (rows.mean() + 0.5) / height)
    return Measurement(_nearest_colour(float(mean_hue)), shape, float(fill), centroid, num_pixels)


def accuracy(
    images: Sequence[np.ndarray], colours: Sequence[str], shapes: Sequence[str]
) -> tuple[float, float]:
    """Fractions of images whose measured colour and shape match the targets."""
    measured = [measure(image) for image in images]
    colour = np.mean([m.colour == c for m, c in zip(measured, colours)])
    shape = np.mean([m.shape == s for m, s in zip(measured, shapes)])
    return float(colour), float(shape)
