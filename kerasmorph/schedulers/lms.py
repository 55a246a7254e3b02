"""Linear multistep (K-LMS): diffusers' `LMSDiscreteScheduler` with order 4 (A1111's "LMS").

Step i integrates the probability-flow ODE `dx/dσ = d(σ)` from σ_i to σ_(i+1)
with the polynomial through the last k slopes `d_(i−j) = (x_(i−j) − x0_(i−j)) / σ_(i−j)`
(k = 1, 2, 3, then 4): `x_(i+1) = x_i + Σ_j c_j · d_(i−j)`, where `c_j` is the
integral over [σ_i, σ_(i+1)] of the Lagrange basis polynomial of node
σ_(i−j) among σ_i … σ_(i−k+1). A polynomial of degree ≤ 3 integrates exactly
with `numpy.polynomial` (diffusers calls `scipy.integrate.quad`, exact for it too).

The order is the number of slopes the run has seen (capped at 4), as in
k-diffusion's `sample_lms` and so A1111, also for img2img: a run that starts
at call s > 0 takes a first-order step first. diffusers' own img2img uses
`min(s + 1, 4)` there instead, weighting the one slope it has with a
coefficient of nodes it never visited (diffusers issue #5630); its
text-to-image runs (s = 0) are the same as these step for step.

References:
    Crowson, k-diffusion, `k_diffusion/sampling.py` (`sample_lms`,
    `linear_multistep_coeff`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from numpy.polynomial import Polynomial

from kerasmorph.schedulers.sigmas import SigmaScheduler


def lms_coefficients(sigmas: np.ndarray, index: int, order: int) -> list[float]:
    """The weights of the last `order` slopes in LMS step `index`.

    Args:
        sigmas: float (num_steps + 1,), the run's levels, ending with 0.
        index: the step, in [order − 1, num_steps).
        order: how many slopes (1 to 4): those of steps index, index − 1, ….

    Returns:
        `order` floats: `c_j = ∫_{σ_index}^{σ_(index+1)} ℓ_j(τ) dτ`, `ℓ_j` the
        Lagrange basis polynomial of node σ_(index−j) among the `order` nodes.

    Example:

    ```python
    lms_coefficients(np.array([2.0, 1.0, 0.0]), 1, 1)  # [-1.0]: an Euler step.
    ```
    """
    nodes = np.asarray(sigmas, dtype=np.float64)[index - np.arange(order)]
    start, end = float(sigmas[index]), float(sigmas[index + 1])
    coefficients = []
    for j in range(order):
        basis = Polynomial([1.0])
        for other in np.delete(nodes, j):
            basis *= Polynomial([-other, 1.0]) / (nodes[j] - other)
        antiderivative = basis.integ()
        coefficients.append(float(antiderivative(end) - antiderivative(start)))
    return coefficients


class LMSScheduler(SigmaScheduler):
    """Linear multistep of order 4 (diffusers' `LMSDiscreteScheduler`, k-diffusion's `sample_lms`).

    One UNet call per step. Arguments as
    `kerasmorph.schedulers.sigmas.SigmaScheduler` (SD 1.x's config by
    default; `use_karras_sigmas=True` is A1111's "LMS Karras"). Any step
    count from 1 (one step is one Euler step, to x0). `step` needs the run's
    `state` (from `new_state()`), which keeps the last four slopes.

    Attributes:
        max_order: 4, the most slopes a step combines (diffusers' `order`
            argument of `step`; the class attribute `order`, img2img's, is 1).

    Example:

    ```python
    scheduler = kerasmorph.schedulers.get("lms")
    scheduler.set_timesteps(50)
    state = scheduler.new_state()
    latents = noise * scheduler.init_noise_sigma
    for index in range(scheduler.num_model_calls):
        output = unet(scheduler.scale_model_input(latents, index), scheduler.timesteps[index])
        latents = scheduler.step(output, index, latents, state=state)
    ```
    """

    name = "lms"
    max_order: ClassVar[int] = 4

    def new_state(self) -> dict[str, Any]:
        """A fresh history: the last step's index and up to `max_order` slopes, oldest first."""
        return {"index": None, "derivatives": []}

    def step(
        self,
        model_output: np.ndarray,
        index: int,
        sample: np.ndarray,
        *,
        state: dict[str, Any] | None = None,
        noise: np.ndarray | None = None,
    ) -> np.ndarray:
        """Runs LMS step `index`; see `kerasmorph.schedulers.base.Scheduler.step`.

        Args:
            state: the run's history from `new_state()`, required; a fresh
                one starts at any index (img2img), later steps must follow on.
            noise: ignored (deterministic).

        Returns:
            float32 (N, h, w, 4): the latent at level `sigmas[index + 1]`
            (after the last step, the multistep estimate at σ = 0; x0, to
            rounding, when the run has a single step).

        Raises:
            ValueError: without a state, or with one whose last step is not
                `index − 1`.
        """
        del noise
        state = self._require_state(state)
        index, model_output, sample = self._step_inputs(model_output, index, sample)
        derivatives = state["derivatives"]
        if derivatives and state["index"] != index - 1:
            raise ValueError(
                f"LMS step {index} must follow step {index - 1} of the same run "
                f"(or start with a fresh `state`). Received: index={index} after step "
                f"{state['index']}"
            )
        sigma = self.sigmas[index]
        x0 = self.denoise(model_output, sample, sigma)
        derivatives.append((sample - x0) / np.float32(sigma))
        del derivatives[: -self.max_order]
        state["index"] = index
        coefficients = lms_coefficients(self.sigmas, index, len(derivatives))
        update = sum(c * d for c, d in zip(coefficients, reversed(derivatives)))
        return (sample + update).astype(np.float32)
