"""Textual-inversion surgery: new token vectors in KerasCV's tokenizer and text encoder.

Textual inversion learns new input vectors for the text encoder's token
embedding. `add_textual_inversion` adds their tokens (lowercased: KerasCV's
tokenizer lowercases every prompt) to the tokenizer and grows the text
encoder's token embedding to hold them (`grow_text_encoder`). An n-vector
embedding occupies n prompt positions: the token is written once and expands
to `token, token_1, ..., token_{n-1}` (diffusers' convention,
`ExpandingTokenizer`). `encode_token_embeddings` runs the text encoder from
input token embeddings instead of ids (`kerasmorph.embeddings.token_walk`);
`split_text_encoder` gives the two halves (the token lookup, and the rest
from token embeddings to the encoding) as tensor functions, for training new
vectors (`kerasmorph.training`).

Two token lookups are understood: KerasCV's `CLIPEmbedding` (`sd1`, `sd2`,
converted folders, `tiny`) and the `shapes` model's `VocabularyEmbedding` (a
small table of rows for its 30 words, one shared row for every other id).

`load_textual_inversion` reads the two common file formats:

- A1111 `.pt` / `.safetensors`: `{"string_to_param": {"*": (n, D)}, "name": ...}`
  or `{"emb_params": (n, D)}`;
- diffusers `learned_embeds.bin` / `.safetensors`: `{"<token>": (D,) or (n, D)}`.

References:
    Gal et al., "An Image is Worth One Word", ICLR 2023; the keras.io example
    "Teach StableDiffusion new concepts via Textual Inversion" (grows the
    vocabulary by rebuilding the text encoder).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kerasmorph.atomic import atomic_path
from kerasmorph.backend import keras_module
from kerasmorph.errors import FileFormatError
from kerasmorph.weights import load_torch_file, save_torch_file


@dataclasses.dataclass(frozen=True)
class TextualInversion:
    """One learned token and its input vectors.

    Attributes:
        token: the token as written in prompts, lowercased (e.g. `"<cat-toy>"`).
        vectors: float32 (n, D): n prompt positions, D the text width (768 for
            SD 1.x, 1024 for SD 2.x).
    """

    token: str
    vectors: np.ndarray

    @property
    def tokens(self) -> list[str]:
        """The n vocabulary entries: `token`, then `token_1` ... `token_{n-1}`."""
        return [self.token] + [f"{self.token}_{index}" for index in range(1, len(self.vectors))]


def _chain(text_encoder):
    """(CLIPEmbedding, layers after it) of a KerasCV-style text encoder."""
    input_layer = keras_module().layers.InputLayer
    from kerasmorph.kerascv_internals import stable_diffusion_name

    CLIPEmbedding = stable_diffusion_name("text_encoder", "CLIPEmbedding")

    layers = [layer for layer in text_encoder.layers if not isinstance(layer, input_layer)]
    if not layers or not isinstance(layers[0], CLIPEmbedding):
        raise ValueError(
            "Expected a KerasCV text encoder (CLIPEmbedding then encoder layers). "
            f"Received: {type(text_encoder).__name__}"
        )
    return layers[0], layers[1:]


def _is_vocabulary_embedding(layer) -> bool:
    """Whether `layer` is the `shapes` model's `VocabularyEmbedding` (duck-typed)."""
    return all(
        hasattr(layer, name) for name in ("clip_ids", "row_of_id", "vocab_size", "embedding")
    )


