"""The guided loop: KerasCV DDIM constants, one trace, img2img, inpainting, inversion, replicas."""

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from kerasmorph import sampler, schedulers
from kerasmorph.schedulers import ddim

HEIGHT, WIDTH, TEXT_DIM = 8, 8, 16  # Latent side 8: 64x64 images.


def kerascv_timesteps(num_steps):
    # The expression in keras_cv StableDiffusionBase.generate_image.
    ratio = (1000 - 1) / (num_steps - 1) if num_steps > 1 else 1000
    return (np.arange(0, num_steps) * ratio).round().astype(np.int64)


def build_unet(seed=0):
    """A small real Keras UNet stand-in with KerasCV's inputs: conv + time + context."""
    import keras

    latent = keras.Input((HEIGHT, WIDTH, 4), name="latent")
    embedding = keras.Input((320,), name="timestep_embedding")
    context = keras.Input((77, TEXT_DIM), name="context")
    time = keras.layers.Reshape((1, 1, 8))(keras.layers.Dense(8)(embedding))
    pooled = keras.layers.GlobalAveragePooling1D()(context)
    text = keras.layers.Reshape((1, 1, 8))(keras.layers.Dense(8)(pooled))
    x = keras.layers.Conv2D(8, 3, padding="same")(latent)
    x = keras.layers.Activation("swish")(x + time + text)
    output = keras.layers.Conv2D(4, 3, padding="same")(x)
    model = keras.Model([latent, embedding, context], output)
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(rng.uniform(-0.1, 0.1, tuple(variable.shape)).astype("float32"))
    return model


