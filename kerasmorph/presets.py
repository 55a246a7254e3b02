"""Presets: which KerasCV components make a model, and which files they load.

- `sd1`: KerasCV's `StableDiffusion` (v1.4): `TextEncoder` (768), `DiffusionModel`;
  weights `kcv_*.h5`, `vae_encoder.h5`.
- `sd2`: `StableDiffusionV2` (v2.1): `TextEncoderV2` (1024), `DiffusionModelV2`;
  weights `*_v2_1.h5` + the sd1 VAE.
- `tiny`: text encoder of 2 layers (64), UNet of 4 levels (32–64 channels);
  seeded random weights.
- `shapes`: 30-word vocabulary, 2 layers (128), UNet of 3 levels (32–128 channels);
  trained, shipped in `kerasmorph/data/shapes`.

Components are built with `download_weights=False` and then load the file that
`kerasmorph.weights.resolve_weights` found, so nothing here downloads by
accident. Building happens inside `dtype_policy_scope`, which sets the global
Keras dtype policy only while the component is constructed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from kerasmorph import tiny
from kerasmorph.backend import keras_module
from kerasmorph.weights import WeightFile

Component = Literal["text_encoder", "diffusion_model", "decoder", "image_encoder"]
COMPONENTS: tuple[Component, ...] = (
    "text_encoder",
    "diffusion_model",
    "decoder",
    "image_encoder",
)
# Keras dtype policies a component can be built with; "bfloat16" stores the
# weights in bf16 (no per-call casts). "auto" is resolved per device by
# `kerasmorph.devices.resolve_precision`.
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16", "bfloat16")
PRECISION_OPTIONS = (*PRECISIONS, "auto")
MAX_PROMPT_LENGTH = 77

_HF = "https://huggingface.co"
_SD1_FILES = {
    "text_encoder": WeightFile(
        "text_encoder",
        "kcv_encoder.h5",
        "4789e63e07c0e54d6a34a29b45ce81ece27060c499a709d556c7755b42bb0dc4",
        f"{_HF}/fchollet/stable-diffusion/resolve/main/kcv_encoder.h5",
    ),
    "diffusion_model": WeightFile(
        "diffusion_model",
        "kcv_diffusion_model.h5",
        "8799ff9763de13d7f30a683d653018e114ed24a6a819667da4f5ee10f9e805fe",
        f"{_HF}/fchollet/stable-diffusion/resolve/main/kcv_diffusion_model.h5",
    ),
    "decoder": WeightFile(
        "decoder",
        "kcv_decoder.h5",
        "ad350a65cc8bc4a80c8103367e039a3329b4231c2469a1093869a345f55b1962",
        f"{_HF}/fchollet/stable-diffusion/resolve/main/kcv_decoder.h5",
    ),
    "image_encoder": WeightFile(
        "image_encoder",
        "vae_encoder.h5",
        "c60fb220a40d090e0f86a6ab4c312d113e115c87c40ff75d11ffcf380aab7ebb",
        f"{_HF}/fchollet/stable-diffusion/resolve/main/vae_encoder.h5",
    ),
}
_SD2_FILES = {
    **_SD1_FILES,
    "text_encoder": WeightFile(
        "text_encoder",
        "text_encoder_v2_1.h5",
        "985002e68704e1c5c3549de332218e99c5b9b745db7171d5f31fcd9a6089f25b",
        f"{_HF}/ianstenbit/keras-sd2.1/resolve/main/text_encoder_v2_1.h5",
    ),
    "diffusion_model": WeightFile(
        "diffusion_model",
        "diffusion_model_v2_1.h5",
        "c31730e91111f98fe0e2dbde4475d381b5287ebb9672b1821796146a25c5132d",
        f"{_HF}/ianstenbit/keras-sd2.1/resolve/main/diffusion_model_v2_1.h5",
    ),
}

_SD1_LICENCE = (
    "Stable Diffusion v1.4 weights: CreativeML Open RAIL-M licence, "
    "https://raw.githubusercontent.com/CompVis/stable-diffusion/main/LICENSE"
)
_SD2_LICENCE = (
    "Stable Diffusion v2.1 weights: CreativeML Open RAIL++-M licence, "
    "https://github.com/Stability-AI/stablediffusion/blob/main/LICENSE-MODEL"
)


def _kerascv_models():
    from keras_cv.src.models.stable_diffusion import (
        decoder,
        diffusion_model,
        image_encoder,
        text_encoder,
    )

    return text_encoder, diffusion_model, decoder, image_encoder


def _build_sd(version: int, component: Component, height: int, width: int):
    text_encoder, diffusion_model, decoder, image_encoder = _kerascv_models()
    if component == "text_encoder":
        cls = text_encoder.TextEncoder if version == 1 else text_encoder.TextEncoderV2
        return cls(MAX_PROMPT_LENGTH, download_weights=False)
    if component == "diffusion_model":
        cls = diffusion_model.DiffusionModel if version == 1 else diffusion_model.DiffusionModelV2
        return cls(height, width, MAX_PROMPT_LENGTH, download_weights=False)
    if component == "decoder":
        return decoder.Decoder(height, width, download_weights=False)
    return image_encoder.ImageEncoder(download_weights=False)


def _build_shapes(component: Component, height: int, width: int, seed: int):
    from kerasmorph.shapes import pretrained

    return pretrained.build_component(component, height, width, seed)


def _shapes_weights_dir() -> Path:
    from kerasmorph.shapes import pretrained

    return pretrained.weights_dir()


def _build_tiny(component: Component, height: int, width: int, seed: int):
    if component == "text_encoder":
        return tiny.build_text_encoder(seed)
    if component == "diffusion_model":
        return tiny.build_diffusion_model(height, width, seed)
    if component == "decoder":
        return tiny.build_decoder(height, width, seed)
    return tiny.build_image_encoder(seed)


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named model recipe.

    Args:
        name: the preset's name, e.g. `"sd1"`.
        description: one line for `kerasmorph info`.
        default_size: default image height and width in pixels.
        size_multiple: image sizes must be multiples of this (VAE factor 8 x
            the UNet's 3 halvings = 64 for every preset).
        weight_files: component -> `WeightFile`; empty for random presets.
        licence: the weights' licence notice ("" when none applies).
        build: `(component, height, width, seed) -> keras.Model` building an
            uninitialised (random) component.
        kerascv_class: name of the matching `keras_cv.models` class, if any.
        bundled_weights: `() -> Path` of the directory holding weights that
            ship inside kerasmorph (`shapes`), for `kerasmorph info`; `None`
            for presets with no weights or with `weight_files` to find.
    """

    name: str
    description: str
    default_size: int
    size_multiple: int
    weight_files: Mapping[str, WeightFile]
    licence: str
    build: Callable[[Component, int, int, int], Any]
    kerascv_class: str | None = None
    bundled_weights: Callable[[], Path] | None = None