@dataclasses.dataclass(frozen=True)
class TextEncoderParts:
    """A KerasCV-style text encoder split at its token lookup.

    `encode(lookup(tokens), positions)` is what the text encoder computes;
    training new token vectors swaps rows of `lookup`'s output for trainable
    ones in between (`kerasmorph.training`).

    Attributes:
        lookup: the token lookup layer: int32 ids (N, L) -> (N, L, D) in its
            compute dtype (KerasCV's `token_embedding`, or the `shapes`
            `VocabularyEmbedding`).
        position_embedding: the layer giving (N, L, D) from int32 positions (N, L).
        layers: every layer after the embedding (encoder layers, final LayerNorm).
        vocab_size: how many token ids the lookup knows.
        width: D.
        kind: `"clip"` (`CLIPEmbedding`) or `"vocabulary"` (`shapes`).
    """

    lookup: Any
    position_embedding: Any
    layers: tuple
    vocab_size: int
    width: int
    kind: str

    @property
    def compute_dtype(self) -> str:
        """The dtype the token embeddings are added to the position embeddings in."""
        return self.position_embedding.compute_dtype

    def encode(self, token_embeddings, positions):
        """Position embeddings added, then every later layer: tensors (N, L, D) -> (N, L, D).

        Differentiable (plain layer calls), so usable under a `tf.GradientTape`.
        """
        import tensorflow as tf

        x = tf.cast(token_embeddings, self.compute_dtype)
        x = x + self.position_embedding(positions)
        for layer in self.layers:
            x = layer(x)
        return x


def split_text_encoder(text_encoder) -> TextEncoderParts:
    """Splits a text encoder into its token lookup and the rest (see `TextEncoderParts`).

    Args:
        text_encoder: a KerasCV-style text encoder ((tokens, positions) -> (N, L, D)):
            KerasCV's `TextEncoder`/`TextEncoderV2`, the `tiny` or the `shapes` one.

    Returns:
        A `TextEncoderParts`.

    Raises:
        ValueError: for another architecture.
    """
    keras = keras_module()
    layers = [
        layer for layer in text_encoder.layers if not isinstance(layer, keras.layers.InputLayer)
    ]
    first = layers[0] if layers else None
    if _is_vocabulary_embedding(first) and isinstance(layers[1], keras.layers.Embedding):
        return TextEncoderParts(
            lookup=first,
            position_embedding=layers[1],
            layers=tuple(layers[2:]),
            vocab_size=int(first.vocab_size),
            width=int(first.output_dim),
            kind="vocabulary",
        )
    embedding, rest = _chain(text_encoder)
    vocab_size, width = (int(n) for n in embedding.token_embedding.embeddings.shape)
    return TextEncoderParts(
        lookup=embedding.token_embedding,
        position_embedding=embedding.position_embedding,
        layers=tuple(rest),
        vocab_size=vocab_size,
        width=width,
        kind="clip",
    )


def token_embedding_matrix(text_encoder) -> np.ndarray:
    """The text encoder's input token embedding, float32 (vocab_size, D): row i is id i's.

    For the `shapes` model every id outside its 30 words gets the one shared row.
    """
    parts = split_text_encoder(text_encoder)
    if parts.kind == "vocabulary":
        rows = np.asarray(parts.lookup.embedding.embeddings.numpy(), dtype=np.float32)
        return rows[parts.lookup.row_of_id]
    return np.asarray(parts.lookup.embeddings.numpy(), dtype=np.float32)


