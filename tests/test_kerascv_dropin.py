"""`Explorer` as a drop-in for `keras_cv.models.StableDiffusion` (issue 16).

KerasCV's positional arguments (constructor, `generate_image`,
`text_to_image`), the global dtype policy, `seed=None` under
`keras.utils.set_random_seed`, the private component attributes, and the
keras.io tutorial "A walk through latent space with Stable Diffusion" run
with its own calls on the `shapes` toy model.
"""

import math

import numpy as np
import pytest

import kerasmorph

SIZE = 64
# Every generating call of a module's Explorer uses one batch shape: one trace.
BATCH = 3


@pytest.fixture(scope="module")
def explorer():
    """One 64x64 `tiny` Explorer, made with KerasCV's positional arguments."""
    return kerasmorph.Explorer("tiny", SIZE, SIZE, False, verbose=False)


@pytest.fixture(scope="module")
def shapes_model():
    """The tutorial's `model`: the trained `shapes` toy model at 64x64."""
    return kerasmorph.Explorer("shapes", SIZE, SIZE, False, verbose=False)


# ------------------------------------------------------------ constructor


def test_constructor_takes_kerascv_positional_sizes(explorer):
    from kerasmorph.explorer import kerascv_api

    assert (explorer.img_height, explorer.img_width, explorer.jit_compile) == (SIZE, SIZE, False)
    # KerasCV's StableDiffusion(img_height, img_width, jit_compile): the sd1 model.
    assert kerascv_api.constructor_arguments(512, 768, True, None) == ("sd1", 512, 768, True)
    assert kerascv_api.constructor_arguments(256, None, None, None) == ("sd1", 256, None, None)
    assert kerascv_api.constructor_arguments("shapes", 64, 64, None) == ("shapes", 64, 64, None)
    with pytest.raises(kerasmorph.InputError, match=r"Explorer\('sd1', img_height"):
        kerasmorph.Explorer(512, 512, True, jit_compile=False)


def test_int_first_argument_is_the_sd1_model(tmp_path):
    from kerasmorph.weights import MissingWeightsError

    # No weights here: the error lists sd1's files, so the int was sd1's height.
    with pytest.raises(MissingWeightsError) as caught:
        kerasmorph.Explorer(128, 128, False, weights_dir=str(tmp_path), download=False)
    assert [f.filename for f in caught.value.missing] == [
        "kcv_encoder.h5",
        "kcv_diffusion_model.h5",
        "kcv_decoder.h5",
    ]


# ------------------------------------------------------------- generation


def test_generate_image_takes_kerascv_positional_order(explorer):
    encoding = explorer.encode_text("a red circle")
    before = explorer.sampler.num_steps_run
    # KerasCV: (encoded_text, negative_prompt, batch_size, ...): 3 images, 50 steps.
    images = explorer.generate_image(encoding, None, 3)
    assert images.shape == (3, SIZE, SIZE, 3) and images.dtype == np.uint8
    assert explorer.sampler.num_steps_run - before == 50  # One batch of 3, 50 steps.
    noise = explorer.noise(1, 0)
    positional = explorer.generate_image(encoding, "blurry", BATCH, 2, 7.5, noise)
    keywords = explorer.generate_image(
        encoding, batch_size=BATCH, num_steps=2, diffusion_noise=noise, negative_prompt="blurry"
    )
    np.testing.assert_array_equal(positional, keywords)


def test_text_to_image_is_kerascvs(explorer):
    # KerasCV's docstring example, with 2 steps.
    images = explorer.text_to_image(
        "photograph of an astronaut riding a horse", batch_size=3, num_steps=2
    )
    assert images.shape == (3, SIZE, SIZE, 3) and images.dtype == np.uint8
    positional = explorer.text_to_image("a red circle", "blurry", BATCH, 2, 5.0, 7)
    expected = explorer.generate_image(
        explorer.encode_text("a red circle"),
        negative_prompt="blurry",
        batch_size=BATCH,
        num_steps=2,
        unconditional_guidance_scale=5.0,
        seed=7,
    )
    np.testing.assert_array_equal(positional, expected)


def test_seed_none_follows_keras_set_random_seed(explorer):
    import keras

    def generate():
        return explorer.text_to_image("a blue square", batch_size=BATCH, num_steps=2)

    keras.utils.set_random_seed(1)
    first = generate()
    keras.utils.set_random_seed(1)
    again = generate()
    keras.utils.set_random_seed(2)
    other = generate()
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    keras.utils.set_random_seed(1)
    encoding = explorer.encode_text("a blue square")
    np.testing.assert_array_equal(
        explorer.generate_image(encoding, batch_size=BATCH, num_steps=2), first
    )


# -------------------------------------------------------------- precision


