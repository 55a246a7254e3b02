"""Sampling algorithms for the denoising loop, one per file, looked up by name.

`get(name, **config)` builds a scheduler; the caller then sets its step count
and hands it to `kerasmorph.sampler.Sampler`:

```python
scheduler = kerasmorph.schedulers.get("ddim")
scheduler.set_timesteps(50)
latents = sampler.sample(noise * scheduler.init_noise_sigma, context, uncond, scheduler, 7.5)
```

| name | A1111 | diffusers class | notes |
|---|---|---|---|
| `"ddim"` | DDIM | — (KerasCV's own DDIM) | bit-exact with KerasCV; the default; invertible |
| `"euler"` | Euler | `EulerDiscreteScheduler` | |
| `"euler_ancestral"` | Euler a | `EulerAncestralDiscreteScheduler` | stochastic (fresh noise) |
| `"heun"` | Heun | `HeunDiscreteScheduler` | 2 UNet calls per step |
| `"lms"` | LMS | `LMSDiscreteScheduler` | order 4 |
| `"pndm"` | PLMS | `PNDMScheduler` | diffusers' SD 1.x default (`skip_prk_steps`) |
| `"dpmpp_2m"` | DPM++ 2M | `DPMSolverMultistepScheduler` | `dpmsolver++`, order 2 |
| `"dpmpp_2m_karras"` | DPM++ 2M Karras | `DPMSolverMultistepScheduler` | Karras σ, ρ = 7 |
| `"unipc"` | UniPC | `UniPCMultistepScheduler` | bh2, order 2 |

`config_from_diffusers` / `from_config` take a model's diffusers
`scheduler_config.json` as is.

Numpy only (layer L2): TensorFlow appears only inside the compiled-update hooks,
and keras_cv only to read KerasCV's ᾱ table (`ddim.kerascv_alphas_cumprod`).
"""

from __future__ import annotations

import inspect
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kerasmorph.schedulers.base import FusedScheduler, Scheduler
from kerasmorph.schedulers.ddim import DDIMSchedule, DDIMScheduler
from kerasmorph.schedulers.dpm_solver import (
    DPMSolverMultistepKarrasScheduler,
    DPMSolverMultistepScheduler,
)
from kerasmorph.schedulers.euler import EulerAncestralScheduler, EulerScheduler
from kerasmorph.schedulers.heun import HeunScheduler
from kerasmorph.schedulers.lms import LMSScheduler
from kerasmorph.schedulers.pndm import PNDMScheduler
from kerasmorph.schedulers.unipc import UniPCMultistepScheduler

SCHEDULERS: dict[str, type[Scheduler]] = {
    "ddim": DDIMScheduler,
    "euler": EulerScheduler,
    "euler_ancestral": EulerAncestralScheduler,
    "heun": HeunScheduler,
    "lms": LMSScheduler,
    "pndm": PNDMScheduler,
    "dpmpp_2m": DPMSolverMultistepScheduler,
    "dpmpp_2m_karras": DPMSolverMultistepKarrasScheduler,
    "unipc": UniPCMultistepScheduler,
}
# name -> (A1111's name, diffusers' class), for `kerasmorph info` and the docs.
NAMES: dict[str, tuple[str, str]] = {
    "ddim": ("DDIM", "KerasCV's DDIM (not diffusers' DDIMScheduler: other timesteps)"),
    "euler": ("Euler", "EulerDiscreteScheduler"),
    "euler_ancestral": ("Euler a", "EulerAncestralDiscreteScheduler"),
    "heun": ("Heun", "HeunDiscreteScheduler"),
    "lms": ("LMS", "LMSDiscreteScheduler"),
    "pndm": ("PLMS", "PNDMScheduler"),
    "dpmpp_2m": ("DPM++ 2M", "DPMSolverMultistepScheduler"),
    "dpmpp_2m_karras": ("DPM++ 2M Karras", "DPMSolverMultistepScheduler (Karras sigmas)"),
    "unipc": ("UniPC", "UniPCMultistepScheduler"),
}

