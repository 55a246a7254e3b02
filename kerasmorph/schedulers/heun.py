"""Heun's method: diffusers' `HeunDiscreteScheduler` (A1111's "Heun").

Each step from σ_i to σ_(i+1) calls the UNet twice: at σ_i (an Euler step,
the predictor, with slope `d_1`) and at σ_(i+1) on the Euler result (slope
`d_2`); the corrector restarts from the step's input with the mean slope,
`x_(i+1) = x_i + (d_1 + d_2)/2 · (σ_(i+1) − σ_i)`. The last step goes to σ = 0,
where the second slope is undefined: it stays an Euler step and returns x0.

So a run of n steps makes 2n − 1 UNet calls; as in diffusers, `timesteps`
repeats each timestep but the first (`[t_0, t_1, t_1, …, t_(n−1), t_(n−1)]`),
even calls (0, 2, 4, …) are predictors, odd ones correctors, and
`order = 2` places img2img's start on a predictor.

References:
    Karras, Aittala, Aila and Laine, "Elucidating the Design Space of
    Diffusion-Based Generative Models" (2022), algorithm 1,
    https://arxiv.org/abs/2206.00364
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kerasmorph.schedulers.sigmas import SigmaScheduler, euler_step


class HeunScheduler(SigmaScheduler):
    """Heun's second-order method (diffusers' `HeunDiscreteScheduler`).

    Arguments as `kerasmorph.schedulers.sigmas.SigmaScheduler` (SD 1.x's
    config by default). Any step count from 1 (one step is one Euler call).
    `step` needs the run's `state` (from `new_state()`): a corrector call
    uses the slope and input its predictor stored there.

    Example:

    ```python
    scheduler = kerasmorph.schedulers.get("heun")
    scheduler.set_timesteps(15)  # 29 UNet calls.
    state = scheduler.new_state()
    latents = noise * scheduler.init_noise_sigma
    for index in range(scheduler.num_model_calls):
        output = unet(scheduler.scale_model_input(latents, index), scheduler.timesteps[index])
        latents = scheduler.step(output, index, latents, state=state)
    ```
    """

    name = "heun"
    order = 2

    def _expand(self, timesteps: np.ndarray, sigmas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Repeats every level but the first and the final 0 (diffusers' tables)."""
        timesteps = np.concatenate([timesteps[:1], np.repeat(timesteps[1:], 2)])
        sigmas = np.concatenate([sigmas[:1], np.repeat(sigmas[1:-1], 2), sigmas[-1:]])
        return timesteps, sigmas

    def new_state(self) -> dict[str, Any]:
        """A fresh history: the last predictor's call index, slope and input."""
        return {"index": None, "derivative": None, "sample": None}

    def step(
        self,
        model_output: np.ndarray,
        index: int,
        sample: np.ndarray,
        *,
        state: dict[str, Any] | None = None,
        noise: np.ndarray | None = None,
    ) -> np.ndarray:
        """Runs UNet call `index`'s update; see `kerasmorph.schedulers.base.Scheduler.step`.

        Args:
            state: the run's history from `new_state()`, required: an even
                call (predictor) stores its slope there, the next odd call
                (corrector) reads it.
            noise: ignored (deterministic).

        Returns:
            float32 (N, h, w, 4): after a predictor, the Euler estimate at
            `sigmas[index + 1]` (x0 after the last call); after a corrector,
            the latent at the step's end.

        Raises:
            ValueError: without a state, or for a corrector whose predictor
                (call `index − 1`) did not run with this state just before.
        """
        del noise
        state = self._require_state(state)
        index, model_output, sample = self._step_inputs(model_output, index, sample)
        if index % 2 == 0:
            return self._predict(model_output, index, sample, state)
        return self._correct(model_output, index, sample, state)

    def _predict(
        self, model_output: np.ndarray, index: int, sample: np.ndarray, state: dict[str, Any]
    ) -> np.ndarray:
        """The first call of a step: an Euler step, its slope kept for the corrector."""
        sigma, sigma_next = self.sigmas[index], self.sigmas[index + 1]
        x0 = self.denoise(model_output, sample, sigma)
        state.update(
            index=index, derivative=(sample - x0) / np.float32(sigma), sample=sample.copy()
        )
        return euler_step(sample, x0, sigma, sigma_next).astype(np.float32)

    def _correct(
        self, model_output: np.ndarray, index: int, sample: np.ndarray, state: dict[str, Any]
    ) -> np.ndarray:
        """The second call of a step: the mean of both slopes, from the step's input."""
        if state["index"] != index - 1:
            raise ValueError(
                f"Heun's call {index} corrects call {index - 1}, which must run just before it "
                f"with the same `state`. Received: index={index} after call {state['index']}"
            )
        sigma, sigma_next = self.sigmas[index - 1], self.sigmas[index]
        x0 = self.denoise(model_output, sample, sigma_next)
        derivative = (state["derivative"] + (sample - x0) / np.float32(sigma_next)) / 2
        start = state["sample"]
        state.update(index=None, derivative=None, sample=None)
        return (start + derivative * np.float32(sigma_next - sigma)).astype(np.float32)
