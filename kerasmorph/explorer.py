"""`Explorer`: the user-facing wrapper around KerasCV's Stable Diffusion.

It follows the KerasCV API (`encode_text`, `generate_image`, `diffusion_noise`,
`unconditional_guidance_scale`, `seed`, `batch_size`) and computes what
`keras_cv.models.StableDiffusion` computes, with kerasmorph's sampler
(`kerasmorph.sampler`) doing the denoising. It knows nothing of files: weight
lookup lives in `kerasmorph.weights`/`kerasmorph.presets`, and export in
`kerasmorph.export`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import numpy as np

from kerasmorph import presets as presets_lib
from kerasmorph import sampler as sampler_lib
from kerasmorph import weights as weights_lib
from kerasmorph.backend import keras_module

logger = logging.getLogger(__name__)

MAX_PROMPT_LENGTH = presets_lib.MAX_PROMPT_LENGTH
START_TOKEN = 49406
END_TOKEN = 49407  # Also KerasCV's padding token, for sd1 and sd2 alike.
DEFAULT_MAX_BATCH_SIZE = 4

Precision = Literal["float32", "mixed_float16", "mixed_bfloat16"]


class NonFiniteOutputError(FloatingPointError):
    """Raised when denoising or decoding produced NaN or Inf values."""


def nearest_valid_sizes(size: int, multiple: int) -> tuple[int, ...]:
    """Returns the valid sizes (multiples of `multiple`, >= it) around `size`."""
    below = (size // multiple) * multiple
    above = below + multiple
    return tuple(s for s in (below, above) if s >= multiple)


def validate_image_size(name: str, size: Any, multiple: int) -> int:
    """Checks an image side; never rounds silently.

    Raises:
        ValueError: naming the nearest valid sizes when `size` is not a
            positive multiple of `multiple`.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise ValueError(f"`{name}` must be an integer. Received: {name}={size!r}")
    if size < multiple or size % multiple:
        options = " or ".join(str(s) for s in nearest_valid_sizes(int(size), multiple))
        raise ValueError(
            f"`{name}` must be a positive multiple of {multiple} (the VAE "
            f"downsamples 8x and the UNet halves the latent 3 more times). "
            f"Nearest valid sizes: {options}. Received: {name}={size}"
        )
    return int(size)


def _batched(array: np.ndarray | None, num_dims: int) -> bool:
    """True when `array` has a leading batch axis of more than one row."""
    return array is not None and array.ndim == num_dims + 1 and array.shape[0] != 1


def _unbatch(array: np.ndarray, num_dims: int) -> np.ndarray:
    return array[0] if array.ndim == num_dims + 1 else array


