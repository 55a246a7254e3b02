"""UniPC multistep (A1111's "UniPC"): a predictor-corrector on DPM-Solver++'s data prediction.

diffusers' `UniPCMultistepScheduler` with its defaults `solver_type="bh2"`
and `predict_x0=True`. Each call turns the UNet output into x0 and then

1. corrects the latent it was given (UniC, from the second call on): the
   last call's prediction is redone with this call's x0 as one more point,
   `x = σ̂/σ̂_prev·x_prev − α·h·φ1·m_prev − α·B(h)·(Σ ρc_k·D_k + ρc_last·(x0 − m_prev))`;
2. predicts the next latent from the corrected one (UniP) with the x0 of the
   last `order` calls, `x_next = σ̂_next/σ̂·x − α_next·h·φ1·m0 − α_next·B(h)·Σ ρp_k·D_k`,

with h the step in λ = −log σ, `h·φ1 = e^{−h} − 1`, `B(h) = e^{−h} − 1`
(bh2) and ρ the solution of UniPC's small linear system (½ for order 2).
The warm-up runs order 1 then 2; with `lower_order_final` the order never
exceeds the calls left, so the last call is first order and returns x0
(with `final_sigmas_type="zero"`). x0 is taken from the uncorrected latent,
as in diffusers.

References:
    Zhao, Bai, Rao, Zhou and Lu, "UniPC: A Unified Predictor-Corrector
    Framework for Fast Sampling of Diffusion Models" (2023),
    https://arxiv.org/abs/2302.04867
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


def unipc_coefficients(rks: np.ndarray, h: float) -> tuple[float, np.ndarray, np.ndarray]:
    """UniPC's (bh2, data-prediction) `h·φ1`, matrix R and vector b for step size `h`.

    Args:
        rks: float64 (K,), the history's λ offsets over h, ending with 1.
        h: the step in λ, > 0 (`inf` to a final σ of 0).

    Returns:
        `(h_phi_1, R, b)`: `e^{−h} − 1` (also B(h) for bh2), float64 (K, K)
        with row i = rks^i, and float64 (K,); ρ solves `R·ρ = b`.
    """
    hh = -h
    h_phi_1 = math.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1.0
    factorial = 1
    rows, b = [], []
    for i in range(1, len(rks) + 1):
        rows.append(rks ** (i - 1))
        b.append(h_phi_k * factorial / h_phi_1)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1.0 / factorial
    return h_phi_1, np.stack(rows), np.asarray(b)


class UniPCMultistepScheduler(SolverScheduler):
    """UniPC, bh2, data prediction (diffusers' `UniPCMultistepScheduler`, A1111's "UniPC").

    One UNet call per step, deterministic, any step count from 1. The state
    from `new_state()` holds the x0 estimates of the last `solver_order`
    calls, the warm-up count, the last call's (corrected) input latent and
    its order (the corrector's); pass it to every `step` of a run.

    Args:
        num_train_timesteps: training timesteps T, integer >= 2 (default 1000).
        beta_start: first β of the training schedule, in (0, 1) (0.00085).
        beta_end: last β, in (0, 1) (0.012).
        beta_schedule: `"scaled_linear"` (default) or `"linear"`.
        steps_offset: added to the `"leading"` timesteps, in [0, T − 1] (1).
        timestep_spacing: `"leading"` (default), `"linspace"` or `"trailing"`.
        prediction_type: `"epsilon"` (default) or `"v_prediction"`.
        solver_order: 1, 2 (default) or 3.
        lower_order_final: cap the order at the calls left (default True);
            `False` needs `final_sigmas_type="sigma_min"` (diffusers' last
            step to σ = 0 then divides by an infinite step and returns inf).
        final_sigmas_type: `"zero"` (default: the last call returns x0) or
            `"sigma_min"` (the run ends at σ of training step 0).
        use_karras_sigmas: Karras et al.'s ρ = 7 levels (default False).

    Raises:
        ValueError: for an invalid argument, or `lower_order_final=False`
            with `final_sigmas_type="zero"` (and `solver_order` > 1); from
            `set_timesteps`, for 1 step with `use_karras_sigmas` and
            `final_sigmas_type="sigma_min"` (the minimum is then 2).

    Example:

    ```python
    scheduler = kerasmorph.schedulers.get("unipc")
    scheduler.set_timesteps(20)
    state = scheduler.new_state()
    for index in range(scheduler.num_model_calls):
        output = unet(scheduler.scale_model_input(latents, index), scheduler.timesteps[index])
        latents = scheduler.step(output, index, latents, state=state)
    ```
    """

    name = "unipc"
    diffusers_class = "UniPCMultistepScheduler"
    diffusers_config = {"solver_type": "bh2", "predict_x0": True, "disable_corrector": []}

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
        if not self.lower_order_final and self.final_sigmas_type == "zero" and solver_order > 1:
            raise ValueError(
                "`lower_order_final=False` needs `final_sigmas_type='sigma_min'` for UniPC of "
                "order > 1 (a multistep step to σ = 0 divides by an infinite step). "
                "Received: lower_order_final=False, final_sigmas_type='zero'"
            )

    def _build(self, num_steps: int) -> np.ndarray:
        if num_steps == 1 and self.use_karras_sigmas and self.final_sigmas_type == "sigma_min":
            # diffusers ends this run at the ramp's last level, its only one: a step of h = 0.
            raise ValueError(
                "UniPC with `use_karras_sigmas=True` and `final_sigmas_type='sigma_min'` needs "
                "num_steps >= 2 (one Karras level would end where it starts). "
                f"Received: num_steps={num_steps}"
            )
        return super()._build(num_steps)

    def _new_history(self) -> dict[str, Any]:
        # last_sample: the last call's corrected input latent; order: its predictor's order.
        return {"model_outputs": [], "lower_order_nums": 0, "last_sample": None, "order": 0}

    def step(
        self,
        model_output: np.ndarray,
        index: int,
        sample: np.ndarray,
        *,
        state: dict[str, Any] | None = None,
        noise: np.ndarray | None = None,
    ) -> np.ndarray:
        """Runs UNet call `index`'s correction and prediction; see `Scheduler.step`.

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
        if state["last_sample"] is not None:
            sample = self._correct(x0, index, state)
        outputs = (state["model_outputs"] + [x0])[-self.solver_order :]
        order = self.solver_order
        if self.lower_order_final:
            order = min(order, self.num_model_calls - index)
        order = min(order, state["lower_order_nums"] + 1)
        state.update(model_outputs=outputs, last_sample=sample, order=order)
        state["lower_order_nums"] = min(state["lower_order_nums"] + 1, self.solver_order)
        return self._predict(outputs, index, sample, order).astype(np.float32)

    def _terms(self, outputs: list[np.ndarray], target: int, base: int, order: int):
        """What UniP and UniC share for a step from level `base` to `target`.

        Args:
            outputs: float64 x0 estimates, oldest first; `outputs[-1]` is
                level `base`'s, `outputs[-1 - k]` level `base − k`'s.
            target, base: levels (indices into `sigmas`).
            order: points used, 1 to 3.

        Returns:
            `(alpha_target, h_phi_1, differences, R, b)`: the differences
            `D_k = (m_k − m0)/r_k` for k < order (float64 list).
        """
        lambdas = self._lambdas
        h = lambdas[target] - lambdas[base]
        rks = [(lambdas[base - k] - lambdas[base]) / h for k in range(1, order)]
        differences = [(outputs[-1 - k] - outputs[-1]) / rk for k, rk in enumerate(rks, 1)]
        h_phi_1, matrix, vector = unipc_coefficients(np.asarray(rks + [1.0]), h)
        return self._alpha_sigma(target)[0], h_phi_1, differences, matrix, vector

    def _predict(
        self, outputs: list[np.ndarray], index: int, sample: np.ndarray, order: int
    ) -> np.ndarray:
        """UniP from level `index` to `index + 1`, float64."""
        alpha, h_phi_1, differences, matrix, vector = self._terms(outputs, index + 1, index, order)
        result = self._sample_ratio(index + 1, index) * sample - alpha * h_phi_1 * outputs[-1]
        if order == 1:
            return result
        rhos = [0.5] if order == 2 else np.linalg.solve(matrix[:-1, :-1], vector[:-1])
        return result - alpha * h_phi_1 * sum(rho * d for rho, d in zip(rhos, differences))

    def _correct(self, x0: np.ndarray, index: int, state: dict[str, Any]) -> np.ndarray:
        """UniC: the last call's step redone with this call's x0, float64."""
        outputs, order = state["model_outputs"], state["order"]
        alpha, h_phi_1, differences, matrix, vector = self._terms(outputs, index, index - 1, order)
        rhos = [0.5] if order == 1 else np.linalg.solve(matrix, vector)
        residual = sum(rho * d for rho, d in zip(rhos[:-1], differences)) + rhos[-1] * (
            x0 - outputs[-1]
        )
        last = state["last_sample"]
        ratio = self._sample_ratio(index, index - 1)
        return ratio * last - alpha * h_phi_1 * outputs[-1] - alpha * h_phi_1 * residual
