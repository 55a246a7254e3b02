"""How smooth a morph is: numbers from its frames, with no pretrained network.

A morph (any walk) is a sequence of frames. Its neighbouring-frame distances
`d_i = D(frame_i, frame_{i+1})`, i = 0 … F − 2, say where it changes; the
literature's smoothness metrics are statistics of them:

| name | formula | source |
|---|---|---|
| path length | `Σ d_i` | DiffMorpher (CVPR 2024) PPL, with LPIPS as D |
| directness | `Σ d_i / D(frame_0, frame_{F−1})` | ≥ 1 when D is a metric; 1: no detour |
| ISTD | `std(d)` (population) | Smooth Diffusion (CVPR 2024), pixel L2 as D |
| PDV | `var(d)` (population) | DiffMorpher (CVPR 2024), LPIPS as D |
| smoothness | `1 − Gini(d)` | AID (NeurIPS 2024) |
| consistency | `mean(d)` | AID (NeurIPS 2024) |
| largest jump | `max d_i` and its i (between frames i and i + 1) | AID reports max d too |

LPIPS needs a pretrained network, so the distances here are computable
offline: `"l2"` (root-mean-square pixel difference), `"mad"` (mean absolute
pixel difference), `"ssim"` (1 − SSIM) on frames, and `"latent_l2"` (root-mean-
square difference) on VAE latents the caller encodes (`Explorer.encode_image`;
this module knows nothing of models). Every distance is in the units of
pixels in [0, 1]: multiply `"l2"` by 255 for grey levels, or by
`255·sqrt(H·W·3)` for the plain L2 norm of [0, 255] frames. Smooth Diffusion
takes "the L2 distance in pixel space" of 512×512 images; its absolute ISTD
(38.63 for SD 1.5) is not on this scale, which instead makes 256² and 512²
renders comparable.

The presence curve says whether the subject survives the morph: the share of
pixels that differ from the background, relative to the endpoints' mean
(`presence`).

Numpy only: SSIM is computed here, as `tf.image.ssim` computes it.

Example:

```python
import kerasmorph

frames = kerasmorph.walks.interpolate(explorer, ["a red circle", "a blue square"], 16)
result = kerasmorph.metrics.evaluate_frames(frames)
result["distances"]["l2"]["smoothness"], result["presence"]["minimum"]
```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from kerasmorph.errors import InputError

__all__ = [
    "DISTANCES",
    "METRICS",
    "PRESENCE_THRESHOLD",
    "compare",
    "directness",
    "evaluate_frames",
    "frame_distances",
    "gini",
    "largest_jump",
    "latent_distances",
    "path_statistics",
    "presence",
    "relative_presence",
    "smoothness",
]

Distance = Literal["l2", "mad", "ssim", "latent_l2"]
# The distances computed on frames; "latent_l2" is computed on latents.
DISTANCES: tuple[str, ...] = ("l2", "mad", "ssim")
LATENT_DISTANCE = "latent_l2"
METRICS: tuple[str, ...] = (*DISTANCES, LATENT_DISTANCE)
# A pixel is foreground when a channel differs from the background by more than this
# (grey levels of 255): a shape of `shapes` (one channel at 0 on white) from a 1/8 coverage.
PRESENCE_THRESHOLD = 32
# SSIM as Wang et al. (2004) and `tf.image.ssim`: an 11-tap Gaussian window of σ 1.5,
# "valid" positions only, K1 = 0.01, K2 = 0.03, averaged over positions and channels.
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


# ------------------------------------------------------------------ input checks


def _check_frames(frames: Any, name: str = "frames") -> np.ndarray:
    """`frames` as one (F, H, W, 3) array of uint8 or floats in [0, 1], F >= 2; else one line."""
    if not isinstance(frames, np.ndarray):
        frames = [np.asarray(frame) for frame in frames]
        for index, frame in enumerate(frames[1:], 1):
            if frame.shape != frames[0].shape:
                raise InputError(
                    f"All `{name}` must have the same shape: frame {index} has shape "
                    f"{frame.shape} but frame 0 has {frames[0].shape}."
                )
        frames = np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape[1:3]:
        raise InputError(
            f"`{name}` must be RGB frames of shape (num_frames, height, width, 3). "
            f"Received: {name}.shape={frames.shape}"
        )
    if len(frames) < 2:
        raise InputError(
            f"`{name}` must hold at least 2 frames (distances are between neighbours). "
            f"Received: {len(frames)} frame{'' if len(frames) == 1 else 's'}"
        )
    if frames.dtype == np.uint8:
        return frames
    if not np.issubdtype(frames.dtype, np.floating):
        raise InputError(
            f"`{name}` must be uint8 (0–255) or floats in [0, 1]; convert with "
            f"`.astype('uint8')`. Received: {name}.dtype={frames.dtype}"
        )
    if not np.isfinite(frames).all():
        raise InputError(f"`{name}` must be finite. Received: NaN or Inf in {name}")
    if frames.min() < 0 or frames.max() > 1:
        raise InputError(
            f"Float `{name}` must lie in [0, 1] (or pass uint8 frames). Received: values "
            f"in [{float(frames.min()):.4g}, {float(frames.max()):.4g}]"
        )
    return frames


def _check_latents(latents: Any) -> np.ndarray:
    """`latents` as a finite float (F, h, w, C) array, F >= 2; else one line."""
    latents = np.asarray(latents)
    if latents.ndim != 4 or not (
        np.issubdtype(latents.dtype, np.floating) or np.issubdtype(latents.dtype, np.integer)
    ):
        raise InputError(
            "`latents` must be a real array of shape (num_frames, height, width, channels), "
            f"e.g. Explorer.encode_image(frames). Received: latents.shape={latents.shape}, "
            f"dtype={latents.dtype}"
        )
    if len(latents) < 2:
        raise InputError(f"`latents` must hold at least 2 frames. Received: {len(latents)}")
    if not np.isfinite(latents).all():
        raise InputError("`latents` must be finite. Received: NaN or Inf in latents")
    return latents


def _check_distances(distances: Any) -> np.ndarray:
    """`distances` as a non-empty, finite, non-negative 1-D float64 array; else one line."""
    values = np.asarray(distances, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise InputError(
            "`distances` must be a non-empty 1-D array (F − 1 neighbouring-frame "
            f"distances). Received: shape {values.shape}"
        )
    if not np.isfinite(values).all() or (values < 0).any():
        raise InputError(
            f"`distances` must be finite and >= 0. Received: min {values.min()}, max {values.max()}"
        )
    return values


def _unit(frame: np.ndarray) -> np.ndarray:
    """A uint8 or [0, 1] frame as float64 in [0, 1]."""
    if frame.dtype == np.uint8:
        return frame.astype(np.float64) / 255.0
    return frame.astype(np.float64)


# --------------------------------------------------------------------- distances


def frame_distances(frames: Any, metric: str = "l2") -> np.ndarray:
    """Distances between neighbouring frames, in units of pixels in [0, 1].

    With a, b the frames i and i + 1 as floats in [0, 1] (uint8 / 255) and N =
    H·W·3 values each:

    - `"l2"`: `sqrt(Σ (b − a)² / N)`, the root-mean-square difference (Smooth
      Diffusion's ISTD uses pixel L2; × 255·sqrt(N) gives the plain L2 norm of
      [0, 255] frames);
    - `"mad"`: `Σ |b − a| / N`, the mean absolute difference
      (`kerasmorph.adaptive`'s default);
    - `"ssim"`: `1 − SSIM(a, b)`, SSIM as `tf.image.ssim(a, b, max_val=1)`:
      11×11 Gaussian window (σ 1.5), K1 0.01, K2 0.03, the mean over the valid
      window positions and channels (Wang et al. 2004). Frames must be at
      least 11×11. Not a metric: it can break the triangle inequality.

    Args:
        frames: (F, H, W, 3), F >= 2, uint8 (0–255) or floats in [0, 1]; or a
            sequence of (H, W, 3) frames of one shape.
        metric: `"l2"` (default), `"mad"` or `"ssim"`.

    Returns:
        float64 (F − 1,): entry i is the distance between frames i and i + 1.

    Raises:
        ValueError: for fewer than 2 frames, frames of different shapes, a
            wrong shape or dtype, non-finite values, or an unknown `metric`.

    Example:

    ```python
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    frames[2] = 255
    kerasmorph.metrics.frame_distances(frames, "l2")  # array([0., 1.])
    ```
    """
    if metric not in DISTANCES:
        hint = " (`latent_distances` takes latents)" if metric == LATENT_DISTANCE else ""
        raise InputError(
            f"`metric` must be one of {', '.join(map(repr, DISTANCES))}{hint}. "
            f"Received: metric={metric!r}"
        )
    frames = _check_frames(frames)
    if metric == "ssim":
        return _ssim_distances(frames)
    distances = np.empty(len(frames) - 1)
    previous = _unit(frames[0])
    for index in range(len(frames) - 1):
        current = _unit(frames[index + 1])
        difference = current - previous
        if metric == "l2":
            distances[index] = np.sqrt(np.mean(difference**2))
        else:
            distances[index] = np.mean(np.abs(difference))
        previous = current
    return distances


def latent_distances(latents: Any) -> np.ndarray:
    """Root-mean-square distances between neighbouring latents: `sqrt(Σ (z_{i+1} − z_i)² / n)`.

    The latents of the frames, encoded by the caller (`Explorer.encode_image`,
    the VAE posterior mean × 0.18215): a distance closer to what the model sees
    than pixels are. n = h·w·C values per latent.

    Args:
        latents: (F, h, w, C), F >= 2, finite.

    Returns:
        float64 (F − 1,).

    Example:

    ```python
    latents = explorer.encode_image(frames)          # (F, H/8, W/8, 4)
    kerasmorph.metrics.latent_distances(latents)
    ```
    """
    latents = _check_latents(latents).astype(np.float64)
    return np.sqrt(np.mean(np.diff(latents, axis=0) ** 2, axis=(1, 2, 3)))


def _gaussian_window() -> np.ndarray:
    offsets = np.arange(SSIM_WINDOW) - (SSIM_WINDOW - 1) / 2
    window = np.exp(-(offsets**2) / (2 * SSIM_SIGMA**2))
    return window / window.sum()


def _blur(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """(H, W, C) -> (H − 10, W − 10, C): the separable Gaussian mean, valid positions."""
    size = len(window)
    rows = image.shape[0] - size + 1
    blurred = sum(window[k] * image[k : k + rows] for k in range(size))
    columns = image.shape[1] - size + 1
    return sum(window[k] * blurred[:, k : k + columns] for k in range(size))


def _ssim_distances(frames: np.ndarray) -> np.ndarray:
    """1 − SSIM of neighbouring frames, one pair at a time (memory: a few frames)."""
    if min(frames.shape[1:3]) < SSIM_WINDOW:
        raise InputError(
            f'`metric="ssim"` needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels. '
            f"Received: frames of {frames.shape[1]}x{frames.shape[2]}"
        )
    window = _gaussian_window()
    c1, c2 = SSIM_K1**2, SSIM_K2**2

    def statistics(frame):
        image = _unit(frame)
        return image, _blur(image, window), _blur(image**2, window)

    distances = np.empty(len(frames) - 1)
    a, mean_a, square_a = statistics(frames[0])
    for index in range(len(frames) - 1):
        b, mean_b, square_b = statistics(frames[index + 1])
        product = mean_a * mean_b
        luminance = (2 * product + c1) / (mean_a**2 + mean_b**2 + c1)
        covariance = _blur(a * b, window) - product
        variances = square_a + square_b - mean_a**2 - mean_b**2
        structure = (2 * covariance + c2) / (variances + c2)
        distances[index] = 1.0 - np.mean(luminance * structure)
        a, mean_a, square_a = b, mean_b, square_b
    return distances


# -------------------------------------------------------------------- statistics


def gini(distances: Any) -> float:
    """The Gini coefficient of distances: `Σ_i Σ_j |d_i − d_j| / (2 n² mean(d))`.

    0 when every step is the same size; (n − 1)/n when one step holds the whole
    change. All-zero distances (identical frames) give 0.

    Args:
        distances: (n,) finite, >= 0.

    Returns:
        A float in [0, 1).

    Example:

    ```python
    kerasmorph.metrics.gini([0, 0, 0, 1])  # 0.75
    ```
    """
    values = _check_distances(distances)
    mean = values.mean()
    if mean == 0:
        return 0.0
    return float(np.abs(values[:, None] - values[None, :]).sum() / (2 * values.size**2 * mean))


def smoothness(distances: Any) -> float:
    """AID's smoothness, `1 − gini(distances)`: 1 for equal steps, 1/n for one jump.

    Args:
        distances: (n,) finite, >= 0.

    Returns:
        A float in (0, 1].

    References:
        AID: Attention Interpolation of Text-to-Image Diffusion (NeurIPS 2024).
    """
    return 1.0 - gini(distances)


def directness(distances: Any, endpoint_distance: float) -> float:
    """Path length over the distance between the endpoints: `Σ d_i / D(first, last)`.

    1 for frames evenly on a straight line; more when the morph detours
    through frames unlike both ends. ≥ 1 for a metric distance (`"l2"`,
    `"mad"`, `"latent_l2"`); `"ssim"` can give less. `inf` when the endpoints
    are the same (a loop) and the path is not.

    Args:
        distances: (n,) finite, >= 0.
        endpoint_distance: D(frame_0, frame_{F−1}), >= 0.

    Returns:
        A float >= 0 (1 when the path and the endpoint distance are both 0).
    """
    length = float(_check_distances(distances).sum())
    if not np.isfinite(endpoint_distance) or endpoint_distance < 0:
        raise InputError(
            f"`endpoint_distance` must be finite and >= 0. Received: {endpoint_distance!r}"
        )
    if endpoint_distance == 0:
        return 1.0 if length == 0 else float("inf")
    return length / float(endpoint_distance)


def largest_jump(distances: Any) -> tuple[float, int]:
    """The largest distance and its index i: the jump between frames i and i + 1.

    Ties go to the first. Returns `(d_max, i)`.
    """
    values = _check_distances(distances)
    index = int(np.argmax(values))
    return float(values[index]), index


def path_statistics(distances: Any, endpoint_distance: float | None = None) -> dict[str, Any]:
    """Every statistic of neighbouring-frame distances, JSON-friendly.

    Args:
        distances: (F − 1,) from `frame_distances` or `latent_distances`.
        endpoint_distance: the same distance between the first and last frame,
            for `directness`; None leaves it out.

    Returns:
        A dict: `distances` (list), `path_length` (Σ d, DiffMorpher's PPL),
        `mean` (AID's consistency), `istd` (std, Smooth Diffusion), `pdv`
        (variance, DiffMorpher), `smoothness` (1 − Gini, AID),
        `largest_jump`, `largest_jump_index` (between frames i and i + 1) and,
        given `endpoint_distance`, `endpoint_distance` and `directness` (None
        for a loop: the endpoints are the same).

    Example:

    ```python
    stats = kerasmorph.metrics.path_statistics([0.1, 0.1, 0.1, 0.1], 0.4)
    stats["pdv"], stats["smoothness"], stats["directness"]  # 0.0, 1.0, 1.0
    ```
    """
    values = _check_distances(distances)
    jump, index = largest_jump(values)
    stats: dict[str, Any] = {
        "distances": [float(value) for value in values],
        "path_length": float(values.sum()),
        "mean": float(values.mean()),
        "istd": float(values.std()),
        "pdv": float(values.var()),
        "smoothness": smoothness(values),
        "largest_jump": jump,
        "largest_jump_index": index,
    }
    if endpoint_distance is not None:
        ratio = directness(values, endpoint_distance)
        stats["endpoint_distance"] = float(endpoint_distance)
        stats["directness"] = ratio if np.isfinite(ratio) else None
    return stats


# ---------------------------------------------------------------------- presence


def presence(frames: Any, threshold: float = PRESENCE_THRESHOLD) -> np.ndarray:
    """The share of each frame's pixels that differ from its background.

    The background of a frame is the per-channel median of its 1-pixel border
    (so a subject touching less than half the border does not move it); a
    pixel is foreground when `max_c |pixel_c − background_c| > threshold`,
    in grey levels of 0–255.

    On the `shapes` model's white background a shape's pixel of coverage c is
    `c·colour + (1 − c)·white` with one channel at 0, so it counts from c >
    32/255 ≈ 0.13: the share is the shape's area plus part of its anti-aliased
    rim — 3 % more than the exact area on average, at most 7 %, over 60 random
    shapes at 128² (`tests/test_metrics.py`). `kerasmorph.shapes.data.shape_mask`
    counts saturated pixels only (from c ≈ 0.4) and so misses a shape that
    has paled towards grey; this counts anything unlike the background.

    Args:
        frames: (F, H, W, 3), uint8 or floats in [0, 1]; F >= 2.
        threshold: grey levels (0–255) a channel must differ by. Default 32.

    Returns:
        float64 (F,) in [0, 1].
    """
    frames = _check_frames(frames)
    if not 0 <= threshold < 255:
        raise InputError(f"`threshold` must be in [0, 255). Received: threshold={threshold!r}")
    shares = np.empty(len(frames))
    for index, frame in enumerate(frames):
        image = _unit(frame) * 255.0
        border = np.concatenate([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]])
        background = np.median(border, axis=0)
        shares[index] = np.mean(np.abs(image - background).max(axis=-1) > threshold)
    return shares


def relative_presence(shares: Any) -> np.ndarray | None:
    """Presence relative to the endpoints: `shares / mean(shares[0], shares[-1])`.

    1 where a frame shows as much subject as the ends on average; near 0 where
    the subject vanished mid-morph. None when both endpoints are empty.
    """
    shares = np.asarray(shares, dtype=np.float64)
    reference = (shares[0] + shares[-1]) / 2
    return None if reference == 0 else shares / reference


# ---------------------------------------------------------------------- together


def evaluate_frames(
    frames: Any,
    *,
    latents: Any = None,
    metrics: Sequence[str] = ("l2", "ssim"),
    threshold: float = PRESENCE_THRESHOLD,
) -> dict[str, Any]:
    """Every number of this module for one frame sequence, JSON-friendly.

    Args:
        frames: (F, H, W, 3), F >= 2, uint8 or floats in [0, 1].
        latents: optional (F, h, w, C) latents of the same frames
            (`Explorer.encode_image(frames)`): adds `"latent_l2"`.
        metrics: the frame distances to compute, from `DISTANCES`. Default
            `("l2", "ssim")`.
        threshold: the presence threshold in grey levels. Default 32.

    Returns:
        `{"num_frames", "height", "width", "distances": {metric:
        path_statistics(...)}, "presence": {"shares", "relative", "minimum",
        "argmin", "threshold"}}`; `minimum`/`argmin` are those of `relative`
        (None when both endpoints are empty).

    Example:

    ```python
    result = kerasmorph.metrics.evaluate_frames(frames, latents=explorer.encode_image(frames))
    result["distances"]["latent_l2"]["largest_jump_index"]
    ```
    """
    frames = _check_frames(frames)
    unknown = [name for name in metrics if name not in DISTANCES]
    if unknown or not metrics:
        raise InputError(
            f"`metrics` must name one or more of {', '.join(map(repr, DISTANCES))}. "
            f"Received: metrics={tuple(metrics)!r}"
        )
    ends = frames[[0, -1]]
    distances = {
        name: path_statistics(frame_distances(frames, name), frame_distances(ends, name)[0])
        for name in metrics
    }
    if latents is not None:
        latents = _check_latents(latents)
        if len(latents) != len(frames):
            raise InputError(
                "`latents` must hold one latent per frame. Received: "
                f"{len(latents)} latents for {len(frames)} frames"
            )
        end_distance = latent_distances(latents[[0, -1]])[0]
        distances[LATENT_DISTANCE] = path_statistics(latent_distances(latents), end_distance)
    shares = presence(frames, threshold)
    relative = relative_presence(shares)
    return {
        "num_frames": len(frames),
        "height": frames.shape[1],
        "width": frames.shape[2],
        "distances": distances,
        "presence": {
            "shares": [float(share) for share in shares],
            "relative": None if relative is None else [float(value) for value in relative],
            "minimum": None if relative is None else float(relative.min()),
            "argmin": None if relative is None else int(np.argmin(relative)),
            "threshold": float(threshold),
        },
    }


def compare(evaluations: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Flat rows of several `evaluate_frames` results: one per (sequence, distance).

    For a table (`pandas.DataFrame(rows)`, or `kerasmorph evaluate`'s): each
    row holds `name`, `num_frames`, `metric`, the scalar statistics of
    `path_statistics` and the presence `presence_minimum`/`presence_argmin`.

    Example:

    ```python
    rows = kerasmorph.metrics.compare({
        "slerp": kerasmorph.metrics.evaluate_frames(slerp_frames),
        "adaptive": kerasmorph.metrics.evaluate_frames(adaptive_frames),
    })
    ```
    """
    rows = []
    for name, evaluation in evaluations.items():
        for metric, stats in evaluation["distances"].items():
            row = {"name": name, "num_frames": evaluation["num_frames"], "metric": metric}
            row.update({key: value for key, value in stats.items() if key != "distances"})
            row["presence_minimum"] = evaluation["presence"]["minimum"]
            row["presence_argmin"] = evaluation["presence"]["argmin"]
            rows.append(row)
    return rows
