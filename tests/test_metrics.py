"""`kerasmorph.metrics`: known answers on hand-made frame sequences."""

import json

import numpy as np
import pytest

from kerasmorph import metrics
from kerasmorph.shapes import data


def grey_ramp(levels, size=16):
    """Frames of one grey level each: uint8 (len(levels), size, size, 3)."""
    levels = np.asarray(levels, dtype=np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (len(levels), size, size, 3)).copy()


def square_on_white(side, size=32, colour=(220, 20, 0), top_left=(8, 8)):
    frame = np.full((size, size, 3), 255, np.uint8)
    row, column = top_left
    frame[row : row + side, column : column + side] = colour
    return frame


# ------------------------------------------------------------------ distances


def test_pixel_distances_of_grey_frames():
    frames = grey_ramp([0, 51, 102, 255])
    # Every pixel moves by the same amount: RMS and mean absolute difference agree.
    np.testing.assert_allclose(metrics.frame_distances(frames, "l2"), [0.2, 0.2, 0.6])
    np.testing.assert_allclose(metrics.frame_distances(frames, "mad"), [0.2, 0.2, 0.6])
    # Floats in [0, 1] are the same frames.
    np.testing.assert_allclose(
        metrics.frame_distances(frames / 255.0, "l2"), metrics.frame_distances(frames, "l2")
    )
    # A list of frames is accepted too.
    assert metrics.frame_distances(list(frames), "mad").shape == (3,)


def test_l2_is_the_root_mean_square_and_mad_the_mean():
    frames = np.zeros((2, 4, 4, 3), np.uint8)
    frames[1, 0, 0, 0] = 255  # One value of 48 changes fully.
    np.testing.assert_allclose(metrics.frame_distances(frames, "l2"), [np.sqrt(1 / 48)])
    np.testing.assert_allclose(metrics.frame_distances(frames, "mad"), [1 / 48])


def test_ssim_distance_is_zero_for_identical_frames_and_matches_tensorflow():
    rng = np.random.default_rng(0)
    frames = (rng.random((3, 24, 20, 3)) * 255).astype(np.uint8)
    frames[1] = frames[0]
    distances = metrics.frame_distances(frames, "ssim")
    assert distances[0] == pytest.approx(0.0, abs=1e-12)
    assert distances[1] > 0.5  # Unrelated noise.
    import tensorflow as tf

    expected = 1 - tf.image.ssim(
        tf.constant(frames[1:], tf.float32), tf.constant(frames[:-1], tf.float32), 255.0
    )
    np.testing.assert_allclose(distances, expected.numpy(), atol=1e-5)


def test_latent_distances_are_root_mean_square():
    latents = np.zeros((3, 2, 2, 4), np.float32)
    latents[1] = 1.0
    latents[2, 0, 0, 0] = 1.0
    np.testing.assert_allclose(metrics.latent_distances(latents), [1.0, np.sqrt(15 / 16)])


# ----------------------------------------------------------------- statistics


def test_constant_steps_have_no_variance_and_full_smoothness():
    stats = metrics.path_statistics([0.1] * 4, endpoint_distance=0.4)
    assert stats["pdv"] == pytest.approx(0) and stats["istd"] == pytest.approx(0)
    assert stats["smoothness"] == 1.0 and stats["directness"] == pytest.approx(1.0)
    assert stats["path_length"] == pytest.approx(0.4) and stats["mean"] == pytest.approx(0.1)


def test_one_jump():
    distances = [0.0, 0.0, 1.0, 0.0]
    # Gini of one non-zero value among n: (n − 1) / n.
    assert metrics.gini(distances) == pytest.approx(0.75)
    assert metrics.smoothness(distances) == pytest.approx(0.25)
    assert metrics.largest_jump(distances) == (1.0, 2)
    stats = metrics.path_statistics(distances)
    assert stats["istd"] == pytest.approx(np.std(distances))
    assert stats["pdv"] == pytest.approx(np.var(distances))
    assert "directness" not in stats


def test_gini_by_the_pairwise_formula():
    values = np.array([1.0, 2.0, 3.0, 6.0])
    pairwise = sum(abs(a - b) for a in values for b in values)
    assert metrics.gini(values) == pytest.approx(pairwise / (2 * 16 * values.mean()))
    assert metrics.gini([0, 0]) == 0.0


def test_directness_of_a_straight_line_is_one_and_of_a_detour_more():
    straight = grey_ramp([0, 64, 128, 192])
    d = metrics.frame_distances(straight, "l2")
    end = metrics.frame_distances(straight[[0, -1]], "l2")[0]
    assert metrics.directness(d, end) == pytest.approx(1.0)
    detour = grey_ramp([0, 255, 0, 64])
    d = metrics.frame_distances(detour, "l2")
    end = metrics.frame_distances(detour[[0, -1]], "l2")[0]
    assert metrics.directness(d, end) == pytest.approx((1 + 1 + 64 / 255) / (64 / 255))
    # A loop: the same endpoints.
    assert metrics.directness([0.5, 0.5], 0.0) == float("inf")
    assert metrics.directness([0.0], 0.0) == 1.0


