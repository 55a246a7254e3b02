"""`MorphOptions`: how a walk between keyframes is made smoother than plain interpolation.

Three training-free changes from the morphing literature, each composable
with the others and with any schedule (`"beta"` is AID's prior) and with the
adaptive bisection (`kerasmorph.adaptive`):

- `text_interpolation="attention"` (AID, He et al., NeurIPS 2024): every
  cross-attention output is `(1 − α)·Attn(Q, K₁, V₁) + α·Attn(Q, K₂, V₂)`
  instead of attending to the lerped encoding;
- `text_interpolation="switch"` (prompt editing, as A1111's `[A:B:step]`):
  each frame denoises with the first prompt's encoding in its early steps
  and the second's in its late ones, the switch (a ramp `switch_width` of
  the steps wide) moving earlier as α grows; every step sees a real
  prompt's encoding, so the subject does not fade, but what the early steps
  decide (layout, position) changes in one jump;
- `noise_statistics="adain"` (DiffMorpher, Zhang et al., CVPR 2024): the
  interpolated noise is renormalised to its endpoints' lerped per-channel
  mean and standard deviation;
- `middle_guidance_scale=g` (after IMPUS, Yang et al., ICLR 2024): guidance
  goes linearly from the render's scale at each keyframe to `g` halfway
  between.

At a keyframe (α = 0 or 1) every option reduces to the plain prompt, noise
and guidance: a walk's first and last frames are its keyframes' own images.
`plan_walk` turns a planned path (`kerasmorph.interpolation.plan_path`) and
its options into a `Walk`; the builders of `kerasmorph.walks` use it.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Sequence

import numpy as np

from kerasmorph import interpolation, models
from kerasmorph._checks import check_choice, check_unit_interval
from kerasmorph.constants import TEXT_INTERPOLATIONS
from kerasmorph.explorer.walk import Walk, derived_noise
from kerasmorph.interpolation import PathFrame
from kerasmorph.noise_statistics import adain

NOISE_STATISTICS = ("adain",)
# Width of the `"switch"` ramp, as a fraction of the steps (0: a hard switch).
DEFAULT_SWITCH_WIDTH = 0.3


def switch_weights(alpha: np.ndarray, num_calls: int, width: float = DEFAULT_SWITCH_WIDTH):
    """The second prompt's weight at each UNet call of a `"switch"` frame.

    Call k of K sits at p = (k + ½)/K of the denoising. The weight ramps from
    0 to 1 over `width` of the steps, centred at c(α) = (1 − α)(1 + W) − W/2:

        w_k(α) = clip((p_k − c(α)) / W + ½, 0, 1)      (W = width > 0)
        w_k(α) = 1 if p_k ≥ 1 − α else 0                (W = 0, a hard switch)

    so α = 0 is the first prompt at every call and α = 1 the second, and a
    larger α switches earlier.

    Args:
        alpha: float (B,), each frame's weight in [0, 1].
        num_calls: the scheduler's UNet calls K.
        width: W in [0, 1].

    Returns:
        float64 (B, K): row b holds frame b's weight at each call.
    """
    alpha = np.asarray(alpha, dtype=np.float64)[:, None]
    positions = (np.arange(num_calls) + 0.5) / num_calls
    if width == 0:
        weights = (positions >= 1.0 - alpha).astype(np.float64)
    else:
        centre = (1.0 - alpha) * (1.0 + width) - width / 2.0
        weights = np.clip((positions - centre) / width + 0.5, 0.0, 1.0)
    weights = np.where(alpha == 0.0, 0.0, weights)
    return np.where(alpha == 1.0, 1.0, weights)


@dataclasses.dataclass(frozen=True)
class MorphOptions:
    """The smoothing options of a walk between keyframes (validated on construction).

    Attributes:
        text_interpolation: `"embedding"` (the default: the lerped text
            encoding, as in the KerasCV walk tutorial) or `"attention"`
            (AID's outer interpolation of cross-attention outputs).
        noise_statistics: `None`, or `"adain"` to correct interpolated noise
            to the lerped per-channel statistics of its endpoints.
        middle_guidance_scale: `None` (the render's guidance everywhere), or
            the guidance halfway between two keyframes: a frame at weight α
            gets `s + (g − s)·(1 − |2α − 1|)` for the render's scale `s`.
            Lower than `s` follows the "lower in the middle" idea; IMPUS
            itself raises it (max 3, min 1.5 at the ends).
        switch_width: the width of the `"switch"` ramp as a fraction of the
            steps, in [0, 1] (default 0.3; 0: a hard switch); only with
            `text_interpolation="switch"`.

    Raises:
        ValueError: for an unknown name or a guidance that is not a finite number.
    """

    text_interpolation: str = "embedding"
    noise_statistics: str | None = None
    middle_guidance_scale: float | None = None
    switch_width: float = DEFAULT_SWITCH_WIDTH

    def __post_init__(self) -> None:
        check_choice("text_interpolation", self.text_interpolation, TEXT_INTERPOLATIONS)
        if self.noise_statistics is not None and self.noise_statistics not in NOISE_STATISTICS:
            raise ValueError(
                "`noise_statistics` must be None or 'adain'. "
                f"Received: noise_statistics={self.noise_statistics!r}"
            )
        scale = self.middle_guidance_scale
        if scale is not None and (
            isinstance(scale, bool)
            or not isinstance(scale, numbers.Real)
            or not math.isfinite(scale)
        ):
            raise ValueError(
                "`middle_guidance_scale` must be None or a finite number. "
                f"Received: middle_guidance_scale={scale!r}"
            )

        width = check_unit_interval("switch_width", self.switch_width)
        if width != DEFAULT_SWITCH_WIDTH and self.text_interpolation != "switch":
            raise ValueError(
                "`switch_width` shapes text_interpolation='switch' only. Received: "
                f"switch_width={width!r} with text_interpolation={self.text_interpolation!r}"
            )

    @property
    def is_default(self) -> bool:
        """Whether these options change nothing (plain interpolation)."""
        return self == MorphOptions()

    def to_json(self) -> dict:
        """The options that differ from the defaults (what a render manifest records)."""
        defaults = MorphOptions()
        return {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if getattr(self, field.name) != getattr(defaults, field.name)
        }

    def guidance_along(
        self, plan: Sequence[PathFrame]
    ) -> Callable[[np.ndarray, float], np.ndarray] | None:
        """`Walk.guidance` for a planned path: the tent from each keyframe to the middle.

        A frame's weight is its prompt weight where the prompts differ, else
        its noise weight (a seed morph).
        """
        if self.middle_guidance_scale is None:
            return None
        weights = np.array(
            [
                f.prompt_weight if f.prompt_pair[0] != f.prompt_pair[1] else f.noise_weight
                for f in plan
            ]
        )
        middle = float(self.middle_guidance_scale)

        def guidance(indices: np.ndarray, scale: float) -> np.ndarray:
            tent = 1.0 - np.abs(2.0 * weights[indices] - 1.0)
            return scale + (middle - scale) * tent

        return guidance


def plan_walk(
    plan: list[PathFrame],
    encodings: np.ndarray,
    noises: np.ndarray,
    noise_method: str,
    morph: MorphOptions | None = None,
) -> Walk:
    """The walk of a planned path (`kerasmorph.interpolation.plan_path`) through keyframes.

    Args:
        plan: one `PathFrame` per frame.
        encodings: keyframe encodings (K, L, D).
        noises: keyframe noises (K, h, w, 4).
        noise_method: `"slerp"` or `"variance_preserving"`.
        morph: `MorphOptions`; default plain interpolation.

    Returns:
        A `Walk` of `len(plan)` frames, whose per-step noise is mixed like its
        starting noise.
    """
    morph = morph or MorphOptions()

    def mixed_noise(frames, keyframe_noises: np.ndarray, mixed: np.ndarray) -> np.ndarray:
        if morph.noise_statistics is None:
            return mixed
        return np.stack(
            [
                adain(mixed[k], *keyframe_noises[list(f.noise_pair)], f.noise_weight)
                for k, f in enumerate(frames)
            ]
        )

    def compute(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        frames = [plan[i] for i in indices]
        frame_encodings, frame_noises = interpolation.materialize_path(
            frames, encodings, noises, noise_method=noise_method
        )
        if morph.text_interpolation == "attention":
            # The endpoints and α, for the UNet that interpolates attention outputs.
            frame_encodings = models.pack_contexts(
                encodings[[f.prompt_pair[0] for f in frames]],
                encodings[[f.prompt_pair[1] for f in frames]],
                np.array([f.prompt_weight for f in frames]),
            )
        return frame_encodings, mixed_noise(frames, noises, frame_noises)

    def step_noise(indices: np.ndarray, call: int) -> np.ndarray:
        # The keyframes' per-step noises, mixed exactly like their starting noises.
        frames = [plan[i] for i in indices]
        keyframe_noise = derived_noise(noises, call)
        mixed = interpolation.materialize_path(
            frames, encodings, keyframe_noise, noise_method=noise_method
        )[1]
        return mixed_noise(frames, keyframe_noise, mixed)

    step_encodings = None
    if morph.text_interpolation == "switch":

        def step_encodings(indices: np.ndarray, call: int, num_calls: int) -> np.ndarray:
            # Each frame's endpoints, mixed by its weight at this call of the steps.
            frames = [plan[i] for i in indices]
            alpha = np.array([f.prompt_weight for f in frames])
            weights = switch_weights(alpha, num_calls, morph.switch_width)[:, call]
            first = encodings[[f.prompt_pair[0] for f in frames]]
            second = encodings[[f.prompt_pair[1] for f in frames]]
            weights = weights[:, None, None].astype(first.dtype)
            return (1 - weights) * first + weights * second  # Exact at weights 0 and 1.

    # Position along the walk: segment index plus the moving weight, normalised.
    progress = np.array([f.segment + max(f.prompt_weight, f.noise_weight) for f in plan])
    if plan[-1].prompt_weight < 1 and plan[-1].noise_weight < 1:
        total = progress[-1] + 1.0  # A closed path ends one step before its start.
    else:
        total = max(progress[-1], 1e-12)
    return Walk(
        len(plan),
        compute,
        progress / total,
        step_noise,
        morph.guidance_along(plan),
        morph.text_interpolation,
        step_encodings,
    )
