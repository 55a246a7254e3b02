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
from kerasmorph._checks import check_float32, check_int, check_unit_interval
from kerasmorph.errors import InputError
from kerasmorph.progress import ProgressBar

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


def check_values(param: str, values: Sequence[float]) -> list[float]:
    """Checks a sweep's `param` and `values` before any frame is rendered.

    Returns:
        The values as floats: finite (in float32), in [0, 1] for
        `"strength"`, integers >= 1 for `"num_steps"`.

    Raises:
        InputError: naming the first value that cannot be used.
    """
    if param not in SWEEP_PARAMS:
        valid = ", ".join(repr(p) for p in SWEEP_PARAMS)
        raise InputError(f"`param` must be one of {valid}. Received: param={param!r}")
    values = [check_float32(param, value) for value in values]
    if not values:
        raise InputError("`values` must not be empty. Received: values=[]")
    for value in values:
        if param == "strength":
            check_unit_interval("strength", value)
        elif param == "num_steps" and (value != int(value) or value < 1):
            raise InputError(f"`num_steps` values must be integers >= 1. Received: {value!r}")
    return values


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
    negative_prompt: str | None = None,
    batch_size: int | None = None,
) -> SweepResult:
    """Renders one frame per value of `param`, everything else fixed.

    Args:
        explorer: a `kerasmorph.Explorer`.
        prompt: the prompt.
        param: `"strength"` (img2img; needs `image`), `"guidance"`
            (unconditional guidance scale), `"num_steps"`, or `"prompt_weight"`
            (the encoding mixed from the empty prompt's at 0 to the prompt's
            at 1; above 1 it extrapolates).
        values: the values, in order; all checked before the first frame
            (`check_values`).
        image: an image for img2img sweeps; without it, text-to-image.
        seed: the one noise every frame starts from.
        num_steps, unconditional_guidance_scale, strength: the fixed settings.
        scheduler: a `kerasmorph.schedulers` name or `Scheduler`; default the
            Explorer's (`"ddim"`).
        negative_prompt: text of the unconditional pass of every frame;
            default "".
        batch_size: frames per call of a `"prompt_weight"` sweep, whose frames
            differ only in their encodings (the other params change the
            sampler's settings, so each of their frames is one call);
            default 1.

    Returns:
        A `SweepResult`.

    Raises:
        InputError: for an unknown `param`, a value it cannot take, or
            `batch_size` with another `param` than `"prompt_weight"`.

    Example:

    ```python
    result = kerasmorph.sweeps.sweep(explorer, "a fantasy landscape", "strength",
                                     kerasmorph.sweeps.parse_range("0.6:0.99:0.01"),
                                     image="sketch.png", seed=0)
    kerasmorph.plotting.save_grid("sweep.jpg", result.frames, labels=result.labels)
    ```
    """
    values = check_values(param, values)
    if param == "strength" and image is None:
        raise InputError("A strength sweep needs an `image`. Received: image=None")
    if batch_size is not None and param != "prompt_weight":
        raise InputError(
            "`batch_size` batches the frames of a 'prompt_weight' sweep only (the other "
            f"params change the sampler's settings per frame). Received: param={param!r}, "
            f"batch_size={batch_size!r}"
        )
    noise = explorer.noise(1, seed)
    settings = {
        "num_steps": num_steps,
        "unconditional_guidance_scale": unconditional_guidance_scale,
        "scheduler": scheduler,
        "negative_prompt": negative_prompt,
    }
    latents = None if image is None else explorer.encode_image(explorer.load_images(image))
    frames = []
    # One bar for the sweep (frames), the Explorer's per-call bars muted.
    progress = ProgressBar(len(values), verbose=explorer.verbose, unit_name="frame")
    calls = _calls(
        explorer, explorer.encode_text(prompt), param, values, strength, settings, batch_size
    )
    for encodings, frame_strength, frame_settings in progress.track(
        calls, mute=explorer, units=lambda call: len(call[0])
    ):
        frame_noise = np.repeat(noise, len(encodings), axis=0)
        if latents is None:
            frames.extend(
                explorer.generate_image(
                    encodings, diffusion_noise=frame_noise, batch_size=batch_size, **frame_settings
                )
            )
        else:
            frames.extend(
                _image_to_image(
                    explorer,
                    latents,
                    encodings,
                    frame_noise,
                    frame_strength,
                    frame_settings,
                    batch_size,
                )
            )
    labels = tuple(f"{param}={_format(value)}" for value in values)
    return SweepResult(np.stack(frames), tuple(values), labels)


def _image_to_image(
    explorer,
    latents: np.ndarray,
    encodings: np.ndarray,
    noise: np.ndarray,
    strength: float,
    settings: dict[str, Any],
    batch_size: int | None,
) -> np.ndarray:
    """img2img of one image's latents (1, h, w, 4) under each of `encodings` (B, L, D),
    from `noise` (B, h, w, 4), `batch_size` rows per UNet call: `Explorer.image_to_image`
    composed from the Explorer's steps, the image encoded once for the whole sweep."""
    num_steps, scheduler = settings["num_steps"], settings["scheduler"]
    start, num_denoise = explorer.noised_latents(
        np.repeat(latents, len(noise), axis=0), noise, strength, num_steps, scheduler=scheduler
    )
    if num_denoise:
        start = explorer.denoise(
            start,
            encodings,
            batch_size=batch_size,
            num_skipped_steps=num_steps - num_denoise,
            **settings,
        )
    return explorer.decode(start, batch_size=batch_size)


def _calls(
    explorer,
    encoding: np.ndarray,
    param: str,
    values: list[float],
    strength: float,
    settings: dict[str, Any],
    batch_size: int | None,
) -> list[tuple[np.ndarray, float, dict[str, Any]]]:
    """The sweep's calls: (encodings (B, L, D), strength, settings) each.

    One frame per call, except the frames of a prompt_weight sweep with a
    `batch_size`, which differ only in their encodings: one call for all.
    """
    if param == "strength":
        return [(encoding, value, settings) for value in values]
    if param == "guidance":
        return [
            (encoding, strength, {**settings, "unconditional_guidance_scale": value})
            for value in values
        ]
    if param == "num_steps":
        return [(encoding, strength, {**settings, "num_steps": int(value)}) for value in values]
    # As long as the prompt's encoding (77·k tokens for a long prompt).
    empty = explorer.unconditional_context(sequence_length=encoding.shape[-2])
    mixes = [
        (empty + np.float32(value) * (encoding - empty)).astype(np.float32) for value in values
    ]
    if batch_size is None:
        return [(mix, strength, settings) for mix in mixes]
    check_int("batch_size", batch_size, 1)
    # One call: the Explorer denoises them `batch_size` at a time (one compiled shape).
    return [(np.concatenate(mixes), strength, settings)]


def _format(value: float) -> str:
    return f"{value:g}"
