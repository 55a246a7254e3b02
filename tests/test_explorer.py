"""Explorer behaviour on the `tiny` preset: KerasCV semantics and validation."""

import logging
import warnings

import numpy as np
import pytest

import kerasmorph
from kerasmorph import explorer as explorer_lib


def test_encode_text_shapes_and_width_from_model(tiny_explorer):
    one = tiny_explorer.encode_text("a red circle")
    many = tiny_explorer.encode_text(["a red circle", "a blue square", ""])
    assert one.shape == (1, 77, 64) and one.dtype == np.float32
    assert many.shape == (3, 77, 64)
    assert tiny_explorer.encoding_dim == tiny_explorer.text_encoder.output.shape[-1]
    np.testing.assert_allclose(many[0], one[0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(many[0], many[1])


def test_prompt_over_77_tokens_is_an_error_with_its_count(tiny_explorer):
    prompt = " ".join(["word"] * 80)
    with pytest.raises(ValueError, match=r"82 tokens long.*at most 77"):
        tiny_explorer.encode_text(prompt)


def test_truncation_is_opt_in_and_warns(tiny_explorer):
    prompt = " ".join(["word"] * 80)
    with pytest.warns(UserWarning, match="truncated from 82 to 77"):
        tokens = tiny_explorer.tokenize(prompt, truncate=True)
    assert len(tokens) == 77 and tokens[0] == 49406 and tokens[-1] == 49407
    with pytest.warns(UserWarning):
        encoded = tiny_explorer.encode_text(prompt, truncate=True)
    assert encoded.shape == (1, 77, 64)


def test_exactly_77_tokens_is_accepted_without_warning(tiny_explorer):
    prompt = " ".join(["word"] * 75)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tokens = tiny_explorer.tokenize(prompt)
    assert tokens.count(49407) == 1 and len(tokens) == 77


@pytest.mark.parametrize("bad", [[], [3], None])
def test_bad_prompts(tiny_explorer, bad):
    with pytest.raises(ValueError, match="prompt"):
        tiny_explorer.encode_text(bad)


def test_noise_depends_only_on_seed_and_index(tiny_explorer):
    five = tiny_explorer.noise(5, seed=7)
    assert five.shape == (5, 16, 16, 4) and five.dtype == np.float32
    np.testing.assert_array_equal(tiny_explorer.noise(2, seed=7), five[:2])
    np.testing.assert_array_equal(tiny_explorer.noise(2, seed=7, start=3), five[3:])
    assert not np.array_equal(five[0], five[1])
    assert not np.array_equal(tiny_explorer.noise(1, seed=8)[0], five[0])
    big = tiny_explorer.noise(64, seed=0)
    assert abs(big.std() - 1) < 0.01 and abs(big.mean()) < 0.01


@pytest.mark.parametrize("seed", [-1, 1.5, "3", None])
def test_noise_rejects_bad_seeds(tiny_explorer, seed):
    with pytest.raises(ValueError, match="seed"):
        tiny_explorer.noise(1, seed)


def test_generate_image_is_deterministic_with_a_seed(tiny_explorer):
    encoding = tiny_explorer.encode_text("a red circle")
    first = tiny_explorer.generate_image(encoding, num_steps=3, seed=3)
    second = tiny_explorer.generate_image(encoding, num_steps=3, seed=3)
    other = tiny_explorer.generate_image(encoding, num_steps=3, seed=4)
    assert first.shape == (1, 128, 128, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


def test_kerascv_broadcasting(tiny_explorer):
    encoding = tiny_explorer.encode_text("a red circle")
    noise = tiny_explorer.noise(1, seed=0)[0]
    # A 2-D encoding and 3-D noise are repeated `batch_size` times.
    images = tiny_explorer.generate_image(
        encoding[0], batch_size=3, num_steps=2, diffusion_noise=noise
    )
    assert images.shape[0] == 3
    np.testing.assert_array_equal(images[0], images[2])
    # Batched noise sets the image count for a single encoding.
    noises = tiny_explorer.noise(2, seed=0)
    images = tiny_explorer.generate_image(encoding, num_steps=2, diffusion_noise=noises)
    assert images.shape[0] == 2 and not np.array_equal(images[0], images[1])


def test_same_frames_whatever_the_batch_size(tiny_explorer):
    encodings = tiny_explorer.encode_text(["a red circle", "a blue square", "a cat"])
    noise = tiny_explorer.noise(3, seed=11)
    latents = {
        size: tiny_explorer.denoise(noise, encodings, num_steps=3, batch_size=size)
        for size in (1, 2, 3)
    }
    for size in (1, 2):
        np.testing.assert_allclose(latents[size], latents[3], rtol=1e-5, atol=1e-5)
    images = {
        size: tiny_explorer.generate_image(encodings, batch_size=size, num_steps=3, seed=11)
        for size in (1, 2, 3)
    }
    for size in (1, 2):
        assert np.abs(images[size].astype(int) - images[3]).max() <= 1


def test_no_retracing_over_frames_and_padding():
    explorer = kerasmorph.Explorer("tiny", jit_compile=False, verbose=False)
    encodings = np.repeat(explorer.encode_text("a red circle"), 5, axis=0)
    import tensorflow as tf

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    tf.get_logger().addHandler(handler)
    try:
        explorer.generate_image(encodings, batch_size=2, num_steps=3, seed=0)
        assert explorer.sampler.num_traces == 1
        # 7 more frames through the same compiled shape: still one trace.
        explorer.generate_image(
            np.repeat(encodings, 2, axis=0)[:7], batch_size=2, num_steps=4, seed=1
        )
        assert explorer.sampler.num_traces == 1
    finally:
        tf.get_logger().removeHandler(handler)
    assert not [r for r in records if "retracing" in r.getMessage()]


def test_seed_with_noise_is_rejected(tiny_explorer):
    encoding = tiny_explorer.encode_text("x")
    with pytest.raises(ValueError, match="should not both be passed"):
        tiny_explorer.generate_image(encoding, diffusion_noise=tiny_explorer.noise(1, 0), seed=1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"encoded_text": np.zeros((77, 768))}, r"encoded_text.*\(77, 64\).*Received"),
        ({"encoded_text": np.zeros((2, 76, 64))}, "encoded_text"),
        ({"diffusion_noise": np.zeros((8, 8, 4))}, r"diffusion_noise.*\(16, 16, 4\)"),
        ({"diffusion_noise": np.zeros((3, 16, 16, 4))}, "different batch sizes"),
        ({"batch_size": 0}, "batch_size"),
        ({"num_steps": 0}, "num_steps"),
    ],
)
def test_mismatched_shapes_are_clear_errors(tiny_explorer, kwargs, match):
    arguments = {"encoded_text": np.zeros((2, 77, 64), np.float32), "num_steps": 1}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        tiny_explorer.generate_image(**arguments)