PRESETS: dict[str, Preset] = {
    "sd1": Preset(
        name="sd1",
        description="Stable Diffusion 1.4 (KerasCV StableDiffusion), 768-d text",
        default_size=512,
        size_multiple=64,
        weight_files=_SD1_FILES,
        licence=_SD1_LICENCE,
        build=lambda component, h, w, seed: _build_sd(1, component, h, w),
        kerascv_class="StableDiffusion",
    ),
    "sd2": Preset(
        name="sd2",
        description="Stable Diffusion 2.1 (KerasCV StableDiffusionV2), 1024-d text",
        default_size=512,
        size_multiple=64,
        weight_files=_SD2_FILES,
        licence=_SD2_LICENCE,
        build=lambda component, h, w, seed: _build_sd(2, component, h, w),
        kerascv_class="StableDiffusionV2",
    ),
    "tiny": Preset(
        name="tiny",
        description="tiny seeded random components for tests and offline runs",
        default_size=128,
        size_multiple=64,
        weight_files={},
        licence="",
        build=_build_tiny,
    ),
    "shapes": Preset(
        name="shapes",
        description=(
            "toy model trained on CPU: a red/green/blue/yellow circle, square or "
            "triangle on white (weights shipped, offline)"
        ),
        default_size=128,
        size_multiple=64,
        weight_files={},
        licence="",
        build=_build_shapes,
        bundled_weights=_shapes_weights_dir,
    ),
}


