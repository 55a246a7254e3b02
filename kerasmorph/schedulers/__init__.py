"""Sampling algorithms for the denoising loop, one per file, looked up by name.

`get(name, **config)` builds a scheduler; the caller then sets its step count
and hands it to `kerasmorph.sampler.Sampler`:

```python
scheduler = kerasmorph.schedulers.get("ddim")
scheduler.set_timesteps(50)
latents = sampler.sample(noise * scheduler.init_noise_sigma, context, uncond, scheduler, 7.5)
```

| name | class | notes |
|---|---|---|
| `"ddim"` | `DDIMScheduler` | KerasCV's deterministic DDIM, bit-exact; invertible |

Numpy only (layer L2): TensorFlow appears only inside the compiled-update hooks,
and keras_cv only to read KerasCV's ᾱ table (`ddim.kerascv_alphas_cumprod`).
"""

from __future__ import annotations

import inspect
from typing import Any

from kerasmorph.schedulers.base import Scheduler
from kerasmorph.schedulers.ddim import DDIMSchedule, DDIMScheduler

SCHEDULERS: dict[str, type[Scheduler]] = {"ddim": DDIMScheduler}

__all__ = ["SCHEDULERS", "DDIMSchedule", "DDIMScheduler", "Scheduler", "get"]


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
    cls = SCHEDULERS.get(name) if isinstance(name, str) else None
    if cls is None:
        valid = ", ".join(repr(key) for key in SCHEDULERS)
        raise ValueError(
            f"Unknown scheduler. Valid schedulers: {valid}. Received: scheduler={name!r}"
        )
    accepted = [key for key in inspect.signature(cls.__init__).parameters if key != "self"]
    unknown = sorted(set(config) - set(accepted))
    if unknown:
        keys = ", ".join(repr(key) for key in accepted) or "none"
        received = ", ".join(f"{key}={config[key]!r}" for key in unknown)
        raise ValueError(
            f"Unknown config for the {name!r} scheduler. Accepted keys: {keys}. "
            f"Received: {received}"
        )
    return cls(**config)
