"""PNDM's pseudo linear multistep method, PLMS (diffusers' default for Stable Diffusion 1.x).

diffusers' `PNDMScheduler` with `skip_prk_steps=True` (the configuration SD
1.x ships): no Runge–Kutta warm-up. With spaced timesteps t_0 < … < t_{n−1}
and `δ = T // n`, a run makes n + 1 UNet calls at `t_{n−1}, t_{n−2}, t_{n−2},
t_{n−3}, …, t_0`: the second call re-evaluates the first step at its end
and averages the two outputs (a Heun-like start); from then on each call
combines the last outputs with the Adams–Bashforth weights (3, −1)/2,
(23, −16, 5)/12, (55, −59, 37, −9)/24 and moves the latent with PNDM's
transfer (its eq. 9) from ᾱ_t to ᾱ_{t−δ}. Before the transfer a v
prediction becomes the noise `sqrt(ᾱ_t)·v + sqrt(1 − ᾱ_t)·x`.

As in diffusers, every call steps to `t − δ` whatever the spacing: with
`"linspace"` (and `"trailing"` when n does not divide T) that is not the
next call's timestep (the same trap as diffusers' DDIM, issue #12633). The
last call steps to ᾱ_0 (`set_alpha_to_one=False`, SD's default: a
latent with 2.9% noise left) or to ᾱ = 1 (the x0 estimate).

References:
    Liu, Ren, Lin and Zhao, "Pseudo Numerical Methods for Diffusion Models
    on Manifolds" (2022), https://arxiv.org/abs/2202.09778
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kerasmorph.schedulers import common
from kerasmorph.schedulers.multistep import (
    BetaSchedule,
    MultistepScheduler,
    PredictionType,
    TimestepSpacing,
    check_timesteps,
)

# Linear multistep weights of the newest output first, by the number of outputs kept.
PLMS_WEIGHTS = {
    2: (3 / 2, -1 / 2),
    3: (23 / 12, -16 / 12, 5 / 12),
    4: (55 / 24, -59 / 24, 37 / 24, -9 / 24),
}


class PNDMScheduler(MultistepScheduler):
    """PLMS (diffusers' `PNDMScheduler(skip_prk_steps=True)`, A1111's "PLMS").

    `num_steps + 1` UNet calls (1 for a single step), deterministic, any
    step count from 1. The state from `new_state()` holds the last four UNet
    outputs (`"ets"`), the call counter and the first call's latent; pass it
    to every `step` of a run (an img2img run starts with a fresh state at
    `start_index`, as diffusers' does).

    Args:
        num_train_timesteps: training timesteps T, integer >= 2 (default 1000).
        beta_start: first β of the training schedule, in (0, 1) (0.00085).
        beta_end: last β, in (0, 1) (0.012).
        beta_schedule: `"scaled_linear"` (default) or `"linear"`.
        steps_offset: added to the `"leading"` timesteps, in [0, T − 1] (1).
        timestep_spacing: `"leading"` (default), `"linspace"` or `"trailing"`.
        prediction_type: `"epsilon"` (default) or `"v_prediction"`.
        set_alpha_to_one: whether the last call steps to ᾱ = 1 (x0) rather
            than to ᾱ_0 of the training schedule (default False, as SD 1.x).
        skip_prk_steps: must be True (the Runge–Kutta warm-up of the paper
            is not implemented; SD 1.x's config skips it).

    Raises:
        ValueError: for an invalid argument or `skip_prk_steps=False`.

    Example:

    ```python
    scheduler = kerasmorph.schedulers.get("pndm")
    scheduler.set_timesteps(50)  # 51 UNet calls.
    state = scheduler.new_state()
    for index in range(scheduler.num_model_calls):
        output = unet(scheduler.scale_model_input(latents, index), scheduler.timesteps[index])
        latents = scheduler.step(output, index, latents, state=state)
    ```
    """

    name = "pndm"
    diffusers_class = "PNDMScheduler"

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        beta_schedule: BetaSchedule = "scaled_linear",
        steps_offset: int = 1,
        timestep_spacing: TimestepSpacing = "leading",
        prediction_type: PredictionType = "epsilon",
        set_alpha_to_one: bool = False,
        skip_prk_steps: bool = True,
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
        self.set_alpha_to_one = common.check_bool("set_alpha_to_one", set_alpha_to_one)
        if not (isinstance(skip_prk_steps, (bool, np.bool_)) and skip_prk_steps):
            raise ValueError(
                "`skip_prk_steps` must be True (PLMS without the Runge-Kutta warm-up, as "
                f"Stable Diffusion's config). Received: skip_prk_steps={skip_prk_steps!r}"
            )
        self.skip_prk_steps = True
        self.final_alpha_cumprod = 1.0 if set_alpha_to_one else float(self.alphas_cumprod[0])
        self.step_ratio: int | None = None

    def _new_history(self) -> dict[str, Any]:
        # ets: the last (up to 4) raw UNet outputs, oldest first (not the second call's);
        # counter: calls so far; cur_sample: the first call's input latent.
        return {"ets": [], "counter": 0, "cur_sample": None}

    def _build(self, num_steps: int) -> np.ndarray:
        spaced = common.spaced_timesteps(
            num_steps, self.num_train_timesteps, self.timestep_spacing, self.steps_offset
        )
        context = f"timestep_spacing={self.timestep_spacing!r}, steps_offset={self.steps_offset}"
        ascending = check_timesteps(
            np.round(spaced)[::-1], num_steps, self.num_train_timesteps, context
        )
        self.step_ratio = self.num_train_timesteps // num_steps
        # diffusers' plms_timesteps: t_{n−1}, t_{n−2}, t_{n−2}, t_{n−3}, …, t_0.
        calls = np.concatenate([ascending[:-1], ascending[-2:-1], ascending[-1:]])[::-1]
        return np.ascontiguousarray(calls, dtype=np.int64)

    def noise_scales(self, index: int) -> tuple[np.float32, np.float32]:
        index = self._check_index(index, allow_end=True)
        if index == self.num_model_calls:
            return np.float32(1.0), np.float32(0.0)
        alpha = float(self.alphas_cumprod[self.timesteps[index]])
        return np.float32(math.sqrt(alpha)), np.float32(math.sqrt(1.0 - alpha))

    def step(
        self,
        model_output: np.ndarray,
        index: int,
        sample: np.ndarray,
        *,
        state: dict[str, Any] | None = None,
        noise: np.ndarray | None = None,
    ) -> np.ndarray:
        """Runs UNet call `index`'s PLMS update; see `kerasmorph.schedulers.base.Scheduler.step`.

        Args:
            model_output: float (N, h, w, 4), the guided ε (or v) prediction.
            index: in [0, num_model_calls), one more than the last call's.
            sample: float (N, h, w, 4), the latent at the call's input.
            state: the run's history from `new_state()`, required, updated in place.
            noise: ignored (deterministic).

        Returns:
            float32 (N, h, w, 4): the latent at ᾱ of `timesteps[index] − T // n`
            (ᾱ_0, or 1 with `set_alpha_to_one`, after the last call).

        Raises:
            ValueError: if `state` is missing or from another run, or the
                shapes differ.
        """
        del noise
        index, model_output, sample, state = self._begin_step(model_output, index, sample, state)
        timestep = int(self.timesteps[index])
        previous = timestep - self.step_ratio
        counter = state["counter"]
        if counter != 1:
            state["ets"] = state["ets"][-3:] + [model_output]
        else:  # The second call redoes the first step, from the first call's latent.
            timestep, previous = timestep + self.step_ratio, timestep
        ets = state["ets"]
        if len(ets) == 1 and counter == 0:
            combined, state["cur_sample"] = model_output, sample
        elif len(ets) == 1 and counter == 1:
            combined, sample = (model_output + ets[-1]) / 2, state["cur_sample"]
            state["cur_sample"] = None
        else:
            combined = sum(w * e for w, e in zip(PLMS_WEIGHTS[len(ets)], reversed(ets)))
        state["counter"] = counter + 1
        return self._transfer(sample, timestep, previous, combined).astype(np.float32)

    def _transfer(
        self, sample: np.ndarray, timestep: int, previous: int, model_output: np.ndarray
    ) -> np.ndarray:
        """PNDM's eq. 9: the latent at `timestep` moved to `previous` along `model_output`.

        Args:
            sample: float64 (N, h, w, 4), the latent at `timestep`.
            timestep: a training timestep.
            previous: the target timestep; < 0 means the final ᾱ.
            model_output: float64, the combined ε (or v) prediction.

        Returns:
            float64 (N, h, w, 4).
        """
        alpha = float(self.alphas_cumprod[timestep])
        alpha_prev = (
            float(self.alphas_cumprod[previous]) if previous >= 0 else self.final_alpha_cumprod
        )
        beta, beta_prev = 1.0 - alpha, 1.0 - alpha_prev
        if self.prediction_type == "v_prediction":
            model_output = math.sqrt(alpha) * model_output + math.sqrt(beta) * sample
        sample_coefficient = math.sqrt(alpha_prev / alpha)
        denominator = alpha * math.sqrt(beta_prev) + math.sqrt(alpha * beta * alpha_prev)
        return sample_coefficient * sample - (alpha_prev - alpha) * model_output / denominator
