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
import dataclasses
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
# BPE tokens per chunk of a long prompt: each chunk gets its own start and end.
CHUNK_LENGTH = MAX_PROMPT_LENGTH - 2
START_TOKEN = 49406
END_TOKEN = 49407  # Also KerasCV's padding token, for sd1 and sd2 alike.
DEFAULT_MAX_BATCH_SIZE = 4

Precision = Literal["float32", "mixed_float16", "mixed_bfloat16", "bfloat16", "auto"]


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


def chunk_tokens(tokens: Sequence[int]) -> list[list[int]]:
    """Splits a tokenized prompt into 77-id chunks, the way A1111 encodes long prompts.

    The BPE tokens between the start and end tokens are cut into runs of
    `CHUNK_LENGTH` (75); each run becomes `[49406] + run + [49407]`, padded
    with 49407 to 77 ids. A prompt of at most 75 BPE tokens gives one chunk,
    equal to its ordinary 77 ids; the empty prompt gives the empty chunk.

    Args:
        tokens: ids from the CLIP tokenizer, `[49406, ..., 49407]`.

    Returns:
        k >= 1 lists of 77 ints.

    Example:

    ```python
    >>> chunks = kerasmorph.explorer.chunk_tokens([49406] + [320] * 100 + [49407])
    >>> [len(chunk) for chunk in chunks], chunks[1][:3], chunks[1][26:28]
    ([77, 77], [49406, 320, 320], [49407, 49407])
    ```
    """
    body = list(tokens)
    if body[:1] == [START_TOKEN]:
        body = body[1:]
    if body[-1:] == [END_TOKEN]:
        body = body[:-1]
    runs = [body[i : i + CHUNK_LENGTH] for i in range(0, len(body), CHUNK_LENGTH)] or [[]]
    return [
        [START_TOKEN, *run, END_TOKEN] + [END_TOKEN] * (CHUNK_LENGTH - len(run)) for run in runs
    ]


