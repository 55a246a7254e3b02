"""AdaIN for interpolated noise: per-channel statistics lerped between the endpoints.

Mixing two noises (slerp, a variance-preserving mix, a lerp) keeps them
standard normal on average, but not each channel's own mean and standard
deviation, which the image's colours follow: DiffMorpher (Zhang et al.,
"DiffMorpher: Unleashing the Capability of Diffusion Models for Image
Morphing", CVPR 2024) corrects the colour drift along a morph by
renormalising the interpolated noise (adaptive instance normalisation,
Huang & Belongie 2017) to the lerp of the endpoints' per-channel mean and
standard deviation:

    x̂ = (x − μ(x)) / σ(x) · ((1 − t)·σ(z₀) + t·σ(z₁)) + (1 − t)·μ(z₀) + t·μ(z₁)

with μ, σ taken over the spatial axes of each channel. At t = 0 and t = 1 the
mixed noise is the endpoint itself, and is returned unchanged.

This module needs only numpy.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

# Statistics are over (h, w); a channel this flat is left as it is.
_MIN_STD = 1e-12


def adain(mixed: ArrayLike, start: ArrayLike, end: ArrayLike, t: ArrayLike) -> np.ndarray:
    """Renormalises interpolated noise to the endpoints' lerped channel statistics.

    Args:
        mixed: interpolated noise, (h, w, C) or (N, h, w, C), e.g. from
            `kerasmorph.interpolation.slerp(start, end, t)`.
        start, end: the endpoint noises, (h, w, C) each.
        t: the interpolation weight of `end`, a float or (N,) in [0, 1].

    Returns:
        float32 with the shape of `mixed`; rows with t = 0 or t = 1 are
        `mixed` unchanged (the endpoints themselves, for an exact mix).

    Raises:
        ValueError: for mismatched shapes, non-finite values, or `t` outside [0, 1].

    Example:

    ```python
    weights = np.linspace(0, 1, 9)
    noises = kerasmorph.noise_statistics.adain(
        kerasmorph.interpolation.slerp(z0, z1, weights), z0, z1, weights
    )
    ```
    """
    mixed = np.asarray(mixed, dtype=np.float64)
    start = np.asarray(start, dtype=np.float64)
    end = np.asarray(end, dtype=np.float64)
    single = mixed.ndim == 3
    batch = mixed[None] if single else mixed
    weights = np.atleast_1d(np.asarray(t, dtype=np.float64))
    if (
        batch.ndim != 4
        or start.shape != batch.shape[1:]
        or end.shape != batch.shape[1:]
        or weights.shape not in {(1,), (len(batch),)}
    ):
        raise ValueError(
            "`adain` takes mixed noise (h, w, C) or (N, h, w, C), endpoints (h, w, C) of "
            "the same size and one weight per row. Received: mixed.shape="
            f"{mixed.shape}, start.shape={start.shape}, end.shape={end.shape}, "
            f"t.shape={np.shape(t)}"
        )
    if not (np.isfinite(batch).all() and np.isfinite(start).all() and np.isfinite(end).all()):
        raise ValueError("`adain` needs finite noises. Received: NaN or Inf in its inputs")
    if not (np.isfinite(weights).all() and (weights >= 0).all() and (weights <= 1).all()):
        raise ValueError(f"`t` must be in [0, 1]. Received: t={weights.tolist()}")
    weights = np.broadcast_to(weights, (len(batch),))[:, None, None, None]
    target_mean = (1 - weights) * start.mean(axis=(0, 1)) + weights * end.mean(axis=(0, 1))
    target_std = (1 - weights) * start.std(axis=(0, 1)) + weights * end.std(axis=(0, 1))
    mean = batch.mean(axis=(1, 2), keepdims=True)
    std = np.maximum(batch.std(axis=(1, 2), keepdims=True), _MIN_STD)
    corrected = (batch - mean) / std * target_std + target_mean
    at_endpoint = (weights == 0) | (weights == 1)
    corrected = np.where(at_endpoint, batch, corrected).astype(np.float32)
    return corrected[0] if single else corrected
