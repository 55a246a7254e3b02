"""Building one component of a preset: the architecture's builder, a dtype scope, its weights.

A `Preset` names its architecture by data (`preset.architecture`); `BUILDERS`
maps each architecture to `(component, height, width, seed) -> keras.Model`,
building an uninitialised (random, or for `shapes` trained) component:

- `sd1`, `sd2`: KerasCV's own classes, built with `download_weights=False`;
- `sd2-depth`: `sd2`'s, the UNet given a 5-channel `latent` input
  (`depth.with_input_channels`: Stability's stable-diffusion-2-depth);
- `tiny`: `kerasmorph.models.tiny`'s seeded builders;
- `shapes`: `kerasmorph.shapes.pretrained.build_component` (weights shipped).

`build_component` then loads the file that `kerasmorph.weights.resolve_weights`
found, so nothing here downloads by accident. Building happens inside
`dtype_policy_scope`, which sets the global Keras dtype policy only while the
component is constructed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kerasmorph.backend import keras_module
from kerasmorph.constants import MAX_PROMPT_LENGTH, PRECISIONS, Component
from kerasmorph.licences import show_licence_notice
from kerasmorph.models import depth, tiny
from kerasmorph.presets import Preset
from kerasmorph.progress import ProgressBar
from kerasmorph.shapes import model as shapes_model
from kerasmorph.shapes import pretrained as shapes_pretrained


def _kerascv_models():
    """KerasCV's private Stable Diffusion component modules (TensorFlow needed)."""
    keras_module()
    from kerasmorph.kerascv_internals import stable_diffusion_modules

    decoder, diffusion_model, image_encoder, text_encoder = stable_diffusion_modules(
        "decoder", "diffusion_model", "image_encoder", "text_encoder"
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


def _build_sd2_depth(component: Component, height: int, width: int, seed: int):
    """`sd2`'s components; the UNet's `latent` input has 5 channels (latent + depth)."""
    model = _build_sd(2, component, height, width)
    if component == "diffusion_model":
        model = depth.with_input_channels(model, depth.DEPTH_INPUT_CHANNELS)
    return model


def _build_tiny(component: Component, height: int, width: int, seed: int):
    if component == "text_encoder":
        return tiny.build_text_encoder(seed)
    if component == "diffusion_model":
        return tiny.build_diffusion_model(height, width, seed)
    if component == "decoder":
        return tiny.build_decoder(height, width, seed)
    return tiny.build_image_encoder(seed)


# Architecture -> `(component, height, width, seed) -> keras.Model`.
BUILDERS: dict[str, Callable[[Component, int, int, int], Any]] = {
    "sd1": lambda component, height, width, seed: _build_sd(1, component, height, width),
    "sd2": lambda component, height, width, seed: _build_sd(2, component, height, width),
    "sd2-depth": _build_sd2_depth,
    "tiny": _build_tiny,
    "shapes": shapes_pretrained.build_component,
    "shapes-depth": shapes_pretrained.build_depth_component,
    "shapes-black": shapes_pretrained.builder_of("shapes-black"),
    "shapes-outlined": shapes_pretrained.builder_of("shapes-outlined"),
}
# Architecture -> `() -> Path` of the weights that ship inside kerasmorph.
_BUNDLED_WEIGHTS: dict[str, Callable[[], Path]] = {
    "shapes": shapes_pretrained.weights_dir,
    "shapes-depth": lambda: shapes_pretrained.weights_dir(depth=True),
    "shapes-black": lambda: shapes_pretrained.weights_dir(toy="shapes-black"),
    "shapes-outlined": lambda: shapes_pretrained.weights_dir(toy="shapes-outlined"),
}


def get_builder(preset: Preset) -> Callable[[Component, int, int, int], Any]:
    """Returns the component builder of `preset.architecture`, or raises listing them."""
    builder = BUILDERS.get(preset.architecture)
    if builder is None:
        valid = ", ".join(repr(key) for key in BUILDERS)
        raise ValueError(
            f"Unknown architecture of preset {preset.name!r}. Valid architectures: {valid}. "
            f"Received: architecture={preset.architecture!r}"
        )
    return builder


def bundled_weights_dir(preset: Preset) -> Path | None:
    """The directory of the weights that ship inside kerasmorph for `preset`, if any.

    `shapes` ships its trained weights (`$KERASMORPH_SHAPES_WEIGHTS` overrides
    the directory); presets with no weights, or with `weight_files` to find,
    give `None`. `kerasmorph info` reports it.
    """
    find = _BUNDLED_WEIGHTS.get(preset.architecture)
    return None if find is None else find()


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
    verbose: bool = False,
):
    """Builds one component and loads its weights file, if any.

    Args:
        preset: the `Preset`.
        component: one of `COMPONENTS`.
        img_height: image height in pixels (fixes the UNet/decoder input shape).
        img_width: image width in pixels.
        weights_path: a file for `model.load_weights` (KerasCV `.h5` or Keras 3
            `.weights.h5`), or a kerasmorph `.npz` file (a merge of the
            `shapes` toys); `None` keeps the random initialisation (or the
            toys' shipped weights).
        precision: Keras dtype policy to build with.
        seed: weight seed of random presets.
        verbose: once the weights file is loaded, show the tensors loaded
            and the time taken as a (finished) progress bar; Keras reads
            the file in one call, so the bar cannot move before.

    Returns:
        The built `keras.Model`.

    Raises:
        WeightsLoadError: when the file is unreadable or has another
            architecture, naming the file and the component.

    Example:

    ```python
    preset = kerasmorph.presets.get_preset("tiny")
    unet = kerasmorph.models.build_component(preset, "diffusion_model", 128, 128)
    ```
    """
    builder = get_builder(preset)
    with dtype_policy_scope(precision):
        model = builder(component, img_height, img_width, seed)
    if weights_path is not None:
        progress = ProgressBar(len(model.weights), verbose=verbose, unit_name="tensor")
        try:
            if os.fspath(weights_path).endswith(".npz"):
                shapes_model.load_weights(model, weights_path)
            else:
                model.load_weights(os.fspath(weights_path))
        except Exception as error:  # h5py, ValueError: report them uniformly.
            raise WeightsLoadError(
                f"Could not load {weights_path} into the {preset.name!r} "
                f"{component} ({type(model).__name__}, {len(model.weights)} "
                f"weight tensors). Is it a {preset.name} file for this component? "
                f"Cause: {type(error).__name__}: {error}"
            ) from error
        show_licence_notice(preset.licence)  # Real sd1/sd2 weights: once per process.
        progress.advance(len(model.weights))
    if component == "diffusion_model" and depth.latent_input_channels(model) == 5:
        # A depth UNet: the Sampler calls it with 4 latent channels; the map is stored.
        model = depth.with_depth_input(model)
    return model
