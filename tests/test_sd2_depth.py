"""The `sd2-depth` preset's architecture, fast: a UNet's latent input widened, the preset.

The full-size comparison with diffusers' 5-channel UNet is in
`test_checkpoints_reference.py` (marked `reference`).
"""

import numpy as np
import pytest

from kerasmorph import limits, models, presets
from kerasmorph.models import depth, tiny


@pytest.fixture(scope="module")
def unet():
    return tiny.build_diffusion_model(128, 128, seed=3)


def test_with_input_channels_replaces_only_the_first_conv(unet):
    wide = depth.with_input_channels(unet, 5)
    assert [t.name for t in wide.inputs] == [t.name for t in unet.inputs]
    assert [tuple(t.shape) for t in wide.inputs][1:] == [tuple(t.shape) for t in unet.inputs][1:]
    assert tuple(wide.inputs[0].shape) == (None, 16, 16, 5)
    assert depth.latent_input_channels(wide) == 5 and depth.latent_input_channels(unet) == 4
    # Every variable is the original's but the first conv's kernel and bias, in the same place.
    assert len(wide.weights) == len(unet.weights)
    changed = [index for index, (a, b) in enumerate(zip(unet.weights, wide.weights)) if a is not b]
    old_kernel, old_bias = (unet.weights[index] for index in changed)
    new_kernel, new_bias = (wide.weights[index] for index in changed)
    assert tuple(old_kernel.shape) == (3, 3, 4, 32) and tuple(new_kernel.shape) == (3, 3, 5, 32)
    # With the old kernel and a zero 5th input channel, the wide UNet is the original.
    kernel = old_kernel.numpy()
    new_kernel.assign(np.concatenate([kernel, np.zeros_like(kernel[:, :, :1])], axis=2))
    new_bias.assign(old_bias.numpy())
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((2, 16, 16, 4)).astype(np.float32)
    embedding = rng.standard_normal((2, 320)).astype(np.float32)
    context = rng.standard_normal((2, 77, 64)).astype(np.float32)
    extra = rng.standard_normal((2, 16, 16, 1)).astype(np.float32)
    expected = unet.predict_on_batch([latent, embedding, context])
    got = wide.predict_on_batch([np.concatenate([latent, extra], axis=-1), embedding, context])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_with_input_channels_wraps_for_depth(unet):
    wide = depth.with_input_channels(unet, depth.DEPTH_INPUT_CHANNELS)
    wrapped = depth.with_depth_input(wide)
    assert depth.inner_unet(wrapped) is wide
    assert depth.inner_unet(unet) is unet


@pytest.mark.parametrize("channels", [0, 2.0, True])
def test_with_input_channels_refuses_bad_counts(unet, channels):
    with pytest.raises(ValueError, match="channels"):
        depth.with_input_channels(unet, channels)


def test_sd2_depth_preset_is_sd2_with_a_depth_unet():
    preset, sd2 = presets.PRESETS["sd2-depth"], presets.PRESETS["sd2"]
    assert preset.architecture in models.BUILDERS
    assert "stable-diffusion-2-depth" in preset.description
    assert (preset.default_size, preset.size_multiple) == (sd2.default_size, sd2.size_multiple)
    assert set(preset.weight_files) == set(sd2.weight_files)
    # Converted folders of sd2 and sd2-depth never share a file name.
    names = {file.filename for file in preset.weight_files.values()}
    assert not names & {file.filename for file in sd2.weight_files.values()}
    assert limits.MODEL_COSTS["sd2-depth"] == limits.MODEL_COSTS["sd2"]
    assert preset.kerascv_class is None  # KerasCV never had a depth pipeline.
