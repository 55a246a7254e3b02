"""Depth-conditioned UNets (Stable Diffusion 2 depth): the depth map as a 5th latent channel.

A depth UNet's `latent` input has 5 channels: the 4 latent channels and a
depth map at the latent size, normalised to [−1, 1] (`images.depth_to_latent`).
`with_depth_input` wraps one so that it takes the usual 4-channel `latent` (the
Sampler, walks and img2img call it unchanged): a `DepthChannel` layer holds
the map in a non-trainable variable and concatenates it to every row of every
call — both guidance passes, every step. Setting another map
(`set_depth_map`) is an assignment: nothing retraces.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kerasmorph.backend import keras_module
from kerasmorph.constants import LATENT_CHANNELS

DEPTH_INPUT_CHANNELS = LATENT_CHANNELS + 1
DEPTH_LAYER_NAME = "depth_channel"

_LAYER_CLASS: Any = None


def _depth_channel_class():
    """`DepthChannel`, defined once Keras is importable."""
    global _LAYER_CLASS
    if _LAYER_CLASS is not None:
        return _LAYER_CLASS
    keras = keras_module()
    ops = keras.ops

    class DepthChannel(keras.layers.Layer):
        """Concatenates a stored depth map (1, h, w, 1) to every row of a latent (B, h, w, 4).

        `is_set` is False until `set_depth_map` assigns a map: a depth model run
        without one is refused before sampling (`check_depth_set`).
        """

        def __init__(self, latent_height: int, latent_width: int, **kwargs):
            super().__init__(**kwargs)
            self.latent_height, self.latent_width = int(latent_height), int(latent_width)
            self.is_set = False

        def build(self, input_shape):
            self.depth = self.add_weight(
                shape=(1, self.latent_height, self.latent_width, 1),
                initializer="zeros",
                trainable=False,
                name="depth",
                dtype="float32",
            )

        def call(self, latent):
            batch = ops.shape(latent)[0]
            depth = ops.cast(self.depth, latent.dtype)
            depth = ops.broadcast_to(depth, (batch, self.latent_height, self.latent_width, 1))
            return ops.concatenate([latent, depth], axis=-1)

        def get_config(self):
            return {
                **super().get_config(),
                "latent_height": self.latent_height,
                "latent_width": self.latent_width,
            }

    _LAYER_CLASS = DepthChannel
    return DepthChannel


def latent_input_channels(unet) -> int:
    """Channels of a UNet's `latent` input: 4, or 5 for a depth UNet (before wrapping)."""
    for tensor in unet.inputs:
        if tensor.name.split(":")[0].endswith("latent"):
            return int(tensor.shape[-1])
    raise ValueError(
        f"Expected a UNet with a `latent` input. Received inputs: {[t.name for t in unet.inputs]}"
    )


def _first_conv(unet, latent):
    """The one layer of `unet` called on its `latent` input tensor."""
    consumers = [
        layer
        for layer in unet.layers
        if any(
            tensor is latent
            for node in getattr(layer, "_inbound_nodes", ())
            for tensor in node.input_tensors
        )
    ]
    if len(consumers) != 1 or not consumers[0].weights:
        names = [layer.name for layer in consumers]
        raise ValueError(
            "Expected a UNet whose `latent` input feeds one convolution. "
            f"Received: it feeds {names or 'no layer'}"
        )
    return consumers[0]


def _conv_with_input_channels(layer, channels: int):
    """A new, unbuilt copy of `layer` (KerasCV's `PaddedConv2D` or a `Conv2D`) for
    `channels` input channels: same filters, kernel, padding, strides and name."""
    keras = keras_module()
    if isinstance(layer, keras.layers.Conv2D):
        new = layer.__class__.from_config(layer.get_config())
    elif isinstance(getattr(layer, "conv2d", None), keras.layers.Conv2D) and hasattr(
        layer, "padding2d"
    ):
        conv = layer.conv2d
        new = layer.__class__(
            conv.filters,
            conv.kernel_size,
            padding=layer.padding2d.padding,
            strides=conv.strides,
            name=layer.name,
            dtype=layer.dtype_policy,
        )
    else:
        raise ValueError(
            "Expected the UNet's first layer to be a Conv2D or KerasCV's PaddedConv2D. "
            f"Received: {layer.name} ({type(layer).__name__})"
        )
    return new


def with_input_channels(unet, channels: int):
    """The same UNet for a `latent` input of `channels` channels (SD 2 depth: 5).

    Every layer but the first convolution (the one applied to `latent`) is
    reused, so the new model's weights ARE `unet`'s variables; that conv is
    replaced by a new one (same filters, kernel, padding, strides and name)
    whose kernel takes `channels` input channels (random until loaded). As
    `kerasmorph.models.rewire`'s rewiring, through `keras.models.clone_model`;
    input names, dtypes and order are kept.

    Args:
        unet: a functional UNet with a `latent` input (h, w, C), e.g. KerasCV's
            `DiffusionModelV2`.
        channels: the new number of input channels, >= 1.

    Returns:
        A `keras.Model` named as `unet`, its `latent` input (h, w, channels).

    Raises:
        ValueError: for `channels` < 1, or a UNet whose `latent` input does
            not feed exactly one convolution.

    Example:

    ```python
    depth_unet = with_input_channels(DiffusionModelV2(512, 512, 77, download_weights=False), 5)
    ```
    """
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"`channels` must be an integer >= 1. Received: channels={channels!r}")
    keras = keras_module()
    latent = next(
        (tensor for tensor in unet.inputs if tensor.name.split(":")[0].endswith("latent")), None
    )
    if latent is None:
        names = [tensor.name for tensor in unet.inputs]
        raise ValueError(f"Expected a UNet with a `latent` input. Received inputs: {names}")
    first = _first_conv(unet, latent)
    replacement = _conv_with_input_channels(first, channels)

    def new_input(tensor):
        shape = tuple(tensor.shape[1:])
        if tensor is latent:
            shape = shape[:-1] + (channels,)
        return keras.Input(shape, dtype=tensor.dtype, name=tensor.name)

    return keras.models.clone_model(
        unet,
        input_tensors=[new_input(tensor) for tensor in unet.inputs],
        clone_function=lambda layer: replacement if layer is first else layer,
    )


