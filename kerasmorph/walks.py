"""Walks: per-frame prompt encodings and noise for latent-space experiments.

A `Walk` says what each frame of a render is made of — its text encoding
(L, D), L = 77 or 77·k for long prompts, and its starting noise (H/8, W/8, 4) —
and computes them for any batch of frame indices on demand, so a render of
thousands of frames holds only one
batch of inputs at a time. The builders below encode their prompts and draw
their noise once through an `Explorer`, then mix them with the pure functions
of `kerasmorph.interpolation`:

| builder | frames | noise |
|---|---|---|
| `prompt_walk` | 2+ prompts, lerped on a schedule | fixed |
| `grid_walk` | bilinear grid of 4 prompts, row-major | fixed or one per cell |
| `delta_walk` | `encoding + k·delta` around one prompt | fixed |
| `noise_loop_walk` | one prompt | `cos θ·x + sin θ·y`, closing the loop |
| `seed_walk` | one prompt | 2+ seeds, slerp or variance-preserving |
| `keyframe_walk` | keyframes (prompt, seed), together or alternately | slerp |
| `path_walk` | keyframe arrays (encodings, noises) | slerp |
| `image_morph_walk` | 2+ real images' prompts | their DDIM-inverted noises, slerped |

`from_image(explorer, walk, image, strength)` starts every frame of any walk
from one image (img2img) instead of pure noise; with a depth model and one
depth map (`Explorer.set_depth_map`) the layout then holds along the walk.

The one-liners (`interpolate`, `grid`, `walk`, `loop`, `morph_seeds`,
`morph_prompts`) build a walk, render it and return the frames as a uint8
array (F, H, W, 3); writing files is a separate call (`kerasmorph.export`).

Every builder that encodes prompts takes `long_prompts`: prompts over 77
tokens are then encoded in 75-token chunks (77·k tokens), and the prompts of
a walk, encoded in one `encode_text` call, come out padded with empty chunks
to one length (`Explorer.pad_encodings`), so they interpolate like short ones.

Walks that mix keyframe noises (seed morphs, keyframes, paths, loops) mix the
per-step noise of stochastic schedulers (`euler_ancestral`) the same way
(`Walk.step_noise`), so neighbouring frames share nearly all of it; walks with
fixed noise give every frame the same per-step noise.

References:
    Ian Stenbit, François Chollet, Luke Wood, "A walk through latent space
    with Stable Diffusion", keras.io (2022).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from kerasmorph import interpolation

# `Walk` lives with the Explorer that renders it; re-exported here with its builders.
from kerasmorph.explorer.walk import FrameInputs as FrameInputs
from kerasmorph.explorer.walk import Walk as Walk
from kerasmorph.explorer.walk import as_walk as as_walk
from kerasmorph.explorer.walk import derived_noise, uniform_positions
from kerasmorph.morph_options import DEFAULT_SWITCH_WIDTH
from kerasmorph.morph_options import MorphOptions as MorphOptions
from kerasmorph.morph_options import plan_walk as plan_walk
from kerasmorph.schedulers import Scheduler
from kerasmorph.schedules import Schedule, apply_schedule, schedule_weights


@dataclasses.dataclass(frozen=True)
class Keyframe:
    """A point of a keyframed walk.

    Attributes:
        prompt: the keyframe's prompt; `None` keeps the previous keyframe's.
        seed: the keyframe's noise seed; `None` keeps the previous keyframe's.
    """

    prompt: str | None = None
    seed: int | None = None


def _split_frames(num_frames: int, num_segments: int) -> list[int]:
    """Frames started by each segment of an open path with `num_frames` in all."""
    if num_frames < num_segments + 1:
        raise ValueError(
            f"{num_segments + 1} keyframes need at least {num_segments + 1} frames. "
            f"Received: num_frames={num_frames}"
        )
    base, extra = divmod(num_frames - 1, num_segments)
    return [base + (1 if index < extra else 0) for index in range(num_segments)]


def prompt_walk(
    explorer,
    prompts: Sequence[str],
    num_frames: int,
    *,
    schedule: str | Schedule = "linear",
    seed: int = 0,
    long_prompts: bool | None = None,
    text_interpolation: str = "embedding",
    switch_width: float = DEFAULT_SWITCH_WIDTH,
    middle_guidance_scale: float | None = None,
) -> Walk:
    """Interpolates the text encodings of 2+ prompts with the noise held fixed.

    With two prompts and the linear schedule, frame k is exactly
    `tf.linspace(encoding_a, encoding_b, num_frames)[k]`, as in the KerasCV
    walk tutorial. With K prompts the frames are split as evenly as possible
    between the K − 1 segments, and no frame repeats at a join.

    Args:
        explorer: a `kerasmorph.Explorer`.
        prompts: two or more prompts.
        num_frames: total frames, >= len(prompts).
        schedule: schedule name (`"linear"`, `"sinh"`, `"ease"`, `"cosine"`)
            or callable, applied within each segment.
        seed: noise seed; every frame starts from `explorer.noise(1, seed)`.
        long_prompts: encode prompts over 77 tokens in 75-token chunks
            (`Explorer.encode_text(..., long_prompts=True)`); the prompts'
            encodings are padded with empty chunks to one length so they
            can be mixed. Default: the Explorer's `long_prompts`.
        text_interpolation, switch_width, middle_guidance_scale: see
            `MorphOptions` (`"attention"`: AID's interpolated
            cross-attention; `"switch"`: the prompts switched along the
            denoising steps; a middle guidance varies guidance along the
            path). The endpoints' frames are unchanged.

    Returns:
        A `Walk` of `num_frames` frames.
    """
    morph = MorphOptions(text_interpolation, None, middle_guidance_scale, switch_width)
    prompts = _check_prompts(prompts, minimum=2)
    per_segment = _split_frames(num_frames, len(prompts) - 1)
    plan = interpolation.plan_path(len(prompts), per_segment, schedule=schedule)
    encodings = explorer.encode_text(prompts, long_prompts=long_prompts)
    noises = np.repeat(explorer.noise(1, seed), len(prompts), axis=0)
    return plan_walk(plan, encodings, noises, "slerp", morph)


def grid_walk(
    explorer,
    prompts: Sequence[str],
    num_per_side: int,
    *,
    seed: int = 0,
    vary_noise: bool = False,
    schedule: str | Schedule = "linear",
    long_prompts: bool | None = None,
) -> Walk:
    """A bilinear grid of 4 prompts: rows top → bottom, columns left → right.

    Args:
        explorer: a `kerasmorph.Explorer`.
        prompts: top-left, top-right, bottom-left, bottom-right.
        num_per_side: n, >= 2; the walk has n·n frames, row-major, whose
            corners are exactly the 4 prompts' encodings.
        seed: noise seed.
        vary_noise: `False` (default) starts every cell from the same noise;
            `True` gives cell i the noise stream (seed, i).
        schedule: spacing of the rows' and columns' weights.
        long_prompts: encode prompts over 77 tokens in 75-token chunks
            (`Explorer.encode_text(..., long_prompts=True)`); the prompts'
            encodings are padded with empty chunks to one length so they
            can be mixed. Default: the Explorer's `long_prompts`.

    Returns:
        A `Walk` of n·n frames.
    """
    prompts = _check_prompts(prompts, minimum=4, maximum=4)
    grid = interpolation.bilinear_grid(
        *explorer.encode_text(prompts, long_prompts=long_prompts),
        num_per_side,
        schedule=schedule,
    )
    num_cells = num_per_side * num_per_side
    if vary_noise:

        def noise_of(indices):
            return np.concatenate([explorer.noise(1, seed, start=int(i)) for i in indices])
    else:
        fixed = explorer.noise(1, seed)

        def noise_of(indices):
            return np.repeat(fixed, len(indices), axis=0)

    return Walk(
        num_cells,
        lambda indices: (grid[indices], noise_of(indices)),
        uniform_positions(num_cells),
    )


def delta_walk(
    explorer,
    prompt: str,
    num_frames: int,
    *,
    step_size: float | None = None,
    norm: float | None = None,
    direction_seed: int | None = None,
    seed: int = 0,
    schedule: str | Schedule = "linear",
    long_prompts: bool | None = None,
) -> Walk:
    """Walks away from one prompt's encoding: frame k is `encoding + k·delta`.

    Args:
        explorer: a `kerasmorph.Explorer`.
        prompt: the starting prompt.
        num_frames: frames, >= 1.
        step_size: element-wise step (default 0.005, the KerasCV tutorial's
            `ones × 0.005`); exclusive with `norm`.
        norm: L2 length of each step instead.
        direction_seed: draw a random direction from this seed instead of ones.
        seed: noise seed; the noise is fixed.
        schedule: spacing of the steps (linear: equal steps).
        long_prompts: encode a prompt over 77 tokens in 75-token chunks.
            Default: the Explorer's `long_prompts`.

    Returns:
        A `Walk` of `num_frames` frames.
    """
    encoding = explorer.encode_text(prompt, long_prompts=long_prompts)[0]
    noise = explorer.noise(1, seed)
    steps = schedule_weights(num_frames, schedule) * (num_frames - 1)
    interpolation.delta_walk(  # Validates the arguments up front.
        encoding,
        num_frames,
        step_size=step_size,
        norm=norm,
        seed=direction_seed,
        frame_positions=steps[:1],
    )

    def compute(indices):
        encodings = interpolation.delta_walk(
            encoding,
            num_frames,
            step_size=step_size,
            norm=norm,
            seed=direction_seed,
            frame_positions=steps[indices],
        )
        return encodings, np.repeat(noise, len(indices), axis=0)

    return Walk(num_frames, compute, uniform_positions(num_frames))


def noise_loop_walk(
    explorer,
    prompt: str,
    num_frames: int,
    *,
    seed: int = 0,
    schedule: str | Schedule = "linear",
    long_prompts: bool | None = None,
) -> Walk:
    """Circles through noise space around one prompt, returning to the start.

    Frame k's noise is `cos θ·x + sin θ·y` with θ = 2π·schedule(k / F), where
    x and y are the noise streams (seed, 0) and (seed, 1); the frame after the
    last would be frame 0, so a GIF loops seamlessly. Every frame's noise stays
    standard normal. `long_prompts` is as in `delta_walk`.

    Returns:
        A `Walk` of `num_frames` frames.
    """
    encoding = explorer.encode_text(prompt, long_prompts=long_prompts)
    x, y = explorer.noise(2, seed)
    positions = apply_schedule(schedule, np.arange(num_frames) / num_frames) * num_frames
    positions = np.minimum(positions, np.nextafter(num_frames, 0))

    def compute(indices):
        noise = interpolation.noise_loop(x, y, num_frames, frame_positions=positions[indices])
        return np.repeat(encoding, len(indices), axis=0), noise

    def step_noise(indices, call):
        x_step, y_step = derived_noise(np.stack([x, y]), call)
        return interpolation.noise_loop(
            x_step, y_step, num_frames, frame_positions=positions[indices]
        )

    return Walk(num_frames, compute, np.arange(num_frames) / num_frames, step_noise)


def seed_walk(
    explorer,
    prompt: str,
    seeds: Sequence[int],
    num_frames: int,
    *,
    schedule: str | Schedule = "ease",
    noise_method: str = "variance_preserving",
    long_prompts: bool | None = None,
    noise_statistics: str | None = None,
    middle_guidance_scale: float | None = None,
) -> Walk:
    """Morphs the noise between 2+ seeds for one prompt.

    The mix keeps the noise standard normal (variance-preserving
    `sqrt(1−x)·a + sqrt(x)·b` by default, or `"slerp"`); a plain lerp, which
    would blur the middle frames, is never used. `long_prompts` is as in
    `delta_walk`. `noise_statistics="adain"` corrects the mixed noises'
    channel statistics, `middle_guidance_scale` varies guidance along the
    path (`MorphOptions`).

    Returns:
        A `Walk` of `num_frames` frames.
    """
    seeds = list(seeds)
    if len(seeds) < 2:
        raise ValueError(f"`seeds` must hold at least 2 seeds. Received: seeds={seeds}")
    per_segment = _split_frames(num_frames, len(seeds) - 1)
    plan = interpolation.plan_path(len(seeds), per_segment, schedule=schedule)
    # The prompt stays: every keyframe gets the same encoding.
    encodings = np.repeat(
        explorer.encode_text(prompt, long_prompts=long_prompts), len(seeds), axis=0
    )
    noises = np.concatenate([explorer.noise(1, s) for s in seeds])
    morph = MorphOptions("embedding", noise_statistics, middle_guidance_scale)
    return plan_walk(plan, encodings, noises, noise_method, morph)


def keyframe_walk(
    explorer,
    keyframes: Sequence[Keyframe],
    frames_per_segment: int | Sequence[int],
    *,
    schedule: str | Schedule | Sequence[str | Schedule] = "linear",
    mode: str = "together",
    closed: bool = False,
    noise_method: str = "slerp",
    long_prompts: bool | None = None,
    text_interpolation: str = "embedding",
    switch_width: float = DEFAULT_SWITCH_WIDTH,
    noise_statistics: str | None = None,
    middle_guidance_scale: float | None = None,
) -> Walk:
    """Walks through keyframes, varying prompt and noise together or in turn.

    Args:
        explorer: a `kerasmorph.Explorer`.
        keyframes: 2+ `Keyframe`s; a missing prompt or seed repeats the
            previous keyframe's (the first needs a prompt; its seed defaults to 0).
        frames_per_segment: frames per segment, an int or one per segment.
        schedule: a schedule, or one per segment.
        mode: `"together"` or `"alternate"` (prompt first, then noise).
        closed: add a segment back to the first keyframe (a seamless loop).
        noise_method: `"slerp"` or `"variance_preserving"`.
        long_prompts: encode prompts over 77 tokens in 75-token chunks
            (`Explorer.encode_text(..., long_prompts=True)`); the prompts'
            encodings are padded with empty chunks to one length so they
            can be mixed. Default: the Explorer's `long_prompts`.
        text_interpolation, switch_width, noise_statistics,
        middle_guidance_scale: how the frames between keyframes are made
            (`MorphOptions`): the default lerps the encodings; `"attention"`
            interpolates every cross-attention output (AID), `"switch"`
            switches the prompts along the steps, `"adain"` corrects the mixed
            noise's channel statistics, a middle guidance varies guidance
            along the path. Each keyframe's own frame is unchanged.

    Returns:
        A `Walk`; see `kerasmorph.interpolation.plan_path` for the frame count.
    """
    if len(keyframes) < 2:
        raise ValueError(f"A keyframed walk needs at least 2 keyframes. Received: {len(keyframes)}")
    prompts, seeds = [], []
    for index, keyframe in enumerate(keyframes):
        prompt = keyframe.prompt if keyframe.prompt is not None else (prompts or [None])[-1]
        if prompt is None:
            raise ValueError(
                f"The first keyframe needs a prompt. Received: keyframes[{index}]={keyframe}"
            )
        prompts.append(prompt)
        seeds.append(keyframe.seed if keyframe.seed is not None else (seeds or [0])[-1])
    return path_walk(
        explorer.encode_text(prompts, long_prompts=long_prompts),
        np.concatenate([explorer.noise(1, s) for s in seeds]),
        frames_per_segment,
        schedule=schedule,
        mode=mode,
        closed=closed,
        noise_method=noise_method,
        text_interpolation=text_interpolation,
        switch_width=switch_width,
        noise_statistics=noise_statistics,
        middle_guidance_scale=middle_guidance_scale,
    )


def path_walk(
    encodings: np.ndarray,
    noises: np.ndarray,
    frames_per_segment: int | Sequence[int],
    *,
    schedule: str | Schedule | Sequence[str | Schedule] = "linear",
    mode: str = "together",
    closed: bool = False,
    noise_method: str = "slerp",
    text_interpolation: str = "embedding",
    switch_width: float = DEFAULT_SWITCH_WIDTH,
    noise_statistics: str | None = None,
    middle_guidance_scale: float | None = None,
) -> Walk:
    """Walks through keyframes given as arrays (K, L, D) and (K, h, w, 4).

    The K encodings share one length L (77·k); pad encodings of long prompts
    with different chunk counts with `Explorer.pad_encodings` first.

    Encodings are lerped and noises slerped (or variance-preserving mixed)
    along `kerasmorph.interpolation.plan_path`; see `keyframe_walk` (and
    `MorphOptions` for `text_interpolation`, `noise_statistics` and
    `middle_guidance_scale`).
    """
    morph = MorphOptions(text_interpolation, noise_statistics, middle_guidance_scale, switch_width)
    plan = interpolation.plan_path(
        len(encodings), frames_per_segment, schedule=schedule, mode=mode, closed=closed
    )
    return plan_walk(plan, encodings, noises, noise_method, morph)


def image_morph_walk(
    explorer,
    images: Sequence[Any],
    prompts: Sequence[str],
    num_frames: int,
    *,
    schedule: str | Schedule = "linear",
    num_steps: int = 50,
    inversion_guidance: float = 1.0,
    num_refinements: int = 0,
    long_prompts: bool | None = None,
) -> Walk:
    """Morphs between 2+ real images through their DDIM-inverted noises.

    Each image is encoded and inverted under its prompt
    (`Explorer.invert`); the walk then lerps the prompts' encodings and
    slerps the inverted noises. Render it with the same `num_steps` and
    guidance (`inversion_guidance`) to start and end on the images.

    Args:
        explorer: a `kerasmorph.Explorer`.
        images: 2+ images (paths, PIL images or arrays), resized to the model.
        prompts: one prompt per image ("" is fine).
        num_frames: total frames, >= len(images).
        schedule: spacing of the frames.
        num_steps: steps of the inversion (use the same when rendering).
        inversion_guidance: guidance while inverting.
        num_refinements: fixed-point iterations per inversion step.
        long_prompts: encode prompts over 77 tokens in 75-token chunks
            (`Explorer.encode_text(..., long_prompts=True)`); the prompts'
            encodings are padded with empty chunks to one length so they
            can be mixed. Default: the Explorer's `long_prompts`.

    Returns:
        A `Walk` of `num_frames` frames.
    """
    images = list(images)
    prompts = _check_prompts(prompts, minimum=2)
    if len(images) != len(prompts):
        raise ValueError(
            f"Give one prompt per image. Received: {len(images)} images and {len(prompts)} prompts"
        )
    latents = explorer.encode_image(explorer.load_images(images))
    encodings = explorer.encode_text(prompts, long_prompts=long_prompts)
    noises = explorer.invert(
        latents,
        encodings,
        num_steps=num_steps,
        unconditional_guidance_scale=inversion_guidance,
        num_refinements=num_refinements,
    )
    return path_walk(
        encodings, noises, _split_frames(num_frames, len(images) - 1), schedule=schedule
    )


def from_image(explorer, walk: Walk, image: Any, strength: float = 0.8) -> Walk:
    """Starts every frame of `walk` from one image (img2img) instead of pure noise.

    Each frame's own noise noises the image's latents to `strength`, as
    `Explorer.image_to_image` does, so the walk still moves (its prompts,
    its noise) while the picture's structure stays.

    Args:
        explorer: the `Explorer` that will render the walk (it encodes the image).
        walk: any `Walk`.
        image: one image: a path, a PIL image or an array (resized with
            `Explorer.load_images`).
        strength: in (0, 1]: how far from the image each frame goes.

    Returns:
        The walk with `start_latents` (1, H/8, W/8, 4) and `strength` set.

    Example:

    ```python
    walk = kerasmorph.walks.prompt_walk(explorer, ["a red circle", "a blue square"], 9)
    frames = list(explorer.render(kerasmorph.walks.from_image(explorer, walk, "photo.png")))
    ```
    """
    images = explorer.load_images(image)
    if len(images) != 1:
        raise ValueError(f"A walk starts from one image. Received: {len(images)} images")
    latents = explorer.encode_image(images)
    return dataclasses.replace(walk, start_latents=latents, strength=float(strength))


def _check_prompts(prompts: Sequence[str], minimum: int, maximum: int | None = None) -> list[str]:
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if len(prompts) < minimum or (maximum is not None and len(prompts) > maximum):
        expected = f"exactly {minimum}" if minimum == maximum else f"at least {minimum}"
        raise ValueError(
            f"Expected {expected} prompts. Received: {len(prompts)} prompts {prompts!r}"
        )
    return prompts


# ----------------------------------------------------------------- one-liners


def morph_images(
    explorer,
    images: Sequence[Any],
    prompts: Sequence[str],
    num_frames: int = 30,
    *,
    schedule: str | Schedule = "linear",
    num_steps: int = 50,
    unconditional_guidance_scale: float = 1.0,
    batch_size: int | None = None,
    long_prompts: bool | None = None,
    scheduler: str | Scheduler | None = None,
    negative_prompt: str | None = None,
) -> np.ndarray:
    """Frames morphing between real images (DDIM inversion, then a walk).

    The inverted noises start and end the walk on the images only when it is
    rendered with DDIM, the inversion scheduler: `scheduler` must be `None`
    (the Explorer's, if DDIM) or `"ddim"`. `negative_prompt` changes the
    render only (the images are inverted under the empty prompt): at the
    default guidance 1 it has no effect, above 1 it moves the ends off the
    images.
    """
    _check_inversion_scheduler(explorer, scheduler)
    path = image_morph_walk(
        explorer,
        images,
        prompts,
        num_frames,
        schedule=schedule,
        num_steps=num_steps,
        inversion_guidance=unconditional_guidance_scale,
        long_prompts=long_prompts,
    )
    sampling = _sampling(num_steps, unconditional_guidance_scale, batch_size, scheduler)
    return _render_all(explorer, path, sampling, negative_prompt)


def _check_inversion_scheduler(explorer, scheduler: str | Scheduler | None) -> None:
    chosen = explorer.scheduler if scheduler is None else scheduler
    name = chosen if isinstance(chosen, str) else getattr(chosen, "name", repr(chosen))
    if name != "ddim":
        raise ValueError(
            "A real-image morph renders DDIM-inverted noise, so it renders with DDIM, the "
            f"inversion scheduler: pass scheduler='ddim'. Received: scheduler={name!r}"
        )


def _render_all(
    explorer, walk: Walk, sampling: dict[str, Any], negative_prompt: str | None
) -> np.ndarray:
    return np.stack(list(explorer.render(walk, negative_prompt=negative_prompt, **sampling)))


def interpolate(
    explorer,
    prompts: Sequence[str],
    num_frames: int = 5,
    *,
    schedule: str | Schedule = "linear",
    seed: int = 0,
    num_steps: int = 50,
    unconditional_guidance_scale: float = 7.5,
    batch_size: int | None = None,
    long_prompts: bool | None = None,
    scheduler: str | Scheduler | None = None,
    negative_prompt: str | None = None,
    text_interpolation: str = "embedding",
    switch_width: float = DEFAULT_SWITCH_WIDTH,
    middle_guidance_scale: float | None = None,
) -> np.ndarray:
    """Frames interpolating 2+ prompts with fixed noise (the KerasCV tutorial).

    `long_prompts` encodes prompts over 77 tokens in 75-token chunks (see
    `prompt_walk`); default: the Explorer's `long_prompts`. `scheduler` is a
    name from `kerasmorph.schedulers` or a `Scheduler` (default: the
    Explorer's, `"ddim"`). `negative_prompt` is the text of every frame's
    unconditional pass (default ""). The other one-liners take all three too.
    `text_interpolation="attention"` interpolates the cross-attention outputs
    instead of the encodings (AID), `"switch"` switches the prompts along the
    denoising steps (`switch_width`), `middle_guidance_scale` varies guidance
    along the path (`MorphOptions`).

    Returns:
        uint8 (num_frames, H, W, 3).

    Example:

    ```python
    frames = kerasmorph.walks.interpolate(explorer, ["a cat", "a dog"], 150, num_steps=25)
    kerasmorph.export.save_gif("cat_dog.gif", frames, fps=10, rubber_band=True)
    ```
    """
    walk = prompt_walk(
        explorer,
        prompts,
        num_frames,
        schedule=schedule,
        seed=seed,
        long_prompts=long_prompts,
        text_interpolation=text_interpolation,
        switch_width=switch_width,
        middle_guidance_scale=middle_guidance_scale,
    )
    sampling = _sampling(num_steps, unconditional_guidance_scale, batch_size, scheduler)
    return _render_all(explorer, walk, sampling, negative_prompt)


def morph_prompts(
    explorer,
    prompts: Sequence[str],
    num_frames: int = 30,
    *,
    schedule: str | Schedule = "sinh",
    seed: int = 0,
    num_steps: int = 50,
    unconditional_guidance_scale: float = 7.5,
    batch_size: int | None = None,
    long_prompts: bool | None = None,
    scheduler: str | Scheduler | None = None,
    negative_prompt: str | None = None,
    text_interpolation: str = "embedding",
    switch_width: float = DEFAULT_SWITCH_WIDTH,
    middle_guidance_scale: float | None = None,
) -> np.ndarray:
    """A prompt morph with sinh spacing: frames dense where the image flips."""
    return interpolate(
        explorer,
        prompts,
        num_frames,
        schedule=schedule,
        seed=seed,
        num_steps=num_steps,
        unconditional_guidance_scale=unconditional_guidance_scale,
        batch_size=batch_size,
        long_prompts=long_prompts,
        scheduler=scheduler,
        negative_prompt=negative_prompt,
        text_interpolation=text_interpolation,
        switch_width=switch_width,
        middle_guidance_scale=middle_guidance_scale,
    )


def grid(
    explorer,
    prompts: Sequence[str],
    num_per_side: int = 4,
    *,
    seed: int = 0,
    vary_noise: bool = False,
    num_steps: int = 50,
    unconditional_guidance_scale: float = 7.5,
    batch_size: int | None = None,
    long_prompts: bool | None = None,
    scheduler: str | Scheduler | None = None,
    negative_prompt: str | None = None,
) -> np.ndarray:
    """The n·n frames of a 4-prompt bilinear grid, row-major.

    Show them with `kerasmorph.plotting.plot_grid(frames)`.
    """
    walk = grid_walk(
        explorer,
        prompts,
        num_per_side,
        seed=seed,
        vary_noise=vary_noise,
        long_prompts=long_prompts,
    )
    sampling = _sampling(num_steps, unconditional_guidance_scale, batch_size, scheduler)
    return _render_all(explorer, walk, sampling, negative_prompt)


def walk(
    explorer,
    prompt: str,
    num_frames: int = 150,
    *,
    step_size: float = 0.005,
    seed: int = 0,
    num_steps: int = 50,
    unconditional_guidance_scale: float = 7.5,
    batch_size: int | None = None,
    long_prompts: bool | None = None,
    scheduler: str | Scheduler | None = None,
    negative_prompt: str | None = None,
) -> np.ndarray:
    """Frames of a delta walk around one prompt (`encoding + k·step_size`)."""
    path = delta_walk(
        explorer, prompt, num_frames, step_size=step_size, seed=seed, long_prompts=long_prompts
    )
    sampling = _sampling(num_steps, unconditional_guidance_scale, batch_size, scheduler)
    return _render_all(explorer, path, sampling, negative_prompt)


def loop(
    explorer,
    prompt: str,
    num_frames: int = 64,
    *,
    seed: int = 0,
    num_steps: int = 50,
    unconditional_guidance_scale: float = 7.5,
    batch_size: int | None = None,
    long_prompts: bool | None = None,
    scheduler: str | Scheduler | None = None,
    negative_prompt: str | None = None,
) -> np.ndarray:
    """Frames of a circular noise loop on one prompt (loops seamlessly)."""
    path = noise_loop_walk(explorer, prompt, num_frames, seed=seed, long_prompts=long_prompts)
    sampling = _sampling(num_steps, unconditional_guidance_scale, batch_size, scheduler)
    return _render_all(explorer, path, sampling, negative_prompt)


def morph_seeds(
    explorer,
    prompt: str,
    seeds: Sequence[int] = (1, 2),
    num_frames: int = 30,
    *,
    schedule: str | Schedule = "ease",
    num_steps: int = 50,
    unconditional_guidance_scale: float = 7.5,
    batch_size: int | None = None,
    long_prompts: bool | None = None,
    scheduler: str | Scheduler | None = None,
    negative_prompt: str | None = None,
    noise_statistics: str | None = None,
    middle_guidance_scale: float | None = None,
) -> np.ndarray:
    """Frames morphing the noise between seeds for one prompt (variance-preserving, eased).

    `noise_statistics="adain"` and `middle_guidance_scale`: see `MorphOptions`.
    """
    path = seed_walk(
        explorer,
        prompt,
        seeds,
        num_frames,
        schedule=schedule,
        long_prompts=long_prompts,
        noise_statistics=noise_statistics,
        middle_guidance_scale=middle_guidance_scale,
    )
    sampling = _sampling(num_steps, unconditional_guidance_scale, batch_size, scheduler)
    return _render_all(explorer, path, sampling, negative_prompt)


def _sampling(
    num_steps: int, guidance: float, batch_size: int | None, scheduler: str | Scheduler | None
) -> dict[str, Any]:
    return {
        "num_steps": num_steps,
        "unconditional_guidance_scale": guidance,
        "batch_size": batch_size,
        "scheduler": scheduler,
    }
