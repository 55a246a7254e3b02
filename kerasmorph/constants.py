"""Constants shared across kerasmorph's layers: one definition each.

Pure data (no imports of kerasmorph, numpy or TensorFlow), so every layer may
import it.
"""

from __future__ import annotations

from typing import Literal

# The CLIP text encoder's sequence length: start token, 75 BPE tokens, end token.
MAX_PROMPT_LENGTH = 77
# BPE tokens per chunk of a long prompt: each chunk gets its own start and end.
CHUNK_LENGTH = MAX_PROMPT_LENGTH - 2
START_TOKEN = 49406
END_TOKEN = 49407  # Also KerasCV's padding token, for sd1 and sd2 alike.
VOCAB_SIZE = 49408

# Diffusion training timesteps and the UNet's sinusoidal timestep-embedding width.
NUM_TRAIN_TIMESTEPS = 1000
TIME_EMBEDDING_DIM = 320

# The VAE downsamples 8x; the UNet halves the latent 3 more times.
LATENT_FACTOR = 8
LATENT_CHANNELS = 4

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
Precision = Literal["float32", "mixed_float16", "mixed_bfloat16", "bfloat16", "auto"]

# Images per batch when nothing else decides it.
DEFAULT_MAX_BATCH_SIZE = 4

# How a walk's text conditions the UNet: a lerped encoding, interpolated
# cross-attention outputs, or prompts switched along the denoising steps
# (`kerasmorph.MorphOptions`, `Walk.text_interpolation`).
TEXT_INTERPOLATIONS = ("embedding", "attention", "switch")
