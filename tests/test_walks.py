"""Walks and streamed rendering on the `tiny` preset."""

import tracemalloc

import numpy as np
import pytest

from kerasmorph import export, walks


def test_two_prompt_walk_is_tf_linspace_with_fixed_noise(tiny_explorer):
    import tensorflow as tf

    walk = walks.prompt_walk(tiny_explorer, ["a red circle", "a blue square"], 5, seed=3)
    encodings, noise = walk.inputs(range(5))
    a, b = tiny_explorer.encode_text(["a red circle", "a blue square"])
    np.testing.assert_array_equal(encodings[0], a)
    np.testing.assert_array_equal(encodings[-1], b)
    np.testing.assert_allclose(encodings, tf.linspace(a, b, 5).numpy(), rtol=1e-6, atol=1e-6)
    for frame_noise in noise:
        np.testing.assert_array_equal(frame_noise, tiny_explorer.noise(1, 3)[0])
    np.testing.assert_array_equal(walk.positions, np.linspace(0, 1, 5))


def test_many_prompts_split_frames_without_repeating_joins(tiny_explorer):
    prompts = ["a red circle", "a blue square", "a green triangle"]
    walk = walks.prompt_walk(tiny_explorer, prompts, 10, schedule="sinh")
    encodings, _ = walk.inputs(np.arange(10))
    keyframes = tiny_explorer.encode_text(prompts)
    # 9 steps over 2 segments: 5 + 4 frames, then the final keyframe.
    np.testing.assert_array_equal(encodings[0], keyframes[0])
    np.testing.assert_array_equal(encodings[5], keyframes[1])
    np.testing.assert_array_equal(encodings[9], keyframes[2])
    assert all(not np.array_equal(encodings[i], encodings[i + 1]) for i in range(9))
    assert np.all(np.diff(walk.positions) > 0)
    with pytest.raises(ValueError, match="need at least 3 frames"):
        walks.prompt_walk(tiny_explorer, prompts, 2)
    with pytest.raises(ValueError, match="at least 2 prompts"):
        walks.prompt_walk(tiny_explorer, ["one"], 5)


@pytest.mark.parametrize("vary_noise", [False, True])
def test_grid_walk_corners_and_noise(tiny_explorer, vary_noise):
    prompts = ["a", "b", "c", "d"]
    walk = walks.grid_walk(tiny_explorer, prompts, 3, seed=1, vary_noise=vary_noise)
    encodings, noise = walk.inputs(np.arange(9))
    corners = tiny_explorer.encode_text(prompts)
    for corner, index in zip(corners, (0, 2, 6, 8)):
        np.testing.assert_array_equal(encodings[index], corner)
    assert np.array_equal(noise[0], noise[8]) is not vary_noise
    if vary_noise:
        np.testing.assert_array_equal(noise, tiny_explorer.noise(9, 1))
    with pytest.raises(ValueError, match="exactly 4 prompts"):
        walks.grid_walk(tiny_explorer, prompts[:3], 3)


def test_delta_walk_steps(tiny_explorer):
    walk = walks.delta_walk(tiny_explorer, "a red circle", 6)
    encodings, noise = walk.inputs([0, 5])
    base = tiny_explorer.encode_text("a red circle")[0]
    np.testing.assert_array_equal(encodings[0], base)
    np.testing.assert_allclose(encodings[1] - base, 5 * 0.005, atol=1e-6)
    np.testing.assert_array_equal(noise[0], noise[1])
    with pytest.raises(ValueError, match="not both"):
        walks.delta_walk(tiny_explorer, "x", 6, step_size=0.1, norm=1.0)


def test_noise_loop_walk_closes_and_keeps_unit_variance():
    import kerasmorph

    explorer = kerasmorph.Explorer("tiny", img_height=512, img_width=512, verbose=False)
    walk = walks.noise_loop_walk(explorer, "x", 8, seed=2)
    encodings, noise = walk.inputs(np.arange(8))
    x, y = explorer.noise(2, 2)
    np.testing.assert_array_equal(noise[0], x)
    np.testing.assert_allclose(noise[2], y, atol=1e-6)  # A quarter turn.
    for frame in noise:
        assert abs(frame.std() - 1) < 0.02
    # The step from the last frame back to the first equals every other step.
    steps = [np.linalg.norm(noise[(i + 1) % 8] - noise[i]) for i in range(8)]
    np.testing.assert_allclose(steps, np.mean(steps), rtol=0.02)
    np.testing.assert_array_equal(encodings[0], encodings[7])


def test_seed_walk_endpoints_and_variance():
    import kerasmorph

    explorer = kerasmorph.Explorer("tiny", img_height=512, img_width=512, verbose=False)
    walk = walks.seed_walk(explorer, "x", [1, 2], 7)
    _, noise = walk.inputs(np.arange(7))
    np.testing.assert_array_equal(noise[0], explorer.noise(1, 1)[0])
    np.testing.assert_array_equal(noise[-1], explorer.noise(1, 2)[0])
    for frame in noise:
        assert abs(frame.std() - 1) < 0.02
    lerped = 0.5 * noise[0] + 0.5 * noise[-1]
    assert abs(lerped.std() - 1) > 0.2  # What the library avoids.


