"""The guided denoising loop over any UNet callable and any scheduler.

With the default `kerasmorph.schedulers.DDIMScheduler` it computes what
`keras_cv.models.StableDiffusion.generate_image` computes — same timesteps,
same `_ALPHAS_CUMPROD` table, same guidance formula, same operation order in
the update — with three differences that change speed, not results:

- the unconditional and conditional UNet passes run as ONE call on a doubled
  batch (`[unconditional; conditional]`), not two `predict_on_batch` calls
  (which also copy the batch to every replica under a `tf.distribute`
  strategy);
- the whole guided step (the scheduler's `model_input`, the UNet, guidance and
  the scheduler's `update`) is one `tf.function`, compiled by XLA when
  `jit_compile=True`, whose inputs are all tensors of fixed shape (the
  scheduler's per-step constants are a row of a table), so a render of any
  length traces it once per (batch size, image size);
- timestep embeddings are computed once per schedule.

One loop serves one device and a `tf.distribute` strategy: under a strategy
the batch is split into one shard per replica, the compiled step runs through
`strategy.run`, the element-wise blends (inpainting, inversion refinements)
run on each shard where it lies, and the shards are gathered in replica order.

The scheduler arithmetic and the guidance combination run in float32 whatever
the UNet's compute dtype.

A UNet's `context` input has a static length (77 as built). To denoise with
the longer encodings of chunked prompts (77·k tokens), give the Sampler a UNet
rewired to that length (`kerasmorph.models.rewire_context_length`); the
`Explorer` keeps one Sampler per length, so each length is traced once.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from kerasmorph._checks import check_finite, check_int
from kerasmorph.constants import NUM_TRAIN_TIMESTEPS, TIME_EMBEDDING_DIM
from kerasmorph.schedulers.base import FusedScheduler, Scheduler

__all__ = ["NUM_TRAIN_TIMESTEPS", "TIME_EMBEDDING_DIM", "Sampler", "timestep_embeddings"]


def timestep_embeddings(
    timesteps: np.ndarray, dim: int = TIME_EMBEDDING_DIM, max_period: int = 10000
) -> np.ndarray:
    """Sinusoidal timestep embeddings, computed with KerasCV's float32 ops.

    Args:
        timesteps: int or float array (num_steps,).
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
    """Runs guided denoising with one UNet call per step, for any scheduler.

    Args:
        diffusion_model: a Keras UNet taking `latent` (B, h, w, 4),
            `timestep_embedding` (B, 320) and `context` (B, L, D), returning
            the noise prediction (B, h, w, 4) in any float dtype. L is the
            UNet's context length (77, or 77·k for a UNet rewired with
            `kerasmorph.models.rewire_context_length`).
        jit_compile: compile the guided step with XLA.
        strategy: a `tf.distribute` strategy whose scope built the UNet, or
            `None` for one device. Batches are split evenly over its replicas.

    Attributes:
        num_traces: how many times the step function has been traced; one per
            (batch size, image size) and replica when nothing retraces (a
            Sampler runs one UNet, so one context length).
        num_steps_run: guided steps run so far (each is one UNet call on a
            doubled batch).

    Example:

    ```python
    sampler = kerasmorph.sampler.Sampler(explorer.diffusion_model)
    scheduler = kerasmorph.schedulers.get("ddim")
    scheduler.set_timesteps(25)
    latent = sampler.sample(noise, context, unconditional_context, scheduler, 7.5)
    ```
    """

    def __init__(self, diffusion_model, jit_compile: bool = False, strategy=None):
        self.diffusion_model = diffusion_model
        self.jit_compile = jit_compile
        self.strategy = strategy
        self.num_traces = 0
        self.num_steps_run = 0
        # One compiled step per scheduler `trace_key()` (the class for DDIM), so
        # a new scheduler object per call reuses the traced function.
        self._steps: dict[Hashable, Callable] = {}
        self._embedding_cache: dict[tuple, np.ndarray] = {}

    def sample(
        self,
        latent: np.ndarray,
        context: np.ndarray,
        unconditional_context: np.ndarray,
        scheduler: Scheduler,
        unconditional_guidance_scale: float | np.ndarray,
        *,
        start_index: int = 0,
        on_step: Callable[[], None] | None = None,
        keep: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        step_noise: Callable[[int], np.ndarray] | None = None,
        context_at: Callable[[int], np.ndarray] | None = None,
    ) -> np.ndarray:
        """Denoises one batch of latents.

        Args:
            latent: float32 (B, h, w, 4), the starting latent: noise scaled by
                `scheduler.init_noise_sigma` for text-to-image, or
                `scheduler.add_noise(latents, noise, start_index)` for img2img.
            context: float32 (B, L, D), the prompt encodings.
            unconditional_context: float32 (B, L, D), the empty or negative
                prompt encodings.
            scheduler: a `kerasmorph.schedulers.Scheduler` after
                `set_timesteps(num_steps)`.
            unconditional_guidance_scale: the classifier-free guidance scale,
                one for the batch or float32 (B,), one per row (a walk's
                guidance along its path; traced once more than a scalar).
            start_index: first UNet call to run, in [0, num_model_calls);
                img2img starts at `scheduler.start_index(k)`. Default 0 runs
                them all.
            on_step: called after every step (progress bars).
            keep: `(mask, original, noise)` for inpainting by latent mask
                blending: mask float32 (B, h, w, 1), 1 = repaint; after step i
                the kept region (mask 0) is replaced by `original` (B, h, w, 4)
                noised with `noise` (B, h, w, 4) to the level after the step,
                `scheduler.add_noise(original, noise, i + 1)`. After the last
                step that is `original` itself.
            step_noise: `index -> float32 (B, h, w, 4)` standard-normal noise
                of UNet call `index`, for stochastic (ancestral) schedulers;
                required by them, ignored by the others.
            context_at: `index -> float32 (B, L, D)`, the prompt encodings of
                UNet call `index` instead of `context` (prompt switching
                along the steps); same shape as `context`, so nothing
                retraces. Default: `context` at every call.

        Returns:
            float32 (B, h, w, 4), the final latent.

        Raises:
            ValueError: for mismatched context shapes, an out-of-range
                `start_index`, or a batch that does not split over the replicas.
        """
        _check_contexts(context, unconditional_context)
        start_index = _check_scheduler(scheduler, start_index)
        if not isinstance(scheduler, FusedScheduler):
            return self._sample_on_host(
                latent,
                context,
                unconditional_context,
                scheduler,
                unconditional_guidance_scale,
                start_index,
                on_step,
                keep,
                step_noise,
                context_at,
            )
        run = self._start(scheduler, len(latent), context, unconditional_context)
        replicas = run.replicas
        guidance = _guidance(unconditional_guidance_scale, replicas, len(latent))
        latent = replicas.batched(latent)
        blended = replicas.batched(*keep) if keep is not None else None
        state = replicas.map(scheduler.initial_state, latent)
        for index in range(start_index, scheduler.num_steps):
            contexts = None
            if context_at is not None:
                contexts = (replicas.batched(context_at(index)), run.contexts[1])
            latent, state = run.step(latent, index, run.constants[index], state, guidance, contexts)
            if blended is not None:
                signal, scale = scheduler.noise_scales(index + 1)
                blend = functools.partial(_keep_blend, signal=signal, scale=scale)
                latent = replicas.map(blend, latent, *blended)
            self._count(1, on_step)
        return replicas.gather(latent)

    def invert(
        self,
        latent: np.ndarray,
        context: np.ndarray,
        unconditional_context: np.ndarray,
        scheduler: Scheduler,
        unconditional_guidance_scale: float,
        *,
        num_refinements: int = 0,
        on_step: Callable[[], None] | None = None,
    ) -> np.ndarray:
        """DDIM inversion: runs the deterministic sampler backwards.

        Visited step i is undone from the level after it to the level before
        it with the noise predicted at the less noisy latent and timestep t_i
        — the update with its two levels swapped
        (`scheduler.inversion_constants()`) — so it reuses the compiled step.
        That prediction is taken at the wrong latent, which is what makes
        plain inversion approximate; each of `num_refinements` fixed-point
        iterations evaluates the forward step at the current guess x and
        corrects it, `x += (x_next − step(x)) · signal_i / signal_{i+1}`, so
        that sampling from the result lands back on `latent`.

        Args:
            latent: float32 (B, h, w, 4), clean image latents.
            context, unconditional_context: as in `sample`.
            scheduler: a scheduler with `supports_inversion` (`"ddim"`), after
                `set_timesteps(num_steps)`.
            unconditional_guidance_scale: guidance used while inverting (1.0
                inverts most faithfully).
            num_refinements: fixed-point iterations per step (each costs one
                guided UNet call); 0 is plain DDIM inversion.
            on_step: called after every inversion step.

        Returns:
            float32 (B, h, w, 4), the latent at the input of the noisiest step.

        Raises:
            ValueError: for a scheduler that cannot be inverted, mismatched
                contexts or a negative `num_refinements`.
        """
        if not scheduler.supports_inversion or scheduler.prediction_type != "epsilon":
            raise ValueError(
                "Inversion needs the deterministic 'ddim' scheduler of an epsilon-prediction "
                "model. "
                f"Received: scheduler={getattr(scheduler, 'name', type(scheduler).__name__)!r}"
            )
        _check_contexts(context, unconditional_context)
        _check_scheduler(scheduler, 0)
        num_refinements = check_int("num_refinements", num_refinements, 0)
        run = self._start(scheduler, len(latent), context, unconditional_context)
        replicas, forward = run.replicas, run.constants
        guidance = _guidance(unconditional_guidance_scale, replicas, len(latent))
        backward = _constant(scheduler.inversion_constants())
        latent = replicas.batched(latent)
        state = replicas.map(scheduler.initial_state, latent)
        for index in reversed(range(scheduler.num_steps)):
            target = latent
            latent, _ = run.step(target, index, backward[index], state, guidance)
            # d step(x) / dx ≈ signal_{i+1} / signal_i when eps varies slowly.
            gain = float(scheduler.noise_scales(index)[0] / scheduler.noise_scales(index + 1)[0])
            for _ in range(num_refinements):
                back, _ = run.step(latent, index, forward[index], state, guidance)
                latent = replicas.map(functools.partial(_refine, gain=gain), latent, target, back)
            self._count(1 + num_refinements, on_step)
        return replicas.gather(latent)

    def _sample_on_host(
        self,
        latent,
        context,
        unconditional_context,
        scheduler: Scheduler,
        guidance,
        start_index: int,
        on_step,
        keep,
        step_noise,
        context_at=None,
    ) -> np.ndarray:
        """The loop for schedulers that step on the host: one compiled guided UNet call
        per step (traced once per shape, whatever the scheduler), then the
        scheduler's numpy `step` in float32."""
        if scheduler.stochastic and step_noise is None:
            raise ValueError(
                f"The {scheduler.name!r} scheduler draws fresh noise at every step: pass "
                "`step_noise` (index -> standard-normal latents of the batch's shape)."
            )
        replicas = _Replicas(self.strategy, len(latent))
        guidance = _guidance(guidance, replicas, len(latent))
        compiled = self._compiled_output()
        embeddings = self._embeddings(scheduler.timesteps)
        contexts = replicas.batched(context, unconditional_context)
        sample = np.asarray(latent, dtype=np.float32)
        state = scheduler.new_state()
        for index in range(start_index, scheduler.num_model_calls):
            model_input = replicas.batched(scheduler.scale_model_input(sample, index))
            if context_at is not None:
                contexts = (replicas.batched(context_at(index)), contexts[1])
            output = replicas.run(compiled, model_input, embeddings[index], *contexts, guidance)
            noise = step_noise(index) if scheduler.stochastic else None
            sample = scheduler.step(
                replicas.gather(output), index, sample, state=state, noise=noise
            )
            if keep is not None:
                mask, original, kept_noise = (np.asarray(a, dtype=np.float32) for a in keep)
                kept = scheduler.add_noise(original, kept_noise, index + 1)
                sample = mask * sample + (1.0 - mask) * kept
            self._count(1, on_step)
        return np.asarray(sample, dtype=np.float32)

    def _compiled_output(self) -> Callable:
        """The `tf.function` of the guided UNet output alone (host-stepped schedulers)."""
        import tensorflow as tf

        if "output" not in self._steps:
            self._steps["output"] = tf.function(self._guided_output, jit_compile=self.jit_compile)
        return self._steps["output"]

    def _guided_output(
        self, model_input, timestep_embedding, context, unconditional_context, guidance
    ):
        """The classifier-free-guided prediction, float32; traced, never run eagerly."""
        import tensorflow as tf

        self.num_traces += 1  # Runs only while tracing.
        batch_size = tf.shape(model_input)[0]
        outputs = self.diffusion_model(
            {
                "latent": tf.concat([model_input, model_input], axis=0),
                "timestep_embedding": tf.repeat(timestep_embedding[None], 2 * batch_size, axis=0),
                "context": tf.concat([unconditional_context, context], axis=0),
            },
            training=False,
        )
        outputs = tf.cast(outputs, tf.float32)
        unconditional, conditional = outputs[:batch_size], outputs[batch_size:]
        return unconditional + guidance * (conditional - unconditional)

    # ------------------------------------------------------------- the loop
    def _start(self, scheduler, batch_size, context, unconditional_context) -> _Run:
        """Places the contexts and prepares what every step of one run shares."""
        replicas = _Replicas(self.strategy, batch_size)
        return _Run(
            replicas=replicas,
            compiled=self._compiled_step(scheduler),
            embeddings=self._embeddings(scheduler.timesteps),
            constants=_constant(scheduler.step_constants()),
            contexts=replicas.batched(context, unconditional_context),
        )

    def _compiled_step(self, scheduler: Scheduler) -> Callable:
        """The `tf.function` of a guided step for `scheduler`'s trace key (cached)."""
        import tensorflow as tf

        key = scheduler.trace_key()
        if key not in self._steps:
            self._steps[key] = tf.function(
                functools.partial(self._guided_step, scheduler), jit_compile=self.jit_compile
            )
        return self._steps[key]

    def _guided_step(
        self,
        scheduler,
        latent,
        timestep_embedding,
        context,
        unconditional_context,
        guidance,
        constants,
        state,
    ):
        """One guided step; traced by `tf.function`, never run eagerly.

        Shapes: latent (B, h, w, 4); contexts (B, L, D); embedding (320,);
        guidance () or (B, 1, 1, 1); constants (K,). Returns `(latent, state)`.
        """

        model_input = scheduler.model_input(latent, constants)
        eps = self._guided_output(
            model_input, timestep_embedding, context, unconditional_context, guidance
        )
        return scheduler.update(latent, eps, constants, state)

    def _embeddings(self, timesteps: np.ndarray):
        import tensorflow as tf

        key = (timesteps.dtype.str, timesteps.tobytes())
        if key not in self._embedding_cache:
            self._embedding_cache[key] = timestep_embeddings(timesteps)
        return tf.constant(self._embedding_cache[key])

    def _count(self, num_steps: int, on_step) -> None:
        self.num_steps_run += num_steps
        if on_step is not None:
            on_step()