__all__ = [
    "NAMES",
    "SCHEDULERS",
    "DDIMSchedule",
    "DDIMScheduler",
    "DPMSolverMultistepKarrasScheduler",
    "DPMSolverMultistepScheduler",
    "EulerAncestralScheduler",
    "EulerScheduler",
    "FusedScheduler",
    "HeunScheduler",
    "LMSScheduler",
    "PNDMScheduler",
    "Scheduler",
    "UniPCMultistepScheduler",
    "config_from_diffusers",
    "from_config",
    "get",
]


def get(name: str, **config: Any) -> Scheduler:
    """Builds the scheduler registered as `name`.

    Args:
        name: one of `SCHEDULERS` (`"ddim"`).
        **config: the scheduler's constructor arguments (its `config`).

    Returns:
        A new `Scheduler`; call `set_timesteps(num_steps)` before sampling.

    Raises:
        ValueError: for an unknown name (listing the valid ones) or a config
            key the scheduler does not accept (listing the accepted ones).

    Example:

    ```python
    scheduler = kerasmorph.schedulers.get("ddim", alphas_cumprod="kerascv")
    ```
    """
    cls = _scheduler_class(name)
    accepted = _accepted_keys(cls)
    unknown = sorted(set(config) - set(accepted))
    if unknown:
        keys = ", ".join(repr(key) for key in accepted) or "none"
        received = ", ".join(f"{key}={config[key]!r}" for key in unknown)
        raise ValueError(
            f"Unknown config for the {name!r} scheduler. Accepted keys: {keys}. "
            f"Received: {received}"
        )
    return cls(**config)


def _scheduler_class(name: Any) -> type[Scheduler]:
    cls = SCHEDULERS.get(name) if isinstance(name, str) else None
    if cls is None:
        valid = ", ".join(repr(key) for key in SCHEDULERS)
        raise ValueError(
            f"Unknown scheduler. Valid schedulers: {valid}. Received: scheduler={name!r}"
        )
    return cls


def _accepted_keys(cls: type[Scheduler]) -> list[str]:
    return [key for key in inspect.signature(cls.__init__).parameters if key != "self"]


# ------------------------------------------------------------ diffusers configs

# diffusers class name -> kerasmorph scheduler name.
DIFFUSERS_CLASSES = {
    "PNDMScheduler": "pndm",
    "LMSDiscreteScheduler": "lms",
    "EulerDiscreteScheduler": "euler",
    "EulerAncestralDiscreteScheduler": "euler_ancestral",
    "HeunDiscreteScheduler": "heun",
    "DPMSolverMultistepScheduler": "dpmpp_2m",
    "UniPCMultistepScheduler": "unipc",
}
# diffusers keys whose other values change the math in ways kerasmorph does not
# implement: accepted only with the value that leaves it as implemented.
FIXED_KEYS: dict[str, Any] = {
    "clip_sample": False,
    "thresholding": False,
    "trained_betas": None,
    "rescale_betas_zero_snr": False,
    "use_exponential_sigmas": False,
    "use_beta_sigmas": False,
    "use_lu_lambdas": False,
    "use_flow_sigmas": False,
    "timestep_type": "discrete",
    "interpolation_type": "linear",
    "variance_type": None,
    "euler_at_final": False,
    "sigma_min": None,
    "sigma_max": None,
    "lambda_min_clipped": float("-inf"),
    "use_dynamic_shifting": False,
}