def test_precision_none_follows_the_global_keras_policy():
    import keras

    previous = keras.config.dtype_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        explorer = kerasmorph.Explorer("tiny", SIZE, SIZE, False, verbose=False)
        explicit = kerasmorph.Explorer("tiny", SIZE, SIZE, False, precision="float32")
        images = explorer.generate_image(explorer.encode_text("x"), num_steps=1, seed=0)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert explorer.diffusion_model.dtype_policy.compute_dtype == "bfloat16"
    assert explorer.text_encoder.dtype_policy.name == "mixed_bfloat16"
    assert explorer.decoder.dtype_policy.name == "float32"
    assert images.dtype == np.uint8
    described = explorer.describe()
    assert described["precision"] == "mixed_bfloat16"
    assert described["precision_source"] == "global Keras policy"
    assert "global Keras policy 'mixed_bfloat16'" in described["precision_plan"]["reason"]
    # An explicit precision wins over the global policy.
    assert explicit.describe()["precision_source"] == "argument"
    assert explicit.precision_plan.diffusion_model == "float32"


def test_precision_none_refuses_a_global_policy_it_cannot_build():
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float16")
    try:
        with pytest.raises(kerasmorph.InputError, match="global Keras dtype policy.*'float16'"):
            kerasmorph.Explorer("tiny", SIZE, SIZE, verbose=False)
    finally:
        keras.config.set_dtype_policy(previous)


# ------------------------------------------------------------- components


def test_private_component_attributes_swap_components():
    from kerasmorph.presets import get_preset

    explorer = kerasmorph.Explorer("tiny", SIZE, SIZE, False, verbose=False)
    assert explorer._image_encoder is None  # KerasCV's: None until built.
    before = explorer.encode_text("a red circle")
    empty_before = explorer.unconditional_context()
    assert explorer._text_encoder is explorer.text_encoder
    # The keras.io textual-inversion guide's two lines.
    new_encoder = kerasmorph.models.build_component(
        get_preset("tiny"), "text_encoder", SIZE, SIZE, seed=1
    )
    explorer._text_encoder = new_encoder
    explorer._text_encoder.compile(jit_compile=True)
    assert explorer.text_encoder is new_encoder
    after = explorer.encode_text("a red circle")
    assert not np.allclose(before, after)
    assert not np.allclose(explorer.unconditional_context(), empty_before)  # Cache dropped.
    # A new UNet: the sampler (and step traced) for the old one is dropped too.
    old_sampler = explorer.sampler
    explorer._diffusion_model = kerasmorph.models.build_component(
        get_preset("tiny"), "diffusion_model", SIZE, SIZE, seed=1
    )
    assert explorer.sampler is not old_sampler
    assert explorer.sampler.diffusion_model is explorer._diffusion_model
    # None forgets a component: the next use builds it from the preset again.
    decoder = explorer.decoder
    explorer._decoder = None
    assert explorer._decoder is None and explorer.decoder is not decoder
    tokenizer = explorer.tokenizer
    explorer._tokenizer = tokenizer
    assert explorer._tokenizer is tokenizer


# ------------------------------------------- keras.io: a walk through latent space


