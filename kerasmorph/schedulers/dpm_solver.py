"""DPM-Solver++ multistep (A1111's "DPM++ 2M" and "DPM++ 2M Karras").

diffusers' `DPMSolverMultistepScheduler` with `algorithm_type="dpmsolver++"`
and the midpoint solver. Each call turns the UNet output into a data
prediction x0 and steps in λ = −log σ from the call's level to the next,
`h = λ_next − λ`, combining the x0 of the last `solver_order` calls:

- order 1 (DDIM): `x_next = (σ̂_next/σ̂)·x − α_next·(e^{−h} − 1)·D0`;
- order 2 adds `−½·α_next·(e^{−h} − 1)·D1` with `D1 = (m0 − m1)/r0`,
  `r0 = h_prev / h` (DPM-Solver++(2M));
- order 3 adds the third-order terms of diffusers.

The warm-up runs order 1 then 2; as in diffusers, the last call is first
order when `final_sigmas_type="zero"` (it returns x0) or, with
`lower_order_final`, when the run has fewer than 15 calls; the second-to-last
is at most second order then.

References:
    Lu, Zhou, Bao, Chen, Li and Zhu, "DPM-Solver++: Fast Solver for Guided
    Sampling of Diffusion Probabilistic Models" (2022),
    https://arxiv.org/abs/2211.01095
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kerasmorph.schedulers.multistep import (
    BetaSchedule,
    FinalSigmasType,
    PredictionType,
    SolverScheduler,
    TimestepSpacing,
)

# diffusers drops the final orders only for runs shorter than this (`lower_order_final`).
LOWER_ORDER_FINAL_STEPS = 15


class DPMSolverMultistepScheduler(SolverScheduler):
    """DPM-Solver++ multistep (diffusers' `DPMSolverMultistepScheduler`, A1111's "DPM++ 2M").

    One UNet call per step, deterministic, any step count from 1. The state
    from `new_state()` holds the x0 estimates of the last `solver_order`
    calls and the warm-up count; pass it to every `step` of a run.

    Args:
        num_train_timesteps: training timesteps T, integer >= 2 (default 1000).
        beta_start: first β of the training schedule, in (0, 1) (0.00085).
        beta_end: last β, in (0, 1) (0.012).
        beta_schedule: `"scaled_linear"` (default) or `"linear"`.
        steps_offset: added to the `"leading"` timesteps, in [0, T − 1] (1).
        timestep_spacing: `"leading"` (default), `"linspace"` or `"trailing"`.
        prediction_type: `"epsilon"` (default) or `"v_prediction"`.
        solver_order: 1, 2 (default, "2M") or 3 ("3M").
        lower_order_final: first order on the last call and at most second
            order on the one before, in runs of fewer than 15 calls (default True).
        final_sigmas_type: `"zero"` (default: the last call returns x0) or
            `"sigma_min"` (the run ends at σ of training step 0).
        use_karras_sigmas: Karras et al.'s ρ = 7 levels (default False; True
            is "DPM++ 2M Karras").

    Example:

    ```python
    scheduler = kerasmorph.schedulers.get("dpmpp_2m")
    scheduler.set_timesteps(20)
    state = scheduler.new_state()
    latents = noise * scheduler.init_noise_sigma
    for index in range(scheduler.num_model_calls):
        output = unet(scheduler.scale_model_input(latents, index), scheduler.timesteps[index])
        latents = scheduler.step(output, index, latents, state=state)
    ```
    """

    name = "dpmpp_2m"
    diffusers_class = "DPMSolverMultistepScheduler"
    diffusers_config = {"algorithm_type": "dpmsolver++", "solver_type": "midpoint"}

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        beta_schedule: BetaSchedule = "scaled_linear",
        steps_offset: int = 1,
        timestep_spacing: TimestepSpacing = "leading",
        prediction_type: PredictionType = "epsilon",
        solver_order: int = 2,
        lower_order_final: bool = True,
        final_sigmas_type: FinalSigmasType = "zero",
        use_karras_sigmas: bool = False,
    ) -> None:
        super().__init__(
            num_train_timesteps=num_train_timesteps,
            beta_start=beta_start,
            beta_end=beta_end,
            beta_schedule=beta_schedule,
            steps_offset=steps_offset,
            timestep_spacing=timestep_spacing,
            prediction_type=prediction_type,
            solver_order=solver_order,
            lower_order_final=lower_order_final,
            final_sigmas_type=final_sigmas_type,
            use_karras_sigmas=use_karras_sigmas,
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
        """Runs UNet call `index`'s update; see `kerasmorph.schedulers.base.Scheduler.step`.

        Args:
            model_output: float (N, h, w, 4), the guided ε (or v) prediction.
            index: in [0, num_model_calls), one more than the last call's.
            sample: float (N, h, w, 4), the latent at the call's input.
            state: the run's history from `new_state()`, required, updated in place.
            noise: ignored (deterministic).

        Returns:
            float32 (N, h, w, 4): the latent at level `sigmas[index + 1]`; the
            x0 estimate after the last call with `final_sigmas_type="zero"`.

        Raises:
            ValueError: if `state` is missing or from another run, or the
                shapes differ.
        """
        del noise
        index, model_output, sample, state = self._begin_step(model_output, index, sample, state)
        x0 = self._data_prediction(model_output, index, sample)
        outputs = (state["model_outputs"] + [x0])[-self.solver_order :]
        order = self._order_at(index, state["lower_order_nums"])
        state["model_outputs"] = outputs
        state["lower_order_nums"] = min(state["lower_order_nums"] + 1, self.solver_order)
        return self._update(outputs[-order:], index, sample).astype(np.float32)

    def _order_at(self, index: int, warmed_up: int) -> int:
        """The solver order of call `index` after `warmed_up` earlier calls (diffusers' rule)."""
        num_calls = self.num_model_calls
        short = self.lower_order_final and num_calls < LOWER_ORDER_FINAL_STEPS
        if index == num_calls - 1 and (short or self.final_sigmas_type == "zero"):
            return 1
        order = min(self.solver_order, warmed_up + 1)
        if index == num_calls - 2 and short:
            return min(order, 2)
        return order

    def _update(self, outputs: list[np.ndarray], index: int, sample: np.ndarray) -> np.ndarray:
        """DPM-Solver++ from level `index` to `index + 1` with the last `len(outputs)` x0s.

        Args:
            outputs: 1 to 3 float64 x0 estimates, oldest first (`outputs[-1]` is this call's).
            index: the call.
            sample: float64, the latent at the call's input.

        Returns:
            float64, the latent at level `index + 1`.
        """
        alpha_next = self._alpha_sigma(index + 1)[0]
        decay = self.sigmas[index + 1] / self.sigmas[index]  # e^{−h}; 0 at a final σ of 0.
        m0 = outputs[-1]
        result = self._sample_ratio(index + 1, index) * sample - alpha_next * (decay - 1.0) * m0
        if len(outputs) == 1:
            return result
        lambdas = self._lambdas
        h = lambdas[index + 1] - lambdas[index]
        r0 = (lambdas[index] - lambdas[index - 1]) / h
        d1_0 = (m0 - outputs[-2]) / r0
        if len(outputs) == 2:
            return result - 0.5 * alpha_next * (decay - 1.0) * d1_0
        r1 = (lambdas[index - 1] - lambdas[index - 2]) / h
        d1_1 = (outputs[-2] - outputs[-3]) / r1
        d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
        d2 = (d1_0 - d1_1) / (r0 + r1)
        expm1 = math.expm1(-h)
        return (
            result
            + alpha_next * (expm1 / h + 1.0) * d1
            - alpha_next * ((expm1 + h) / h**2 - 0.5) * d2
        )


class DPMSolverMultistepKarrasScheduler(DPMSolverMultistepScheduler):
    """DPM-Solver++ 2M on Karras et al.'s noise levels (A1111's "DPM++ 2M Karras").

    `DPMSolverMultistepScheduler` with `use_karras_sigmas=True` by default
    (diffusers' `DPMSolverMultistepScheduler(use_karras_sigmas=True)`): ρ = 7
    levels between the training schedule's σ_max and σ_min, timesteps the
    rounded training steps of those levels (`timestep_spacing` then has no
    effect). Arguments as `DPMSolverMultistepScheduler`.

    Example:

    ```python
    scheduler = kerasmorph.schedulers.get("dpmpp_2m_karras")
    scheduler.set_timesteps(20)
    scheduler.timesteps[:3]  # [999, 962, 921]
    ```
    """

    name = "dpmpp_2m_karras"

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        beta_schedule: BetaSchedule = "scaled_linear",
        steps_offset: int = 1,
        timestep_spacing: TimestepSpacing = "leading",
        prediction_type: PredictionType = "epsilon",
        solver_order: int = 2,
        lower_order_final: bool = True,
        final_sigmas_type: FinalSigmasType = "zero",
        use_karras_sigmas: bool = True,
    ) -> None:
        super().__init__(
            num_train_timesteps=num_train_timesteps,
            beta_start=beta_start,
            beta_end=beta_end,
            beta_schedule=beta_schedule,
            steps_offset=steps_offset,
            timestep_spacing=timestep_spacing,
            prediction_type=prediction_type,
            solver_order=solver_order,
            lower_order_final=lower_order_final,
            final_sigmas_type=final_sigmas_type,
            use_karras_sigmas=use_karras_sigmas,
        )
