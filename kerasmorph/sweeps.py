"""Parameter sweeps: one argument varied over a range, the noise held fixed.

The reference lecture swept img2img strength from 0.60 to 0.99 without fixing
the noise, so every frame changed for two reasons at once; here every frame
starts from the same noise (`explorer.noise(1, seed)`), so only the swept
argument changes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from kerasmorph import limits

SweepParam = Literal["strength", "guidance", "num_steps", "prompt_weight"]
SWEEP_PARAMS: tuple[str, ...] = ("strength", "guidance", "num_steps", "prompt_weight")


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """Frames of a sweep with the value each was made with.

    Attributes:
        frames: uint8 (F, H, W, 3).
        values: the swept values, one per frame.
        labels: "param=value" captions for `kerasmorph.plotting.plot_grid`.
    """

    frames: np.ndarray
    values: tuple[float, ...]
    labels: tuple[str, ...]


def parse_range(text: str) -> list[float]:
    """Parses "start:stop:step" (stop included when on the grid) or "a,b,c".

    Example: `parse_range("0.6:0.99:0.01")` gives the 40 values 0.60 … 0.99.
    """
    try:
        if ":" in text:
            start, stop, step = (float(part) for part in text.split(":"))
            if not all(map(math.isfinite, (start, stop, step))) or step <= 0 or stop < start:
                raise ValueError
            count = limits.range_count(start, stop, step)
            return [round(start + index * step, 10) for index in range(count)]
        values = [float(part) for part in text.split(",") if part.strip()]
        if not all(map(math.isfinite, values)):
            raise ValueError
        return values
    except ValueError:
        raise ValueError(
            "A range is 'start:stop:step' of finite numbers with step > 0 and stop >= "
            f"start, or a comma-separated list of finite numbers. Received: {text!r}"
        ) from None


def sweep(
    explorer,
    prompt: str,
    param: SweepParam,
    values: Sequence[float],
    *,
    image: Any = None,
    seed: int = 0,
    num_steps: int = 50,
    unconditional_guidance_scale: float = 7.5,
    strength: float = 0.75,
    scheduler: str | Any | None = None,
) -> SweepResult:
    """Renders one frame per value of `param`, everything else fixed.

    Args:
        explorer: a `kerasmorph.Explorer`.
        prompt: the prompt.
        param: `"strength"` (img2img; needs `image`), `"guidance"`
            (unconditional guidance scale), `"num_steps"`, or `"prompt_weight"`
            (the encoding mixed from the empty prompt's at 0 to the prompt's
            at 1; above 1 it extrapolates).
        values: the values, in order.
        image: an image for img2img sweeps; without it, text-to-image.
        seed: the one noise every frame starts from.
        num_steps, unconditional_guidance_scale, strength: the fixed settings.
        scheduler: a `kerasmorph.schedulers` name or `Scheduler`; default the
            Explorer's (`"ddim"`).

    Returns:
        A `SweepResult`.

    Example:

    ```python
    result = kerasmorph.sweeps.sweep(explorer, "a fantasy landscape", "strength",
                                     kerasmorph.sweeps.parse_range("0.6:0.99:0.01"),
                                     image="sketch.png", seed=0)
    kerasmorph.plotting.save_grid("sweep.jpg", result.frames, labels=result.labels)
    ```
    """
    if param not in SWEEP_PARAMS:
        valid = ", ".join(repr(p) for p in SWEEP_PARAMS)
        raise ValueError(f"`param` must be one of {valid}. Received: param={param!r}")
    values = list(values)
    if not values:
        raise ValueError("`values` must not be empty. Received: values=[]")
    if param == "strength" and image is None:
        raise ValueError("A strength sweep needs an `image`. Received: image=None")
    noise = explorer.noise(1, seed)
    encoding = explorer.encode_text(prompt)
    frames = []
    for value in values:
        settings = {
            "num_steps": num_steps,
            "unconditional_guidance_scale": unconditional_guidance_scale,
            "scheduler": scheduler,
        }
        frame_encoding = encoding
        frame_strength = strength
        if param == "strength":
            frame_strength = value
        elif param == "guidance":
            settings["unconditional_guidance_scale"] = value
        elif param == "num_steps":
            if float(value) != int(value) or value < 1:
                raise ValueError(f"`num_steps` values must be integers >= 1. Received: {value!r}")
            settings["num_steps"] = int(value)
        else:
            # As long as the prompt's encoding (77·k tokens for a long prompt).
            empty = explorer.unconditional_context(sequence_length=encoding.shape[-2])
            frame_encoding = (empty + np.float32(value) * (encoding - empty)).astype(np.float32)
        if image is None:
            frame = explorer.generate_image(frame_encoding, diffusion_noise=noise, **settings)
        else:
            frame = explorer.image_to_image(
                image, frame_encoding, strength=frame_strength, diffusion_noise=noise, **settings
            )
        frames.append(frame[0])
    labels = tuple(f"{param}={_format(value)}" for value in values)
    return SweepResult(np.stack(frames), tuple(float(v) for v in values), labels)


def _format(value: float) -> str:
    return f"{value:g}"
