"""Adaptive frame spacing: spend frames where the picture changes.

Fixed spacing curves (`sinh`, `ease`) cannot know where a morph jumps. Here a
1-D path is a function of its position p in [0, 1]; it is rendered on a
coarse uniform grid, the change between neighbouring frames is measured
(any distance of `kerasmorph.metrics`: mean absolute or root-mean-square pixel
difference, 1 − SSIM, or the distance of the frames' VAE latents), and the
intervals with the largest change are bisected — a batch of them at a time —
until every neighbouring pair changes less than `threshold` or `max_frames`
is reached. Only the pairs a round creates are measured again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from kerasmorph import interpolation, metrics, walks
from kerasmorph._checks import check_int
from kerasmorph.explorer.walk import Walk, derived_noise
from kerasmorph.morph_options import MorphOptions
from kerasmorph.progress import ProgressBar
from kerasmorph.schedules import Schedule, apply_schedule

Metric = Literal["mad", "l2", "ssim", "latent_l2"]  # `kerasmorph.metrics.METRICS`.
PathFunction = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
""" `positions (F,) -> (encodings, noises)`; with a `step_noise(positions, call)`
attribute (as `KeyframePath` has) stochastic schedulers take their per-step
noise from it, else from each frame's starting noise (`derived_noise`)."""


