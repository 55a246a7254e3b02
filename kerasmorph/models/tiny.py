"""The `tiny` preset: small, seeded, randomly initialised SD components.

Every component has the same inputs and outputs as its KerasCV counterpart
and is built from KerasCV's own layer classes (`CLIPEncoderLayer`, `ResBlock`,
`SpatialTransformer`, `ResnetBlock`, `AttentionBlock`, `PaddedConv2D`), only
narrower and shallower, so the whole pipeline runs in seconds on a CPU:

| component | KerasCV inputs -> outputs | tiny widths |
|---|---|---|
| text encoder | tokens, positions (N, 77) -> (N, 77, 64) | 2 layers of 64 |
| UNet | latent (N, h, w, 4), timestep (N, 320), context (N, 77, 64) -> (N, h, w, 4) | (1) |
| decoder | latent (N, h, w, 4) -> image (N, 8h, 8w, 3) | 64/32 channels |
| image encoder | image (N, 8h, 8w, 3) -> latent mean x 0.18215 (N, h, w, 4) | 32/64 channels |

(1) 32/64/64/64 channels, 3 downsamplings like SD, attention at 1/2 resolution
and in the middle.

Weights are drawn from a numpy generator seeded per component (Glorot
uniform kernels, zero biases, unit scales), so two builds with the same seed
are identical and the caller's global Keras/TensorFlow seeds are untouched.
The images are noise: the preset exercises shapes, dtypes and control flow.
"""

from __future__ import annotations

import numpy as np

from kerasmorph.backend import keras_module
from kerasmorph.constants import MAX_PROMPT_LENGTH, TIME_EMBEDDING_DIM, VOCAB_SIZE

TEXT_DIM = 64
DEFAULT_SEED = 0

# Offsets keep the four components' generators independent for one seed.
_COMPONENT_SEED_OFFSET = {
    "text_encoder": 0,
    "diffusion_model": 1,
    "decoder": 2,
    "image_encoder": 3,
}


def _layers():
    """Imports KerasCV's Stable Diffusion layer classes (TensorFlow needed)."""
    from kerasmorph.kerascv_internals import stable_diffusion_modules

    attention_block, diffusion_model, padded_conv2d, resnet_block, text_encoder = (
        stable_diffusion_modules(
            "attention_block", "diffusion_model", "padded_conv2d", "resnet_block", "text_encoder"
        )
    )

    return (
        text_encoder,
        diffusion_model,
        padded_conv2d.PaddedConv2D,
        resnet_block.ResnetBlock,
        attention_block.AttentionBlock,
    )


def reinitialize(model, seed: int) -> None:
    """Overwrites every weight of `model` deterministically from `seed`.

    Kernels (rank >= 2) get Glorot-uniform values computed like Keras does,
    embeddings U(-0.05, 0.05), `gamma` ones and biases/`beta` zeros. The
    variables are visited in `model.weights` order, which is fixed by the
    architecture, so equal architectures and seeds give equal weights.
    """
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape = tuple(variable.shape)
        name = variable.path.rsplit("/", 1)[-1]
        if name == "gamma":
            value = np.ones(shape)
        elif name in ("bias", "beta") or len(shape) < 2:
            value = np.zeros(shape)
        elif name == "embeddings":
            value = rng.uniform(-0.05, 0.05, shape)
        else:
            receptive_field = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
            fan_in = shape[-2] * receptive_field
            fan_out = shape[-1] * receptive_field
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            value = rng.uniform(-limit, limit, shape)
        variable.assign(value.astype(variable.dtype))


def build_text_encoder(seed: int = DEFAULT_SEED):
    """Builds the tiny CLIP text encoder: (tokens, positions) -> (N, 77, 64)."""
    keras = keras_module()
    text_encoder, *_ = _layers()
    tokens = keras.layers.Input((MAX_PROMPT_LENGTH,), dtype="int32", name="tokens")
    positions = keras.layers.Input((MAX_PROMPT_LENGTH,), dtype="int32", name="positions")
    x = text_encoder.CLIPEmbedding(VOCAB_SIZE, TEXT_DIM, MAX_PROMPT_LENGTH)([tokens, positions])
    for _ in range(2):
        x = text_encoder.CLIPEncoderLayer(TEXT_DIM, 2, activation=text_encoder.quick_gelu)(x)
    embedded = keras.layers.LayerNormalization(epsilon=1e-5)(x)
    model = keras.Model([tokens, positions], embedded, name="tiny_text_encoder")
    reinitialize(model, seed + _COMPONENT_SEED_OFFSET["text_encoder"])
    return model


