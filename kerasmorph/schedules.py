"""Easing schedules: where the frames of a walk sit between two keyframes.

A schedule maps a position `t` in [0, 1] along a segment to a mixing weight
in [0, 1]. Every schedule is monotone non-decreasing with `f(0) == 0` and
`f(1) == 1` exactly, so a walk always starts and ends on its keyframes.
Frames are spaced evenly in `t`; the schedule decides how they are spread in
weight:

| name | curve | frames are dense near |
|---|---|---|
| `"linear"` | `t` | nowhere (even spacing) |
| `"sinh"` | `sinh(a·(2t − 1)) / sinh(a) / 2 + 1/2` | the midpoint |
| `"ease"` | `2t²` below ½, `1 − 2(1 − t)²` above | both ends |
| `"cosine"` | `(1 − cos(πt)) / 2` | both ends |
| `"beta"` | `F⁻¹(t)`, the quantiles of a symmetric Beta(a, a) | the midpoint |

The image usually changes fastest near a 50/50 mix of two prompts, which is
why `"sinh"` (slow in the middle) gives smoother morphs than `"linear"`.

This module needs only numpy.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from kerasmorph._checks import check_index, check_positions, format_array_value

ScheduleName = Literal["linear", "sinh", "ease", "cosine", "beta"]
Schedule = Callable[[np.ndarray], np.ndarray]

# Default steepness of `sinh`: with a = arccosh(5) the slope is a / sinh(a)
# ≈ 0.47 at the midpoint and a·cosh(a) / sinh(a) ≈ 2.3 at both ends.
DEFAULT_SINH_STEEPNESS = math.acosh(5.0)

# Default concentration of `beta`: Beta(2, 2)'s quantiles put a 17-frame
# walk's middle frames 1.5× closer in weight than even spacing.
DEFAULT_BETA_CONCENTRATION = 2.0
_BETA_GRID_SIZE = 4097

# How far a user schedule may miss 0 at t == 0, 1 at t == 1, or leave [0, 1]
# before it is rejected rather than snapped (float noise, e.g. float32 math).
_SCHEDULE_TOLERANCE = 1e-6


def linear(t: ArrayLike) -> np.ndarray:
    """Identity schedule: frames evenly spaced in weight.

    Args:
        t: float or array of positions in [0, 1].

    Returns:
        float64 array with the shape of `t` (0-D for a scalar), equal to `t`.

    Raises:
        ValueError: if `t` is not real or leaves [0, 1].

    Example:

    >>> kerasmorph.schedules.linear([0.0, 0.25, 1.0])
    array([0.  , 0.25, 1.  ])
    """
    return check_positions("t", t)


def sinh(t: ArrayLike, a: float = DEFAULT_SINH_STEEPNESS) -> np.ndarray:
    """Sinh schedule: slow around the midpoint, so frames are dense there.

    `x = sinh(a·(2t − 1)) / sinh(a) / 2 + 1/2`. The morph between two prompts
    usually happens abruptly near a 50/50 mix; spending more frames there
    makes the transition smoother. Larger `a` concentrates more frames in the
    middle; `a → 0` tends to `linear`. To register another steepness, pass a
    callable such as `functools.partial(kerasmorph.schedules.sinh, a=3.0)`
    wherever a schedule is accepted.

    Args:
        t: float or array of positions in [0, 1].
        a: positive steepness. Defaults to `arccosh(5)` ≈ 2.29 (slope ≈ 0.47
            at the midpoint, ≈ 2.3 at the ends).

    Returns:
        float64 array with the shape of `t`, in [0, 1], with `sinh(0) == 0`
        and `sinh(1) == 1` exactly.

    Raises:
        ValueError: if `t` leaves [0, 1] or `a` is not a positive finite number.

    Example:

    >>> kerasmorph.schedules.sinh([0.0, 0.5, 1.0])
    array([0. , 0.5, 1. ])
    """
    positions = check_positions("t", t)
    if isinstance(a, bool) or not isinstance(a, numbers.Real) or not math.isfinite(a) or a <= 0:
        raise ValueError(f"`a` must be a positive finite number. Received: a={a!r}")
    weights = np.sinh(a * (2.0 * positions - 1.0)) / math.sinh(a) / 2.0 + 0.5
    return _snap_endpoints(positions, np.clip(weights, 0.0, 1.0))


def ease(t: ArrayLike) -> np.ndarray:
    """Quadratic ease-in-out: starts and ends slowly, frames dense at both ends.

    `2t²` for `t < 1/2` and `1 − 2(1 − t)²` otherwise.

    Args:
        t: float or array of positions in [0, 1].

    Returns:
        float64 array with the shape of `t`, in [0, 1].

    Raises:
        ValueError: if `t` leaves [0, 1].

    Example:

    >>> kerasmorph.schedules.ease([0.0, 0.25, 0.5, 1.0])
    array([0.   , 0.125, 0.5  , 1.   ])
    """
    positions = check_positions("t", t)
    weights = np.where(positions < 0.5, 2.0 * positions**2, 1.0 - 2.0 * (1.0 - positions) ** 2)
    return _snap_endpoints(positions, weights)


def cosine(t: ArrayLike) -> np.ndarray:
    """Cosine ease-in-out: `(1 − cos(πt)) / 2`, frames dense at both ends.

    Args:
        t: float or array of positions in [0, 1].

    Returns:
        float64 array with the shape of `t`, in [0, 1].

    Raises:
        ValueError: if `t` leaves [0, 1].

    Example:

    >>> kerasmorph.schedules.cosine([0.0, 0.5, 1.0])
    array([0. , 0.5, 1. ])
    """
    positions = check_positions("t", t)
    weights = (1.0 - np.cos(np.pi * positions)) / 2.0
    return _snap_endpoints(positions, np.clip(weights, 0.0, 1.0))


def beta(t: ArrayLike, a: float = DEFAULT_BETA_CONCENTRATION) -> np.ndarray:
    """Quantiles of the symmetric Beta(a, a) distribution: dense near the midpoint.

    AID (He et al., "AID: Attention Interpolation of Text-to-Image Diffusion",
    NeurIPS 2024) chooses interpolation weights from a Beta prior, so that more
    frames fall where the image changes fastest (near a 50/50 mix). Frame `t`
    gets the weight `F⁻¹(t)` of Beta(a, a)'s CDF `F`: the density
    `x^(a−1)·(1 − x)^(a−1)` is peaked at ½ for a > 1, so evenly spaced `t`
    give weights crowded around ½. `a = 1` is `linear`. The CDF is integrated
    numerically (4,097-point trapezoid) and inverted by interpolation: it is
    exact at 0, ½ (by symmetry) and 1, and within 1e-6 elsewhere.

    Args:
        t: float or array of positions in [0, 1].
        a: concentration, a finite float >= 1 (default 2).

    Returns:
        float64 weights with the shape of `t`.

    Example:

    >>> kerasmorph.schedules.beta([0.0, 0.25, 0.5, 1.0])
    array([0.       , 0.3263518, 0.5      , 1.       ])
    """
    positions = check_positions("t", t)
    if isinstance(a, bool) or not isinstance(a, numbers.Real) or not math.isfinite(a) or a < 1:
        raise ValueError(f"`a` must be a finite number >= 1. Received: a={a!r}")
    grid = np.linspace(0.0, 1.0, _BETA_GRID_SIZE)
    density = (grid * (1.0 - grid)) ** (float(a) - 1.0)
    cdf = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2.0)])
    cdf = cdf / cdf[-1]
    # Symmetric by construction: average with the mirror to cancel rounding.
    cdf = (cdf + 1.0 - cdf[::-1]) / 2.0
    weights = np.interp(positions, cdf, grid)
    return _snap_endpoints(positions, np.clip(weights, 0.0, 1.0))


def _snap_endpoints(positions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Sets the weight to exactly 0 where t == 0 and exactly 1 where t == 1."""
    weights = np.where(positions == 0.0, 0.0, weights)
    return np.where(positions == 1.0, 1.0, weights)