def test_keyframes_inherit_missing_prompt_or_seed(tiny_explorer):
    keyframes = [
        walks.Keyframe("a red circle", 1),
        walks.Keyframe(seed=2),
        walks.Keyframe("a blue square"),
    ]
    walk = walks.keyframe_walk(tiny_explorer, keyframes, 4, mode="alternate")
    encodings, noise = walk.inputs(np.arange(walk.num_frames))
    assert walk.num_frames == 9
    red = tiny_explorer.encode_text("a red circle")[0]
    np.testing.assert_allclose(encodings[4], red, atol=1e-5)  # Keyframe 1 keeps the prompt.
    np.testing.assert_array_equal(noise[4], tiny_explorer.noise(1, 2)[0])
    np.testing.assert_array_equal(noise[-1], tiny_explorer.noise(1, 2)[0])
    with pytest.raises(ValueError, match="first keyframe needs a prompt"):
        walks.keyframe_walk(tiny_explorer, [walks.Keyframe(seed=1), walks.Keyframe("x")], 2)


def test_render_streams_batch_by_batch(tiny_explorer):
    base = walks.prompt_walk(tiny_explorer, ["a", "b"], 5)
    requested = []

    def recording(indices):
        requested.append(indices.tolist())
        return base.compute(indices)

    walk = walks.Walk(5, recording, base.positions)
    frames = tiny_explorer.render(walk, num_steps=1, batch_size=2)
    first = next(frames)
    assert first.shape == (128, 128, 3) and first.dtype == np.uint8
    assert requested == [[0, 1]]  # Only the first batch's inputs so far.
    rest = list(frames)
    assert len(rest) == 4 and requested == [[0, 1], [2, 3], [4]]


def test_render_same_frames_whatever_the_batch_size(tiny_explorer):
    walk = walks.prompt_walk(tiny_explorer, ["a red circle", "a blue square"], 5)
    renders = {
        size: np.stack(list(tiny_explorer.render(walk, num_steps=2, batch_size=size)))
        for size in (1, 2, 5)
    }
    for size in (1, 2):
        assert np.abs(renders[size].astype(int) - renders[5]).max() <= 1


def test_frames_are_written_as_soon_as_done(tiny_explorer, tmp_path):
    walk = walks.prompt_walk(tiny_explorer, ["a", "b"], 4)
    seen = []

    def watched(frames):
        for frame in frames:
            seen.append(len(list(tmp_path.glob("frame_*.png"))))
            yield frame

    paths = export.save_frames(
        tmp_path, watched(tiny_explorer.render(walk, num_steps=1, batch_size=2))
    )
    assert len(paths) == 4 and seen == [0, 1, 2, 3]


def _peak_traced_bytes(explorer, num_frames):
    walk = walks.delta_walk(explorer, "x", num_frames)
    explorer.generate_image(explorer.encode_text("x"), batch_size=4, num_steps=1, seed=0)
    tracemalloc.start()
    try:
        for _ in explorer.render(walk, num_steps=1, batch_size=4):
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_render_memory_does_not_grow_with_frames(tiny_explorer):
    # tracemalloc counts numpy's allocations, so frames or inputs accumulated
    # over the whole render would show here (each frame is 48 KiB).
    small = _peak_traced_bytes(tiny_explorer, 8)
    large = _peak_traced_bytes(tiny_explorer, 40)
    assert large <= 1.10 * small, (small, large)


def test_one_liners_return_frames(tiny_explorer):
    sampling = {"num_steps": 1, "batch_size": 4}
    assert walks.interpolate(tiny_explorer, ["a", "b"], 3, **sampling).shape == (3, 128, 128, 3)
    assert walks.morph_prompts(tiny_explorer, ["a", "b"], 3, **sampling).shape[0] == 3
    assert walks.grid(tiny_explorer, ["a", "b", "c", "d"], 2, **sampling).shape[0] == 4
    assert walks.walk(tiny_explorer, "a", 3, **sampling).shape[0] == 3
    assert walks.loop(tiny_explorer, "a", 3, **sampling).shape[0] == 3
    frames = walks.morph_seeds(tiny_explorer, "a", [1, 2], 3, **sampling)
    assert frames.dtype == np.uint8 and frames.shape[0] == 3
    assert not np.array_equal(frames[0], frames[-1])


def test_walk_rejects_bad_indices_and_arrays():
    with pytest.raises(ValueError, match="same F"):
        walks.Walk.from_arrays(np.zeros((2, 77, 8)), np.zeros((3, 4, 4, 4)))
    walk = walks.Walk.from_arrays(np.zeros((2, 77, 8)), np.zeros((2, 4, 4, 4)))
    with pytest.raises(ValueError, match=r"in \[0, 2\)"):
        walk.inputs([2])
    with pytest.raises(ValueError, match="Walk or a pair"):
        walks.as_walk([1, 2, 3])
