"""The multistep schedulers (PNDM, DPM++ 2M, DPM++ 2M Karras, UniPC) against diffusers.

diffusers' scheduler classes are the reference, built from our scheduler's
`config` (the same key names) plus the keys that select the algorithm
(`algorithm_type="dpmsolver++"`): they must give the same timesteps and σ
tables, and a full denoising loop with a deterministic dummy model
(diffusers' test dummy `x·t/(t+1)` plus a term nonlinear in x and t) from
the same start must end on the same latents, for txt2img and img2img.
No UNet, no TensorFlow.

Run: `pytest -m reference tests/test_schedulers_multistep.py` (seconds).
"""

import json

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="reference tests need torch: pip install 'kerasmorph[reference]'"
)
diffusers = pytest.importorskip(
    "diffusers", reason="reference tests need diffusers: pip install 'kerasmorph[reference]'"
)

from kerasmorph import schedulers  # noqa: E402
from kerasmorph.schedulers import common  # noqa: E402
from kerasmorph.schedulers.dpm_solver import (  # noqa: E402
    DPMSolverMultistepKarrasScheduler,
    DPMSolverMultistepScheduler,
)
from kerasmorph.schedulers.pndm import PNDMScheduler  # noqa: E402
from kerasmorph.schedulers.unipc import UniPCMultistepScheduler  # noqa: E402

pytestmark = pytest.mark.reference

# name → (our class, diffusers' class name, the diffusers keys that select the algorithm).
SCHEDULERS = {
    "pndm": (PNDMScheduler, "PNDMScheduler", {}),
    "dpmpp_2m": (DPMSolverMultistepScheduler, "DPMSolverMultistepScheduler", {}),
    "dpmpp_2m_karras": (DPMSolverMultistepKarrasScheduler, "DPMSolverMultistepScheduler", {}),
    "unipc": (UniPCMultistepScheduler, "UniPCMultistepScheduler", {}),
}
for _name in ("dpmpp_2m", "dpmpp_2m_karras"):
    SCHEDULERS[_name][2].update(algorithm_type="dpmsolver++", solver_type="midpoint")
SCHEDULERS["unipc"][2].update(solver_type="bh2", predict_x0=True, disable_corrector=[])
NAMES = list(SCHEDULERS)
SOLVERS = ["dpmpp_2m", "dpmpp_2m_karras", "unipc"]
SHAPE = (2, 8, 8, 4)
TOLERANCE = 1e-4


