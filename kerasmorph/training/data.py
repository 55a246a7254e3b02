"""The training images and captions of textual inversion (numpy and Pillow only).

- `load_concept_images`: a folder, files, arrays or PIL images brought to the
  model size with the `kerasmorph.images` fit policies; smaller images are
  upscaled with a warning, an unreadable image file is an error naming it;
- `augment`: diffusers' and keras.io's light augmentation — a random square-ish
  crop of 80–100% of the side, resized back, and a horizontal flip;
- `TEMPLATES`: the caption templates of diffusers' `textual_inversion.py`
  (`"object"`: "a photo of a {}", …; `"style"`: "a painting in the style of
  {}", …), and `resolve_templates` for a set name or one's own list.

Each step's draw follows from `(seed, step)` alone (`step_rng`), so a run
resumed from a checkpoint makes the same batches as one never stopped.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from kerasmorph import images as images_lib
from kerasmorph.errors import InputError

# diffusers examples/textual_inversion/textual_inversion.py (imagenet_templates_small,
# imagenet_style_templates_small).
TEMPLATES: dict[str, tuple[str, ...]] = {
    "object": (
        "a photo of a {}",
        "a rendering of a {}",
        "a cropped photo of the {}",
        "the photo of a {}",
        "a photo of a clean {}",
        "a photo of a dirty {}",
        "a dark photo of the {}",
        "a photo of my {}",
        "a photo of the cool {}",
        "a close-up photo of a {}",
        "a bright photo of the {}",
        "a cropped photo of a {}",
        "a photo of the {}",
        "a good photo of the {}",
        "a photo of one {}",
        "a close-up photo of the {}",
        "a rendition of the {}",
        "a photo of the clean {}",
        "a rendition of a {}",
        "a photo of a nice {}",
        "a good photo of a {}",
        "a photo of the nice {}",
        "a photo of the small {}",
        "a photo of the weird {}",
        "a photo of the large {}",
        "a photo of a cool {}",
        "a photo of a small {}",
    ),
    "style": (
        "a painting in the style of {}",
        "a rendering in the style of {}",
        "a cropped painting in the style of {}",
        "the painting in the style of {}",
        "a clean painting in the style of {}",
        "a dirty painting in the style of {}",
        "a dark painting in the style of {}",
        "a picture in the style of {}",
        "a cool painting in the style of {}",
        "a close-up painting in the style of {}",
        "a bright painting in the style of {}",
        "a good painting in the style of {}",
        "a close-up painting in the style of {}",
        "a rendition in the style of {}",
        "a nice painting in the style of {}",
        "a small painting in the style of {}",
        "a weird painting in the style of {}",
        "a large painting in the style of {}",
    ),
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def resolve_templates(templates: str | Sequence[str]) -> tuple[str, ...]:
    """The caption templates: a set's name (`"object"`, `"style"`) or one's own strings.

    Args:
        templates: a key of `TEMPLATES`, or templates each holding `{}` once
            (where the token goes), e.g. `["a {}", "a {} on a white background"]`.

    Returns:
        The templates as a tuple.
    """
    if isinstance(templates, str):
        if templates not in TEMPLATES:
            sets = ", ".join(repr(name) for name in TEMPLATES)
            raise InputError(
                f"Unknown template set. Valid sets: {sets}, or a list of templates "
                f"with one '{{}}' each. Received: templates={templates!r}"
            )
        return TEMPLATES[templates]
    templates = tuple(templates)
    if not templates:
        raise InputError("`templates` must not be empty. Received: templates=[]")
    for template in templates:
        if not isinstance(template, str) or template.count("{}") != 1:
            raise InputError(
                "Each template must be a string with one '{}' where the token goes, "
                f"e.g. 'a photo of a {{}}'. Received: {template!r}"
            )
    return templates


def step_rng(seed: int, step: int) -> np.random.Generator:
    """The generator of one training step's draws (images, crops, captions, t, noise)."""
    return np.random.default_rng([int(seed), int(step)])


