"""The DDIM schedule reproduces KerasCV's constants exactly."""

import math

import numpy as np
import pytest

from kerasmorph import sampler


def kerascv_timesteps(num_steps):
    # The expression in keras_cv StableDiffusionBase.generate_image.
    ratio = (1000 - 1) / (num_steps - 1) if num_steps > 1 else 1000
    return (np.arange(0, num_steps) * ratio).round().astype(np.int64)


@pytest.mark.parametrize("num_steps", [1, 2, 3, 5, 25, 50, 1000])
def test_timesteps_match_kerascv(num_steps):
    timesteps = sampler.ddim_timesteps(num_steps)
    np.testing.assert_array_equal(timesteps, kerascv_timesteps(num_steps))
    assert timesteps[-1] == (999 if num_steps > 1 else 0)
    assert np.all(np.diff(timesteps) > 0)


@pytest.mark.parametrize("bad", [0, -3, 2.5, "5"])
def test_timesteps_reject_bad_counts(bad):
    with pytest.raises(ValueError, match="num_steps"):
        sampler.ddim_timesteps(bad)


def test_scaled_linear_betas_reproduce_kerascv_table():
    table = sampler.kerascv_alphas_cumprod()
    computed = sampler.scaled_linear_alphas_cumprod()
    assert table.shape == (1000,)
    np.testing.assert_allclose(computed, table, atol=1e-7)


def test_schedule_alphas_and_coefficients():
    schedule = sampler.DDIMSchedule.create(4)
    table = sampler.kerascv_alphas_cumprod()
    np.testing.assert_array_equal(schedule.alphas, table[schedule.timesteps])
    assert schedule.alphas_prev[0] == 1.0
    np.testing.assert_array_equal(schedule.alphas_prev[1:], schedule.alphas[:-1])
    coefficients = schedule.coefficients()
    assert coefficients.dtype == np.float32 and coefficients.shape == (4, 4)
    a_t = schedule.alphas[2]
    assert coefficients[2, 0] == np.float32(math.sqrt(1 - a_t))
    assert coefficients[2, 1] == np.float32(math.sqrt(a_t))
    # The last update (index 0) returns pred_x0: sqrt(ᾱ_prev) = 1, sqrt(1-ᾱ_prev) = 0.
    assert coefficients[0, 2] == 0.0 and coefficients[0, 3] == 1.0


def test_timestep_embedding_matches_kerascv():
    import contextlib
    import io

    import keras_cv

    with contextlib.redirect_stdout(io.StringIO()):
        model = keras_cv.models.StableDiffusion(128, 128, jit_compile=False)
    timesteps = np.array([0, 499, 999])
    ours = sampler.timestep_embeddings(timesteps)
    for row, timestep in zip(ours, timesteps):
        reference = np.asarray(model._get_timestep_embedding(int(timestep), 1))[0]
        np.testing.assert_array_equal(row, reference)
