"""What the multistep schedulers share: training config, run history and the λ machinery.

PNDM (PLMS), DPM-Solver++ and UniPC (diffusers' `PNDMScheduler`,
`DPMSolverMultistepScheduler` and `UniPCMultistepScheduler`) each combine the
UNet outputs of the last few calls, so `step` needs the run's history: a
dict from `new_state()`, passed to every call of one run and updated in
place. `MultistepScheduler` validates Stable Diffusion's training config and
that history (calls must come at consecutive indices); `SolverScheduler`
adds what DPM-Solver++ and UniPC have in common: diffusers' timesteps for
these two classes (`solver_timesteps`, not `common.spaced_timesteps`: they
space `num_steps + 1` points and drop the last), the noise levels σ with a
final level after the last call, the data prediction x0 and the log-SNR
λ = log(α/σ) = −log σ. Numpy only; float64 inside, float32 out (diffusers
computes in float32: the two agree to ~1e-6).

References:
    Lu, Zhou, Bao, Chen, Li and Zhu, "DPM-Solver++: Fast Solver for Guided
    Sampling of Diffusion Probabilistic Models" (2022),
    https://arxiv.org/abs/2211.01095
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, Literal

import numpy as np

from kerasmorph._checks import check_int, format_value
from kerasmorph.schedulers import common
from kerasmorph.schedulers.base import Scheduler, check_prediction_type

BetaSchedule = Literal["scaled_linear", "linear"]
TimestepSpacing = Literal["leading", "linspace", "trailing"]
PredictionType = Literal["epsilon", "v_prediction"]
FinalSigmasType = Literal["zero", "sigma_min"]
SOLVER_ORDERS = (1, 2, 3)
FINAL_SIGMAS_TYPES = ("zero", "sigma_min")


def check_solver_order(value: Any) -> int:
    """Returns `value` as an `int` if it is one of `SOLVER_ORDERS` (bools and floats refused)."""
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not is_int or value not in SOLVER_ORDERS:
        valid = ", ".join(str(order) for order in SOLVER_ORDERS)
        raise ValueError(
            f"`solver_order` must be one of {valid}. Received: solver_order={format_value(value)}"
        )
    return int(value)


def check_timesteps(
    timesteps: np.ndarray, num_steps: int, num_train_timesteps: int, context: str
) -> np.ndarray:
    """Returns `timesteps` if there are `num_steps` of them, all training timesteps, else raises.

    diffusers' floating-point `arange` gives `"trailing"` one timestep too many
    (a −1) at some counts (61 of 1000), and `"leading"` with `steps_offset`
    can reach T at the largest counts; diffusers then indexes its tables out
    of range or wraps around, so kerasmorph refuses those counts.

    Args:
        timesteps: (M,), the timesteps of a run.
        num_steps: the step count they were spaced for.
        num_train_timesteps: T.
        context: the spacing config, for the error (`"timestep_spacing='trailing'"`).

    Returns:
        int64 (M,).

    Raises:
        ValueError: if M differs from `num_steps` or a timestep is outside [0, T − 1].
    """
    timesteps = np.asarray(timesteps)
    if len(timesteps) != num_steps:
        raise ValueError(
            f"`num_steps` must give as many timesteps as steps with {context} (this count "
            f"gives {len(timesteps)}, as in diffusers); choose another count. "
            f"Received: num_steps={num_steps}"
        )
    if timesteps.min() < 0 or timesteps.max() > num_train_timesteps - 1:
        raise ValueError(
            f"`num_steps` must keep every timestep in [0, {num_train_timesteps - 1}] with "
            f"{context} (this count reaches {int(timesteps.max())}); use fewer steps. "
            f"Received: num_steps={num_steps}"
        )
    return timesteps.astype(np.int64)


def solver_timesteps(
    num_steps: int, num_train_timesteps: int, timestep_spacing: TimestepSpacing, steps_offset: int
) -> np.ndarray:
    """The timesteps of diffusers' `DPMSolverMultistepScheduler` and `UniPCMultistepScheduler`.

    `"linspace"` and `"leading"` space `num_steps + 1` points as
    `common.spaced_timesteps` does and drop the last (timestep 0 or
    `steps_offset`); `"trailing"` is `common.spaced_timesteps`'s.

    Args:
        num_steps: integer in [1, T − 1].
        num_train_timesteps: T.
        timestep_spacing: `"leading"`, `"linspace"` or `"trailing"`.
        steps_offset: added to the `"leading"` timesteps.

    Returns:
        int64 (num_steps,), noisiest first.

    Raises:
        ValueError: for a count diffusers' spacing cannot serve (see `check_timesteps`).

    Example:

    ```python
    solver_timesteps(10, 1000, "leading", 1)  # [901, 811, ..., 91]: diffusers' DPM++ 2M.
    ```
    """
    num_steps = check_int("num_steps", num_steps, 1, num_train_timesteps - 1)
    if timestep_spacing == "trailing":
        timesteps = common.spaced_timesteps(num_steps, num_train_timesteps, "trailing", 0)
    else:
        points = common.spaced_timesteps(
            num_steps + 1, num_train_timesteps, timestep_spacing, steps_offset
        )
        timesteps = points[:-1].round()
    context = f"timestep_spacing={timestep_spacing!r}, steps_offset={steps_offset}"
    return check_timesteps(timesteps, num_steps, num_train_timesteps, context)


class MultistepScheduler(Scheduler):
    """Base class of the schedulers that keep a history: training config and run state.

    Subclasses implement `_new_history` (the algorithm's part of `new_state`),
    `_build`, `noise_scales` and `step`, which begins with `_begin_step`.
    The constructor arguments are diffusers' config keys that change the
    arithmetic; the defaults are Stable Diffusion 1.x's
    (`kerasmorph.schedulers.common.SD_CONFIG`). `config` returns the
    arguments of the subclass's constructor.

    Args:
        num_train_timesteps: training timesteps T, integer >= 2 (default 1000).
        beta_start: first β of the training schedule, in (0, 1) (0.00085).
        beta_end: last β, in (0, 1) (0.012).
        beta_schedule: `"scaled_linear"` (default, β linear in sqrt space) or `"linear"`.
        steps_offset: added to the `"leading"` timesteps, integer in [0, T − 1] (1).
        timestep_spacing: `"leading"` (default), `"linspace"` or `"trailing"`.
        prediction_type: `"epsilon"` (default) or `"v_prediction"` (SD 2.x 768-v).

    Attributes:
        alphas_cumprod: float64 (T,), the training schedule's ᾱ.
        diffusers_class: the diffusers scheduler class this one reproduces.
        diffusers_config: the diffusers config keys, beyond `config`, that
            select this algorithm in `diffusers_class` (for reference tests and
            for checking a diffusers `scheduler_config.json`).
    """

    diffusers_class: ClassVar[str]
    diffusers_config: ClassVar[dict[str, Any]] = {}

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
        self.alphas_cumprod = common.alphas_cumprod(
            self.beta_start, self.beta_end, self.beta_schedule, self.num_train_timesteps
        )
        self.alphas_cumprod.flags.writeable = False

    @property
    def config(self) -> dict[str, Any]:
        parameters = inspect.signature(type(self).__init__).parameters
        return {key: getattr(self, key) for key in parameters if key != "self"}

    def new_state(self) -> dict[str, Any]:
        """A fresh history for one run: pass it to every `step` of the run.

        Returns:
            A dict: `"next_index"` (the index the next call must have; `None`
            before the first, which may be any index: img2img starts late)
            and the algorithm's history (see the subclass).
        """
        return {"next_index": None, **self._new_history()}

    def _new_history(self) -> dict[str, Any]:
        """The algorithm's part of `new_state()`."""
        return {}

    def _begin_step(
        self, model_output: Any, index: Any, sample: Any, state: Any
    ) -> tuple[int, np.ndarray, np.ndarray, dict[str, Any]]:
        """Checks `step`'s arguments and advances `state["next_index"]`.

        Returns:
            `(index, model_output, sample, state)`, the arrays as float64.

        Raises:
            ValueError: for an index out of range, mismatched shapes, a missing
                or foreign `state`, or an index that does not follow the last.
        """
        index = self._check_index(index)
        state = self._require_state(state)
        model_output = np.asarray(model_output, dtype=np.float64)
        sample = np.asarray(sample, dtype=np.float64)
        if model_output.shape != sample.shape:
            raise ValueError(
                f"`model_output` must have the shape of `sample` {sample.shape}. "
                f"Received: model_output.shape={model_output.shape}"
            )
        expected = state["next_index"]
        if expected is not None and index != expected:
            raise ValueError(
                f"`index` must follow the last call of this state's run (index={expected}); "
                f"start a run with `new_state()`. Received: index={index}"
            )
        state["next_index"] = index + 1
        return index, model_output, sample, state

    def _require_state(self, state: Any) -> dict[str, Any]:
        """Returns `state` if it is a history from `new_state()`, else raises."""
        if not isinstance(state, dict) or set(state) != set(self.new_state()):
            received = f"dict with keys {sorted(state)}" if isinstance(state, dict) else repr(state)
            raise ValueError(
                f"The {self.name!r} scheduler's `step` needs `state=scheduler.new_state()` "
                f"(one per run, passed to every step). Received: state={received}"
            )
        return state


class SolverScheduler(MultistepScheduler):
    """Base class of DPM-Solver++ and UniPC: their schedule, noise levels and x0 estimate.

    The latent at the input of call i is `α_i·x0 + σ̂_i·ε` with
    `α_i = 1/sqrt(σ_i² + 1)` and `σ̂_i = σ_i·α_i` (σ_i = `sigmas[i]`); the
    solvers step in λ = log(α/σ̂) = −log σ. No input scaling, and the run starts
    from standard-normal noise (`init_noise_sigma = 1`).

    Args:
        num_train_timesteps, beta_start, beta_end, beta_schedule, steps_offset,
            timestep_spacing, prediction_type: see `MultistepScheduler`.
        solver_order: 1, 2 (default) or 3, the number of past outputs combined.
        lower_order_final: drop the order on the last steps (default True), as
            the subclass says.
        final_sigmas_type: the level after the last call: `"zero"` (default:
            the last step returns x0) or `"sigma_min"` (σ of training step 0).
        use_karras_sigmas: Karras et al.'s ρ = 7 levels between the training
            σ_max and σ_min instead of the spaced timesteps' (default False).

    Attributes:
        sigmas: float64 (num_model_calls + 1,) after `set_timesteps`: σ at the
            input of each call, then the final level (diffusers' `sigmas`).
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
        )
        self.solver_order = check_solver_order(solver_order)
        self.lower_order_final = common.check_bool("lower_order_final", lower_order_final)
        self.final_sigmas_type = common.check_choice(
            "final_sigmas_type", final_sigmas_type, FINAL_SIGMAS_TYPES
        )
        self.use_karras_sigmas = common.check_bool("use_karras_sigmas", use_karras_sigmas)
        self.sigmas: np.ndarray | None = None
        self._lambdas: np.ndarray | None = None

    def _new_history(self) -> dict[str, Any]:
        # model_outputs: the x0 estimates of the last `solver_order` calls, oldest first;
        # lower_order_nums: calls so far, up to `solver_order` (the multistep warm-up).
        return {"model_outputs": [], "lower_order_nums": 0}

    def _build(self, num_steps: int) -> np.ndarray:
        table = common.training_sigmas(self.alphas_cumprod)
        if self.use_karras_sigmas:
            sigmas = common.karras_sigmas(table[0], table[-1], num_steps)
            timesteps = common.sigma_to_timestep(sigmas, self.alphas_cumprod).round()
            timesteps = timesteps.astype(np.int64)
        else:
            timesteps = solver_timesteps(
                num_steps, self.num_train_timesteps, self.timestep_spacing, self.steps_offset
            )
            sigmas = table[timesteps]
        final = 0.0 if self.final_sigmas_type == "zero" else table[0]
        self.sigmas = np.append(sigmas, final).astype(np.float64)
        self.sigmas.flags.writeable = False
        with np.errstate(divide="ignore"):
            self._lambdas = -np.log(self.sigmas)  # +inf at a final σ of 0.
        return timesteps

    def noise_scales(self, index: int) -> tuple[np.float32, np.float32]:
        index = self._check_index(index, allow_end=True)
        if index == self.num_model_calls:
            return np.float32(1.0), np.float32(0.0)
        alpha, sigma = self._alpha_sigma(index)
        return np.float32(alpha), np.float32(sigma)

    def _alpha_sigma(self, index: int) -> tuple[float, float]:
        """`(α, σ̂)` of level `index` (0 ≤ index ≤ num_model_calls): `1/sqrt(σ²+1)`, `σ·α`."""
        sigma = float(self.sigmas[index])
        alpha = 1.0 / np.sqrt(sigma**2 + 1.0)
        return float(alpha), float(sigma * alpha)

    def _data_prediction(self, model_output: np.ndarray, index: int, sample: np.ndarray):
        """The x0 estimate of call `index` (float64), as diffusers' `convert_model_output`.

        ε: `(x − σ̂·ε)/α`; v: `α·x − σ̂·v`.
        """
        alpha, sigma = self._alpha_sigma(index)
        if self.prediction_type == "v_prediction":
            return alpha * sample - sigma * model_output
        return (sample - sigma * model_output) / alpha

    def _sample_ratio(self, target: int, source: int) -> float:
        """`σ̂_target / σ̂_source`, the factor of the sample in every update (0 at a zero end)."""
        return self._alpha_sigma(target)[1] / self._alpha_sigma(source)[1]
