"""The sigma-based schedulers (Euler, Euler ancestral, Heun, LMS) against diffusers.

diffusers' scheduler classes are the reference: built from the same config
(Stable Diffusion 1.x's), they must give the same timesteps, σ tables and
`init_noise_sigma`, and a full denoising loop with a deterministic dummy
model (diffusers' test dummy `x·t/(t+1)`, plus a nonlinear term) must end on
the same latents. No UNet, no TensorFlow. diffusers' `LMSDiscreteScheduler`
needs scipy (`scipy.integrate.quad`); its cases skip without it.

Run: `pytest -m reference tests/test_schedulers_sigma.py` (seconds).
"""

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="reference tests need torch: pip install 'kerasmorph[reference]'"
)
diffusers = pytest.importorskip(
    "diffusers", reason="reference tests need diffusers: pip install 'kerasmorph[reference]'"
)

from kerasmorph.schedulers import common  # noqa: E402
from kerasmorph.schedulers.euler import EulerAncestralScheduler, EulerScheduler  # noqa: E402
from kerasmorph.schedulers.heun import HeunScheduler  # noqa: E402
from kerasmorph.schedulers.lms import LMSScheduler, lms_coefficients  # noqa: E402

pytestmark = pytest.mark.reference

# name → (our class, diffusers' class name, whether both accept use_karras_sigmas).
SCHEDULERS = {
    "euler": (EulerScheduler, "EulerDiscreteScheduler", True),
    "euler_ancestral": (EulerAncestralScheduler, "EulerAncestralDiscreteScheduler", False),
    "heun": (HeunScheduler, "HeunDiscreteScheduler", True),
    "lms": (LMSScheduler, "LMSDiscreteScheduler", True),
}
NAMES = list(SCHEDULERS)
KARRAS_NAMES = [name for name in NAMES if SCHEDULERS[name][2]]
SHAPE = (2, 8, 8, 4)


def rel_error(ours, reference) -> float:
    """max |ours − reference| / max |reference|."""
    ours = np.asarray(ours, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))


def reference_class(name):
    if name == "lms":
        pytest.importorskip("scipy", reason="diffusers' LMSDiscreteScheduler needs scipy")
    return getattr(diffusers, SCHEDULERS[name][1])


def build(name, num_steps, exact_table=False, **config):
    """Ours and diffusers' scheduler for `num_steps` steps, from SD 1.x's config + `config`.

    `exact_table`: diffusers' `set_timesteps` on the float64 ᾱ table instead of
    its float32 one (whose 1 − ᾱ_0 keeps ~4 digits: σ_min is off by 1.3e-5).
    """
    ours = SCHEDULERS[name][0](**config)
    ours.set_timesteps(num_steps)
    reference = reference_class(name)(**{**common.SD_CONFIG, **config})
    if exact_table:
        reference.alphas_cumprod = torch.from_numpy(common.alphas_cumprod())
    reference.set_timesteps(num_steps)
    return ours, reference


def dummy_model(xp, sample, t):
    """diffusers' test dummy `x·t/(t+1)` plus a term nonlinear in x and t; xp: numpy or torch."""
    return sample * t / (t + 1) + 0.1 * xp.sin(sample) * (t / 1000)


def run_ours(scheduler, sample, noises, start=0):
    state = scheduler.new_state()
    for index in range(start, scheduler.num_model_calls):
        t = float(scheduler.timesteps[index])
        output = dummy_model(np, scheduler.scale_model_input(sample, index), t)
        noise = noises[index] if scheduler.stochastic else None
        sample = scheduler.step(output, index, sample, state=state, noise=noise)
    return sample


def run_reference(scheduler, sample, noises, monkeypatch, start=0):
    """diffusers' loop; returns the final sample and the last step's x0 estimate."""
    # EulerAncestralDiscreteScheduler.step draws its noise with the module's
    # `randn_tensor(shape, generator=…)`: patched to hand out our noise in order.
    module = "diffusers.schedulers.scheduling_euler_ancestral_discrete.randn_tensor"
    queue = [torch.from_numpy(noise) for noise in noises[start:]]
    monkeypatch.setattr(module, lambda *args, **kwargs: queue.pop(0))
    scheduler.set_begin_index(start)
    sample = torch.from_numpy(sample)
    for t in scheduler.timesteps[start:]:
        output = dummy_model(torch, scheduler.scale_model_input(sample, t), t)
        result = scheduler.step(output, t, sample)
        sample = result.prev_sample
    return sample.numpy(), result.pred_original_sample.numpy()