@pytest.mark.parametrize(
    "size, nearest", [(100, "64 or 128"), (500, "448 or 512"), (30, "64"), (130, "128 or 192")]
)
def test_sizes_are_never_rounded_silently(size, nearest):
    with pytest.raises(
        ValueError, match=f"Nearest valid sizes: {nearest}. Received: img_height={size}"
    ):
        kerasmorph.Explorer("tiny", img_height=size, img_width=128)


def test_non_square_multiple_of_64_works():
    explorer = kerasmorph.Explorer(
        "tiny", img_height=64, img_width=192, jit_compile=False, verbose=False
    )
    image = explorer.generate_image(explorer.encode_text("x"), num_steps=1, seed=0)
    assert image.shape == (1, 64, 192, 3)


def test_unknown_preset_and_precision():
    with pytest.raises(ValueError, match="Valid presets: 'sd1', 'sd2', 'tiny'"):
        kerasmorph.Explorer("sd3")
    with pytest.raises(ValueError, match="precision"):
        kerasmorph.Explorer("tiny", precision="float16")


def test_negative_prompt_changes_the_result(tiny_explorer):
    encoding = tiny_explorer.encode_text("a red circle")
    plain = tiny_explorer.generate_image(encoding, num_steps=2, seed=0)
    negative = tiny_explorer.generate_image(encoding, num_steps=2, seed=0, negative_prompt="blurry")
    assert not np.array_equal(plain, negative)
    np.testing.assert_allclose(
        tiny_explorer.unconditional_context("blurry"), tiny_explorer.encode_text("blurry")
    )


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_precision_applies_to_built_components_only(precision):
    import keras

    keras.config.set_dtype_policy("float32")
    explorer = kerasmorph.Explorer("tiny", precision=precision, jit_compile=False, verbose=False)
    images = explorer.generate_image(explorer.encode_text("x"), num_steps=2, seed=0)
    assert keras.config.dtype_policy().name == "float32"
    assert explorer.diffusion_model.dtype_policy.name == precision
    assert explorer.text_encoder.dtype_policy.name == precision
    assert explorer.decoder.dtype_policy.name == "float32"
    assert explorer.encode_text("x").dtype == np.float32
    assert images.dtype == np.uint8


def test_nan_output_is_an_error_naming_the_precision(tiny_explorer):
    latents = tiny_explorer.noise(1, 0)
    latents[0, 0, 0, 0] = np.nan
    with pytest.raises(explorer_lib.NonFiniteOutputError, match="precision='float32'"):
        tiny_explorer.denoise(latents, tiny_explorer.encode_text("x"), num_steps=1)


def test_tiny_builds_are_identical_for_a_seed_and_differ_across_seeds():
    from kerasmorph.models import tiny

    first, second = tiny.build_text_encoder(0), tiny.build_text_encoder(0)
    other = tiny.build_text_encoder(1)
    for a, b in zip(first.weights, second.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(first.weights[0].numpy(), other.weights[0].numpy())


def test_components_have_kerascv_interfaces(tiny_explorer):
    unet = tiny_explorer.diffusion_model
    assert [i.name for i in unet.inputs] == ["latent", "timestep_embedding", "context"]
    assert tuple(unet.inputs[1].shape) == (None, 320)
    assert tuple(unet.output.shape) == (None, 16, 16, 4)
    assert tiny_explorer.decoder(np.zeros((1, 16, 16, 4), np.float32)).shape == (1, 128, 128, 3)
    image = np.zeros((1, 128, 128, 3), np.float32)
    assert tiny_explorer.image_encoder(image).shape == (1, 16, 16, 4)
    assert [i.name for i in tiny_explorer.text_encoder.inputs] == ["tokens", "positions"]


def test_decode_validates_shape(tiny_explorer):
    with pytest.raises(ValueError, match=r"latents.*\(N, 16, 16, 4\)"):
        tiny_explorer.decode(np.zeros((1, 8, 8, 4)))
    assert tiny_explorer.decode(np.zeros((16, 16, 4))).shape == (1, 128, 128, 3)
