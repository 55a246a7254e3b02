"""`ComponentStore`: owns an Explorer's built components and everything derived from them.

Components are built lazily (weights loaded from the files resolved when the
Explorer was made) under the precision plan's dtype policy and the strategy's
scope. Everything computed from them — the compiled text, decode and encode
functions, the UNets rewired per context length, one `Sampler` per length,
cached encodings — lives in ONE memo, cleared in ONE place, `invalidate()`,
which `set` calls whenever a component or the tokenizer is replaced.

The step methods (`encode_tokens`, `decode_batch`, `encode_batch`) are the
small component steps the Explorer and its tasks compose, as keras-hub's
Stable Diffusion 3 backbone exposes `encode_text_step`/`decode_step`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from kerasmorph import models
from kerasmorph import weights as weights_lib
from kerasmorph._checks import check_sequence_length
from kerasmorph.constants import COMPONENTS, MAX_PROMPT_LENGTH, Component
from kerasmorph.devices import PrecisionPlan
from kerasmorph.models import kerascv as kerascv_lib
from kerasmorph.presets import PRESETS, Preset, get_preset
from kerasmorph.sampler import Sampler

logger = logging.getLogger(__name__)

# Component -> the kinds of memo entries computed from it (the first item of their keys).
_DERIVED_FROM: dict[str, tuple[str, ...]] = {
    "text_encoder": ("text",),
    "diffusion_model": ("unet", "sampler"),
    "decoder": ("decoder",),
    "image_encoder": ("image_encoder",),
}


class ComponentStore:
    """The built components of one model at one image size, and their derived state.

    Args:
        preset: the `Preset` to build.
        img_height, img_width: image size in pixels (validated by the caller).
        precision_plan: the resolved `kerasmorph.devices.PrecisionPlan`.
        weights_dir: a directory searched first for weight files.
        download: whether missing weights may be downloaded (see
            `kerasmorph.weights.resolve_weights`).
        seed: weight seed of random presets.
        strategy: a `tf.distribute` strategy to build in, or None.
        kerascv_model: a KerasCV model whose built components are reused and
            which receives every component built here.
        components: already built components to use as they are (their
            weight files are not looked up).
    """

    def __init__(
        self,
        preset: Preset,
        img_height: int,
        img_width: int,
        precision_plan: PrecisionPlan,
        *,
        weights_dir: str | None = None,
        download: bool | None = None,
        seed: int = 0,
        strategy: Any = None,
        kerascv_model: Any = None,
        components: Mapping[str, Any] | None = None,
        verbose: bool = False,
    ):
        self.preset = preset
        self.verbose = verbose  # A bar of the tensors loaded when weights load.
        self.img_height, self.img_width = img_height, img_width
        self.precision_plan = precision_plan
        self.weights_dir, self.download = weights_dir, download
        self.seed = seed
        self.strategy = strategy
        self.kerascv_model = kerascv_model
        self._components: dict[str, Any] = {}
        self._tokenizer = None
        if kerascv_model is not None:
            self._components.update(kerascv_lib.kerascv_components(kerascv_model))
        for name, model in (components or {}).items():
            self._check_name(name)
            self._components[name] = model
        self._memo: dict[Any, Any] = {}
        # Resolve every file text-to-image needs now, so a missing file is
        # reported before anything is built; the image encoder is only needed
        # by image-conditioned work and is resolved on first use.
        needed = {
            name: file
            for name, file in preset.weight_files.items()
            if name != "image_encoder" and name not in self._components
        }
        self.weight_paths: dict[str, os.PathLike | str] = dict(
            weights_lib.resolve_weights(needed, weights_dir, download)
        )
        if weights_dir is not None:  # A merge of the shapes toys lists its .npz files.
            self.weight_paths.update(weights_lib.manifest_npz_files(weights_dir))
        if preset.licence:
            logger.info(preset.licence)

    # ------------------------------------------------------------ components

    def has(self, name: Component) -> bool:
        """Whether `name` is built (or was given by a KerasCV model)."""
        return name in self._components

    def get(self, name: Component):
        """The component `name`, built and loaded on first use."""
        if name not in self._components:
            model = self._build(name)
            self._components[name] = model
            if self.kerascv_model is not None:
                kerascv_lib.attach_components(self.kerascv_model, {name: model})
        return self._components[name]

    def _build(self, name: Component):
        path = self.weight_paths.get(name)
        if path is None and name in self.preset.weight_files:
            file = self.preset.weight_files[name]
            path = weights_lib.resolve_weights({name: file}, self.weights_dir, self.download)[name]
            self.weight_paths[name] = path
        # The VAE stays float32: a float16 VAE overflows.
        precision = {
            "text_encoder": self.precision_plan.text_encoder,
            "diffusion_model": self.precision_plan.diffusion_model,
        }.get(name, self.precision_plan.decoder)
        scope = self.strategy.scope() if self.strategy else contextlib.nullcontext()
        with scope:
            return models.build_component(
                self.preset,
                name,
                self.img_height,
                self.img_width,
                weights_path=path,
                precision=precision,
                seed=self.seed,
                verbose=self.verbose,
            )

    def set(self, name: Component, model: Any) -> None:
        """Replaces a component (e.g. a text encoder grown by textual inversion).

        Everything derived from the old one is dropped (`invalidate`). `None`
        forgets the component: the next `get` builds it from the preset again.
        """
        self._check_name(name)
        if model is None:
            self._components.pop(name, None)
        else:
            self._components[name] = model
            if self.kerascv_model is not None:
                kerascv_lib.attach_components(self.kerascv_model, {name: model})
        self.invalidate(name)

    def peek(self, name: str) -> Any:
        """The component `name` (or `"tokenizer"`) if built, else None; builds nothing."""
        if name == "tokenizer":
            return self._tokenizer
        self._check_name(name)
        return self._components.get(name)

    @staticmethod
    def _check_name(name: str) -> None:
        if name not in COMPONENTS:
            valid = ", ".join(repr(c) for c in COMPONENTS)
            raise ValueError(f"Unknown component. Valid components: {valid}. Received: {name!r}")

    @property
    def tokenizer(self):
        """KerasCV's CLIP `SimpleTokenizer` on the vocabulary shipped with kerasmorph."""
        if self._tokenizer is None:
            self._tokenizer = models.build_tokenizer()
        return self._tokenizer

    def set_tokenizer(self, tokenizer: Any) -> None:
        """Replaces the tokenizer (textual inversion adds tokens to it)."""
        self._tokenizer = tokenizer
        if self.kerascv_model is not None:
            kerascv_lib.attach_components(self.kerascv_model, {}, tokenizer=tokenizer)
        self.invalidate("text_encoder")

    def built(self) -> dict[str, Any]:
        """The components built so far, by name."""
        return dict(self._components)

    # ------------------------------------------------------- derived state

    def memo(self, key: Any, build: Callable[[], Any]) -> Any:
        """Returns the cached value for `key`, computing it with `build()` on first use.

        Everything derived from the components is cached here, so that
        `invalidate()` is the one place it is dropped.
        """
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    def invalidate(self, component: Component | None = None) -> None:
        """Drops what was derived from `component` (default: everything).

        Memo keys start with what they depend on: `"text"` (text encoder and
        tokenizer: the compiled encoder, cached encodings), `"unet"` and
        `"sampler"` (the UNet: rewired UNets and traced steps), `"decoder"`,
        `"image_encoder"` (their compiled functions).
        """
        if component is None:
            self._memo = {}
            return
        kinds = _DERIVED_FROM[component]
        self._memo = {key: value for key, value in self._memo.items() if key[0] not in kinds}

    def resized(self, img_height: int, img_width: int) -> "ComponentStore":
        """A store for another image size sharing these components' variables.

        The text encoder, UNet and decoder are built first if they are not
        yet; the UNet and decoder are rewired (`kerasmorph.models.resize_component`),
        the others shared as they are. Cached text encodings carry over (they
        do not depend on the image size); compiled functions do not.
        """
        for name in ("text_encoder", "diffusion_model", "decoder"):
            self.get(name)
        other = copy.copy(self)
        other.img_height, other.img_width = img_height, img_width
        other.kerascv_model = None
        other._components = {}
        for name, model in self._components.items():
            if name in ("diffusion_model", "decoder"):
                model = models.resize_component(model, img_height, img_width)
            other._components[name] = model
        other._memo = {key: value for key, value in self._memo.items() if key[0] == "text"}
        return other

    # ------------------------------------------------------------- UNets

    def diffusion_model_for(self, sequence_length: int):
        """The UNet for text encodings of `sequence_length` tokens, sharing the weights."""
        sequence_length = check_sequence_length("sequence_length", sequence_length)
        model = self.get("diffusion_model")
        if models.context_length(model) == sequence_length:
            return model
        return self.memo(
            ("unet", sequence_length),
            lambda: models.rewire_context_length(model, sequence_length),
        )

    def sampler_for(self, sequence_length: int) -> Sampler:
        """The `Sampler` (one traced step) for encodings of `sequence_length` tokens."""
        sequence_length = check_sequence_length("sequence_length", sequence_length)
        models.depth.check_depth_set(self.get("diffusion_model"))
        return self.memo(
            ("sampler", sequence_length),
            lambda: Sampler(
                self.diffusion_model_for(sequence_length),
                jit_compile=self.precision_plan.jit_compile,
                strategy=self.strategy,
            ),
        )

    def interpolating_sampler_for(self, sequence_length: int) -> Sampler:
        """The `Sampler` whose UNet interpolates cross-attention outputs (AID's outer
        interpolation) for packed endpoint pairs of `sequence_length` tokens each."""
        sequence_length = check_sequence_length("sequence_length", sequence_length)
        return self.memo(
            ("interpolating sampler", sequence_length),
            lambda: Sampler(
                models.interpolate_cross_attention(self.diffusion_model_for(sequence_length)),
                jit_compile=self.precision_plan.jit_compile,
                strategy=self.strategy,
            ),
        )

    # -------------------------------------------------------------- steps

    def encode_tokens(self, tokens: np.ndarray) -> np.ndarray:
        """Text encoder step: int32 tokens (N, 77) -> float32 encodings (N, 77, D)."""
        import tensorflow as tf

        def build():
            encoder = self.get("text_encoder")
            return tf.function(
                lambda t, p: encoder({"tokens": t, "positions": p}, training=False),
                reduce_retracing=True,
            )

        function = self.memo(("text", "function"), build)
        positions = np.repeat(
            np.arange(MAX_PROMPT_LENGTH, dtype=np.int32)[None], len(tokens), axis=0
        )
        encoded = function(tf.constant(tokens), tf.constant(positions))
        return tf.cast(encoded, tf.float32).numpy()

    def decode_batch(self, latents: np.ndarray) -> np.ndarray:
        """Decoder step: float32 latents (B, h, w, 4) -> float32 images (B, H, W, 3) in ~[-1, 1]."""
        return self._vae_step("decoder", latents)

    def encode_batch(self, images: np.ndarray) -> np.ndarray:
        """Image-encoder step: float32 images (B, H, W, 3) in [-1, 1] -> latents (B, h, w, 4)."""
        return self._vae_step("image_encoder", images)

    def _vae_step(self, name: Component, batch: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        def build():
            model = self.get(name)
            return tf.function(
                lambda x: model(x, training=False),
                jit_compile=self.precision_plan.decoder_jit_compile,
            )

        function = self.memo((name, "function"), build)
        return tf.cast(function(tf.constant(batch)), tf.float32).numpy()


def resolve_model(model: Any, weights_dir: str | None) -> tuple[Preset, Any, str | None]:
    """Resolves the Explorer's `model` argument.

    Args:
        model: a preset name, a folder written by `kerasmorph convert` (it
            names its own preset and is its own weights folder), or a KerasCV
            `StableDiffusion`/`StableDiffusionV2`.
        weights_dir: the caller's weights folder.

    Returns:
        `(preset, kerascv_model or None, weights_dir)`.
    """
    if isinstance(model, str) and model not in PRESETS and weights_lib.is_converted_dir(model):
        if weights_dir is not None and weights_dir != model:
            raise ValueError(
                "A converted folder is its own weights_dir; pass one or the "
                f"other. Received: model={model!r}, weights_dir={weights_dir!r}"
            )
        return get_preset(weights_lib.read_manifest(model)["preset"]), None, model
    if isinstance(model, str):
        return get_preset(model), None, weights_dir
    return kerascv_lib.preset_of_kerascv(model), model, weights_dir


def model_prediction_type(weights_dir: str | None) -> str:
    """What the UNet predicts: a converted folder's recorded `prediction_type`, else epsilon."""
    if weights_dir is not None and weights_lib.is_converted_dir(weights_dir):
        return weights_lib.read_manifest(weights_dir).get("prediction_type", "epsilon")
    return "epsilon"
