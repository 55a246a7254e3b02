"""The scheduler protocol and KerasCV DDIM: registry, numpy step = compiled update, noise."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from kerasmorph import schedulers
from kerasmorph.schedulers import ddim


def ddim_scheduler(num_steps, **config):
    scheduler = schedulers.get("ddim", **config)
    scheduler.set_timesteps(num_steps)
    return scheduler


def random_arrays(seed=0, shape=(2, 8, 8, 4)):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype("float32") for _ in range(2)]


# ------------------------------------------------------------------ registry
def test_unknown_scheduler_lists_the_valid_names():
    with pytest.raises(ValueError) as error:
        schedulers.get("x")
    valid = ", ".join(repr(name) for name in schedulers.SCHEDULERS)
    assert (
        str(error.value) == f"Unknown scheduler. Valid schedulers: {valid}. Received: scheduler='x'"
    )
    assert "'ddim', 'euler'" in valid and "'dpmpp_2m_karras'" in valid


def test_unknown_config_key_names_the_accepted_keys():
    with pytest.raises(ValueError) as error:
        schedulers.get("ddim", eta=0.5)
    message = str(error.value)
    assert "Accepted keys: 'alphas_cumprod', 'prediction_type'. Received: eta=0.5" in message
    assert "\n" not in message


def test_unknown_table_is_rejected():
    with pytest.raises(ValueError, match="Valid tables: 'kerascv', 'scaled_linear'"):
        schedulers.get("ddim", alphas_cumprod="linear")


def test_config_round_trips_through_json():
    scheduler = schedulers.get("ddim", alphas_cumprod="scaled_linear")
    config = json.loads(json.dumps(scheduler.config))
    rebuilt = schedulers.get(scheduler.name, **config)
    assert type(rebuilt) is schedulers.DDIMScheduler and rebuilt.config == scheduler.config
    assert rebuilt.trace_key() == schedulers.get("ddim").trace_key()  # One compiled step.
    assert schedulers.SCHEDULERS["ddim"] is schedulers.DDIMScheduler
    assert issubclass(schedulers.DDIMScheduler, schedulers.Scheduler)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_set_timesteps_rejects_bad_counts(bad):
    scheduler = schedulers.get("ddim")
    with pytest.raises(ValueError) as error:
        scheduler.set_timesteps(bad)
    assert str(error.value) == f"`num_steps` must be an integer >= 1. Received: num_steps={bad!r}"


def test_use_before_set_timesteps_and_bad_indices_are_errors():
    scheduler = schedulers.get("ddim")
    with pytest.raises(RuntimeError, match="set_timesteps"):
        scheduler.step_constants()
    scheduler.set_timesteps(3)
    sample, noise = random_arrays()
    with pytest.raises(
        ValueError, match=r"`index` must be an integer in \[0, 2\]. Received: index=3"
    ):
        scheduler.step(noise, 3, sample)
    with pytest.raises(ValueError, match=r"in \[0, 3\]. Received: index=4"):
        scheduler.add_noise(sample, noise, 4)


# ------------------------------------------------------------- DDIM numbers
@pytest.mark.parametrize("num_steps", [1, 4, 50])
def test_constants_are_kerascv_rows_in_visited_order(num_steps):
    scheduler = ddim_scheduler(num_steps)
    schedule = ddim.DDIMSchedule.create(num_steps)
    assert scheduler.num_steps == num_steps and scheduler.init_noise_sigma == 1.0
    assert scheduler.supports_inversion and scheduler.name == "ddim"
    np.testing.assert_array_equal(scheduler.timesteps, schedule.timesteps[::-1])
    constants = scheduler.step_constants()
    assert constants.dtype == np.float32 and constants.shape == (num_steps, 4)
    np.testing.assert_array_equal(constants, schedule.coefficients()[::-1])
    a_first = schedule.alphas[-1]  # The noisiest step is visited first.
    assert constants[0, 1] == np.float32(math.sqrt(a_first))
    assert tuple(constants[-1, 2:]) == (0.0, 1.0)  # The last step goes to ᾱ = 1.


@pytest.mark.parametrize("num_steps", [1, 3, 7])
def test_numpy_step_equals_the_compiled_update(num_steps):
    import tensorflow as tf

    scheduler = ddim_scheduler(num_steps)
    update = tf.function(scheduler.update)
    for index in range(num_steps):
        sample, eps = random_arrays(seed=index)
        expected = scheduler.step(eps, index, sample)
        row = tf.constant(scheduler.step_constants()[index])
        for function in (scheduler.update, update):  # Eager and traced.
            actual, state = function(tf.constant(sample), tf.constant(eps), row, ())
            np.testing.assert_array_equal(actual.numpy(), expected)
            assert state == ()
    assert scheduler.initial_state(tf.constant(sample)) == ()
    assert scheduler.model_input(sample, row) is sample


def test_last_step_returns_the_clean_estimate():
    scheduler = ddim_scheduler(5)
    sample, eps = random_arrays()
    a_t = ddim.kerascv_alphas_cumprod()[0]  # The last visited step is t = 0.
    assert scheduler.timesteps[-1] == 0
    pred_x0 = (sample - np.float32(math.sqrt(1 - a_t)) * eps) / np.float32(math.sqrt(a_t))
    np.testing.assert_array_equal(scheduler.step(eps, 4, sample), pred_x0)
    # Any other step keeps part of the noise prediction.
    assert not np.allclose(scheduler.step(eps, 3, sample), scheduler.step(eps, 3, sample + eps))


def test_add_noise_levels():
    scheduler = ddim_scheduler(10)
    original, noise = random_arrays()
    clean = scheduler.add_noise(original, noise, 10)
    np.testing.assert_array_equal(clean, original)
    assert clean is not original and clean.dtype == np.float32
    a_max = ddim.kerascv_alphas_cumprod()[999]
    expected = np.float32(math.sqrt(a_max)) * original + np.float32(math.sqrt(1 - a_max)) * noise
    np.testing.assert_array_equal(scheduler.add_noise(original, noise, 0), expected)
    assert scheduler.noise_scales(10) == (1.0, 0.0)


@pytest.mark.parametrize("num_denoise", [1, 3, 9])
def test_add_noise_is_the_img2img_start(num_denoise):
    """Bit-identical to the Explorer's img2img start before schedulers existed."""
    scheduler = ddim_scheduler(10)
    latents, noise = random_arrays()
    alpha = ddim.DDIMSchedule.create(10).alphas[num_denoise - 1]
    start = np.float32(np.sqrt(alpha)) * latents + np.float32(np.sqrt(1 - alpha)) * noise
    np.testing.assert_array_equal(scheduler.add_noise(latents, noise, 10 - num_denoise), start)


