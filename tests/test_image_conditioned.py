"""img2img, inpainting, DDIM inversion, sweeps and image morphs on `tiny`."""

import warnings

import numpy as np
import pytest

from kerasmorph import images, sweeps, walks

NUM_STEPS = 10


@pytest.fixture(scope="module")
def picture():
    rng = np.random.default_rng(0)
    return (rng.random((128, 128, 3)) * 255).astype(np.uint8)


def test_encode_image_shape_and_errors(tiny_explorer, picture):
    latents = tiny_explorer.encode_image(picture)
    assert latents.shape == (1, 16, 16, 4) and latents.dtype == np.float32
    with pytest.raises(ValueError, match="load_images"):
        tiny_explorer.encode_image(np.zeros((64, 64, 3), np.uint8))
    assert tiny_explorer.load_images([picture, picture[:64]]).shape == (2, 128, 128, 3)


def test_strength_zero_is_the_vae_round_trip(tiny_explorer, picture):
    calls = tiny_explorer.sampler.num_steps_run
    result = tiny_explorer.image_to_image(picture, "x", strength=0.0, num_steps=NUM_STEPS, seed=0)
    assert tiny_explorer.sampler.num_steps_run == calls  # No denoising step ran.
    expected = tiny_explorer.decode(tiny_explorer.encode_image(picture))
    np.testing.assert_array_equal(result, expected)


def test_strength_one_is_text_to_image_from_the_same_noise(tiny_explorer, picture):
    noise = tiny_explorer.noise(1, 4)
    result = tiny_explorer.image_to_image(
        picture, "a cat", strength=1.0, num_steps=NUM_STEPS, diffusion_noise=noise
    )
    expected = tiny_explorer.generate_image(
        tiny_explorer.encode_text("a cat"), num_steps=NUM_STEPS, diffusion_noise=noise
    )
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("strength", [0.1, 0.29, 0.5, 0.75])
def test_unet_calls_equal_int_strength_times_steps(tiny_explorer, picture, strength):
    calls = tiny_explorer.sampler.num_steps_run
    tiny_explorer.image_to_image(
        picture, "x", strength=strength, num_steps=100 if strength == 0.29 else NUM_STEPS, seed=0
    )
    steps = 100 if strength == 0.29 else NUM_STEPS
    assert tiny_explorer.sampler.num_steps_run - calls == int(round(strength * steps, 6))


def test_start_moves_away_from_the_image_as_strength_grows(tiny_explorer, picture):
    latents = tiny_explorer.encode_image(picture)
    noise = tiny_explorer.noise(1, 0)
    distances = [
        np.linalg.norm(tiny_explorer.noised_latents(latents, noise, s, NUM_STEPS)[0] - latents)
        for s in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    ]
    assert distances[0] == 0 and all(np.diff(distances) > 0)


def test_img2img_is_reproducible_with_a_seed(tiny_explorer, picture):
    first = tiny_explorer.image_to_image(picture, "x", strength=0.5, num_steps=NUM_STEPS, seed=7)
    again = tiny_explorer.image_to_image(picture, "x", strength=0.5, num_steps=NUM_STEPS, seed=7)
    other = tiny_explorer.image_to_image(picture, "x", strength=0.5, num_steps=NUM_STEPS, seed=8)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("strength", [-0.1, 1.5, "0.5"])
def test_bad_strength(tiny_explorer, picture, strength):
    with pytest.raises(ValueError, match=r"`strength` must be in \[0, 1\]"):
        tiny_explorer.image_to_image(picture, "x", strength=strength, num_steps=2, seed=0)


def test_inpaint_keeps_the_black_region_in_latent_space(tiny_explorer, picture):
    mask = np.zeros((128, 128), np.float32)
    mask[:, 64:] = 1
    result = tiny_explorer.inpaint(picture, mask, "x", num_steps=NUM_STEPS, seed=1)
    original = tiny_explorer.encode_image(picture)[0]
    kept = images.latent_mask(mask)[..., 0] == 0
    np.testing.assert_allclose(result.latents[0][kept], original[kept], atol=1e-6)
    assert np.abs(result.latents[0][~kept] - original[~kept]).max() > 0.1
    # The composite is the original outside the (feathered) mask.
    np.testing.assert_array_equal(result.composite[0][:, :40], picture[:, :40])
    np.testing.assert_array_equal(result.composite[0][:, 90:], result.images[0][:, 90:])


