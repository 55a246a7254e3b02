"""Image tasks as compositions of the Explorer's steps: img2img, inpainting, inversion.

Each task encodes (`encode_image`), noises (the scheduler's `add_noise`),
denoises (the sampler) and decodes (`decode`) through the Explorer's public
steps, as keras-hub's Stable Diffusion 3 inpaint task composes its backbone's.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from kerasmorph import images as images_lib
from kerasmorph import schedulers
from kerasmorph._checks import check_float32, check_int, check_unit_interval
from kerasmorph.explorer.batching import map_batches, progress_callback
from kerasmorph.explorer.checks import check_finite
from kerasmorph.explorer.walk import derived_noise

if TYPE_CHECKING:
    from kerasmorph.explorer.explorer import Explorer


@dataclasses.dataclass(frozen=True)
class InpaintResult:
    """What `Explorer.inpaint` returns.

    Attributes:
        images: uint8 (N, H, W, 3), the decoded results.
        composite: uint8 (N, H, W, 3), the original pasted outside the mask
            with a feathered edge.
        latents: float32 (N, H/8, W/8, 4), the final latents (the kept region
            equals the image's latent).
        mask: float32 (H, W), 1 = repainted.
    """

    images: np.ndarray
    composite: np.ndarray
    latents: np.ndarray
    mask: np.ndarray


def ddim_scheduler(num_steps: int) -> schedulers.Scheduler:
    """KerasCV's DDIM with its timesteps set for `num_steps` steps."""
    scheduler = schedulers.get("ddim")
    scheduler.set_timesteps(num_steps)
    return scheduler


def image_noise(explorer: "Explorer", num: int, seed: Any, diffusion_noise: Any) -> np.ndarray:
    """The noise of an image task: given, or drawn with `explorer.noise(num, seed)`."""
    if diffusion_noise is not None and seed is not None:
        raise ValueError(
            f"Pass either `diffusion_noise` or `seed`, not both. Received: seed={seed}"
        )
    if diffusion_noise is not None:
        noise = explorer._check_noise(diffusion_noise)
        return noise[None] if noise.ndim == 3 else noise
    if seed is None:
        from kerasmorph.explorer.kerascv_api import draw_seed

        seed = draw_seed()
    return explorer.noise(num, seed)


def num_denoise_steps(strength: float, num_steps: int) -> int:
    """The steps img2img runs at `strength` of `num_steps`: int(strength · num_steps)."""
    # The epsilon keeps 0.29 * 100 from rounding down to 28.
    return int(strength * num_steps + 1e-9)


def noised_latents(
    latents: np.ndarray, noise: np.ndarray, strength: float, scheduler: schedulers.Scheduler
) -> tuple[np.ndarray, int]:
    """The img2img start and its step count; see `Explorer.noised_latents`."""
    check_unit_interval("strength", strength)
    num_steps = scheduler.num_steps
    num_denoise = num_denoise_steps(strength, num_steps)
    if num_denoise == 0:
        return np.asarray(latents, np.float32), 0
    if num_denoise == num_steps:
        return np.asarray(noise, np.float32), num_steps
    start = scheduler.add_noise(latents, noise, scheduler.start_index(num_denoise))
    return np.asarray(start, np.float32), num_denoise


def image_to_image(
    explorer: "Explorer",
    image: Any,
    prompt: str | np.ndarray,
    *,
    strength: float,
    num_steps: int,
    unconditional_guidance_scale: float,
    seed: int | None,
    diffusion_noise: np.ndarray | None,
    negative_prompt: str | None,
    scheduler: schedulers.Scheduler,
) -> np.ndarray:
    """img2img; see `Explorer.image_to_image`."""
    latents = explorer.encode_image(explorer.load_images(image))
    noise = image_noise(explorer, len(latents), seed, diffusion_noise)
    latents = np.repeat(latents, len(noise), axis=0) if len(latents) == 1 else latents
    start, num_denoise = noised_latents(latents, noise, strength, scheduler)
    if num_denoise == 0:
        return explorer.decode(start)
    final = explorer.denoise(
        start,
        explorer._text.for_images(prompt, len(start)),
        num_steps=num_steps,
        unconditional_guidance_scale=unconditional_guidance_scale,
        negative_prompt=negative_prompt,
        num_skipped_steps=num_steps - num_denoise,
        scheduler=scheduler,
    )
    return explorer.decode(final)


def inpaint(
    explorer: "Explorer",
    image: Any,
    mask: Any,
    prompt: str | np.ndarray,
    *,
    num_steps: int,
    unconditional_guidance_scale: float,
    seed: int | None,
    diffusion_noise: np.ndarray | None,
    feather_radius: float,
    scheduler: schedulers.Scheduler,
    negative_prompt: str | None = None,
) -> InpaintResult:
    """Inpainting by latent mask blending; see `Explorer.inpaint`."""
    unconditional_guidance_scale = check_float32(
        "unconditional_guidance_scale", unconditional_guidance_scale
    )
    pixels = explorer.load_images(image)
    if len(pixels) != 1:
        raise ValueError(f"`inpaint` takes one image. Received: {len(pixels)} images")
    pixel_mask = images_lib.load_mask(mask, (explorer.img_height, explorer.img_width))
    original = explorer.encode_image(pixels)
    noise = image_noise(explorer, 1, seed, diffusion_noise)
    count = len(noise)
    encodings, unconditional = explorer._text.guidance_contexts(
        explorer._text.for_images(prompt, count), negative_prompt
    )
    keep = (
        np.repeat(images_lib.latent_mask(pixel_mask)[None], count, axis=0),
        np.repeat(original, count, axis=0),
        noise,
    )
    final = explorer.sampler_for(encodings.shape[1]).sample(
        noise * np.float32(scheduler.init_noise_sigma),
        encodings,
        np.repeat(unconditional, count, axis=0),
        scheduler,
        unconditional_guidance_scale,
        on_step=progress_callback(scheduler.num_model_calls, explorer.verbose),
        keep=keep,
        step_noise=(lambda call: derived_noise(noise, call)) if scheduler.stochastic else None,
    )
    check_finite(
        final,
        "denoising",
        explorer.precision,
        {
            "encoded_text": encodings,
            "diffusion_noise": noise,
            "image latents": original,
            "unconditional context": unconditional,
        },
        guidance=unconditional_guidance_scale,
    )
    generated = explorer.decode(final)
    composite = np.stack(
        [
            images_lib.feathered_composite(frame, pixels[0], pixel_mask, feather_radius)
            for frame in generated
        ]
    )
    return InpaintResult(generated, composite, final, pixel_mask)


def invert(
    explorer: "Explorer",
    latents: np.ndarray,
    prompt: str | np.ndarray,
    *,
    num_steps: int,
    unconditional_guidance_scale: float,
    num_refinements: int,
) -> np.ndarray:
    """DDIM inversion; see `Explorer.invert`."""
    unconditional_guidance_scale = check_float32(
        "unconditional_guidance_scale", unconditional_guidance_scale
    )
    latents = explorer._check_noise(latents)
    if latents.ndim == 3:
        latents = latents[None]
    encodings = explorer._text.for_images(prompt, len(latents))
    scheduler = ddim_scheduler(num_steps)
    batch_size = explorer.batch_size_for(len(latents))
    check_int("num_refinements", num_refinements, 0)
    encodings, unconditional = explorer._text.guidance_contexts(encodings, None)
    unconditional = np.repeat(unconditional, batch_size, 0)
    sampler = explorer.sampler_for(encodings.shape[1])
    progbar = progress_callback(-(-len(latents) // batch_size) * num_steps, explorer.verbose)

    def invert_batch(batch_latents, batch_encodings):
        return sampler.invert(
            batch_latents,
            batch_encodings,
            unconditional,
            scheduler,
            unconditional_guidance_scale,
            num_refinements=num_refinements,
            on_step=progbar,
        )

    inverted = np.concatenate(list(map_batches(invert_batch, [latents, encodings], batch_size)))
    check_finite(
        inverted,
        "inversion",
        explorer.precision,
        {"latents": latents, "encoded_text": encodings},
        guidance=unconditional_guidance_scale,
    )
    return inverted