def inner_unet(model):
    """The UNet inside a `with_depth_input` wrapper (its 5-channel model, whose weights
    files and checkpoint names are the UNet's own), or `model` itself when not wrapped."""
    if depth_layer(model) is None:
        return model
    keras = keras_module()
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def with_depth_input(unet, depth_channel=None):
    """Wraps a 5-channel depth UNet to take a 4-channel `latent` and a stored depth map.

    Args:
        unet: a UNet whose `latent` input is (h, w, 5); its other inputs are
            `timestep_embedding` and `context`.
        depth_channel: an existing wrapper's `DepthChannel` of the same
            latent size to share (a UNet rewired for long prompts sees the
            map the Explorer set); default: a new one.

    Returns:
        A `keras.Model` with the inputs of a 4-channel UNet (same names) whose
        layers are `DepthChannel` and `unet` itself (shared variables).
    """
    keras = keras_module()
    inputs = {tensor.name.split(":")[0]: tensor for tensor in unet.inputs}
    latent_name = next(name for name in inputs if name.endswith("latent"))
    height, width, channels = (int(n) for n in inputs[latent_name].shape[1:])
    if channels != DEPTH_INPUT_CHANNELS:
        raise ValueError(
            f"Expected a depth UNet ({DEPTH_INPUT_CHANNELS}-channel latent input). "
            f"Received: {channels} channels"
        )
    new_inputs = {
        name: keras.Input(
            (height, width, LATENT_CHANNELS) if name == latent_name else tensor.shape[1:],
            dtype=tensor.dtype,
            name=name,
        )
        for name, tensor in inputs.items()
    }
    layer = depth_channel or _depth_channel_class()(height, width, name=DEPTH_LAYER_NAME)
    wired = dict(new_inputs)
    wired[latent_name] = layer(new_inputs[latent_name])
    # In the UNet's own input order (a dict would be matched by sorted keys).
    output = unet([wired[name] for name in inputs])
    return keras.Model(new_inputs, output, name=f"{unet.name}_with_depth")


def depth_layer(model):
    """The `DepthChannel` of a wrapped depth UNet, or None for a plain UNet."""
    layer_class = _depth_channel_class()
    for layer in getattr(model, "layers", ()):
        if isinstance(layer, layer_class):
            return layer
    return None


def set_depth_map(model, depth: np.ndarray) -> None:
    """Stores a normalised depth map (1, h, w, 1) or (h, w, 1) in a wrapped depth UNet.

    Raises:
        ValueError: for a UNet without a depth input, or a map of another size.
    """
    layer = depth_layer(model)
    if layer is None:
        raise ValueError(
            "This model's UNet has no depth input (4 latent channels); a depth map needs a "
            "depth model (5-channel UNet: `sd2-depth`, `shapes-depth` or a converted "
            "stable-diffusion-2-depth folder)."
        )
    depth = np.asarray(depth, dtype=np.float32).reshape(-1, *np.shape(depth)[-3:])
    expected = (1, layer.latent_height, layer.latent_width, 1)
    if depth.shape != expected:
        raise ValueError(f"Expected a depth map of shape {expected}. Received: {depth.shape}")
    layer.depth.assign(depth)
    layer.is_set = True


def stored_depth_map(model) -> np.ndarray:
    """The normalised map a wrapped depth UNet holds, float32 (h, w).

    Raises:
        ValueError: for a UNet without a depth input or with no map set.
    """
    layer = depth_layer(model)
    if layer is None or not layer.is_set:
        raise ValueError("The UNet holds no depth map (not a depth model, or none set).")
    return np.asarray(layer.depth.numpy(), dtype=np.float32)[0, ..., 0]


def clear_depth_map(model) -> None:
    """Forgets the stored map (a depth model then refuses to sample until one is set)."""
    layer = depth_layer(model)
    if layer is not None:
        layer.is_set = False


def check_depth_set(model) -> None:
    """Refuses to sample a depth model whose depth map was never set."""
    layer = depth_layer(model)
    if layer is not None and not layer.is_set:
        from kerasmorph.errors import InputError

        raise InputError(
            "This is a depth model (5-channel UNet): it needs a depth map. Use "
            "Explorer.depth_to_image(image, prompt, depth_map=...) or "
            "Explorer.set_depth_map(...) first (CLI: depth2img IMAGE PROMPT --depth DEPTH.png)."
        )