def concept_image_sources(images: Any) -> list[Any]:
    """The images to train on: a folder's image files (sorted), files, arrays or PIL images.

    Raises:
        InputError: for a folder with no image file, or no image at all.
        FileNotFoundError: for a missing path.
    """
    if isinstance(images, (str, os.PathLike)) and Path(images).expanduser().is_dir():
        folder = Path(images).expanduser()
        files = sorted(
            path
            for path in folder.iterdir()
            if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
        )
        if not files:
            raise InputError(
                f"No image file in {folder}; expected {', '.join(IMAGE_SUFFIXES)} files."
            )
        return list(files)
    if isinstance(images, (str, os.PathLike, Image.Image)):
        return [images]
    if isinstance(images, np.ndarray):
        return list(images) if images.ndim == 4 else [images]
    sources = list(images)
    if not sources:
        raise InputError("`images` must hold at least one image. Received: images=[]")
    return sources


def _source_size(source: Any) -> tuple[int, int] | None:
    """(height, width) of an image before loading, or None when unknown."""
    if isinstance(source, Image.Image):
        return source.height, source.width
    if isinstance(source, np.ndarray) and source.ndim >= 2:
        return int(source.shape[0]), int(source.shape[1])
    if isinstance(source, (str, os.PathLike)):
        try:
            with Image.open(Path(source).expanduser()) as image:
                return image.height, image.width
        except (OSError, ValueError):
            return None  # load_image says what is wrong with it.
    return None


def load_concept_images(images: Any, size: tuple[int, int], *, fit: str = "resize") -> np.ndarray:
    """Loads the concept's images at the model size: uint8 (N, H, W, 3).

    Args:
        images: a folder (its image files, sorted by name), a path, a PIL
            image, an array (H, W, 3) / (N, H, W, 3), or a list of these.
        size: (height, width) of the model.
        fit: `"resize"`, `"center-crop"` or `"pad"` (`kerasmorph.images`).

    Returns:
        uint8 (N, height, width, 3).

    Raises:
        InputError: for no images, or an image file that cannot be read
            (naming it).
    """
    loaded = []
    for source in concept_image_sources(images):
        name = str(source) if isinstance(source, (str, os.PathLike)) else "an image"
        original = _source_size(source)
        try:
            loaded.append(images_lib.load_image(source, size, fit=fit))
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as error:
            raise InputError(f"Cannot read the training image {name}: {error}") from None
        if original is not None and (original[0] < size[0] or original[1] < size[1]):
            warnings.warn(
                f"{name} is {original[1]}×{original[0]}, smaller than the model's "
                f"{size[1]}×{size[0]}; it is upscaled (the concept may come out blurred).",
                stacklevel=2,
            )
    return np.stack(loaded)


def augment(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    crop: tuple[float, float] = (0.8, 1.0),
    flip: float = 0.5,
) -> np.ndarray:
    """A random crop (a share of each side in `crop`) resized back, then a flip.

    Args:
        image: uint8 (H, W, 3).
        rng: the step's generator.
        crop: (smallest, largest) share of the side kept; (1, 1) keeps the
            whole image.
        flip: probability of a horizontal flip (0 for concepts with a side,
            e.g. "in the top left").

    Returns:
        uint8 (H, W, 3).
    """
    height, width = image.shape[:2]
    share = float(rng.uniform(crop[0], crop[1]))
    crop_height, crop_width = max(1, round(height * share)), max(1, round(width * share))
    top = int(rng.integers(0, height - crop_height + 1))
    left = int(rng.integers(0, width - crop_width + 1))
    flipped = rng.random() < flip
    out = image
    if (crop_height, crop_width) != (height, width):
        pil = Image.fromarray(image[top : top + crop_height, left : left + crop_width])
        out = np.asarray(pil.resize((width, height), Image.Resampling.BICUBIC), dtype=np.uint8)
    return out[:, ::-1] if flipped else out