def get_preset(name: str) -> Preset:
    """Returns the preset called `name`, or raises a ValueError listing them."""
    if name not in PRESETS:
        valid = ", ".join(repr(key) for key in PRESETS)
        raise ValueError(f"Unknown preset. Valid presets: {valid}. Received: preset={name!r}")
    return PRESETS[name]


@contextlib.contextmanager
def dtype_policy_scope(precision: str) -> Iterator[None]:
    """Sets the global Keras dtype policy only inside the `with` block.

    KerasCV's components take no `dtype` argument, so the policy they are built
    with must be global while they are constructed; the caller's policy is
    restored afterwards, also when building fails.
    """
    if precision not in PRECISIONS:
        valid = ", ".join(repr(p) for p in PRECISIONS)
        raise ValueError(f"`precision` must be one of {valid}. Received: precision={precision!r}")
    keras = keras_module()
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


class WeightsLoadError(ValueError):
    """Raised when a weight file cannot be read into a component."""


def build_component(
    preset: Preset,
    component: Component,
    img_height: int,
    img_width: int,
    *,
    weights_path: str | os.PathLike | None = None,
    precision: str = "float32",
    seed: int = tiny.DEFAULT_SEED,
):
    """Builds one component and loads its weights file, if any.

    Args:
        preset: the `Preset`.
        component: one of `COMPONENTS`.
        img_height: image height in pixels (fixes the UNet/decoder input shape).
        img_width: image width in pixels.
        weights_path: a file for `model.load_weights` (KerasCV `.h5` or Keras 3
            `.weights.h5`); `None` keeps the random initialisation.
        precision: Keras dtype policy to build with.
        seed: weight seed of random presets.

    Returns:
        The built `keras.Model`.

    Raises:
        WeightsLoadError: when the file is unreadable or has another
            architecture, naming the file and the component.
    """
    with dtype_policy_scope(precision):
        model = preset.build(component, img_height, img_width, seed)
    if weights_path is not None:
        try:
            model.load_weights(os.fspath(weights_path))
        except Exception as error:  # h5py, ValueError: report them uniformly.
            raise WeightsLoadError(
                f"Could not load {weights_path} into the {preset.name!r} "
                f"{component} ({type(model).__name__}, {len(model.weights)} "
                f"weight tensors). Is it a {preset.name} file for this component? "
                f"Cause: {type(error).__name__}: {error}"
            ) from error
    return model


def bpe_vocabulary_path() -> Path:
    """Returns the path of the CLIP BPE merges shipped inside kerasmorph."""
    return Path(
        str(resources.files("kerasmorph") / "data" / "clip" / "bpe_simple_vocab_16e6.txt.gz")
    )


def build_tokenizer():
    """Builds KerasCV's CLIP `SimpleTokenizer` on the bundled vocabulary."""
    keras_module()
    from keras_cv.src.models.stable_diffusion.clip_tokenizer import SimpleTokenizer

    return SimpleTokenizer(bpe_path=str(bpe_vocabulary_path()))


