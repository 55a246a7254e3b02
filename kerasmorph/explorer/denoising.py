"""The Explorer's denoising loop over a walk's frames, batch by batch, with any scheduler.

For each fixed-shape batch of frames: the walk's encodings and starting noise,
the unconditional context brought to the same length, the scheduler's start
(`init_noise_sigma`, or the img2img level), the sampler, and — for stochastic
schedulers — the per-step noise of those frames (`Walk.noise_at`, coherent
along walks that mix their keyframes' noise).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from kerasmorph import models, schedulers
from kerasmorph._checks import check_float32
from kerasmorph.explorer.batching import batch_indices, pad_rows, progress_callback, run_padded
from kerasmorph.explorer.checks import check_finite
from kerasmorph.explorer.tasks import num_denoise_steps
from kerasmorph.explorer.walk import Walk

if TYPE_CHECKING:
    from kerasmorph.explorer.explorer import Explorer


def resolve_scheduler(
    scheduler: Any, num_steps: int, prediction_type: str = "epsilon"
) -> schedulers.Scheduler:
    """A scheduler with its timesteps set for `num_steps` steps.

    Args:
        scheduler: a name from `kerasmorph.schedulers.SCHEDULERS` (built with
            the model's `prediction_type`), or a `Scheduler` (copied, so the
            caller's object is not changed).
        num_steps: denoising steps.
        prediction_type: the model's, for schedulers given by name.

    Raises:
        ValueError: for an unknown name, another type, or a step count the
            scheduler cannot run.
    """
    if isinstance(scheduler, str):
        scheduler = schedulers.get(scheduler, prediction_type=prediction_type)
    elif isinstance(scheduler, schedulers.Scheduler):
        scheduler = copy.deepcopy(scheduler)
    else:
        valid = ", ".join(repr(name) for name in schedulers.SCHEDULERS)
        raise ValueError(
            f"`scheduler` must be a scheduler name ({valid}) or a "
            f"kerasmorph.schedulers.Scheduler. Received: scheduler={scheduler!r}"
        )
    scheduler.set_timesteps(num_steps)
    return scheduler


def denoise_walk(
    explorer: "Explorer",
    walk: Walk,
    scheduler: schedulers.Scheduler,
    unconditional_guidance_scale: float,
    negative_prompt: str | None,
    batch_size: int,
    num_skipped_steps: int = 0,
) -> Iterator[np.ndarray]:
    """Yields the final latents (B, h, w, 4) of each batch of the walk's frames.

    With `num_skipped_steps` = 0 the walk's noise is standard normal and is
    scaled by the scheduler's `init_noise_sigma`; otherwise it is already at
    the level of the first step run (`Explorer.noised_latents`).

    Raises:
        ValueError: for a guidance scale that is not finite (in float32), or
            `num_skipped_steps` outside [0, num_steps).
        NonFiniteOutputError: when a batch's latents have NaN or Inf, naming
            the input that had them first.
    """
    unconditional_guidance_scale = check_float32(
        "unconditional_guidance_scale", unconditional_guidance_scale
    )
    num_steps = scheduler.num_steps
    if not 0 <= num_skipped_steps < num_steps:
        raise ValueError(
            f"`num_skipped_steps` must be in [0, {num_steps}). "
            f"Received: num_skipped_steps={num_skipped_steps}"
        )
    image_skipped = _image_start_steps(walk, num_steps, num_skipped_steps)
    skipped = num_skipped_steps or image_skipped
    start = scheduler.start_index(num_steps - skipped) if skipped else 0
    num_batches = -(-walk.num_frames // batch_size)
    total = num_batches * (scheduler.num_model_calls - start)
    progbar = progress_callback(total, explorer.verbose)
    for indices in batch_indices(walk.num_frames, batch_size):
        encodings, noise = walk.inputs(indices)
        noise = explorer._check_noise(noise)
        if len(encodings) != len(indices) or len(noise) != len(indices):
            raise ValueError(
                f"The walk returned {len(encodings)} encodings and {len(noise)} "
                f"noises for {len(indices)} frames. Received: indices={indices.tolist()}"
            )
        encodings, unconditional, sampler = _conditioning(
            explorer, walk.text_interpolation, encodings, negative_prompt
        )
        if image_skipped:  # img2img from the walk's image, each frame with its own noise.
            image = np.repeat(walk.start_latents, len(noise), axis=0)
            latents = scheduler.add_noise(image, noise, start).astype(np.float32)
        elif num_skipped_steps:
            latents = noise
        else:
            latents = noise * np.float32(scheduler.init_noise_sigma)
        step_noise = None
        if scheduler.stochastic:

            def step_noise(call, indices=indices, noise=noise):
                return pad_rows(walk.noise_at(indices, noise, call), batch_size)[0]

        unconditional = np.repeat(unconditional, batch_size, axis=0)
        guidance = walk.guidance_at(indices, unconditional_guidance_scale)
        per_frame = np.ndim(guidance) > 0
        guidance_rows = [guidance] if per_frame else []  # Padded with the frames.
        context_at = None
        if walk.step_encodings is not None:

            def context_at(call, indices=indices):
                step = walk.step_encodings(indices, call, scheduler.num_model_calls)
                step = explorer._text.guidance_contexts(explorer._text.check(step), negative_prompt)
                return pad_rows(step[0], batch_size)[0]

        def sample(
            batch_latents,
            batch_encodings,
            *batch_guidance,
            step_noise=step_noise,
            context_at=context_at,
        ):
            return sampler.sample(
                batch_latents,
                batch_encodings,
                unconditional,
                scheduler,
                batch_guidance[0] if batch_guidance else unconditional_guidance_scale,
                start_index=start,
                on_step=progbar,
                step_noise=step_noise,
                context_at=context_at,
            )

        result = run_padded(sample, [latents, encodings, *guidance_rows], batch_size)
        inputs = {
            "encoded_text": encodings,
            "latents" if num_skipped_steps else "diffusion_noise": noise,
            "unconditional context": unconditional,
        }
        check_finite(
            result, "denoising", explorer.precision, inputs, guidance=unconditional_guidance_scale
        )
        yield result


def _image_start_steps(walk: Walk, num_steps: int, num_skipped_steps: int) -> int:
    """The steps a walk that starts from an image skips (0 at strength 1: pure noise)."""
    if walk.start_latents is None:
        return 0
    if num_skipped_steps:
        raise ValueError(
            "A walk with `start_latents` noises its image itself: pass its noise, not "
            f"latents already noised. Received: num_skipped_steps={num_skipped_steps}"
        )
    num_denoise = num_denoise_steps(walk.strength, num_steps)  # As img2img counts them.
    if num_denoise == 0:
        raise ValueError(
            f"strength {walk.strength} of {num_steps} steps runs no denoising step; "
            f"raise the strength or the steps. Received: strength={walk.strength}, "
            f"num_steps={num_steps}"
        )
    return num_steps - num_denoise


def _conditioning(
    explorer: "Explorer", text_interpolation: str, encodings: np.ndarray, negative_prompt
) -> tuple[np.ndarray, np.ndarray, Any]:
    """The prompt and unconditional contexts of a batch, and the Sampler that takes them.

    For `"attention"` the encodings are packed endpoint pairs with α
    (`models.pack_contexts`): both endpoints are brought to the unconditional
    context's length, and the unconditional pass is packed as (u, u, α = 0),
    which is exactly u's cross-attention.

    Returns:
        `(encodings (B, L', D), unconditional (1, L', D), sampler)`.
    """
    text = explorer._text
    if text_interpolation != "attention":  # "switch" starts from its first step's encodings.
        encodings, unconditional = text.guidance_contexts(text.check(encodings), negative_prompt)
        return encodings, unconditional, explorer.sampler_for(encodings.shape[1])
    first, second, alpha = models.unpack_contexts(encodings)
    both = text.check(np.concatenate([first, second]))
    both, unconditional = text.guidance_contexts(both, negative_prompt)
    first, second = both[: len(first)], both[len(first) :]
    packed = models.pack_contexts(first, second, alpha)
    unconditional = models.pack_contexts(unconditional, unconditional, np.zeros(1))
    return packed, unconditional, explorer._store.interpolating_sampler_for(first.shape[1])
