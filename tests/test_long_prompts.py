"""Long prompts (opt-in): 75-token chunks encoded separately and concatenated."""

import numpy as np
import pytest
from PIL import Image

from kerasmorph import cli, models, walks
from kerasmorph.explorer import END_TOKEN, START_TOKEN

# One Session per file, as a notebook keeps one: the model is built once and reused.
_SESSION = cli.Session()


def main(argv, session=_SESSION):
    return cli.main(argv, session=session)


WIDTH = 64  # The tiny text encoder's width D.
# 100 BPE tokens ("red" and "circle" are one token each): 102 with start and end.
LONG = " ".join(["red circle"] * 50)
# 160 BPE tokens: three chunks (75 + 75 + 10).
LONGER = " ".join(["blue square"] * 80)
TINY = ["--model", "tiny", "--steps", "2", "--no-jit", "--quiet"]


def _by_hand(explorer, prompt):
    """The chunk encodings of `prompt`, built from the raw BPE ids."""
    body = explorer.tokenizer.encode(prompt)[1:-1]
    chunks = []
    for start in range(0, len(body), 75):
        run = body[start : start + 75]
        chunks.append([START_TOKEN, *run, END_TOKEN] + [END_TOKEN] * (75 - len(run)))
    encoded = [
        explorer.text_encoder(
            {
                "tokens": np.asarray([chunk], np.int32),
                "positions": np.arange(77, dtype=np.int32)[None],
            },
            training=False,
        )
        for chunk in chunks
    ]
    return chunks, np.concatenate([np.asarray(e, np.float32) for e in encoded], axis=1)


def test_long_prompt_is_an_error_by_default_with_its_count_and_the_hint(tiny_explorer):
    with pytest.raises(ValueError, match=r"102 tokens long.*at most 77.*long_prompts=True"):
        tiny_explorer.encode_text(LONG)
    with pytest.raises(ValueError, match="not both"):
        tiny_explorer.encode_text(LONG, truncate=True, long_prompts=True)


def test_long_prompt_is_the_concatenation_of_its_chunk_encodings(tiny_explorer):
    chunks, expected = _by_hand(tiny_explorer, LONG)
    assert len(chunks) == 2
    tokens = tiny_explorer.tokenize(LONG, long_prompts=True)
    assert tokens == chunks[0] + chunks[1]
    encoded = tiny_explorer.encode_text(LONG, long_prompts=True)
    assert encoded.shape == (1, 154, WIDTH) and encoded.dtype == np.float32
    np.testing.assert_allclose(encoded, expected, rtol=1e-5, atol=1e-5)
    # The second chunk is not a copy of the first: 25 tokens, then padding.
    assert not np.allclose(encoded[0, :77], encoded[0, 77:], atol=1e-3)


def test_short_prompts_are_bit_identical_with_long_prompts(tiny_explorer):
    exactly_75 = " ".join(["word"] * 75)
    for prompt in ("a red circle", exactly_75, ["a red circle", "", exactly_75]):
        np.testing.assert_array_equal(
            tiny_explorer.encode_text(prompt, long_prompts=True),
            tiny_explorer.encode_text(prompt),
        )
    assert tiny_explorer.tokenize(exactly_75, long_prompts=True) == tiny_explorer.tokenize(
        exactly_75
    )


def test_a_batch_is_padded_with_the_empty_chunk(tiny_explorer):
    both = tiny_explorer.encode_text(["a blue square", LONG], long_prompts=True)
    assert both.shape == (2, 154, WIDTH)
    empty = tiny_explorer.encode_text("")[0]
    np.testing.assert_allclose(
        both[0, :77], tiny_explorer.encode_text("a blue square")[0], atol=1e-5
    )
    np.testing.assert_allclose(both[0, 77:], empty, atol=1e-5)
    np.testing.assert_allclose(
        both[1], tiny_explorer.encode_text(LONG, long_prompts=True)[0], atol=1e-5
    )
    # The same padding, public, for encodings from separate calls.
    short = tiny_explorer.encode_text("a blue square")
    padded, long = tiny_explorer.pad_encodings(
        [short[0], tiny_explorer.encode_text(LONGER, long_prompts=True)]
    )
    assert padded.shape == (231, WIDTH) and long.shape == (1, 231, WIDTH)
    np.testing.assert_array_equal(padded[:77], short[0])
    np.testing.assert_array_equal(padded[77:154], padded[154:])
    np.testing.assert_allclose(padded[154:], empty, atol=1e-5)
    with pytest.raises(ValueError, match="at least the longest"):
        tiny_explorer.pad_encodings([long], sequence_length=154)


