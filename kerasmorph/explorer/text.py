"""The prompt encoder: tokenize, encode, long prompts, unconditional contexts, padding.

A prompt becomes 77 CLIP ids (start, BPE tokens, end, padding) and the text
encoder turns them into a float32 (77, D) encoding. Long prompts (opt-in) are
cut into 75-token chunks, each encoded on its own and concatenated, giving
(77·k, D), the way A1111 and compel encode them. Encodings that must be
batched, interpolated or paired with the unconditional pass are padded to
one length with the encoding of an empty chunk.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from kerasmorph._checks import check_sequence_length
from kerasmorph.constants import CHUNK_LENGTH, END_TOKEN, MAX_PROMPT_LENGTH, START_TOKEN
from kerasmorph.explorer.checks import check_encodings
from kerasmorph.explorer.components import ComponentStore


def chunk_tokens(tokens: Sequence[int]) -> list[list[int]]:
    """Splits a tokenized prompt into 77-id chunks, the way A1111 encodes long prompts.

    The BPE tokens between the start and end tokens are cut into runs of
    `CHUNK_LENGTH` (75); each run becomes `[49406] + run + [49407]`, padded
    with 49407 to 77 ids. A prompt of at most 75 BPE tokens gives one chunk,
    equal to its ordinary 77 ids; the empty prompt gives the empty chunk.

    Args:
        tokens: ids from the CLIP tokenizer, `[49406, ..., 49407]`.

    Returns:
        k >= 1 lists of 77 ints.

    Example:

    ```python
    >>> chunks = kerasmorph.explorer.chunk_tokens([49406] + [320] * 100 + [49407])
    >>> [len(chunk) for chunk in chunks], chunks[1][:3], chunks[1][26:28]
    ([77, 77], [49406, 320, 320], [49407, 49407])
    ```
    """
    body = list(tokens)
    if body[:1] == [START_TOKEN]:
        body = body[1:]
    if body[-1:] == [END_TOKEN]:
        body = body[:-1]
    runs = [body[i : i + CHUNK_LENGTH] for i in range(0, len(body), CHUNK_LENGTH)] or [[]]
    return [
        [START_TOKEN, *run, END_TOKEN] + [END_TOKEN] * (CHUNK_LENGTH - len(run)) for run in runs
    ]


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class PromptEncoder:
    """Turns prompts into text encodings with one model's tokenizer and text encoder.

    Args:
        store: the `ComponentStore` holding the tokenizer and text encoder;
            cached encodings live in its memo.
        long_prompts: the default of every `long_prompts=None` argument.
    """

    def __init__(self, store: ComponentStore, long_prompts: bool = False):
        self.store = store
        self.long_prompts = long_prompts

    @property
    def width(self) -> int:
        """Width D of an encoding, read from the text encoder."""
        return int(self.store.get("text_encoder").output.shape[-1])

    def check(self, encoded_text, name: str = "encoded_text") -> np.ndarray:
        """Validates (N, 77·k, D) or (77·k, D) encodings of this model's width."""
        return check_encodings(encoded_text, self.width, self.store.preset.name, name)

    def resolve_long_prompts(self, long_prompts: bool | None, truncate: bool = False) -> bool:
        """Resolves `long_prompts=None` to the default; rejects it with `truncate`."""
        resolved = self.long_prompts if long_prompts is None else long_prompts
        if resolved and truncate:
            raise ValueError(
                "Pass either `truncate=True` (cut prompts to 77 tokens) or "
                "`long_prompts=True` (encode them in chunks), not both. Received: "
                f"truncate=True, long_prompts={long_prompts!r} (Explorer default "
                f"{self.long_prompts!r})"
            )
        return bool(resolved)

    def tokenize(
        self, prompt: str, *, truncate: bool = False, long_prompts: bool | None = None
    ) -> list[int]:
        """77 ids (77·k with long prompts); see `Explorer.tokenize`."""
        if not isinstance(prompt, str):
            raise ValueError(
                f"A prompt must be a string. Received: prompt={prompt!r} "
                f"of type {type(prompt).__name__}"
            )
        long_prompts = self.resolve_long_prompts(long_prompts, truncate)
        tokens = self.store.tokenizer.encode(prompt)
        if long_prompts:
            return [token for chunk in chunk_tokens(tokens) for token in chunk]
        if len(tokens) > MAX_PROMPT_LENGTH:
            if not truncate:
                raise ValueError(
                    f"The prompt is {len(tokens)} tokens long (with its start and "
                    f"end tokens); the text encoder takes at most {MAX_PROMPT_LENGTH}. "
                    "Shorten it, pass long_prompts=True (CLI: --long-prompts) to "
                    f"encode it in {CHUNK_LENGTH}-token chunks, or truncate=True to "
                    f"keep the first {MAX_PROMPT_LENGTH} with a warning. Received: "
                    f"prompt={_shorten(prompt)!r}"
                )
            warnings.warn(
                f"Prompt truncated from {len(tokens)} to {MAX_PROMPT_LENGTH} tokens: "
                f"{_shorten(prompt)!r}",
                stacklevel=3,
            )
            tokens = tokens[: MAX_PROMPT_LENGTH - 1] + [END_TOKEN]
        return tokens + [END_TOKEN] * (MAX_PROMPT_LENGTH - len(tokens))

    def encode(
        self,
        prompt: str | Sequence[str],
        *,
        truncate: bool = False,
        long_prompts: bool | None = None,
    ) -> np.ndarray:
        """float32 (N, 77·k, D) encodings of one prompt or a list; see `Explorer.encode_text`."""
        if isinstance(prompt, str):
            prompts = [prompt]
        elif isinstance(prompt, (list, tuple)):
            prompts = list(prompt)
        else:
            raise ValueError(
                f"`prompt` must be a string or a list of strings. Received: prompt={prompt!r}"
            )
        if not prompts:
            raise ValueError("`prompt` must not be empty. Received: prompt=[]")
        long_prompts = self.resolve_long_prompts(long_prompts, truncate)
        token_lists = [
            self.tokenize(p, truncate=truncate, long_prompts=long_prompts) for p in prompts
        ]
        # Every chunk of every prompt in one text-encoder call: (sum of k_i, 77).
        tokens = np.concatenate(
            [np.asarray(t, dtype=np.int32).reshape(-1, MAX_PROMPT_LENGTH) for t in token_lists]
        )
        encoded = self.store.encode_tokens(tokens)
        if len(encoded) == len(prompts):  # One chunk each: the ordinary encoding.
            return encoded
        num_chunks = np.cumsum([len(t) // MAX_PROMPT_LENGTH for t in token_lists])[:-1]
        # (k_i, 77, D) -> (1, 77·k_i, D) per prompt, then padded to the longest.
        encodings = [part.reshape(1, -1, part.shape[-1]) for part in np.split(encoded, num_chunks)]
        return np.concatenate(self.pad(encodings))

    def pad(
        self, encodings: Sequence[np.ndarray], *, sequence_length: int | None = None
    ) -> list[np.ndarray]:
        """Pads encodings to one length with empty chunks; see `Explorer.pad_encodings`."""
        arrays = [self.check(array, "encodings") for array in encodings]
        if not arrays:
            return []
        longest = max(array.shape[-2] for array in arrays)
        if sequence_length is None:
            sequence_length = longest
        sequence_length = check_sequence_length("sequence_length", sequence_length)
        if sequence_length < longest:
            raise ValueError(
                f"`sequence_length` must be at least the longest encoding's length, "
                f"{longest}. Received: sequence_length={sequence_length}"
            )
        padded = []
        for array in arrays:
            missing = (sequence_length - array.shape[-2]) // MAX_PROMPT_LENGTH
            if missing:
                # (missing·77, D), broadcast over the leading axes.
                empty = np.tile(self.empty_chunk(), (missing, 1))
                empty = np.broadcast_to(empty, (*array.shape[:-2], *empty.shape))
                array = np.concatenate([array, empty], axis=-2)
            padded.append(array)
        return padded

    def empty_chunk(self) -> np.ndarray:
        """The (77, D) encoding of the empty prompt: the padding chunk, cached."""
        return self.unconditional(long_prompts=False)[0]

    def unconditional(
        self,
        negative_prompt: str | None = None,
        *,
        long_prompts: bool | None = None,
        sequence_length: int | None = None,
    ) -> np.ndarray:
        """The cached (1, 77·k, D) empty or negative prompt encoding; see `Explorer`."""
        text = negative_prompt or ""
        long_prompts = self.resolve_long_prompts(long_prompts)
        encoding = self.store.memo(
            ("text", "unconditional", text, long_prompts),
            lambda: self.encode(text, long_prompts=long_prompts),
        )
        if sequence_length is None:
            return encoding
        return self.pad([encoding], sequence_length=sequence_length)[0]

    def guidance_contexts(
        self, encodings: np.ndarray, negative_prompt: str | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Brings prompt encodings (B, L, D) and the unconditional context to one length.

        The negative prompt is chunk-encoded when `long_prompts` is on or the
        prompt encodings are long (L > 77), and padded with empty chunks to L.
        When it needs more chunks than the prompt, the prompt encodings are
        padded with empty chunks instead (as A1111 does), so both passes of a
        guided step have one shape.

        Returns:
            `(encodings (B, L', D), unconditional (1, L', D))` with L' >= L.
        """
        long_negative = self.long_prompts or encodings.shape[-2] > MAX_PROMPT_LENGTH
        try:
            unconditional = self.unconditional(negative_prompt, long_prompts=long_negative)
        except ValueError as error:
            # Say why the negative prompt was not chunk-encoded here, then the cause.
            raise ValueError(
                "`negative_prompt` is too long: a negative prompt is encoded in "
                f"{CHUNK_LENGTH}-token chunks only when the prompt encodings are longer "
                "than 77 tokens or the Explorer's `long_prompts` is True "
                f"(Explorer(..., long_prompts=True)). {error}"
            ) from None
        encodings, unconditional = self.pad([encodings, unconditional])
        return encodings, unconditional

    def for_images(self, prompt: str | np.ndarray, num: int) -> np.ndarray:
        """Encodings (num, 77·k, D) for `num` images from a prompt or encodings."""
        encodings = self.encode(prompt) if isinstance(prompt, str) else prompt
        encodings = self.check(encodings)
        if encodings.ndim == 2 or len(encodings) == 1:
            single = encodings[0] if encodings.ndim == 3 else encodings
            return np.repeat(single[None], num, axis=0)
        if len(encodings) != num:
            raise ValueError(
                f"Got {len(encodings)} encodings for {num} images. "
                f"Received: encodings.shape={encodings.shape}"
            )
        return encodings
