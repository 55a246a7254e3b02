"""Building and rewiring Stable Diffusion components (layer L2).

- `build`: `build_component(preset, component, ...)` from `preset.architecture`,
  `dtype_policy_scope`, `WeightsLoadError`, `bundled_weights_dir`;
- `rewire`: the same layers on new inputs (`resize_component`,
  `rewire_context_length`, `context_length`);
- `attention`: AID's outer cross-attention interpolation
  (`interpolate_cross_attention`, `pack_contexts`, `unpack_contexts`);
- `tokenizer`: KerasCV's CLIP tokenizer on the bundled vocabulary;
- `kerascv`: building and reading `keras_cv.models.StableDiffusion`(V2);
- `textual_inversion`: growing the text encoder's vocabulary;
- `depth`: depth UNets (a 5-channel latent input) wrapped to store their depth map;
- `depth_estimator`: depth maps from pictures (KerasHub's DepthAnything, local presets);
- `tiny`: the `tiny` preset's seeded components.

Importing it is cheap: TensorFlow, Keras and KerasCV load when a model is built.
"""

from __future__ import annotations

from kerasmorph.models import depth, depth_estimator, tiny
from kerasmorph.models.attention import (
    interpolate_cross_attention,
    pack_contexts,
    unpack_contexts,
)
from kerasmorph.models.build import (
    BUILDERS,
    WeightsLoadError,
    build_component,
    bundled_weights_dir,
    dtype_policy_scope,
    get_builder,
)
from kerasmorph.models.kerascv import (
    attach_components,
    build_kerascv_model,
    kerascv_components,
    preset_of_kerascv,
)
from kerasmorph.models.rewire import context_length, resize_component, rewire_context_length
from kerasmorph.models.textual_inversion import (
    ExpandingTokenizer,
    TextualInversion,
    add_textual_inversion,
    encode_token_embeddings,
    grow_text_encoder,
    token_embedding_matrix,
)
from kerasmorph.models.tokenizer import bpe_vocabulary_path, build_tokenizer

__all__ = [
    "BUILDERS",
    "ExpandingTokenizer",
    "TextualInversion",
    "WeightsLoadError",
    "add_textual_inversion",
    "attach_components",
    "bpe_vocabulary_path",
    "build_component",
    "build_kerascv_model",
    "build_tokenizer",
    "bundled_weights_dir",
    "context_length",
    "dtype_policy_scope",
    "encode_token_embeddings",
    "get_builder",
    "grow_text_encoder",
    "interpolate_cross_attention",
    "kerascv_components",
    "pack_contexts",
    "preset_of_kerascv",
    "resize_component",
    "rewire_context_length",
    "depth",
    "depth_estimator",
    "tiny",
    "token_embedding_matrix",
    "unpack_contexts",
]