def _read_config(config: Mapping[str, Any] | str | os.PathLike) -> dict[str, Any]:
    if isinstance(config, Mapping):
        return dict(config)
    path = Path(config)
    candidates = (
        path,
        path / "scheduler_config.json",
        path / "scheduler" / "scheduler_config.json",
    )
    for candidate in candidates:
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
                raise ValueError(
                    f"Could not read the scheduler config {candidate}: {error}"
                ) from None
            if not isinstance(data, dict):
                raise ValueError(
                    f"A scheduler config is a JSON object. Received: {type(data).__name__} "
                    f"in {candidate}"
                )
            return data
    raise ValueError(
        "`config` must be a dict, a scheduler_config.json, or a diffusers folder holding "
        f"scheduler/scheduler_config.json. Received: config={str(config)!r}"
    )


def config_from_diffusers(
    config: Mapping[str, Any] | str | os.PathLike, name: str | None = None
) -> dict[str, Any]:
    """The constructor arguments of a kerasmorph scheduler for a diffusers scheduler config.

    A model's `scheduler_config.json` (e.g. Stable Diffusion 1.5's PNDM config)
    passes as is, and — as diffusers' `EulerDiscreteScheduler.from_config(
    pipe.scheduler.config)` does — may configure another algorithm than the one
    it was written for: the keys that algorithm reads are kept, the others
    are named in a warning. Keys whose value would change the math in a way
    kerasmorph does not implement (`thresholding=True`, `trained_betas`, ...)
    are refused.

    Args:
        config: a dict, a `scheduler_config.json` path, or a folder holding
            one (or `scheduler/scheduler_config.json`).
        name: the kerasmorph scheduler to configure; default: the one of the
            config's `_class_name` (`DIFFUSERS_CLASSES`).

    Returns:
        A dict for `get(name, **config)`.

    Raises:
        ValueError: for an unreadable config, an unknown class without
            `name`, or an unsupported value.

    Example:

    ```python
    config = kerasmorph.schedulers.config_from_diffusers("sd15/scheduler", "dpmpp_2m")
    scheduler = kerasmorph.schedulers.get("dpmpp_2m", **config)
    ```
    """
    return _resolve(config, name)[1]


def _resolve(config, name: str | None) -> tuple[str, dict[str, Any]]:
    data = _read_config(config)
    if name is None:
        class_name = data.get("_class_name")
        if class_name not in DIFFUSERS_CLASSES:
            valid = ", ".join(DIFFUSERS_CLASSES)
            raise ValueError(
                f"No kerasmorph scheduler for the config's _class_name; known: {valid} "
                f"(or pass a name). Received: _class_name={class_name!r}"
            )
        name = DIFFUSERS_CLASSES[class_name]
        if name == "dpmpp_2m" and data.get("use_karras_sigmas"):
            name = "dpmpp_2m_karras"
    cls = _scheduler_class(name)
    # Keys that select the algorithm within a diffusers class (DPM's algorithm_type, ...).
    fixed = {**FIXED_KEYS, **getattr(cls, "diffusers_config", {})}
    accepted = _accepted_keys(cls)
    kept, ignored = {}, []
    for key, value in data.items():
        if key.startswith("_"):
            continue  # Metadata: _class_name, _diffusers_version.
        if key in accepted:
            kept[key] = value
        elif key in fixed and value != fixed[key]:
            raise ValueError(
                f"The {name!r} scheduler supports {key}={fixed[key]!r} only. "
                f"Received: {key}={value!r}"
            )
        elif key not in fixed:
            ignored.append(f"{key}={value!r}")
    if ignored:
        warnings.warn(
            f"Config keys not used by the {name!r} scheduler, ignored: {', '.join(ignored)}",
            stacklevel=3,
        )
    return name, kept


def from_config(
    config: Mapping[str, Any] | str | os.PathLike, name: str | None = None
) -> Scheduler:
    """Builds a scheduler from a diffusers scheduler config; see `config_from_diffusers`.

    Example:

    ```python
    scheduler = kerasmorph.schedulers.from_config("sd15/scheduler/scheduler_config.json")
    ```
    """
    name, kwargs = _resolve(config, name)
    return get(name, **kwargs)