def rel_error(ours, reference) -> float:
    """‖ours − reference‖ / ‖reference‖."""
    ours = np.asarray(ours, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    return float(np.linalg.norm(ours - reference) / np.linalg.norm(reference))


def build(name, num_steps, exact_table=False, **config):
    """Ours and diffusers' scheduler for `num_steps` steps; diffusers' from our `config`.

    `exact_table`: diffusers' `set_timesteps` on the float64 ᾱ table instead of
    its float32 one (whose cumulative product drifts by up to ~2e-6 in σ).
    """
    cls, class_name, keys = SCHEDULERS[name]
    ours = cls(**config)
    ours.set_timesteps(num_steps)
    reference = getattr(diffusers, class_name)(**ours.config, **keys)
    if exact_table:
        reference.alphas_cumprod = torch.from_numpy(ours.alphas_cumprod.copy())
    reference.set_timesteps(num_steps)
    return ours, reference


def assert_sigmas_equal(ours, name, num_steps, **config):
    """σ equal diffusers' to float32 rounding on the same ᾱ table; to 2e-5 on its float32 one
    (whose 1 − ᾱ_0 keeps ~4 digits: σ_min is off by 1.3e-5)."""
    reference = build(name, num_steps, **config)[1]
    np.testing.assert_allclose(ours.sigmas, reference.sigmas.numpy(), rtol=2e-5, atol=0)
    exact = build(name, num_steps, exact_table=True, **config)[1]
    np.testing.assert_allclose(ours.sigmas, exact.sigmas.numpy(), rtol=1e-6, atol=0)


def dummy_model(sample, t):
    """diffusers' test dummy `x·t/(t+1)` plus a term nonlinear in x and t, float32 numpy."""
    sample = np.asarray(sample, dtype=np.float64)
    return (0.9 * sample * t / (t + 1) + 0.1 * np.sin(sample + t / 250)).astype(np.float32)


def run_ours(scheduler, sample, start=0):
    """Our loop from UNet call `start`; returns the final latent and the last call's input."""
    state = scheduler.new_state()
    for index in range(start, scheduler.num_model_calls):
        last_input = sample
        output = dummy_model(scheduler.scale_model_input(sample, index), scheduler.timesteps[index])
        sample = scheduler.step(output, index, sample, state=state)
        assert sample.dtype == np.float32 and sample.shape == SHAPE
    return sample, last_input


def run_reference(scheduler, sample, start=0):
    """diffusers' loop from UNet call `start` (`set_begin_index`, as its img2img pipelines)."""
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
    sample = torch.from_numpy(sample)
    for t in scheduler.timesteps[start:]:
        model_input = scheduler.scale_model_input(sample, t).numpy()
        output = torch.from_numpy(dummy_model(model_input, float(t)))
        sample = scheduler.step(output, t, sample).prev_sample
    return sample.numpy()


def random_start(seed=0):
    return np.random.default_rng(seed).standard_normal(SHAPE).astype(np.float32)


# ------------------------------------------------------------------ 1. tables


@pytest.mark.parametrize("timestep_spacing", ["leading", "linspace", "trailing"])
@pytest.mark.parametrize("num_steps", [1, 5, 10, 15, 20, 50])
@pytest.mark.parametrize("name", NAMES)
def test_timesteps_equal_diffusers(name, num_steps, timestep_spacing):
    ours, reference = build(name, num_steps, timestep_spacing=timestep_spacing)
    np.testing.assert_array_equal(ours.timesteps, reference.timesteps.numpy())
    assert ours.timesteps.dtype == np.int64
    assert ours.num_model_calls == len(reference.timesteps)
    assert ours.order == reference.order == 1
    assert ours.init_noise_sigma == reference.init_noise_sigma == 1.0
    if name == "pndm":
        expected_calls = num_steps + 1 if num_steps > 1 else 1  # diffusers' plms_timesteps.
        assert ours.num_model_calls == expected_calls
    else:
        assert ours.num_model_calls == num_steps
        assert_sigmas_equal(ours, name, num_steps, timestep_spacing=timestep_spacing)


@pytest.mark.parametrize("final_sigmas_type", ["zero", "sigma_min"])
@pytest.mark.parametrize("num_steps", [1, 2, 5, 10, 15, 20, 50])
@pytest.mark.parametrize("name", SOLVERS)
def test_karras_tables_equal_diffusers(name, num_steps, final_sigmas_type):
    config = {"final_sigmas_type": final_sigmas_type, "use_karras_sigmas": True}
    if name == "unipc" and num_steps == 1 and final_sigmas_type == "sigma_min":
        pytest.skip("refused: see test_unipc_refuses_a_karras_step_to_where_it_starts")
    ours, reference = build(name, num_steps, **config)
    np.testing.assert_array_equal(ours.timesteps, reference.timesteps.numpy())
    assert_sigmas_equal(ours, name, num_steps, **config)
    assert ours.timesteps[0] == 999
    sigma_min = float(np.sqrt((1 - ours.alphas_cumprod[0]) / ours.alphas_cumprod[0]))
    final = 0.0 if final_sigmas_type == "zero" else sigma_min
    assert ours.sigmas[-1] == pytest.approx(final, rel=1e-12, abs=0)


def test_unipc_refuses_a_karras_step_to_where_it_starts():
    """diffusers' UniPC ends a 1-step Karras run at its only level: the step does nothing."""
    reference = diffusers.UniPCMultistepScheduler(
        **common.SD_CONFIG, use_karras_sigmas=True, final_sigmas_type="sigma_min"
    )
    reference.set_timesteps(1)
    assert reference.sigmas[0] == reference.sigmas[1]
    start = random_start()
    np.testing.assert_allclose(run_reference(reference, start), start, rtol=1e-6)
    ours = UniPCMultistepScheduler(use_karras_sigmas=True, final_sigmas_type="sigma_min")
    with pytest.raises(ValueError) as error:
        ours.set_timesteps(1)
    assert_one_line_error(error, "num_steps >= 2", "num_steps=1")
    ours.set_timesteps(2)


def test_defaults_are_stable_diffusions_config():
    for name in NAMES:
        config = SCHEDULERS[name][0]().config
        assert {key: config[key] for key in common.SD_CONFIG} == common.SD_CONFIG
    assert PNDMScheduler().config["skip_prk_steps"] is True
    assert PNDMScheduler().config["set_alpha_to_one"] is False
    assert DPMSolverMultistepScheduler().config["use_karras_sigmas"] is False
    assert DPMSolverMultistepKarrasScheduler().config["use_karras_sigmas"] is True
    assert UniPCMultistepScheduler().config["solver_order"] == 2


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trips_through_json(name):
    cls = SCHEDULERS[name][0]
    scheduler = cls(timestep_spacing="trailing", prediction_type="v_prediction")
    rebuilt = cls(**json.loads(json.dumps(scheduler.config)))
    assert rebuilt.config == scheduler.config and rebuilt.name == name
    _, class_name, keys = SCHEDULERS[name]
    assert cls.diffusers_class == class_name and cls.diffusers_config == keys
    if name in schedulers.SCHEDULERS:  # Registered by kerasmorph.schedulers.
        assert schedulers.SCHEDULERS[name] is cls


# ------------------------------------------------------------ 2. step for step

LOOP_CONFIGS = {
    "pndm": [{}, {"timestep_spacing": "trailing"}, {"timestep_spacing": "linspace"}],
    "dpmpp_2m": [
        {},
        {"timestep_spacing": "linspace"},
        {"timestep_spacing": "trailing", "final_sigmas_type": "sigma_min"},
        {"lower_order_final": False},
        {"lower_order_final": False, "final_sigmas_type": "sigma_min"},
        {"solver_order": 1},
        {"solver_order": 3},
    ],
    "dpmpp_2m_karras": [{}, {"final_sigmas_type": "sigma_min"}, {"solver_order": 3}],
    "unipc": [
        {},
        {"timestep_spacing": "trailing"},
        {"final_sigmas_type": "sigma_min"},
        {"lower_order_final": False, "final_sigmas_type": "sigma_min"},
        {"use_karras_sigmas": True},
        {"solver_order": 1},
        {"solver_order": 3},
    ],
}
LOOP_CASES = [(name, config) for name in NAMES for config in LOOP_CONFIGS[name]]


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("num_steps", [7, 10, 25])
@pytest.mark.parametrize(("name", "config"), LOOP_CASES, ids=str)
def test_denoising_loop_equals_diffusers(name, config, num_steps, prediction_type):
    ours, reference = build(name, num_steps, prediction_type=prediction_type, **config)
    start = random_start()
    sample, _ = run_ours(ours, start)
    expected = run_reference(reference, start)
    assert np.isfinite(expected).all()
    assert rel_error(sample, expected) < TOLERANCE


@pytest.mark.parametrize("num_steps", [1, 2, 3])
@pytest.mark.parametrize("name", NAMES)
def test_shortest_runs_equal_diffusers(name, num_steps):
    ours, reference = build(name, num_steps)
    start = random_start(1)
    assert rel_error(run_ours(ours, start)[0], run_reference(reference, start)) < TOLERANCE


@pytest.mark.parametrize("name", ["dpmpp_2m", "unipc"])
def test_lower_order_final_changes_short_runs_only(name):
    """diffusers' DPM drops the final orders below 15 steps only; the loop shows it."""
    start = random_start(2)
    for num_steps, changes in ((10, True), (20, name == "unipc")):
        results = []
        for lower_order_final in (True, False):
            scheduler = SCHEDULERS[name][0](
                lower_order_final=lower_order_final, final_sigmas_type="sigma_min"
            )
            scheduler.set_timesteps(num_steps)
            results.append(run_ours(scheduler, start)[0])
        assert (rel_error(*results) > 1e-4) == changes


# --------------------------------------------------------- 3. noise, img2img, end


@pytest.mark.parametrize("name", NAMES)
def test_add_noise_equals_diffusers(name):
    ours, reference = build(name, 10)
    rng = np.random.default_rng(3)
    original = rng.standard_normal(SHAPE).astype(np.float32)
    noise = rng.standard_normal(SHAPE).astype(np.float32)
    for index in (0, 3, ours.num_model_calls - 1):
        if hasattr(reference, "set_begin_index"):
            reference.set_begin_index(index)  # As diffusers' img2img before `add_noise`.
        timesteps = reference.timesteps[index : index + 1]
        expected = reference.add_noise(
            torch.from_numpy(original), torch.from_numpy(noise), timesteps
        )
        noisy = ours.add_noise(original, noise, index)
        assert noisy.dtype == np.float32
        assert rel_error(noisy, expected.numpy()) < 1e-6
        signal, scale = ours.noise_scales(index)
        np.testing.assert_allclose(noisy, signal * original + scale * noise, rtol=1e-6)
    assert ours.noise_scales(ours.num_model_calls) == (1.0, 0.0)
    np.testing.assert_array_equal(ours.add_noise(original, noise, ours.num_model_calls), original)


@pytest.mark.parametrize("strength", [0.3, 0.55, 0.8])
@pytest.mark.parametrize("name", NAMES)
def test_img2img_equals_diffusers(name, strength):
    num_steps = 20
    ours, reference = build(name, num_steps)
    # diffusers' StableDiffusionImg2ImgPipeline.get_timesteps:
    num_denoise = min(int(num_steps * strength), num_steps)
    t_start = max(num_steps - num_denoise, 0)
    first = ours.start_index(num_denoise)
    assert first == t_start * reference.order
    np.testing.assert_array_equal(ours.timesteps[first:], reference.timesteps[first:].numpy())
    rng = np.random.default_rng(4)
    clean = rng.standard_normal(SHAPE).astype(np.float32)
    noisy = ours.add_noise(clean, rng.standard_normal(SHAPE).astype(np.float32), first)
    sample, _ = run_ours(ours, noisy, start=first)
    expected = run_reference(reference, noisy, start=first)
    assert rel_error(sample, expected) < TOLERANCE


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("name", SOLVERS)
def test_last_step_returns_the_clean_estimate(name, prediction_type):
    scheduler = SCHEDULERS[name][0](prediction_type=prediction_type)
    scheduler.set_timesteps(10)
    sample, last_input = run_ours(scheduler, random_start(5))
    last = scheduler.num_model_calls - 1
    output = dummy_model(last_input, scheduler.timesteps[last]).astype(np.float64)
    alpha, sigma = (float(value) for value in scheduler.noise_scales(last))
    if prediction_type == "epsilon":
        x0 = (last_input - sigma * output) / alpha
    else:
        x0 = alpha * last_input - sigma * output
    assert rel_error(sample, x0) < 1e-5
    assert scheduler.sigmas[-1] == 0.0


@pytest.mark.parametrize("set_alpha_to_one", [False, True])
def test_pndm_single_step_ends_at_its_final_alpha(set_alpha_to_one):
    scheduler = PNDMScheduler(set_alpha_to_one=set_alpha_to_one)
    scheduler.set_timesteps(1)
    start = random_start(6)
    sample, _ = run_ours(scheduler, start)
    eps = dummy_model(start, scheduler.timesteps[0]).astype(np.float64)
    alpha = float(scheduler.alphas_cumprod[scheduler.timesteps[0]])
    x0 = (start - np.sqrt(1 - alpha) * eps) / np.sqrt(alpha)
    final = 1.0 if set_alpha_to_one else float(scheduler.alphas_cumprod[0])
    expected = np.sqrt(final) * x0 + np.sqrt(1 - final) * eps  # DDIM (η = 0) to ᾱ_final.
    assert rel_error(sample, expected) < 1e-5
    reference = build("pndm", 1, set_alpha_to_one=set_alpha_to_one)[1]
    assert rel_error(sample, run_reference(reference, start)) < TOLERANCE


# ------------------------------------------------------------------ 4. errors


def assert_one_line_error(error, *fragments):
    message = str(error.value)
    assert "\n" not in message and "Received: " in message, message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("name", NAMES)
def test_invalid_config_is_rejected(name):
    cls = SCHEDULERS[name][0]
    cases = [
        ({"timestep_spacing": "uniform"}, ("'leading', 'linspace', 'trailing'", "'uniform'")),
        ({"prediction_type": "sample"}, ("'epsilon', 'v_prediction'", "'sample'")),
        ({"beta_schedule": "squaredcos_cap_v2"}, ("'scaled_linear', 'linear'",)),
        ({"steps_offset": -1}, ("steps_offset=-1",)),
    ]
    if name == "pndm":
        cases.append(({"skip_prk_steps": False}, ("must be True", "skip_prk_steps=False")))
        cases.append(({"set_alpha_to_one": "yes"}, ("True or False", "'yes'")))
    else:
        cases += [
            ({"solver_order": 4}, ("1, 2, 3", "solver_order=4")),
            ({"solver_order": True}, ("1, 2, 3", "solver_order=True")),
            ({"solver_order": 2.0}, ("1, 2, 3", "solver_order=2.0")),
            ({"final_sigmas_type": "denoise_to_zero"}, ("'zero', 'sigma_min'",)),
            ({"lower_order_final": 1}, ("True or False",)),
            ({"use_karras_sigmas": "true"}, ("True or False",)),
        ]
    for config, fragments in cases:
        with pytest.raises(ValueError) as error:
            cls(**config)
        assert_one_line_error(error, *fragments)


def test_unipc_refuses_a_multistep_last_step_to_zero():
    reference = diffusers.UniPCMultistepScheduler(**common.SD_CONFIG, lower_order_final=False)
    reference.set_timesteps(10)
    assert not np.isfinite(run_reference(reference, random_start())).all()  # Why it is refused.
    with pytest.raises(ValueError) as error:
        UniPCMultistepScheduler(lower_order_final=False)
    assert_one_line_error(error, "final_sigmas_type='sigma_min'", "lower_order_final=False")
    UniPCMultistepScheduler(lower_order_final=False, solver_order=1)  # First order: fine.


@pytest.mark.parametrize("name", NAMES)
def test_step_counts_outside_the_range_are_rejected(name):
    scheduler = SCHEDULERS[name][0]()
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError) as error:
            scheduler.set_timesteps(bad)
        assert_one_line_error(error, "integer >= 1")
    if name != "dpmpp_2m_karras":  # Leading with steps_offset=1 reaches timestep 1000.
        with pytest.raises(ValueError) as error:
            scheduler.set_timesteps(1000 if name == "pndm" else 999)
        assert_one_line_error(error, "[0, 999]", "reaches 1000")
        with pytest.raises(ValueError) as error:
            scheduler.set_timesteps(1001)
        assert_one_line_error(error, "[1, 1000]" if name == "pndm" else "[1, 999]")
    else:
        scheduler.set_timesteps(1001)  # Karras levels: any count (diffusers' too).
    if name != "dpmpp_2m_karras":  # diffusers' float `arange` gives 62 trailing timesteps.
        trailing = SCHEDULERS[name][0](timestep_spacing="trailing")
        _, class_name, keys = SCHEDULERS[name]
        reference = getattr(diffusers, class_name)(**trailing.config, **keys)
        reference.set_timesteps(61)
        assert len(reference.timesteps) == 62 + (name == "pndm")  # One of them −1.
        with pytest.raises(ValueError) as error:
            trailing.set_timesteps(61)
        assert_one_line_error(error, "as many timesteps as steps", "num_steps=61")
    scheduler.set_timesteps(1)  # The minimum: one step.


@pytest.mark.parametrize("name", NAMES)
def test_step_needs_its_own_consecutive_state(name):
    scheduler = SCHEDULERS[name][0]()
    scheduler.set_timesteps(10)
    sample = random_start()
    output = dummy_model(sample, scheduler.timesteps[0])
    for bad in (None, {}, {"ets": []}):
        with pytest.raises(ValueError) as error:
            scheduler.step(output, 0, sample, state=bad)
        assert_one_line_error(error, "state=scheduler.new_state()")
    state = scheduler.new_state()
    scheduler.step(output, 0, sample, state=state)
    with pytest.raises(ValueError) as error:
        scheduler.step(output, 2, sample, state=state)
    assert_one_line_error(error, "index=1", "index=2")
    with pytest.raises(ValueError) as error:
        scheduler.step(output[:1], 1, sample, state=state)
    assert_one_line_error(error, "model_output.shape=(1, 8, 8, 4)")
    with pytest.raises(ValueError):
        scheduler.step(output, scheduler.num_model_calls, sample, state=scheduler.new_state())