def grow_text_encoder(text_encoder, vectors: np.ndarray):
    """Returns a text encoder whose vocabulary has `vectors` appended.

    As the keras.io textual-inversion example does, the token embedding is
    rebuilt larger (old rows, then the new ones) and every other weight is
    kept: here the encoder layers are reused as they are, which works for
    `TextEncoder`, `TextEncoderV2`, the `tiny` preset's encoder and the
    `shapes` encoder (whose new ids get rows of their own) alike.

    Args:
        text_encoder: a built KerasCV-style text encoder
            ((tokens, positions) -> (N, L, D)).
        vectors: float32 (n, D) new rows.

    Returns:
        A new `keras.Model` with the same inputs and a vocabulary n larger;
        new token ids start at the old vocabulary size.

    Raises:
        ValueError: when D differs from the encoder's width.
    """
    keras = keras_module()
    from kerasmorph.kerascv_internals import stable_diffusion_name

    CLIPEmbedding = stable_diffusion_name("text_encoder", "CLIPEmbedding")

    parts = split_text_encoder(text_encoder)
    vocab_size, width = parts.vocab_size, parts.width
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != width:
        family = {768: " (an SD 1.x embedding?)", 1024: " (an SD 2.x embedding?)"}.get(
            vectors.shape[-1], ""
        )
        raise ValueError(
            f"The embedding's vectors are {vectors.shape[-1]} wide{family}, but this "
            f"text encoder's tokens are {width} wide. Received: vectors.shape={vectors.shape}"
        )
    max_length = int(parts.position_embedding.embeddings.shape[0])
    tokens = keras.layers.Input((max_length,), dtype="int32", name="tokens")
    positions = keras.layers.Input((max_length,), dtype="int32", name="positions")
    if parts.kind == "vocabulary":
        return _grow_vocabulary_encoder(text_encoder, parts, vectors, tokens, positions)
    embedding, rest = _chain(text_encoder)
    old = embedding.token_embedding.embeddings
    grown = CLIPEmbedding(
        vocab_size + len(vectors), width, max_length, dtype=embedding.dtype_policy
    )
    x = grown([tokens, positions])
    for layer in rest:
        x = layer(x)
    model = keras.Model([tokens, positions], x, name=text_encoder.name)
    matrix = np.concatenate([np.asarray(old.numpy(), dtype=np.float32), vectors])
    grown.token_embedding.embeddings.assign(matrix.astype(grown.token_embedding.embeddings.dtype))
    grown.position_embedding.embeddings.assign(embedding.position_embedding.embeddings.numpy())
    return model


def _grow_vocabulary_encoder(text_encoder, parts: TextEncoderParts, vectors, tokens, positions):
    """`grow_text_encoder` for the `shapes` encoder: the new ids get rows of their own.

    The rows are the old word rows, then `vectors`, then the shared
    out-of-vocabulary row, which stays last; the position embedding and the
    encoder layers are reused as they are.
    """
    keras = keras_module()
    old = parts.lookup
    first_id = parts.vocab_size
    config = {key: value for key, value in old.get_config().items() if key != "name"}
    config["clip_ids"] = list(old.clip_ids) + list(range(first_id, first_id + len(vectors)))
    config["vocab_size"] = first_id + len(vectors)
    grown = type(old).from_config(config)
    x = grown(tokens) + parts.position_embedding(positions)
    for layer in parts.layers:
        x = layer(x)
    model = keras.Model([tokens, positions], x, name=text_encoder.name)
    rows = np.asarray(old.embedding.embeddings.numpy(), dtype=np.float32)
    matrix = np.concatenate([rows[:-1], vectors, rows[-1:]])
    grown.embedding.embeddings.assign(matrix.astype(grown.embedding.embeddings.dtype))
    return model


def token_rows(text_encoder, token_ids: Sequence[int]) -> np.ndarray:
    """Where token ids' vectors are stored: int (n,) rows of the lookup's table.

    The id itself for KerasCV's `CLIPEmbedding`; the `shapes` lookup maps ids
    to rows of its small table.
    """
    parts = split_text_encoder(text_encoder)
    ids = np.asarray(token_ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= parts.vocab_size):
        raise ValueError(
            f"Token ids must be in [0, {parts.vocab_size}). Received: token_ids={ids.tolist()}"
        )
    return parts.lookup.row_of_id[ids] if parts.kind == "vocabulary" else ids


