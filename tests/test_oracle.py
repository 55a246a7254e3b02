"""kerasmorph's sampler reproduces KerasCV's generate_image on the same weights.

KerasCV's `generate_image` returns only uint8 images, so its final latents are
captured by a decoder wrapper that records what it is asked to decode.
"""

import contextlib
import io

import numpy as np
import pytest

import kerasmorph

PROMPT = "a photograph of an astronaut riding a horse"


class RecordingDecoder:
    """Stands in for KerasCV's decoder attribute and remembers its input."""

    def __init__(self, decoder):
        self.decoder = decoder
        self.latents = None

    def predict_on_batch(self, latents):
        self.latents = np.asarray(latents)
        return self.decoder.predict_on_batch(latents)


def kerascv_model(cls_name, size, components, tokenizer):
    import keras_cv

    with contextlib.redirect_stdout(io.StringIO()):
        model = getattr(keras_cv.models, cls_name)(size, size, jit_compile=False)
    for name, component in components.items():
        setattr(model, f"_{name}", component)
    model._tokenizer = tokenizer
    return model


def run_kerascv(model, encoding, noise, num_steps, negative_prompt=None):
    recorder = RecordingDecoder(model._decoder)
    model._decoder = recorder
    try:
        images = model.generate_image(
            encoding,
            batch_size=len(noise),
            num_steps=num_steps,
            diffusion_noise=noise,
            negative_prompt=negative_prompt,
        )
    finally:
        model._decoder = recorder.decoder
    return recorder.latents, images


def relative_error(actual, expected):
    return np.linalg.norm(actual - expected) / np.linalg.norm(expected)


def compare(explorer, model, num_steps, negative_prompt=None, num_images=2):
    encoding = explorer.encode_text(PROMPT)
    np.testing.assert_allclose(
        encoding, np.asarray(model.encode_text(PROMPT)), rtol=1e-6, atol=1e-6
    )
    noise = (
        np.random.default_rng(0)
        .standard_normal((num_images, *explorer.latent_shape))
        .astype("float32")
    )
    reference_latents, reference_images = run_kerascv(
        model, encoding, noise, num_steps, negative_prompt
    )
    latents = explorer.denoise(
        noise,
        np.repeat(encoding, num_images, axis=0),
        num_steps=num_steps,
        negative_prompt=negative_prompt,
    )
    assert relative_error(latents, reference_latents) < 1e-4
    images = explorer.generate_image(
        encoding, num_steps=num_steps, diffusion_noise=noise, negative_prompt=negative_prompt
    )
    assert images.shape == reference_images.shape
    assert np.abs(images.astype(int) - reference_images.astype(int)).max() <= 1
    return latents, reference_latents


@pytest.mark.parametrize("negative_prompt", [None, "blurry"])
def test_tiny_matches_kerascv(tiny_explorer, negative_prompt):
    components = {
        name: getattr(tiny_explorer, name)
        for name in ("text_encoder", "diffusion_model", "decoder")
    }
    model = kerascv_model("StableDiffusion", 128, components, tiny_explorer.tokenizer)
    latents, reference = compare(tiny_explorer, model, 4, negative_prompt)
    assert not np.allclose(latents[0], latents[1])  # Two different noises.


@pytest.fixture(scope="module")
def sd1_random():
    """Full KerasCV sd1 architecture, random weights, 128x128 (built once)."""
    import keras
    from keras_cv.src.models.stable_diffusion import decoder, diffusion_model, text_encoder

    from kerasmorph.models import build_tokenizer

    keras.utils.set_random_seed(0)
    components = {
        "text_encoder": text_encoder.TextEncoder(77, download_weights=False),
        "diffusion_model": diffusion_model.DiffusionModel(128, 128, 77, download_weights=False),
        "decoder": decoder.Decoder(128, 128, download_weights=False),
    }
    return kerascv_model("StableDiffusion", 128, components, build_tokenizer())


@pytest.mark.slow
def test_sd1_full_size_random_weights_match_kerascv(sd1_random):
    """Full KerasCV sd1 architecture, random weights, 128x128, 3 steps."""
    # Reuses the KerasCV object's components: nothing is rebuilt or loaded.
    explorer = kerasmorph.Explorer(sd1_random, jit_compile=False, verbose=False)
    assert explorer.diffusion_model is sd1_random._diffusion_model
    assert explorer.encoding_dim == 768
    compare(explorer, sd1_random, num_steps=3)


@pytest.mark.slow
def test_sd1_full_size_inversion_reconstructs(sd1_random):
    """DDIM inversion then regeneration returns the latent (10 steps)."""
    explorer = kerasmorph.Explorer(sd1_random, jit_compile=False, verbose=False)
    latents = (np.random.default_rng(0).standard_normal((1, 16, 16, 4)) * 0.8).astype("float32")
    encoding = explorer.encode_text("x")
    errors = {}
    for refinements in (0, 5):
        inverted = explorer.invert(latents, "x", num_steps=10, num_refinements=refinements)
        regenerated = explorer.denoise(
            inverted, encoding, num_steps=10, unconditional_guidance_scale=1.0
        )
        errors[refinements] = relative_error(regenerated, latents)
    # Measured: 2.0 plain, 0.026 with 5 refinements (9.5e-5 with 20).
    assert errors[5] < 0.05
    assert errors[5] < errors[0] / 10


