"""Checks of the arrays that cross the Explorer's boundary, and of its outputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kerasmorph._checks import check_count
from kerasmorph.constants import CHUNK_LENGTH, MAX_PROMPT_LENGTH
from kerasmorph.errors import NonFiniteOutputError  # Defined there; importable from here too.


def _non_finite(value: Any) -> int:
    """The number of NaN/Inf entries of a number or array (0 for anything else)."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return 0
    return int(array.size - np.count_nonzero(np.isfinite(array)))


# Guidance scales beyond this are far outside the usual 1 to 20: they overflow.
EXTREME_GUIDANCE = 1e3


def check_finite(
    array: np.ndarray,
    stage: str,
    precision: str,
    inputs: Mapping[str, Any] | None = None,
    *,
    guidance: float | None = None,
) -> None:
    """Raises `NonFiniteOutputError` naming `stage` when `array` has NaN or Inf.

    The hint names the likely cause, in this order: an input with NaN or Inf,
    an extreme guidance scale, a low precision, the weights.

    Args:
        array: the stage's output.
        stage: its name, for the message (`"denoising"`, `"decoding"`).
        precision: the precision the stage ran under.
        inputs: arrays that went into the stage, by name (`{"encoded_text":
            ..., "diffusion_noise": ...}`); None: unknown.
        guidance: the stage's unconditional guidance scale, if it has one.

    Raises:
        NonFiniteOutputError: with that hint.
    """
    if np.isfinite(array).all():
        return
    named = dict(inputs or {})
    if guidance is not None:
        named["unconditional_guidance_scale"] = guidance
    bad = {name: count for name, value in named.items() if (count := _non_finite(value))}
    if bad:
        listed = ", ".join(f"{name} ({count} NaN/Inf)" for name, count in bad.items())
        hint = f"Its inputs are not finite: {listed}; the precision is not the cause."
    elif guidance is not None and abs(guidance) > EXTREME_GUIDANCE:
        hint = (
            f"The guidance scale is extreme (usual: 1 to 20); try a smaller one. "
            f"Received: unconditional_guidance_scale={guidance!r}"
        )
    elif precision != "float32":
        hint = "Try precision='float32' (or 'mixed_bfloat16', whose range matches float32)."
    elif named:
        hint = "Its inputs are finite: check the weights."
    else:
        hint = "Check the weights and the inputs for NaN/Inf."
    raise NonFiniteOutputError(
        f"{stage.capitalize()} produced NaN or Inf values under precision={precision!r}. {hint}"
    )


def check_encodings(
    encoded_text: Any, width: int, preset_name: str, name: str = "encoded_text"
) -> np.ndarray:
    """Accepts (N, L, D) or (L, D) with L a positive multiple of 77 (k chunks), D = `width`."""
    encodings = np.asarray(encoded_text, dtype=np.float32)
    if (
        encodings.ndim not in (2, 3)
        or encodings.shape[-1] != width
        or encodings.shape[-2] < MAX_PROMPT_LENGTH
        or encodings.shape[-2] % MAX_PROMPT_LENGTH
    ):
        length, double = MAX_PROMPT_LENGTH, 2 * MAX_PROMPT_LENGTH
        raise ValueError(
            f"`{name}` must have shape (N, L, {width}) or (L, {width}) for "
            f"the {preset_name!r} text encoder, where the sequence length L "
            f"is a positive multiple of {length}: ({length}, {width}) for a prompt "
            f"of up to {CHUNK_LENGTH} tokens, ({double}, {width}) for two chunks "
            "of a long prompt (encode_text(..., long_prompts=True)). "
            f"Received: {name}.shape={encodings.shape}"
        )
    return encodings


def check_noise(diffusion_noise: Any, latent_shape: tuple[int, int, int]) -> np.ndarray:
    """Accepts latents (N, h, w, 4) or (h, w, 4) of this Explorer's latent shape."""
    noise = np.asarray(diffusion_noise, dtype=np.float32)
    if noise.ndim not in (3, 4) or noise.shape[-3:] != latent_shape:
        shape = ", ".join(map(str, latent_shape))
        height, width = 8 * latent_shape[0], 8 * latent_shape[1]
        raise ValueError(
            f"`diffusion_noise` must have shape (N, {shape}) or ({shape}) for "
            f"{height}x{width} images. "
            f"Received: diffusion_noise.shape={noise.shape}"
        )
    return noise


def is_batched(array: np.ndarray | None, num_dims: int) -> bool:
    """True when `array` has a leading batch axis of more than one row."""
    return array is not None and array.ndim == num_dims + 1 and array.shape[0] != 1


def unbatch(array: np.ndarray, num_dims: int) -> np.ndarray:
    """Drops a leading batch axis of one row, if there is one."""
    return array[0] if array.ndim == num_dims + 1 else array


def count_images(encodings: np.ndarray, noise: np.ndarray | None, batch_size: int | None) -> int:
    """The image count N of `generate_image`: encodings' rows, noise's rows, or batch_size."""
    if batch_size is not None:
        check_count("batch_size", batch_size)
    counts = {}
    if is_batched(encodings, 2):
        counts["encoded_text"] = encodings.shape[0]
    if is_batched(noise, 3):
        counts["diffusion_noise"] = noise.shape[0]
    if len(set(counts.values())) > 1:
        raise ValueError(
            f"`encoded_text` and `diffusion_noise` have different batch sizes. Received: {counts}"
        )
    if counts:
        return next(iter(counts.values()))
    return batch_size or 1


def check_seed_or_noise(seed: Any, diffusion_noise: Any) -> None:
    """KerasCV's rule: `seed` only draws noise that was not given."""
    if diffusion_noise is not None and seed is not None:
        raise ValueError(
            "`diffusion_noise` and `seed` should not both be passed to "
            "`generate_image`. `seed` is only used to generate diffusion "
            f"noise when it's not already user-specified. Received: seed={seed}"
        )
