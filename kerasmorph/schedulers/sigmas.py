"""What the sigma-based schedulers share: noise levels, input scaling and the x0 estimate.

Euler, Euler ancestral, Heun and LMS (diffusers' `EulerDiscreteScheduler`,
`EulerAncestralDiscreteScheduler`, `HeunDiscreteScheduler` and
`LMSDiscreteScheduler`; A1111's "Euler", "Euler a", "Heun" and "LMS") are
k-diffusion's samplers: they work with the noise level σ = sqrt((1 − ᾱ) / ᾱ)
rather than ᾱ. The latent at level σ is `x0 + σ·ε`: the run starts from
standard-normal noise times `init_noise_sigma`, `add_noise` adds `σ·ε`, and
the UNet sees the latent rescaled to unit variance, `x / sqrt(σ² + 1)`.

`inference_sigmas` computes diffusers' timesteps and σ of a run (the training
σ interpolated at the spaced timesteps, or Karras et al.'s levels between the
same extremes); `SigmaScheduler` turns them into the per-call tables of the
scheduler protocol and holds everything but the update itself, which each
subclass's `step` supplies. Numpy only; tables in float64, updates in float32
(diffusers computes both in float32: the two agree to ~1e-6).

References:
    Karras, Aittala, Aila and Laine, "Elucidating the Design Space of
    Diffusion-Based Generative Models" (2022), https://arxiv.org/abs/2206.00364
    Crowson, k-diffusion, `k_diffusion/sampling.py`.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Literal

import numpy as np

from kerasmorph._checks import check_int
from kerasmorph.schedulers import common
from kerasmorph.schedulers.base import Scheduler, check_prediction_type

BetaSchedule = Literal["scaled_linear", "linear"]
TimestepSpacing = Literal["leading", "linspace", "trailing"]
PredictionType = Literal["epsilon", "v_prediction"]


def inference_sigmas(
    num_steps: int,
    alphas_cumprod_table: np.ndarray,
    timestep_spacing: TimestepSpacing,
    steps_offset: int,
    use_karras_sigmas: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """diffusers' timesteps and noise levels of a `num_steps`-step run, noisiest first.

    As the `set_timesteps` of diffusers' Euler, Heun and LMS schedulers: the
    timesteps of `common.spaced_timesteps`, σ linearly interpolated in the
    training table at them; with `use_karras_sigmas`, Karras et al.'s ρ = 7
    levels between the extremes of those σ, and their (fractional) timesteps.

    Args:
        num_steps: integer in [1, T], T = `len(alphas_cumprod_table)`.
        alphas_cumprod_table: float (T,), the training schedule's ᾱ.
        timestep_spacing: `"leading"`, `"linspace"` or `"trailing"`.
        steps_offset: added to the `"leading"` timesteps.
        use_karras_sigmas: whether to use Karras et al.'s levels.

    Returns:
        `(timesteps, sigmas)`, both float64 (num_steps,); the run ends at σ = 0
        after the last step (not included).

    Raises:
        ValueError: for more steps than training timesteps, or a step count
            whose `"trailing"` timesteps are not `num_steps` long (diffusers'
            floating-point `arange` adds a timestep of −1 at e.g. 61 of 1000).

    Example:

    ```python
    table = kerasmorph.schedulers.common.alphas_cumprod()
    timesteps, sigmas = inference_sigmas(10, table, "leading", 1, use_karras_sigmas=False)
    ```
    """
    num_train_timesteps = len(alphas_cumprod_table)
    timesteps = common.spaced_timesteps(
        num_steps, num_train_timesteps, timestep_spacing, steps_offset
    )
    if len(timesteps) != num_steps:
        raise ValueError(
            f"`num_steps` must give as many {timestep_spacing!r} timesteps as steps "
            f"(this count gives {len(timesteps)}, one of them -1, as in diffusers); "
            f"choose another count. Received: num_steps={num_steps}"
        )
    table_sigmas = common.training_sigmas(alphas_cumprod_table)
    sigmas = np.interp(timesteps, np.arange(num_train_timesteps), table_sigmas)
    if use_karras_sigmas:
        sigmas = common.karras_sigmas(sigmas[-1], sigmas[0], num_steps)
        timesteps = common.sigma_to_timestep(sigmas, alphas_cumprod_table)
    return timesteps.astype(np.float64), sigmas.astype(np.float64)


def denoised(
    model_output: np.ndarray, sample: np.ndarray, sigma: float, prediction_type: PredictionType
) -> np.ndarray:
    """The clean-latent estimate x0 of a UNet output at noise level `sigma` (as diffusers).

    Args:
        model_output: float32 (N, h, w, 4), the UNet's ε or v prediction.
        sample: float32 (N, h, w, 4), the latent at level `sigma` (unscaled).
        sigma: the level, > 0.
        prediction_type: `"epsilon"`: `x − σ·ε`; `"v_prediction"`:
            `v·(−σ / sqrt(σ² + 1)) + x / (σ² + 1)`.

    Returns:
        float32 (N, h, w, 4).
    """
    sigma = float(sigma)
    if prediction_type == "v_prediction":
        return model_output * (-sigma / math.sqrt(sigma**2 + 1)) + sample / (sigma**2 + 1)
    return sample - sigma * model_output


def euler_step(
    sample: np.ndarray, denoised_sample: np.ndarray, sigma: float, sigma_next: float
) -> np.ndarray:
    """One Euler step of the probability-flow ODE from level `sigma` to `sigma_next`.

    `x + d·(σ_next − σ)` with `d = (x − x0) / σ`, written as
    `x0 + (x − x0)·σ_next/σ`, which is exactly x0 when `sigma_next` is 0.

    Returns:
        float32, the shape of `sample`.
    """
    return denoised_sample + (sample - denoised_sample) * (float(sigma_next) / float(sigma))


class SigmaScheduler(Scheduler):
    """Base class of the sigma-based schedulers: schedule, scaling, noise levels, x0.

    Subclasses set `name` (and `order`, `stochastic`), implement `step`, and
    override `new_state` when they keep a history and `_expand` when they
    call the UNet more than once per step (Heun). The constructor arguments
    are diffusers' config keys that change the arithmetic; the defaults are
    Stable Diffusion 1.x's (`kerasmorph.schedulers.common.SD_CONFIG`).
    `config` returns the arguments of the subclass's constructor.

    Args:
        num_train_timesteps: training timesteps T, integer >= 2 (default 1000).
        beta_start: first β of the training schedule, in (0, 1) (0.00085).
        beta_end: last β, in (0, 1) (0.012).
        beta_schedule: `"scaled_linear"` (default, β linear in sqrt space) or
            `"linear"`.
        steps_offset: added to the `"leading"` timesteps, integer in
            [0, T − 1] (default 1).
        timestep_spacing: `"leading"` (default), `"linspace"` or `"trailing"`.
        prediction_type: `"epsilon"` (default) or `"v_prediction"` (SD 2.x 768-v).
        use_karras_sigmas: Karras et al.'s levels instead of the spaced ones
            (default False).

    Attributes:
        sigmas: float64 (num_model_calls + 1,) after `set_timesteps`, the
            level at the input of each UNet call and 0 at the end (diffusers'
            `sigmas`, Heun's repeats included).
        init_noise_sigma: `sqrt(σ_max² + 1)` for `"leading"`, σ_max otherwise.
        alphas_cumprod: float64 (T,), the training schedule's ᾱ.

    Raises:
        ValueError: for a value outside the ranges and choices above.

    Example:

    ```python
    scheduler = kerasmorph.schedulers.euler.EulerScheduler(timestep_spacing="trailing")
    scheduler.set_timesteps(20)
    scheduler.sigmas[0], scheduler.init_noise_sigma  # (14.61…, 14.61…): σ_max.
    start = scheduler.add_noise(latents, noise, 8)  # latents + σ_8·noise.
    ```
    """

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        beta_schedule: BetaSchedule = "scaled_linear",
        steps_offset: int = 1,
        timestep_spacing: TimestepSpacing = "leading",
        prediction_type: PredictionType = "epsilon",
        use_karras_sigmas: bool = False,
    ) -> None:
        super().__init__()
        self.num_train_timesteps = check_int("num_train_timesteps", num_train_timesteps, 2)
        self.beta_start = common.check_beta("beta_start", beta_start)
        self.beta_end = common.check_beta("beta_end", beta_end)
        self.beta_schedule = common.check_choice(
            "beta_schedule", beta_schedule, common.BETA_SCHEDULES
        )
        self.steps_offset = check_int("steps_offset", steps_offset, 0, self.num_train_timesteps - 1)
        self.timestep_spacing = common.check_choice(
            "timestep_spacing", timestep_spacing, common.TIMESTEP_SPACINGS
        )
        self.prediction_type = check_prediction_type(prediction_type)
        self.use_karras_sigmas = common.check_bool("use_karras_sigmas", use_karras_sigmas)
        self.alphas_cumprod = common.alphas_cumprod(
            self.beta_start, self.beta_end, self.beta_schedule, self.num_train_timesteps
        )
        self.sigmas: np.ndarray | None = None

    @property
    def config(self) -> dict[str, Any]:
        parameters = inspect.signature(type(self).__init__).parameters
        return {key: getattr(self, key) for key in parameters if key != "self"}

    def _build(self, num_steps: int) -> np.ndarray:
        timesteps, sigmas = inference_sigmas(
            num_steps,
            self.alphas_cumprod,
            self.timestep_spacing,
            self.steps_offset,
            self.use_karras_sigmas,
        )
        timesteps, self.sigmas = self._expand(timesteps, np.append(sigmas, 0.0))
        self.sigmas.flags.writeable = False
        sigma_max = float(self.sigmas.max())
        if self.timestep_spacing == "leading":
            self.init_noise_sigma = math.sqrt(sigma_max**2 + 1)
        else:
            self.init_noise_sigma = sigma_max
        return timesteps

    def _expand(self, timesteps: np.ndarray, sigmas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-step tables → per-UNet-call tables (identity: one call per step).

        Args:
            timesteps: float64 (num_steps,).
            sigmas: float64 (num_steps + 1,), ending with 0.

        Returns:
            `(timesteps, sigmas)`: float64 (num_model_calls,) and (num_model_calls + 1,).
        """
        return timesteps, sigmas

    def noise_scales(self, index: int) -> tuple[np.float32, np.float32]:
        index = self._check_index(index, allow_end=True)
        return np.float32(1.0), np.float32(self.sigmas[index])

    def scale_model_input(self, sample: np.ndarray, index: int) -> np.ndarray:
        """The UNet's input at call `index`: `sample / sqrt(σ_index² + 1)`.

        Args:
            sample: float (N, h, w, 4), the latent at the call's input.
            index: in [0, num_model_calls).

        Returns:
            float32 (N, h, w, 4).
        """
        sigma = float(self.sigmas[self._check_index(index)])
        sample = np.asarray(sample, dtype=np.float32)
        return (sample / np.float32(math.sqrt(sigma**2 + 1))).astype(np.float32)

    def denoise(self, model_output: np.ndarray, sample: np.ndarray, sigma: float) -> np.ndarray:
        """`denoised(model_output, sample, sigma, self.prediction_type)`, float32."""
        return denoised(model_output, sample, sigma, self.prediction_type)

    # ---------------------------------------------------------------- helpers
    def _step_inputs(
        self, model_output: Any, index: Any, sample: Any
    ) -> tuple[int, np.ndarray, np.ndarray]:
        """Checks `step`'s arguments; returns the index and the arrays as float32."""
        index = self._check_index(index)
        model_output = np.asarray(model_output, dtype=np.float32)
        sample = np.asarray(sample, dtype=np.float32)
        if model_output.shape != sample.shape:
            raise ValueError(
                f"`model_output` must have the shape of `sample` {sample.shape}. "
                f"Received: model_output.shape={model_output.shape}"
            )
        return index, model_output, sample

    def _require_state(self, state: Any) -> dict[str, Any]:
        """Returns `state` if it is a history from `new_state()`, else raises."""
        if not isinstance(state, dict) or set(state) != set(self.new_state()):
            received = f"dict with keys {sorted(state)}" if isinstance(state, dict) else repr(state)
            raise ValueError(
                f"The {self.name!r} scheduler's `step` needs `state=scheduler.new_state()` "
                f"(one per run, passed to every step). Received: state={received}"
            )
        return state