@pytest.mark.slow
def test_sd2_text_width_is_read_from_the_model(tmp_path):
    from keras_cv.src.models.stable_diffusion.text_encoder import TextEncoderV2

    from kerasmorph.models import build_tokenizer

    encoder = TextEncoderV2(77, download_weights=False)
    model = kerascv_model("StableDiffusionV2", 128, {"text_encoder": encoder}, build_tokenizer())
    # The KerasCV object's other components are not built: the Explorer looks
    # for their files (offline here) instead of letting KerasCV download them.
    with pytest.raises(kerasmorph.MissingWeightsError, match="diffusion_model_v2_1.h5"):
        kerasmorph.Explorer(model, verbose=False)
    for name in ("diffusion_model_v2_1.h5", "kcv_decoder.h5"):
        (tmp_path / name).write_bytes(b"")  # Found, never built here.
    explorer = kerasmorph.Explorer(model, weights_dir=tmp_path, verbose=False)
    assert explorer.preset.name == "sd2" and explorer.text_encoder is encoder
    encoding = explorer.encode_text(PROMPT)
    assert encoding.shape == (1, 77, 1024) and explorer.encoding_dim == 1024
    np.testing.assert_allclose(
        encoding, np.asarray(model.encode_text(PROMPT)), rtol=1e-5, atol=1e-5
    )
    # Textual inversion's surgery on TextEncoderV2 (1024-d): a new token's vector reaches
    # the encoder, and training's split computes the same encoding.
    from kerasmorph.models import textual_inversion

    vector = np.random.default_rng(0).standard_normal((1, 1024)).astype(np.float32)
    assert explorer.add_token_vectors("<sd2-token>", vector) == ["<sd2-token>"]
    tokens = np.asarray(explorer.tokenize("a <sd2-token>"))
    lookup = textual_inversion.token_embedding_matrix(explorer.text_encoder)[tokens]
    np.testing.assert_array_equal(lookup[2], vector[0])
    direct = textual_inversion.encode_token_embeddings(explorer.text_encoder, lookup[None])
    np.testing.assert_allclose(explorer.encode_text("a <sd2-token>"), direct, atol=1e-4)


@pytest.mark.slow
def test_sd1_full_size_schedulers_equal_diffusers(sd1_random, monkeypatch):
    """Every scheduler on the full-size sd1 UNet (random weights, 128x128, 3 steps)
    ends where diffusers' own scheduler class, driven by the same UNet, ends."""
    pytest.importorskip("diffusers", reason="needs diffusers: pip install 'kerasmorph[reference]'")
    from scheduler_reference import diffusers_loop, diffusers_scheduler

    from kerasmorph import schedulers

    explorer = kerasmorph.Explorer(sd1_random, jit_compile=False, verbose=False)
    encodings = explorer.encode_text([PROMPT])
    noise = explorer.noise(1, seed=0)
    errors = {}
    for name in sorted(set(schedulers.SCHEDULERS) - {"ddim"}):
        ours = explorer.denoise(
            noise, encodings, num_steps=3, unconditional_guidance_scale=5.0, scheduler=name
        )
        reference_scheduler = diffusers_scheduler(name, 3)
        start = (noise * float(reference_scheduler.init_noise_sigma)).astype(np.float32)
        reference = diffusers_loop(
            explorer, reference_scheduler, start, encodings, noise, monkeypatch
        )
        errors[name] = relative_error(ours, reference)
    assert max(errors.values()) < 1e-4, errors


@pytest.mark.slow
def test_sd1_full_size_textual_inversion_step(sd1_random, tmp_path):
    """One training step on the full sd1 architecture: 768-d vector, posterior sampled."""
    from keras_cv.src.models.stable_diffusion.image_encoder import ImageEncoder

    from kerasmorph import training
    from kerasmorph.models import textual_inversion

    explorer = kerasmorph.Explorer(
        sd1_random,
        jit_compile=False,
        verbose=False,
        components={"image_encoder": ImageEncoder(download_weights=False)},
    )
    unet_before = [w.numpy() for w in explorer.diffusion_model.weights[:8]]
    matrix = textual_inversion.token_embedding_matrix(explorer.text_encoder)
    image = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    result = training.train_embedding(
        explorer, [image], "<sd1-concept>", initializer_token="cat", num_steps=1,
        gradient_accumulation=1, learning_rate=1e-2, out=tmp_path / "e.pt",
    )  # fmt: skip
    assert result.embedding.vectors.shape == (1, 768)
    assert result.record["posterior_sampled"] is True
    assert np.isfinite(result.losses).all()
    assert not np.array_equal(result.embedding.vectors, result.initial_vectors)
    grown = textual_inversion.token_embedding_matrix(explorer.text_encoder)
    np.testing.assert_array_equal(grown[:-1], matrix)
    for old, new in zip(unet_before, explorer.diffusion_model.weights[:8]):
        np.testing.assert_array_equal(old, new.numpy())
    (loaded,) = textual_inversion.load_textual_inversion(tmp_path / "e.pt")
    np.testing.assert_array_equal(loaded.vectors, result.embedding.vectors)
