"""Token embeddings: textual inversion files and token-level interpolation.

Textual inversion learns new input vectors for the text encoder's token
embedding. This module reads them from the two common formats,

- A1111 `.pt` / `.safetensors`: `{"string_to_param": {"*": (n, D)}, "name": ...}`
  or `{"emb_params": (n, D)}`;
- diffusers `learned_embeds.bin` / `.safetensors`: `{"<token>": (D,) or (n, D)}`;

adds their tokens (lowercased: KerasCV's tokenizer lowercases every prompt) to
the tokenizer, and grows the text encoder's token embedding to hold them. An
n-vector embedding occupies n prompt positions: the token is written once and
expands to `token, token_1, ..., token_{n-1}` (diffusers' convention).

`token_walk` is the lecture's cat <-> kitten experiment: it interpolates the
*input* token embeddings of one word between two words, with the rest of the
prompt fixed, and encodes each mix, so the walk renders like any other.

Example:

```python
explorer = kerasmorph.Explorer("sd1")
explorer.add_text_embeddings("learned_embeds.safetensors")  # adds "<cat-toy>"
images = explorer.generate_image(explorer.encode_text("a <cat-toy> on a beach"))
walk = kerasmorph.embeddings.token_walk(explorer, "a photo of a {}", "cat", "kitten", 8)
```

References:
    Gal et al., "An Image is Worth One Word", ICLR 2023; the keras.io example
    "Teach StableDiffusion new concepts via Textual Inversion" (grows the
    vocabulary by rebuilding the text encoder).
"""

from __future__ import annotations

import numpy as np

from kerasmorph.models.textual_inversion import (
    ExpandingTokenizer,
    TextualInversion,
    add_textual_inversion,
    encode_token_embeddings,
    grow_text_encoder,
    load_textual_inversion,
    token_embedding_matrix,
)

# Reading the files and the text-encoder surgery live in
# `kerasmorph.models.textual_inversion`; their names are re-exported here.
__all__ = [
    "ExpandingTokenizer",
    "TextualInversion",
    "add_textual_inversion",
    "encode_token_embeddings",
    "grow_text_encoder",
    "load_textual_inversion",
    "token_embedding_matrix",
    "token_walk",
]


# ------------------------------------------------------- token interpolation


def token_walk(
    explorer,
    prompt: str,
    start_word: str,
    end_word: str,
    num_frames: int,
    *,
    schedule: str = "linear",
    seed: int = 0,
):
    """Interpolates one word's input token embedding, the prompt fixed around it.

    The prompt's `{}` is filled with `start_word` and with `end_word`; both
    must tokenize to the same number of tokens. Frame k mixes the two token
    embedding sequences with weight w_k (positions where they agree do not
    move) and runs the text encoder on the mix, so the change happens before
    the transformer, unlike `kerasmorph.walks.prompt_walk`, which mixes the
    encodings after it.

    Args:
        explorer: a `kerasmorph.Explorer`.
        prompt: text with one `{}` where the word goes.
        start_word: the word of the first frame, e.g. `"cat"`.
        end_word: the word of the last frame, e.g. `"kitten"`.
        num_frames: frames, >= 2.
        schedule: spacing of the weights (`kerasmorph.schedules`).
        seed: noise seed; every frame starts from `explorer.noise(1, seed)`.

    Returns:
        A `kerasmorph.walks.Walk`.

    Raises:
        ValueError: when the prompt has no single `{}`, or the two words'
            token counts differ.

    References:
        The cat <-> kitten token-embedding experiment of fast.ai's "Stable
        Diffusion deep dive" (Jonathan Whitaker).
    """
    from kerasmorph.schedules import schedule_weights
    from kerasmorph.walks import Walk

    if not isinstance(prompt, str) or prompt.count("{}") != 1:
        raise ValueError(f"`prompt` must contain exactly one '{{}}'. Received: prompt={prompt!r}")
    if not isinstance(num_frames, int) or isinstance(num_frames, bool) or num_frames < 2:
        raise ValueError(
            f"`num_frames` must be an integer >= 2. Received: num_frames={num_frames!r}"
        )
    start_tokens = explorer.tokenize(prompt.format(start_word))
    end_tokens = explorer.tokenize(prompt.format(end_word))
    start_count = len(explorer.tokenizer.encode(prompt.format(start_word)))
    end_count = len(explorer.tokenizer.encode(prompt.format(end_word)))
    if start_count != end_count:
        raise ValueError(
            f"{start_word!r} and {end_word!r} must have the same number of tokens in "
            f"the prompt; they give {start_count} and {end_count}. "
            f"Received: start_word={start_word!r}, end_word={end_word!r}"
        )
    matrix = token_embedding_matrix(explorer.text_encoder)
    start = matrix[np.asarray(start_tokens)]  # (77, D)
    end = matrix[np.asarray(end_tokens)]
    weights = schedule_weights(num_frames, schedule)
    noise = explorer.noise(1, seed)
    text_encoder = explorer.text_encoder

    def compute(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = weights[indices].astype(np.float32)[:, None, None]
        mixed = (1 - w) * start[None] + w * end[None]
        encodings = encode_token_embeddings(text_encoder, mixed)
        return encodings, np.repeat(noise, len(indices), axis=0)

    return Walk(num_frames, compute, np.linspace(0.0, 1.0, num_frames))
