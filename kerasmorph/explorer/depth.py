"""Depth-to-image: a depth model's map set once, then img2img (`Explorer.depth_to_image`).

The map (an array, a PIL image, a greyscale PNG/TIFF or `.npy`; larger is
nearer) is resized to the latent size (bicubic) and normalised per image to
[−1, 1] (`images.depth_to_latent`), then stored in the UNet's `DepthChannel`
(`models.depth`), which concatenates it to the latent at every UNet call of
both guidance passes. Every later image of the Explorer follows it until
another map is set, so any walk run after `set_depth_map` is depth-locked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from kerasmorph import images as images_lib
from kerasmorph import models
from kerasmorph.errors import InputError

if TYPE_CHECKING:
    from kerasmorph.explorer.explorer import Explorer

NO_ESTIMATOR = (
    "No depth map given: pass depth_map= (CLI: --depth DEPTH.png, an 8/16-bit greyscale PNG or "
    ".npy, larger values nearer), or a local KerasHub DepthAnything preset folder as "
    "depth_estimator= (CLI: --depth-estimator DIR, or $KERASMORPH_DEPTH_ESTIMATOR); "
    "kerasmorph never downloads one."
)


def estimated_depth(explorer: "Explorer", image: Any, depth_estimator: Any) -> np.ndarray:
    """The depth of the first of `image` by the estimator `depth_estimator` names (or the
    environment's): float32 (h, w). Raises `InputError(NO_ESTIMATOR)` when none is named."""
    path = models.depth_estimator.estimator_path(depth_estimator)
    if path is None:
        raise InputError(NO_ESTIMATOR)
    estimator = explorer._store.memo(
        ("depth_estimator", str(path.resolve())),
        lambda: models.depth_estimator.load_depth_estimator(path),
    )
    pictures = explorer.load_images(image)
    return models.depth_estimator.estimate_depth(estimator, pictures[:1])[0]


def set_depth_map(explorer: "Explorer", depth_map: Any, normalised: bool = False) -> np.ndarray:
    """Stores `depth_map` in the Explorer's depth UNet; returns it normalised, float32 (h, w).

    `normalised=True`: `depth_map` is already the latent-size map in [−1, 1]
    (what this returns; a render manifest keeps it), stored as it is.
    """
    unet = explorer.diffusion_model
    if models.depth.depth_layer(unet) is None:
        raise InputError(
            f"The {explorer.preset.name!r} model has no depth input (a 4-channel UNet); a depth "
            "map needs a depth model: `shapes-depth`, or a converted stable-diffusion-2-depth "
            "folder."
        )
    if depth_map is None:
        raise InputError(NO_ESTIMATOR)
    if normalised:
        latent = np.asarray(depth_map, dtype=np.float32).reshape(1, *explorer.latent_shape[:2], 1)
    else:
        size = (explorer.img_height, explorer.img_width)
        depth = images_lib.load_depth_map(depth_map, size)
        latent = images_lib.depth_to_latent(depth, explorer.latent_shape[:2])
    models.depth.set_depth_map(unet, latent)
    return latent[0, ..., 0]


def depth_image(latent_depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A normalised map (h, w) in [−1, 1] as a 16-bit grey image (H, W) for inspection."""
    from PIL import Image

    scaled = np.round((np.asarray(latent_depth, np.float32) + 1) * 32767.5).astype(np.uint16)
    image = Image.fromarray(scaled).resize((size[1], size[0]), Image.Resampling.NEAREST)
    return np.asarray(image, dtype=np.uint16)
