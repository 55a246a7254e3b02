"""Euler and Euler ancestral (A1111's "Euler" and "Euler a").

diffusers' `EulerDiscreteScheduler` and `EulerAncestralDiscreteScheduler`. Each
step denoises the latent at level σ to an estimate x0 and moves along
`d = (x − x0) / σ`:

- Euler (deterministic, `s_churn = 0` as in diffusers' default):
  `x_next = x + d·(σ_next − σ)`;
- Euler ancestral: steps down to `σ_down` then adds fresh noise of standard
  deviation `σ_up`, with `σ_up = sqrt(σ_next²·(σ² − σ_next²) / σ²)` and
  `σ_down = sqrt(σ_next² − σ_up²)`. The noise is the caller's `noise`
  argument (diffusers draws it from a `torch.Generator`), so that walks can
  make it coherent from frame to frame.

The last step (σ_next = 0) returns the clean estimate x0 for both.

References:
    Karras, Aittala, Aila and Laine, "Elucidating the Design Space of
    Diffusion-Based Generative Models" (2022), https://arxiv.org/abs/2206.00364
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kerasmorph.schedulers.sigmas import (
    BetaSchedule,
    PredictionType,
    SigmaScheduler,
    TimestepSpacing,
    euler_step,
)


class EulerScheduler(SigmaScheduler):
    """Euler's method on the probability-flow ODE (diffusers' `EulerDiscreteScheduler`).

    One UNet call per step, no history, deterministic; any step count from 1.
    Arguments as `kerasmorph.schedulers.sigmas.SigmaScheduler` (SD 1.x's
    config by default; `use_karras_sigmas=True` is A1111's "Euler Karras").

    Example:

    ```python
    scheduler = kerasmorph.schedulers.get("euler", use_karras_sigmas=True)
    scheduler.set_timesteps(30)
    latents = noise * scheduler.init_noise_sigma
    for index in range(scheduler.num_model_calls):
        output = unet(scheduler.scale_model_input(latents, index), scheduler.timesteps[index])
        latents = scheduler.step(output, index, latents)
    ```
    """

    name = "euler"

    def step(
        self,
        model_output: np.ndarray,
        index: int,
        sample: np.ndarray,
        *,
        state: dict[str, Any] | None = None,
        noise: np.ndarray | None = None,
    ) -> np.ndarray:
        """Runs Euler step `index`; see `kerasmorph.schedulers.base.Scheduler.step`.

        `state` and `noise` are ignored (single-step and deterministic).

        Returns:
            float32 (N, h, w, 4): the latent at level `sigmas[index + 1]`; x0
            after the last step.
        """
        del state, noise
        index, model_output, sample = self._step_inputs(model_output, index, sample)
        sigma, sigma_next = self.sigmas[index], self.sigmas[index + 1]
        x0 = self.denoise(model_output, sample, sigma)
        return euler_step(sample, x0, sigma, sigma_next).astype(np.float32)


class EulerAncestralScheduler(SigmaScheduler):
    """Euler ancestral sampling (diffusers' `EulerAncestralDiscreteScheduler`, A1111's "Euler a").

    One UNet call per step, stochastic: every step needs the caller's fresh
    standard-normal `noise`. diffusers' class has no `use_karras_sigmas`, so
    neither does this one.

    Args:
        num_train_timesteps: training timesteps T, integer >= 2 (default 1000).
        beta_start: first β of the training schedule, in (0, 1) (0.00085).
        beta_end: last β, in (0, 1) (0.012).
        beta_schedule: `"scaled_linear"` (default) or `"linear"`.
        steps_offset: added to the `"leading"` timesteps, in [0, T − 1] (1).
        timestep_spacing: `"leading"` (default), `"linspace"` or `"trailing"`.
        prediction_type: `"epsilon"` (default) or `"v_prediction"`.

    Example:

    ```python
    scheduler = kerasmorph.schedulers.get("euler_ancestral")
    scheduler.set_timesteps(30)
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((1, 64, 64, 4)) * scheduler.init_noise_sigma
    for index in range(scheduler.num_model_calls):
        output = unet(scheduler.scale_model_input(latents, index), scheduler.timesteps[index])
        noise = rng.standard_normal(latents.shape)
        latents = scheduler.step(output, index, latents, noise=noise)
    ```
    """

    name = "euler_ancestral"
    stochastic = True

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        beta_schedule: BetaSchedule = "scaled_linear",
        steps_offset: int = 1,
        timestep_spacing: TimestepSpacing = "leading",
        prediction_type: PredictionType = "epsilon",
    ) -> None:
        super().__init__(
            num_train_timesteps=num_train_timesteps,
            beta_start=beta_start,
            beta_end=beta_end,
            beta_schedule=beta_schedule,
            steps_offset=steps_offset,
            timestep_spacing=timestep_spacing,
            prediction_type=prediction_type,
        )

    def step(
        self,
        model_output: np.ndarray,
        index: int,
        sample: np.ndarray,
        *,
        state: dict[str, Any] | None = None,
        noise: np.ndarray | None = None,
    ) -> np.ndarray:
        """Runs ancestral step `index`; see `kerasmorph.schedulers.base.Scheduler.step`.

        Args:
            noise: float (N, h, w, 4) standard-normal noise for this step,
                required at every step (scaled by σ_up: 0 at the last step).

        Returns:
            float32 (N, h, w, 4): `x0 + (x − x0)·σ_down/σ + σ_up·noise`; x0
            after the last step.

        Raises:
            ValueError: if `noise` is missing or not the shape of `sample`.
        """
        del state  # Single-step.
        index, model_output, sample = self._step_inputs(model_output, index, sample)
        noise = self._check_noise(noise, sample.shape)
        sigma, sigma_next = float(self.sigmas[index]), float(self.sigmas[index + 1])
        sigma_up = math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2)
        sigma_down = sigma_next**2 / sigma  # = sqrt(σ_next² − σ_up²), without the cancellation.
        x0 = self.denoise(model_output, sample, sigma)
        return (euler_step(sample, x0, sigma, sigma_down) + sigma_up * noise).astype(np.float32)

    def _check_noise(self, noise: Any, shape: tuple[int, ...]) -> np.ndarray:
        """Returns `noise` as float32 of `shape`, or raises."""
        if noise is None:
            raise ValueError(
                "The 'euler_ancestral' scheduler's `step` needs `noise`, standard-normal "
                f"noise of the sample's shape {shape} for each step. Received: noise=None"
            )
        noise = np.asarray(noise, dtype=np.float32)
        if noise.shape != shape:
            raise ValueError(
                f"`noise` must have the shape of `sample` {shape}. "
                f"Received: noise.shape={noise.shape}"
            )
        return noise