def test_inpaint_all_black_and_all_white_masks(tiny_explorer, picture):
    noise = tiny_explorer.noise(1, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        black = tiny_explorer.inpaint(
            picture, np.zeros((128, 128)), "x", num_steps=NUM_STEPS, diffusion_noise=noise
        )
    round_trip = tiny_explorer.decode(tiny_explorer.encode_image(picture))
    assert np.abs(black.images.astype(int) - round_trip).max() <= 1
    white = tiny_explorer.inpaint(
        picture, np.ones((64, 64)), "x", num_steps=NUM_STEPS, diffusion_noise=noise
    )
    text_to_image = tiny_explorer.generate_image(
        tiny_explorer.encode_text("x"), num_steps=NUM_STEPS, diffusion_noise=noise
    )
    assert np.abs(white.images.astype(int) - text_to_image).max() <= 1


def test_inversion_refinement_reconstructs_the_latent(tiny_explorer, picture):
    latents = tiny_explorer.encode_image(picture)
    encoding = tiny_explorer.encode_text("x")
    errors = {}
    for refinements in (0, 10):
        inverted = tiny_explorer.invert(latents, "x", num_steps=50, num_refinements=refinements)
        regenerated = tiny_explorer.denoise(
            inverted, encoding, num_steps=50, unconditional_guidance_scale=1.0
        )
        errors[refinements] = np.linalg.norm(regenerated - latents) / np.linalg.norm(latents)
    # Measured on random tiny weights: ~22 plain, ~0.13 with 10 refinements.
    assert errors[10] < 0.3
    assert errors[10] < errors[0] / 10


def test_sweep_holds_the_noise_fixed(tiny_explorer, picture):
    result = sweeps.sweep(
        tiny_explorer, "x", "strength", [0.0, 0.5, 1.0], image=picture, seed=3, num_steps=4
    )
    assert result.frames.shape == (3, 128, 128, 3)
    assert result.labels == ("strength=0", "strength=0.5", "strength=1")
    text_to_image = tiny_explorer.generate_image(
        tiny_explorer.encode_text("x"), num_steps=4, diffusion_noise=tiny_explorer.noise(1, 3)
    )
    np.testing.assert_array_equal(result.frames[2], text_to_image[0])
    guidance = sweeps.sweep(tiny_explorer, "x", "guidance", [1.0, 7.5], seed=3, num_steps=2)
    assert not np.array_equal(guidance.frames[0], guidance.frames[1])
    weights = sweeps.sweep(tiny_explorer, "x", "prompt_weight", [0.0, 1.0], seed=3, num_steps=2)
    empty = tiny_explorer.generate_image(
        tiny_explorer.encode_text(""), num_steps=2, diffusion_noise=tiny_explorer.noise(1, 3)
    )
    np.testing.assert_array_equal(weights.frames[0], empty[0])


def test_sweep_errors():
    assert sweeps.parse_range("0.6:0.99:0.01")[0] == 0.6
    assert len(sweeps.parse_range("0.6:0.99:0.01")) == 40
    assert sweeps.parse_range("1,2.5") == [1.0, 2.5]
    with pytest.raises(ValueError, match="start:stop:step"):
        sweeps.parse_range("0.9:0.1:0.1")
    for text in ("0:inf:1", "nan:1:0.1", "1,nan"):
        with pytest.raises(ValueError, match="finite numbers"):
            sweeps.parse_range(text)
    with pytest.raises(ValueError, match="`param` must be one of"):
        sweeps.sweep(None, "x", "eta", [1])
    with pytest.raises(ValueError, match="needs an `image`"):
        sweeps.sweep(None, "x", "strength", [0.5])


def test_image_morph_starts_from_the_inverted_images(tiny_explorer, picture):
    other = picture[::-1].copy()
    walk = walks.image_morph_walk(tiny_explorer, [picture, other], ["a", "b"], 5, num_steps=4)
    _, noise = walk.inputs([0, 4])
    inverted = tiny_explorer.invert(
        tiny_explorer.encode_image(np.stack([picture, other])),
        tiny_explorer.encode_text(["a", "b"]),
        num_steps=4,
    )
    np.testing.assert_allclose(noise, inverted, rtol=1e-5, atol=1e-5)
    frames = walks.morph_images(tiny_explorer, [picture, other], ["a", "b"], 3, num_steps=2)
    assert frames.shape == (3, 128, 128, 3)
    with pytest.raises(ValueError, match="one prompt per image"):
        walks.image_morph_walk(tiny_explorer, [picture, other], ["a", "b", "c"], 5)