def random_inputs(num_calls, seed=0):
    rng = np.random.default_rng(seed)
    start = rng.standard_normal(SHAPE).astype(np.float32)
    noises = rng.standard_normal((num_calls, *SHAPE)).astype(np.float32)
    return start, noises


# ------------------------------------------------------------------ 1. tables


@pytest.mark.parametrize("use_karras_sigmas", [False, True])
@pytest.mark.parametrize("timestep_spacing", ["leading", "linspace", "trailing"])
@pytest.mark.parametrize("num_steps", [1, 5, 10, 20, 50])
@pytest.mark.parametrize("name", NAMES)
def test_tables_equal_diffusers(name, num_steps, timestep_spacing, use_karras_sigmas):
    if use_karras_sigmas and name not in KARRAS_NAMES:
        pytest.skip(f"diffusers' {SCHEDULERS[name][1]} has no use_karras_sigmas")
    config = {"timestep_spacing": timestep_spacing}
    if use_karras_sigmas:
        config["use_karras_sigmas"] = True
    ours, reference = build(name, num_steps, exact_table=True, **config)
    assert ours.num_model_calls == len(reference.timesteps)
    np.testing.assert_allclose(ours.timesteps, reference.timesteps.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.sigmas, reference.sigmas.numpy(), rtol=1e-5, atol=0)
    assert ours.init_noise_sigma == pytest.approx(float(reference.init_noise_sigma), rel=1e-5)
    assert ours.order == reference.order


@pytest.mark.parametrize("use_karras_sigmas", [False, True])
@pytest.mark.parametrize("timestep_spacing", ["leading", "linspace", "trailing"])
def test_tables_close_to_stock_diffusers(timestep_spacing, use_karras_sigmas):
    # diffusers' own float32 ᾱ table: σ to 1.3e-5 relative (σ_min); the
    # Karras timesteps, from log σ of that table, to 1.3e-3 absolute.
    for num_steps in (1, 10, 50):
        ours, reference = build(
            "euler",
            num_steps,
            timestep_spacing=timestep_spacing,
            use_karras_sigmas=use_karras_sigmas,
        )
        np.testing.assert_allclose(ours.timesteps, reference.timesteps.numpy(), atol=2e-3)
        np.testing.assert_allclose(ours.sigmas, reference.sigmas.numpy(), rtol=2e-5)


@pytest.mark.parametrize("num_steps", [5, 10])
def test_lms_coefficients_equal_diffusers(num_steps):
    ours, reference = build("lms", num_steps, exact_table=True)
    for index in range(num_steps):
        for order in range(1, min(index + 1, 4) + 1):
            expected = [reference.get_lms_coefficient(order, index, j) for j in range(order)]
            got = lms_coefficients(ours.sigmas, index, order)
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------- 2. step for step


@pytest.mark.parametrize("variant", ["default", "trailing_karras"])
@pytest.mark.parametrize("num_steps", [10, 25])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("name", NAMES)
def test_loop_equals_diffusers(name, prediction_type, num_steps, variant, monkeypatch):
    config = {"prediction_type": prediction_type}
    if variant == "trailing_karras":
        config["timestep_spacing"] = "trailing"
        if name in KARRAS_NAMES:
            config["use_karras_sigmas"] = True
    ours, reference = build(name, num_steps, **config)
    start, noises = random_inputs(ours.num_model_calls)
    ours_final = run_ours(ours, start * np.float32(ours.init_noise_sigma), noises)
    reference_start = start * np.float32(float(reference.init_noise_sigma))
    reference_final, reference_x0 = run_reference(reference, reference_start, noises, monkeypatch)
    assert ours_final.dtype == np.float32
    assert rel_error(ours_final, reference_final) < 1e-4
    if name != "lms":  # The last step ends on diffusers' x0 estimate (LMS: multistep to σ=0).
        assert rel_error(ours_final, reference_x0) < 1e-5


def test_ancestral_noise_matters(monkeypatch):
    # The comparison above can fail: other noise, other result.
    ours, reference = build("euler_ancestral", 10)
    start, noises = random_inputs(10)
    ours_final = run_ours(ours, start * np.float32(ours.init_noise_sigma), noises)
    reference_start = start * np.float32(float(reference.init_noise_sigma))
    reference_final, _ = run_reference(reference, reference_start, noises[::-1].copy(), monkeypatch)
    assert rel_error(ours_final, reference_final) > 1e-2