def check_sequence_length(name: str, length: Any) -> int:
    """Checks a text-encoding length: a positive multiple of 77 (one per chunk).

    Raises:
        ValueError: saying what is accepted and echoing `length`.
    """
    if (
        isinstance(length, bool)
        or not isinstance(length, (int, np.integer))
        or length < MAX_PROMPT_LENGTH
        or length % MAX_PROMPT_LENGTH
    ):
        raise ValueError(
            f"`{name}` must be a positive multiple of {MAX_PROMPT_LENGTH} (one "
            f"{MAX_PROMPT_LENGTH}-token chunk per {CHUNK_LENGTH} prompt tokens, see "
            f"Explorer.encode_text(long_prompts=True)). Received: {name}={length!r}"
        )
    return int(length)


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
        model: a preset name (`"sd1"`, `"sd2"`, `"tiny"`), a folder written
            by `kerasmorph.checkpoints.convert` (its preset and weights), or an
            existing `keras_cv.models.StableDiffusion`/`StableDiffusionV2` whose built
            components are reused (components it has not built yet are built
            here from local weight files and set on it too).
        img_height: image height in pixels, a multiple of 64 (KerasCV rounds
            to 128 silently; kerasmorph raises instead). Default: the preset's.
        img_width: image width in pixels, a multiple of 64.
        jit_compile: compile the denoising step and the VAE with XLA.
            `None` (default) lets `precision` decide: XLA everywhere, except
            the denoising step of the bf16 CPU plan of `precision="auto"`.
        precision: Keras dtype policy of the text encoder and UNet that this
            Explorer builds: `"float32"` (default), `"mixed_float16"`,
            `"mixed_bfloat16"`, `"bfloat16"` (weights stored in bf16), or
            `"auto"`: the fastest safe choice for the device (see
            `kerasmorph.devices`; on a CPU with AMX/AVX512-BF16, a bf16 UNet
            without XLA and a float32 text encoder). The global Keras policy
            is set only while those components are constructed and then
            restored, so the caller's policy is unchanged afterwards. The
            VAE decoder and encoder stay float32 (a float16 VAE overflows);
            the scheduler arithmetic, guidance and noise are float32 in
            every case. The resolved choice is `describe()["precision_plan"]`.
        weights_dir: a directory searched first for weight files (then
            `$KERASMORPH_WEIGHTS`, then the Keras cache).
        download: `True` downloads missing weights through KerasCV's origins,
            `False` never does, `None` (default) only when online.
        seed: weight seed of the `tiny` preset.
        verbose: show a progress bar during generation.
        long_prompts: the default of `encode_text(..., long_prompts=...)`
            (and of `tokenize` and the walks): `False` (default) raises for a
            prompt over 77 tokens, `True` encodes it in 75-token chunks. It
            also decides whether a negative prompt is chunk-encoded when the
            prompt encodings are not longer than 77. A plain attribute: the
            CLI sets it from `--long-prompts`.
        strategy: a `tf.distribute` strategy (`MirroredStrategy`,
            `TPUStrategy`, …). Components are built in its scope and every
            denoising batch is split across its replicas with `strategy.run`
            (frames come out in order, equal to a one-device render); batch
            sizes must then be multiples of the replica count.

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
        jit_compile: bool | None = None,
        precision: Precision = "float32",
        weights_dir: str | None = None,
        download: bool | None = None,
        seed: int = 0,
        verbose: bool = True,
        long_prompts: bool = False,
        strategy: Any = None,
    ):
        if isinstance(model, str) and model not in presets_lib.PRESETS:
            # A folder written by `kerasmorph convert` names its own preset.
            from kerasmorph import checkpoints

            if checkpoints.is_converted_dir(model):
                if weights_dir is not None and weights_dir != model:
                    raise ValueError(
                        "A converted folder is its own weights_dir; pass one or the "
                        f"other. Received: model={model!r}, weights_dir={weights_dir!r}"
                    )
                model, weights_dir = checkpoints.read_manifest(model)["preset"], model
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
        from kerasmorph import devices

        self.precision_plan = devices.resolve_precision(precision, jit_compile)
        self.precision = precision
        # The denoising step's compilation; the VAE's is in `precision_plan`.
        self.jit_compile = self.precision_plan.jit_compile
        self.default_batch_size = devices.default_batch_size(
            self.img_height, self.img_width, self.precision_plan.device
        )
        self.weights_dir = weights_dir
        self.download = download
        self.seed = seed
        self.verbose = verbose
        self.long_prompts = long_prompts
        self.strategy = strategy

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

        # One Sampler (one traced step) and one rewired UNet per context length.
        self._samplers: dict[int, sampler_lib.Sampler] = {}
        self._context_models: dict[int, Any] = {}
        self._decode_fn = None
        self._encode_fn = None
        self._text_fn = None
        # (text, long_prompts) -> its (1, 77·k, D) encoding.
        self._unconditional_cache: dict[tuple[str, bool], np.ndarray] = {}

    # ------------------------------------------------------------------ components

    def _component(self, name: presets_lib.Component):
        if name not in self._components:
            path = self._weight_paths.get(name)
            if path is None and name in self.preset.weight_files:
                file = self.preset.weight_files[name]
                path = weights_lib.resolve_weights({name: file}, self.weights_dir, self.download)[
                    name
                ]
                self._weight_paths[name] = path
            # The VAE stays float32: a float16 VAE overflows.
            precision = {
                "text_encoder": self.precision_plan.text_encoder,
                "diffusion_model": self.precision_plan.diffusion_model,
            }.get(name, self.precision_plan.decoder)
            scope = self.strategy.scope() if self.strategy else contextlib.nullcontext()
            with scope:
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

    def add_text_embeddings(self, path: str, token: str | None = None) -> list[str]:
        """Adds a textual-inversion file's tokens to the tokenizer and text encoder.

        See `kerasmorph.embeddings` for the formats (A1111 `.pt`/`.safetensors`,
        diffusers `learned_embeds.bin`/`.safetensors`). The text encoder is
        rebuilt with the larger vocabulary and the cached encodings dropped.

        Args:
            path: the embedding file.
            token: the prompt token; default: the file's (see
                `kerasmorph.embeddings.load_textual_inversion`). Lowercased.

        Returns:
            The tokens added, as they are written in prompts.

        Raises:
            ValueError: when the vectors' width does not match this model's
                text encoder (768 for sd1, 1024 for sd2), or a token exists.
        """
        from kerasmorph import embeddings as embeddings_lib

        loaded = embeddings_lib.load_textual_inversion(path, token)
        self._tokenizer, text_encoder = embeddings_lib.add_textual_inversion(
            self.tokenizer, self.text_encoder, loaded
        )
        self._components["text_encoder"] = text_encoder
        if self._kerascv_model is not None:
            self._kerascv_model._text_encoder = text_encoder
            self._kerascv_model._tokenizer = self._tokenizer
        self._text_fn = None
        self._unconditional_cache = {}
        return [embedding.token for embedding in loaded]

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
        """The `kerasmorph.sampler.Sampler` running this Explorer's UNet (77-token context)."""
        return self.sampler_for(MAX_PROMPT_LENGTH)

    def sampler_for(self, sequence_length: int) -> sampler_lib.Sampler:
        """The Sampler for text encodings of `sequence_length` (77·k) tokens, cached.

        Each context length has its own UNet (`diffusion_model_for`) and so
        its own traced denoising step: one trace per (length, batch shape),
        reused by every later call with that length.
        """
        sequence_length = check_sequence_length("sequence_length", sequence_length)
        if sequence_length not in self._samplers:
            self._samplers[sequence_length] = sampler_lib.Sampler(
                self.diffusion_model_for(sequence_length),
                jit_compile=self.jit_compile,
                strategy=self.strategy,
            )
        return self._samplers[sequence_length]

    def diffusion_model_for(self, sequence_length: int):
        """The UNet for text encodings of `sequence_length` tokens, sharing the weights.

        The UNet's `context` input is (77, D) as built; for the encodings of
        long prompts, (77·k, D), it is rewired once per length with
        `kerasmorph.presets.rewire_context_length` — the same layers called on
        a longer `context` Input — and cached. No variable is copied.

        Args:
            sequence_length: a positive multiple of 77.

        Returns:
            `diffusion_model` itself for its own length, else a `keras.Model`
            whose `context` input is (sequence_length, D).

        Raises:
            ValueError: when `sequence_length` is not a positive multiple of 77.

        Example:

        ```python
        unet = explorer.diffusion_model_for(154)  # two 75-token chunks
        assert unet.weights[0] is explorer.diffusion_model.weights[0]
        ```
        """
        sequence_length = check_sequence_length("sequence_length", sequence_length)
        model = self.diffusion_model
        if presets_lib.context_length(model) == sequence_length:
            return model
        if sequence_length not in self._context_models:
            self._context_models[sequence_length] = presets_lib.rewire_context_length(
                model, sequence_length
            )
        return self._context_models[sequence_length]

    def resized(self, img_height: int, img_width: int) -> "Explorer":
        """Returns an Explorer for another image size that shares these weights.

        The UNet and decoder are rewired with
        `kerasmorph.presets.resize_component` — the same layers called on
        new inputs of the new latent size — so no variable is copied; the
        text encoder, tokenizer and cached unconditional encodings are
        shared as they are. This Explorer's text encoder, UNet and decoder
        are built first if they are not yet. The new Explorer traces its own
        denoising step (one compile per image size).

        Args:
            img_height, img_width: the new size in pixels, multiples of 64.

        Returns:
            An `Explorer` with the same preset, precision and settings.

        Example:

        ```python
        wide = explorer.resized(512, 768)
        assert wide.diffusion_model.weights[0] is explorer.diffusion_model.weights[0]
        ```
        """
        import copy

        from kerasmorph import devices

        multiple = self.preset.size_multiple
        img_height = validate_image_size("img_height", img_height, multiple)
        img_width = validate_image_size("img_width", img_width, multiple)
        for name in ("text_encoder", "diffusion_model", "decoder"):
            self._component(name)
        other = copy.copy(self)
        other.img_height, other.img_width = img_height, img_width
        other.default_batch_size = devices.default_batch_size(
            img_height, img_width, self.precision_plan.device
        )
        other._components = {
            name: (
                presets_lib.resize_component(model, img_height, img_width)
                if name in ("diffusion_model", "decoder")
                else model
            )
            for name, model in self._components.items()
        }
        other._kerascv_model = None
        other._samplers, other._context_models = {}, {}
        other._decode_fn = other._encode_fn = None
        return other

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
            "precision_plan": self.precision_plan.to_json(),
            "default_batch_size": self.default_batch_size,
            "weights": {name: str(path) for name, path in self._weight_paths.items()},
            "seed": self.seed if not self.preset.weight_files else None,
        }

    # -------------------------------------------------------------------- text

    def tokenize(
        self, prompt: str, *, truncate: bool = False, long_prompts: bool | None = None
    ) -> list[int]:
        """Tokenizes one prompt into 77 ids: start, BPE tokens, end, padding.

        Args:
            prompt: the text.
            truncate: cut a prompt over 77 tokens to 77 (with a warning)
                instead of raising.
            long_prompts: return the ids of the prompt's 75-token chunks one
                after the other (77·k ids, see `chunk_tokens`) instead of
                raising for a prompt over 77 tokens. A prompt of at most 77
                tokens gives the same 77 ids either way. Default (`None`):
                the Explorer's `long_prompts` attribute.

        Returns:
            A list of 77 ints (77·k with `long_prompts`), padded with the end
            token 49407 as in KerasCV.

        Raises:
            ValueError: when the prompt has more than 77 tokens and neither
                `truncate` nor `long_prompts` is set, giving its token count;
                or when both are set.
        """
        if not isinstance(prompt, str):
            raise ValueError(
                f"A prompt must be a string. Received: prompt={prompt!r} "
                f"of type {type(prompt).__name__}"
            )
        long_prompts = self._long_prompts(long_prompts, truncate)
        tokens = self.tokenizer.encode(prompt)
        if long_prompts:
            return [token for chunk in chunk_tokens(tokens) for token in chunk]
        if len(tokens) > MAX_PROMPT_LENGTH:
            if not truncate:
                raise ValueError(
                    f"The prompt is {len(tokens)} tokens long (with its start and "
                    f"end tokens); the text encoder takes at most {MAX_PROMPT_LENGTH}. "
                    "Shorten it, pass long_prompts=True (CLI: --long-prompts) to "
                    f"encode it in {CHUNK_LENGTH}-token chunks, or truncate=True to "
                    f"keep the first {MAX_PROMPT_LENGTH} with a warning. Received: "
                    f"prompt={_shorten(prompt)!r}"
                )
            warnings.warn(
                f"Prompt truncated from {len(tokens)} to {MAX_PROMPT_LENGTH} tokens: "
                f"{_shorten(prompt)!r}",
                stacklevel=3,
            )
            tokens = tokens[: MAX_PROMPT_LENGTH - 1] + [END_TOKEN]
        return tokens + [END_TOKEN] * (MAX_PROMPT_LENGTH - len(tokens))

    def _long_prompts(self, long_prompts: bool | None, truncate: bool = False) -> bool:
        """Resolves `long_prompts=None` to the Explorer's default; rejects it with `truncate`."""
        resolved = self.long_prompts if long_prompts is None else long_prompts
        if resolved and truncate:
            raise ValueError(
                "Pass either `truncate=True` (cut prompts to 77 tokens) or "
                "`long_prompts=True` (encode them in chunks), not both. Received: "
                f"truncate=True, long_prompts={long_prompts!r} (Explorer default "
                f"{self.long_prompts!r})"
            )
        return bool(resolved)

    def encode_text(
        self,
        prompt: str | Sequence[str],
        *,
        truncate: bool = False,
        long_prompts: bool | None = None,
    ) -> np.ndarray:
        """Encodes one prompt or a list of prompts.

        With `long_prompts=True`, a prompt over 77 tokens is encoded the way
        A1111 and compel do: its BPE tokens are cut into chunks of 75, each
        chunk is wrapped in start/end tokens, padded to 77 and encoded
        separately, and the chunk encodings are concatenated along the
        sequence axis, so the UNet's cross-attention sees all of them. The
        prompts of one call are padded to the same number of chunks with the
        encoding of an empty chunk (the empty prompt's encoding, what
        `unconditional_context()` returns), so the result is one array. A
        prompt of at most 75 tokens gives exactly the ordinary encoding.

        Args:
            prompt: a string, or a non-empty list of strings.
            truncate: cut prompts over 77 tokens (warns) instead of raising.
            long_prompts: encode prompts over 77 tokens in 75-token chunks
                instead of raising. Default (`None`): the Explorer's
                `long_prompts` attribute (False unless set).

        Returns:
            float32 array (N, 77·k, D): N = 1 for a single string; k = 1
            unless `long_prompts` and some prompt needs k > 1 chunks; D is
            the model's text width (768 for sd1, 1024 for sd2).

        Raises:
            ValueError: for a prompt over 77 tokens (unless `truncate` or
                `long_prompts`), both `truncate` and `long_prompts`, an empty
                list, or a non-string prompt.

        Example:

        ```python
        encodings = explorer.encode_text(["a cat", "a dog"])  # (2, 77, 768)
        long = explorer.encode_text(" ".join(["a cat"] * 50), long_prompts=True)
        long.shape  # (1, 154, 768): 100 tokens in two chunks
        ```
        """
        if isinstance(prompt, str):
            prompts = [prompt]
        elif isinstance(prompt, (list, tuple)):
            prompts = list(prompt)
        else:
            raise ValueError(
                f"`prompt` must be a string or a list of strings. Received: prompt={prompt!r}"
            )
        if not prompts:
            raise ValueError("`prompt` must not be empty. Received: prompt=[]")
        long_prompts = self._long_prompts(long_prompts, truncate)
        token_lists = [
            self.tokenize(p, truncate=truncate, long_prompts=long_prompts) for p in prompts
        ]
        # Every chunk of every prompt in one text-encoder call: (sum of k_i, 77).
        tokens = np.concatenate(
            [np.asarray(t, dtype=np.int32).reshape(-1, MAX_PROMPT_LENGTH) for t in token_lists]
        )
        encoded = self._encode_tokens(tokens)
        if len(encoded) == len(prompts):  # One chunk each: the ordinary encoding.
            return encoded
        num_chunks = np.cumsum([len(t) // MAX_PROMPT_LENGTH for t in token_lists])[:-1]
        # (k_i, 77, D) -> (1, 77·k_i, D) per prompt, then padded to the longest.
        encodings = [part.reshape(1, -1, part.shape[-1]) for part in np.split(encoded, num_chunks)]
        return np.concatenate(self.pad_encodings(encodings))

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

    def pad_encodings(
        self, encodings: Sequence[np.ndarray], *, sequence_length: int | None = None
    ) -> list[np.ndarray]:
        """Pads text encodings of different chunk counts to one length with empty chunks.

        Encodings of long prompts (`encode_text(..., long_prompts=True)`) are
        77·k tokens long. To interpolate two of them, batch them, or pair a
        prompt with a negative prompt, they must have the same length: the
        shorter ones get the encoding of an empty chunk (the empty prompt's
        (77, D) encoding, `unconditional_context()[0]`) appended along the
        sequence axis until they reach it — what A1111 does with the shorter
        of its prompt and negative prompt.

        Args:
            encodings: arrays (77·k, D) or (N, 77·k, D), k >= 1, each with
                this model's width D; k may differ between them.
            sequence_length: the length to pad to, a multiple of 77 at least
                the longest's; default: the longest's.

        Returns:
            A list of float32 arrays in the same order and with the same
            leading axes, each (..., sequence_length, D). Arrays already at
            that length are returned unchanged.

        Raises:
            ValueError: for a length that is not a positive multiple of 77, a
                width that is not the model's, or a `sequence_length` shorter
                than one of the encodings.

        Example:

        ```python
        long = explorer.encode_text(long_prompt, long_prompts=True)  # (1, 154, D)
        short = explorer.encode_text("a watercolour fox")  # (1, 77, D)
        long, short = explorer.pad_encodings([long, short])  # both (1, 154, D)
        frames = kerasmorph.walks.path_walk(
            np.concatenate([long, short]), explorer.noise(2, seed=0), 30
        )
        ```
        """
        arrays = [self._check_encodings(array, "encodings") for array in encodings]
        if not arrays:
            return []
        longest = max(array.shape[-2] for array in arrays)
        if sequence_length is None:
            sequence_length = longest
        sequence_length = check_sequence_length("sequence_length", sequence_length)
        if sequence_length < longest:
            raise ValueError(
                f"`sequence_length` must be at least the longest encoding's length, "
                f"{longest}. Received: sequence_length={sequence_length}"
            )
        padded = []
        for array in arrays:
            missing = (sequence_length - array.shape[-2]) // MAX_PROMPT_LENGTH
            if missing:
                # (missing·77, D), broadcast over the leading axes.
                empty = np.tile(self._empty_chunk(), (missing, 1))
                empty = np.broadcast_to(empty, (*array.shape[:-2], *empty.shape))
                array = np.concatenate([array, empty], axis=-2)
            padded.append(array)
        return padded

    def _empty_chunk(self) -> np.ndarray:
        """The (77, D) encoding of the empty prompt: the padding chunk, cached."""
        return self.unconditional_context(long_prompts=False)[0]

    def unconditional_context(
        self,
        negative_prompt: str | None = None,
        *,
        long_prompts: bool | None = None,
        sequence_length: int | None = None,
    ) -> np.ndarray:
        """The (1, 77·k, D) encoding of the empty (or negative) prompt, cached.

        k = 1 unless a negative prompt over 75 tokens is chunk-encoded or
        `sequence_length` asks for more. This is the unconditional pass of
        classifier-free guidance. For prompt encodings of 77·k tokens it must
        be 77·k long too: the empty prompt's
        encoding repeated k times, or a negative prompt's chunk encodings
        padded with empty chunks (`pad_encodings`).

        Args:
            negative_prompt: text of the unconditional pass; `None` or "" is
                the empty prompt.
            long_prompts: encode a negative prompt over 77 tokens in chunks
                (see `encode_text`). Default: the Explorer's `long_prompts`.
            sequence_length: pad the result with empty chunks to this many
                tokens, a multiple of 77; default: its own length.

        Returns:
            float32 (1, 77·k, D).

        Raises:
            ValueError: for a negative prompt over 77 tokens without
                `long_prompts`, or one longer than `sequence_length`.
        """
        text = negative_prompt or ""
        key = (text, self._long_prompts(long_prompts))
        if key not in self._unconditional_cache:
            self._unconditional_cache[key] = self.encode_text(text, long_prompts=key[1])
        encoding = self._unconditional_cache[key]
        if sequence_length is None:
            return encoding
        return self.pad_encodings([encoding], sequence_length=sequence_length)[0]

    def _guidance_contexts(
        self, encodings: np.ndarray, negative_prompt: str | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Brings prompt encodings (B, L, D) and the unconditional context to one length.

        The negative prompt is chunk-encoded when the Explorer's
        `long_prompts` is on or the prompt encodings are long (L > 77), and
        padded with empty chunks to L. When it needs more chunks than the
        prompt, the prompt encodings are padded with empty chunks instead
        (as A1111 does), so both passes of a guided step have one shape.

        Returns:
            `(encodings (B, L', D), unconditional (1, L', D))` with L' >= L.
        """
        long_negative = self.long_prompts or encodings.shape[-2] > MAX_PROMPT_LENGTH
        try:
            unconditional = self.unconditional_context(negative_prompt, long_prompts=long_negative)
        except ValueError as error:
            # Say why the negative prompt was not chunk-encoded here, then the cause.
            raise ValueError(
                "`negative_prompt` is too long: a negative prompt is encoded in "
                f"{CHUNK_LENGTH}-token chunks only when the prompt encodings are longer "
                "than 77 tokens or the Explorer's `long_prompts` is True "
                f"(Explorer(..., long_prompts=True)). {error}"
            ) from None
        encodings, unconditional = self.pad_encodings([encodings, unconditional])
        return encodings, unconditional

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
            raise ValueError(f"`seed` must be a non-negative integer. Received: seed={seed!r}")
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

        Prompt encodings may be longer than 77 tokens — (N, 77·k, D) from
        `encode_text(..., long_prompts=True)` — and then run through the UNet
        rewired for that length (`diffusion_model_for`); the unconditional
        context is padded to match (see `pad_encodings`).

        Args:
            encoded_text: float (N, 77·k, D) or (77·k, D) from `encode_text`,
                k >= 1 (k = 1 for prompts of up to 75 tokens).
            batch_size: images per UNet batch (and the image count when nothing
                else sets it). Default: min(N, `default_batch_size`).
            num_steps: denoising steps, >= 1.
            unconditional_guidance_scale: classifier-free guidance scale.
            diffusion_noise: float (N, H/8, W/8, 4) or (H/8, W/8, 4) starting
                latents; exclusive with `seed`.
            seed: draws the noise with `Explorer.noise(N, seed)`; random when
                neither `seed` nor `diffusion_noise` is given.
            negative_prompt: replaces the empty prompt of the unconditional
                pass. It is encoded in chunks (and padded with empty chunks)
                when `encoded_text` is longer than 77 or the Explorer's
                `long_prompts` is on; if it needs more chunks than the
                prompt, the prompt's encodings get empty chunks instead.

        Returns:
            uint8 array (N, img_height, img_width, 3).

        Raises:
            ValueError: for `seed` with `diffusion_noise`, or shapes that do
                not match the model (an encoding length that is not a
                multiple of 77).
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
                of arrays (F, 77·k, D) and (F, H/8, W/8, 4), k >= 1.
            num_steps: denoising steps.
            unconditional_guidance_scale: guidance scale.
            negative_prompt: text of the unconditional pass; default "".
            batch_size: frames per UNet batch; default min(F, `default_batch_size`).

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
            encodings: float32 (N, 77·k, D) prompt encodings, k >= 1.
            num_steps: denoising steps of the schedule.
            unconditional_guidance_scale: guidance scale.
            negative_prompt: text of the unconditional pass; default "".
            batch_size: rows per UNet batch; default min(N, `default_batch_size`).
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
        # Sequence length -> the unconditional context repeated over the batch.
        unconditional_batches: dict[int, np.ndarray] = {}
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
            encodings, unconditional = self._guidance_contexts(encodings, negative_prompt)
            length = encodings.shape[1]
            if length not in unconditional_batches:
                unconditional_batches[length] = np.repeat(unconditional, batch_size, axis=0)
            batch_latents, num_real = _pad_rows(latents, batch_size)
            batch_encodings, _ = _pad_rows(encodings, batch_size)
            result = self.sampler_for(length).sample(
                batch_latents,
                batch_encodings,
                unconditional_batches[length],
                schedule,
                unconditional_guidance_scale,
                num_skipped_steps=num_skipped_steps,
                on_step=progbar,
            )[:num_real]
            _check_finite(result, "denoising", self.precision)
            yield result

    # -------------------------------------------------------- image-conditioned

    def load_images(self, image: Any, *, fit: str = "resize") -> np.ndarray:
        """Brings images to the model size: uint8 (N, img_height, img_width, 3).

        Args:
            image: a path, a PIL image, an array (H, W, C) or a batch
                (N, H, W, C) of uint8 or float in [0, 1], or a list of these.
            fit: `"resize"`, `"center-crop"` or `"pad"` (see `kerasmorph.images`).
        """
        from kerasmorph import images as images_lib

        size = (self.img_height, self.img_width)
        if isinstance(image, np.ndarray) and image.ndim == 4:
            sources = list(image)
        elif isinstance(image, (list, tuple)):
            sources = list(image)
        else:
            sources = [image]
        if not sources:
            raise ValueError("`image` must not be empty. Received: image=[]")
        return np.stack([images_lib.load_image(source, size, fit=fit) for source in sources])

    def encode_image(self, images: np.ndarray, *, batch_size: int | None = None) -> np.ndarray:
        """Encodes uint8 images with the VAE encoder (the posterior mean × 0.18215).

        Args:
            images: uint8 (N, img_height, img_width, 3) or one (H, W, 3) image;
                use `load_images` to bring other sizes to the model size.
            batch_size: rows per encoder call; default min(N, `default_batch_size`).

        Returns:
            float32 latents (N, img_height // 8, img_width // 8, 4).
        """
        import tensorflow as tf

        from kerasmorph.images import to_model_input

        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        expected = (self.img_height, self.img_width, 3)
        if images.ndim != 4 or images.shape[1:] != expected or images.dtype != np.uint8:
            raise ValueError(
                f"`images` must be uint8 with shape (N, {', '.join(map(str, expected))}); "
                "use Explorer.load_images to resize. "
                f"Received: images.shape={images.shape}, dtype={images.dtype}"
            )
        if self._encode_fn is None:
            encoder = self.image_encoder
            self._encode_fn = tf.function(
                lambda x: encoder(x, training=False),
                jit_compile=self.precision_plan.decoder_jit_compile,
            )
        batch_size = self._batch_size(len(images), batch_size)
        latents = []
        for indices in _batch_indices(len(images), batch_size):
            batch, num_real = _pad_rows(to_model_input(images[indices]), batch_size)
            encoded = tf.cast(self._encode_fn(tf.constant(batch)), tf.float32).numpy()
            latents.append(encoded[:num_real])
        latents = np.concatenate(latents)
        _check_finite(latents, "image encoding", "float32")
        return latents

    def noised_latents(
        self, latents: np.ndarray, noise: np.ndarray, strength: float, num_steps: int
    ) -> tuple[np.ndarray, int]:
        """Noises image latents to the level where img2img starts.

        With k = int(strength · num_steps) denoising steps to run, the
        start is the sampler's step k − 1, at ᾱ = ᾱ(t_{k−1}):
        `sqrt(ᾱ)·latents + sqrt(1 − ᾱ)·noise`. At strength 1 the start is
        the noise itself, exactly as text-to-image starts (KerasCV's schedule
        never reaches pure noise — ᾱ(999) ≈ 0.0047 — so noising to t = 999
        would still leak 7% of the image).

        Args:
            latents: float32 (N, h, w, 4) image latents.
            noise: float32 (N, h, w, 4) standard-normal noise.
            strength: in [0, 1].
            num_steps: steps of the full schedule.

        Returns:
            `(start, k)`: the starting latents and the number of steps to run.
        """
        _check_unit_interval("strength", strength)
        schedule = sampler_lib.DDIMSchedule.create(num_steps)
        # The epsilon keeps 0.29 * 100 from rounding down to 28.
        num_denoise = int(strength * num_steps + 1e-9)
        if num_denoise == 0:
            return np.asarray(latents, np.float32), 0
        if num_denoise == num_steps:
            return np.asarray(noise, np.float32), num_steps
        alpha = schedule.alphas[num_denoise - 1]
        start = np.float32(np.sqrt(alpha)) * latents + np.float32(np.sqrt(1 - alpha)) * noise
        return start.astype(np.float32), num_denoise

    def image_to_image(
        self,
        image: Any,
        prompt: str | np.ndarray,
        *,
        strength: float = 0.75,
        num_steps: int = 50,
        unconditional_guidance_scale: float = 7.5,
        seed: int | None = None,
        diffusion_noise: np.ndarray | None = None,
        negative_prompt: str | None = None,
    ) -> np.ndarray:
        """img2img: noises the image's latent to `strength`, then denoises.

        Only the last int(strength · num_steps) steps of the schedule run:
        strength 0 returns `decode(encode_image(image))` without a UNet call,
        strength 1 is text-to-image from the same noise.

        Args:
            image: anything `load_images` takes (resized with fit="resize"; call
                `load_images(..., fit=...)` first for another policy).
            prompt: a prompt, or encodings (N, 77·k, D) / (77·k, D).
            strength: in [0, 1]: how far from the image to go.
            num_steps: steps of the full schedule.
            unconditional_guidance_scale: guidance scale.
            seed: draws the noise (`noise(N, seed)`); exclusive with
                `diffusion_noise`.
            diffusion_noise: float (N, h, w, 4) or (h, w, 4).
            negative_prompt: text of the unconditional pass.

        Returns:
            uint8 (N, img_height, img_width, 3).
        """
        latents = self.encode_image(self.load_images(image))
        noise = self._image_noise(len(latents), seed, diffusion_noise)
        latents = np.repeat(latents, len(noise), axis=0) if len(latents) == 1 else latents
        start, num_denoise = self.noised_latents(latents, noise, strength, num_steps)
        if num_denoise == 0:
            return self.decode(start)
        final = self.denoise(
            start,
            self._prompt_encodings(prompt, len(start)),
            num_steps=num_steps,
            unconditional_guidance_scale=unconditional_guidance_scale,
            negative_prompt=negative_prompt,
            num_skipped_steps=num_steps - num_denoise,
        )
        return self.decode(final)

    def inpaint(
        self,
        image: Any,
        mask: Any,
        prompt: str | np.ndarray,
        *,
        num_steps: int = 50,
        unconditional_guidance_scale: float = 7.5,
        seed: int | None = None,
        diffusion_noise: np.ndarray | None = None,
        feather_radius: float = 4.0,
    ) -> "InpaintResult":
        """Repaints the white part of `mask` by latent mask blending.

        Denoising starts from noise; after every step the kept (black) region
        of the latent is replaced by the image's latent noised to that step's
        level, so it ends equal to the image's latent. Kept pixels are then
        only "close in latent space" to the original (the VAE's round trip);
        `composite` also pastes the original pixels outside the mask, with a
        feathered edge.

        Args:
            image: anything `load_images` takes.
            mask: path, PIL image or array of any size/mode; white = repaint.
            prompt: a prompt or encodings.
            num_steps, unconditional_guidance_scale, seed, diffusion_noise: as
                in `generate_image`.
            feather_radius: blur radius in pixels of the composite's mask edge.

        Returns:
            An `InpaintResult` with `images` (decoded, uint8 (N, H, W, 3)),
            `composite` (original pasted outside the mask), `latents` and
            `mask` (float32 (H, W), 1 = repainted).
        """
        from kerasmorph import images as images_lib

        pixels = self.load_images(image)
        if len(pixels) != 1:
            raise ValueError(f"`inpaint` takes one image. Received: {len(pixels)} images")
        pixel_mask = images_lib.load_mask(mask, (self.img_height, self.img_width))
        original = self.encode_image(pixels)
        noise = self._image_noise(1, seed, diffusion_noise)
        count = len(noise)
        keep = (
            np.repeat(images_lib.latent_mask(pixel_mask)[None], count, axis=0),
            np.repeat(original, count, axis=0),
            noise,
        )
        final = self._denoise_with_keep(
            noise,
            self._prompt_encodings(prompt, count),
            keep,
            num_steps,
            unconditional_guidance_scale,
        )
        generated = self.decode(final)
        composite = np.stack(
            [
                images_lib.feathered_composite(frame, pixels[0], pixel_mask, feather_radius)
                for frame in generated
            ]
        )
        return InpaintResult(generated, composite, final, pixel_mask)

    def invert(
        self,
        latents: np.ndarray,
        prompt: str | np.ndarray = "",
        *,
        num_steps: int = 50,
        unconditional_guidance_scale: float = 1.0,
        num_refinements: int = 0,
    ) -> np.ndarray:
        """DDIM inversion: recovers the starting noise of image latents.

        Generating from the result with the same prompt, `num_steps` and
        guidance gives back `latents` approximately; guidance 1.0 inverts most
        faithfully, and `num_refinements` fixed-point iterations per step make
        it exact in the limit (see `kerasmorph.sampler.Sampler.invert`).
        Measured on random-weight `tiny` (relative error of the regenerated
        latent): 50 steps: 22 plain, 0.13 with 10 refinements, 0.008 with 30.

        Args:
            latents: float32 (N, h, w, 4), e.g. from `encode_image`.
            prompt: the prompt (or encodings) to invert under; "" by default.
            num_steps: steps of the schedule.
            unconditional_guidance_scale: guidance while inverting.
            num_refinements: fixed-point iterations per step (each one more
                UNet call); 0 is plain DDIM inversion.

        Returns:
            float32 (N, h, w, 4) latents at the noisiest step.
        """
        latents = self._check_noise(latents)
        if latents.ndim == 3:
            latents = latents[None]
        encodings = self._prompt_encodings(prompt, len(latents))
        schedule = sampler_lib.DDIMSchedule.create(num_steps)
        batch_size = self._batch_size(len(latents), None)
        if (
            isinstance(num_refinements, bool)
            or not isinstance(num_refinements, int)
            or num_refinements < 0
        ):
            raise ValueError(
                "`num_refinements` must be an integer >= 0. "
                f"Received: num_refinements={num_refinements!r}"
            )
        encodings, unconditional = self._guidance_contexts(encodings, None)
        unconditional = np.repeat(unconditional, batch_size, 0)
        sampler = self.sampler_for(encodings.shape[1])
        progbar = self._progbar(-(-len(latents) // batch_size) * num_steps)
        outputs = []
        for indices in _batch_indices(len(latents), batch_size):
            batch_latents, num_real = _pad_rows(latents[indices], batch_size)
            batch_encodings, _ = _pad_rows(encodings[indices], batch_size)
            outputs.append(
                sampler.invert(
                    batch_latents,
                    batch_encodings,
                    unconditional,
                    schedule,
                    unconditional_guidance_scale,
                    num_refinements=num_refinements,
                    on_step=progbar,
                )[:num_real]
            )
        inverted = np.concatenate(outputs)
        _check_finite(inverted, "inversion", self.precision)
        return inverted

    def _denoise_with_keep(self, latents, encodings, keep, num_steps, guidance):
        schedule = sampler_lib.DDIMSchedule.create(num_steps)
        encodings, unconditional = self._guidance_contexts(encodings, None)
        unconditional = np.repeat(unconditional, len(latents), axis=0)
        final = self.sampler_for(encodings.shape[1]).sample(
            latents,
            encodings,
            unconditional,
            schedule,
            guidance,
            on_step=self._progbar(num_steps),
            keep=keep,
        )
        _check_finite(final, "denoising", self.precision)
        return final

    def _image_noise(self, num: int, seed, diffusion_noise) -> np.ndarray:
        if diffusion_noise is not None and seed is not None:
            raise ValueError(
                f"Pass either `diffusion_noise` or `seed`, not both. Received: seed={seed}"
            )
        if diffusion_noise is not None:
            noise = self._check_noise(diffusion_noise)
            return noise[None] if noise.ndim == 3 else noise
        if seed is None:
            seed = int(np.random.default_rng().integers(2**31))
        return self.noise(num, seed)

    def _prompt_encodings(self, prompt, num: int) -> np.ndarray:
        encodings = self.encode_text(prompt) if isinstance(prompt, str) else prompt
        encodings = self._check_encodings(encodings)
        if encodings.ndim == 2 or len(encodings) == 1:
            return np.repeat(_unbatch(encodings, 2)[None], num, axis=0)
        if len(encodings) != num:
            raise ValueError(
                f"Got {len(encodings)} encodings for {num} images. "
                f"Received: encodings.shape={encodings.shape}"
            )
        return encodings

    def decode(self, latents: np.ndarray, *, batch_size: int | None = None) -> np.ndarray:
        """Decodes latents to uint8 images, as KerasCV does.

        Args:
            latents: float (N, H/8, W/8, 4) or (H/8, W/8, 4).
            batch_size: rows per decoder call; default min(N, `default_batch_size`).

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
                lambda z: decoder(z, training=False),
                jit_compile=self.precision_plan.decoder_jit_compile,
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

    def _check_encodings(self, encoded_text, name: str = "encoded_text") -> np.ndarray:
        """Accepts (N, L, D) or (L, D) with L a positive multiple of 77 (k chunks)."""
        encodings = np.asarray(encoded_text, dtype=np.float32)
        width = self.encoding_dim
        if (
            encodings.ndim not in (2, 3)
            or encodings.shape[-1] != width
            or encodings.shape[-2] < MAX_PROMPT_LENGTH
            or encodings.shape[-2] % MAX_PROMPT_LENGTH
        ):
            length, double = MAX_PROMPT_LENGTH, 2 * MAX_PROMPT_LENGTH
            raise ValueError(
                f"`{name}` must have shape (N, L, {width}) or (L, {width}) for "
                f"the {self.preset.name!r} text encoder, where the sequence length L "
                f"is a positive multiple of {length}: ({length}, {width}) for a prompt "
                f"of up to {CHUNK_LENGTH} tokens, ({double}, {width}) for two chunks "
                "of a long prompt (encode_text(..., long_prompts=True)). "
                f"Received: {name}.shape={encodings.shape}"
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

    @property
    def num_replicas(self) -> int:
        """Replicas a denoising batch is split across (1 without a strategy)."""
        return self.strategy.num_replicas_in_sync if self.strategy else 1

    def batch_size_for(self, num_frames: int, batch_size: int | None = None) -> int:
        """The UNet batch size a render of `num_frames` frames uses.

        Default: min(num_frames, `default_batch_size`) — 4 at ≤256² on a CPU,
        see `kerasmorph.devices.default_batch_size` — rounded up to a multiple
        of the replica count under a strategy. An explicit `batch_size` must
        be a multiple of the replica count; it is never rounded silently.
        """
        return self._batch_size(num_frames, batch_size)

    def _batch_size(self, num_rows: int, batch_size: int | None) -> int:
        replicas = self.num_replicas
        if batch_size is None:
            default = min(num_rows, self.default_batch_size)
            return -(-default // replicas) * replicas
        _check_count("batch_size", batch_size)
        if batch_size % replicas:
            raise ValueError(
                f"`batch_size` must be a multiple of the {replicas} replicas of the "
                f"strategy. Received: batch_size={batch_size}"
            )
        return int(batch_size)

    def _progbar(self, total: int) -> Callable[[], None] | None:
        if not self.verbose or total <= 0:
            return None
        keras = keras_module()
        progbar = keras.utils.Progbar(total)
        counter = iter(range(1, total + 1))
        return lambda: progbar.update(next(counter))


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


def _check_unit_interval(name: str, value: Any) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.floating))
        or not 0 <= value <= 1
    ):
        raise ValueError(f"`{name}` must be in [0, 1]. Received: {name}={value!r}")


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
        f"{stage.capitalize()} produced NaN or Inf values under precision={precision!r}. {hint}"
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
