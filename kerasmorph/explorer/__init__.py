"""The Explorer package: KerasCV's Stable Diffusion behind one facade.

| module | job |
|---|---|
| `explorer` | `Explorer`, the facade: every public method, delegating |
| `components` | `ComponentStore`: built components, compiled functions, one `invalidate()` |
| `text` | `PromptEncoder`: tokenize, encode, long prompts, unconditional contexts, padding |
| `batching` | one fixed-shape batching helper for every batched loop |
| `tasks` | img2img, inpainting, inversion as compositions of the Explorer's steps |
| `walk` | `Walk`: the inputs of every frame of a render, computed batch by batch |
| `checks` | validation of encodings and noise; `NonFiniteOutputError` |
| `kerascv_api` | KerasCV drop-in: positional arguments, dtype policy, seeds, private attributes |

It imports the layers below it (numpy math, weights, devices, presets,
models, schedulers, the sampler) and never the workflows built on it (walks,
sweeps, renders, adaptive, embeddings), checkpoints, the CLI or bench.
"""

from kerasmorph._checks import check_sequence_length, nearest_valid_sizes, validate_image_size
from kerasmorph.constants import (
    CHUNK_LENGTH,
    DEFAULT_MAX_BATCH_SIZE,
    END_TOKEN,
    MAX_PROMPT_LENGTH,
    START_TOKEN,
    Precision,
)
from kerasmorph.explorer.checks import NonFiniteOutputError
from kerasmorph.explorer.explorer import Explorer
from kerasmorph.explorer.tasks import InpaintResult
from kerasmorph.explorer.text import chunk_tokens
from kerasmorph.explorer.walk import Walk, as_walk

__all__ = [
    "CHUNK_LENGTH",
    "DEFAULT_MAX_BATCH_SIZE",
    "END_TOKEN",
    "MAX_PROMPT_LENGTH",
    "START_TOKEN",
    "Explorer",
    "InpaintResult",
    "NonFiniteOutputError",
    "Precision",
    "Walk",
    "as_walk",
    "check_sequence_length",
    "chunk_tokens",
    "nearest_valid_sizes",
    "validate_image_size",
]
