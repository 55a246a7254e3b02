"""The `shapes` model: four components with KerasCV's inputs and outputs.

- text encoder: tokens, positions (N, 77) int32 -> (N, 77, 128). CLIP ids of a
  30-word vocabulary -> compact embedding table (+1 row for every other id),
  learned positions, 2 × `CLIPEncoderLayer` (4 heads), LayerNorm.
- UNet: latent (N, h, w, 4), timestep_embedding (N, 320), context (N, 77, 128)
  -> ε (N, h, w, 4). KerasCV `ResBlock`/`SpatialTransformer`/`Upsample`;
  32/64/128 channels at h, h/2, h/4; self- and cross-attention at h/2, h/4 and
  the middle.
- decoder: latent (N, h, w, 4) -> image (N, 8h, 8w, 3) in [-1, 1]; fixed, no
  weights (below).
- image encoder: image (N, H, W, 3) in [-1, 1] -> latent (N, H/8, W/8, 4);
  fixed, no weights (below).

**The latent (no VAE).** With `d = 1 − rgb` (rgb in [0, 1]; white → 0) and
the coverage `c = max(d)` (exact for the dataset's colours, which all have one
channel at 0), the latent is the 8×8 average of `(d_r, d_g, d_b, c)` times
`LATENT_SCALE = 3`. The scale plays the role of Stable Diffusion's 0.18215 and
follows KerasCV's convention: the image encoder returns the *scaled* latent,
the decoder divides by the scale first, and the UNet only ever sees scaled
latents (values in about [0, 3], white background exactly 0, so the mostly
white images sit where KerasCV's never-quite-pure noise schedule ends).

The decoder inverts that: it upsamples `d` and `c` bilinearly by 8, takes the
colour as `d / c` and lays it on white with opacity
`clip((c − 0.5)·DECODER_SHARPNESS + 0.5, 0, 1)`, which turns the blurred edge
of the 16×16 latent back into a ~5 px anti-aliased edge. Its output is in
[-1, 1] like KerasCV's decoder, so `Explorer.decode` maps it with
`(x + 1) / 2 · 255`.

The UNet halves the latent twice, so the latent side must be a multiple of 4
(images multiples of 32); the preset keeps kerasmorph's usual multiple of 64.
It was trained at 128×128 (latent 16×16). This module builds models; it does
no file I/O except `load_weights`/`save_weights` on paths it is given.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from kerasmorph.atomic import atomic_path
from kerasmorph.backend import keras_module
from kerasmorph.constants import MAX_PROMPT_LENGTH, TIME_EMBEDDING_DIM, VOCAB_SIZE

LATENT_SCALE = 3.0
DECODER_SHARPNESS = 3.0

# Word -> its id in CLIP's BPE vocabulary (KerasCV's SimpleTokenizer; each of
# these words is one token; tests check the ids against the tokenizer).
VOCABULARY: dict[str, int] = {
    "<|startoftext|>": 49406,
    "<|endoftext|>": 49407,
    "a": 320,
    "red": 736,
    "green": 1901,
    "blue": 1746,
    "yellow": 4481,
    "circle": 7117,
    "square": 3999,
    "triangle": 14615,
    "small": 2442,
    "large": 3638,
    "big": 1205,
    "in": 530,
    "the": 518,
    "top": 1253,
    "bottom": 5931,
    "left": 1823,
    "right": 1155,
    "center": 2119,
    "middle": 3694,
    "at": 536,
    "on": 525,
    "of": 539,
    "white": 1579,
    "background": 5994,
    "picture": 1674,
    "image": 2867,
}


@dataclasses.dataclass(frozen=True)
class ShapesConfig:
    """Widths of the `shapes` text encoder and UNet.

    Attributes:
        text_width: width D of the text encoding (the UNet's context width).
        text_layers: number of `CLIPEncoderLayer`s.
        text_heads: attention heads per text layer.
        channels: UNet channels at latent sizes h, h/2, h/4 (multiples of 32,
            GroupNormalization's group count).
        attention: self- + cross-attention at each of those levels.
        head_size: width of one UNet attention head.
        num_res_blocks: ResBlocks per level on the way down (the way up has one more).
        input_channels: channels of the UNet's `latent` input: 4, or 5 for a
            depth model (the latent and the depth map, as SD 2 depth's UNet).
    """

    text_width: int = 128
    text_layers: int = 2
    text_heads: int = 4
    channels: tuple[int, ...] = (32, 64, 128)
    attention: tuple[bool, ...] = (False, True, True)
    head_size: int = 32
    num_res_blocks: int = 1
    input_channels: int = 4


# A few-second configuration for structural tests.
TINY_CONFIG = ShapesConfig(
    text_width=32, text_layers=1, text_heads=2, channels=(32, 32, 32), head_size=16
)


def _keras_layers():
    from kerasmorph.kerascv_internals import stable_diffusion_modules

    text_encoder, diffusion_model, padded_conv2d = stable_diffusion_modules(
        "text_encoder", "diffusion_model", "padded_conv2d"
    )

    return text_encoder, diffusion_model, padded_conv2d.PaddedConv2D


def _layer_classes():
    """Defines the custom layers once Keras is importable (TensorFlow backend)."""
    keras = keras_module()
    ops = keras.ops

    class VocabularyEmbedding(keras.layers.Layer):
        """CLIP token ids -> rows of a small embedding table.

        The ids in `clip_ids` get rows 0..V−1; every other id shares row V
        (out of vocabulary). The id -> row map is a constant int32 gather
        table of `vocab_size` entries (49408, CLIP's vocabulary, unless
        textual inversion added tokens), not a weight, so only (V + 1) × D
        values ship.

        Input: int (N, L). Output: (N, L, output_dim).
        """

        def __init__(self, clip_ids, output_dim, vocab_size=VOCAB_SIZE, **kwargs):
            super().__init__(**kwargs)
            self.clip_ids = [int(i) for i in clip_ids]
            self.output_dim = int(output_dim)
            self.vocab_size = int(vocab_size)
            table = np.full(self.vocab_size, len(self.clip_ids), dtype=np.int32)
            table[self.clip_ids] = np.arange(len(self.clip_ids), dtype=np.int32)
            self._row_of_id = table
            self.embedding = keras.layers.Embedding(len(self.clip_ids) + 1, self.output_dim)

        @property
        def row_of_id(self) -> np.ndarray:
            """int32 (vocab_size,): the embedding row of each token id (a copy)."""
            return self._row_of_id.copy()

        def build(self, input_shape):
            self.embedding.build(input_shape)

        def call(self, tokens):
            tokens = ops.clip(ops.cast(tokens, "int32"), 0, self.vocab_size - 1)
            rows = ops.take(ops.convert_to_tensor(self._row_of_id), tokens, axis=0)
            return self.embedding(rows)

        def get_config(self):
            return {
                **super().get_config(),
                "clip_ids": self.clip_ids,
                "output_dim": self.output_dim,
                "vocab_size": self.vocab_size,
            }

    class PixelToLatent(keras.layers.Layer):
        """image [-1, 1] (N, H, W, 3) -> LATENT_SCALE × 8×8 mean of (1 − rgb, coverage)."""

        def call(self, images):
            rgb = ops.clip((ops.cast(images, "float32") + 1.0) / 2.0, 0.0, 1.0)
            darkness = 1.0 - rgb
            cover = ops.max(darkness, axis=-1, keepdims=True)
            pixels = ops.concatenate([darkness, cover], axis=-1)
            return ops.average_pool(pixels, 8, strides=8, padding="valid") * LATENT_SCALE

    class LatentToPixel(keras.layers.Layer):
        """latent (N, h, w, 4) -> image (N, 8h, 8w, 3) in [-1, 1] (see module docstring)."""

        def call(self, latents):
            latents = ops.cast(latents, "float32") / LATENT_SCALE
            height, width = latents.shape[1], latents.shape[2]
            upsampled = ops.image.resize(
                latents, (8 * height, 8 * width), interpolation="bilinear", antialias=False
            )
            darkness = ops.clip(upsampled[..., :3], 0.0, 1.0)
            cover = upsampled[..., 3:]
            colour = ops.clip(darkness / ops.maximum(cover, 0.05), 0.0, 1.0)
            opacity = ops.clip((cover - 0.5) * DECODER_SHARPNESS + 0.5, 0.0, 1.0)
            rgb = 1.0 - colour * opacity
            return rgb * 2.0 - 1.0

    return VocabularyEmbedding, PixelToLatent, LatentToPixel


def build_text_encoder(config: ShapesConfig = ShapesConfig()):
    """Builds the text encoder: `tokens`, `positions` (N, 77) int32 -> (N, 77, D)."""
    keras = keras_module()
    text_encoder, _, _ = _keras_layers()
    VocabularyEmbedding, _, _ = _layer_classes()
    tokens = keras.layers.Input((MAX_PROMPT_LENGTH,), dtype="int32", name="tokens")
    positions = keras.layers.Input((MAX_PROMPT_LENGTH,), dtype="int32", name="positions")
    x = VocabularyEmbedding(list(VOCABULARY.values()), config.text_width)(tokens)
    x = x + keras.layers.Embedding(MAX_PROMPT_LENGTH, config.text_width)(positions)
    for _ in range(config.text_layers):
        x = text_encoder.CLIPEncoderLayer(
            config.text_width, config.text_heads, activation=text_encoder.quick_gelu
        )(x)
    embedded = keras.layers.LayerNormalization(epsilon=1e-5)(x)
    return keras.Model([tokens, positions], embedded, name="shapes_text_encoder")


def build_diffusion_model(img_height: int, img_width: int, config: ShapesConfig = ShapesConfig()):
    """Builds the UNet with KerasCV's inputs.

    Args:
        img_height: image height in pixels (latent height × 8), a multiple of 32.
        img_width: image width in pixels, a multiple of 32.
        config: widths.

    Returns:
        A `keras.Model` mapping `latent` (N, H/8, W/8, 4), `timestep_embedding`
        (N, 320) and `context` (N, 77, D) to the predicted noise (N, H/8, W/8, 4).
    """
    keras = keras_module()
    _, unet, PaddedConv2D = _keras_layers()
    ResBlock, SpatialTransformer = unet.ResBlock, unet.SpatialTransformer
    num_levels = len(config.channels)
    if img_height % (8 * 2 ** (num_levels - 1)) or img_width % (8 * 2 ** (num_levels - 1)):
        raise ValueError(
            f"The shapes UNet halves the latent {num_levels - 1} times, so image sides "
            f"must be multiples of {8 * 2 ** (num_levels - 1)}. "
            f"Received: img_height={img_height}, img_width={img_width}"
        )
    context = keras.layers.Input((MAX_PROMPT_LENGTH, config.text_width), name="context")
    t_embed_input = keras.layers.Input((TIME_EMBEDDING_DIM,), name="timestep_embedding")
    latent = keras.layers.Input(
        (img_height // 8, img_width // 8, config.input_channels), name="latent"
    )

    time_width = 4 * config.channels[0]
    t_emb = keras.layers.Dense(time_width)(t_embed_input)
    t_emb = keras.layers.Activation("swish")(t_emb)
    t_emb = keras.layers.Dense(time_width)(t_emb)

    def transformer(channels):
        return SpatialTransformer(channels // config.head_size, config.head_size)

    x = PaddedConv2D(config.channels[0], 3, padding=1)(latent)
    skips = [x]
    for level, (channels, attention) in enumerate(zip(config.channels, config.attention)):
        for _ in range(config.num_res_blocks):
            x = ResBlock(channels)([x, t_emb])
            if attention:
                x = transformer(channels)([x, context])
            skips.append(x)
        if level < num_levels - 1:
            x = PaddedConv2D(channels, 3, strides=2, padding=1)(x)
            skips.append(x)

    middle = config.channels[-1]
    x = ResBlock(middle)([x, t_emb])
    x = transformer(middle)([x, context])
    x = ResBlock(middle)([x, t_emb])

    for level in reversed(range(num_levels)):
        channels, attention = config.channels[level], config.attention[level]
        for _ in range(config.num_res_blocks + 1):
            x = keras.layers.Concatenate()([x, skips.pop()])
            x = ResBlock(channels)([x, t_emb])
            if attention:
                x = transformer(channels)([x, context])
        if level > 0:
            x = unet.Upsample(channels)(x)

    x = keras.layers.GroupNormalization(epsilon=1e-5)(x)
    x = keras.layers.Activation("swish")(x)
    output = PaddedConv2D(4, kernel_size=3, padding=1)(x)
    return keras.Model([latent, t_embed_input, context], output, name="shapes_diffusion_model")


def build_decoder(img_height: int, img_width: int):
    """Builds the fixed decoder: latent (N, H/8, W/8, 4) -> image (N, H, W, 3) in [-1, 1]."""
    keras = keras_module()
    _, _, LatentToPixel = _layer_classes()
    latent = keras.layers.Input((img_height // 8, img_width // 8, 4))
    return keras.Model(latent, LatentToPixel()(latent), name="shapes_decoder")


def build_image_encoder():
    """Builds the fixed encoder: image (N, H, W, 3) in [-1, 1] -> scaled latent (N, H/8, W/8, 4)."""
    keras = keras_module()
    _, PixelToLatent, _ = _layer_classes()
    image = keras.layers.Input((None, None, 3))
    return keras.Model(image, PixelToLatent()(image), name="shapes_image_encoder")


def encode_images(images: np.ndarray) -> np.ndarray:
    """The image encoder in numpy: uint8 (N, H, W, 3) -> float32 scaled latents (N, H/8, W/8, 4)."""
    darkness = 1.0 - np.asarray(images, dtype=np.float32) / 255.0
    pixels = np.concatenate([darkness, darkness.max(-1, keepdims=True)], axis=-1)
    n, h, w, _ = pixels.shape
    pooled = pixels.reshape(n, h // 8, 8, w // 8, 8, 4).mean((2, 4))
    return (pooled * LATENT_SCALE).astype(np.float32)


# ------------------------------------------------------------------ weight files


def save_weights(model, path: str | os.PathLike) -> None:
    """Writes a model's weights as float16 `.npz` (keys `NNN:<variable path>`), atomically."""
    path = os.fspath(path)
    arrays = {
        f"{index:03d}:{variable.path}": np.asarray(variable.numpy(), dtype=np.float16)
        for index, variable in enumerate(model.weights)
    }
    with atomic_path(path, mode=0o644) as temporary, open(temporary, "wb") as file:
        np.savez(file, **arrays)


def load_weights(model, path: str | os.PathLike) -> None:
    """Loads a file written by `save_weights` into a model of the same architecture.

    Raises:
        ValueError: when the number or shapes of the weights differ.
    """
    with np.load(os.fspath(path)) as file:
        arrays = [file[key] for key in sorted(file.files)]
    if len(arrays) != len(model.weights):
        raise ValueError(
            f"{path} holds {len(arrays)} weight arrays but {model.name} has "
            f"{len(model.weights)}. Received: path={os.fspath(path)!r}"
        )
    for variable, array in zip(model.weights, arrays):
        if tuple(variable.shape) != array.shape:
            raise ValueError(
                f"Weight {variable.path} of {model.name} has shape {tuple(variable.shape)}, "
                f"the file has {array.shape}. Received: path={os.fspath(path)!r}"
            )
        variable.assign(array.astype(variable.dtype))
