"""Smoother morphs (issue 15): the Beta schedule, AdaIN of noise, guidance along the
path, per-frame guidance in the Sampler, and attention interpolation in walks (`tiny`)."""

import numpy as np
import pytest

from kerasmorph import MorphOptions, noise_statistics, schedules, walks

PROMPTS = ["a red circle", "a blue square"]


# ------------------------------------------------------------------ beta schedule


def test_beta_schedule_is_symmetric_monotone_and_dense_in_the_middle():
    t = np.linspace(0, 1, 17)
    weights = schedules.beta(t)
    assert weights[0] == 0.0 and weights[-1] == 1.0 and weights[8] == 0.5
    np.testing.assert_allclose(weights + weights[::-1], 1.0, atol=1e-12)
    steps = np.diff(weights)
    assert np.all(steps > 0)
    # Beta(2, 2): CDF 3x² − 2x³, so F⁻¹(0.25) solves 3x² − 2x³ = 0.25.
    x = schedules.beta(0.25)
    assert abs(3 * x**2 - 2 * x**3 - 0.25) < 1e-6
    assert steps[7] < steps[0] / 3  # Frames crowd where the image flips.
    np.testing.assert_allclose(schedules.beta(t, a=1.0), t, atol=1e-9)
    np.testing.assert_array_equal(schedules.apply_schedule("beta", t), weights)


@pytest.mark.parametrize("a", [0.5, float("nan"), True, "2"])
def test_beta_schedule_refuses_bad_concentration(a):
    with pytest.raises(ValueError, match="`a` must be a finite number >= 1"):
        schedules.beta([0.5], a=a)


# --------------------------------------------------------------------- AdaIN


def test_adain_matches_lerped_channel_statistics_and_keeps_endpoints():
    rng = np.random.default_rng(0)
    start = rng.normal(0.5, 2.0, (8, 8, 4))
    end = rng.normal(-1.0, 0.5, (8, 8, 4))
    weights = np.array([0.0, 0.25, 0.5, 1.0])
    mixed = np.stack([(1 - w) * start + w * end for w in weights])
    corrected = noise_statistics.adain(mixed, start, end, weights)
    assert corrected.dtype == np.float32 and corrected.shape == mixed.shape
    np.testing.assert_array_equal(corrected[0], mixed[0].astype(np.float32))
    np.testing.assert_array_equal(corrected[3], mixed[3].astype(np.float32))
    for row, w in zip(corrected[1:3], weights[1:3]):
        target_mean = (1 - w) * start.mean((0, 1)) + w * end.mean((0, 1))
        target_std = (1 - w) * start.std((0, 1)) + w * end.std((0, 1))
        np.testing.assert_allclose(row.mean((0, 1)), target_mean, atol=1e-5)
        np.testing.assert_allclose(row.std((0, 1)), target_std, rtol=1e-5)
    # A lerp of independent standard normals shrinks the std to ~0.71; AdaIN restores 1.
    z0, z1 = rng.standard_normal((2, 32, 32, 4))
    restored = noise_statistics.adain((z0 + z1) / 2, z0, z1, 0.5)
    assert ((z0 + z1) / 2).std() < 0.75 < 0.95 < restored.std()


@pytest.mark.parametrize(
    "mixed, t, match",
    [
        (np.zeros((2, 8, 8, 4)), [0.5], "one weight per row"),
        (np.zeros((8, 8, 3)), 0.5, "the same size"),
        (np.full((8, 8, 4), np.nan), 0.5, "finite noises"),
        (np.zeros((8, 8, 4)), 1.5, r"in \[0, 1\]"),
    ],
)
def test_adain_refuses_bad_input(mixed, t, match):
    start = end = np.ones((8, 8, 4))
    with pytest.raises(ValueError, match=match):
        noise_statistics.adain(
            mixed, start, end, t if match != "one weight per row" else [0.1, 0.2, 0.3]
        )


# ------------------------------------------------------------- MorphOptions


