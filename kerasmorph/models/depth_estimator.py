"""Depth maps estimated from pictures: KerasHub's DepthAnything V2, from a local preset.

`stable-diffusion-2-depth` was trained on MiDaS maps of its images; this
estimates the same kind of map (relative inverse depth: larger is nearer)
with KerasHub's `DepthAnythingDepthEstimator`, for when no map is passed.
kerasmorph never downloads it: the estimator loads from a local KerasHub
preset folder (`task.json`, `config.json`, `model.weights.h5`, ...), e.g. one
saved on a machine online with

    keras_hub.models.DepthAnythingDepthEstimator.from_preset(
        "depth_anything_v2_small").save_to_preset("depth-anything-small")

and named by `depth_estimator=` or `$KERASMORPH_DEPTH_ESTIMATOR`. KerasHub
is an optional extra (`pip install "kerasmorph[depth]"`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from kerasmorph.errors import InputError

DEPTH_ESTIMATOR_ENV = "KERASMORPH_DEPTH_ESTIMATOR"
# What a KerasHub preset folder holds (`save_to_preset`).
PRESET_FILES = ("config.json", "task.json", "model.weights.h5")


def estimator_path(depth_estimator: str | os.PathLike | None) -> Path | None:
    """The preset folder to load: `depth_estimator`, else `$KERASMORPH_DEPTH_ESTIMATOR`, or None."""
    chosen = depth_estimator if depth_estimator is not None else os.environ.get(DEPTH_ESTIMATOR_ENV)
    return None if chosen in (None, "") else Path(chosen).expanduser()


def load_depth_estimator(path: str | os.PathLike):
    """Loads a KerasHub depth estimator from a local preset folder, never from the network.

    Args:
        path: a folder written by KerasHub's `save_to_preset`.

    Returns:
        A `keras_hub.models.DepthEstimator` (its preprocessor included).

    Raises:
        InputError: when the folder is missing or lacks a preset file (naming
            them), or is not a depth estimator.
        DependencyError: when keras-hub is not installed.
    """
    folder = Path(path).expanduser()
    missing = [name for name in PRESET_FILES if not (folder / name).is_file()]
    if missing:
        raise InputError(
            f"The depth estimator {folder} is not a local KerasHub preset folder: "
            f"{', '.join(missing)} missing. Save one where the network is reachable "
            "(keras_hub.models.DepthAnythingDepthEstimator.from_preset("
            "'depth_anything_v2_small').save_to_preset(DIR)), or pass --depth."
        )
    try:
        import keras_hub
    except ImportError as error:
        from kerasmorph.installs import missing_dependency

        raise missing_dependency("Estimating depth", ["keras-hub"], extra="depth") from error
    try:
        return keras_hub.models.DepthEstimator.from_preset(str(folder))
    except (ValueError, KeyError, TypeError) as error:
        raise InputError(
            f"{folder} is not a KerasHub depth estimator preset. Cause: "
            f"{type(error).__name__}: {error}"
        ) from error


def estimate_depth(estimator: Any, images: np.ndarray) -> np.ndarray:
    """Relative inverse depth (larger is nearer) of uint8 images.

    Args:
        estimator: a `keras_hub.models.DepthEstimator` (`load_depth_estimator`).
        images: uint8 (N, H, W, 3); the estimator's preprocessor resizes them.

    Returns:
        float32 (N, h, w) at the estimator's resolution, for
        `kerasmorph.images.depth_to_latent` (which resizes and normalises).
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(
            "`images` must be uint8 (N, H, W, 3). "
            f"Received: shape={images.shape}, dtype={images.dtype}"
        )
    output = estimator.predict(images.astype(np.float32), verbose=0)
    depths = output["depths"] if isinstance(output, dict) else output
    return np.asarray(depths, dtype=np.float32)[..., 0]