def test_noise_scales_after_each_step_are_the_old_keep_coefficients():
    scheduler = ddim_scheduler(6)
    coefficients = ddim.DDIMSchedule.create(6).coefficients()  # Ascending.
    for index in range(6):
        ascending = 5 - index
        signal, scale = scheduler.noise_scales(index + 1)
        assert (signal, scale) == (coefficients[ascending, 3], coefficients[ascending, 2])
        assert signal.dtype == scale.dtype == np.float32


def test_inversion_rows_undo_a_step():
    import tensorflow as tf

    scheduler = ddim_scheduler(4)
    sample, eps = random_arrays()
    forward, backward = scheduler.step_constants(), scheduler.inversion_constants()
    for index in range(3):  # The last step divides by sqrt(1 − 1) = 0 backwards.
        stepped, _ = scheduler.update(tf.constant(sample), tf.constant(eps), forward[index], ())
        undone, _ = scheduler.update(stepped, tf.constant(eps), backward[index], ())
        np.testing.assert_allclose(undone.numpy(), sample, rtol=1e-4, atol=1e-4)


def test_scaled_linear_table_is_close_to_kerascv():
    kerascv = ddim_scheduler(20).step_constants()
    scaled = ddim_scheduler(20, alphas_cumprod="scaled_linear").step_constants()
    np.testing.assert_allclose(scaled, kerascv, atol=1e-6)
    assert not np.array_equal(scaled, kerascv)


def test_schedulers_need_no_tensorflow():
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from kerasmorph import schedulers\n"
        "s = schedulers.get('ddim', alphas_cumprod='scaled_linear')\n"
        "s.set_timesteps(5)\n"
        "x = np.ones((1, 8, 8, 4), np.float32)\n"
        "s.step(x, 0, x); s.add_noise(x, x, 2)\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
        "assert 'keras_cv' not in sys.modules, 'keras_cv imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("num_steps", [1, 2, 7, 25, 50])
def test_timesteps_equal_diffusers_linspace_ddim(num_steps):
    """diffusers' DDIM with KerasCV's config visits the same timesteps (not the same steps)."""
    diffusers = pytest.importorskip("diffusers", reason="pip install 'kerasmorph[reference]'")
    reference = diffusers.DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        set_alpha_to_one=True,
        steps_offset=0,
        timestep_spacing="linspace",
    )
    reference.set_timesteps(num_steps)
    np.testing.assert_array_equal(ddim_scheduler(num_steps).timesteps, reference.timesteps.numpy())
    np.testing.assert_allclose(
        reference.alphas_cumprod.numpy(), ddim.kerascv_alphas_cumprod(), atol=1e-6
    )