def test_morph_options_validate_and_record_only_what_differs():
    assert MorphOptions().to_json() == {}
    options = MorphOptions("attention", "adain", 3.0)
    assert options.to_json() == {
        "text_interpolation": "attention",
        "noise_statistics": "adain",
        "middle_guidance_scale": 3.0,
    }
    with pytest.raises(ValueError, match="`text_interpolation` must be one of 'embedding', "):
        MorphOptions("cross")
    with pytest.raises(ValueError, match="`noise_statistics` must be None or 'adain'"):
        MorphOptions(noise_statistics="whiten")
    with pytest.raises(ValueError, match="`middle_guidance_scale` must be None or a finite"):
        MorphOptions(middle_guidance_scale=float("inf"))


def test_middle_guidance_is_a_tent_that_keeps_the_keyframes(tiny_explorer):
    walk = walks.prompt_walk(tiny_explorer, PROMPTS, 5, middle_guidance_scale=1.5)
    np.testing.assert_allclose(walk.guidance_at(np.arange(5), 7.5), [7.5, 4.5, 1.5, 4.5, 7.5])
    assert walk.subset([2, 4]).guidance_at(np.arange(2), 7.5).tolist() == [1.5, 7.5]
    plain = walks.prompt_walk(tiny_explorer, PROMPTS, 5)
    assert plain.guidance_at(np.arange(5), 7.5) == 7.5


# ------------------------------------------------------ rendering on `tiny`


def _render(explorer, walk, **kwargs):
    kwargs = {"num_steps": 3, "batch_size": 3, **kwargs}
    return np.stack(list(explorer.render(walk, **kwargs)))


def test_per_frame_guidance_equals_each_frame_rendered_at_its_scale(tiny_explorer):
    walk = walks.prompt_walk(tiny_explorer, PROMPTS, 5, seed=2, middle_guidance_scale=1.0)
    frames = _render(tiny_explorer, walk, unconditional_guidance_scale=7.0)
    plain = walks.prompt_walk(tiny_explorer, PROMPTS, 5, seed=2)
    for index, scale in [(0, 7.0), (1, 4.0), (2, 1.0), (4, 7.0)]:
        alone = _render(tiny_explorer, plain.subset([index]), unconditional_guidance_scale=scale)
        np.testing.assert_allclose(frames[index], alone[0], atol=1)
    assert np.abs(frames[2].astype(int) - _render(tiny_explorer, plain.subset([2]))[0]).max() > 4


def test_attention_interpolation_keeps_endpoints_and_changes_the_middle(tiny_explorer):
    attention = walks.prompt_walk(tiny_explorer, PROMPTS, 5, seed=1, text_interpolation="attention")
    embedding = walks.prompt_walk(tiny_explorer, PROMPTS, 5, seed=1)
    assert attention.text_interpolation == "attention"
    encodings, noise = attention.inputs(np.arange(5))
    assert encodings.shape == (5, 2 * 77 + 1, tiny_explorer.encoding_dim)
    np.testing.assert_array_equal(noise, embedding.inputs(np.arange(5))[1])
    frames = _render(tiny_explorer, attention, unconditional_guidance_scale=5.0)
    plain = _render(tiny_explorer, embedding, unconditional_guidance_scale=5.0)
    np.testing.assert_allclose(frames[[0, 4]], plain[[0, 4]], atol=1)
    assert np.abs(frames[2].astype(int) - plain[2]).max() > 2


def test_adain_seed_walk_keeps_endpoints_and_corrects_the_middle(tiny_explorer):
    walk = walks.seed_walk(
        tiny_explorer, "a red circle", [1, 2], 5, noise_method="slerp", noise_statistics="adain"
    )
    plain = walks.seed_walk(tiny_explorer, "a red circle", [1, 2], 5, noise_method="slerp")
    _, noise = walk.inputs(np.arange(5))
    _, plain_noise = plain.inputs(np.arange(5))
    np.testing.assert_array_equal(noise[[0, 4]], plain_noise[[0, 4]])
    a, b = tiny_explorer.noise(1, 1)[0], tiny_explorer.noise(1, 2)[0]
    target = 0.5 * a.std((0, 1)) + 0.5 * b.std((0, 1))
    np.testing.assert_allclose(noise[2].std((0, 1)), target, rtol=1e-4)
    assert not np.allclose(noise[2], plain_noise[2])