# ------------------------------------------------------------------- presence


def test_presence_of_a_square_of_known_area_on_white():
    frames = np.stack([square_on_white(side) for side in (16, 8, 0, 16)])
    shares = metrics.presence(frames)
    np.testing.assert_allclose(shares, np.array([256, 64, 0, 256]) / 1024)
    np.testing.assert_allclose(metrics.relative_presence(shares), [1, 0.25, 0, 1])
    # A grey square 24 levels from white is under the threshold; 40 is over it.
    faint = np.stack(
        [square_on_white(16, colour=(231,) * 3), square_on_white(16, colour=(215,) * 3)]
    )
    np.testing.assert_allclose(metrics.presence(faint), [0, 0.25])
    assert metrics.relative_presence(np.zeros(3)) is None


def test_presence_finds_the_background_colour_from_the_border():
    frame = np.zeros((32, 32, 3), np.uint8)
    frame[..., :2] = 255  # A yellow background, a white square on it.
    frame[8:24, 8:24] = 255
    frames = np.stack([frame, frame])
    np.testing.assert_allclose(metrics.presence(frames), [0.25, 0.25])


def test_presence_matches_the_area_of_shapes_drawings():
    rng = np.random.default_rng(0)
    for sample in data.sample_shapes(rng, 20):
        image = data.render(sample)
        share = metrics.presence(np.stack([image, image]))[0]
        area = data.coverage(sample).mean()
        assert share == pytest.approx(area, rel=0.08), sample
        assert share == pytest.approx(data.shape_mask(image).mean(), rel=0.1), sample


# ---------------------------------------------------------------- evaluate_frames


def test_evaluate_frames_is_json_and_finds_the_empty_middle():
    frames = np.stack([square_on_white(side) for side in (16, 12, 4, 12, 16)])
    latents = np.arange(5, dtype=np.float32)[:, None, None, None] * np.ones((5, 4, 4, 4))
    result = metrics.evaluate_frames(frames, latents=latents)
    assert json.loads(json.dumps(result)) == result
    assert sorted(result["distances"]) == ["l2", "latent_l2", "ssim"]
    assert result["num_frames"] == 5 and (result["height"], result["width"]) == (32, 32)
    assert result["presence"]["argmin"] == 2
    assert result["presence"]["minimum"] == pytest.approx(16 / 256)
    assert result["distances"]["l2"]["directness"] is None  # The ends are the same frame.
    assert result["distances"]["latent_l2"]["smoothness"] == 1.0
    assert result["distances"]["latent_l2"]["directness"] == pytest.approx(1.0)
    rows = metrics.compare({"a": result, "b": metrics.evaluate_frames(frames, metrics=["mad"])})
    assert [(row["name"], row["metric"]) for row in rows] == [
        ("a", "l2"),
        ("a", "ssim"),
        ("a", "latent_l2"),
        ("b", "mad"),
    ]
    assert rows[0]["presence_argmin"] == 2 and "distances" not in rows[0]


# ---------------------------------------------------------------------- bad input

BAD_FRAMES = [
    (grey_ramp([0]), r"at least 2 frames .*Received: 1 frame$"),
    (np.zeros((2, 8, 8), np.uint8), r"shape \(num_frames, height, width, 3\)"),
    (np.zeros((2, 8, 8, 4), np.uint8), r"Received: frames.shape=\(2, 8, 8, 4\)"),
    ([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8)], "frame 1 has shape"),
    (np.full((2, 8, 8, 3), np.nan), "finite"),
    (np.full((2, 8, 8, 3), 2.0), r"\[0, 1\]"),
    (np.zeros((2, 8, 8, 3), np.int64), "uint8"),
]


@pytest.mark.parametrize("frames, message", BAD_FRAMES)
def test_bad_frames_are_one_line_errors(frames, message):
    for call in (metrics.frame_distances, metrics.presence, metrics.evaluate_frames):
        with pytest.raises(ValueError, match=message) as error:
            call(frames)
        assert "\n" not in str(error.value)


def test_other_bad_inputs():
    frames = grey_ramp([0, 10], size=8)
    with pytest.raises(ValueError, match="at least 11x11"):
        metrics.frame_distances(frames, "ssim")
    with pytest.raises(ValueError, match="`latent_distances` takes latents"):
        metrics.frame_distances(frames, "latent_l2")
    with pytest.raises(ValueError, match="one latent per frame"):
        metrics.evaluate_frames(frames, latents=np.zeros((3, 2, 2, 4)), metrics=["l2"])
    with pytest.raises(ValueError, match="finite"):
        metrics.latent_distances(np.full((2, 2, 2, 4), np.inf))
    with pytest.raises(ValueError, match="metrics"):
        metrics.evaluate_frames(frames, metrics=["lpips"])
    with pytest.raises(ValueError, match="non-empty"):
        metrics.gini([])
    with pytest.raises(ValueError, match=">= 0"):
        metrics.smoothness([0.1, -0.1])