def test_keras_io_latent_walk_tutorial_runs_as_written(shapes_model, tmp_path):
    """The tutorial's calls (examples/generative/random_walks_with_stable_diffusion.py),
    with `num_steps=2`, 64x64 images, a few frames and batches of 3 (one trace)."""
    import keras
    from keras import ops
    from PIL import Image

    model = shapes_model
    width = model.encoding_dim

    prompt_1 = "a red circle"
    prompt_2 = "a blue square"
    interpolation_steps = 3

    encoding_1 = ops.squeeze(model.encode_text(prompt_1))
    encoding_2 = ops.squeeze(model.encode_text(prompt_2))

    interpolated_encodings = ops.linspace(encoding_1, encoding_2, interpolation_steps)
    assert tuple(encoding_1.shape) == (77, width)

    seed = 12345
    noise = keras.random.normal((64 // 8, 64 // 8, 4), seed=seed)

    images = model.generate_image(
        interpolated_encodings,
        batch_size=interpolation_steps,
        diffusion_noise=noise,
        num_steps=2,
    )
    assert images.shape == (interpolation_steps, 64, 64, 3) and images.dtype == np.uint8
    assert not np.array_equal(images[0], images[-1])

    def export_as_gif(filename, images, frames_per_second=10, rubber_band=False):
        if rubber_band:
            images += images[2:-1][::-1]
        images[0].save(
            filename,
            save_all=True,
            append_images=images[1:],
            duration=1000 // frames_per_second,
            loop=0,
        )

    export_as_gif(
        tmp_path / "doggo-and-fruit-5.gif",
        [Image.fromarray(img) for img in images],
        frames_per_second=2,
        rubber_band=True,
    )
    assert Image.open(tmp_path / "doggo-and-fruit-5.gif").n_frames == interpolation_steps

    # Manual batching of a finer interpolation.
    interpolation_steps = 6
    batch_size = 3
    batches = interpolation_steps // batch_size

    interpolated_encodings = ops.linspace(encoding_1, encoding_2, interpolation_steps)
    batched_encodings = ops.split(interpolated_encodings, batches)

    images = []
    for batch in range(batches):
        images += [
            Image.fromarray(img)
            for img in model.generate_image(
                batched_encodings[batch],
                batch_size=batch_size,
                num_steps=2,
                diffusion_noise=noise,
            )
        ]
    assert len(images) == interpolation_steps

    # Four prompts on a grid.
    interpolation_steps = 3
    batch_size = 3
    batches = (interpolation_steps**2) // batch_size
    encoding_3 = ops.squeeze(model.encode_text("a green triangle"))
    encoding_4 = ops.squeeze(model.encode_text("a yellow circle"))
    interpolated_encodings = ops.linspace(
        ops.linspace(encoding_1, encoding_2, interpolation_steps),
        ops.linspace(encoding_3, encoding_4, interpolation_steps),
        interpolation_steps,
    )
    interpolated_encodings = ops.reshape(
        interpolated_encodings, (interpolation_steps**2, 77, width)
    )
    batched_encodings = ops.split(interpolated_encodings, batches)
    images = []
    for batch in range(batches):
        images.append(
            model.generate_image(
                batched_encodings[batch], batch_size=batch_size, diffusion_noise=noise, num_steps=2
            )
        )
    # Varying noise: `diffusion_noise` dropped.
    for batch in range(batches):
        images.append(
            model.generate_image(batched_encodings[batch], batch_size=batch_size, num_steps=2)
        )
    images = np.concatenate(images)
    assert images.shape == (2 * interpolation_steps**2, 64, 64, 3)

    # A walk around a text prompt.
    walk_steps = 6
    batch_size = 3
    batches = walk_steps // batch_size
    step_size = 0.005
    encoding = ops.squeeze(model.encode_text("a red circle"))
    delta = ops.ones_like(encoding) * step_size
    walked_encodings = []
    for step_index in range(walk_steps):
        walked_encodings.append(encoding)
        encoding += delta
    walked_encodings = ops.stack(walked_encodings)
    batched_encodings = ops.split(walked_encodings, batches)
    images = []
    for batch in range(batches):
        images += list(
            model.generate_image(
                batched_encodings[batch], batch_size=batch_size, num_steps=2, diffusion_noise=noise
            )
        )
    assert len(images) == walk_steps

    # A circular walk through the diffusion noise, for one prompt.
    encoding = ops.squeeze(model.encode_text("a blue square"))
    walk_noise_x = keras.random.normal(noise.shape, dtype="float64")
    walk_noise_y = keras.random.normal(noise.shape, dtype="float64")
    walk_scale_x = ops.cos(ops.linspace(0, 2, walk_steps) * math.pi)
    walk_scale_y = ops.sin(ops.linspace(0, 2, walk_steps) * math.pi)
    noise_x = ops.tensordot(walk_scale_x, walk_noise_x, axes=0)
    noise_y = ops.tensordot(walk_scale_y, walk_noise_y, axes=0)
    noise = ops.add(noise_x, noise_y)
    batched_noise = ops.split(noise, batches)
    images = []
    for batch in range(batches):
        images += list(
            model.generate_image(
                encoding, batch_size=batch_size, num_steps=2, diffusion_noise=batched_noise[batch]
            )
        )
    assert len(images) == walk_steps
    # The loop starts at walk_noise_x: its first frame is that noise's image.
    start = model.generate_image(
        encoding, batch_size=batch_size, num_steps=2, diffusion_noise=walk_noise_x
    )
    assert np.abs(start[0].astype(int) - images[0]).max() <= 1


def test_kerascv_docstring_interpolation_example(shapes_model):
    # KerasCV's generate_image docstring: linspace of two (1, 77, D) encodings.
    from keras import ops

    batch_size = 3
    model = shapes_model
    e_tacos = model.encode_text("a red circle")
    e_watermelons = model.encode_text("a blue square")
    e_interpolated = ops.linspace(e_tacos, e_watermelons, batch_size)
    images = model.generate_image(e_interpolated, batch_size=batch_size, num_steps=2, seed=0)
    assert images.shape == (batch_size, 64, 64, 3)
    expected = model.generate_image(ops.squeeze(e_interpolated), num_steps=2, seed=0)
    np.testing.assert_array_equal(images, expected)