def build_diffusion_model(img_height: int, img_width: int, seed: int = DEFAULT_SEED):
    """Builds the tiny UNet with KerasCV's inputs and 3 downsamplings.

    Args:
        img_height: image height in pixels (latent height x 8), a multiple of 64.
        img_width: image width in pixels, a multiple of 64.
        seed: weight seed.

    Returns:
        A `keras.Model` mapping `latent` (N, H/8, W/8, 4),
        `timestep_embedding` (N, 320) and `context` (N, 77, 64) to the
        predicted noise (N, H/8, W/8, 4).
    """
    keras = keras_module()
    _, unet, PaddedConv2D, *_ = _layers()
    ResBlock, SpatialTransformer = unet.ResBlock, unet.SpatialTransformer
    context = keras.layers.Input((MAX_PROMPT_LENGTH, TEXT_DIM), name="context")
    t_embed_input = keras.layers.Input((TIME_EMBEDDING_DIM,), name="timestep_embedding")
    latent = keras.layers.Input((img_height // 8, img_width // 8, 4), name="latent")

    t_emb = keras.layers.Dense(128)(t_embed_input)
    t_emb = keras.layers.Activation("swish")(t_emb)
    t_emb = keras.layers.Dense(128)(t_emb)

    skips = []
    x = PaddedConv2D(32, 3, padding=1)(latent)
    skips.append(x)
    # (channels, attention heads x head size or None) per resolution level.
    levels = [(32, None), (64, (2, 32)), (64, None), (64, None)]
    for index, (channels, attention) in enumerate(levels):
        x = ResBlock(channels)([x, t_emb])
        if attention:
            x = SpatialTransformer(*attention, fully_connected=False)([x, context])
        skips.append(x)
        if index < len(levels) - 1:
            x = PaddedConv2D(channels, 3, strides=2, padding=1)(x)
            skips.append(x)

    x = ResBlock(64)([x, t_emb])
    x = SpatialTransformer(2, 32, fully_connected=False)([x, context])
    x = ResBlock(64)([x, t_emb])

    for index, (channels, attention) in reversed(list(enumerate(levels))):
        for _ in range(2):
            x = keras.layers.Concatenate()([x, skips.pop()])
            x = ResBlock(channels)([x, t_emb])
            if attention:
                x = SpatialTransformer(*attention, fully_connected=False)([x, context])
        if index > 0:
            x = unet.Upsample(channels)(x)

    x = keras.layers.GroupNormalization(epsilon=1e-5)(x)
    x = keras.layers.Activation("swish")(x)
    output = PaddedConv2D(4, kernel_size=3, padding=1)(x)
    model = keras.Model([latent, t_embed_input, context], output, name="tiny_diffusion_model")
    reinitialize(model, seed + _COMPONENT_SEED_OFFSET["diffusion_model"])
    return model


def build_decoder(img_height: int, img_width: int, seed: int = DEFAULT_SEED):
    """Builds the tiny VAE decoder: (N, H/8, W/8, 4) -> (N, H, W, 3) in ~[-1, 1]."""
    keras = keras_module()
    _, _, PaddedConv2D, ResnetBlock, AttentionBlock = _layers()
    model = keras.Sequential(
        [
            keras.layers.Input((img_height // 8, img_width // 8, 4)),
            keras.layers.Rescaling(1.0 / 0.18215),
            PaddedConv2D(4, 1),
            PaddedConv2D(64, 3, padding=1),
            ResnetBlock(64),
            AttentionBlock(64),
            keras.layers.UpSampling2D(2),
            PaddedConv2D(64, 3, padding=1),
            ResnetBlock(32),
            keras.layers.UpSampling2D(2),
            PaddedConv2D(32, 3, padding=1),
            ResnetBlock(32),
            keras.layers.UpSampling2D(2),
            PaddedConv2D(32, 3, padding=1),
            ResnetBlock(32),
            keras.layers.GroupNormalization(epsilon=1e-5),
            keras.layers.Activation("swish"),
            PaddedConv2D(3, 3, padding=1),
        ],
        name="tiny_decoder",
    )
    reinitialize(model, seed + _COMPONENT_SEED_OFFSET["decoder"])
    return model


def build_image_encoder(seed: int = DEFAULT_SEED):
    """Builds the tiny VAE encoder: (N, H, W, 3) in [-1, 1] -> (N, H/8, W/8, 4)."""
    keras = keras_module()
    _, _, PaddedConv2D, ResnetBlock, AttentionBlock = _layers()
    model = keras.Sequential(
        [
            keras.layers.Input((None, None, 3)),
            PaddedConv2D(32, 3, padding=1),
            ResnetBlock(32),
            PaddedConv2D(32, 3, padding=((0, 1), (0, 1)), strides=2),
            ResnetBlock(64),
            PaddedConv2D(64, 3, padding=((0, 1), (0, 1)), strides=2),
            ResnetBlock(64),
            PaddedConv2D(64, 3, padding=((0, 1), (0, 1)), strides=2),
            ResnetBlock(64),
            AttentionBlock(64),
            keras.layers.GroupNormalization(epsilon=1e-5),
            keras.layers.Activation("swish"),
            PaddedConv2D(8, 3, padding=1),
            PaddedConv2D(8, 1),
            # The posterior mean, scaled as KerasCV's ImageEncoder does.
            keras.layers.Lambda(lambda x: x[..., :4] * 0.18215),
        ],
        name="tiny_image_encoder",
    )
    reinitialize(model, seed + _COMPONENT_SEED_OFFSET["image_encoder"])
    return model