def inputs(batch_size=2, seed=0):
    """(noise, context, unconditional_context, original, mask) for a batch."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((batch_size, HEIGHT, WIDTH, 4)).astype("float32")
    context = rng.standard_normal((batch_size, 77, TEXT_DIM)).astype("float32")
    unconditional = rng.standard_normal((batch_size, 77, TEXT_DIM)).astype("float32")
    original = rng.standard_normal((batch_size, HEIGHT, WIDTH, 4)).astype("float32")
    mask = (rng.random((batch_size, HEIGHT, WIDTH, 1)) > 0.5).astype("float32")
    return noise, context, unconditional, original, mask


def kerascv_loop(unet, latent, context, unconditional, num_steps, guidance, skip=0, keep=None):
    """KerasCV's generate_image loop, written out: two UNet calls, Python-float DDIM."""
    schedule = ddim.DDIMSchedule.create(num_steps)
    embeddings = sampler.timestep_embeddings(schedule.timesteps)
    for index in range(num_steps - 1 - skip, -1, -1):
        embedding = np.repeat(embeddings[index][None], len(latent), axis=0)
        eps_u = np.asarray(unet([latent, embedding, unconditional]))
        eps_c = np.asarray(unet([latent, embedding, context]))
        eps = eps_u + guidance * (eps_c - eps_u)
        a_t, a_prev = schedule.alphas[index], schedule.alphas_prev[index]
        pred_x0 = (latent - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        latent = eps * math.sqrt(1.0 - a_prev) + math.sqrt(a_prev) * pred_x0
        if keep is not None:
            mask, original, noise = keep
            noised = math.sqrt(a_prev) * original + math.sqrt(1.0 - a_prev) * noise
            latent = mask * latent + (1.0 - mask) * noised
    return latent


def assert_close(actual, expected, tolerance=1e-5):
    """Relative L2 error: one fused UNet call on [uncond; cond] is not bit-equal to two."""
    assert actual.dtype == np.float32 and actual.shape == expected.shape
    assert np.linalg.norm(actual - expected) / np.linalg.norm(expected) < tolerance


def ddim_scheduler(num_steps):
    scheduler = schedulers.get("ddim")
    scheduler.set_timesteps(num_steps)
    return scheduler


@pytest.fixture(scope="module")
def unet():
    return build_unet()


# ------------------------------------------------------------ KerasCV constants
@pytest.mark.parametrize("num_steps", [1, 2, 3, 5, 25, 50, 1000])
def test_timesteps_match_kerascv(num_steps):
    timesteps = ddim.ddim_timesteps(num_steps)
    np.testing.assert_array_equal(timesteps, kerascv_timesteps(num_steps))
    assert timesteps[-1] == (999 if num_steps > 1 else 0)
    assert np.all(np.diff(timesteps) > 0)
    # The scheduler lists them in the order the loop visits them: noisiest first.
    np.testing.assert_array_equal(ddim_scheduler(num_steps).timesteps, timesteps[::-1])


@pytest.mark.parametrize("bad", [0, -3, 2.5, "5"])
def test_timesteps_reject_bad_counts(bad):
    with pytest.raises(ValueError, match="num_steps"):
        ddim.ddim_timesteps(bad)


def test_scaled_linear_betas_reproduce_kerascv_table():
    table = ddim.kerascv_alphas_cumprod()
    computed = ddim.scaled_linear_alphas_cumprod()
    assert table.shape == (1000,)
    np.testing.assert_allclose(computed, table, atol=1e-7)


def test_schedule_alphas_and_coefficients():
    schedule = ddim.DDIMSchedule.create(4)
    table = ddim.kerascv_alphas_cumprod()
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
    # The scheduler's rows are the same float32 values in visited order.
    np.testing.assert_array_equal(ddim_scheduler(4).step_constants(), coefficients[::-1])


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


# ------------------------------------------------------------------ the loop
def test_sample_follows_kerascv_loop_and_traces_once(unet):
    noise, context, unconditional, _, _ = inputs()
    runner = sampler.Sampler(unet)
    for num_steps in (1, 3, 4):
        # A new scheduler object per call, as the Explorer makes: no retrace.
        latent = runner.sample(noise, context, unconditional, ddim_scheduler(num_steps), 7.5)
        reference = kerascv_loop(unet, noise, context, unconditional, num_steps, 7.5)
        assert_close(latent, reference)
    assert runner.num_traces == 1
    assert runner.num_steps_run == 1 + 3 + 4


def test_start_index_skips_the_noisiest_steps(unet):
    noise, context, unconditional, original, _ = inputs()
    scheduler = ddim_scheduler(5)
    start = scheduler.add_noise(original, noise, 2)
    calls = []
    runner = sampler.Sampler(unet)
    latent = runner.sample(
        start,
        context,
        unconditional,
        scheduler,
        5.0,
        start_index=2,
        on_step=lambda: calls.append(1),
    )
    reference = kerascv_loop(unet, start, context, unconditional, 5, 5.0, skip=2)
    assert_close(latent, reference)
    assert len(calls) == runner.num_steps_run == 3


def test_keep_blends_the_kept_region_to_each_level(unet):
    noise, context, unconditional, original, mask = inputs()
    keep = (mask, original, noise)
    latent = sampler.Sampler(unet).sample(
        noise, context, unconditional, ddim_scheduler(4), 7.5, keep=keep
    )
    reference = kerascv_loop(unet, noise, context, unconditional, 4, 7.5, keep=keep)
    assert_close(latent, reference)
    kept = np.broadcast_to(mask == 0, latent.shape)
    np.testing.assert_array_equal(latent[kept], original[kept])  # Exactly, after the last step.
    assert not np.allclose(latent[~kept], original[~kept])


def test_inversion_refinements_reconstruct(unet):
    _, context, unconditional, original, _ = inputs()
    runner = sampler.Sampler(unet)
    errors = []
    for num_refinements in (0, 3):
        inverted = runner.invert(
            original,
            context,
            unconditional,
            ddim_scheduler(6),
            1.0,
            num_refinements=num_refinements,
        )
        regenerated = runner.sample(inverted, context, unconditional, ddim_scheduler(6), 1.0)
        errors.append(np.linalg.norm(regenerated - original) / np.linalg.norm(original))
    assert errors[1] < 1e-3 < errors[0] / 10
    assert runner.num_traces == 1
    assert runner.num_steps_run == 6 + 6 + 6 * 4 + 6


def test_one_replica_strategy_is_bit_identical(unet):
    import tensorflow as tf

    noise, context, unconditional, original, mask = inputs()
    single = sampler.Sampler(unet)
    mirrored = sampler.Sampler(unet, strategy=tf.distribute.MirroredStrategy(["/cpu:0"]))
    results = {}
    for name, runner in (("single", single), ("mirrored", mirrored)):
        results[name] = [
            runner.sample(noise, context, unconditional, ddim_scheduler(3), 7.5),
            runner.sample(
                noise, context, unconditional, ddim_scheduler(3), 7.5, keep=(mask, original, noise)
            ),
            runner.invert(
                original, context, unconditional, ddim_scheduler(3), 1.0, num_refinements=1
            ),
        ]
    for ours, reference in zip(results["mirrored"], results["single"]):
        np.testing.assert_array_equal(ours, reference)
    assert mirrored.num_traces == 1


TWO_REPLICAS = textwrap.dedent(
    """
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import test_sampler as t
    from kerasmorph import sampler
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    unet = t.build_unet()
    noise, context, unconditional, original, mask = t.inputs(batch_size=4)
    single, mirrored = sampler.Sampler(unet), sampler.Sampler(unet, strategy=strategy)
    keep = (mask, original, noise)
    results = {}
    for name, runner in (("single", single), ("mirrored", mirrored)):
        results[name] = [
            runner.sample(noise, context, unconditional, t.ddim_scheduler(3), 7.5, keep=keep),
            runner.invert(original, context, unconditional, t.ddim_scheduler(3), 1.0,
                          num_refinements=1),
        ]
    for ours, reference in zip(results["mirrored"], results["single"]):
        print("max difference", np.abs(ours - reference).max())
        np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-6)
    try:
        mirrored.sample(noise[:3], context[:3], unconditional[:3], t.ddim_scheduler(3), 7.5)
    except ValueError as error:
        print("ERROR", error)
    print("OK")
    """
)


def test_two_replicas_give_the_frames_of_one_device():
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
    result = subprocess.run(
        [sys.executable, "-c", TWO_REPLICAS],
        cwd=os.path.dirname(__file__),
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK" in result.stdout
    assert "The batch of 3 rows does not split evenly over 2 replicas" in result.stdout


# -------------------------------------------------------------------- errors
def test_errors_name_what_was_received(unet):
    noise, context, unconditional, _, _ = inputs()
    runner = sampler.Sampler(unet)
    with pytest.raises(ValueError, match=r"same shape.*Received: context.shape=\(2, 77, 16\)"):
        runner.sample(noise, context, unconditional[:, :, :8], ddim_scheduler(2), 7.5)
    with pytest.raises(ValueError, match=r"`start_index` must be an integer in \[0, 1\]"):
        runner.sample(noise, context, unconditional, ddim_scheduler(2), 7.5, start_index=2)
    with pytest.raises(ValueError, match="set_timesteps"):
        runner.sample(noise, context, unconditional, schedulers.get("ddim"), 7.5)
    with pytest.raises(ValueError, match="num_refinements"):
        runner.invert(noise, context, unconditional, ddim_scheduler(2), 1.0, num_refinements=-1)
    assert runner.num_steps_run == 0


def test_inversion_needs_ddim(unet):
    class Stochastic(ddim.DDIMScheduler):
        name = "stochastic"
        supports_inversion = False

    scheduler = Stochastic()
    scheduler.set_timesteps(2)
    noise, context, unconditional, _, _ = inputs()
    with pytest.raises(ValueError, match="deterministic 'ddim'.*Received: scheduler='stochastic'"):
        sampler.Sampler(unet).invert(noise, context, unconditional, scheduler, 1.0)
