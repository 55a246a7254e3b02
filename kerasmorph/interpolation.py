"""Interpolation in Stable Diffusion's latent spaces, in pure numpy.

Two kinds of arrays are interpolated, and they need different math:

- **Text encodings** `(77, D)` are mixed linearly (`lerp`, `bilinear_grid`,
  `barycentric_mix`, `delta_walk`), as in the KerasCV walk tutorial.
- **Diffusion noise** `(H/8, W/8, 4)` must stay standard normal, so it is
  mixed on the sphere (`slerp`) or with variance-preserving weights
  (`variance_preserving_mix`, `noise_loop`), always through
  `interpolate_noise`. A plain lerp is deliberately not offered for noise.

Every interpolator takes `(start, end, t)`, so they swap freely. `t` is a
weight in [0, 1] or a 1-D array of `n` weights; an array adds a leading
frame axis, `(n, *start.shape)`. Results keep the floating dtype of the
inputs (float32 in, float32 out; integers give float64), are computed in
float64, and hit the endpoints bit for bit: `t == 0` returns `start` and
`t == 1` returns `end`.

`plan_path` and `materialize_path` chain keyframes (prompt + noise pairs)
into one walk with no repeated frame at the joins.

This module needs only numpy: importing it loads neither TensorFlow nor Keras.

References:
    - Ian Stenbit, François Chollet, Luke Wood, "A walk through latent space
      with Stable Diffusion", keras.io (2022),
      https://keras.io/examples/generative/random_walks_with_stable_diffusion/
    - Tom White, "Sampling Generative Networks" (2016), arXiv:1609.04468 (slerp).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import numbers
import warnings
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from kerasmorph._checks import check_index, check_positions, format_array_value
from kerasmorph.schedules import (
    Schedule,
    ScheduleName,
    apply_schedule,
    get_schedule,
    schedule_weights,
)

NoiseMethod = Literal["slerp", "variance_preserving"]
PathMode = Literal["together", "alternate"]

# Tolerance on the sum of each row of `barycentric_mix` weights.
_WEIGHT_SUM_TOLERANCE = 1e-6


# ---------------------------------------------------------------------------
# Validation helpers.


def _as_real_array(name: str, value: ArrayLike) -> np.ndarray:
    """Returns `value` as a numpy array, or raises unless it is real numeric."""
    array = np.asarray(value)
    if array.dtype == bool or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise ValueError(
            f"`{name}` must be a real numeric array (integer or float). "
            f"Received: {name} with dtype {array.dtype}"
        )
    return array


def _as_matching_arrays(**named: ArrayLike) -> list[np.ndarray]:
    """Converts the arrays and checks that they all have the same shape."""
    arrays = [_as_real_array(name, value) for name, value in named.items()]
    if len({array.shape for array in arrays}) > 1:
        received = ", ".join(f"{name}.shape={array.shape}" for name, array in zip(named, arrays))
        raise ValueError(f"{_join_names(named)} must have the same shape. Received: {received}")
    return arrays


def _join_names(names: Sequence[str]) -> str:
    quoted = [f"`{name}`" for name in names]
    return " and ".join(quoted) if len(quoted) <= 2 else ", ".join(quoted)


def _output_dtype(*arrays: np.ndarray) -> np.dtype:
    """The floating dtype of the inputs; float64 for integer inputs."""
    dtype = np.result_type(*arrays)
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)


def _as_weights(t: ArrayLike) -> tuple[np.ndarray, bool]:
    """Returns (1-D float64 weights, whether `t` was a scalar)."""
    weights = check_positions("t", t, max_ndim=1)
    if weights.ndim == 1 and weights.size == 0:
        raise ValueError("`t` must hold at least one weight. Received: t=[] (empty)")
    return np.atleast_1d(weights), weights.ndim == 0


def _broadcast(weights: np.ndarray, ndim: int) -> np.ndarray:
    """(n,) -> (n, 1, ..., 1) to scale `ndim`-dimensional frames."""
    return weights.reshape((-1,) + (1,) * ndim)


def _finish(
    frames: np.ndarray,
    weights: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    scalar: bool,
) -> np.ndarray:
    """Casts float64 frames to the output dtype and makes the endpoints exact."""
    frames = frames.astype(_output_dtype(start, end))
    frames[weights == 0.0] = start
    frames[weights == 1.0] = end
    return frames[0] if scalar else frames


def _check_real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(
            f"`{name}` must be a finite real number. Received: {name}={format_array_value(value)}"
        )
    return float(value)


# ---------------------------------------------------------------------------
# Pairwise interpolators: (start, end, t).


def lerp(start: ArrayLike, end: ArrayLike, t: ArrayLike) -> np.ndarray:
    """Linear interpolation `start + t·(end − start)`, for text encodings.

    With `t = numpy.linspace(0, 1, n)` this reproduces
    `tf.linspace(start, end, n)` of the KerasCV tutorials, with both endpoints
    exact.

    Args:
        start: array, e.g. a float32 text encoding of shape `(77, D)`.
        end: array with the shape of `start`.
        t: weight of `end` in [0, 1], or a 1-D array of `n` weights.

    Returns:
        Array of shape `start.shape` for a scalar `t`, `(n, *start.shape)` for
        a 1-D `t`, with the floating dtype of the inputs. Frames where
        `t == 0` equal `start` and frames where `t == 1` equal `end` bit for
        bit.

    Raises:
        ValueError: if the shapes differ, the arrays are not real numeric,
            or `t` is not a scalar or 1-D array of weights in [0, 1].

    Example:

    >>> frames = kerasmorph.interpolation.lerp(
    ...     encoding_1, encoding_2, numpy.linspace(0, 1, 8))
    >>> frames.shape
    (8, 77, 768)
    """
    start, end = _as_matching_arrays(start=start, end=end)
    weights, scalar = _as_weights(t)
    start64 = start.astype(np.float64)
    end64 = end.astype(np.float64)
    frames = start64 + _broadcast(weights, start.ndim) * (end64 - start64)
    return _finish(frames, weights, start, end, scalar)


def slerp(
    start: ArrayLike,
    end: ArrayLike,
    t: ArrayLike,
    *,
    dot_threshold: float = 0.9995,
) -> np.ndarray:
    """Spherical interpolation over the flattened arrays, for diffusion noise.

    Moves along the great circle between the two arrays seen as vectors:
    `sin((1 − t)·θ) / sin(θ) · start + sin(t·θ) / sin(θ) · end`, where θ is the
    angle between them. Unit-norm inputs give unit-norm outputs; two
    independent standard normal noises give frames that stay (very nearly)
    standard normal, because such high-dimensional vectors are almost
    orthogonal and of almost equal norm.

    Falls back to `lerp` where the great circle is ill-defined:

    - nearly parallel inputs (cosine similarity > `dot_threshold`): lerp is
      then numerically identical to slerp and stable; identical inputs return
      `start` for every `t`;
    - nearly antiparallel inputs (cosine similarity < −`dot_threshold`): no
      great circle is preferred, so the lerp path is taken, which passes
      close to the origin (exactly through zero at `t = 0.5` for
      `end == −start`). A `RuntimeWarning` is issued;
    - an all-zero input (no direction).

    The result is never NaN for finite inputs.

    Args:
        start: array, e.g. float32 noise of shape `(H/8, W/8, 4)`.
        end: array with the shape of `start`.
        t: weight of `end` in [0, 1], or a 1-D array of `n` weights.
        dot_threshold: cosine similarity in (0, 1) above which the inputs
            count as parallel. Defaults to 0.9995.

    Returns:
        Array of shape `start.shape` for a scalar `t`, `(n, *start.shape)` for
        a 1-D `t`, with the floating dtype of the inputs; exactly `start`
        where `t == 0` and exactly `end` where `t == 1`.

    Raises:
        ValueError: if the shapes differ, the arrays are not real numeric,
            `t` is not a scalar or 1-D array of weights in [0, 1], or
            `dot_threshold` is not in (0, 1).

    Example:

    >>> rng = numpy.random.default_rng(0)
    >>> noise_1, noise_2 = rng.standard_normal((2, 64, 64, 4), dtype="float32")
    >>> frames = kerasmorph.interpolation.slerp(
    ...     noise_1, noise_2, numpy.linspace(0, 1, 5))
    >>> frames.shape, frames.dtype
    ((5, 64, 64, 4), dtype('float32'))

    References:
        - Ken Shoemake, "Animating rotation with quaternion curves",
          SIGGRAPH 1985.
        - Tom White, "Sampling Generative Networks" (2016), arXiv:1609.04468.
    """
    dot_threshold = _check_real("dot_threshold", dot_threshold)
    if not 0.0 < dot_threshold < 1.0:
        raise ValueError(
            f"`dot_threshold` must be in (0, 1). Received: dot_threshold={dot_threshold!r}"
        )
    start, end = _as_matching_arrays(start=start, end=end)
    weights, scalar = _as_weights(t)
    start64 = start.astype(np.float64).reshape(-1)
    end64 = end.astype(np.float64).reshape(-1)
    start_norm = np.linalg.norm(start64)
    end_norm = np.linalg.norm(end64)
    if start_norm == 0.0 or end_norm == 0.0:
        return lerp(start, end, t)
    dot = float(np.clip(start64 @ end64 / (start_norm * end_norm), -1.0, 1.0))
    theta = math.acos(dot)
    sin_theta = math.sin(theta)
    if abs(dot) > dot_threshold or sin_theta < 1e-12:
        if dot < 0.0:
            warnings.warn(
                "slerp between nearly antiparallel arrays has no preferred great "
                "circle; falling back to lerp, whose path passes near zero. "
                f"Received: cosine similarity {dot:.6f}",
                RuntimeWarning,
                stacklevel=2,
            )
        return lerp(start, end, t)
    start_coefficient = np.sin((1.0 - weights) * theta) / sin_theta
    end_coefficient = np.sin(weights * theta) / sin_theta
    frames = start_coefficient[:, None] * start64 + end_coefficient[:, None] * end64
    frames = frames.reshape((weights.size, *start.shape))
    return _finish(frames, weights, start, end, scalar)


def variance_preserving_mix(start: ArrayLike, end: ArrayLike, t: ArrayLike) -> np.ndarray:
    """Mixes `sqrt(1 − t)·start + sqrt(t)·end`, for independent noises.

    For independent standard normal `start` and `end`, the variance of the mix
    is `(1 − t) + t = 1`: every frame stays standard normal, which is what the
    diffusion model expects of its initial noise. The inputs must be
    independent: for identical inputs the mix is scaled by
    `sqrt(1 − t) + sqrt(t)` (up to √2 at the midpoint), unlike `slerp`.

    Args:
        start: array, e.g. float32 noise of shape `(H/8, W/8, 4)`.
        end: array with the shape of `start`.
        t: weight in [0, 1], or a 1-D array of `n` weights.

    Returns:
        Array of shape `start.shape` for a scalar `t`, `(n, *start.shape)` for
        a 1-D `t`, with the floating dtype of the inputs; exactly `start`
        where `t == 0` and exactly `end` where `t == 1`.

    Raises:
        ValueError: if the shapes differ, the arrays are not real numeric, or
            `t` is not a scalar or 1-D array of weights in [0, 1].

    Example:

    >>> frame = kerasmorph.interpolation.variance_preserving_mix(noise_1, noise_2, 0.5)
    >>> round(float(frame.std()), 2)
    1.0
    """
    start, end = _as_matching_arrays(start=start, end=end)
    weights, scalar = _as_weights(t)
    start64 = start.astype(np.float64)
    end64 = end.astype(np.float64)
    frames = (
        _broadcast(np.sqrt(1.0 - weights), start.ndim) * start64
        + _broadcast(np.sqrt(weights), start.ndim) * end64
    )
    return _finish(frames, weights, start, end, scalar)


# Name -> noise interpolator; `interpolate_noise` looks `method` up here.
NOISE_INTERPOLATORS: dict[str, Callable[..., np.ndarray]] = {
    "slerp": slerp,
    "variance_preserving": variance_preserving_mix,
}


def interpolate_noise(
    start: ArrayLike,
    end: ArrayLike,
    t: ArrayLike,
    method: NoiseMethod = "slerp",
) -> np.ndarray:
    """Interpolates diffusion noise so that every frame stays standard normal.

    This is the only noise interpolator kerasmorph uses. A plain lerp is
    deliberately not offered: for two independent N(0, 1) noises,
    `(1 − t)·a + t·b` has standard deviation `sqrt(t² + (1 − t)²)`, which
    drops to 1/√2 ≈ 0.707 at the midpoint. The diffusion model reads the
    weaker noise as a partly denoised image and the middle frames come out
    blurred and washed out. Use `lerp` for text encodings only.

    Args:
        start: noise array, e.g. float32 of shape `(H/8, W/8, 4)`.
        end: noise array with the shape of `start`, independent of it.
        t: weight of `end` in [0, 1], or a 1-D array of `n` weights.
        method: `"slerp"` (great circle, see `slerp`; default) or
            `"variance_preserving"` (see `variance_preserving_mix`).

    Returns:
        Array of shape `start.shape` for a scalar `t`, `(n, *start.shape)` for
        a 1-D `t`, with the floating dtype of the inputs; exact endpoints.

    Raises:
        ValueError: if `method` is not a registered name, or the inputs fail
            the checks of the chosen method.

    Example:

    >>> frames = kerasmorph.interpolation.interpolate_noise(
    ...     noise_1, noise_2, numpy.linspace(0, 1, 8), method="slerp")
    """
    return _get_noise_interpolator(method)(start, end, t)


def _get_noise_interpolator(method: str) -> Callable[..., np.ndarray]:
    if isinstance(method, str) and method in NOISE_INTERPOLATORS:
        return NOISE_INTERPOLATORS[method]
    names = ", ".join(repr(name) for name in NOISE_INTERPOLATORS)
    hint = ""
    if isinstance(method, str) and method == "lerp":
        hint = (
            " (lerp is not offered for noise: it lowers the standard deviation to "
            "0.71 at the midpoint, which blurs the image; use lerp for encodings)"
        )
    raise ValueError(f"`method` must be one of {names}{hint}. Received: method={method!r}")


# ---------------------------------------------------------------------------
# Grids, mixes and walks.


def bilinear_grid(
    top_left: ArrayLike,
    top_right: ArrayLike,
    bottom_left: ArrayLike,
    bottom_right: ArrayLike,
    num_per_side: int,
    *,
    schedule: ScheduleName | str | Schedule = "linear",
) -> np.ndarray:
    """A square grid of encodings interpolated bilinearly between 4 corners.

    The KerasCV tutorial's "linspace of linspaces": the top row runs from
    `top_left` to `top_right`, the bottom row from `bottom_left` to
    `bottom_right`, and the rows in between are interpolated from top to
    bottom. Frames come row-major (row 0 left to right, then row 1, ...), ready
    for a `num_per_side × num_per_side` image grid.

    Args:
        top_left: array, e.g. a text encoding `(77, D)`.
        top_right: array with the shape of `top_left`.
        bottom_left: array with the shape of `top_left`.
        bottom_right: array with the shape of `top_left`.
        num_per_side: frames per row and per column, >= 2.
        schedule: spacing of the row and column weights (a schedule name or
            callable); the corners stay exact whatever the schedule.

    Returns:
        Array of shape `(num_per_side², *top_left.shape)` with the floating
        dtype of the inputs. Frames `0`, `n − 1`, `n·(n − 1)` and `n² − 1`
        (`n = num_per_side`) are exactly the four corners.

    Raises:
        ValueError: if the corners differ in shape or are not real numeric,
            or `num_per_side` is not an integer >= 2.

    Example:

    >>> grid = kerasmorph.interpolation.bilinear_grid(
    ...     encoding_1, encoding_2, encoding_3, encoding_4, num_per_side=6)
    >>> grid.shape
    (36, 77, 768)
    """
    num_per_side = check_index("num_per_side", num_per_side, 2)
    corners = _as_matching_arrays(
        top_left=top_left,
        top_right=top_right,
        bottom_left=bottom_left,
        bottom_right=bottom_right,
    )
    tl, tr, bl, br = (corner.astype(np.float64) for corner in corners)
    positions = schedule_weights(num_per_side, schedule)
    top_row = lerp(tl, tr, positions)  # (n, ...)
    bottom_row = lerp(bl, br, positions)  # (n, ...)
    grid = lerp(top_row, bottom_row, positions)  # (n rows, n columns, ...)
    grid = grid.reshape((num_per_side * num_per_side, *tl.shape))
    return grid.astype(_output_dtype(*corners))


def barycentric_mix(encodings: ArrayLike, weights: ArrayLike) -> np.ndarray:
    """Convex combinations of `K` encodings, one per row of `weights`.

    Frame `f` is `sum_k weights[f, k] · encodings[k]`: a point inside the
    simplex spanned by the encodings (e.g. a triangle between three prompts).

    Args:
        encodings: array of shape `(K, ...)`, e.g. `(K, 77, D)`, K >= 1.
        weights: array of shape `(F, K)`, F >= 1; every row non-negative and
            summing to 1 (within 1e-6).

    Returns:
        Array of shape `(F, *encodings.shape[1:])` with the floating dtype of
        `encodings`. A one-hot row returns its encoding exactly (for finite
        encodings).

    Raises:
        ValueError: if `encodings` has no keyframe axis or is empty, `weights`
            is not `(F, K)`, or a row has a negative or non-finite weight or
            does not sum to 1 (the bad row is echoed).

    Example:

    >>> weights = numpy.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    >>> frames = kerasmorph.interpolation.barycentric_mix(
    ...     numpy.stack([encoding_1, encoding_2, encoding_3]), weights)
    >>> frames.shape
    (2, 77, 768)
    """
    encodings = _as_real_array("encodings", encodings)
    weights = _as_real_array("weights", weights)
    if encodings.ndim < 1 or encodings.shape[0] < 1:
        raise ValueError(
            "`encodings` must have shape (K, ...) with K >= 1. "
            f"Received: encodings.shape={encodings.shape}"
        )
    num_encodings = encodings.shape[0]
    if weights.ndim != 2 or weights.shape[0] < 1 or weights.shape[1] != num_encodings:
        raise ValueError(
            f"`weights` must have shape (F, K) with F >= 1 and K = {num_encodings} "
            f"(the number of encodings). Received: weights.shape={weights.shape}"
        )
    weights = weights.astype(np.float64)
    for index, row in enumerate(weights):
        if not np.all(np.isfinite(row)) or np.any(row < 0.0):
            raise ValueError(
                "Every weight must be finite and non-negative. "
                f"Received: weights[{index}]={format_array_value(row)}"
            )
        total = row.sum()
        if abs(total - 1.0) > _WEIGHT_SUM_TOLERANCE:
            raise ValueError(
                "Every row of `weights` must sum to 1. "
                f"Received: weights[{index}]={format_array_value(row)} (sum {total:.6g})"
            )
    frames = np.tensordot(weights, encodings.astype(np.float64), axes=1)
    # A one-hot row is exact: 1·x plus exact zeros, in float64, cast back.
    return frames.astype(_output_dtype(encodings))


def delta_walk(
    encoding: ArrayLike,
    num_frames: int,
    *,
    step_size: float | None = None,
    direction: ArrayLike | None = None,
    seed: int | None = None,
    norm: float | None = None,
    frame_positions: ArrayLike | None = None,
) -> np.ndarray:
    """A straight walk from an encoding: frame `k` is `encoding + k·delta`.

    The direction of `delta` is, in order of precedence:

    - `direction` when given;
    - a standard normal draw from `numpy.random.default_rng(seed)` when `seed`
      is given (same seed, same walk);
    - otherwise all ones, as in the KerasCV walk tutorial.

    Its length is set by exactly one of:

    - `step_size` (default 0.005): `delta = step_size · direction`,
      element-wise, so the default walk adds 0.005 to every element per frame;
    - `norm`: `delta = norm · direction / ||direction||`, so every frame is
      `norm` further from the previous one (L2 over all elements).

    Args:
        encoding: array, e.g. a float32 text encoding `(77, D)`.
        num_frames: number of frames, >= 1.
        step_size: element-wise scale of the direction. Defaults to 0.005
            when `norm` is not given. Conflicts with `norm`.
        direction: array with the shape of `encoding`. Conflicts with `seed`.
        seed: non-negative integer seeding a random direction. Conflicts with
            `direction`.
        norm: positive L2 length of `delta`. Conflicts with `step_size`.
        frame_positions: compute only these frames, given as positions `k` in
            [0, num_frames − 1] (fractional positions follow an eased
            schedule), e.g. one render batch at a time; default all frames.

    Returns:
        Array of shape `(num_frames, *encoding.shape)` (or
        `(len(frame_positions), ...)`) with the floating dtype of `encoding`;
        frame 0 is `encoding` exactly.

    Raises:
        ValueError: on conflicting arguments (`direction` with `seed`, `norm`
            with `step_size`), a `direction` of another shape or with a zero
            norm when `norm` is given, a non-finite `step_size` or `direction`,
            a `norm` that is not positive, or `num_frames` < 1.

    Example:

    >>> frames = kerasmorph.interpolation.delta_walk(encoding, 150)
    >>> frames = kerasmorph.interpolation.delta_walk(encoding, 60, seed=1, norm=2.0)
    """
    encoding = _as_real_array("encoding", encoding)
    num_frames = check_index("num_frames", num_frames, 1)
    if direction is not None and seed is not None:
        raise ValueError(
            "Pass either `direction` or `seed` (which draws a random direction), "
            "not both. Received: direction with shape "
            f"{np.shape(direction)}, seed={format_array_value(seed)}"
        )
    if norm is not None and step_size is not None:
        raise ValueError(
            "Pass either `step_size` (element-wise scale) or `norm` (L2 length of "
            f"each step), not both. Received: step_size={format_array_value(step_size)}, "
            f"norm={format_array_value(norm)}"
        )
    if direction is not None:
        vector = _as_real_array("direction", direction).astype(np.float64)
        if vector.shape != encoding.shape:
            raise ValueError(
                "`direction` must have the shape of `encoding`. "
                f"Received: direction.shape={vector.shape}, encoding.shape={encoding.shape}"
            )
        if not np.all(np.isfinite(vector)):
            raise ValueError("`direction` must be finite. Received: direction with NaN or inf")
    elif seed is not None:
        seed = check_index("seed", seed, 0)
        vector = np.random.default_rng(seed).standard_normal(encoding.shape)
    else:
        vector = np.ones(encoding.shape, dtype=np.float64)
    if norm is not None:
        norm = _check_real("norm", norm)
        if norm <= 0.0:
            raise ValueError(f"`norm` must be positive. Received: norm={norm!r}")
        length = np.linalg.norm(vector)
        if length == 0.0:
            raise ValueError(
                "`direction` must be non-zero to be scaled to `norm`. "
                "Received: direction with norm 0"
            )
        delta = vector * (norm / length)
    else:
        scale = 0.005 if step_size is None else _check_real("step_size", step_size)
        delta = vector * scale
    steps = _frame_positions(frame_positions, num_frames, num_frames - 1)
    frames = encoding.astype(np.float64) + _broadcast(steps, encoding.ndim) * delta
    frames = frames.astype(_output_dtype(encoding))
    frames[steps == 0] = encoding
    return frames


def noise_loop(
    x: ArrayLike, y: ArrayLike, num_frames: int, *, frame_positions: ArrayLike | None = None
) -> np.ndarray:
    """A circular walk in noise space that loops seamlessly.

    Frame `k` is `cos(θ)·x + sin(θ)·y` with `θ = 2π·k / num_frames`, for
    `k = 0 .. num_frames − 1`. The end of the circle is excluded: frame
    `num_frames` would equal frame 0, so a GIF of the frames loops without a
    repeated frame (the KerasCV tutorial's `linspace(0, 2)·π` includes it).
    For independent standard normal `x` and `y` every frame stays standard
    normal, since `cos²θ + sin²θ = 1`.

    Args:
        x: noise array, e.g. float32 of shape `(H/8, W/8, 4)`; frame 0.
        y: noise array with the shape of `x`, independent of it.
        num_frames: number of frames, >= 1.
        frame_positions: compute only these frames, given as positions `k` in
            [0, num_frames) (fractional positions follow an eased schedule),
            e.g. one render batch at a time; default all frames.

    Returns:
        Array of shape `(num_frames, *x.shape)` (or `(len(frame_positions), ...)`)
        with the floating dtype of the inputs; frame 0 is `x` exactly.

    Raises:
        ValueError: if the shapes differ, the arrays are not real numeric, or
            `num_frames` is not an integer >= 1.

    Example:

    >>> frames = kerasmorph.interpolation.noise_loop(noise_x, noise_y, 64)
    >>> frames.shape
    (64, 64, 64, 4)
    """
    x, y = _as_matching_arrays(x=x, y=y)
    num_frames = check_index("num_frames", num_frames, 1)
    indices = _frame_positions(frame_positions, num_frames, np.nextafter(num_frames, 0))
    angles = 2.0 * np.pi * indices / num_frames
    frames = _broadcast(np.cos(angles), x.ndim) * x.astype(np.float64) + _broadcast(
        np.sin(angles), x.ndim
    ) * y.astype(np.float64)
    frames = frames.astype(_output_dtype(x, y))
    frames[indices == 0] = x
    return frames


def _frame_positions(
    frame_positions: ArrayLike | None, num_frames: int, highest: float
) -> np.ndarray:
    """Validates frame positions (float64, 1-D, in [0, highest]); default 0..n−1."""
    if frame_positions is None:
        return np.arange(num_frames, dtype=np.float64)
    positions = np.asarray(frame_positions)
    if (
        positions.ndim != 1
        or not (
            np.issubdtype(positions.dtype, np.integer)
            or np.issubdtype(positions.dtype, np.floating)
        )
        or not np.all(np.isfinite(positions))
        or (positions.size and (positions.min() < 0 or positions.max() > highest))
    ):
        bound = f"{num_frames - 1}]" if highest == num_frames - 1 else f"{num_frames})"
        raise ValueError(
            f"`frame_positions` must be a 1-D array of numbers in [0, {bound}. "
            f"Received: frame_positions={format_array_value(frame_positions)}"
        )
    return positions.astype(np.float64)


# ---------------------------------------------------------------------------
# Keyframed paths.


@dataclasses.dataclass(frozen=True)
class PathFrame:
    """One frame of a keyframed path: which keyframes to mix, and how much.

    The frame's encoding is `lerp(encodings[i], encodings[j], prompt_weight)`
    with `(i, j) = prompt_pair`, and its noise is
    `interpolate_noise(noises[i], noises[j], noise_weight)` with
    `(i, j) = noise_pair`. Round-trips through JSON:
    `PathFrame(**json.loads(json.dumps(dataclasses.asdict(frame))))`.
    """

    segment: int  # index of the segment (keyframe step) the frame belongs to, >= 0
    prompt_pair: tuple[int, int]  # keyframes (from, to) whose encodings are mixed
    prompt_weight: float  # weight of the "to" encoding, in [0, 1]
    noise_pair: tuple[int, int]  # keyframes (from, to) whose noises are mixed
    noise_weight: float  # weight of the "to" noise, in [0, 1]

    def __post_init__(self) -> None:
        check_index("segment", self.segment, 0)
        for name in ("prompt_pair", "noise_pair"):
            pair = getattr(self, name)
            if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
                raise ValueError(
                    f"`{name}` must be a pair of keyframe indices (i, j). Received: {name}={pair!r}"
                )
            indices = tuple(check_index(f"{name}[{k}]", index, 0) for k, index in enumerate(pair))
            object.__setattr__(self, name, indices)  # JSON lists -> tuples
        for name in ("prompt_weight", "noise_weight"):
            weight = _check_real(name, getattr(self, name))
            if not 0.0 <= weight <= 1.0:
                raise ValueError(f"`{name}` must be in [0, 1]. Received: {name}={weight!r}")
            object.__setattr__(self, name, weight)


def plan_path(
    num_keyframes: int,
    frames_per_segment: int | Sequence[int],
    *,
    schedule: ScheduleName | str | Schedule | Sequence[ScheduleName | str | Schedule] = "linear",
    mode: PathMode = "together",
    closed: bool = False,
) -> list[PathFrame]:
    """Plans a walk through keyframes, each a (prompt encoding, noise) pair.

    Segment `s` goes from keyframe `s` to keyframe `s + 1` (to keyframe 0
    for the closing segment of a `closed` path). A segment of `m` frames
    samples positions `p = k / m` for `k = 0 .. m − 1`: it starts on its
    keyframe and stops one step short of the next, which starts the next
    segment, so no frame is repeated at a join. The last segment of an open
    path adds the final keyframe (`p = 1`). An open path of `K` keyframes
    with `m` frames per segment has `(K − 1)·m + 1` frames; a closed one has
    `K·m` and loops seamlessly.

    Modes, for segment `i → j` at position `p`:

    - `"together"`: prompt and noise move at once;
      `prompt_weight = noise_weight = schedule(p)`.
    - `"alternate"`: two half-moves, each a sub-segment that runs the whole
      schedule and excludes its end. First the prompt moves while the noise
      stays on keyframe `i` (`ceil(m/2)` frames at `q = k / ceil(m/2)`:
      `prompt_weight = schedule(q)`, `noise_weight = 0`); then the prompt
      stays on keyframe `j` while the noise moves (`floor(m/2)` frames at
      `q = k / floor(m/2)`: `prompt_weight = 1`, `noise_weight = schedule(q)`;
      the final segment of an open path adds `q = 1`). For even `m` this is
      `schedule(2p)` then `schedule(2p − 1)`. Any two consecutive frames,
      joins included, differ in exactly one of prompt and noise; this needs
      `m >= 2`.

    Args:
        num_keyframes: number of keyframes `K`, >= 2.
        frames_per_segment: frames `m` started by each segment, >= 1
            (>= 2 in `"alternate"` mode); an int for all segments or one int
            per segment (`K − 1` open, `K` closed).
        schedule: a name in `kerasmorph.schedules.SCHEDULES` or a callable,
            for all segments, or a sequence with one per segment. Defaults to
            `"linear"`.
        mode: `"together"` (default) or `"alternate"`.
        closed: add a segment from the last keyframe back to keyframe 0.
            Defaults to `False`.

    Returns:
        A list of `PathFrame`, in order; render it with `materialize_path`.

    Raises:
        ValueError: if `num_keyframes` < 2, a frame count is not an integer
            >= 1 (>= 2 in `"alternate"` mode), a sequence has the wrong length,
            a schedule is unknown or invalid, `mode` is unknown, or `closed` is not a bool.

    Example:

    >>> plan = kerasmorph.interpolation.plan_path(3, 4, schedule="sinh", closed=True)
    >>> len(plan)
    12
    """
    num_keyframes = check_index("num_keyframes", num_keyframes, 2)
    if mode not in ("together", "alternate"):
        raise ValueError(f"`mode` must be one of 'together', 'alternate'. Received: mode={mode!r}")
    if not isinstance(closed, (bool, np.bool_)):
        raise ValueError(f"`closed` must be a bool. Received: closed={closed!r}")
    num_segments = num_keyframes if closed else num_keyframes - 1
    counts = _per_segment("frames_per_segment", frames_per_segment, num_segments)
    min_count = 2 if mode == "alternate" else 1
    per_segment = _is_sequence(frames_per_segment)
    counts = [
        check_index(
            f"frames_per_segment[{index}]" if per_segment else "frames_per_segment",
            count,
            min_count,
        )
        for index, count in enumerate(counts)
    ]
    schedules = _per_segment("schedule", schedule, num_segments)
    schedules = [get_schedule(item) for item in schedules]

    plan = []
    for segment, (count, segment_schedule) in enumerate(zip(counts, schedules)):
        pair = (segment, (segment + 1) % num_keyframes)
        is_final = not closed and segment == num_segments - 1
        if mode == "together":
            positions = np.arange(count + is_final, dtype=np.float64) / count
            prompt_weights = noise_weights = apply_schedule(segment_schedule, positions)
        else:
            prompt_count, noise_count = (count + 1) // 2, count // 2
            prompt_positions = np.arange(prompt_count, dtype=np.float64) / prompt_count
            noise_positions = np.arange(noise_count + is_final, dtype=np.float64) / noise_count
            prompt_weights = np.concatenate(
                [apply_schedule(segment_schedule, prompt_positions), np.ones(noise_positions.size)]
            )
            noise_weights = np.concatenate(
                [np.zeros(prompt_count), apply_schedule(segment_schedule, noise_positions)]
            )
        plan.extend(
            PathFrame(
                segment=segment,
                prompt_pair=pair,
                prompt_weight=float(prompt_weight),
                noise_pair=pair,
                noise_weight=float(noise_weight),
            )
            for prompt_weight, noise_weight in zip(prompt_weights, noise_weights)
        )
    return plan


def _is_sequence(value: object) -> bool:
    return isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, (str, bytes))


def _per_segment(name: str, value: object, num_segments: int) -> list:
    """Broadcasts a single value to every segment, or checks a per-segment sequence."""
    if not _is_sequence(value):  # a single value; the per-item check validates it
        return [value] * num_segments
    if len(value) != num_segments:
        raise ValueError(
            f"`{name}` must be a single value or a sequence with one entry per segment "
            f"({num_segments}). Received: {name}={value!r} ({len(value)} entries)"
        )
    return list(value)


def materialize_path(
    plan: Sequence[PathFrame],
    encodings: ArrayLike,
    noises: ArrayLike,
    *,
    noise_method: NoiseMethod = "slerp",
) -> tuple[np.ndarray, np.ndarray]:
    """Computes the encodings and noises of every frame of a planned path.

    Encodings are mixed with `lerp`, noises with `interpolate_noise`.
    Keyframes are indexed by position along axis 0. A plan may use fewer
    keyframes than given (e.g. `plan[:10]` for a preview).

    Args:
        plan: non-empty sequence of `PathFrame`, e.g. from `plan_path`.
        encodings: keyframe text encodings, shape `(K, 77, D)`.
        noises: keyframe noises, shape `(K, H/8, W/8, 4)`, with the same `K`.
        noise_method: `"slerp"` (default) or `"variance_preserving"`, see
            `interpolate_noise`.

    Returns:
        `(encodings, noises)` of shapes `(F, 77, D)` and `(F, H/8, W/8, 4)`
        for `F = len(plan)`, with the floating dtypes of the inputs. A frame
        with weight 0 or 1 is exactly its keyframe.

    Raises:
        ValueError: if `plan` is empty or holds something other than
            `PathFrame`, `encodings` and `noises` do not hold the same number
            of keyframes, a frame refers to a keyframe that does not exist, or
            `noise_method` is unknown.

    Example:

    >>> plan = kerasmorph.interpolation.plan_path(3, 8, schedule="sinh")
    >>> frame_encodings, frame_noises = kerasmorph.interpolation.materialize_path(
    ...     plan, numpy.stack([e1, e2, e3]), numpy.stack([n1, n2, n3]))
    >>> frame_encodings.shape, frame_noises.shape
    ((17, 77, 768), (17, 64, 64, 4))
    """
    noise_interpolator = _get_noise_interpolator(noise_method)
    plan = list(plan)
    if not plan:
        raise ValueError("`plan` must hold at least one PathFrame. Received: plan=[]")
    for index, frame in enumerate(plan):
        if not isinstance(frame, PathFrame):
            raise ValueError(
                f"`plan` must hold PathFrame objects. Received: plan[{index}]={frame!r}"
            )
    encodings = _as_real_array("encodings", encodings)
    noises = _as_real_array("noises", noises)
    if encodings.ndim < 1 or noises.ndim < 1 or encodings.shape[0] != noises.shape[0]:
        raise ValueError(
            "`encodings` and `noises` must hold the same number of keyframes along "
            f"axis 0. Received: encodings.shape={encodings.shape}, noises.shape={noises.shape}"
        )
    num_keyframes = encodings.shape[0]
    highest = max(max(*frame.prompt_pair, *frame.noise_pair) for frame in plan)
    if highest >= num_keyframes:
        raise ValueError(
            f"`plan` refers to keyframe {highest}, but only {num_keyframes} keyframes "
            f"were given. Received: encodings.shape={encodings.shape}, "
            f"noises.shape={noises.shape}"
        )
    frame_encodings = _mix_runs(plan, encodings, "prompt", lerp)
    frame_noises = _mix_runs(plan, noises, "noise", noise_interpolator)
    return frame_encodings, frame_noises


def _mix_runs(
    plan: list[PathFrame],
    keyframes: np.ndarray,
    kind: str,
    interpolator: Callable[..., np.ndarray],
) -> np.ndarray:
    """Interpolates each run of consecutive frames sharing a pair in one call."""
    output = np.empty((len(plan), *keyframes.shape[1:]), dtype=_output_dtype(keyframes))
    position = 0
    runs = itertools.groupby(plan, key=lambda frame: getattr(frame, f"{kind}_pair"))
    for (i, j), run in runs:
        weights = np.array([getattr(frame, f"{kind}_weight") for frame in run])
        output[position : position + weights.size] = interpolator(
            keyframes[i], keyframes[j], weights
        )
        position += weights.size
    return output