@pytest.mark.parametrize("num_denoise", [3, 7])
@pytest.mark.parametrize("name", ["euler", "euler_ancestral", "heun"])
def test_img2img_loop_equals_diffusers(name, num_denoise, monkeypatch):
    # diffusers' img2img: t_start = n − k, timesteps[t_start·order:], begin index there.
    ours, reference = build(name, 10)
    start = ours.start_index(num_denoise)
    assert start == (10 - num_denoise) * reference.order
    clean, noises = random_inputs(ours.num_model_calls, seed=1)
    ours_noised = ours.add_noise(clean, noises[0], start)
    reference_noised = reference.add_noise(
        torch.from_numpy(clean), torch.from_numpy(noises[0]), reference.timesteps[start : start + 1]
    ).numpy()
    assert rel_error(ours_noised, reference_noised) < 1e-5
    ours_final = run_ours(ours, ours_noised, noises, start=start)
    reference_final, _ = run_reference(reference, reference_noised, noises, monkeypatch, start)
    assert rel_error(ours_final, reference_final) < 1e-4


@pytest.mark.parametrize("num_denoise", [2, 6])
def test_lms_img2img_restarts_the_order(num_denoise, monkeypatch):
    # k-diffusion's (A1111's) img2img: LMS on the remaining levels, order from 1.
    # diffusers' run from the same levels (its tables cut at the start) is
    # that; its own begin-index path is not (issue #5630, see lms.py).
    ours, reference = build("lms", 10)
    start = ours.start_index(num_denoise)
    reference.sigmas = reference.sigmas[start:]
    reference.timesteps = reference.timesteps[start:]
    clean, noises = random_inputs(ours.num_model_calls, seed=2)
    sample = ours.add_noise(clean, noises[0], start)
    ours_final = run_ours(ours, sample, noises, start=start)
    reference_final, _ = run_reference(reference, sample, noises, monkeypatch)
    assert rel_error(ours_final, reference_final) < 1e-4


# ------------------------------------------- 3. last step, add_noise, start


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("name", NAMES)
def test_last_step_returns_the_clean_estimate(name, prediction_type, monkeypatch):
    # One step: every scheduler's only update goes to σ = 0 and must return
    # diffusers' x0 estimate (for LMS after more steps, see the loop test).
    ours, reference = build(name, 1, prediction_type=prediction_type)
    start, noises = random_inputs(1, seed=3)
    sample = start * np.float32(ours.init_noise_sigma)
    output = dummy_model(np, ours.scale_model_input(sample, 0), float(ours.timesteps[0]))
    ours_final = ours.step(output, 0, sample, state=ours.new_state(), noise=noises[0])
    _, reference_x0 = run_reference(
        reference, start * np.float32(float(reference.init_noise_sigma)), noises, monkeypatch
    )
    assert ours.sigmas[-1] == 0.0
    assert rel_error(ours_final, reference_x0) < 1e-5