# Name -> schedule. `get_schedule` and every `schedule=` argument look names up here.
SCHEDULES: dict[str, Schedule] = {
    "linear": linear,
    "sinh": sinh,
    "ease": ease,
    "cosine": cosine,
    "beta": beta,
}


def get_schedule(schedule: ScheduleName | str | Schedule) -> Schedule:
    """Returns the schedule function for a registered name, or a callable as is.

    Args:
        schedule: a name in `kerasmorph.schedules.SCHEDULES` (`"linear"`,
            `"sinh"`, `"ease"`, `"cosine"`, `"beta"`) or a callable mapping an array of
            positions in [0, 1] to weights of the same shape. A callable is
            checked when it is applied (see `apply_schedule`).

    Returns:
        The schedule callable.

    Raises:
        ValueError: if `schedule` is neither a registered name nor callable.

    Example:

    >>> fn = kerasmorph.schedules.get_schedule("cosine")
    >>> fn([0.0, 1.0])
    array([0., 1.])
    """
    if callable(schedule):
        return schedule
    if isinstance(schedule, str) and schedule in SCHEDULES:
        return SCHEDULES[schedule]
    names = ", ".join(repr(name) for name in SCHEDULES)
    raise ValueError(
        f"`schedule` must be one of {names}, or a callable. Received: schedule={schedule!r}"
    )