@dataclasses.dataclass(frozen=True)
class _Run:
    """What the steps of one `sample` or `invert` call share.

    Attributes:
        replicas: where the batched tensors live (`_Replicas`).
        compiled: the guided step's `tf.function`.
        embeddings: float32 tensor (num_steps, 320), in visited order.
        constants: float32 tensor (num_steps, K), the scheduler's rows.
        contexts: `(context, unconditional_context)`, placed (B, L, D) each.
    """

    replicas: _Replicas
    compiled: Callable
    embeddings: Any
    constants: Any
    contexts: tuple

    def step(self, latent, index: int, row, state: tuple, guidance, contexts=None) -> tuple:
        """One guided step at visited `index` with constants `row`; returns `(latent, state)`.

        `contexts`: placed `(context, unconditional_context)` for this step
        only; default the run's.
        """
        context, unconditional_context = contexts or self.contexts
        arguments = (latent, self.embeddings[index], context, unconditional_context, guidance)
        return self.replicas.run(self.compiled, *arguments, row, state)


class _Replicas:
    """Where a run's batched tensors live: one device, or a strategy's replicas.

    Without a strategy a batched value is a tensor and functions are called
    directly. Under a strategy replica r holds rows [r·B/n, (r+1)·B/n) of each
    batched value (a `PerReplica`); compiled functions run through
    `strategy.run`, eager element-wise functions on each shard where it lies,
    and `gather` concatenates the shards in replica order.

    Args:
        strategy: a `tf.distribute.Strategy` or `None`.
        num_rows: the batch size B.

    Raises:
        ValueError: if B is not a multiple of the number of replicas.
    """

    def __init__(self, strategy, num_rows: int):
        self.strategy = strategy
        num_replicas = strategy.num_replicas_in_sync if strategy is not None else 1
        if num_rows % num_replicas:
            raise ValueError(
                f"The batch of {num_rows} rows does not split evenly over {num_replicas} "
                f"replicas. Use a batch size that is a multiple of {num_replicas}."
            )
        self.share = num_rows // num_replicas

    def batched(self, *arrays):
        """Places float32 arrays (B, ...) on the devices; one value, or a tuple for several."""
        import tensorflow as tf

        values = []
        for array in arrays:
            if self.strategy is None:
                values.append(tf.convert_to_tensor(array, dtype=tf.float32))
                continue
            array = np.asarray(array, dtype=np.float32)
            values.append(
                self._per_replica(
                    lambda replica: tf.constant(array[replica * self.share :][: self.share])
                )
            )
        return values[0] if len(values) == 1 else tuple(values)

    def run(self, compiled: Callable, *args):
        """Calls a `tf.function` on every replica (batched args sharded, others broadcast)."""
        if self.strategy is None:
            return compiled(*args)
        return self.strategy.run(compiled, args=args)

    def map(self, fn: Callable, *values):
        """Calls an eager `fn` on each replica's shards of batched `values`, where they lie."""
        import tensorflow as tf

        if self.strategy is None:
            return fn(*values)
        shards = zip(*(self.strategy.experimental_local_results(value) for value in values))
        outputs = []
        for shard in shards:
            with tf.device(shard[0].device):
                outputs.append(fn(*shard))
        return tf.nest.map_structure(
            lambda *parts: self._per_replica(lambda replica: parts[replica]), *outputs
        )

    def _per_replica(self, make: Callable):
        """A `PerReplica` value whose replica r is `make(r)`, created on r's device."""
        import tensorflow as tf

        try:
            devices = self.strategy.extended.worker_devices
        except (RuntimeError, NotImplementedError):  # The default strategy: no devices.
            devices = None

        def value(context):
            replica = context.replica_id_in_sync_group
            with tf.device(devices[replica] if devices else None):
                return make(replica)

        if self.strategy.num_replicas_in_sync == 1:
            # `strategy.run` returns a plain tensor for one replica: feeding the
            # same type back keeps the compiled step from tracing twice.
            return value(tf.distribute.experimental.ValueContext(0, 1))
        return self.strategy.experimental_distribute_values_from_function(value)

    def gather(self, value) -> np.ndarray:
        """Returns float32 (B, ...): the shards concatenated in replica order."""
        if self.strategy is None:
            return value.numpy()
        return np.concatenate(
            [part.numpy() for part in self.strategy.experimental_local_results(value)]
        )


