"""The denoising loop: KerasCV's DDIM (eta = 0) over any UNet callable.

It computes what `keras_cv.models.StableDiffusion.generate_image` computes —
same timesteps, same `_ALPHAS_CUMPROD` table, same guidance formula, same
operation order in the update — with three differences that change speed,
not results:

- the unconditional and conditional UNet passes run as ONE call on a doubled
  batch (`[unconditional; conditional]`), not two `predict_on_batch` calls
  (which also copy the batch to every replica under a `tf.distribute`
  strategy);
- the whole guided step is one `tf.function`, compiled by XLA when
  `jit_compile=True`, whose inputs are all tensors of fixed shape, so a render
  of any length traces it once per (batch size, image size);
- per-step constants (timestep embeddings, the four DDIM coefficients) are
  computed once per schedule.

The scheduler arithmetic and the guidance combination run in float32 whatever
the UNet's compute dtype.

A UNet's `context` input has a static length (77 as built). To denoise with
the longer encodings of chunked prompts (77·k tokens), give the Sampler a UNet
rewired to that length (`kerasmorph.presets.rewire_context_length`); the
`Explorer` keeps one Sampler per length, so each length is traced once.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

NUM_TRAIN_TIMESTEPS = 1000
TIME_EMBEDDING_DIM = 320


def kerascv_alphas_cumprod() -> np.ndarray:
    """Returns KerasCV's `_ALPHAS_CUMPROD` table as float64, shape (1000,)."""
    from keras_cv.src.models.stable_diffusion.constants import _ALPHAS_CUMPROD

    return np.asarray(_ALPHAS_CUMPROD, dtype=np.float64)


def scaled_linear_alphas_cumprod(
    beta_start: float = 0.00085,
    beta_end: float = 0.012,
    num_train_timesteps: int = NUM_TRAIN_TIMESTEPS,
) -> np.ndarray:
    """Computes ᾱ_t of Stable Diffusion's scaled-linear beta schedule.

    Betas are linear in sqrt space between `beta_start` and `beta_end`; this
    reproduces KerasCV's stored table to ~5e-8 (see the tests).

    Returns:
        float64 array (num_train_timesteps,), decreasing from ~0.99915.
    """
    betas = np.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps) ** 2
    return np.cumprod(1.0 - betas)


def ddim_timesteps(num_steps: int) -> np.ndarray:
    """KerasCV's timesteps: `round(arange(num_steps) * 999 / (num_steps - 1))`.

    Args:
        num_steps: number of denoising steps, >= 1.

    Returns:
        int64 array (num_steps,), ascending from 0 to 999 (just [0] when
        `num_steps == 1`, as in KerasCV).
    """
    if not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"`num_steps` must be an integer >= 1. Received: num_steps={num_steps!r}")
    ratio = (NUM_TRAIN_TIMESTEPS - 1) / (num_steps - 1) if num_steps > 1 else NUM_TRAIN_TIMESTEPS
    return (np.arange(0, num_steps) * ratio).round().astype(np.int64)


@dataclasses.dataclass(frozen=True)
class DDIMSchedule:
    """Per-step constants of a deterministic DDIM run, in ascending order.

    The loop visits the steps from the last index to 0. At index i the update
    is, with eps the guided noise prediction:

        pred_x0 = (latent - sqrt(1 - ᾱ_i) · eps) / sqrt(ᾱ_i)
        latent  = eps · sqrt(1 - ᾱ_prev_i) + sqrt(ᾱ_prev_i) · pred_x0

    where ᾱ_prev_0 = 1 (the last update returns pred_x0).

    Attributes:
        timesteps: int64 (num_steps,).
        alphas: ᾱ at each timestep, float64 (num_steps,).
        alphas_prev: ᾱ of the next (less noisy) step, float64 (num_steps,).
    """

    timesteps: np.ndarray
    alphas: np.ndarray
    alphas_prev: np.ndarray

    @classmethod
    def create(cls, num_steps: int, alphas_cumprod: np.ndarray | None = None) -> "DDIMSchedule":
        """Builds KerasCV's schedule for `num_steps` steps.

        Args:
            num_steps: number of denoising steps, >= 1.
            alphas_cumprod: ᾱ table of 1000 entries; default KerasCV's.
        """
        table = kerascv_alphas_cumprod() if alphas_cumprod is None else alphas_cumprod
        timesteps = ddim_timesteps(num_steps)
        alphas = np.asarray([table[t] for t in timesteps], dtype=np.float64)
        alphas_prev = np.concatenate([[1.0], alphas[:-1]])
        return cls(timesteps=timesteps, alphas=alphas, alphas_prev=alphas_prev)

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    def coefficients(self) -> np.ndarray:
        """Returns float32 (num_steps, 4): sqrt(1-ᾱ), sqrt(ᾱ), sqrt(1-ᾱ_prev), sqrt(ᾱ_prev).

        Computed in float64 with `math.sqrt`, then rounded to float32, exactly
        as KerasCV's Python floats are when multiplied with float32 tensors.
        """
        rows = [
            (
                math.sqrt(1.0 - a_t),
                math.sqrt(a_t),
                math.sqrt(1.0 - a_prev),
                math.sqrt(a_prev),
            )
            for a_t, a_prev in zip(self.alphas, self.alphas_prev)
        ]
        return np.asarray(rows, dtype=np.float32)