def test_duplicated_context_gives_the_same_noise_prediction(tiny_explorer):
    unet = tiny_explorer.diffusion_model_for(154)
    assert tiny_explorer.diffusion_model_for(154) is unet  # Built once, cached.
    assert tiny_explorer.diffusion_model_for(77) is tiny_explorer.diffusion_model
    context = tiny_explorer.encode_text("a red circle")
    other = tiny_explorer.encode_text("a blue square")
    inputs = {
        "latent": tiny_explorer.noise(1, seed=3),
        "timestep_embedding": np.random.default_rng(0).standard_normal((1, 320), np.float32),
    }

    def predict(model, context):
        return np.asarray(model({**inputs, "context": context}, training=False))

    single = predict(tiny_explorer.diffusion_model, context)
    # Softmax attention over keys/values given twice is the same attention.
    doubled = predict(unet, np.concatenate([context, context], axis=1))
    np.testing.assert_allclose(doubled, single, rtol=1e-5, atol=1e-5)
    changed = predict(unet, np.concatenate([context, other], axis=1))
    assert np.abs(changed - single).max() > 1e-3


def test_the_rewired_unet_shares_the_variables(tiny_explorer):
    base = tiny_explorer.diffusion_model
    unet = models.rewire_context_length(base, 231)
    shapes = {tensor.name: tuple(tensor.shape) for tensor in unet.inputs}
    assert shapes["context"] == (None, 231, WIDTH)
    assert shapes["latent"] == (None, 16, 16, 4)
    assert models.context_length(unet) == 231 and models.context_length(base) == 77
    assert [id(v) for v in unet.weights] == [id(v) for v in base.weights]
    variable = unet.weights[-1]
    before = np.asarray(base.weights[-1]).copy()
    try:
        variable.assign(before + 1.0)
        np.testing.assert_array_equal(np.asarray(base.weights[-1]), before + 1.0)
    finally:
        variable.assign(before)
    with pytest.raises(ValueError, match="sequence_length"):
        models.rewire_context_length(base, 0)


def test_generate_with_a_two_chunk_encoding(tiny_explorer):
    encoding = tiny_explorer.encode_text(LONG, long_prompts=True)
    first = tiny_explorer.generate_image(encoding, num_steps=2, seed=0)
    again = tiny_explorer.generate_image(encoding, num_steps=2, seed=0)
    assert first.shape == (1, 128, 128, 3)
    np.testing.assert_array_equal(first, again)
    # One trace for this length, reused by the second call.
    assert tiny_explorer.sampler_for(154).num_traces == 1
    with pytest.warns(UserWarning, match="truncated"):
        truncated = tiny_explorer.encode_text(LONG, truncate=True)
    assert not np.array_equal(tiny_explorer.generate_image(truncated, num_steps=2, seed=0), first)
    unguided = tiny_explorer.generate_image(
        encoding[0], num_steps=2, seed=0, unconditional_guidance_scale=1.0
    )
    assert unguided.shape == (1, 128, 128, 3) and not np.array_equal(unguided, first)