def set_token_vectors(text_encoder, token_ids: Sequence[int], vectors: np.ndarray) -> None:
    """Overwrites the input vectors of `token_ids` in place; every other row is kept.

    Args:
        text_encoder: a KerasCV-style text encoder.
        token_ids: n ids, each with a row of its own (ids added by
            `add_textual_inversion`; not the `shapes` model's shared
            out-of-vocabulary row).
        vectors: float (n, D).
    """
    parts = split_text_encoder(text_encoder)
    rows = token_rows(text_encoder, token_ids)
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.shape != (len(rows), parts.width):
        raise ValueError(
            f"Expected vectors of shape ({len(rows)}, {parts.width}). "
            f"Received: vectors.shape={vectors.shape}"
        )
    table = parts.lookup.embedding if parts.kind == "vocabulary" else parts.lookup
    variable = table.embeddings
    matrix = np.array(variable.numpy())
    matrix[rows] = vectors.astype(matrix.dtype)
    variable.assign(matrix)


def added_token_ids(tokenizer, token: str) -> list[int]:
    """The n ids an added token expands to (`token`, `token_1`, ...).

    Raises:
        ValueError: when `token` was not added by textual inversion.
    """
    token = check_token(token)
    base = getattr(tokenizer, "tokenizer", tokenizer)
    expansions = getattr(tokenizer, "expansions", {})
    token_id = base.encoder.get(token)
    if token_id is None or token_id not in expansions:
        raise ValueError(
            f"{token!r} is not a token added by textual inversion; add it first "
            f"(Explorer.add_token_vectors or add_text_embeddings). Received: token={token!r}"
        )
    return list(expansions[token_id])


