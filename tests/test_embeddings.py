"""Textual inversion and token-level interpolation on the `tiny` preset."""

import numpy as np
import pytest
from safetensors.numpy import save_file

import kerasmorph
from kerasmorph import embeddings
from kerasmorph.models import textual_inversion
from kerasmorph.walks import Walk

WIDTH = 64  # The tiny text encoder's width.


@pytest.fixture()
def explorer():
    # Its own Explorer: adding tokens changes the tokenizer and text encoder.
    return kerasmorph.Explorer("tiny", jit_compile=False, verbose=False)


def _vectors(num, seed, width=WIDTH):
    return np.random.default_rng(seed).standard_normal((num, width)).astype(np.float32)


def _token_lookup(explorer, tokens):
    layer, _ = textual_inversion._chain(explorer.text_encoder)
    return np.asarray(layer.token_embedding(np.asarray([tokens], dtype=np.int32)))[0]


def test_diffusers_multi_vector_token_encodes_with_its_vectors(explorer, tmp_path):
    vectors = _vectors(3, 1)
    path = tmp_path / "learned_embeds.safetensors"
    save_file({"<My-Style>": vectors}, str(path))
    before = explorer.encode_text("a photo of a cat")
    assert explorer.add_text_embeddings(str(path)) == ["<my-style>"]
    # Written with capitals: KerasCV's tokenizer lowercases prompts.
    tokens = explorer.tokenize("a <My-Style> cat")
    first = explorer.tokenizer.encoder["<my-style>"]
    assert tokens[2:5] == [first, first + 1, first + 2]
    assert tokens[5] == explorer.tokenize("a cat")[2]
    np.testing.assert_array_equal(_token_lookup(explorer, tokens)[2:5], vectors)
    # Every other weight is unchanged, so other prompts encode as before.
    np.testing.assert_allclose(explorer.encode_text("a photo of a cat"), before, atol=1e-6)
    assert not np.allclose(explorer.encode_text("a <my-style> cat"), explorer.encode_text("a cat"))
    # The unconditional context was recomputed with the new encoder.
    assert explorer.unconditional_context().shape == (1, 77, WIDTH)


def test_a1111_pt_uses_the_file_name(explorer, tmp_path):
    torch = pytest.importorskip("torch", reason="A1111 .pt files are pickles: needs torch")
    vectors = _vectors(2, 2)
    path = tmp_path / "Pixel-Art.pt"
    torch.save(
        {
            "string_to_token": {"*": 265},
            "string_to_param": {"*": torch.from_numpy(vectors)},
            "name": "Pixel-Art",
            "step": 3000,
        },
        str(path),
    )
    loaded = embeddings.load_textual_inversion(path)
    assert [e.token for e in loaded] == ["pixel-art"]
    assert loaded[0].tokens == ["pixel-art", "pixel-art_1"]
    explorer.add_text_embeddings(str(path))
    tokens = explorer.tokenize("pixel-art, a castle")
    np.testing.assert_array_equal(_token_lookup(explorer, tokens)[1:3], vectors)


def test_a1111_safetensors_and_single_vector(tmp_path):
    path = tmp_path / "style.safetensors"
    save_file({"emb_params": _vectors(4, 3)}, str(path))
    assert embeddings.load_textual_inversion(path, token="<S>")[0].vectors.shape == (4, WIDTH)
    assert embeddings.load_textual_inversion(path)[0].token == "style"
    single = tmp_path / "single.safetensors"
    save_file({"<tok>": _vectors(1, 4)[0]}, str(single))
    assert embeddings.load_textual_inversion(single)[0].vectors.shape == (1, WIDTH)


def test_width_mismatch_and_existing_token_are_rejected(explorer, tmp_path):
    path = tmp_path / "sd2_embedding.safetensors"
    save_file({"<big>": _vectors(1, 5, width=1024)}, str(path))
    with pytest.raises(ValueError, match=r"1024 wide \(an SD 2.x embedding\?\).*64 wide"):
        explorer.add_text_embeddings(str(path))
    clash = tmp_path / "cat.safetensors"
    save_file({"cat</w>": _vectors(1, 6)}, str(clash))
    with pytest.raises(ValueError, match="already in the vocabulary"):
        explorer.add_text_embeddings(str(clash))
    with pytest.raises(ValueError, match="without spaces"):
        embeddings.load_textual_inversion(clash, token="two words")


def test_pt_without_torch_names_the_install(tmp_path, without_torch):
    path = tmp_path / "x.pt"
    path.write_bytes(b"x")
    with pytest.raises(ImportError, match="pip install torch"):
        embeddings.load_textual_inversion(path)


def test_encoding_from_token_embeddings_matches_the_encoder(tiny_explorer):
    tokens = tiny_explorer.tokenize("a red circle")
    matrix = embeddings.token_embedding_matrix(tiny_explorer.text_encoder)
    encoded = embeddings.encode_token_embeddings(
        tiny_explorer.text_encoder, matrix[np.asarray(tokens)][None]
    )
    np.testing.assert_allclose(encoded, tiny_explorer.encode_text("a red circle"), atol=1e-5)


def test_token_walk_ends_at_both_words(tiny_explorer):
    walk = embeddings.token_walk(tiny_explorer, "a photo of a {} on a sofa", "cat", "kitten", 5)
    assert isinstance(walk, Walk) and walk.num_frames == 5
    encodings, noise = walk.inputs([0, 2, 4])
    np.testing.assert_allclose(
        encodings[0], tiny_explorer.encode_text("a photo of a cat on a sofa")[0], atol=1e-5
    )
    np.testing.assert_allclose(
        encodings[2], tiny_explorer.encode_text("a photo of a kitten on a sofa")[0], atol=1e-5
    )
    middle = encodings[1]
    assert not np.allclose(middle, encodings[0]) and not np.allclose(middle, encodings[2])
    # Positions before the word see only the fixed prefix (causal attention).
    np.testing.assert_allclose(middle[:5], encodings[0][:5], atol=1e-5)
    np.testing.assert_array_equal(noise[0], noise[2])
    frames = list(tiny_explorer.render(walk, num_steps=2))
    assert len(frames) == 5 and frames[0].shape == (128, 128, 3)
    with pytest.raises(ValueError, match="same number of tokens"):
        embeddings.token_walk(tiny_explorer, "a {}", "cat", "hippopotamus sandwich", 3)
    with pytest.raises(ValueError, match="exactly one"):
        embeddings.token_walk(tiny_explorer, "a cat", "cat", "dog", 3)