# ----------------------------------------------------------- prompt switching


def test_switch_weights_go_from_the_first_prompt_to_the_second():
    from kerasmorph.morph_options import switch_weights

    alpha = np.linspace(0, 1, 9)
    for width in (0.0, 0.3, 1.0):
        weights = switch_weights(alpha, 20, width)
        assert weights.shape == (9, 20)
        assert np.all(weights[0] == 0) and np.all(weights[-1] == 1)
        assert np.all(np.diff(weights, axis=0) >= 0)  # A larger α switches earlier.
        assert np.all(np.diff(weights, axis=1) >= 0)  # The second prompt comes later.
    hard = switch_weights(np.array([0.25]), 8, 0.0)[0]
    assert hard.tolist() == [0, 0, 0, 0, 0, 0, 1, 1]
    with pytest.raises(ValueError, match=r"`switch_width` must be in \[0, 1\]"):
        MorphOptions("switch", switch_width=1.5)
    with pytest.raises(ValueError, match="shapes text_interpolation='switch' only"):
        MorphOptions("attention", switch_width=0.1)


def test_step_encodings_replace_the_encodings_at_every_call(tiny_explorer):
    first, second = tiny_explorer.encode_text(PROMPTS)
    noise = tiny_explorer.noise(1, 4)
    from kerasmorph.explorer.walk import Walk

    def walk_of(step_encodings):
        return Walk(
            1, lambda indices: (second[None], noise), np.zeros(1), step_encodings=step_encodings
        )

    alone = _render(tiny_explorer, Walk.from_arrays(first[None], noise))
    always_first = _render(tiny_explorer, walk_of(lambda indices, call, calls: first[None]))
    np.testing.assert_array_equal(always_first, alone)
    seen = []

    def last_call_first(indices, call, num_calls):
        seen.append((call, num_calls))
        return (first if call == num_calls - 1 else second)[None]

    switched = _render(tiny_explorer, walk_of(last_call_first))
    plain_second = _render(tiny_explorer, Walk.from_arrays(second[None], noise))
    assert seen == [(0, 3), (1, 3), (2, 3)]
    assert np.abs(switched.astype(int) - alone).max() > 0
    assert np.abs(switched.astype(int) - plain_second).max() > 0


def test_switch_walk_keeps_its_endpoints(tiny_explorer):
    switch = walks.prompt_walk(tiny_explorer, PROMPTS, 5, seed=1, text_interpolation="switch")
    plain = walks.prompt_walk(tiny_explorer, PROMPTS, 5, seed=1)
    frames, plain_frames = _render(tiny_explorer, switch), _render(tiny_explorer, plain)
    np.testing.assert_array_equal(frames[[0, 4]], plain_frames[[0, 4]])
    assert np.abs(frames[2].astype(int) - plain_frames[2]).max() > 2


# ------------------------------------------------------------------ respacing


def test_respace_puts_the_frames_where_the_path_changes(tiny_explorer):
    from kerasmorph import adaptive, interpolation

    first, second = tiny_explorer.encode_text(PROMPTS)
    noise = tiny_explorer.noise(1, 0)

    def path(positions):  # Nothing happens in the first half.
        weights = np.clip(2 * np.asarray(positions) - 1, 0, 1)
        return interpolation.lerp(first, second, weights), np.repeat(noise, len(weights), 0)

    result = adaptive.respace(
        tiny_explorer, path, num_frames=5, probe_frames=9, num_steps=2, batch_size=3
    )
    assert result.positions[0] == 0 and result.positions[-1] == 1
    assert np.all(np.diff(result.positions) > 0)
    assert np.all(result.positions[1:-1] > 0.5)  # Even spacing would put two below.
    assert len(result.changes_before) == 8 and len(result.changes_after) == 4
    again = adaptive.render_positions(
        tiny_explorer, path, result.positions, num_steps=2, batch_size=3
    )
    np.testing.assert_array_equal(again, result.frames)
