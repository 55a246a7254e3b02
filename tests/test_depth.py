"""Depth-to-image: depth maps, the 5-channel UNet wrapper, and `shapes-depth` from pixels."""

import dataclasses
import warnings

import numpy as np
import pytest
from PIL import Image

import kerasmorph
from kerasmorph import images
from kerasmorph.errors import InputError
from kerasmorph.models import depth as depth_lib
from kerasmorph.shapes import data as shapes_data
from kerasmorph.shapes import model as shapes_model

# ------------------------------------------------------------------ depth maps


def test_depth_is_resized_and_normalised_per_image():
    depth = np.zeros((128, 128), np.float32)
    depth[64:, 64:] = 10.0  # A near square in the bottom right.
    latent = images.depth_to_latent(depth, (16, 16))
    assert latent.shape == (1, 16, 16, 1) and latent.dtype == np.float32
    assert latent.min() == -1.0 and latent.max() == 1.0
    np.testing.assert_array_equal(latent[0, 10:, 10:, 0], 1.0)
    np.testing.assert_array_equal(latent[0, :6, :6, 0], -1.0)
    # The same map scaled and shifted normalises to the same latent map.
    np.testing.assert_allclose(images.depth_to_latent(depth * 3 + 7, (16, 16)), latent, atol=1e-6)
    with pytest.raises(InputError, match="constant"):
        images.depth_to_latent(np.full((8, 8), 2.0), (4, 4))
    with pytest.raises(InputError, match="NaN"):
        images.depth_to_latent(np.full((8, 8), np.nan), (4, 4))