def apply_schedule(schedule: ScheduleName | str | Schedule, t: ArrayLike) -> np.ndarray:
    """Evaluates a schedule at positions `t`, checking a user schedule's output.

    Registered schedules are exact by construction; a user callable is checked:
    its output must have the shape of `t`, be finite, lie in [0, 1], be
    monotone non-decreasing over the given positions, and map 0 to 0 and 1 to
    1. Float noise up to 1e-6 is removed (clipped to [0, 1], made exactly
    monotone, endpoints snapped) so that the endpoints come out exact.

    Args:
        schedule: a registered name or a callable (see `get_schedule`).
        t: float or array of positions in [0, 1].

    Returns:
        float64 array with the shape of `t`, in [0, 1], exactly 0 where `t == 0`
        and exactly 1 where `t == 1`.

    Raises:
        ValueError: if `t` leaves [0, 1], the schedule is unknown, or a user
            schedule returns a wrong shape, non-finite values, values outside
            [0, 1], decreasing values, or misses an endpoint.

    Example:

    >>> kerasmorph.schedules.apply_schedule(lambda t: t**2, [0.0, 0.5, 1.0])
    array([0.  , 0.25, 1.  ])
    """
    fn = get_schedule(schedule)
    positions = check_positions("t", t)
    weights = np.asarray(fn(positions), dtype=np.float64)
    if weights.shape != positions.shape:
        raise ValueError(
            "A schedule must return one weight per position, with the shape of `t`. "
            f"Received: t with shape {positions.shape}, schedule(t) with shape {weights.shape}"
        )
    low, high = -_SCHEDULE_TOLERANCE, 1.0 + _SCHEDULE_TOLERANCE
    if not np.all(np.isfinite(weights)) or np.any(weights < low) or np.any(weights > high):
        raise ValueError(
            "A schedule must return finite weights in [0, 1]. "
            f"Received: schedule(t)={format_array_value(weights)}"
        )
    order = np.argsort(positions, axis=None, kind="stable")
    sorted_weights = weights.reshape(-1)[order]
    if np.any(np.diff(sorted_weights) < -_SCHEDULE_TOLERANCE):
        raise ValueError(
            "A schedule must be monotone non-decreasing. Received: "
            f"schedule(t)={format_array_value(sorted_weights)} "
            f"for t={format_array_value(positions.reshape(-1)[order])}"
        )
    # Float noise below the tolerance: make the sampled weights exactly monotone.
    flat_weights = weights.reshape(-1).copy()
    flat_weights[order] = np.maximum.accumulate(sorted_weights)
    weights = flat_weights.reshape(weights.shape)
    for position, target in ((0.0, 0.0), (1.0, 1.0)):
        at_endpoint = weights[positions == position]
        if np.any(np.abs(at_endpoint - target) > _SCHEDULE_TOLERANCE):
            raise ValueError(
                f"A schedule must map {position:g} to {target:g}. "
                f"Received: schedule({position:g})={format_array_value(at_endpoint.flat[0])}"
            )
    return _snap_endpoints(positions, np.clip(weights, 0.0, 1.0))


def schedule_weights(
    num_frames: int,
    schedule: ScheduleName | str | Schedule = "linear",
    *,
    endpoint: bool = True,
) -> np.ndarray:
    """Mixing weights of `num_frames` frames evenly spaced in `t`.

    With `endpoint=True`, `t = linspace(0, 1, num_frames)`: the first weight is
    exactly 0 and the last exactly 1. With `endpoint=False`,
    `t = arange(num_frames) / num_frames`: the segment stops one step short of
    its end, which is the next segment's first frame (chained segments and
    loops then repeat no frame).

    Args:
        num_frames: number of weights, >= 1. A single frame gets `[0.0]`.
        schedule: a name in `kerasmorph.schedules.SCHEDULES` or a callable.
            Defaults to `"linear"`.
        endpoint: whether the last weight is exactly 1. Defaults to `True`.

    Returns:
        float64 array of shape `(num_frames,)`, non-decreasing, in [0, 1],
        starting at exactly 0.

    Raises:
        ValueError: if `num_frames` is not an integer >= 1, the schedule is
            unknown, or a user schedule fails the checks of `apply_schedule`.

    Example:

    >>> kerasmorph.schedules.schedule_weights(5, "ease")
    array([0.   , 0.125, 0.5  , 0.875, 1.   ])
    >>> kerasmorph.schedules.schedule_weights(4, endpoint=False)
    array([0.  , 0.25, 0.5 , 0.75])
    """
    num_frames = check_index("num_frames", num_frames, 1)
    if endpoint:
        positions = np.linspace(0.0, 1.0, num_frames)
    else:
        positions = np.arange(num_frames, dtype=np.float64) / num_frames
    return apply_schedule(schedule, positions)
