"""Property tests for kerasmorph.interpolation (pure numpy)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

from kerasmorph import interpolation
from kerasmorph.interpolation import (
    PathFrame,
    barycentric_mix,
    bilinear_grid,
    delta_walk,
    interpolate_noise,
    lerp,
    materialize_path,
    noise_loop,
    plan_path,
    slerp,
    variance_preserving_mix,
)
from kerasmorph.schedules import SCHEDULES

ENCODING_SHAPE = (77, 16)
NOISE_SHAPE = (64, 64, 4)
STD_TOLERANCE = 0.02


def _encodings(num, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal((num, *ENCODING_SHAPE)).astype(dtype)


def _noises(num, seed=1, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal((num, *NOISE_SHAPE)).astype(dtype)


def _mixes(frame, num_keyframes):
    """(prompt mix, noise mix): the weight each keyframe gets in the frame."""
    mixes = []
    pairs = ((frame.prompt_pair, frame.prompt_weight), (frame.noise_pair, frame.noise_weight))
    for pair, weight in pairs:
        mix = np.zeros(num_keyframes)
        mix[pair[0]] += 1.0 - weight
        mix[pair[1]] += weight
        mixes.append(mix)
    return mixes


# ---------------------------------------------------------------------------
# Module hygiene.


def test_importing_the_numpy_modules_loads_no_deep_learning_framework():
    code = (
        "import sys, kerasmorph.interpolation, kerasmorph.schedules\n"
        "heavy = {'tensorflow', 'keras', 'keras_cv', 'keras_hub', 'torch', 'jax'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


# ---------------------------------------------------------------------------
# lerp / slerp / variance-preserving: shared properties.

PAIRWISE = [
    lerp,
    slerp,
    variance_preserving_mix,
    lambda start, end, t: interpolate_noise(start, end, t, method="variance_preserving"),
]


@pytest.mark.parametrize("interpolator", PAIRWISE)
@pytest.mark.parametrize("make", [_encodings, _noises])
def test_endpoints_are_bit_exact(interpolator, make):
    start, end = make(2)
    assert np.array_equal(interpolator(start, end, 0.0), start)
    assert np.array_equal(interpolator(start, end, 1.0), end)
    frames = interpolator(start, end, np.linspace(0, 1, 7))
    assert frames.shape == (7, *start.shape)
    assert frames.dtype == np.float32
    assert np.array_equal(frames[0], start)
    assert np.array_equal(frames[-1], end)
    assert not np.array_equal(frames[3], start) and not np.array_equal(frames[3], end)


@pytest.mark.parametrize("interpolator", [lerp, variance_preserving_mix])
def test_end_is_exact_even_where_float_arithmetic_is_not(interpolator):
    # start + 1·(end − start) == 0 != end in float64 for these values.
    start = np.array([1e30, 1.0, -7.25])
    end = np.array([1e-30, -3.0, 1e-20])
    assert (start + (end - start))[0] != end[0]
    assert np.array_equal(interpolator(start, end, 1.0), end)
    assert np.array_equal(interpolator(start, end, [0.0, 0.5, 1.0])[-1], end)


@pytest.mark.parametrize("interpolator", PAIRWISE)
def test_scalar_t_has_no_frame_axis(interpolator):
    start, end = _noises(2)
    assert interpolator(start, end, 0.3).shape == NOISE_SHAPE
    assert interpolator(start, end, np.float32(0.3)).shape == NOISE_SHAPE
    assert interpolator(start, end, [0.3]).shape == (1, *NOISE_SHAPE)


@pytest.mark.parametrize("interpolator", PAIRWISE)
def test_float64_stays_float64_and_integers_give_float64(interpolator):
    start, end = _noises(2, dtype=np.float64)
    assert interpolator(start, end, 0.5).dtype == np.float64
    assert interpolator(np.array([1, 2]), np.array([3, 5]), 0.5).dtype == np.float64


def test_lerp_matches_linspace():
    start, end = _encodings(2, dtype=np.float64)
    for num in (2, 5, 50):
        np.testing.assert_allclose(
            lerp(start, end, np.linspace(0, 1, num)),
            np.linspace(start, end, num),
            rtol=1e-12,
            atol=1e-12,
        )


def test_lerp_midpoint_value():
    result = lerp(np.array([0.0, 2.0]), np.array([4.0, -2.0]), 0.25)
    np.testing.assert_array_equal(result, [1.0, 1.0])


@pytest.mark.parametrize("interpolator", PAIRWISE)
def test_interpolators_reject_mismatched_shapes(interpolator):
    with pytest.raises(
        ValueError,
        match=r"`start` and `end` must have the same shape\. "
        r"Received: start\.shape=\(77, 16\), end\.shape=\(77, 8\)",
    ):
        interpolator(np.zeros((77, 16)), np.zeros((77, 8)), 0.5)


@pytest.mark.parametrize(
    "t, match",
    [
        (1.5, r"`t` must be in \[0, 1\]\. Received: t=1\.5"),
        ([0.0, -0.5], r"`t` must be in \[0, 1\]\. Received: t="),
        (np.nan, r"`t` must be in \[0, 1\]"),
        (np.zeros((2, 2)), r"`t` must be a scalar or a 1-D array.*shape \(2, 2\)"),
        ([], r"`t` must hold at least one weight"),
        (True, r"`t` must be a real number"),
    ],
)
@pytest.mark.parametrize("interpolator", PAIRWISE)
def test_interpolators_reject_bad_weights(interpolator, t, match):
    start, end = _encodings(2)
    with pytest.raises(ValueError, match=match):
        interpolator(start, end, t)


def test_interpolators_reject_non_numeric_arrays():
    with pytest.raises(
        ValueError, match=r"`start` must be a real numeric array.*Received: start with dtype"
    ):
        lerp(np.array(["a", "b"]), np.zeros(2), 0.5)
    with pytest.raises(ValueError, match=r"`end` must be a real numeric array"):
        slerp(np.zeros(2), np.array([1j, 2j]), 0.5)


# ---------------------------------------------------------------------------
# slerp.


@pytest.mark.parametrize("dim", [2, 3, 128, 4096])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_slerp_keeps_unit_norm(dim, seed):
    rng = np.random.default_rng(seed)
    start, end = rng.standard_normal((2, dim))
    start /= np.linalg.norm(start)
    end /= np.linalg.norm(end)
    assert abs(start @ end) < 0.9995  # the spherical branch, not the lerp fallback
    frames = slerp(start, end, np.linspace(0, 1, 21))
    np.testing.assert_allclose(np.linalg.norm(frames, axis=1), 1.0, atol=1e-12)
    # And moves at constant angular speed along the great circle.
    angles = np.arccos(np.clip(np.sum(frames[1:] * frames[:-1], axis=1), -1, 1))
    np.testing.assert_allclose(angles, angles[0], atol=1e-7)


def test_slerp_keeps_unit_norm_for_float32_arrays():
    rng = np.random.default_rng(3)
    start, end = rng.standard_normal((2, 77, 16)).astype(np.float32)
    start /= np.linalg.norm(start)
    end /= np.linalg.norm(end)
    frames = slerp(start, end, np.linspace(0, 1, 9))
    assert frames.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(frames.reshape(9, -1), axis=1), 1.0, atol=1e-5)


def test_slerp_of_orthogonal_vectors_at_half():
    result = slerp(np.array([1.0, 0.0]), np.array([0.0, 1.0]), 0.5)
    np.testing.assert_allclose(result, [np.sqrt(0.5), np.sqrt(0.5)], atol=1e-15)


def test_slerp_of_identical_inputs_returns_start():
    start = _noises(1)[0]
    frames = slerp(start, start.copy(), np.linspace(0, 1, 5))
    assert not np.any(np.isnan(frames))
    for frame in frames:
        assert np.array_equal(frame, start)


def test_slerp_of_nearly_parallel_inputs_is_lerp():
    start = _noises(1)[0].astype(np.float64)
    end = start + 1e-3 * _noises(1, seed=5)[0]
    t = np.linspace(0, 1, 5)
    np.testing.assert_array_equal(slerp(start, end, t), lerp(start, end, t))


def test_slerp_of_antiparallel_inputs_warns_and_passes_through_zero():
    start = _noises(1)[0]
    with pytest.warns(RuntimeWarning, match=r"antiparallel"):
        frames = slerp(start, -start, np.linspace(0, 1, 5))
    assert not np.any(np.isnan(frames))
    np.testing.assert_array_equal(frames[2], np.zeros_like(start))
    assert np.array_equal(frames[-1], -start)


def test_slerp_does_not_warn_for_independent_noise():
    start, end = _noises(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        slerp(start, end, 0.5)


def test_slerp_with_a_zero_input_is_lerp_without_nan():
    end = _noises(1)[0]
    frames = slerp(np.zeros_like(end), end, np.linspace(0, 1, 5))
    assert not np.any(np.isnan(frames))
    np.testing.assert_allclose(frames[2], 0.5 * end)


@pytest.mark.parametrize("dot_threshold", [0.0, 1.0, 1.5, -0.2, float("nan"), "0.9"])
def test_slerp_rejects_bad_dot_threshold(dot_threshold):
    start, end = _noises(2)
    with pytest.raises(ValueError, match=r"`dot_threshold` must be .*Received: dot_threshold="):
        slerp(start, end, 0.5, dot_threshold=dot_threshold)


# ---------------------------------------------------------------------------
# Noise statistics: every frame stays standard normal.


@pytest.mark.parametrize("method", ["slerp", "variance_preserving"])
@pytest.mark.parametrize("seed", [1, 7])
def test_interpolated_noise_keeps_unit_std(method, seed):
    start, end = _noises(2, seed=seed)
    frames = interpolate_noise(start, end, np.linspace(0, 1, 11), method=method)
    stds = frames.reshape(11, -1).std(axis=1)
    np.testing.assert_allclose(stds, 1.0, atol=STD_TOLERANCE)


def test_plain_lerp_of_noise_fails_the_std_bound_at_the_midpoint():
    start, end = _noises(2)
    midpoint_std = lerp(start, end, 0.5).std()
    assert abs(midpoint_std - 1.0) > STD_TOLERANCE  # the bound above is meaningful
    np.testing.assert_allclose(midpoint_std, np.sqrt(0.5), atol=STD_TOLERANCE)


def test_noise_loop_keeps_unit_std():
    x, y = _noises(2)
    frames = noise_loop(x, y, 24)
    np.testing.assert_allclose(frames.reshape(24, -1).std(axis=1), 1.0, atol=STD_TOLERANCE)


def test_interpolate_noise_defaults_to_slerp():
    start, end = _noises(2)
    np.testing.assert_array_equal(interpolate_noise(start, end, 0.3), slerp(start, end, 0.3))


@pytest.mark.parametrize("method", ["lerp", "linear", None])
def test_interpolate_noise_error_lists_the_valid_methods(method):
    start, end = _noises(2)
    with pytest.raises(ValueError) as info:
        interpolate_noise(start, end, 0.5, method=method)
    message = str(info.value)
    assert "`method` must be one of 'slerp', 'variance_preserving'" in message
    assert message.endswith(f"Received: method={method!r}")
    assert ("blurs the image" in message) == (method == "lerp")


def test_variance_preserving_mix_values():
    result = variance_preserving_mix(np.array([1.0]), np.array([2.0]), [0.25, 0.5])
    np.testing.assert_allclose(result[:, 0], [np.sqrt(0.75) + 2 * 0.5, np.sqrt(0.5) * 3])


# ---------------------------------------------------------------------------
# noise_loop.


def test_noise_loop_starts_exactly_on_x_and_closes():
    x, y = _noises(2)
    num_frames = 16
    frames = noise_loop(x, y, num_frames)
    assert frames.shape == (num_frames, *NOISE_SHAPE)
    assert frames.dtype == np.float32
    assert np.array_equal(frames[0], x)
    # The frame after the last (θ = 2π) is frame 0 again...
    after_last = np.cos(2 * np.pi) * x.astype(np.float64) + np.sin(2 * np.pi) * y
    np.testing.assert_allclose(after_last, frames[0], atol=1e-6)
    # ...and is not repeated inside the loop.
    assert np.abs(frames[-1] - frames[0]).max() > 0.1
    # The last frame is one step before θ = 2π, at the same spacing as the rest.
    theta = 2 * np.pi * (num_frames - 1) / num_frames
    np.testing.assert_allclose(frames[-1], np.cos(theta) * x + np.sin(theta) * y, atol=1e-5)


def test_noise_loop_frames_are_evenly_spaced():
    x, y = _noises(2)
    np.testing.assert_allclose(noise_loop(x, y, 20)[::2], noise_loop(x, y, 10), atol=1e-6)
    quarter = noise_loop(x, y, 4)
    np.testing.assert_allclose(quarter[1], y, atol=1e-6)
    np.testing.assert_allclose(quarter[2], -x, atol=1e-6)


def test_noise_loop_validation():
    x, y = _noises(2)
    with pytest.raises(
        ValueError, match=r"`num_frames` must be an integer >= 1\. Received: num_frames=0"
    ):
        noise_loop(x, y, 0)
    with pytest.raises(
        ValueError, match=r"`x` and `y` must have the same shape\. Received: x\.shape="
    ):
        noise_loop(x, y[:32], 8)


# ---------------------------------------------------------------------------
# bilinear_grid.


@pytest.mark.parametrize("num_per_side", [2, 3, 6])
def test_bilinear_grid_shape_and_exact_corners(num_per_side):
    tl, tr, bl, br = _encodings(4)
    grid = bilinear_grid(tl, tr, bl, br, num_per_side)
    n = num_per_side
    assert grid.shape == (n * n, *ENCODING_SHAPE)
    assert grid.dtype == np.float32
    assert np.array_equal(grid[0], tl)
    assert np.array_equal(grid[n - 1], tr)
    assert np.array_equal(grid[n * (n - 1)], bl)
    assert np.array_equal(grid[n * n - 1], br)


def test_bilinear_grid_is_a_linspace_of_linspaces_row_major():
    tl, tr, bl, br = _encodings(4, dtype=np.float64)
    n = 5
    expected = np.linspace(np.linspace(tl, tr, n), np.linspace(bl, br, n), n)
    expected = expected.reshape(n * n, *ENCODING_SHAPE)
    np.testing.assert_allclose(bilinear_grid(tl, tr, bl, br, n), expected, rtol=1e-12, atol=1e-12)
    # Frame 1 is one step right along the top row, frame n one step down the left column.
    grid = bilinear_grid(tl, tr, bl, br, n)
    np.testing.assert_allclose(grid[1], tl + 0.25 * (tr - tl))
    np.testing.assert_allclose(grid[n], tl + 0.25 * (bl - tl))


def test_bilinear_grid_validation():
    tl, tr, bl, br = _encodings(4)
    with pytest.raises(
        ValueError, match=r"`num_per_side` must be an integer >= 2\. Received: num_per_side=1"
    ):
        bilinear_grid(tl, tr, bl, br, 1)
    with pytest.raises(
        ValueError,
        match=r"`top_left`, `top_right`, `bottom_left`, `bottom_right` must have the same "
        r"shape\. Received: .*bottom_right\.shape=\(77, 8\)",
    ):
        bilinear_grid(tl, tr, bl, br[:, :8], 3)


# ---------------------------------------------------------------------------
# barycentric_mix.


def test_barycentric_mix_one_hot_rows_are_exact_and_mean_is_mean():
    encodings = _encodings(3)
    weights = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.0, 0.5]])
    frames = barycentric_mix(encodings, weights)
    assert frames.shape == (4, *ENCODING_SHAPE)
    assert frames.dtype == np.float32
    assert np.array_equal(frames[0], encodings[1])
    assert np.array_equal(frames[1], encodings[0])
    np.testing.assert_allclose(frames[2], encodings.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(frames[3], lerp(encodings[0], encodings[2], 0.5), atol=1e-6)


@pytest.mark.parametrize(
    "weights, match",
    [
        (
            [[0.5, 0.6, -0.1]],
            r"finite and non-negative\. Received: weights\[0\]=\[ 0\.5  0\.6 -0\.1\]",
        ),
        (
            [[1.0, 0.0, 0.0], [0.5, 0.6, 0.0]],
            r"must sum to 1\. Received: weights\[1\]=\[0\.5 0\.6 0\. *\] \(sum 1\.1\)",
        ),
        ([[np.nan, 0.5, 0.5]], r"finite and non-negative\. Received: weights\[0\]="),
        (
            [[0.5, 0.5]],
            r"`weights` must have shape \(F, K\) with F >= 1 and K = 3.*Received: "
            r"weights\.shape=\(1, 2\)",
        ),
        ([1.0, 0.0, 0.0], r"`weights` must have shape \(F, K\).*Received: weights\.shape=\(3,\)"),
        (
            np.zeros((0, 3)),
            r"`weights` must have shape \(F, K\).*Received: weights\.shape=\(0, 3\)",
        ),
    ],
)
def test_barycentric_mix_rejects_bad_weights(weights, match):
    with pytest.raises(ValueError, match=match):
        barycentric_mix(_encodings(3), np.array(weights))


def test_barycentric_mix_rejects_empty_encodings():
    with pytest.raises(ValueError, match=r"`encodings` must have shape \(K, \.\.\.\) with K >= 1"):
        barycentric_mix(np.zeros((0, 77, 16)), np.zeros((1, 0)))


# ---------------------------------------------------------------------------
# delta_walk.


def test_delta_walk_default_is_the_keras_cv_tutorial_walk():
    encoding = _encodings(1)[0]
    frames = delta_walk(encoding, 6)
    assert frames.shape == (6, *ENCODING_SHAPE)
    assert frames.dtype == np.float32
    assert np.array_equal(frames[0], encoding)
    expected = encoding[None].astype(np.float64) + 0.005 * np.arange(6)[:, None, None]
    np.testing.assert_allclose(frames, expected, atol=1e-6)


def test_delta_walk_step_size_and_direction():
    encoding = np.zeros((2, 3))
    direction = np.arange(6.0).reshape(2, 3)
    frames = delta_walk(encoding, 3, step_size=0.5, direction=direction)
    np.testing.assert_allclose(frames[2], direction)


def test_delta_walk_seeded_random_direction_is_deterministic_and_has_the_norm():
    encoding = _encodings(1, dtype=np.float64)[0]
    first = delta_walk(encoding, 5, seed=3, norm=2.0)
    again = delta_walk(encoding, 5, seed=3, norm=2.0)
    other = delta_walk(encoding, 5, seed=4, norm=2.0)
    assert np.array_equal(first, again)
    assert not np.allclose(first, other)
    assert np.array_equal(first[0], encoding)
    steps = np.linalg.norm(np.diff(first, axis=0).reshape(4, -1), axis=1)
    np.testing.assert_allclose(steps, 2.0, rtol=1e-9)
    # Not the all-ones direction.
    delta = first[1] - first[0]
    assert np.std(delta) > 0.01


def test_delta_walk_seed_without_norm_scales_elementwise():
    encoding = np.zeros((77, 16))
    frames = delta_walk(encoding, 2, seed=0, step_size=0.1)
    expected = 0.1 * np.random.default_rng(0).standard_normal((77, 16))
    np.testing.assert_allclose(frames[1], expected)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"seed": 1, "direction": np.ones(ENCODING_SHAPE)},
            r"either `direction` or `seed`.*Received: direction with shape \(77, 16\), seed=1",
        ),
        (
            {"norm": 1.0, "step_size": 0.01},
            r"either `step_size`.*or `norm`.*Received: step_size=0\.01, norm=1\.0",
        ),
        ({"norm": 0.0}, r"`norm` must be positive\. Received: norm=0\.0"),
        ({"norm": float("inf")}, r"`norm` must be a finite real number\. Received: norm=inf"),
        ({"step_size": float("nan")}, r"`step_size` must be a finite real number"),
        (
            {"direction": np.ones((77, 8))},
            r"`direction` must have the shape of `encoding`\. Received: direction\.shape=\(77, "
            r"8\), encoding\.shape=\(77, 16\)",
        ),
        ({"direction": np.zeros(ENCODING_SHAPE), "norm": 1.0}, r"`direction` must be non-zero"),
        ({"direction": np.full(ENCODING_SHAPE, np.nan)}, r"`direction` must be finite"),
        ({"seed": -1}, r"`seed` must be an integer >= 0\. Received: seed=-1"),
    ],
)
def test_delta_walk_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        delta_walk(_encodings(1)[0], 4, **kwargs)


def test_delta_walk_rejects_bad_frame_count():
    with pytest.raises(
        ValueError, match=r"`num_frames` must be an integer >= 1\. Received: num_frames=0"
    ):
        delta_walk(_encodings(1)[0], 0)


# ---------------------------------------------------------------------------
# plan_path.


@pytest.mark.parametrize("mode", ["together", "alternate"])
@pytest.mark.parametrize("num_keyframes", [2, 3, 5])
@pytest.mark.parametrize("frames_per_segment", [2, 3, 8])
def test_plan_frame_counts(mode, num_keyframes, frames_per_segment):
    open_plan = plan_path(num_keyframes, frames_per_segment, mode=mode)
    closed_plan = plan_path(num_keyframes, frames_per_segment, mode=mode, closed=True)
    assert len(open_plan) == (num_keyframes - 1) * frames_per_segment + 1
    assert len(closed_plan) == num_keyframes * frames_per_segment


def test_plan_with_one_frame_per_segment_visits_only_keyframes():
    plan = plan_path(4, 1)
    assert [_mixes(frame, 4)[0].argmax() for frame in plan] == [0, 1, 2, 3]
    assert all(np.max(_mixes(frame, 4)[0]) == 1.0 for frame in plan)


def test_plan_per_segment_counts():
    plan = plan_path(3, [2, 5])
    assert len(plan) == 2 + 5 + 1
    assert [frame.segment for frame in plan] == [0] * 2 + [1] * 6
    assert len(plan_path(3, [2, 5, 4], closed=True)) == 11


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("mode", ["together", "alternate"])
@pytest.mark.parametrize("closed", [False, True])
def test_plan_repeats_no_frame_and_hits_keyframes(schedule, mode, closed):
    num_keyframes = 4
    plan = plan_path(num_keyframes, 6, schedule=schedule, mode=mode, closed=closed)
    mixes = [np.concatenate(_mixes(frame, num_keyframes)) for frame in plan]
    for previous, current in zip(mixes, mixes[1:]):
        assert not np.allclose(previous, current, atol=1e-9)
    if closed:  # the frame after the last would be frame 0: no repeat across the loop either
        assert not np.allclose(mixes[-1], mixes[0], atol=1e-9)
    # Frame 0 is keyframe 0 exactly; each segment starts exactly on its keyframe.
    starts = [0] + [k for k in range(1, len(plan)) if plan[k].segment != plan[k - 1].segment]
    assert [plan[k].segment for k in starts] == list(range(len(starts)))
    for k in starts:
        assert plan[k].prompt_weight == 0.0 and plan[k].noise_weight == 0.0
        assert plan[k].prompt_pair[0] == plan[k].segment == plan[k].noise_pair[0]
    last = plan[-1]
    if closed:
        assert last.prompt_pair == (num_keyframes - 1, 0)
        assert last.noise_weight < 1.0
    else:
        assert last.prompt_pair == last.noise_pair == (num_keyframes - 2, num_keyframes - 1)
        assert last.prompt_weight == 1.0 and last.noise_weight == 1.0


def test_together_mode_moves_prompt_and_noise_with_the_schedule():
    plan = plan_path(2, 4, schedule="ease")
    weights = [frame.prompt_weight for frame in plan]
    np.testing.assert_allclose(weights, [0.0, 0.125, 0.5, 0.875, 1.0])
    assert all(frame.prompt_weight == frame.noise_weight for frame in plan)


@pytest.mark.parametrize("frames_per_segment", [2, 3, 4, 7])
@pytest.mark.parametrize("closed", [False, True])
def test_alternate_mode_moves_one_thing_at_a_time(frames_per_segment, closed):
    num_keyframes = 3
    plan = plan_path(num_keyframes, frames_per_segment, mode="alternate", closed=closed)
    frames = [_mixes(frame, num_keyframes) for frame in plan]
    if closed:
        frames.append(frames[0])
    for (prompt_a, noise_a), (prompt_b, noise_b) in zip(frames, frames[1:]):
        prompt_moved = not np.allclose(prompt_a, prompt_b)
        noise_moved = not np.allclose(noise_a, noise_b)
        assert prompt_moved != noise_moved  # exactly one of them


def test_alternate_mode_prompt_first_then_noise():
    plan = plan_path(2, 4, mode="alternate")
    np.testing.assert_allclose([f.prompt_weight for f in plan], [0.0, 0.5, 1.0, 1.0, 1.0])
    np.testing.assert_allclose([f.noise_weight for f in plan], [0.0, 0.0, 0.0, 0.5, 1.0])
    # With a schedule, each half-move runs the whole schedule (= schedule(2p), schedule(2p − 1)).
    plan = plan_path(2, 8, mode="alternate", schedule="ease")
    np.testing.assert_allclose([f.prompt_weight for f in plan[:4]], [0.0, 0.125, 0.5, 0.875])
    np.testing.assert_allclose([f.noise_weight for f in plan[4:]], [0.0, 0.125, 0.5, 0.875, 1.0])


def test_alternate_mode_with_odd_counts_gives_the_extra_frame_to_the_prompt():
    plan = plan_path(2, 5, mode="alternate")
    np.testing.assert_allclose([f.prompt_weight for f in plan], [0, 1 / 3, 2 / 3, 1, 1, 1])
    np.testing.assert_allclose([f.noise_weight for f in plan], [0, 0, 0, 0, 0.5, 1])


def test_plan_schedule_per_segment():
    plan = plan_path(3, 4, schedule=["linear", "ease"])
    np.testing.assert_allclose([f.prompt_weight for f in plan[:4]], [0.0, 0.25, 0.5, 0.75])
    np.testing.assert_allclose([f.prompt_weight for f in plan[4:]], [0.0, 0.125, 0.5, 0.875, 1.0])
    plan = plan_path(2, 4, schedule=lambda t: t**2)
    np.testing.assert_allclose([f.prompt_weight for f in plan], [0.0, 1 / 16, 1 / 4, 9 / 16, 1.0])


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((1, 4), {}, r"`num_keyframes` must be an integer >= 2\. Received: num_keyframes=1"),
        (
            (3, 0),
            {},
            r"`frames_per_segment` must be an integer >= 1\. Received: frames_per_segment=0",
        ),
        (
            (3, [4, 2.5]),
            {},
            r"`frames_per_segment\[1\]` must be an integer >= 1\. Received: "
            r"frames_per_segment\[1\]=2\.5",
        ),
        ((3, 1), {"mode": "alternate"}, r"`frames_per_segment` must be an integer >= 2\. "),
        ((3, [2, 1]), {"mode": "alternate"}, r"`frames_per_segment\[1\]` must be an integer >= 2"),
        (
            (3, [4, 4]),
            {"closed": True},
            r"`frames_per_segment` must be a single value or a sequence with one entry per "
            r"segment \(3\)\. Received: frames_per_segment=\[4, 4\] \(2 entries\)",
        ),
        (
            (3, 4),
            {"schedule": ["linear"]},
            r"`schedule` must be a single value or a sequence with one entry per segment \(2\)",
        ),
        (
            (3, 4),
            {"schedule": "foo"},
            r"`schedule` must be one of 'linear', 'sinh', 'ease', 'cosine'.*Received: "
            r"schedule='foo'",
        ),
        ((3, 4), {"schedule": ["linear", "bar"]}, r"Received: schedule='bar'"),
        (
            (3, 4),
            {"mode": "both"},
            r"`mode` must be one of 'together', 'alternate'\. Received: mode='both'",
        ),
        ((3, 4), {"closed": "yes"}, r"`closed` must be a bool\. Received: closed='yes'"),
    ],
)
def test_plan_path_rejects_bad_arguments(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plan_path(*args, **kwargs)


def test_path_frame_is_frozen_and_round_trips_through_json():
    frame = plan_path(3, 4, schedule="sinh")[5]
    with pytest.raises(dataclasses.FrozenInstanceError):
        frame.prompt_weight = 0.5
    restored = PathFrame(**json.loads(json.dumps(dataclasses.asdict(frame))))
    assert restored == frame
    assert isinstance(restored.prompt_pair, tuple)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"prompt_weight": 1.5},
            r"`prompt_weight` must be in \[0, 1\]\. Received: prompt_weight=1\.5",
        ),
        ({"noise_weight": float("nan")}, r"`noise_weight` must be a finite real number"),
        (
            {"prompt_pair": (0, 1, 2)},
            r"`prompt_pair` must be a pair of keyframe indices \(i, j\)\. Received: "
            r"prompt_pair=\(0, 1, 2\)",
        ),
        (
            {"noise_pair": (0, -1)},
            r"`noise_pair\[1\]` must be an integer >= 0\. Received: noise_pair\[1\]=-1",
        ),
        ({"segment": -1}, r"`segment` must be an integer >= 0\. Received: segment=-1"),
    ],
)
def test_path_frame_validation(kwargs, match):
    fields = {
        "segment": 0,
        "prompt_pair": (0, 1),
        "prompt_weight": 0.5,
        "noise_pair": (0, 1),
        "noise_weight": 0.5,
    }
    with pytest.raises(ValueError, match=match):
        PathFrame(**{**fields, **kwargs})


# ---------------------------------------------------------------------------
# materialize_path.


@pytest.mark.parametrize("noise_method", ["slerp", "variance_preserving"])
@pytest.mark.parametrize("mode", ["together", "alternate"])
def test_materialize_path(noise_method, mode):
    num_keyframes = 3
    encodings = _encodings(num_keyframes)
    noises = _noises(num_keyframes)
    plan = plan_path(num_keyframes, 4, schedule="sinh", mode=mode, closed=True)
    frame_encodings, frame_noises = materialize_path(
        plan, encodings, noises, noise_method=noise_method
    )
    assert frame_encodings.shape == (12, *ENCODING_SHAPE)
    assert frame_noises.shape == (12, *NOISE_SHAPE)
    assert frame_encodings.dtype == np.float32 and frame_noises.dtype == np.float32
    for index, keyframe in enumerate(range(num_keyframes)):
        assert np.array_equal(frame_encodings[4 * index], encodings[keyframe])
        assert np.array_equal(frame_noises[4 * index], noises[keyframe])
    for frame, encoding, noise in zip(plan, frame_encodings, frame_noises):
        i, j = frame.prompt_pair
        expected = lerp(encodings[i], encodings[j], frame.prompt_weight)
        np.testing.assert_allclose(encoding, expected, atol=1e-6)
        i, j = frame.noise_pair
        expected = interpolate_noise(noises[i], noises[j], frame.noise_weight, method=noise_method)
        np.testing.assert_allclose(noise, expected, atol=1e-6)
    np.testing.assert_allclose(frame_noises.reshape(12, -1).std(axis=1), 1.0, atol=STD_TOLERANCE)


def test_materialize_open_path_ends_on_the_last_keyframe():
    encodings, noises = _encodings(2), _noises(2)
    frame_encodings, frame_noises = materialize_path(plan_path(2, 5), encodings, noises)
    assert np.array_equal(frame_encodings[-1], encodings[1])
    assert np.array_equal(frame_noises[-1], noises[1])


def test_materialize_accepts_a_partial_plan():
    plan = plan_path(4, 3)[:4]  # only reaches keyframe 2
    frame_encodings, _ = materialize_path(plan, _encodings(3), _noises(3))
    assert frame_encodings.shape == (4, *ENCODING_SHAPE)


@pytest.mark.parametrize(
    "plan, num_encodings, num_noises, kwargs, match",
    [
        ([], 3, 3, {}, r"`plan` must hold at least one PathFrame\. Received: plan=\[\]"),
        (["frame"], 3, 3, {}, r"`plan` must hold PathFrame objects\. Received: plan\[0\]='frame'"),
        (
            plan_path(3, 2),
            3,
            2,
            {},
            r"same number of keyframes.*Received: encodings\.shape=\(3, 77, 16\), "
            r"noises\.shape=\(2, 64, 64, 4\)",
        ),
        (
            plan_path(4, 2),
            3,
            3,
            {},
            r"`plan` refers to keyframe 3, but only 3 keyframes were given",
        ),
        (
            plan_path(3, 2),
            3,
            3,
            {"noise_method": "lerp"},
            r"`method` must be one of 'slerp', 'variance_preserving'.*Received: method='lerp'",
        ),
    ],
)
def test_materialize_path_rejects_bad_inputs(plan, num_encodings, num_noises, kwargs, match):
    with pytest.raises(ValueError, match=match):
        materialize_path(plan, _encodings(num_encodings), _noises(num_noises), **kwargs)


def test_module_exports_the_documented_registry():
    assert set(interpolation.NOISE_INTERPOLATORS) == {"slerp", "variance_preserving"}
    assert "lerp" not in interpolation.NOISE_INTERPOLATORS


# ---------------------------------------------------------------------------
# Computing a selection of frames (one render batch at a time).


def test_frame_positions_select_the_same_frames():
    rng = np.random.default_rng(3)
    encoding = rng.standard_normal((77, 8)).astype(np.float32)
    x, y = rng.standard_normal((2, 4, 4, 4)).astype(np.float32)
    full_walk = interpolation.delta_walk(encoding, 10, seed=2, norm=1.0)
    full_loop = interpolation.noise_loop(x, y, 10)
    for indices in ([0, 1, 2], [7, 8, 9], [5], [9, 0]):
        np.testing.assert_array_equal(
            interpolation.delta_walk(encoding, 10, seed=2, norm=1.0, frame_positions=indices),
            full_walk[indices],
        )
        np.testing.assert_array_equal(
            interpolation.noise_loop(x, y, 10, frame_positions=indices), full_loop[indices]
        )


def test_fractional_positions_interpolate_between_frames():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((2, 64, 64, 4))
    half = interpolation.noise_loop(x, y, 8, frame_positions=[2.5])[0]
    angle = 2 * np.pi * 2.5 / 8
    np.testing.assert_allclose(half, np.cos(angle) * x + np.sin(angle) * y)
    assert abs(half.std() - 1) < 0.02
    walk = interpolation.delta_walk(np.zeros(3), 5, step_size=1.0, frame_positions=[0.5, 4.0])
    np.testing.assert_array_equal(walk, [[0.5] * 3, [4.0] * 3])


@pytest.mark.parametrize("positions", [[10], [-1], [[0, 1]], [np.nan], ["a"]])
def test_frame_positions_out_of_range_are_rejected(positions):
    x = np.zeros((2, 2, 4), np.float32)
    with pytest.raises(ValueError, match=r"frame_positions.*\[0, 10\)"):
        interpolation.noise_loop(x, x, 10, frame_positions=positions)
    with pytest.raises(ValueError, match=r"frame_positions.*\[0, 9\]"):
        interpolation.delta_walk(x, 10, frame_positions=positions)


def test_bilinear_grid_with_a_schedule_keeps_exact_corners_and_eases():
    rng = np.random.default_rng(5)
    corners = rng.standard_normal((4, 77, 8)).astype(np.float32)
    eased = interpolation.bilinear_grid(*corners, 5, schedule="ease")
    linear = interpolation.bilinear_grid(*corners, 5)
    for corner, index in zip(corners, (0, 4, 20, 24)):
        np.testing.assert_array_equal(eased[index], corner)
    # Along the top row, the ease-in puts frame 1 closer to the corner than linear.
    assert np.linalg.norm(eased[1] - corners[0]) < np.linalg.norm(linear[1] - corners[0])