@pytest.mark.parametrize("use_karras_sigmas", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_add_noise_equals_diffusers(name, use_karras_sigmas):
    if use_karras_sigmas and name not in KARRAS_NAMES:
        pytest.skip(f"diffusers' {SCHEDULERS[name][1]} has no use_karras_sigmas")
    config = {"use_karras_sigmas": True} if use_karras_sigmas else {}
    ours, reference = build(name, 10, exact_table=True, **config)
    clean, noises = random_inputs(1, seed=4)
    last = ours.num_model_calls - 1
    for index in sorted({0, 1, 2, last // 2, last}):
        expected = reference.add_noise(
            torch.from_numpy(clean), torch.from_numpy(noises[0]), reference.timesteps[index:][:1]
        )
        got = ours.add_noise(clean, noises[0], index)
        assert rel_error(got, expected.numpy()) < 1e-5, index
        assert ours.noise_scales(index) == (1.0, np.float32(ours.sigmas[index]))
    np.testing.assert_array_equal(ours.add_noise(clean, noises[0], last + 1), clean)
    assert ours.noise_scales(last + 1) == (1.0, 0.0)


@pytest.mark.parametrize("name", NAMES)
def test_start_index_follows_diffusers_img2img(name):
    ours, reference = build(name, 12)
    for num_denoise in (1, 5, 12):
        t_start = 12 - num_denoise
        assert ours.start_index(num_denoise) == t_start * reference.order
        np.testing.assert_allclose(
            ours.timesteps[ours.start_index(num_denoise) :],
            reference.timesteps[t_start * reference.order :].numpy(),
            rtol=1e-5,
        )


# ------------------------------------------------------- config and errors


@pytest.mark.parametrize("name", NAMES)
def test_config_defaults_to_stable_diffusion(name):
    cls = SCHEDULERS[name][0]
    config = cls().config
    assert {key: config[key] for key in common.SD_CONFIG} == common.SD_CONFIG
    assert ("use_karras_sigmas" in config) == SCHEDULERS[name][2]
    assert cls(**config).config == config
    assert cls.name == name


@pytest.mark.parametrize(
    "config, message",
    [
        ({"timestep_spacing": "uniform"}, "'leading', 'linspace', 'trailing'"),
        ({"prediction_type": "sample"}, "'epsilon', 'v_prediction'"),
        ({"beta_schedule": "squaredcos_cap_v2"}, "'scaled_linear', 'linear'"),
        ({"beta_start": 0.0}, "in (0, 1)"),
        ({"beta_end": 1.5}, "in (0, 1)"),
        ({"num_train_timesteps": 1}, ">= 2"),
        ({"steps_offset": -1}, "in [0, 999]"),
        ({"use_karras_sigmas": "yes"}, "True or False"),
    ],
)
@pytest.mark.parametrize("cls", [EulerScheduler, HeunScheduler, LMSScheduler])
def test_bad_config_raises(cls, config, message):
    key, value = next(iter(config.items()))
    with pytest.raises(ValueError, match=r"Received: " + key) as info:
        cls(**config)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert repr(value) in str(info.value) or str(value) in str(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_step_counts(name):
    scheduler = SCHEDULERS[name][0]()
    for bad in (0, -3, 1001, 2.0):
        with pytest.raises(ValueError, match=f"Received: num_steps={bad}"):
            scheduler.set_timesteps(bad)
    scheduler.set_timesteps(1000)
    assert scheduler.num_model_calls == 1000 * scheduler.order - (scheduler.order - 1)


def test_trailing_counts_diffusers_gets_wrong_are_refused():
    # diffusers' trailing `arange(1000, 0, -1000/61)` has 62 entries, the last
    # timestep -1; refused here with the reason, the counts around it run.
    reference = diffusers.EulerDiscreteScheduler(
        **{**common.SD_CONFIG, "timestep_spacing": "trailing"}
    )
    reference.set_timesteps(61)
    assert len(reference.timesteps) == 62 and float(reference.timesteps[-1]) == -1.0
    scheduler = EulerScheduler(timestep_spacing="trailing")
    with pytest.raises(ValueError, match="choose another count. Received: num_steps=61"):
        scheduler.set_timesteps(61)
    for num_steps in (60, 62):
        scheduler.set_timesteps(num_steps)
        assert scheduler.timesteps.min() >= 0


def test_ancestral_needs_noise():
    scheduler = EulerAncestralScheduler()
    scheduler.set_timesteps(5)
    sample = np.zeros(SHAPE, np.float32)
    with pytest.raises(ValueError, match="needs `noise`.*Received: noise=None"):
        scheduler.step(sample, 0, sample)
    with pytest.raises(ValueError, match=r"Received: noise.shape=\(1, 8, 8, 4\)"):
        scheduler.step(sample, 0, sample, noise=np.zeros((1, 8, 8, 4)))
    assert scheduler.stochastic and not EulerScheduler.stochastic


@pytest.mark.parametrize("name", ["heun", "lms"])
def test_multistep_needs_its_state(name):
    scheduler = SCHEDULERS[name][0]()
    scheduler.set_timesteps(5)
    sample = np.ones(SHAPE, np.float32)
    with pytest.raises(ValueError, match=r"needs `state=scheduler.new_state\(\)`.*state=None"):
        scheduler.step(sample, 0, sample)
    with pytest.raises(ValueError, match="Received: state=dict with keys"):
        scheduler.step(sample, 0, sample, state={"derivatives": []})
    state = scheduler.new_state()
    scheduler.step(sample, 0, sample, state=state)
    with pytest.raises(ValueError, match="Received: index=3 after"):
        scheduler.step(sample, 3, sample, state=state)


def test_heun_corrector_needs_its_predictor():
    scheduler = HeunScheduler()
    scheduler.set_timesteps(5)
    sample = np.ones(SHAPE, np.float32)
    with pytest.raises(ValueError, match="Received: index=1 after call None"):
        scheduler.step(sample, 1, sample, state=scheduler.new_state())


def test_step_checks_its_arrays():
    scheduler = EulerScheduler()
    scheduler.set_timesteps(5)
    sample = np.ones(SHAPE, np.float32)
    with pytest.raises(ValueError, match=r"Received: model_output.shape=\(2, 8, 8\)"):
        scheduler.step(sample[..., 0], 0, sample)
    with pytest.raises(ValueError, match="Received: index=5"):
        scheduler.step(sample, 5, sample)
