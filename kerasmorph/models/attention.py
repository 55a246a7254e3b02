"""AID-style "outer" interpolation of cross-attention, as a rewired UNet.

Lerping two text encodings mixes them *before* cross-attention: since
`to_k`/`to_v` are linear, that is the same as lerping keys and values
("inner" interpolation). AID (He et al., NeurIPS 2024) interpolates the
attention *outputs* instead:

    (1 − α)·Attn(Q, K₁, V₁) + α·Attn(Q, K₂, V₂)

so each image token attends to each prompt on its own terms (two softmaxes)
and the results are mixed. KerasCV's `CrossAttention` ends in the affine
`out_proj`, whose weighted sum with weights summing to 1 is the projection of
the weighted sum, so `(1 − α)·attn2(h, c₁) + α·attn2(h, c₂)` is exactly that.

`interpolate_cross_attention(unet)` returns the UNet with every KerasCV
`SpatialTransformer` swapped for `OuterAttentionTransformer`, a wrapper that
holds the original layer and calls its own sublayers (no variable is copied;
the original model is untouched). The graph keeps the UNet's three named
inputs (`latent`, `timestep_embedding`, `context`), so the Sampler and
everything that calls a UNet use it unchanged; the two endpoints and α travel
in one *packed* `context` of shape (B, 2L + 1, D) built by `pack_contexts`:

| rows | holds |
|---|---|
| [0, L) | the first endpoint's encoding c₁ |
| [L, 2L) | the second endpoint's encoding c₂ |
| 2L | α, repeated over the D columns (one α per batch row) |

Self-attention is left as it is (AID's fusion of self-attention with the
endpoints' keys and values needs the endpoints' own denoising passes).

References:
    - He, Q., Wang, J., Liu, Z., Yao, A. "AID: Attention Interpolation of
      Text-to-Image Diffusion", NeurIPS 2024. https://arxiv.org/abs/2403.17924
"""

from __future__ import annotations

import functools

import numpy as np

from kerasmorph._checks import check_count, check_positions
from kerasmorph.backend import keras_module
from kerasmorph.errors import InputError
from kerasmorph.models.rewire import context_length

# The sublayers of KerasCV's `SpatialTransformer` and `BasicTransformerBlock`
# that `OuterAttentionTransformer` calls (the order of their `call`s).
TRANSFORMER_SUBLAYERS = ("norm", "proj1", "transformer_block", "proj2")
BLOCK_SUBLAYERS = ("norm1", "attn1", "norm2", "attn2", "norm3", "geglu", "dense")


def packed_length(sequence_length: int) -> int:
    """The packed context length 2L + 1 for endpoint encodings of length L."""
    return 2 * sequence_length + 1


def pack_contexts(first, second, alpha) -> np.ndarray:
    """Packs two endpoint encodings and α into one context for the interpolating UNet.

    Args:
        first: float (B, L, D), the encoding at α = 0 (e.g.
            `explorer.encode_text(prompt_1)`).
        second: float (B, L, D), the encoding at α = 1; same shape as `first`.
        alpha: a number or a 1-D array of B numbers in [0, 1], the weight of
            `second` in each batch row's cross-attention output.

    Returns:
        float32 (B, 2L + 1, D): rows [0, L) `first`, [L, 2L) `second`, row 2L
        α repeated over D.

    Raises:
        ValueError: for shapes that are not equal (B, L, D) arrays, an α that
            is not finite or outside [0, 1], or an α array whose length is not B.

    Example:

    ```python
    first = explorer.encode_text("a red circle")      # (1, 77, D)
    second = explorer.encode_text("a blue square")    # (1, 77, D)
    packed = kerasmorph.models.pack_contexts(
        np.repeat(first, 3, 0), np.repeat(second, 3, 0), [0.0, 0.5, 1.0]
    )                                                 # (3, 155, D)
    ```
    """
    first = np.asarray(first, dtype=np.float32)
    second = np.asarray(second, dtype=np.float32)
    if first.ndim != 3 or first.shape != second.shape:
        raise InputError(
            "`first` and `second` must be encodings of one shape (B, L, D). "
            f"Received: first.shape={first.shape}, second.shape={second.shape}"
        )
    alphas = check_positions("alpha", alpha, max_ndim=1)
    batch_size = first.shape[0]
    if alphas.ndim == 1 and len(alphas) != batch_size:
        raise InputError(
            f"`alpha` must be a number or hold one value per batch row ({batch_size}). "
            f"Received: alpha with shape {alphas.shape}"
        )
    alpha_row = np.broadcast_to(
        np.broadcast_to(alphas, (batch_size,)).astype(np.float32)[:, None, None],
        (batch_size, 1, first.shape[2]),
    )
    return np.concatenate([first, second, alpha_row], axis=1)


