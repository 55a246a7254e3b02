"""Rewiring built components: the same layers called on new inputs, no variable copied.

KerasCV's UNet and decoder layers read static shapes when they are called, so
calling the SAME layers on new `keras.Input`s gives a model for another image
size (`resize_component`) or another text-encoding length
(`rewire_context_length`) whose weights are the original's variables.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kerasmorph.backend import keras_module
from kerasmorph.constants import LATENT_CHANNELS, LATENT_FACTOR
from kerasmorph.models import depth


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
    latent_shape = (img_height // LATENT_FACTOR, img_width // LATENT_FACTOR, LATENT_CHANNELS)

    def input_shape(tensor) -> tuple:
        shape = tuple(tensor.shape[1:])
        if len(shape) == 3 and shape[-1] in (LATENT_CHANNELS, depth.DEPTH_INPUT_CHANNELS):
            return (*latent_shape[:2], shape[-1])  # A depth UNet's latent + depth too.
        return shape

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
    unet = kerasmorph.models.rewire_context_length(explorer.diffusion_model, 154)
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
    if depth.depth_layer(model) is not None:
        # A depth wrapper: rewire the UNet inside, then wrap it again, sharing
        # the stored map when the latent size is unchanged.
        rewired = _rewire_inputs(depth.inner_unet(model), input_shape)
        layer = depth.depth_layer(model)
        latent = next(tensor for tensor in rewired.inputs if len(tensor.shape) == 4)
        same_size = tuple(latent.shape[1:3]) == tuple(layer.depth.shape[1:3])
        return depth.with_depth_input(rewired, layer if same_size else None)

    def new_input(tensor):
        return keras.Input(input_shape(tensor), dtype=tensor.dtype, name=tensor.name)

    if isinstance(model, keras.Sequential):
        inputs = new_input(model.inputs[0])
        outputs = inputs
        for layer in model.layers:
            outputs = layer(outputs)
        return keras.Model(inputs, outputs, name=model.name)
    # In the structure the model was built with: a tensor, a list or a dict.
    structure = model.input
    if isinstance(structure, dict):
        inputs = {name: new_input(tensor) for name, tensor in structure.items()}
    elif isinstance(structure, (list, tuple)):
        inputs = [new_input(tensor) for tensor in structure]
    else:
        inputs = new_input(structure)
    return keras.models.clone_model(model, input_tensors=inputs, clone_function=lambda layer: layer)


# Stable Diffusion's latent scale: KerasCV's image encoder ends in
# `Lambda(lambda x: x[..., :4] * 0.18215)`.
LATENT_SCALE = 0.18215


def posterior_encoder(image_encoder):
    """The image encoder up to its posterior's moments, or None when it has none.

    KerasCV's (and the `tiny`) image encoder computes 8 channels — the mean
    and log-variance of the VAE posterior — and keeps the mean times 0.18215
    in a last `Lambda`. Training samples the posterior instead
    (`mean + exp(logvar / 2)·ε`, as keras.io's textual-inversion example
    does), so it needs the 8 channels. The `shapes` encoder is a fixed
    pixel-to-latent map with no posterior: None.

    Args:
        image_encoder: a built image encoder (N, H, W, 3) -> (N, H/8, W/8, 4).

    Returns:
        A model (N, H, W, 3) -> (N, H/8, W/8, 8) sharing the encoder's layers,
        or None.
    """
    keras = keras_module()
    layers = image_encoder.layers
    if len(layers) < 2 or not isinstance(layers[-1], keras.layers.Lambda):
        return None
    moments = layers[-2].output
    if moments.shape[-1] != 2 * LATENT_CHANNELS:
        return None
    return keras.Model(image_encoder.inputs, moments, name=f"{image_encoder.name}_posterior")
