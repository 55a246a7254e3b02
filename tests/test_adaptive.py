"""Adaptive frame spacing on `tiny`."""

import numpy as np
import pytest
from PIL import Image

from kerasmorph import adaptive, cli, metrics

# One Session per file, as a notebook keeps one: the model is built once and reused.
_SESSION = cli.Session()


def main(argv, session=_SESSION):
    return cli.main(argv, session=session)


@pytest.fixture(scope="module")
def path(tiny_explorer):
    encodings = tiny_explorer.encode_text(["a red circle", "a blue square", "a cat"])
    noises = np.repeat(tiny_explorer.noise(1, 0), 3, axis=0)
    return adaptive.keyframe_path(encodings, noises)


def test_path_hits_keyframes(tiny_explorer, path):
    encodings, _ = path(np.array([0.0, 0.5, 1.0]))
    keyframes = tiny_explorer.encode_text(["a red circle", "a blue square", "a cat"])
    np.testing.assert_array_equal(encodings, keyframes)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        path(np.array([1.5]))


def test_path_step_noise_mixes_the_keyframes_per_step_noise(tiny_explorer):
    from kerasmorph.explorer.walk import derived_noise

    encodings = tiny_explorer.encode_text(["a red circle", "a blue square"])
    noises = tiny_explorer.noise(2, 0)
    path = adaptive.keyframe_path(encodings, noises)
    step = path.step_noise(np.array([0.0, 0.5, 1.0]), 4)
    np.testing.assert_allclose(step[[0, 2]], derived_noise(noises, 4), atol=1e-6)
    # The midpoint is the slerp of the keyframes' per-step noise, as its starting noise is
    # the slerp of theirs; its own derived noise would be unrelated to both.
    middle = path(np.array([0.5]))[1]
    assert np.corrcoef(step[1].ravel(), derived_noise(noises, 4)[0].ravel())[0, 1] > 0.5
    assert abs(np.corrcoef(derived_noise(middle, 4)[0].ravel(), step[1].ravel())[0, 1]) < 0.05


def refine(explorer, path, **kwargs):
    settings = dict(threshold=0.01, max_frames=11, initial_frames=5, num_steps=2, batch_size=2)
    settings.update(kwargs)
    return adaptive.refine(explorer, path, **settings)


def test_refinement_lowers_the_largest_change_within_budget(tiny_explorer, path):
    result = refine(tiny_explorer, path)
    assert len(result.frames) == len(result.positions) <= 11
    assert np.all(np.diff(result.positions) > 0)
    assert result.positions[0] == 0 and result.positions[-1] == 1
    assert result.changes_after.max() <= result.changes_before.max()
    assert len(result.frames) > 5  # It did refine: the threshold is below the changes.
    # Frames stay where they are: the uniform grid is a subset of the result.
    grid = np.linspace(0, 1, 5)
    assert np.isin(grid, result.positions).all()
    again = refine(tiny_explorer, path)
    np.testing.assert_array_equal(again.positions, result.positions)
    np.testing.assert_array_equal(again.frames, result.frames)


def test_a_loose_threshold_adds_nothing(tiny_explorer, path):
    result = refine(tiny_explorer, path, threshold=1.0)
    assert len(result.frames) == 5


def test_metrics_and_plot(tiny_explorer, path):
    frames = refine(tiny_explorer, path, max_frames=5).frames
    mad, ssim = adaptive.frame_changes(frames, "mad"), adaptive.frame_changes(frames, "ssim")
    assert mad.shape == ssim.shape == (4,)
    by_hand = [
        np.abs(b.astype(float) - a.astype(float)).mean() / 255 for a, b in zip(frames, frames[1:])
    ]
    np.testing.assert_allclose(mad, by_hand, rtol=1e-6)
    # Known answers: black to white is the largest change; a frame to itself is none.
    black, white = np.zeros((1, 32, 32, 3), np.uint8), np.full((1, 32, 32, 3), 255, np.uint8)
    np.testing.assert_allclose(adaptive.frame_changes(np.concatenate([black, white]), "mad"), [1.0])
    same = np.stack([frames[0], frames[0]])
    assert adaptive.frame_changes(same, "mad")[0] == 0
    np.testing.assert_allclose(adaptive.frame_changes(same, "ssim"), [0.0], atol=1e-6)
    assert (ssim[mad > 0] > 0).all()
    with pytest.raises(ValueError, match="metric"):
        adaptive.frame_changes(frames, "lpips")
    figure = adaptive.plot_changes(refine(tiny_explorer, path, max_frames=6))
    assert len(figure.axes[0].lines) == 2


@pytest.mark.parametrize("metric", ["l2", "ssim"])
def test_refinement_by_any_frame_distance_measures_only_new_pairs(tiny_explorer, path, metric):
    result = refine(tiny_explorer, path, metric=metric, threshold=1e-6, max_frames=8)
    assert len(result.frames) == 8
    # The changes kept from earlier rounds and those measured for new pairs are the
    # changes of the final frames measured afresh.
    expected = metrics.frame_distances(result.frames, metric)
    np.testing.assert_allclose(result.changes_after, expected, rtol=1e-12)
    np.testing.assert_allclose(
        result.changes_before,
        metrics.frame_distances(
            result.frames[np.isin(result.positions, np.linspace(0, 1, 5))], metric
        ),
        rtol=1e-12,
    )


def test_refinement_by_latent_distance(tiny_explorer, path):
    result = refine(tiny_explorer, path, metric="latent_l2", threshold=1e-6, max_frames=7)
    assert len(result.frames) == 7
    latents = tiny_explorer.encode_image(result.frames)
    np.testing.assert_allclose(
        result.changes_after, metrics.latent_distances(latents), rtol=1e-5, atol=1e-7
    )
    with pytest.raises(ValueError, match="'l2', 'mad', 'ssim', 'latent_l2'"):
        refine(tiny_explorer, path, metric="lpips")


def test_cli_adaptive(tmp_path, capsys):
    out = tmp_path / "adaptive.gif"
    args = [
        "interpolate",
        "a red circle",
        "a blue square",
        "--frames",
        "3",
        "--adaptive",
        "0.00001",
        "--max-frames",
        "6",
        "--out",
        str(out),
        "--model",
        "tiny",
        "--no-jit",
        "--quiet",
        "--steps",
        "1",
    ]
    assert main(args) == 0
    with Image.open(out) as image:
        assert image.n_frames == 6
    assert (tmp_path / "adaptive.changes.png").is_file()
    assert "6 frames" in capsys.readouterr().out