def unpack_contexts(packed) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Splits a context packed by `pack_contexts`.

    Args:
        packed: float (B, 2L + 1, D).

    Returns:
        `(first, second, alpha)`: float32 (B, L, D), (B, L, D) and (B,).

    Raises:
        ValueError: when `packed` is not (B, 2L + 1, D) with L >= 1, or its
            last row is not one value in [0, 1] repeated over D.
    """
    packed = np.asarray(packed, dtype=np.float32)
    if packed.ndim != 3 or packed.shape[1] < 3 or packed.shape[1] % 2 == 0:
        raise InputError(
            "`packed` must be a packed context (B, 2L + 1, D) with L >= 1 "
            f"(see `pack_contexts`). Received: packed.shape={packed.shape}"
        )
    length = (packed.shape[1] - 1) // 2
    alpha_row = packed[:, 2 * length, :]
    alpha = alpha_row[:, 0]
    if not np.array_equal(alpha_row, np.broadcast_to(alpha[:, None], alpha_row.shape)):
        raise InputError(
            "The last row of `packed` must hold one α per batch row, repeated over D "
            f"(see `pack_contexts`). Received: row {2 * length} ranging over "
            f"[{alpha_row.min()}, {alpha_row.max()}]"
        )
    check_positions("alpha", alpha)
    return packed[:, :length].copy(), packed[:, length : 2 * length].copy(), alpha.copy()


@functools.cache
def _kerascv_classes() -> tuple[type, type, type]:
    """KerasCV's `SpatialTransformer`, `BasicTransformerBlock` and `CrossAttention`."""
    from kerasmorph.kerascv_internals import stable_diffusion_name

    return tuple(
        stable_diffusion_name("diffusion_model", name)
        for name in ("SpatialTransformer", "BasicTransformerBlock", "CrossAttention")
    )


def _check_transformer(layer, model_name: str) -> None:
    """Raises unless `layer` is a KerasCV SpatialTransformer that this module can replicate.

    A subclass that overrides `call`, or a layer missing one of the sublayers
    that `OuterAttentionTransformer` calls, would not compute what KerasCV's does.
    """
    transformer_class, block_class, attention_class = _kerascv_classes()
    block = getattr(layer, "transformer_block", None)
    problems = [name for name in TRANSFORMER_SUBLAYERS if not hasattr(layer, name)]
    if type(layer).call is not transformer_class.call:
        problems.append("SpatialTransformer.call overridden")
    if not isinstance(block, block_class) or type(block).call is not block_class.call:
        problems.append("transformer_block is not KerasCV's BasicTransformerBlock")
    else:
        problems += [name for name in BLOCK_SUBLAYERS if not hasattr(block, name)]
        if not isinstance(block.attn2, attention_class):
            problems.append("attn2 is not KerasCV's CrossAttention")
    if problems:
        raise InputError(
            f"interpolate_cross_attention needs KerasCV's SpatialTransformer as built by "
            f"keras_cv 0.9; layer {layer.name!r} of model {model_name!r} differs. "
            f"Received: {', '.join(problems)}"
        )