@dataclasses.dataclass(frozen=True)
class KeyframePath:
    """A continuous path through K keyframes: position p -> (encoding, noise).

    Segment s covers p in [s/(K−1), (s+1)/(K−1)]; inside it the weight is
    `schedule(q)` for the local position q, encodings are lerped and noises
    mixed with `interpolate_noise`. p = 0 and p = 1 are the first and last
    keyframes exactly. Made by `keyframe_path`.

    Attributes:
        encodings: (K, 77, D), K >= 2.
        noises: (K, h, w, 4).
        schedule: the in-segment schedule.
        noise_method: how keyframe noises are mixed.
        morph: the smoothing options of the frames between keyframes
            (`kerasmorph.MorphOptions`: attention interpolation, AdaIN,
            guidance along the path); `refine` renders them through `walk`.
    """

    encodings: np.ndarray
    noises: np.ndarray
    schedule: str | Schedule = "linear"
    noise_method: str = "slerp"
    morph: MorphOptions = MorphOptions()

    def walk(self, positions: np.ndarray) -> Walk:
        """The frames at `positions (F,)` as a `Walk`, with every option of `morph`."""
        walk = walks.plan_walk(
            self._plan(positions), self.encodings, self.noises, self.noise_method, self.morph
        )
        return dataclasses.replace(walk, positions=np.asarray(positions, dtype=np.float64))

    def _plan(self, positions: np.ndarray) -> list[interpolation.PathFrame]:
        positions = np.asarray(positions, dtype=np.float64)
        if positions.ndim != 1 or positions.min() < 0 or positions.max() > 1:
            raise ValueError(f"Positions must be a 1-D array in [0, 1]. Received: {positions!r}")
        num_segments = len(self.encodings) - 1
        scaled = positions * num_segments
        segments = np.minimum(np.floor(scaled).astype(int), num_segments - 1)
        weights = apply_schedule(self.schedule, scaled - segments)
        return [
            interpolation.PathFrame(
                segment=int(s),
                prompt_pair=(int(s), int(s) + 1),
                prompt_weight=float(w),
                noise_pair=(int(s), int(s) + 1),
                noise_weight=float(w),
            )
            for s, w in zip(segments, weights)
        ]

    def __call__(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`positions (F,)` -> `(encodings (F, 77, D), noises (F, h, w, 4))`."""
        return interpolation.materialize_path(
            self._plan(positions), self.encodings, self.noises, noise_method=self.noise_method
        )

    def step_noise(self, positions: np.ndarray, call: int) -> np.ndarray:
        """Per-step noise of UNet call `call` at `positions`: float32 (F, h, w, 4).

        The keyframes' derived per-step noises, mixed exactly like their
        starting noises, so frames bisected in later rounds share nearly all
        of it with their neighbours (stochastic schedulers stay coherent).
        """
        keyframe_noise = derived_noise(self.noises, call)
        return interpolation.materialize_path(
            self._plan(positions), self.encodings, keyframe_noise, noise_method=self.noise_method
        )[1]


def keyframe_path(
    encodings: np.ndarray,
    noises: np.ndarray,
    *,
    schedule: str | Schedule = "linear",
    noise_method: str = "slerp",
    morph: MorphOptions | None = None,
) -> KeyframePath:
    """A continuous path through K keyframes: position p -> (encoding, noise).

    Args:
        encodings: (K, 77, D), K >= 2.
        noises: (K, h, w, 4).
        schedule: the in-segment schedule (`kerasmorph.schedules`).
        noise_method: how keyframe noises are mixed (`"slerp"`, ...).
        morph: `kerasmorph.MorphOptions` for the frames between keyframes;
            default plain interpolation.

    Returns:
        A `KeyframePath`: `positions (F,) -> (encodings (F, 77, D), noises
        (F, h, w, 4))`, with `step_noise(positions, call)` for stochastic
        schedulers.
    """
    if len(encodings) < 2 or len(noises) != len(encodings):
        raise ValueError(
            "A path needs 2+ keyframes with one noise each. Received: "
            f"encodings.shape={np.shape(encodings)}, noises.shape={np.shape(noises)}"
        )
    return KeyframePath(
        np.asarray(encodings), np.asarray(noises), schedule, noise_method, morph or MorphOptions()
    )


def frame_changes(frames: np.ndarray, metric: Metric = "mad") -> np.ndarray:
    """Change between neighbouring frames: (F, H, W, 3) frames -> (F − 1,).

    `"mad"`: mean absolute pixel difference / 255, in [0, 1]; `"l2"`: the
    root-mean-square difference / 255; `"ssim"`: 1 − SSIM (as
    `tf.image.ssim`). See `kerasmorph.metrics.frame_distances`; `"latent_l2"`
    needs the frames' latents (`kerasmorph.metrics.latent_distances`).
    Fewer than 2 frames give an empty array.
    """
    frames = np.asarray(frames)
    if metric not in metrics.DISTANCES:
        raise ValueError(
            f"`metric` must be one of {', '.join(map(repr, metrics.DISTANCES))} for frames "
            f"(refine also takes {metrics.LATENT_DISTANCE!r}). Received: metric={metric!r}"
        )
    if len(frames) < 2:
        return np.zeros(0)
    return metrics.frame_distances(frames, metric)


def _check_metric(explorer, metric: str) -> None:
    """Refuses an unknown metric; builds the image encoder for "latent_l2" (fails now, not
    after the first grid, when the model has none)."""
    if metric not in metrics.METRICS:
        raise ValueError(
            f"`metric` must be one of {', '.join(map(repr, metrics.METRICS))}. "
            f"Received: metric={metric!r}"
        )
    if metric == metrics.LATENT_DISTANCE:
        explorer.encode_image(np.zeros((1, explorer.img_height, explorer.img_width, 3), np.uint8))


def _distances(measured: np.ndarray, metric: Metric) -> np.ndarray:
    if metric == metrics.LATENT_DISTANCE:
        return metrics.latent_distances(measured)
    return metrics.frame_distances(measured, metric)


def _remeasure(
    changes: np.ndarray, is_new: np.ndarray, measured: np.ndarray, metric: Metric
) -> np.ndarray:
    """The changes after inserting frames: kept for old neighbours, measured where one is new.

    Args:
        changes: (F_old − 1,), the changes before the insertion.
        is_new: bool (F,), which frames (in path order) were inserted.
        measured: (F, ...), the frames or latents in path order.
        metric: the distance.
    """
    old_index = np.cumsum(~is_new) - 1  # Of an old frame: its index before the insertion.
    fresh = is_new[:-1] | is_new[1:]
    result = np.empty(len(is_new) - 1)
    result[~fresh] = changes[old_index[:-1][~fresh]]
    for index in np.flatnonzero(fresh):
        result[index] = _distances(measured[index : index + 2], metric)[0]
    return result


@dataclasses.dataclass(frozen=True)
class AdaptiveResult:
    """Frames of an adaptively spaced path.

    Attributes:
        frames: uint8 (F, H, W, 3), in path order.
        positions: float64 (F,), strictly increasing, from 0 to 1.
        changes_before: change between neighbours on the initial grid.
        changes_after: change between neighbours of the final frames.
    """

    frames: np.ndarray
    positions: np.ndarray
    changes_before: np.ndarray
    changes_after: np.ndarray


def refine(
    explorer,
    path: PathFunction,
    *,
    threshold: float,
    max_frames: int,
    initial_frames: int = 9,
    metric: Metric = "mad",
    num_steps: int = 50,
    unconditional_guidance_scale: float = 7.5,
    batch_size: int | None = None,
    scheduler: str | Any | None = None,
    negative_prompt: str | None = None,
) -> AdaptiveResult:
    """Renders a path, bisecting the largest changes until below `threshold`.

    Each round bisects up to `batch_size` of the intervals whose change is
    largest and above `threshold` (so rounds fill whole UNet batches), renders
    the midpoints, and re-measures. Deterministic: ties are broken by
    position.

    Args:
        explorer: a `kerasmorph.Explorer`.
        path: a path function, e.g. from `keyframe_path`.
        threshold: target change between neighbours, in the unit of `metric`
            (`kerasmorph.metrics`; mad, l2 and ssim are in [0, 1]), > 0.
        max_frames: frame budget, >= initial_frames.
        initial_frames: frames of the first, uniform grid (>= 2).
        metric: a distance of `kerasmorph.metrics.METRICS`: `"mad"` (default),
            `"l2"`, `"ssim"`, or `"latent_l2"` (the frames encoded with
            `explorer.encode_image`; needs the model's image encoder).
        num_steps, unconditional_guidance_scale: sampling settings.
        batch_size: UNet batch; also the number of bisections per round.
        scheduler: a `kerasmorph.schedulers` name or `Scheduler`; default the
            Explorer's (`"ddim"`).
        negative_prompt: text of the unconditional pass of every frame;
            default "".

    Returns:
        An `AdaptiveResult`.
    """
    if threshold <= 0:
        raise ValueError(f"`threshold` must be > 0. Received: threshold={threshold!r}")
    if initial_frames < 2 or max_frames < initial_frames:
        raise ValueError(
            "Need 2 <= initial_frames <= max_frames. Received: "
            f"initial_frames={initial_frames}, max_frames={max_frames}"
        )
    _check_metric(explorer, metric)
    batch_size = explorer.batch_size_for(initial_frames, batch_size)

    sampling = {
        "num_steps": num_steps,
        "unconditional_guidance_scale": unconditional_guidance_scale,
        "batch_size": batch_size,
        "scheduler": scheduler,
        "negative_prompt": negative_prompt,
    }
    # One bar for the whole refinement (frames), the per-round bars muted.
    progress = ProgressBar(max_frames, verbose=explorer.verbose, unit_name="frame")

    @progress.counting(mute=explorer)
    def render(positions: np.ndarray) -> np.ndarray:
        return render_positions(explorer, path, positions, **sampling)

    positions = np.linspace(0.0, 1.0, initial_frames)
    frames = render(positions)
    latents = explorer.encode_image(frames) if metric == metrics.LATENT_DISTANCE else None
    before = changes = _distances(frames if latents is None else latents, metric)
    while len(positions) < max_frames:
        over = np.flatnonzero(changes > threshold)
        if over.size == 0:
            break
        budget = min(batch_size, max_frames - len(positions))
        # Largest change first; stable sort breaks ties by position.
        chosen = over[np.argsort(-changes[over], kind="stable")][:budget]
        midpoints = (positions[chosen] + positions[chosen + 1]) / 2
        new_frames = render(midpoints)
        is_new = np.repeat([False, True], [len(positions), len(midpoints)])
        positions = np.concatenate([positions, midpoints])
        frames = np.concatenate([frames, new_frames])
        order = np.argsort(positions, kind="stable")
        positions, frames = positions[order], frames[order]
        if latents is not None:  # Only the new frames are encoded.
            latents = np.concatenate([latents, explorer.encode_image(new_frames)])[order]
        changes = _remeasure(changes, is_new[order], frames if latents is None else latents, metric)
    progress.finish()
    return AdaptiveResult(frames, positions, before, changes)


def render_positions(explorer, path: PathFunction, positions: np.ndarray, **sampling) -> np.ndarray:
    """Renders the frames of `path` at `positions (F,)` in [0, 1]: uint8 (F, H, W, 3).

    A `KeyframePath` renders through its `walk` (with its `MorphOptions`);
    another path function gives `(encodings, noises)` and, optionally, its
    `step_noise(positions, call)`. `sampling` goes to `Explorer.render`.
    """
    if isinstance(path, KeyframePath):
        walk = path.walk(positions)
    else:
        path_step_noise = getattr(path, "step_noise", None)
        step_noise = None
        if path_step_noise is not None:

            def step_noise(indices, call):
                return path_step_noise(positions[indices], call)

        walk = Walk(len(positions), lambda indices: path(positions[indices]), positions, step_noise)
    return np.stack(list(explorer.render(walk, **sampling)))


def respace(
    explorer,
    path: PathFunction,
    *,
    num_frames: int,
    probe_frames: int | None = None,
    metric: Metric = "l2",
    num_steps: int = 50,
    unconditional_guidance_scale: float = 7.5,
    batch_size: int | None = None,
    scheduler: str | Any | None = None,
    negative_prompt: str | None = None,
) -> AdaptiveResult:
    """Renders `num_frames` frames placed so that neighbouring frames are equally far apart.

    DiffMorpher's "reschedule" (Zhang et al., CVPR 2024), the step its
    ablation credits with most of the drop in PDV: render a uniform probe of
    `probe_frames`, measure the distance between neighbours (`metric`), and
    place the final frames at equal steps of the accumulated distance (the
    probe's positions interpolated linearly), so a change the probe saw in
    one interval is spread over the frames that land in it. Probe frames at
    a final position (the two ends at least) are reused, not rendered again.

    Args:
        explorer: a `kerasmorph.Explorer`.
        path: a path function, e.g. from `keyframe_path`.
        num_frames: frames of the result, >= 2.
        probe_frames: frames of the uniform probe, >= 2; default
            `2·num_frames − 1`.
        metric: a distance of `kerasmorph.metrics.METRICS`; default `"l2"`.
        num_steps, unconditional_guidance_scale, batch_size, scheduler,
            negative_prompt: as in `refine`.

    Returns:
        An `AdaptiveResult`: the frames, their positions (from 0 to 1),
        the probe's neighbouring distances and the result's.

    Example:

    ```python
    path = kerasmorph.adaptive.keyframe_path(explorer.encode_text(["a cat", "a dog"]),
                                             np.repeat(explorer.noise(1, 0), 2, axis=0))
    result = kerasmorph.adaptive.respace(explorer, path, num_frames=17, num_steps=25)
    ```
    """
    num_frames = check_int("num_frames", num_frames, 2)
    probe_frames = check_int("probe_frames", probe_frames or 2 * num_frames - 1, 2)
    _check_metric(explorer, metric)
    sampling = {
        "num_steps": num_steps,
        "unconditional_guidance_scale": unconditional_guidance_scale,
        "batch_size": explorer.batch_size_for(probe_frames, batch_size),
        "scheduler": scheduler,
        "negative_prompt": negative_prompt,
    }
    progress = ProgressBar(probe_frames + num_frames, verbose=explorer.verbose, unit_name="frame")
    render = progress.counting(mute=explorer)(
        lambda positions: render_positions(explorer, path, positions, **sampling)
    )

    def distances(frames: np.ndarray) -> np.ndarray:
        measured = explorer.encode_image(frames) if metric == metrics.LATENT_DISTANCE else frames
        return _distances(measured, metric)

    probe_positions = np.linspace(0.0, 1.0, probe_frames)
    probe = render(probe_positions)
    before = distances(probe)
    travelled = np.concatenate([[0.0], np.cumsum(before)])
    if travelled[-1] > 0:
        positions = np.interp(
            np.linspace(0.0, travelled[-1], num_frames), travelled, probe_positions
        )
    else:  # Nothing changes along the path: even spacing.
        positions = np.linspace(0.0, 1.0, num_frames)
    positions[0], positions[-1] = 0.0, 1.0
    reused = np.isin(positions, probe_positions)
    frames = np.empty((num_frames, *probe.shape[1:]), dtype=probe.dtype)
    frames[reused] = probe[np.searchsorted(probe_positions, positions[reused])]
    if (~reused).any():
        frames[~reused] = render(positions[~reused])
    progress.finish()
    return AdaptiveResult(frames, positions, before, distances(frames))


def plot_changes(result: AdaptiveResult):
    """A matplotlib Figure of the change per frame, before and after refinement."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 3))
    axes = figure.subplots()
    initial = np.linspace(0, 1, len(result.changes_before) + 1)
    axes.step(initial[:-1], result.changes_before, where="post", label="uniform")
    axes.step(result.positions[:-1], result.changes_after, where="post", label="adaptive")
    axes.set_xlabel("position along the path")
    axes.set_ylabel("change to the next frame")
    axes.legend()
    figure.tight_layout()
    return figure
