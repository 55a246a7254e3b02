"""The scheduler protocol: what the denoising loop needs from a sampling algorithm.

A scheduler owns the arithmetic of one algorithm (DDIM, later PNDM, Euler, DPM++),
in the manner of diffusers and keras-hub: construct it from a small config, call
`set_timesteps(num_steps)`, then step it. Indices count the steps in the order
they are VISITED, noisiest first (like diffusers' `timesteps`): index 0 is the
first step of a text-to-image run, `num_steps - 1` the last.

Indices count UNet calls: most schedulers make one per step, Heun two (its
`timesteps` repeat), PNDM one more than the step count; `num_model_calls` is
`len(timesteps)`. Every scheduler has the numpy form the sampler can always
run on the host between compiled UNet calls:

- `scale_model_input(sample, index)`: the UNet's input (σ-scaling for the
  sigma-based schedulers);
- `step(model_output, index, sample, state=..., noise=...)`: the update in
  float32, `state` a dict the scheduler keeps its multistep history in (from
  `new_state()`), `noise` the fresh per-step noise of stochastic
  (ancestral) schedulers, given by the caller so that walks can make it
  coherent across frames.

`FusedScheduler` adds the form the compiled loop of
`kerasmorph.sampler.Sampler` traces INTO the guided step (`step_constants` +
`model_input` + `update`): everything that depends on the step count is in
one float32 row per step, passed as a tensor, so a render of any length traces
once per (batch size, image size). KerasCV's DDIM is fused (bit-exact with
KerasCV); the others run their numpy `step` on the host, which keeps them
exact against diffusers and costs microseconds per step.

Numpy only: TensorFlow is imported inside the TF hooks of fused schedulers
(`initial_state`, `update`), which only run inside the sampler.
"""

from __future__ import annotations

import abc
from collections.abc import Hashable
from typing import Any, ClassVar

import numpy as np

from kerasmorph._checks import check_count, check_int

PREDICTION_TYPES = ("epsilon", "v_prediction")


def check_prediction_type(prediction_type: Any) -> str:
    """Returns `prediction_type` if it is one of `PREDICTION_TYPES`, else raises."""
    if prediction_type not in PREDICTION_TYPES:
        valid = ", ".join(repr(name) for name in PREDICTION_TYPES)
        raise ValueError(
            f"`prediction_type` must be one of {valid}. "
            f"Received: prediction_type={prediction_type!r}"
        )
    return prediction_type