def timestep_embeddings(
    timesteps: np.ndarray, dim: int = TIME_EMBEDDING_DIM, max_period: int = 10000
) -> np.ndarray:
    """Sinusoidal timestep embeddings, computed with KerasCV's float32 ops.

    Args:
        timesteps: int array (num_steps,).
        dim: embedding width (320 for every Stable Diffusion UNet).
        max_period: the embedding's longest period.

    Returns:
        float32 (num_steps, dim): `[cos(t·f), sin(t·f)]` with
        `f = exp(-log(max_period) · arange(dim/2) / (dim/2))`.
    """
    import tensorflow as tf

    half = dim // 2
    freqs = tf.exp(-math.log(max_period) * tf.cast(tf.range(half), tf.float32) / half)
    rows = []
    for timestep in timesteps:
        args = tf.constant([float(timestep)], dtype=tf.float32) * freqs
        rows.append(tf.concat([tf.cos(args), tf.sin(args)], 0))
    return tf.stack(rows).numpy()


class Sampler:
    """Runs guided DDIM denoising with one UNet call per step.

    Args:
        diffusion_model: a Keras UNet taking `latent` (B, h, w, 4),
            `timestep_embedding` (B, 320) and `context` (B, L, D), returning
            the noise prediction (B, h, w, 4) in any float dtype. L is the
            UNet's context length (77, or 77·k for a UNet rewired with
            `kerasmorph.presets.rewire_context_length`).
        jit_compile: compile each guided step with XLA.

    Attributes:
        num_traces: how many times the step function has been traced; one per
            (batch size, image size) when nothing retraces (a Sampler runs
            one UNet, so one context length).
        num_steps_run: guided steps run so far (each is one UNet call on a
            doubled batch).

    Example:

    ```python
    sampler = kerasmorph.sampler.Sampler(explorer.diffusion_model)
    schedule = kerasmorph.sampler.DDIMSchedule.create(num_steps=25)
    latent = sampler.sample(noise, context, unconditional_context, schedule, 7.5)
    ```
    """

    def __init__(self, diffusion_model, jit_compile: bool = False, strategy=None):
        import tensorflow as tf

        self.diffusion_model = diffusion_model
        self.jit_compile = jit_compile
        self.strategy = strategy
        self.num_traces = 0
        self.num_steps_run = 0
        self._step = tf.function(self._guided_step, jit_compile=jit_compile)
        self._embedding_cache: dict[int, np.ndarray] = {}

    def _guided_step(
        self, latent, timestep_embedding, context, unconditional_context, guidance, coefficients
    ):
        import tensorflow as tf

        self.num_traces += 1  # Runs only while tracing.
        batch_size = tf.shape(latent)[0]
        # Shapes: latent (B, h, w, 4); contexts (B, L, D); embedding (320,).
        outputs = self.diffusion_model(
            {
                "latent": tf.concat([latent, latent], axis=0),
                "timestep_embedding": tf.repeat(timestep_embedding[None], 2 * batch_size, axis=0),
                "context": tf.concat([unconditional_context, context], axis=0),
            },
            training=False,
        )
        outputs = tf.cast(outputs, tf.float32)
        unconditional_eps, conditional_eps = outputs[:batch_size], outputs[batch_size:]
        eps = unconditional_eps + guidance * (conditional_eps - unconditional_eps)
        sqrt_one_minus_alpha, sqrt_alpha = coefficients[0], coefficients[1]
        sqrt_one_minus_alpha_prev, sqrt_alpha_prev = coefficients[2], coefficients[3]
        pred_x0 = (latent - sqrt_one_minus_alpha * eps) / sqrt_alpha
        return eps * sqrt_one_minus_alpha_prev + sqrt_alpha_prev * pred_x0

    def sample(
        self,
        latent: np.ndarray,
        context: np.ndarray,
        unconditional_context: np.ndarray,
        schedule: DDIMSchedule,
        unconditional_guidance_scale: float,
        *,
        num_skipped_steps: int = 0,
        on_step: Callable[[], None] | None = None,
        keep: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Denoises one batch of latents.

        Args:
            latent: float32 (B, h, w, 4), the starting latent (pure noise for
                text-to-image).
            context: float32 (B, L, D), the prompt encodings.
            unconditional_context: float32 (B, L, D), the empty or negative
                prompt encodings.
            schedule: the `DDIMSchedule`.
            unconditional_guidance_scale: the classifier-free guidance scale.
            num_skipped_steps: skip this many of the noisiest steps (img2img
                starts part-way); 0 runs them all.
            on_step: called after every step (progress bars).
            keep: `(mask, original, noise)` for inpainting by latent mask
                blending: mask float32 (B, h, w, 1), 1 = repaint; after every
                step the kept region (mask 0) is replaced by `original`
                (B, h, w, 4) noised with `noise` to the step's level,
                `sqrt(ᾱ_prev)·original + sqrt(1 − ᾱ_prev)·noise`. The last
                step has ᾱ_prev = 1, so the kept region ends exactly equal to
                `original`.

        Returns:
            float32 (B, h, w, 4), the final latent.
        """
        import tensorflow as tf

        coefficients = schedule.coefficients()
        after_step = None
        if keep is not None:
            mask, original, noise = (tf.constant(a, tf.float32) for a in keep)

            def after_step(index, latent):
                noised = coefficients[index, 3] * original + coefficients[index, 2] * noise
                return mask * latent + (1.0 - mask) * noised

        return self._run(
            latent,
            context,
            unconditional_context,
            schedule.timesteps,
            coefficients,
            range(schedule.num_steps - 1 - num_skipped_steps, -1, -1),
            unconditional_guidance_scale,
            on_step,
            after_step,
        )

    def invert(
        self,
        latent: np.ndarray,
        context: np.ndarray,
        unconditional_context: np.ndarray,
        schedule: DDIMSchedule,
        unconditional_guidance_scale: float,
        *,
        num_refinements: int = 0,
        on_step: Callable[[], None] | None = None,
    ) -> np.ndarray:
        """DDIM inversion: runs the deterministic sampler backwards.

        Step i goes from ᾱ_prev_i to ᾱ_i with the noise predicted at the less
        noisy latent and timestep t_i — the forward update with its two ᾱs
        swapped — so it reuses the compiled step. That prediction is taken at
        the wrong latent, which is what makes plain inversion approximate;
        each of `num_refinements` fixed-point iterations evaluates the forward
        step at the current guess x and corrects it,
        `x += (x_prev − step(x)) · sqrt(ᾱ_i) / sqrt(ᾱ_prev_i)`, so that
        sampling from the result lands back on `latent`.

        Args:
            latent: float32 (B, h, w, 4), clean image latents.
            context, unconditional_context: as in `sample`.
            schedule: the `DDIMSchedule`.
            unconditional_guidance_scale: guidance used while inverting (1.0
                inverts most faithfully).
            num_refinements: fixed-point iterations per step (each costs one
                guided UNet call); 0 is plain DDIM inversion.
            on_step: called after every inversion step.

        Returns:
            float32 (B, h, w, 4), the latent at the schedule's noisiest step.
        """
        import tensorflow as tf

        _check_contexts(context, unconditional_context)
        forward = schedule.coefficients()
        swapped = forward[:, [2, 3, 0, 1]]
        embeddings = self._embeddings(schedule.timesteps)
        latent = tf.convert_to_tensor(latent, dtype=tf.float32)
        context = tf.convert_to_tensor(context, dtype=tf.float32)
        unconditional_context = tf.convert_to_tensor(unconditional_context, dtype=tf.float32)
        guidance = tf.constant(unconditional_guidance_scale, dtype=tf.float32)
        for index in range(schedule.num_steps):
            previous = latent
            latent = self._step(
                previous,
                embeddings[index],
                context,
                unconditional_context,
                guidance,
                tf.constant(swapped[index]),
            )
            # d step(x) / dx ≈ sqrt(ᾱ_prev) / sqrt(ᾱ) when eps varies slowly.
            gain = float(forward[index, 1] / forward[index, 3])
            for _ in range(num_refinements):
                back = self._step(
                    latent,
                    embeddings[index],
                    context,
                    unconditional_context,
                    guidance,
                    tf.constant(forward[index]),
                )
                latent = latent + (previous - back) * gain
            self.num_steps_run += 1 + num_refinements
            if on_step is not None:
                on_step()
        return latent.numpy()

    def _run(
        self,
        latent,
        context,
        unconditional_context,
        timesteps,
        coefficients,
        indices,
        guidance,
        on_step,
        after_step=None,
    ) -> np.ndarray:
        """Runs the compiled step at each of `indices`, in the order given."""
        import tensorflow as tf

        _check_contexts(context, unconditional_context)
        if self.strategy is not None and self.strategy.num_replicas_in_sync > 1:
            if after_step is not None:
                raise ValueError(
                    "Latent mask blending (inpainting) runs on one device; build the "
                    "Explorer without a multi-replica strategy to inpaint."
                )
            return self._run_distributed(
                latent,
                context,
                unconditional_context,
                timesteps,
                coefficients,
                indices,
                guidance,
                on_step,
            )
        embeddings = self._embeddings(timesteps)
        step_coefficients = tf.constant(coefficients)
        latent = tf.convert_to_tensor(latent, dtype=tf.float32)
        context = tf.convert_to_tensor(context, dtype=tf.float32)
        unconditional_context = tf.convert_to_tensor(unconditional_context, dtype=tf.float32)
        guidance = tf.constant(guidance, dtype=tf.float32)
        for index in indices:
            latent = self._step(
                latent,
                embeddings[index],
                context,
                unconditional_context,
                guidance,
                step_coefficients[index],
            )
            if after_step is not None:
                latent = after_step(index, latent)
            self.num_steps_run += 1
            if on_step is not None:
                on_step()
        return latent.numpy()

    def _run_distributed(
        self,
        latent,
        context,
        unconditional_context,
        timesteps,
        coefficients,
        indices,
        guidance,
        on_step,
    ) -> np.ndarray:
        """Shards the batch across the strategy's replicas with `strategy.run`.

        Replica r gets rows [r·B/n, (r+1)·B/n) of every batched input; the
        per-replica latents stay on their devices between steps and are
        gathered in replica order at the end, so frames come out in order.
        """
        import tensorflow as tf

        strategy = self.strategy
        num_replicas = strategy.num_replicas_in_sync
        rows = len(latent)
        if rows % num_replicas:
            raise ValueError(
                f"The batch of {rows} rows does not split evenly over {num_replicas} "
                f"replicas. Use a batch size that is a multiple of {num_replicas}."
            )
        share = rows // num_replicas

        def distribute(array):
            array = np.asarray(array, dtype=np.float32)
            return strategy.experimental_distribute_values_from_function(
                lambda context: tf.constant(
                    array[context.replica_id_in_sync_group * share :][:share]
                )
            )

        embeddings = self._embeddings(timesteps)
        step_coefficients = tf.constant(coefficients)
        latent, context = distribute(latent), distribute(context)
        unconditional_context = distribute(unconditional_context)
        guidance = tf.constant(guidance, dtype=tf.float32)
        for index in indices:
            latent = strategy.run(
                self._step,
                args=(
                    latent,
                    embeddings[index],
                    context,
                    unconditional_context,
                    guidance,
                    step_coefficients[index],
                ),
            )
            self.num_steps_run += 1
            if on_step is not None:
                on_step()
        return np.concatenate(
            [part.numpy() for part in strategy.experimental_local_results(latent)]
        )

    def _embeddings(self, timesteps: np.ndarray):
        import tensorflow as tf

        key = hash(timesteps.tobytes())
        if key not in self._embedding_cache:
            self._embedding_cache[key] = timestep_embeddings(timesteps)
        return tf.constant(self._embedding_cache[key])


def _check_contexts(context, unconditional_context) -> None:
    """Both passes of a guided step run as one UNet call, so their shapes must match."""
    if tuple(context.shape) != tuple(unconditional_context.shape):
        raise ValueError(
            "`context` and `unconditional_context` must have the same shape (B, L, D); "
            "pad the shorter encoding with empty chunks (`Explorer.pad_encodings`). "
            f"Received: context.shape={tuple(context.shape)}, "
            f"unconditional_context.shape={tuple(unconditional_context.shape)}"
        )
