"""Property tests for kerasmorph.schedules (pure numpy)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from kerasmorph import schedules

SCHEDULE_NAMES = sorted(schedules.SCHEDULES)
DENSE_T = np.linspace(0.0, 1.0, 1001)


def test_registry_holds_the_documented_schedules():
    assert set(schedules.SCHEDULES) == {"linear", "sinh", "ease", "cosine", "beta"}


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_endpoints_are_exact(name):
    fn = schedules.SCHEDULES[name]
    assert fn(0.0) == 0.0
    assert fn(1.0) == 1.0
    weights = fn(DENSE_T)
    assert weights[0] == 0.0 and weights[-1] == 1.0


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_monotone_and_in_unit_interval(name):
    weights = schedules.SCHEDULES[name](DENSE_T)
    assert weights.shape == DENSE_T.shape
    assert weights.dtype == np.float64
    assert np.all(np.diff(weights) >= 0.0)
    assert np.all((weights >= 0.0) & (weights <= 1.0))


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_symmetric_about_the_midpoint(name):
    fn = schedules.SCHEDULES[name]
    np.testing.assert_allclose(fn(1.0 - DENSE_T), 1.0 - fn(DENSE_T), atol=1e-12)


def test_known_values():
    np.testing.assert_allclose(schedules.ease([0.25, 0.5, 0.75]), [0.125, 0.5, 0.875])
    np.testing.assert_allclose(schedules.cosine([0.5]), [0.5], atol=1e-15)
    np.testing.assert_allclose(schedules.cosine(1 / 3), 0.25, atol=1e-15)
    np.testing.assert_allclose(schedules.sinh(0.5), 0.5, atol=1e-15)
    a = schedules.DEFAULT_SINH_STEEPNESS
    np.testing.assert_allclose(schedules.sinh(0.75), np.sinh(a / 2) / np.sinh(a) / 2 + 0.5)


def test_sinh_is_denser_near_the_middle_than_linear():
    sinh_weights = schedules.schedule_weights(101, "sinh")
    linear_weights = schedules.schedule_weights(101, "linear")
    middle = lambda w: np.count_nonzero((w >= 0.4) & (w <= 0.6))  # noqa: E731
    assert middle(sinh_weights) > 1.5 * middle(linear_weights)
    # Steps between frames are smaller than linear at the middle, larger at the ends.
    sinh_steps = np.diff(sinh_weights)
    assert sinh_steps[50] < 0.6 * np.diff(linear_weights)[50]
    assert sinh_steps[0] > 2.0 * np.diff(linear_weights)[0]


def test_sinh_steepness_controls_density():
    gentle = schedules.sinh(DENSE_T, a=0.5)
    steep = schedules.sinh(DENSE_T, a=4.0)
    mid = slice(400, 601)
    assert np.ptp(steep[mid]) < np.ptp(gentle[mid])
    # a -> 0 tends to linear.
    np.testing.assert_allclose(schedules.sinh(DENSE_T, a=1e-4), DENSE_T, atol=1e-6)
    # A partial with another steepness is a valid schedule.
    weights = schedules.schedule_weights(11, functools.partial(schedules.sinh, a=3.0))
    assert weights[0] == 0.0 and weights[-1] == 1.0


@pytest.mark.parametrize("a", [0.0, -1.0, float("nan"), float("inf"), True, "2"])
def test_sinh_rejects_bad_steepness(a):
    with pytest.raises(ValueError, match=r"`a` must be a positive finite number\. Received: a="):
        schedules.sinh(0.5, a=a)


@pytest.mark.parametrize("t", [-0.1, 1.5, [0.0, 2.0], float("nan")])
def test_schedules_reject_positions_outside_unit_interval(t):
    with pytest.raises(ValueError, match=r"`t` must be in \[0, 1\]\. Received: t="):
        schedules.cosine(t)


@pytest.mark.parametrize("t", [True, "0.5", [1j]])
def test_schedules_reject_non_real_positions(t):
    with pytest.raises(ValueError, match=r"`t` must be a real number.*Received: t="):
        schedules.linear(t)


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
@pytest.mark.parametrize("num_frames", [2, 3, 10, 64])
def test_schedule_weights_endpoint_true(name, num_frames):
    weights = schedules.schedule_weights(num_frames, name)
    assert weights.shape == (num_frames,)
    assert weights.dtype == np.float64
    assert weights[0] == 0.0 and weights[-1] == 1.0
    np.testing.assert_allclose(
        weights, schedules.SCHEDULES[name](np.linspace(0, 1, num_frames)), atol=1e-15
    )


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_schedule_weights_endpoint_false_stops_short_of_one(name):
    weights = schedules.schedule_weights(8, name, endpoint=False)
    np.testing.assert_allclose(weights, schedules.SCHEDULES[name](np.arange(8) / 8), atol=1e-15)
    assert weights[0] == 0.0
    assert weights[-1] < 1.0
    assert np.all(np.diff(weights) > 0.0)


def test_endpoint_false_segments_chain_without_repeats():
    # Two segments of 4 (endpoint=False) + the final endpoint == one linspace of 9.
    first = schedules.schedule_weights(4, endpoint=False) / 2
    second = 0.5 + schedules.schedule_weights(4, endpoint=False) / 2
    chained = np.concatenate([first, second, [1.0]])
    np.testing.assert_allclose(chained, np.linspace(0, 1, 9))


@pytest.mark.parametrize("endpoint", [True, False])
def test_single_frame_is_zero(endpoint):
    weights = schedules.schedule_weights(1, "sinh", endpoint=endpoint)
    assert weights.shape == (1,)
    assert weights[0] == 0.0


def test_schedule_weights_accepts_numpy_integers():
    assert schedules.schedule_weights(np.int64(5)).shape == (5,)


@pytest.mark.parametrize("num_frames", [0, -3, 2.5, True, "4", None])
def test_schedule_weights_rejects_bad_counts(num_frames):
    with pytest.raises(
        ValueError, match=r"`num_frames` must be an integer >= 1\. Received: num_frames="
    ):
        schedules.schedule_weights(num_frames)


def test_get_schedule_returns_registered_functions_and_callables():
    assert schedules.get_schedule("sinh") is schedules.sinh

    def custom(t):
        return t**3

    assert schedules.get_schedule(custom) is custom
    np.testing.assert_allclose(schedules.schedule_weights(3, custom), [0.0, 0.125, 1.0])


@pytest.mark.parametrize("bad", ["foo", "Linear", 3, None])
def test_get_schedule_error_lists_the_valid_names(bad):
    with pytest.raises(ValueError) as info:
        schedules.get_schedule(bad)
    message = str(info.value)
    assert "`schedule` must be one of 'linear', 'sinh', 'ease', 'cosine'" in message
    assert message.endswith(f"Received: schedule={bad!r}")


def test_unknown_name_through_schedule_weights():
    with pytest.raises(ValueError, match=r"Received: schedule='foo'"):
        schedules.schedule_weights(4, "foo")


def test_user_schedule_float_noise_is_snapped_to_exact_endpoints():
    weights = schedules.schedule_weights(5, lambda t: t * (1 + 1e-9) - 1e-10)
    assert weights[0] == 0.0 and weights[-1] == 1.0
    assert np.all(np.diff(weights) >= 0.0)


@pytest.mark.parametrize(
    "fn, match",
    [
        (lambda t: t[:-1], r"one weight per position"),
        (lambda t: 2 * t, r"finite weights in \[0, 1\]\. Received: schedule\(t\)="),
        (lambda t: t * np.nan, r"finite weights in \[0, 1\]"),
        (lambda t: 0.5 * t, r"must map 1 to 1\. Received: schedule\(1\)=0\.5"),
        (lambda t: 0.5 + 0.5 * t, r"must map 0 to 0\. Received: schedule\(0\)=0\.5"),
        (lambda t: np.where((t > 0) & (t < 1), 1 - t, t), r"monotone non-decreasing"),
    ],
)
def test_invalid_user_schedules_are_rejected(fn, match):
    with pytest.raises(ValueError, match=match):
        schedules.schedule_weights(5, fn)


def test_apply_schedule_checks_monotonicity_on_unsorted_positions():
    weights = schedules.apply_schedule("ease", [1.0, 0.0, 0.5])
    np.testing.assert_array_equal(weights, [1.0, 0.0, 0.5])
    with pytest.raises(ValueError, match=r"monotone"):
        schedules.apply_schedule(lambda t: 1 - t + (t == 1) - (t == 0), [0.75, 0.0, 0.25, 1.0])