@functools.cache
def _outer_attention_class() -> type:
    """Defines `OuterAttentionTransformer` once Keras is importable."""
    keras = keras_module()
    ops = keras.ops

    class OuterAttentionTransformer(keras.layers.Layer):
        """A KerasCV `SpatialTransformer` whose cross-attention mixes two contexts' outputs.

        Holds the original `transformer` (its variables are this layer's
        variables, not copies) and runs its `call` and its
        `BasicTransformerBlock`'s `call` step by step, except that the
        cross-attention `attn2(h, context)` becomes
        `(1 − α)·attn2(h, c₁) + α·attn2(h, c₂)`. At α = 0 (α = 1) that sum is
        bit-for-bit `attn2(h, c₁)` (`attn2(h, c₂)`): the other term is an
        exact zero.

        Args:
            transformer: a built KerasCV `SpatialTransformer`.
            sequence_length: L, the length of each endpoint's encoding.

        Call arguments:
            inputs: `[x, packed]`, x (B, h, w, C) and the packed context
                (B, 2L + 1, D) (see `pack_contexts`).

        Returns:
            (B, h, w, C) in the layer's compute dtype.
        """

        def __init__(self, transformer, sequence_length: int, **kwargs):
            kwargs.setdefault("name", f"{transformer.name}_outer_attention")
            kwargs.setdefault("dtype", transformer.dtype_policy)
            super().__init__(**kwargs)
            self.transformer = transformer
            self.sequence_length = sequence_length

        def build(self, input_shape):
            self.built = True  # The wrapped transformer is built already.

        def call(self, inputs):
            x, packed = inputs
            length = self.sequence_length
            first = packed[:, :length]
            second = packed[:, length : 2 * length]
            # (B, 1, 1): one α per batch row, broadcast over tokens and channels.
            alpha = ops.cast(packed[:, 2 * length :, :1], self.compute_dtype)

            # KerasCV's SpatialTransformer.call, then BasicTransformerBlock.call.
            transformer, block = self.transformer, self.transformer.transformer_block
            _, height, width, channels = x.shape
            h = transformer.proj1(transformer.norm(x))
            h = ops.reshape(h, (-1, height * width, channels))
            h = block.attn1(block.norm1(h), context=None) + h
            normed = block.norm2(h)
            from_first = block.attn2(normed, context=first)
            from_second = block.attn2(normed, context=second)
            h = (1 - alpha) * from_first + alpha * from_second + h
            h = block.dense(block.geglu(block.norm3(h))) + h
            h = ops.reshape(h, (-1, height, width, channels))
            return transformer.proj2(h) + x

        def compute_output_shape(self, input_shape):
            return input_shape[0]

    return OuterAttentionTransformer