def resize_component(model, img_height: int, img_width: int):
    """Returns `model` rewired for another image size, sharing its variables.

    KerasCV's UNet and decoder layers read static shapes when they are called,
    so calling the SAME layers on new `keras.Input`s of another latent size
    builds a model for that size whose weights are the original's variables
    (no copy). Size-independent components (the text encoder, an encoder with
    `(None, None, 3)` input) need no rewiring: pass them on as they are.

    Args:
        model: a functional or `Sequential` component whose latent input is
            (h, w, 4) (the UNet's `latent`, the decoder's only input).
        img_height, img_width: the new image size in pixels.

    Returns:
        A `keras.Model` sharing every layer with `model`.
    """
    latent_shape = (img_height // 8, img_width // 8, 4)

    def input_shape(tensor) -> tuple:
        shape = tuple(tensor.shape[1:])
        return latent_shape if len(shape) == 3 and shape[-1] == 4 else shape

    return _rewire_inputs(model, input_shape)


def context_length(model) -> int:
    """The sequence length L of a UNet's `context` input (B, L, D): 77 as built.

    Raises:
        ValueError: when `model` has no input named `context`.
    """
    for tensor in model.inputs:
        if tensor.name == "context":
            return int(tensor.shape[1])
    names = [tensor.name for tensor in model.inputs]
    raise ValueError(f"The UNet has no input named 'context'. Received: inputs {names}")


def rewire_context_length(model, sequence_length: int):
    """Returns the UNet rewired for text encodings of another length, sharing its variables.

    A UNet's `context` input has a static shape (77, D), but nothing in it
    depends on 77: KerasCV's `CrossAttention` reads the context length from
    the tensor it is called on (`context.shape[1]`, to reshape keys and values
    into heads), and the weights of `to_k`/`to_v` act on the width D only. So
    calling the SAME layers on a new `context` Input of (sequence_length, D)
    — as `resize_component` does for image sizes — gives a UNet that attends
    over `sequence_length` tokens with the original's variables (no copy).
    This is how prompts longer than 75 tokens are used: their 75-token chunks
    are encoded separately and concatenated (`Explorer.encode_text(...,
    long_prompts=True)`), so cross-attention sees all of them at once.

    Args:
        model: a functional UNet with inputs `latent`, `timestep_embedding`
            and `context` (KerasCV's `DiffusionModel`/`DiffusionModelV2`, the
            `tiny` one).
        sequence_length: the new context length, an integer >= 1 (the
            Explorer uses multiples of 77).

    Returns:
        A `keras.Model` sharing every layer with `model`, whose `context`
        input is (sequence_length, D); the other inputs are unchanged.

    Raises:
        ValueError: for a non-positive `sequence_length` or a model without a
            `context` input.

    Example:

    ```python
    unet = kerasmorph.presets.rewire_context_length(explorer.diffusion_model, 154)
    assert unet.weights[0] is explorer.diffusion_model.weights[0]
    ```
    """
    if (
        isinstance(sequence_length, bool)
        or not isinstance(sequence_length, int)
        or sequence_length < 1
    ):
        raise ValueError(
            "`sequence_length` must be an integer >= 1. "
            f"Received: sequence_length={sequence_length!r}"
        )
    context_length(model)  # Raises for a model without a `context` input.

    def input_shape(tensor) -> tuple:
        shape = tuple(tensor.shape[1:])
        return (sequence_length, shape[-1]) if tensor.name == "context" else shape

    return _rewire_inputs(model, input_shape)


def _rewire_inputs(model, input_shape: Callable[[Any], tuple]):
    """Calls `model`'s own layers on new `keras.Input`s of `input_shape(tensor)`.

    Input names and dtypes are kept (the UNet is called with a dict keyed by
    them); `clone_function=lambda layer: layer` reuses every layer instead of
    copying it, so the new model's weights ARE the original's variables.
    """
    keras = keras_module()

    def new_input(tensor):
        return keras.Input(input_shape(tensor), dtype=tensor.dtype, name=tensor.name)

    if isinstance(model, keras.Sequential):
        inputs = new_input(model.inputs[0])
        outputs = inputs
        for layer in model.layers:
            outputs = layer(outputs)
        return keras.Model(inputs, outputs, name=model.name)
    inputs = [new_input(tensor) for tensor in model.inputs]
    return keras.models.clone_model(model, input_tensors=inputs, clone_function=lambda layer: layer)