def test_negative_prompts_with_long_encodings(tiny_explorer, monkeypatch):
    encoding = tiny_explorer.encode_text(LONG, long_prompts=True)
    plain = tiny_explorer.generate_image(encoding, num_steps=2, seed=0)
    negative = tiny_explorer.generate_image(encoding, num_steps=2, seed=0, negative_prompt="blurry")
    assert not np.array_equal(plain, negative)
    # The negative prompt's unconditional context: its encoding, then an empty chunk.
    context = tiny_explorer.unconditional_context("blurry", sequence_length=154)
    np.testing.assert_array_equal(context[0, :77], tiny_explorer.encode_text("blurry")[0])
    np.testing.assert_array_equal(context[0, 77:], tiny_explorer.unconditional_context()[0])
    # A long negative prompt is chunk-encoded because the prompt is long.
    long_negative = tiny_explorer.generate_image(
        encoding, num_steps=2, seed=0, negative_prompt=LONG
    )
    assert not np.array_equal(long_negative, negative)

    short = tiny_explorer.encode_text("a blue square")
    with pytest.raises(ValueError, match=r"negative_prompt. is too long.*102 tokens long"):
        tiny_explorer.generate_image(short, num_steps=2, seed=0, negative_prompt=LONG)
    # With long prompts on, a negative prompt longer than the prompt pads the
    # prompt's encoding with empty chunks.
    monkeypatch.setattr(tiny_explorer, "long_prompts", True)
    padded_prompt = tiny_explorer.generate_image(short, num_steps=2, seed=0, negative_prompt=LONG)
    explicit = tiny_explorer.generate_image(
        tiny_explorer.pad_encodings([short], sequence_length=154)[0],
        num_steps=2,
        seed=0,
        negative_prompt=LONG,
    )
    np.testing.assert_array_equal(padded_prompt, explicit)


@pytest.mark.parametrize("length", [76, 100, 153, 0])
def test_lengths_that_are_not_multiples_of_77_are_rejected(tiny_explorer, length):
    with pytest.raises(ValueError, match=r"positive multiple of 77.*Received"):
        tiny_explorer.generate_image(np.zeros((1, length, WIDTH), np.float32), num_steps=1, seed=0)
    with pytest.raises(ValueError, match="positive multiple of 77"):
        tiny_explorer.diffusion_model_for(length)


def test_walks_pad_prompts_to_one_length(tiny_explorer):
    walk = walks.prompt_walk(tiny_explorer, ["a blue square", LONG], 3, seed=0, long_prompts=True)
    encodings, noise = walk.inputs([0, 1, 2])
    assert encodings.shape == (3, 154, WIDTH) and noise.shape == (3, 16, 16, 4)
    np.testing.assert_allclose(
        encodings[0], tiny_explorer.encode_text(["a blue square", LONG], long_prompts=True)[0]
    )
    with pytest.raises(ValueError, match="long_prompts=True"):
        walks.prompt_walk(tiny_explorer, ["a blue square", LONG], 3)


def test_cli_generate_long_prompt_needs_the_flag(tmp_path, capsys):
    out = tmp_path / "long.png"
    assert main(["generate", LONG, "--seed", "0", "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert "102 tokens long" in err and "--long-prompts" in err
    assert len(err.splitlines()) == 1 and not out.exists()
    assert main(["generate", LONG, "--seed", "0", "--long-prompts", "--out", str(out), *TINY]) == 0
    with Image.open(out) as image:
        assert image.size == (128, 128) and image.mode == "RGB"
    # Short prompts give the same image with or without the flag.
    plain, flagged = tmp_path / "plain.png", tmp_path / "flagged.png"
    assert main(["generate", "a red circle", "--out", str(plain), *TINY]) == 0
    assert main(["generate", "a red circle", "--long-prompts", "--out", str(flagged), *TINY]) == 0
    assert plain.read_bytes() == flagged.read_bytes()


def test_prompt_weight_sweep_mixes_a_long_prompt_with_a_matching_empty_context():
    import kerasmorph
    from kerasmorph import sweeps

    explorer = kerasmorph.Explorer("tiny", jit_compile=False, verbose=False, long_prompts=True)
    result = sweeps.sweep(explorer, LONG, "prompt_weight", [0.0, 1.0], num_steps=2)
    frames = np.asarray(result.frames)
    assert frames.shape == (2, 128, 128, 3)
    # Weight 0 is the empty prompt's encoding, 1 the long prompt's: different images.
    assert np.abs(frames[0].astype(int) - frames[1]).mean() > 0.5