def interpolate_cross_attention(model, sequence_length: int | None = None):
    """Returns the UNet with AID's outer cross-attention interpolation, sharing its variables.

    Every KerasCV `SpatialTransformer` of `model` is replaced, in a rewired
    copy of its graph, by an `OuterAttentionTransformer` that holds the
    original layer and computes
    `(1 − α)·Attn(Q, K₁, V₁) + α·Attn(Q, K₂, V₂)` in cross-attention (the
    self-attention, feed-forward and every other layer are the original's).
    The result keeps the UNet's three named inputs, so the Sampler calls it
    unchanged; its `context` input is the packed (2L + 1, D) context of
    `pack_contexts`: both endpoint encodings and α per batch row. α is data,
    not a traced constant, so frames at any α reuse one compiled step. With
    classifier-free guidance, pack the unconditional encoding with itself:
    `pack_contexts(u, u, 0.0)` is bit-for-bit the plain unconditional pass.

    Args:
        model: a functional UNet with inputs `latent`, `timestep_embedding`
            and `context` (B, L, D) whose context is consumed only by KerasCV
            `SpatialTransformer`s (KerasCV's `DiffusionModel`/`DiffusionModelV2`,
            the `tiny` and `shapes` UNets, or one of these rewired by
            `rewire_context_length`/`resize_component`).
        sequence_length: L, the length of each endpoint encoding; `None`
            (default) for the model's own context length. Any L >= 1 works
            (KerasCV's cross-attention reads it from the tensor), e.g. 154 for
            long prompts on a 77-token UNet.

    Returns:
        A `keras.Model` named like `model`, whose weights are `model`'s
        variables, mapping `latent` (B, h, w, 4), `timestep_embedding`
        (B, 320) and `context` (B, 2L + 1, D) to the noise prediction
        (B, h, w, 4). It compiles with `tf.function(jit_compile=True)` and
        follows the layers' dtype policy (α is cast to the compute dtype).
        It is built for running, not for `save()`.

    Raises:
        ValueError: when `model` has no `context` input, no KerasCV
            `SpatialTransformer`, a transformer that differs from KerasCV's,
            a layer other than those transformers reading the context, or for
            a bad `sequence_length`.

    Example:

    ```python
    unet = kerasmorph.models.interpolate_cross_attention(explorer.diffusion_model)
    packed = kerasmorph.models.pack_contexts(first, second, [0.25, 0.75])  # (2, 155, D)
    noise = unet({"latent": latent, "timestep_embedding": t, "context": packed})
    # noise: (2, h, w, 4); unet.weights[0] is explorer.diffusion_model.weights[0]
    ```
    """
    keras = keras_module()
    name = getattr(model, "name", type(model).__name__)
    if not isinstance(model, keras.Model) or isinstance(model, keras.Sequential):
        raise InputError(
            "interpolate_cross_attention needs a functional UNet with inputs `latent`, "
            f"`timestep_embedding` and `context`. Received: model {name!r} of type "
            f"{type(model).__name__}"
        )
    try:
        model_length = context_length(model)
    except AttributeError as error:  # A subclassed model that was never called.
        raise InputError(
            "interpolate_cross_attention needs a functional UNet with a `context` input. "
            f"Received: model {name!r} of type {type(model).__name__}"
        ) from error
    length = (
        model_length if sequence_length is None else check_count("sequence_length", sequence_length)
    )
    transformer_class, _, _ = _kerascv_classes()
    outer_class = _outer_attention_class()
    transformers = [layer for layer in model.layers if isinstance(layer, transformer_class)]
    if not transformers:
        already = any(isinstance(layer, outer_class) for layer in model.layers)
        raise InputError(
            f"interpolate_cross_attention needs a UNet with KerasCV SpatialTransformer "
            f"layers (cross-attention on `context`); model {name!r} has none"
            + (" (its cross-attention is interpolated already)." if already else ".")
            + f" Received: {len(model.layers)} layers"
        )
    for layer in transformers:
        _check_transformer(layer, name)

    inputs = []
    for tensor in model.inputs:
        shape = tuple(tensor.shape[1:])
        if tensor.name == "context":
            shape = (packed_length(length), shape[-1])
        inputs.append(keras.Input(shape, dtype=tensor.dtype, name=tensor.name))
    (packed,) = [tensor for tensor in inputs if tensor.name == "context"]

    def reads_context(value) -> bool:
        return any(item is packed for item in keras.tree.flatten(value))

    def call_function(layer, *args, **kwargs):
        if isinstance(layer, transformer_class):
            if (
                kwargs
                or len(args) != 1
                or not isinstance(args[0], (list, tuple))
                or len(args[0]) != 2
                or args[0][1] is not packed
            ):
                raise InputError(
                    f"interpolate_cross_attention needs every SpatialTransformer of the UNet "
                    f"called as layer([x, context]) on the model's `context` input; layer "
                    f"{layer.name!r} of model {name!r} is not. Received: {len(args)} "
                    f"positional and {sorted(kwargs)} keyword arguments"
                )
            return outer_class(layer, length)(args[0])
        if reads_context((args, kwargs)):
            raise InputError(
                f"interpolate_cross_attention needs the UNet's `context` to be read only by "
                f"KerasCV SpatialTransformers; layer {layer.name!r} "
                f"({type(layer).__name__}) of model {name!r} reads it too. "
                f"Received: model={name!r}"
            )
        return layer(*args, **kwargs)

    return keras.models.clone_model(
        model,
        input_tensors=inputs,
        clone_function=lambda layer: layer,
        call_function=call_function,
    )
