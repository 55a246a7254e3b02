"""`Walk`: the inputs of every frame of a render, computed batch by batch.

The Explorer renders walks; the builders that make them (prompt walks, seed
morphs, loops, keyframes) live one layer up in `kerasmorph.walks`, which
re-exports `Walk`, so the core never imports its workflows.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from kerasmorph._checks import check_choice
from kerasmorph.constants import TEXT_INTERPOLATIONS

FrameInputs = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
# (frame indices (B,), UNet call index) -> standard-normal noise (B, h, w, 4).
StepNoise = Callable[[np.ndarray, int], np.ndarray]


def derived_noise(noise: np.ndarray, call: int) -> np.ndarray:
    """Fresh standard-normal noise for UNet call `call`, derived from each row of `noise`.

    Stochastic (ancestral) schedulers draw new noise at every step. Drawing
    it from a stream keyed by the frame's own starting noise makes a render
    reproducible, and gives frames that start from the same noise the same
    per-step noise (a prompt walk with fixed noise stays coherent). Walks that
    mix keyframe noises mix the keyframes' derived noises the same way
    (`Walk.step_noise`).

    Args:
        noise: float32 (N, h, w, 4), e.g. the frames' starting noise.
        call: the UNet call index, >= 0.

    Returns:
        float32 (N, h, w, 4), row i depending only on (row i of `noise`, call).
    """
    rows = []
    for row in np.asarray(noise, dtype=np.float32):
        digest = hashlib.blake2b(np.ascontiguousarray(row).tobytes(), digest_size=8).digest()
        stream = np.random.default_rng([int.from_bytes(digest, "little"), int(call)])
        rows.append(stream.standard_normal(row.shape, dtype=np.float32))
    return np.stack(rows)


def uniform_positions(num_frames: int) -> np.ndarray:
    """Evenly spaced positions in [0, 1] for `num_frames` frames (0 for one frame)."""
    return np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)


@dataclasses.dataclass(frozen=True)
class Walk:
    """The inputs of every frame of a render, computed batch by batch.

    Attributes:
        num_frames: number of frames F.
        compute: `indices -> (encodings (B, L, D), noise (B, H/8, W/8, 4))`
            for a 1-D int array of B frame indices.
        positions: float64 (F,), each frame's position along the walk in
            [0, 1] (for labels, plots and refinement).
        step_noise: `(indices, call) -> (B, h, w, 4)` per-step noise of
            stochastic schedulers, mixed along the walk like its starting
            noise so neighbouring frames share nearly all of it; `None`:
            `derived_noise` of each frame's starting noise.
        guidance: `(indices, scale) -> float (B,)` each frame's guidance
            given the render's `unconditional_guidance_scale` (a scale that
            varies along the path); `None`: that scale for every frame.
        text_interpolation: how a frame's text conditions the UNet:
            `"embedding"` (its encoding (B, L, D) is a mix of the prompts'),
            or `"attention"` (its encoding is a packed pair of endpoint
            encodings and α, (B, 2L + 1, D) from
            `kerasmorph.models.pack_contexts`, and every cross-attention
            output is interpolated: `kerasmorph.models.interpolate_cross_attention`),
            or `"switch"` (the encoding changes along the denoising steps:
            `step_encodings`).
        step_encodings: `(indices, call, num_calls) -> (B, L, D)` the
            encodings of UNet call `call` of `num_calls` (prompt switching
            along the steps), replacing `compute`'s for that call; `None`:
            `compute`'s at every call.
        start_latents: float32 (1, H/8, W/8, 4), one image's latents every
            frame starts from (img2img), noised with the frame's own noise to
            `strength`; `None`: frames start from their noise (text-to-image).
            Set by `kerasmorph.walks.from_image`.
        strength: with `start_latents`, in (0, 1]: how far from the image
            every frame goes (`Explorer.noised_latents`).
    """

    num_frames: int
    compute: FrameInputs
    positions: np.ndarray
    step_noise: StepNoise | None = None
    guidance: Callable[[np.ndarray, float], np.ndarray] | None = None
    text_interpolation: str = "embedding"
    step_encodings: Callable[[np.ndarray, int, int], np.ndarray] | None = None
    start_latents: np.ndarray | None = None
    strength: float = 1.0

    def __post_init__(self) -> None:
        check_choice("text_interpolation", self.text_interpolation, TEXT_INTERPOLATIONS)
        if self.start_latents is not None:
            shape = np.shape(self.start_latents)
            if len(shape) != 4 or shape[0] != 1:
                raise ValueError(
                    "A walk's `start_latents` must be one image's latents, shape "
                    f"(1, H/8, W/8, 4). Received: shape={shape}"
                )
        if not 0.0 < self.strength <= 1.0:  # NaN fails too.
            raise ValueError(
                "A walk's `strength` must be in (0, 1] (0 would return the image in every "
                f"frame). Received: strength={self.strength}"
            )

    def _check_indices(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """`indices` as a 1-D int64 array, each a frame of this walk."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.ndim != 1 or (
            indices.size and (indices.min() < 0 or indices.max() >= self.num_frames)
        ):
            raise ValueError(
                f"Frame indices must be a 1-D array in [0, {self.num_frames}). "
                f"Received: indices={indices.tolist()}"
            )
        return indices

    def inputs(self, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Returns `(encodings, noise)` of the frames at `indices`, float32."""
        indices = self._check_indices(indices)
        encodings, noise = self.compute(indices)
        return encodings.astype(np.float32), noise.astype(np.float32)

    def subset(self, indices: Sequence[int] | np.ndarray) -> "Walk":
        """The walk restricted to `indices` (e.g. the frames a resumed render lacks)."""
        indices = self._check_indices(indices)
        step_noise, guidance, step_encodings = self.step_noise, self.guidance, self.step_encodings
        return Walk(
            len(indices),
            lambda sub: self.compute(indices[sub]),
            self.positions[indices],
            None if step_noise is None else lambda sub, call: step_noise(indices[sub], call),
            None if guidance is None else lambda sub, scale: guidance(indices[sub], scale),
            self.text_interpolation,
            None
            if step_encodings is None
            else lambda sub, call, num_calls: step_encodings(indices[sub], call, num_calls),
            self.start_latents,
            self.strength,
        )

    def guidance_at(self, indices: np.ndarray, default: float) -> float | np.ndarray:
        """The guidance of the frames at `indices`: `default`, or float32 (B,) along the path."""
        if self.guidance is None:
            return default
        indices = self._check_indices(indices)
        scales = np.asarray(self.guidance(indices, default), dtype=np.float64)
        if scales.shape != (len(indices),) or not np.isfinite(scales).all():
            raise ValueError(
                f"A walk's `guidance` must return one finite scale per frame, shape "
                f"({len(indices)},). Received: shape {scales.shape}"
            )
        return scales.astype(np.float32)

    def noise_at(self, indices: np.ndarray, noise: np.ndarray, call: int) -> np.ndarray:
        """Per-step noise of UNet call `call` for the frames at `indices` (starting `noise`)."""
        if self.step_noise is None:
            return derived_noise(noise, call)
        return np.asarray(self.step_noise(self._check_indices(indices), call), dtype=np.float32)

    @classmethod
    def from_arrays(cls, encodings: np.ndarray, noise: np.ndarray) -> "Walk":
        """A walk over precomputed arrays (F, L, D) and (F, H/8, W/8, 4), L = 77·k."""
        encodings = np.asarray(encodings, dtype=np.float32)
        noise = np.asarray(noise, dtype=np.float32)
        if encodings.ndim != 3 or noise.ndim != 4 or len(encodings) != len(noise):
            raise ValueError(
                "A walk needs encodings (F, L, D) and noise (F, H/8, W/8, 4) with "
                f"the same F. Received: encodings.shape={encodings.shape}, "
                f"noise.shape={noise.shape}"
            )
        return cls(
            num_frames=len(encodings),
            compute=lambda indices: (encodings[indices], noise[indices]),
            positions=uniform_positions(len(encodings)),
        )


def as_walk(walk: Any) -> Walk:
    """Accepts a `Walk` or an `(encodings, noise)` pair of arrays."""
    if isinstance(walk, Walk):
        return walk
    if isinstance(walk, tuple) and len(walk) == 2:
        return Walk.from_arrays(*walk)
    raise ValueError(
        "Expected a kerasmorph.walks.Walk or a pair (encodings, noise). "
        f"Received: {type(walk).__name__}"
    )