class Explorer:
    """Generates and explores Stable Diffusion images the KerasCV way.

    Components (`text_encoder`, `diffusion_model`, `decoder`, `image_encoder`,
    `tokenizer`) are KerasCV's own classes under KerasCV's names, built lazily
    on first use — except that every weight file a text-to-image run needs is
    looked up on disk when the Explorer is created, so missing weights are
    reported at once, before anything is built.

    Args:
        model: a preset name (`"sd1"`, `"sd2"`, `"tiny"`), or an existing
            `keras_cv.models.StableDiffusion`/`StableDiffusionV2` whose built
            components are reused (components it has not built yet are built
            here from local weight files and set on it too).
        img_height: image height in pixels, a multiple of 64 (KerasCV rounds
            to 128 silently; kerasmorph raises instead). Default: the preset's.
        img_width: image width in pixels, a multiple of 64.
        jit_compile: compile the denoising step and the decoder with XLA.
        precision: Keras dtype policy of the text encoder and UNet that this
            Explorer builds: `"float32"`, `"mixed_float16"` or
            `"mixed_bfloat16"`. The global Keras policy is set only while
            those components are constructed and then restored, so the
            caller's policy is unchanged afterwards. The VAE decoder and
            encoder stay float32 (a float16 VAE overflows); the scheduler
            arithmetic, guidance and noise are float32 in every case.
        weights_dir: a directory searched first for weight files (then
            `$KERASMORPH_WEIGHTS`, then the Keras cache).
        download: `True` downloads missing weights through KerasCV's origins,
            `False` never does, `None` (default) only when online.
        seed: weight seed of the `tiny` preset.
        verbose: show a progress bar during generation.

    Example:

    ```python
    explorer = kerasmorph.Explorer("sd1", img_height=512, img_width=512)
    encoding = explorer.encode_text("Tacos at dawn")
    images = explorer.generate_image(encoding, batch_size=3, seed=42)
    ```
    """

    def __init__(
        self,
        model: str | Any = "sd1",
        *,
        img_height: int | None = None,
        img_width: int | None = None,
        jit_compile: bool = True,
        precision: Precision = "float32",
        weights_dir: str | None = None,
        download: bool | None = None,
        seed: int = 0,
        verbose: bool = True,
    ):
        if isinstance(model, str):
            self.preset = presets_lib.get_preset(model)
            kerascv_model = None
        else:
            self.preset, kerascv_model = _preset_of_kerascv(model), model
            img_height = img_height or kerascv_model.img_height
            img_width = img_width or kerascv_model.img_width
        multiple = self.preset.size_multiple
        self.img_height = validate_image_size(
            "img_height", img_height or self.preset.default_size, multiple
        )
        self.img_width = validate_image_size(
            "img_width", img_width or self.preset.default_size, multiple
        )
        if precision not in presets_lib.PRECISIONS:
            valid = ", ".join(repr(p) for p in presets_lib.PRECISIONS)
            raise ValueError(
                f"`precision` must be one of {valid}. Received: precision={precision!r}"
            )
        self.precision = precision
        self.jit_compile = bool(jit_compile)
        self.weights_dir = weights_dir
        self.download = download
        self.seed = seed
        self.verbose = verbose

        self._components: dict[str, Any] = {}
        self._tokenizer = None
        self._kerascv_model = kerascv_model
        if kerascv_model is not None:
            for name in presets_lib.COMPONENTS:
                built = getattr(kerascv_model, f"_{name}", None)
                if built is not None:
                    self._components[name] = built
        # Resolve every file text-to-image needs now, so a missing file is
        # reported before anything is built; the image encoder is only needed
        # by image-conditioned work and is resolved on first use.
        needed = {
            name: file
            for name, file in self.preset.weight_files.items()
            if name != "image_encoder" and name not in self._components
        }
        self._weight_paths = weights_lib.resolve_weights(needed, weights_dir, download)
        if self.preset.licence:
            logger.info(self.preset.licence)

        self._sampler: sampler_lib.Sampler | None = None
        self._decode_fn = None
        self._text_fn = None
        self._unconditional_cache: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ components

    def _component(self, name: presets_lib.Component):
        if name not in self._components:
            path = self._weight_paths.get(name)
            if path is None and name in self.preset.weight_files:
                file = self.preset.weight_files[name]
                path = weights_lib.resolve_weights(
                    {name: file}, self.weights_dir, self.download
                )[name]
                self._weight_paths[name] = path
            # The VAE stays float32: a float16 VAE overflows.
            precision = (
                self.precision if name in ("text_encoder", "diffusion_model") else "float32"
            )
            self._components[name] = presets_lib.build_component(
                self.preset,
                name,
                self.img_height,
                self.img_width,
                weights_path=path,
                precision=precision,
                seed=self.seed,
            )
            if self._kerascv_model is not None:
                setattr(self._kerascv_model, f"_{name}", self._components[name])
        return self._components[name]

    @property
    def text_encoder(self):
        """The text encoder: (tokens, positions) (N, 77) -> (N, 77, D)."""
        return self._component("text_encoder")

    @property
    def diffusion_model(self):
        """The UNet: latent, timestep_embedding, context -> noise prediction."""
        return self._component("diffusion_model")

    @property
    def decoder(self):
        """The VAE decoder: latent (N, H/8, W/8, 4) -> image (N, H, W, 3) in [-1, 1]."""
        return self._component("decoder")

    @property
    def image_encoder(self):
        """The VAE encoder: image (N, H, W, 3) in [-1, 1] -> latent (N, H/8, W/8, 4)."""
        return self._component("image_encoder")

    @property
    def tokenizer(self):
        """KerasCV's CLIP `SimpleTokenizer` on the vocabulary shipped with kerasmorph."""
        if self._tokenizer is None:
            self._tokenizer = presets_lib.build_tokenizer()
        return self._tokenizer

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """Shape of one latent: (img_height // 8, img_width // 8, 4)."""
        return (self.img_height // 8, self.img_width // 8, 4)

    @property
    def encoding_dim(self) -> int:
        """Width D of a text encoding (768 for sd1, 1024 for sd2), read from the model."""
        return int(self.text_encoder.output.shape[-1])

    @property
    def sampler(self) -> sampler_lib.Sampler:
        """The `kerasmorph.sampler.Sampler` running this Explorer's UNet."""
        if self._sampler is None:
            self._sampler = sampler_lib.Sampler(
                self.diffusion_model, jit_compile=self.jit_compile
            )
        return self._sampler

    def to_kerascv(self):
        """Returns a KerasCV `StableDiffusion`(V2) sharing this Explorer's components.

        Only for `sd1`/`sd2`: KerasCV has no class for other presets. All four
        components are built (and their weights loaded) first, so the KerasCV
        object never downloads anything.
        """
        if self.preset.kerascv_class is None:
            raise ValueError(
                "Only the 'sd1' and 'sd2' presets have a KerasCV class. "
                f"Received: preset={self.preset.name!r}"
            )
        import keras_cv

        cls = getattr(keras_cv.models, self.preset.kerascv_class)
        # KerasCV prints its licence from the constructor; kerasmorph logs it.
        with contextlib.redirect_stdout(io.StringIO()):
            model = cls(self.img_height, self.img_width, jit_compile=self.jit_compile)
        for name in presets_lib.COMPONENTS:
            setattr(model, f"_{name}", self._component(name))
        model._tokenizer = self.tokenizer
        return model

    def describe(self) -> dict[str, Any]:
        """Returns the settings that decide this Explorer's outputs, as a dict."""
        return {
            "preset": self.preset.name,
            "img_height": self.img_height,
            "img_width": self.img_width,
            "jit_compile": self.jit_compile,
            "precision": self.precision,
            "weights": {name: str(path) for name, path in self._weight_paths.items()},
            "seed": self.seed if not self.preset.weight_files else None,
        }

    # -------------------------------------------------------------------- text

    def tokenize(self, prompt: str, *, truncate: bool = False) -> list[int]:
        """Tokenizes one prompt into 77 ids: start, BPE tokens, end, padding.

        Args:
            prompt: the text.
            truncate: cut a prompt over 77 tokens to 77 (with a warning)
                instead of raising.

        Returns:
            A list of 77 ints, padded with the end token 49407 as in KerasCV.

        Raises:
            ValueError: when the prompt has more than 77 tokens and `truncate`
                is False, giving its token count.
        """
        if not isinstance(prompt, str):
            raise ValueError(
                f"A prompt must be a string. Received: prompt={prompt!r} "
                f"of type {type(prompt).__name__}"
            )
        tokens = self.tokenizer.encode(prompt)
        if len(tokens) > MAX_PROMPT_LENGTH:
            if not truncate:
                raise ValueError(
                    f"The prompt is {len(tokens)} tokens long (with its start and "
                    f"end tokens); the text encoder takes at most {MAX_PROMPT_LENGTH}. "
                    "Shorten it, or pass truncate=True to keep the first "
                    f"{MAX_PROMPT_LENGTH} with a warning. Received: "
                    f"prompt={_shorten(prompt)!r}"
                )
            warnings.warn(
                f"Prompt truncated from {len(tokens)} to {MAX_PROMPT_LENGTH} tokens: "
                f"{_shorten(prompt)!r}",
                stacklevel=3,
            )
            tokens = tokens[: MAX_PROMPT_LENGTH - 1] + [END_TOKEN]
        return tokens + [END_TOKEN] * (MAX_PROMPT_LENGTH - len(tokens))

    def encode_text(
        self, prompt: str | Sequence[str], *, truncate: bool = False
    ) -> np.ndarray:
        """Encodes one prompt or a list of prompts.

        Args:
            prompt: a string, or a non-empty list of strings.
            truncate: cut prompts over 77 tokens (warns) instead of raising.

        Returns:
            float32 array (N, 77, D): N = 1 for a single string; D is the
            model's text width (768 for sd1, 1024 for sd2).

        Raises:
            ValueError: for a prompt over 77 tokens (unless `truncate`), an
                empty list, or a non-string prompt.

        Example:

        ```python
        encodings = explorer.encode_text(["a cat", "a dog"])  # (2, 77, 768)
        ```
        """
        if isinstance(prompt, str):
            prompts = [prompt]
        elif isinstance(prompt, (list, tuple)):
            prompts = list(prompt)
        else:
            raise ValueError(
                "`prompt` must be a string or a list of strings. "
                f"Received: prompt={prompt!r}"
            )
        if not prompts:
            raise ValueError("`prompt` must not be empty. Received: prompt=[]")
        tokens = np.asarray(
            [self.tokenize(p, truncate=truncate) for p in prompts], dtype=np.int32
        )
        return self._encode_tokens(tokens)

    def _encode_tokens(self, tokens: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        if self._text_fn is None:
            encoder = self.text_encoder
            self._text_fn = tf.function(
                lambda t, p: encoder({"tokens": t, "positions": p}, training=False),
                reduce_retracing=True,
            )
        positions = np.repeat(
            np.arange(MAX_PROMPT_LENGTH, dtype=np.int32)[None], len(tokens), axis=0
        )
        encoded = self._text_fn(tf.constant(tokens), tf.constant(positions))
        return tf.cast(encoded, tf.float32).numpy()

    def unconditional_context(self, negative_prompt: str | None = None) -> np.ndarray:
        """The (1, 77, D) encoding of the empty (or negative) prompt, cached."""
        key = negative_prompt or ""
        if key not in self._unconditional_cache:
            self._unconditional_cache[key] = self.encode_text(key)
        return self._unconditional_cache[key]

    # ------------------------------------------------------------------- noise

    def noise(self, num: int, seed: int, *, start: int = 0) -> np.ndarray:
        """Standard-normal starting latents, one independent stream per image.

        Image i's noise depends only on (seed, i), never on how many images
        are drawn at once, so frames stay the same whatever the batch size.
        (KerasCV draws one tensor per batch from `seed`, so its noise differs.)

        Args:
            num: number of latents, >= 1.
            seed: a non-negative integer.
            start: index of the first image (to continue a sequence).

        Returns:
            float32 (num, img_height // 8, img_width // 8, 4).
        """
        _check_count("num", num)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(
                f"`seed` must be a non-negative integer. Received: seed={seed!r}"
            )
        return np.stack(
            [
                np.random.default_rng([int(seed), index]).standard_normal(
                    self.latent_shape, dtype=np.float32
                )
                for index in range(start, start + num)
            ]
        )

    # -------------------------------------------------------------- generation

    def generate_image(
        self,
        encoded_text: np.ndarray,
        batch_size: int | None = None,
        num_steps: int = 50,
        unconditional_guidance_scale: float = 7.5,
        diffusion_noise: np.ndarray | None = None,
        seed: int | None = None,
        negative_prompt: str | None = None,
    ) -> np.ndarray:
        """Generates images from text encodings, as KerasCV does.

        The number of images N comes from the first of: the encodings' batch
        axis, the noise's batch axis, `batch_size` (then the single encoding
        and noise are repeated N times, KerasCV's broadcasting). Images are
        denoised `batch_size` at a time through one compiled batch shape —
        the last batch is padded and the padding dropped — so any N runs
        without retracing and memory is bounded by `batch_size`.

        Args:
            encoded_text: float (N, 77, D) or (77, D) from `encode_text`.
            batch_size: images per UNet batch (and the image count when nothing
                else sets it). Default: min(N, 4).
            num_steps: denoising steps, >= 1.
            unconditional_guidance_scale: classifier-free guidance scale.
            diffusion_noise: float (N, H/8, W/8, 4) or (H/8, W/8, 4) starting
                latents; exclusive with `seed`.
            seed: draws the noise with `Explorer.noise(N, seed)`; random when
                neither `seed` nor `diffusion_noise` is given.
            negative_prompt: replaces the empty prompt of the unconditional pass.

        Returns:
            uint8 array (N, img_height, img_width, 3).

        Raises:
            ValueError: for `seed` with `diffusion_noise`, or shapes that do
                not match the model.
            NonFiniteOutputError: when the result has NaN/Inf values.
        """
        if diffusion_noise is not None and seed is not None:
            raise ValueError(
                "`diffusion_noise` and `seed` should not both be passed to "
                "`generate_image`. `seed` is only used to generate diffusion "
                f"noise when it's not already user-specified. Received: seed={seed}"
            )
        encodings = self._check_encodings(encoded_text)
        noise = None if diffusion_noise is None else self._check_noise(diffusion_noise)
        num_images = self._count_images(encodings, noise, batch_size)
        if not _batched(encodings, 2):
            encodings = np.repeat(_unbatch(encodings, 2)[None], num_images, axis=0)
        if noise is None:
            if seed is None:
                seed = int(np.random.default_rng().integers(2**31))
            noise = self.noise(num_images, seed)
        elif not _batched(noise, 3):
            noise = np.repeat(_unbatch(noise, 3)[None], num_images, axis=0)
        frames = self.render(
            (encodings, noise),
            num_steps=num_steps,
            unconditional_guidance_scale=unconditional_guidance_scale,
            negative_prompt=negative_prompt,
            batch_size=batch_size,
        )
        return np.stack(list(frames))

    def render(
        self,
        walk: Any,
        *,
        num_steps: int = 50,
        unconditional_guidance_scale: float = 7.5,
        negative_prompt: str | None = None,
        batch_size: int | None = None,
    ) -> Iterator[np.ndarray]:
        """Renders per-frame encodings and noise into frames, batch by batch.

        Frames are yielded as soon as their batch is decoded, so memory is
        bounded by `batch_size`, not by the number of frames; a `Walk`
        computes its inputs one batch at a time too. Every batch goes through
        one compiled shape (the last one padded), so nothing retraces. To
        write each frame atomically as soon as it is done, stream them:
        `kerasmorph.export.save_frames(directory, explorer.render(walk))`.

        Args:
            walk: a `kerasmorph.walks.Walk`, or a pair `(encodings, noise)`
                of arrays (F, 77, D) and (F, H/8, W/8, 4).
            num_steps: denoising steps.
            unconditional_guidance_scale: guidance scale.
            negative_prompt: text of the unconditional pass; default "".
            batch_size: frames per UNet batch; default min(F, 4).

        Yields:
            uint8 frames (img_height, img_width, 3), in order.

        Example:

        ```python
        walk = kerasmorph.walks.prompt_walk(explorer, ["a cat", "a dog"], 30)
        kerasmorph.export.save_gif("morph.gif", explorer.render(walk, num_steps=25))
        ```
        """
        from kerasmorph.walks import as_walk

        walk = as_walk(walk)
        batch_size = self._batch_size(walk.num_frames, batch_size)
        for latents in self._denoise_batches(
            walk, num_steps, unconditional_guidance_scale, negative_prompt, batch_size
        ):
            yield from self.decode(latents, batch_size=batch_size)

    def denoise(
        self,
        latents: np.ndarray,
        encodings: np.ndarray,
        *,
        num_steps: int = 50,
        unconditional_guidance_scale: float = 7.5,
        negative_prompt: str | None = None,
        batch_size: int | None = None,
        num_skipped_steps: int = 0,
    ) -> np.ndarray:
        """Runs the sampler over N latents in fixed-shape batches.

        Args:
            latents: float32 (N, H/8, W/8, 4) starting latents.
            encodings: float32 (N, 77, D) prompt encodings.
            num_steps: denoising steps of the schedule.
            unconditional_guidance_scale: guidance scale.
            negative_prompt: text of the unconditional pass; default "".
            batch_size: rows per UNet batch; default min(N, 4).
            num_skipped_steps: noisiest steps to skip (img2img), in
                [0, num_steps).

        Returns:
            float32 (N, H/8, W/8, 4) final latents.
        """
        from kerasmorph.walks import as_walk

        walk = as_walk((encodings, latents))
        batch_size = self._batch_size(walk.num_frames, batch_size)
        return np.concatenate(
            list(
                self._denoise_batches(
                    walk,
                    num_steps,
                    unconditional_guidance_scale,
                    negative_prompt,
                    batch_size,
                    num_skipped_steps,
                )
            )
        )

    def _denoise_batches(
        self,
        walk,
        num_steps: int,
        unconditional_guidance_scale: float,
        negative_prompt: str | None,
        batch_size: int,
        num_skipped_steps: int = 0,
    ) -> Iterator[np.ndarray]:
        """Yields the final latents of each batch of the walk's frames."""
        schedule = sampler_lib.DDIMSchedule.create(num_steps)
        if not 0 <= num_skipped_steps < num_steps:
            raise ValueError(
                f"`num_skipped_steps` must be in [0, {num_steps}). "
                f"Received: num_skipped_steps={num_skipped_steps}"
            )
        unconditional = self.unconditional_context(negative_prompt)
        unconditional_batch = np.repeat(unconditional, batch_size, axis=0)
        num_batches = -(-walk.num_frames // batch_size)
        progbar = self._progbar(num_batches * (num_steps - num_skipped_steps))
        for indices in _batch_indices(walk.num_frames, batch_size):
            encodings, latents = walk.inputs(indices)
            encodings = self._check_encodings(encodings)
            latents = self._check_noise(latents)
            if len(encodings) != len(indices) or len(latents) != len(indices):
                raise ValueError(
                    f"The walk returned {len(encodings)} encodings and {len(latents)} "
                    f"noises for {len(indices)} frames. Received: indices={indices.tolist()}"
                )
            batch_latents, num_real = _pad_rows(latents, batch_size)
            batch_encodings, _ = _pad_rows(encodings, batch_size)
            result = self.sampler.sample(
                batch_latents,
                batch_encodings,
                unconditional_batch,
                schedule,
                unconditional_guidance_scale,
                num_skipped_steps=num_skipped_steps,
                on_step=progbar,
            )[:num_real]
            _check_finite(result, "denoising", self.precision)
            yield result

    def decode(self, latents: np.ndarray, *, batch_size: int | None = None) -> np.ndarray:
        """Decodes latents to uint8 images, as KerasCV does.

        Args:
            latents: float (N, H/8, W/8, 4) or (H/8, W/8, 4).
            batch_size: rows per decoder call; default min(N, 4).

        Returns:
            uint8 (N, img_height, img_width, 3): clip((x + 1) / 2 · 255).
        """
        import tensorflow as tf

        latents = np.asarray(latents, dtype=np.float32)
        if latents.ndim == 3:
            latents = latents[None]
        if latents.shape[1:] != self.latent_shape:
            raise ValueError(
                f"`latents` must have shape (N, {', '.join(map(str, self.latent_shape))}) "
                f"for {self.img_height}x{self.img_width} images. "
                f"Received: latents.shape={latents.shape}"
            )
        if self._decode_fn is None:
            decoder = self.decoder
            self._decode_fn = tf.function(
                lambda z: decoder(z, training=False), jit_compile=self.jit_compile
            )
        batch_size = self._batch_size(len(latents), batch_size)
        images = []
        for indices in _batch_indices(len(latents), batch_size):
            batch, num_real = _pad_rows(latents[indices], batch_size)
            decoded = tf.cast(self._decode_fn(tf.constant(batch)), tf.float32).numpy()
            images.append(decoded[:num_real])
        decoded = np.concatenate(images)
        _check_finite(decoded, "decoding", "float32")
        decoded = ((decoded + 1) / 2) * 255
        return np.clip(decoded, 0, 255).astype("uint8")

    # ----------------------------------------------------------------- helpers

    def _check_encodings(self, encoded_text) -> np.ndarray:
        encodings = np.asarray(encoded_text, dtype=np.float32)
        expected = (MAX_PROMPT_LENGTH, self.encoding_dim)
        if encodings.ndim not in (2, 3) or encodings.shape[-2:] != expected:
            raise ValueError(
                f"`encoded_text` must have shape (N, {expected[0]}, {expected[1]}) or "
                f"({expected[0]}, {expected[1]}) for the {self.preset.name!r} text "
                f"encoder. Received: encoded_text.shape={encodings.shape}"
            )
        return encodings

    def _check_noise(self, diffusion_noise) -> np.ndarray:
        noise = np.asarray(diffusion_noise, dtype=np.float32)
        if noise.ndim not in (3, 4) or noise.shape[-3:] != self.latent_shape:
            shape = ", ".join(map(str, self.latent_shape))
            raise ValueError(
                f"`diffusion_noise` must have shape (N, {shape}) or ({shape}) for "
                f"{self.img_height}x{self.img_width} images. "
                f"Received: diffusion_noise.shape={noise.shape}"
            )
        return noise

    def _count_images(self, encodings, noise, batch_size) -> int:
        if batch_size is not None:
            _check_count("batch_size", batch_size)
        counts = {}
        if _batched(encodings, 2):
            counts["encoded_text"] = encodings.shape[0]
        if _batched(noise, 3):
            counts["diffusion_noise"] = noise.shape[0]
        if len(set(counts.values())) > 1:
            raise ValueError(
                "`encoded_text` and `diffusion_noise` have different batch sizes. "
                f"Received: {counts}"
            )
        if counts:
            return next(iter(counts.values()))
        return batch_size or 1

    @staticmethod
    def _batch_size(num_rows: int, batch_size: int | None) -> int:
        if batch_size is None:
            return min(num_rows, DEFAULT_MAX_BATCH_SIZE)
        _check_count("batch_size", batch_size)
        return int(batch_size)

    def _progbar(self, total: int) -> Callable[[], None] | None:
        if not self.verbose or total <= 0:
            return None
        keras = keras_module()
        progbar = keras.utils.Progbar(total)
        counter = iter(range(1, total + 1))
        return lambda: progbar.update(next(counter))


def _preset_of_kerascv(model) -> presets_lib.Preset:
    import keras_cv

    if isinstance(model, keras_cv.models.StableDiffusionV2):
        return presets_lib.PRESETS["sd2"]
    if isinstance(model, keras_cv.models.StableDiffusion):
        return presets_lib.PRESETS["sd1"]
    raise ValueError(
        "`model` must be a preset name or a keras_cv.models.StableDiffusion / "
        f"StableDiffusionV2 instance. Received: model of type {type(model).__name__}"
    )


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1. Received: {name}={value!r}")


def _check_finite(array: np.ndarray, stage: str, precision: str) -> None:
    if np.isfinite(array).all():
        return
    hint = (
        "Try precision='float32' (or 'mixed_bfloat16', whose range matches float32)."
        if precision != "float32"
        else "Check the weights and the inputs for NaN/Inf."
    )
    raise NonFiniteOutputError(
        f"{stage.capitalize()} produced NaN or Inf values under precision="
        f"{precision!r}. {hint}"
    )


def _batch_indices(num_rows: int, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, num_rows, batch_size):
        yield np.arange(start, min(start + batch_size, num_rows))


def _pad_rows(array: np.ndarray, batch_size: int) -> tuple[np.ndarray, int]:
    """Pads a short last batch by repeating its last row, to keep one shape."""
    num_real = len(array)
    if num_real == batch_size:
        return array, num_real
    padding = np.repeat(array[-1:], batch_size - num_real, axis=0)
    return np.concatenate([array, padding]), num_real


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