class Scheduler(abc.ABC):
    """Base class of the samplers' per-step arithmetic (the numpy form).

    Subclasses set `name`, implement `config`, `_build`, `noise_scales` and
    `step`, and override `scale_model_input`, `new_state` and
    `init_noise_sigma` when the algorithm needs them.

    Attributes:
        name: the registry name (`kerasmorph.schedulers.get(name)`).
        supports_inversion: whether `kerasmorph.sampler.Sampler.invert` can run
            the algorithm backwards (deterministic DDIM only).
        init_noise_sigma: the standard deviation of the starting noise; the
            caller scales standard-normal noise by it (1.0 for DDIM, σ_max
            for sigma-based schedulers).
        order: UNet calls per step for img2img's start (`start_index`): 2 for
            Heun, 1 otherwise (as diffusers' `order`).
        stochastic: whether `step` needs fresh `noise` (ancestral samplers).
        prediction_type: what the UNet predicts: `"epsilon"` (the noise) or
            `"v_prediction"` (SD 2.x 768-v models).
        num_steps: steps of the schedule; `None` until `set_timesteps`.
        timesteps: int64 or float (num_model_calls,), the training timesteps
            of the UNet calls in visited order (noisiest first); `None` until
            `set_timesteps`.
    """

    name: ClassVar[str]
    supports_inversion: ClassVar[bool] = False
    order: ClassVar[int] = 1
    stochastic: ClassVar[bool] = False
    init_noise_sigma: float = 1.0
    prediction_type: str = "epsilon"

    def __init__(self) -> None:
        self.num_steps: int | None = None
        self.timesteps: np.ndarray | None = None

    @property
    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """The constructor arguments, JSON-serialisable (for render manifests)."""

    def set_timesteps(self, num_steps: int) -> None:
        """Builds the schedule for `num_steps` denoising steps.

        Args:
            num_steps: integer >= 1.

        Raises:
            ValueError: if `num_steps` is not an integer >= 1.
        """
        num_steps = check_count("num_steps", num_steps)
        # Built first: a count the algorithm refuses leaves the scheduler as it was.
        previous = self.num_steps
        self.num_steps = num_steps
        try:
            self.timesteps = self._build(num_steps)
        except BaseException:
            self.num_steps = previous
            raise

    @abc.abstractmethod
    def _build(self, num_steps: int) -> np.ndarray:
        """Computes the per-step tables; returns the timesteps in visited order."""

    @property
    def num_model_calls(self) -> int:
        """UNet calls of a full run: `len(timesteps)` (`num_steps` for most schedulers)."""
        if self.timesteps is None:
            raise RuntimeError(
                f"Call `set_timesteps(num_steps)` on the {self.name!r} scheduler before using it."
            )
        return len(self.timesteps)

    def start_index(self, num_denoise: int) -> int:
        """The first UNet call of an img2img run that denoises `num_denoise` of the steps.

        As diffusers' img2img pipelines: `(num_steps − num_denoise) · order`.

        Args:
            num_denoise: steps to run, in [1, num_steps].
        """
        num_denoise = check_int("num_denoise", num_denoise, 1, self.num_steps)
        return (self.num_steps - num_denoise) * self.order

    # ------------------------------------------------------------- noise levels
    @abc.abstractmethod
    def noise_scales(self, index: int) -> tuple[np.float32, np.float32]:
        """The sample level at the INPUT of visited step `index`.

        Args:
            index: in [0, num_model_calls]; `num_model_calls` is the clean end.

        Returns:
            `(signal, noise)` float32 scalars: a clean `x` noised with `ε` to
            that level is `signal·x + noise·ε` (`(1.0, 0.0)` at the end).
        """

    def add_noise(self, original: np.ndarray, noise: np.ndarray, index: int) -> np.ndarray:
        """Noises clean latents to the level at the input of visited step `index`.

        img2img starts here (`index` = the number of skipped steps); inpainting
        blends its kept region to `index = i + 1` after step i (the sampler
        does that with the same `noise_scales`).

        Args:
            original: float (N, h, w, 4) clean latents.
            noise: float (N, h, w, 4) standard-normal noise.
            index: in [0, num_model_calls]; the end returns `original` itself.

        Returns:
            float32 (N, h, w, 4): `signal·original + noise_scale·noise`.
        """
        index = self._check_index(index, allow_end=True)
        original = np.asarray(original, dtype=np.float32)
        if index == self.num_model_calls:
            return original.copy()
        signal, scale = self.noise_scales(index)
        return (signal * original + scale * np.asarray(noise, dtype=np.float32)).astype(np.float32)

    # ------------------------------------------------------------ numpy update
    def scale_model_input(self, sample: np.ndarray, index: int) -> np.ndarray:
        """The UNet's input at call `index` (identity unless sigma-based).

        Args:
            sample: float32 (N, h, w, 4), the latent at the call's input.
            index: in [0, num_model_calls).

        Returns:
            float32 (N, h, w, 4).
        """
        self._check_index(index)
        return np.asarray(sample, dtype=np.float32)

    def new_state(self) -> dict[str, Any]:
        """A fresh history for one run of `step` (multistep schedulers keep past outputs)."""
        return {}

    @abc.abstractmethod
    def step(
        self,
        model_output: np.ndarray,
        index: int,
        sample: np.ndarray,
        *,
        state: dict[str, Any] | None = None,
        noise: np.ndarray | None = None,
    ) -> np.ndarray:
        """Runs UNet call `index`'s update in numpy float32 (the reference update).

        Args:
            model_output: float (N, h, w, 4), the guided UNet prediction (ε or v,
                as `prediction_type` says).
            index: in [0, num_model_calls).
            sample: float (N, h, w, 4), the latent at the call's input.
            state: the run's history from `new_state()`, updated in place;
                needed by multistep schedulers (PNDM, LMS, DPM++, UniPC, Heun).
            noise: float (N, h, w, 4) standard-normal noise for this call;
                needed by stochastic schedulers.

        Returns:
            float32 (N, h, w, 4), the latent after the call.
        """

    # -------------------------------------------------------------- inversion
    def inversion_constants(self) -> np.ndarray:
        """Float32 (num_steps, K) rows that make `update` run step i backwards.

        Raises:
            ValueError: for schedulers that cannot be inverted.
        """
        raise ValueError(
            f"Inversion needs the deterministic 'ddim' scheduler. Received: scheduler={self.name!r}"
        )

    # ---------------------------------------------------------------- helpers
    def _check_index(self, index: Any, allow_end: bool = False) -> int:
        """Returns `index` as an int in [0, num_model_calls) (or up to the end)."""
        end = self.num_model_calls
        return check_int("index", index, 0, end if allow_end else end - 1)

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.config.items())
        return f"{type(self).__name__}({arguments}, num_steps={self.num_steps})"


class FusedScheduler(Scheduler):
    """A scheduler whose update is traced into the sampler's compiled guided step.

    Subclasses also implement `step_constants` and `update` (and
    `initial_state`/`model_input` when needed), keeping `update` and
    `model_input` free of instance state other than `config`: the sampler
    compiles one function per `trace_key()` and reuses it for every later
    scheduler with the same key (a new scheduler per call must not retrace).
    """

    # ------------------------------------------------------------ compiled form
    @abc.abstractmethod
    def step_constants(self) -> np.ndarray:
        """Returns float32 (num_steps, K): row i holds every constant of visited step i."""

    def initial_state(self, sample) -> tuple:
        """The multistep history carried between steps, as TF tensors.

        Args:
            sample: float32 tensor (B, h, w, 4), the starting latent of one
                replica's shard.

        Returns:
            A tuple of tensors of fixed shapes (empty for single-step schedulers).
        """
        del sample
        return ()

    def model_input(self, sample, constants):
        """Scales the latent before the UNet (identity unless sigma-based).

        Args:
            sample: float32 tensor (B, h, w, 4).
            constants: float32 tensor (K,), this step's row of `step_constants`.

        Returns:
            float32 tensor (B, h, w, 4).
        """
        del constants
        return sample

    @abc.abstractmethod
    def update(self, sample, model_output, constants, state: tuple) -> tuple[Any, tuple]:
        """The TF float32 form of `step`, traced inside the sampler's compiled step.

        Args:
            sample: float32 tensor (B, h, w, 4), the latent at the step's input.
            model_output: float32 tensor (B, h, w, 4), the guided prediction.
            constants: float32 tensor (K,), this step's row of `step_constants`.
            state: the tuple from `initial_state` or the previous `update`.

        Returns:
            `(sample, state)`: the latent after the step and the new state.
        """

    def trace_key(self) -> Hashable:
        """What the compiled step depends on besides its tensor inputs.

        The sampler keeps one compiled function per key. The default, the
        class, is right when `update` and `model_input` read nothing but their
        arguments; a subclass whose update depends on `config` (a prediction
        type, an order) adds those values.
        """
        return type(self)