def _keep_blend(latent, mask, original, noise, *, signal, scale):
    """Inpainting: keeps `original` noised to the current level where mask is 0."""
    noised = signal * original + scale * noise
    return mask * latent + (1.0 - mask) * noised


def _refine(latent, target, back, *, gain):
    """One fixed-point correction of an inversion step."""
    return latent + (target - back) * gain


def _constant(array: np.ndarray):
    import tensorflow as tf

    return tf.constant(array)


def _guidance(scale: float | np.ndarray, replicas: _Replicas, batch_size: int):
    """The guidance scale as a tensor: () for one scale, (B, 1, 1, 1) placed per row.

    A per-row scale (a walk's guidance along its path) is batched like the
    latents, so each replica gets its rows' scales.
    """
    import tensorflow as tf

    if np.ndim(scale) == 0:
        return tf.constant(check_finite("unconditional_guidance_scale", scale), dtype=tf.float32)
    scales = np.asarray(scale, dtype=np.float32)
    if scales.shape != (batch_size,) or not np.isfinite(scales).all():
        raise ValueError(
            "A per-row `unconditional_guidance_scale` must be a finite float32 array (B,) "
            f"with B = {batch_size} rows. Received: shape {scales.shape}, values "
            f"{scales.tolist()[:8]}"
        )
    return replicas.batched(scales.reshape(batch_size, 1, 1, 1))


def _check_scheduler(scheduler: Scheduler, start_index: int) -> int:
    """Checks that `set_timesteps` ran and `start_index` is a visited step; returns it."""
    if getattr(scheduler, "num_steps", None) is None:
        raise ValueError(
            "Call `scheduler.set_timesteps(num_steps)` before sampling. "
            f"Received: scheduler={scheduler!r}"
        )
    return check_int("start_index", start_index, 0, scheduler.num_model_calls - 1)


def _check_contexts(context, unconditional_context) -> None:
    """Both passes of a guided step run as one UNet call, so their shapes must match."""
    if tuple(context.shape) != tuple(unconditional_context.shape):
        raise ValueError(
            "`context` and `unconditional_context` must have the same shape (B, L, D); "
            "pad the shorter encoding with empty chunks (`Explorer.pad_encodings`). "
            f"Received: context.shape={tuple(context.shape)}, "
            f"unconditional_context.shape={tuple(unconditional_context.shape)}"
        )
