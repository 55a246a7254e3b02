"""What the diffusers-style schedulers share: Stable Diffusion's training schedule and config.

Every non-DDIM scheduler defaults to the configuration Stable Diffusion 1.x
ships for diffusers (`scheduler_config.json`): `beta_schedule="scaled_linear"`,
`beta_start=0.00085`, `beta_end=0.012`, `num_train_timesteps=1000`,
`steps_offset=1`, `timestep_spacing="leading"`, `prediction_type="epsilon"`.
Numpy only; the tables are float64 (diffusers keeps them in float32, which
differs by rounding only).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from kerasmorph._checks import check_int, format_value

# Stable Diffusion 1.x's scheduler config, the default of every non-DDIM scheduler.
SD_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "prediction_type": "epsilon",
}
BETA_SCHEDULES = ("scaled_linear", "linear")
TIMESTEP_SPACINGS = ("leading", "linspace", "trailing")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """Returns `value` if it is one of `choices`, else raises a ValueError listing them."""
    if value not in choices:
        valid = ", ".join(repr(choice) for choice in choices)
        raise ValueError(f"`{name}` must be one of {valid}. Received: {name}={value!r}")
    return value


def check_beta(name: str, value: Any) -> float:
    """Returns `value` as a `float`, or raises unless it is a real number in (0, 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise ValueError(
            f"`{name}` must be a number in (0, 1). Received: {name}={format_value(value)}"
        )
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    """Returns `value` as a `bool`, or raises unless it is `True` or `False`."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`{name}` must be True or False. Received: {name}={format_value(value)}")
    return bool(value)


def training_sigmas(alphas_cumprod_table: np.ndarray) -> np.ndarray:
    """σ_t = sqrt((1 − ᾱ_t) / ᾱ_t) of every training timestep, float64 (T,), increasing."""
    table = np.asarray(alphas_cumprod_table, dtype=np.float64)
    return np.sqrt((1.0 - table) / table)


def alphas_cumprod(
    beta_start: float = 0.00085,
    beta_end: float = 0.012,
    beta_schedule: str = "scaled_linear",
    num_train_timesteps: int = 1000,
) -> np.ndarray:
    """ᾱ_t of a training schedule, float64 (num_train_timesteps,).

    `"scaled_linear"` (Stable Diffusion): betas linear in sqrt space;
    `"linear"`: betas linear.
    """
    check_choice("beta_schedule", beta_schedule, BETA_SCHEDULES)
    num_train_timesteps = check_int("num_train_timesteps", num_train_timesteps, 2)
    if beta_schedule == "scaled_linear":
        betas = np.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps) ** 2
    else:
        betas = np.linspace(beta_start, beta_end, num_train_timesteps)
    return np.cumprod(1.0 - betas)


def spaced_timesteps(
    num_steps: int, num_train_timesteps: int, timestep_spacing: str, steps_offset: int
) -> np.ndarray:
    """diffusers' timesteps of `num_steps` steps, float64, noisiest first.

    - `"leading"`: `arange(0, num_steps) · (T // num_steps) + steps_offset`;
    - `"linspace"`: `linspace(0, T − 1, num_steps)` (not rounded: the sigma
      schedulers interpolate between training steps; round where a
      scheduler needs integers);
    - `"trailing"`: `arange(T, 0, −T / num_steps) − 1`.

    Raises:
        ValueError: for an unknown spacing, or more steps than training steps.
    """
    check_choice("timestep_spacing", timestep_spacing, TIMESTEP_SPACINGS)
    num_steps = check_int("num_steps", num_steps, 1, num_train_timesteps)
    if timestep_spacing == "linspace":
        timesteps = np.linspace(0, num_train_timesteps - 1, num_steps)
    elif timestep_spacing == "leading":
        ratio = num_train_timesteps // num_steps
        timesteps = (np.arange(0, num_steps) * ratio).round() + steps_offset
    else:
        ratio = num_train_timesteps / num_steps
        timesteps = np.round(np.arange(num_train_timesteps, 0, -ratio)) - 1
        return timesteps.astype(np.float64)
    return timesteps[::-1].astype(np.float64)


def karras_sigmas(
    sigma_min: float, sigma_max: float, num_steps: int, rho: float = 7.0
) -> np.ndarray:
    """Karras et al.'s noise levels, float64 (num_steps,), from `sigma_max` down to `sigma_min`.

    `σ_i = (σ_max^(1/ρ) + i/(n−1) · (σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ`, as diffusers'
    `_convert_to_karras` (ρ = 7).

    References:
        Karras, Aittala, Aila and Laine, "Elucidating the Design Space of
        Diffusion-Based Generative Models" (2022), eq. 5.
    """
    ramp = np.linspace(0, 1, num_steps)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    return (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho


def sigma_to_timestep(sigmas: np.ndarray, alphas_cumprod_table: np.ndarray) -> np.ndarray:
    """The (fractional) training timesteps of noise levels `sigmas`, float64.

    Linear interpolation in log σ over the training table
    `σ_t = sqrt((1 − ᾱ_t) / ᾱ_t)`, as diffusers' `_sigma_to_t`.
    """
    log_sigmas = np.log(((1 - alphas_cumprod_table) / alphas_cumprod_table) ** 0.5)
    log_sigma = np.log(np.maximum(np.asarray(sigmas, dtype=np.float64), 1e-10))
    distances = log_sigma[:, None] - log_sigmas[None, :]
    low = np.clip(np.cumsum(distances >= 0, axis=1).argmax(axis=1), 0, len(log_sigmas) - 2)
    high = low + 1
    weight = (log_sigmas[low] - log_sigma) / (log_sigmas[low] - log_sigmas[high])
    weight = np.clip(weight, 0, 1)
    return (1 - weight) * low + weight * high
