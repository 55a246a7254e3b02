"""KerasCV's deterministic DDIM (η = 0), reproduced bit for bit.

`keras_cv.models.StableDiffusion.generate_image` runs DDIM with timesteps
`round(arange(n)·999/(n−1))`, its stored `_ALPHAS_CUMPROD` table and
`ᾱ_prev = 1` after the last step (diffusers' `set_alpha_to_one=True`). This
module computes the same numbers: the ᾱ table is KerasCV's own (read lazily,
the only keras_cv import of `kerasmorph.schedulers`: the scaled-linear formula
reproduces it only to ~5e-8, which is not bit-exact), and every per-step
constant is computed in float64 with `math.sqrt`, then rounded to float32,
exactly as KerasCV's Python floats are when multiplied with float32 tensors.

diffusers' `DDIMScheduler.step` is not a reference for its steps: it steps
to `t − 1000 // n` whatever the spacing (diffusers issue #12633).

References:
    Song, Meng and Ermon, "Denoising Diffusion Implicit Models" (2020),
    https://arxiv.org/abs/2010.02502
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Literal

import numpy as np

from kerasmorph._checks import check_count
from kerasmorph.constants import NUM_TRAIN_TIMESTEPS
from kerasmorph.schedulers.base import FusedScheduler, check_prediction_type

AlphasCumprod = Literal["kerascv", "scaled_linear"]
ALPHAS_CUMPROD = ("kerascv", "scaled_linear")


@functools.lru_cache(maxsize=1)
def _kerascv_table() -> np.ndarray:
    from kerasmorph.kerascv_internals import stable_diffusion_name

    _ALPHAS_CUMPROD = stable_diffusion_name("constants", "_ALPHAS_CUMPROD")

    table = np.asarray(_ALPHAS_CUMPROD, dtype=np.float64)
    table.flags.writeable = False
    return table


def kerascv_alphas_cumprod() -> np.ndarray:
    """Returns KerasCV's `_ALPHAS_CUMPROD` table as float64, shape (1000,).

    Imports keras_cv (and so TensorFlow) on first call: bit-exactness with
    KerasCV needs its stored table, not a recomputation.
    """
    return _kerascv_table().copy()


def scaled_linear_alphas_cumprod(
    beta_start: float = 0.00085,
    beta_end: float = 0.012,
    num_train_timesteps: int = NUM_TRAIN_TIMESTEPS,
) -> np.ndarray:
    """Computes ᾱ_t of Stable Diffusion's scaled-linear beta schedule.

    Betas are linear in sqrt space between `beta_start` and `beta_end`; this
    reproduces KerasCV's stored table to ~5e-8 (see the tests).

    Returns:
        float64 array (num_train_timesteps,), decreasing from ~0.99915.
    """
    betas = np.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps) ** 2
    return np.cumprod(1.0 - betas)


def ddim_timesteps(num_steps: int) -> np.ndarray:
    """KerasCV's timesteps: `round(arange(num_steps) * 999 / (num_steps - 1))`.

    Args:
        num_steps: number of denoising steps, >= 1.

    Returns:
        int64 array (num_steps,), ascending from 0 to 999 (just [0] when
        `num_steps == 1`, as in KerasCV).

    Raises:
        ValueError: if `num_steps` is not an integer >= 1.
    """
    num_steps = check_count("num_steps", num_steps)
    ratio = (NUM_TRAIN_TIMESTEPS - 1) / (num_steps - 1) if num_steps > 1 else NUM_TRAIN_TIMESTEPS
    return (np.arange(0, num_steps) * ratio).round().astype(np.int64)


@dataclasses.dataclass(frozen=True)
class DDIMSchedule:
    """Per-step constants of a deterministic DDIM run, in ASCENDING timestep order.

    KerasCV's loop visits these from the last index to 0 (`DDIMScheduler`
    presents them in that visited order). At index i the update is, with eps
    the guided noise prediction:

        pred_x0 = (latent - sqrt(1 - ᾱ_i) · eps) / sqrt(ᾱ_i)
        latent  = eps · sqrt(1 - ᾱ_prev_i) + sqrt(ᾱ_prev_i) · pred_x0

    where ᾱ_prev_0 = 1 (the last update returns pred_x0).

    Attributes:
        timesteps: int64 (num_steps,).
        alphas: ᾱ at each timestep, float64 (num_steps,).
        alphas_prev: ᾱ of the next (less noisy) step, float64 (num_steps,).
    """

    timesteps: np.ndarray
    alphas: np.ndarray
    alphas_prev: np.ndarray

    @classmethod
    def create(cls, num_steps: int, alphas_cumprod: np.ndarray | None = None) -> DDIMSchedule:
        """Builds KerasCV's schedule for `num_steps` steps.

        Args:
            num_steps: number of denoising steps, >= 1.
            alphas_cumprod: ᾱ table of 1000 entries; default KerasCV's.
        """
        table = _kerascv_table() if alphas_cumprod is None else alphas_cumprod
        timesteps = ddim_timesteps(num_steps)
        alphas = np.asarray([table[t] for t in timesteps], dtype=np.float64)
        alphas_prev = np.concatenate([[1.0], alphas[:-1]])
        return cls(timesteps=timesteps, alphas=alphas, alphas_prev=alphas_prev)

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    def coefficients(self) -> np.ndarray:
        """Returns float32 (num_steps, 4): sqrt(1-ᾱ), sqrt(ᾱ), sqrt(1-ᾱ_prev), sqrt(ᾱ_prev).

        Computed in float64 with `math.sqrt`, then rounded to float32, exactly
        as KerasCV's Python floats are when multiplied with float32 tensors.
        """
        rows = [
            (
                math.sqrt(1.0 - a_t),
                math.sqrt(a_t),
                math.sqrt(1.0 - a_prev),
                math.sqrt(a_prev),
            )
            for a_t, a_prev in zip(self.alphas, self.alphas_prev)
        ]
        return np.asarray(rows, dtype=np.float32)


class DDIMScheduler(FusedScheduler):
    """KerasCV's deterministic DDIM, the default scheduler (bit-exact with KerasCV).

    Constant rows (`step_constants`, in visited order, noisiest first) are
    `(sqrt(1 − ᾱ), sqrt(ᾱ), sqrt(1 − ᾱ_next), sqrt(ᾱ_next))`, where ᾱ_next is
    the level after the step (1 after the last one, so it returns pred_x0).

    Args:
        alphas_cumprod: the ᾱ table: `"kerascv"` (KerasCV's stored table, the
            default, bit-exact) or `"scaled_linear"` (recomputed from SD's betas).
        prediction_type: `"epsilon"` (default) or `"v_prediction"` (SD 2.x
            768-v models: the UNet predicts v = sqrt(ᾱ)·ε − sqrt(1−ᾱ)·x0).

    Example:

    ```python
    scheduler = kerasmorph.schedulers.get("ddim")
    scheduler.set_timesteps(25)
    start = scheduler.add_noise(latents, noise, 10)  # img2img, strength 0.6.
    ```
    """

    name = "ddim"
    supports_inversion = True

    def __init__(
        self, alphas_cumprod: AlphasCumprod = "kerascv", prediction_type: str = "epsilon"
    ) -> None:
        super().__init__()
        self.prediction_type = check_prediction_type(prediction_type)
        if alphas_cumprod not in ALPHAS_CUMPROD:
            valid = ", ".join(repr(name) for name in ALPHAS_CUMPROD)
            raise ValueError(
                f"Unknown `alphas_cumprod` table. Valid tables: {valid}. "
                f"Received: alphas_cumprod={alphas_cumprod!r}"
            )
        self.alphas_cumprod = alphas_cumprod
        self.schedule: DDIMSchedule | None = None
        self._constants: np.ndarray | None = None

    @property
    def config(self) -> dict[str, Any]:
        return {"alphas_cumprod": self.alphas_cumprod, "prediction_type": self.prediction_type}

    def _build(self, num_steps: int) -> np.ndarray:
        table = _kerascv_table() if self.alphas_cumprod == "kerascv" else None
        if table is None:
            table = scaled_linear_alphas_cumprod()
        self.schedule = DDIMSchedule.create(num_steps, table)
        # Visited order: KerasCV's loop runs the ascending rows from the end.
        self._constants = np.ascontiguousarray(self.schedule.coefficients()[::-1])
        self._constants.flags.writeable = False
        return np.ascontiguousarray(self.schedule.timesteps[::-1])

    def step_constants(self) -> np.ndarray:
        """Float32 (num_steps, 4) in visited order; see the class docstring."""
        self._check_index(0)
        return self._constants

    def inversion_constants(self) -> np.ndarray:
        """Float32 (num_steps, 4): each row with its two levels swapped.

        `update` with row i of these goes from the level after step i back to
        the level before it, with the noise predicted at the less noisy latent.
        """
        return np.ascontiguousarray(self.step_constants()[:, [2, 3, 0, 1]])

    def noise_scales(self, index: int) -> tuple[np.float32, np.float32]:
        index = self._check_index(index, allow_end=True)
        if index == self.num_steps:
            # The level after the last step: ᾱ = 1, as in row n−1's last two columns.
            row = self._constants[-1]
            return row[3], row[2]
        row = self._constants[index]
        return row[1], row[0]

    def step(
        self,
        model_output: np.ndarray,
        index: int,
        sample: np.ndarray,
        *,
        state: dict[str, Any] | None = None,
        noise: np.ndarray | None = None,
    ) -> np.ndarray:
        del state, noise  # Single-step and deterministic.
        row = self.step_constants()[self._check_index(index)]
        output = np.asarray(model_output, dtype=np.float32)
        sample = np.asarray(sample, dtype=np.float32)
        if self.prediction_type == "v_prediction":
            eps = row[1] * output + row[0] * sample
            pred_x0 = row[1] * sample - row[0] * output
        else:
            eps = output
            pred_x0 = (sample - row[0] * eps) / row[1]
        return (eps * row[2] + row[3] * pred_x0).astype(np.float32)

    def trace_key(self):
        return (type(self), self.prediction_type)

    def update(self, sample, model_output, constants, state: tuple):
        # The operation order of KerasCV's `generate_image` (and of `step`).
        sqrt_one_minus_alpha, sqrt_alpha = constants[0], constants[1]
        sqrt_one_minus_alpha_next, sqrt_alpha_next = constants[2], constants[3]
        if self.prediction_type == "v_prediction":
            eps = sqrt_alpha * model_output + sqrt_one_minus_alpha * sample
            pred_x0 = sqrt_alpha * sample - sqrt_one_minus_alpha * model_output
            return eps * sqrt_one_minus_alpha_next + sqrt_alpha_next * pred_x0, state
        pred_x0 = (sample - sqrt_one_minus_alpha * model_output) / sqrt_alpha
        return model_output * sqrt_one_minus_alpha_next + sqrt_alpha_next * pred_x0, state