class ExpandingTokenizer:
    """KerasCV's `SimpleTokenizer`, with multi-vector tokens expanded.

    `encode` writes an n-vector token's n ids where the prompt has the token
    once. Everything else is delegated to the wrapped tokenizer.

    Args:
        tokenizer: a `SimpleTokenizer` (its vocabulary is extended in place).
    """

    def __init__(self, tokenizer):
        self.tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
        self.expansions: dict[int, list[int]] = dict(getattr(tokenizer, "expansions", {}))

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`: start, BPE tokens (expanded), end."""
        ids = []
        for token_id in self.tokenizer.encode(text):
            ids.extend(self.expansions.get(token_id, [token_id]))
        return ids


def add_textual_inversion(
    tokenizer, text_encoder, embeddings: Sequence[TextualInversion]
) -> tuple[ExpandingTokenizer, Any]:
    """Adds embeddings to a tokenizer and a text encoder.

    Args:
        tokenizer: KerasCV's `SimpleTokenizer` (or an `ExpandingTokenizer`).
        text_encoder: the text encoder the tokenizer feeds.
        embeddings: `TextualInversion`s from `load_textual_inversion`.

    Returns:
        `(tokenizer, text_encoder)`: the tokenizer wrapped to expand
        multi-vector tokens, and the grown text encoder.

    Raises:
        ValueError: when a token is already in the vocabulary, or the vectors'
            width does not match the text encoder (768 vs 1024).
    """
    wrapped = ExpandingTokenizer(tokenizer)
    base = wrapped.tokenizer
    new_tokens, rows = [], []
    for embedding in embeddings:
        for token in embedding.tokens:
            if token in base.encoder or token in new_tokens:
                raise ValueError(
                    f"The token {token!r} is already in the vocabulary; load the "
                    f"embedding under another name (token=...). Received: token={token!r}"
                )
            new_tokens.append(token)
        rows.append(embedding.vectors)
    if not new_tokens:
        return wrapped, text_encoder
    first_id = int(token_embedding_matrix(text_encoder).shape[0])
    grown = grow_text_encoder(text_encoder, np.concatenate(rows))  # Checks the width first.
    if len(base.vocab) != first_id:
        raise ValueError(
            f"The tokenizer has {len(base.vocab)} entries but the text encoder's "
            f"embedding has {first_id} rows; they must grow together. "
            f"Received: vocab size {len(base.vocab)}"
        )
    # Longest first: the tokenizer's pattern tries special tokens in insertion
    # order, so `tok_1` must come before `tok` or it would match as `tok` + `_1`.
    base.add_tokens(sorted(new_tokens, key=len, reverse=True))
    ids = {token: first_id + index for index, token in enumerate(new_tokens)}
    base.encoder.update(ids)
    base.decoder = {value: key for key, value in base.encoder.items()}
    base.vocab = sorted(base.encoder, key=base.encoder.get)
    for embedding in embeddings:
        token_ids = [ids[token] for token in embedding.tokens]
        wrapped.expansions[token_ids[0]] = token_ids
    return wrapped, grown


def encode_token_embeddings(text_encoder, token_embeddings: np.ndarray) -> np.ndarray:
    """Runs the text encoder from input token embeddings instead of ids.

    Args:
        text_encoder: a KerasCV-style text encoder.
        token_embeddings: float32 (N, L, D), what the token lookup would give.

    Returns:
        float32 (N, L, D) encodings: position embeddings added, then every
        encoder layer and the final LayerNorm, as `text_encoder` computes them.
    """
    import tensorflow as tf

    parts = split_text_encoder(text_encoder)
    token_embeddings = np.asarray(token_embeddings, dtype=np.float32)
    length = token_embeddings.shape[1]
    positions = np.arange(length, dtype=np.int32)[None]
    x = parts.encode(tf.constant(token_embeddings), tf.constant(positions))
    return tf.cast(x, tf.float32).numpy()


# ------------------------------------------------------------- reading files


def check_token(token: str) -> str:
    """The token lowercased, or a ValueError when it is empty or has spaces."""
    if not isinstance(token, str) or not token.strip() or any(c.isspace() for c in token):
        raise ValueError(
            f"A token must be a non-empty string without spaces. Received: token={token!r}"
        )
    return token.lower()


def _as_vectors(value: Any, where: str, path: Path) -> np.ndarray:
    if hasattr(value, "detach"):  # A torch tensor (no torch import needed to convert it).
        value = value.detach().float().cpu().numpy()
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise FileFormatError(
            path, f"{where} is not an array of numbers. Received: {type(value).__name__}"
        ) from None
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[0] < 1:
        raise FileFormatError(
            path,
            f"an embedding must be a vector (D,) or vectors (n, D). "
            f"Received: {where} of shape {array.shape}",
        )
    if not np.isfinite(array).all():
        count = int(array.size - np.count_nonzero(np.isfinite(array)))
        raise FileFormatError(
            path,
            f"the embedding {where} has {count} NaN/Inf values of {array.size}; "
            "it would make every image it is used in NaN",
        )
    return array


def _read_file(path: Path) -> dict[str, Any]:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            return dict(load_file(str(path)))
        except SafetensorError as error:  # A truncated file, garbage bytes, a bad header.
            raise FileFormatError(
                path, f"not a readable safetensors embedding file ({error})"
            ) from None
    if path.suffix in (".pt", ".bin", ".ckpt", ".pth"):
        return dict(load_torch_file(path))
    raise ValueError(
        f"An embedding file must end in .safetensors, .pt or .bin. Received: path={str(path)!r}"
    )


def load_textual_inversion(
    path: str | os.PathLike, token: str | None = None
) -> list[TextualInversion]:
    """Reads a textual-inversion file (A1111 or diffusers format).

    Args:
        path: a `.pt`, `.bin` or `.safetensors` file.
        token: the prompt token to use. Default: the file's own token for
            diffusers files, the file name without suffix for A1111 files
            (A1111's trigger word), e.g. `"my-style"` for `my-style.pt`.
            Always lowercased.

    Returns:
        A list of `TextualInversion` (usually one).

    Raises:
        FileNotFoundError: when `path` is not a file.
        FileFormatError: (a `ValueError`) naming the file, for a file that is
            not readable as its suffix says (garbage bytes, a truncated or
            malformed safetensors file), or vectors that are not (D,) or
            (n, D), or not finite.
        ValueError: for an unknown layout or a bad token.
        ImportError: for a `.pt`/`.bin` file when torch is not installed.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"No embedding file at {path}. Received: path={str(path)!r}")
    content = _read_file(path)
    if "string_to_param" in content:  # A1111 .pt
        params = dict(content["string_to_param"])
        if len(params) != 1:
            raise ValueError(
                f"Expected one embedding in string_to_param of {path}. "
                f"Received: keys {sorted(params)}"
            )
        vectors = _as_vectors(next(iter(params.values())), "string_to_param", path)
        return [TextualInversion(check_token(token or path.stem), vectors)]
    if "emb_params" in content:  # A1111 .safetensors
        return [
            TextualInversion(
                check_token(token or path.stem),
                _as_vectors(content["emb_params"], "emb_params", path),
            )
        ]
    if any(key.startswith("clip_") for key in content):
        raise ValueError(
            f"{path} is an SDXL embedding ({', '.join(sorted(content))}); kerasmorph "
            "loads SD 1.x/2.x embeddings only."
        )
    entries = {key: value for key, value in content.items() if hasattr(value, "shape")}
    if not entries:
        raise ValueError(f"{path} holds no embedding tensors. Received: keys {sorted(content)}")
    if token is not None and len(entries) != 1:
        raise ValueError(
            f"`token` renames a single embedding; {path} holds {len(entries)}. "
            f"Received: token={token!r}"
        )
    return [
        TextualInversion(check_token(token or key), _as_vectors(value, key, path))
        for key, value in entries.items()
    ]


# ------------------------------------------------------------- writing files

# What `save_textual_inversion` writes, by suffix.
SAVE_FORMATS = {
    ".safetensors": "diffusers learned_embeds.safetensors: {token: float32 (n, D)}",
    ".bin": "diffusers learned_embeds.bin (torch): {token: float32 (n, D)}",
    ".pt": "A1111 embedding (torch): string_to_param {'*': (n, D)}, name, step",
}


def save_textual_inversion(
    path: str | os.PathLike, embedding: TextualInversion, *, step: int | None = None
) -> Path:
    """Writes one learned token atomically, in the format its suffix names.

    `.safetensors` and `.bin` are diffusers' `learned_embeds` layout
    (`{token: (n, D)}`, what `textual_inversion.py` writes); `.pt` is
    AUTOMATIC1111's (`string_to_param`, `string_to_token`, `name`, `step`),
    whose trigger word is the file name. Both load back with
    `load_textual_inversion` (`Explorer.add_text_embeddings`, `--embedding`).

    Args:
        path: the file to write (`.safetensors`, `.bin` or `.pt`).
        embedding: the token and its float32 (n, D) vectors.
        step: the training step, recorded in A1111 files.

    Returns:
        The path written.

    Raises:
        ValueError: for another suffix.
        ImportError: for `.bin`/`.pt` when torch is not installed.
    """
    path = Path(path).expanduser()
    if path.suffix not in SAVE_FORMATS:
        accepted = "; ".join(f"{suffix} ({what})" for suffix, what in SAVE_FORMATS.items())
        raise ValueError(f"Unknown embedding format. Accepted: {accepted}. Received: {path.name!r}")
    vectors = np.ascontiguousarray(embedding.vectors, dtype=np.float32)
    if path.suffix == ".safetensors":
        from safetensors.numpy import save_file

        with atomic_path(path, mode=0o644) as temporary:
            save_file({embedding.token: vectors}, str(temporary), metadata={"format": "pt"})
        return path
    if path.suffix == ".bin":
        content: dict[str, Any] = {embedding.token: vectors}
    else:
        content = {
            # A1111's own files hold the id of "*" (265) here; it is never read back.
            "string_to_token": {"*": 265},
            "string_to_param": {"*": vectors},
            "name": embedding.token,
            "step": step,
            "sd_checkpoint": None,
            "sd_checkpoint_name": None,
        }
    return save_torch_file(path, content)