def test_depth_files_load_as_they_are_stored(tmp_path):
    ramp = np.tile(np.arange(0, 65536, 512, dtype=np.uint16), (128, 1))  # 16-bit, 128 wide.
    Image.fromarray(ramp).save(tmp_path / "d16.png")
    loaded = images.load_depth_map(tmp_path / "d16.png", (128, 128))
    np.testing.assert_array_equal(loaded, ramp.astype(np.float32))
    Image.fromarray((ramp >> 8).astype(np.uint8)).save(tmp_path / "d8.png")
    np.testing.assert_array_equal(images.load_depth_map(tmp_path / "d8.png"), ramp >> 8)
    np.save(tmp_path / "d.npy", ramp.astype(np.float32) / 7)
    np.testing.assert_allclose(images.load_depth_map(tmp_path / "d.npy"), ramp / 7, rtol=1e-6)
    rgb = np.repeat((ramp >> 8).astype(np.uint8)[..., None], 3, axis=-1)
    with pytest.warns(UserWarning, match="3 channels, not one"):
        images.load_depth_map(rgb)
    with pytest.warns(UserWarning, match="another aspect ratio"):
        images.load_depth_map(np.zeros((64, 128)), (128, 128))
    (tmp_path / "d.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="must be .png, .tif, .tiff, .npy"):
        images.load_depth_map(tmp_path / "d.jpg")
    with pytest.raises(FileNotFoundError, match="No depth map"):
        images.load_depth_map(tmp_path / "missing.png")


# ---------------------------------------------------------- the UNet wrapper


@pytest.fixture(scope="module")
def depth_unet():
    import keras

    keras.utils.set_random_seed(0)
    config = dataclasses.replace(shapes_model.TINY_CONFIG, input_channels=5)
    unet = shapes_model.build_diffusion_model(128, 128, config)
    for weight in unet.weights:  # The zero-initialised output conv would hide everything.
        weight.assign(np.random.default_rng(0).normal(0, 0.05, weight.shape).astype("float32"))
    return unet, depth_lib.with_depth_input(unet)


def _inputs(batch, width):
    rng = np.random.default_rng(1)
    return {
        "latent": rng.standard_normal((batch, 16, 16, 4)).astype("float32"),
        "timestep_embedding": rng.standard_normal((batch, 320)).astype("float32"),
        "context": rng.standard_normal((batch, 77, width)).astype("float32"),
    }


def test_the_wrapper_concatenates_the_stored_map_to_every_row(depth_unet):
    unet, wrapped = depth_unet
    assert depth_lib.latent_input_channels(unet) == 5
    assert {t.name: t.shape[-1] for t in wrapped.inputs}["latent"] == 4
    assert {w.path for w in unet.weights} <= {w.path for w in wrapped.weights}  # Shared.
    inputs = _inputs(3, shapes_model.TINY_CONFIG.text_width)
    depth = np.random.default_rng(2).uniform(-1, 1, (1, 16, 16, 1)).astype("float32")
    depth_lib.set_depth_map(wrapped, depth)
    got = np.asarray(wrapped(inputs))
    five = np.concatenate([inputs["latent"], np.repeat(depth, 3, axis=0)], axis=-1)
    expected = np.asarray(unet([five, inputs["timestep_embedding"], inputs["context"]]))
    np.testing.assert_allclose(got, expected, atol=1e-6)
    depth_lib.set_depth_map(wrapped, -depth)  # Another map changes the output.
    assert np.abs(np.asarray(wrapped(inputs)) - got).max() > 1e-3
    with pytest.raises(ValueError, match=r"shape \(1, 16, 16, 1\)"):
        depth_lib.set_depth_map(wrapped, np.zeros((1, 8, 8, 1)))


def test_a_depth_model_without_a_map_is_refused(depth_unet):
    _, wrapped = depth_unet
    fresh = depth_lib.with_depth_input(depth_unet[0])
    with pytest.raises(InputError, match="needs a depth map"):
        depth_lib.check_depth_set(fresh)
    depth_lib.check_depth_set(wrapped)  # Set by the test above or not: only `fresh` is unset.
    with pytest.raises(ValueError, match="no depth input"):
        depth_lib.set_depth_map(depth_unet[0], np.zeros((1, 16, 16, 1)))


def test_a_four_channel_model_refuses_a_depth_map(tiny_explorer):
    assert not tiny_explorer.takes_depth
    with pytest.raises(InputError, match="has no depth input"):
        tiny_explorer.set_depth_map(np.eye(128))


# ------------------------------------------------------------- shapes-depth


def square_depth(center=(0.7, 0.7), size=0.45):
    """A square's depth map (near 1, far 0, blurred), and its foreground mask."""
    sample = shapes_data.Sample("red", "square", size, center)
    return shapes_data.depth_map(sample), shapes_data.coverage(sample) > 0.5


def iou(a, b):
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.fixture(scope="module")
def depth_explorer():
    return kerasmorph.Explorer("shapes-depth", precision="auto", verbose=False)


def test_shapes_depth_follows_the_depth_map(depth_explorer):
    """A square's depth map in the bottom right, "a red circle", from a blue triangle top left."""
    depth, foreground = square_depth()
    start = shapes_data.render(shapes_data.Sample("blue", "triangle", 0.4, (0.3, 0.3)))
    with pytest.raises(InputError, match="needs a depth map"):
        kerasmorph.Explorer("shapes-depth", verbose=False).text_to_image("a red circle")
    frames = depth_explorer.depth_to_image(
        start, "a red circle", depth_map=depth, num_steps=25, seed=0
    )
    assert frames.shape == (1, 128, 128, 3)
    noise = depth_explorer.noise(8, 1)
    many = depth_explorer.depth_to_image(
        [start] * 8, "a red circle", depth_map=depth, num_steps=25, diffusion_noise=noise
    )
    masks = [shapes_data.shape_mask(frame) for frame in many]
    scores = [iou(mask, foreground) for mask in masks]
    colours = [shapes_data.measure(frame).colour for frame in many]
    assert np.mean(scores) >= IOU_THRESHOLD, scores
    assert np.mean([c == "red" for c in colours]) >= 0.75, colours


IOU_THRESHOLD = 0.5


def test_a_depth_locked_walk_keeps_the_layout(depth_explorer):
    depth, foreground = square_depth((0.35, 0.6), 0.4)
    depth_explorer.set_depth_map(depth)
    frames = kerasmorph.walks.interpolate(
        depth_explorer, ["a red circle", "a blue square"], 5, num_steps=20, seed=0
    )
    masks = [shapes_data.shape_mask(frame) for frame in frames]
    assert min(iou(mask, foreground) for mask in masks) >= IOU_THRESHOLD
    assert min(iou(a, b) for a, b in zip(masks, masks[1:])) >= 0.6
    colours = [shapes_data.measure(frame).colour for frame in frames]
    assert colours[0] == "red" and colours[-1] == "blue", colours


def test_warnings_are_not_raised_for_a_square_map():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        images.load_depth_map(np.zeros((128, 128)), (128, 128))


def test_walks_from_an_image_start_every_frame_from_it():
    explorer = kerasmorph.Explorer("shapes", verbose=False)
    start = shapes_data.render(shapes_data.Sample("blue", "triangle", 0.4, (0.3, 0.3)))
    walk = kerasmorph.walks.prompt_walk(explorer, ["a red circle", "a green square"], 3, seed=0)
    from_image = kerasmorph.walks.from_image(explorer, walk, start, strength=0.5)
    assert from_image.start_latents.shape == (1, 16, 16, 4) and walk.start_latents is None
    frames = np.stack(list(explorer.render(from_image, num_steps=10, batch_size=1)))
    # Frame 0 is img2img of the picture with the walk's own noise.
    _, noise = walk.inputs([0])
    expected = explorer.image_to_image(
        start, "a red circle", strength=0.5, num_steps=10, diffusion_noise=noise
    )
    assert np.abs(frames[0].astype(int) - expected[0].astype(int)).max() <= 2
    free = np.stack(list(explorer.render(walk, num_steps=10, batch_size=1)))
    assert np.abs(frames.astype(int) - free.astype(int)).mean() > 10  # The start matters.
    subset = from_image.subset([2])
    assert subset.start_latents is from_image.start_latents and subset.strength == 0.5
    with pytest.raises(ValueError, match=r"strength` must be in \(0, 1\]"):
        kerasmorph.walks.from_image(explorer, walk, start, strength=0.0)
    with pytest.raises(ValueError, match="runs no denoising step"):
        list(
            explorer.render(kerasmorph.walks.from_image(explorer, walk, start, 0.05), num_steps=10)
        )
    with pytest.raises(ValueError, match="starts from one image"):
        kerasmorph.walks.from_image(explorer, walk, [start, start])


def test_depth_models_resize_and_take_long_prompts(depth_explorer):
    """The wrapped UNet is rewired like any UNet: another size, and 154-token contexts."""
    depth, _ = square_depth()
    start = shapes_data.render(shapes_data.Sample("blue", "triangle", 0.4, (0.3, 0.3)))
    taller = depth_explorer.resized(192, 128)
    assert taller.takes_depth
    with pytest.warns(UserWarning, match="another aspect ratio"):
        image = taller.depth_to_image(start, "a red circle", depth_map=depth, num_steps=10, seed=0)
    assert image.shape == (1, 192, 128, 3)
    x, y = shapes_data.measure(image[0]).centroid
    assert x > 0.55 and y > 0.55, (x, y)  # Where the (stretched) map's square is.
    encodings = depth_explorer.encode_text(" ".join(["a red circle"] * 40), long_prompts=True)
    assert encodings.shape[1] == 154
    image = depth_explorer.depth_to_image(start, encodings, depth_map=depth, num_steps=10, seed=0)
    x, y = shapes_data.measure(image[0]).centroid
    assert x > 0.55 and y > 0.55, (x, y)  # The long-prompt UNet sees the same stored map.
