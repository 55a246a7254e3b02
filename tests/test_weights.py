"""Offline weight lookup: search order, the missing-file error, loading files."""

import dataclasses

import h5py
import numpy as np
import pytest

import kerasmorph
from kerasmorph import models, presets, weights

SD1_FILES = ["kcv_encoder.h5", "kcv_diffusion_model.h5", "kcv_decoder.h5"]


def save_kerascv_h5(model, path):
    """Writes weights in the legacy Keras .h5 layout that KerasCV's files use."""
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, model)


@pytest.fixture
def no_download(monkeypatch):
    import keras

    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(keras.utils, "get_file", refuse)


def test_search_order(tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    monkeypatch.setenv("KERASMORPH_WEIGHTS", str(second))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    assert weights.search_dirs(first) == [first, second, tmp_path / "home" / "datasets"]
    files = {"decoder": presets.PRESETS["sd1"].weight_files["decoder"]}
    for directory in (tmp_path / "home" / "datasets", second, first):
        directory.mkdir(parents=True)
        (directory / "kcv_decoder.h5").write_bytes(b"x")
        # The highest-priority directory holding the file wins.
        assert weights.find_weights(files, first)["decoder"] == directory / "kcv_decoder.h5"


def test_missing_weights_error_lists_files_hashes_and_dirs(tmp_path, monkeypatch, no_download):
    def refuse_build(*args, **kwargs):
        raise AssertionError("a component was built before the error")

    monkeypatch.setitem(models.BUILDERS, "sd1", refuse_build)
    with pytest.raises(weights.MissingWeightsError) as caught:
        kerasmorph.Explorer("sd1", weights_dir=tmp_path)
    message = str(caught.value)
    for name in SD1_FILES:
        assert name in message
    for file in presets.PRESETS["sd1"].weight_files.values():
        if file.component != "image_encoder":
            assert file.sha256 in message
    assert "vae_encoder.h5" not in message  # Only needed for image input.
    assert str(tmp_path) in message and "offline" in message
    assert [f.filename for f in caught.value.missing] == SD1_FILES


def test_partially_present_lists_only_missing(tmp_path, no_download):
    (tmp_path / "kcv_encoder.h5").write_bytes(b"x")
    with pytest.raises(weights.MissingWeightsError) as caught:
        kerasmorph.Explorer("sd2", weights_dir=tmp_path, download=False)
    names = [f.filename for f in caught.value.missing]
    assert names == ["text_encoder_v2_1.h5", "diffusion_model_v2_1.h5", "kcv_decoder.h5"]
    assert "downloading is disabled" in str(caught.value)


@pytest.mark.parametrize("download", [None, True])
def test_sd2_depth_files_are_never_downloaded(tmp_path, monkeypatch, no_download, download):
    monkeypatch.delenv("KERASMORPH_OFFLINE")  # Even online and asked to: no origin exists.
    monkeypatch.setattr(weights, "is_offline", lambda: False)
    with pytest.raises(weights.MissingWeightsError) as caught:
        kerasmorph.Explorer("sd2-depth", weights_dir=tmp_path, download=download)
    names = [f.filename for f in caught.value.missing]
    assert names == [
        "text_encoder_v2_depth.h5",
        "diffusion_model_v2_depth.h5",
        "decoder_v2_depth.h5",
    ]
    message = str(caught.value)
    assert "no download exists" in message and "kerasmorph convert" in message
    assert str(tmp_path) in message
    assert not any(file.downloadable for file in presets.PRESETS["sd2-depth"].weight_files.values())


@pytest.fixture
def tiny_with_files(monkeypatch):
    """The tiny architecture registered as a preset that loads weight files."""
    files = {
        name: weights.WeightFile(name, f"tiny_{name}.h5", "0" * 64, "https://invalid/")
        for name in presets.COMPONENTS
    }
    preset = dataclasses.replace(presets.PRESETS["tiny"], name="tiny_files", weight_files=files)
    monkeypatch.setitem(presets.PRESETS, "tiny_files", preset)
    return preset


def test_weight_files_are_loaded_not_downloaded(tmp_path, tiny_with_files, no_download):
    from kerasmorph.models import tiny

    text_encoder = tiny.build_text_encoder(seed=5)
    decoder = tiny.build_decoder(128, 128, seed=5)
    unet = tiny.build_diffusion_model(128, 128, seed=5)
    save_kerascv_h5(text_encoder, tmp_path / "tiny_text_encoder.h5")
    save_kerascv_h5(decoder, tmp_path / "tiny_decoder.h5")
    save_kerascv_h5(unet, tmp_path / "tiny_diffusion_model.h5")
    explorer = kerasmorph.Explorer(
        "tiny_files", weights_dir=tmp_path, jit_compile=False, verbose=False, seed=0
    )
    for loaded, saved in zip(explorer.text_encoder.weights, text_encoder.weights):
        np.testing.assert_array_equal(loaded.numpy(), saved.numpy())
    latents = np.random.default_rng(0).standard_normal((1, 16, 16, 4)).astype("float32")
    np.testing.assert_allclose(explorer.decoder(latents), decoder(latents), rtol=1e-5, atol=1e-5)
    assert explorer.describe()["weights"]["decoder"] == str(tmp_path / "tiny_decoder.h5")
    # The image encoder's file is looked up only when first needed.
    with pytest.raises(weights.MissingWeightsError, match="tiny_image_encoder.h5"):
        explorer.image_encoder  # noqa: B018


@pytest.mark.parametrize("content", ["garbage", "wrong_architecture"])
def test_unreadable_or_wrong_files_name_the_file(tmp_path, tiny_with_files, content):
    from kerasmorph.models import tiny

    path = tmp_path / "tiny_text_encoder.h5"
    if content == "garbage":
        path.write_bytes(b"not an h5 file")
    else:
        save_kerascv_h5(tiny.build_decoder(128, 128), path)
    for name in ("diffusion_model", "decoder"):
        (tmp_path / f"tiny_{name}.h5").write_bytes(b"")
    explorer = kerasmorph.Explorer("tiny_files", weights_dir=tmp_path, verbose=False)
    with pytest.raises(models.WeightsLoadError, match=r"tiny_text_encoder.h5.*text_encoder"):
        explorer.encode_text("x")


def test_dtype_policy_scope_restores_on_error():
    import keras

    keras.config.set_dtype_policy("float32")
    with pytest.raises(RuntimeError):
        with models.dtype_policy_scope("mixed_float16"):
            assert keras.config.dtype_policy().name == "mixed_float16"
            raise RuntimeError
    assert keras.config.dtype_policy().name == "float32"


@pytest.mark.slow
def test_sd1_text_encoder_and_decoder_files_load(tmp_path, no_download):
    """Real KerasCV sd1 architectures, random weights saved as KerasCV's files."""
    import keras
    from keras_cv.src.models.stable_diffusion.decoder import Decoder
    from keras_cv.src.models.stable_diffusion.text_encoder import TextEncoder

    keras.utils.set_random_seed(1)
    text_encoder = TextEncoder(77, download_weights=False)
    decoder = Decoder(128, 128, download_weights=False)
    save_kerascv_h5(text_encoder, tmp_path / "kcv_encoder.h5")
    save_kerascv_h5(decoder, tmp_path / "kcv_decoder.h5")
    # Present but never built in this test: only its existence is checked.
    (tmp_path / "kcv_diffusion_model.h5").write_bytes(b"")
    explorer = kerasmorph.Explorer(
        "sd1",
        img_height=128,
        img_width=128,
        weights_dir=tmp_path,
        jit_compile=False,
        verbose=False,
    )
    encoding = explorer.encode_text("a photograph of an astronaut riding a horse")
    assert encoding.shape == (1, 77, 768)
    tokens = np.asarray([explorer.tokenize("a photograph of an astronaut riding a horse")])
    positions = np.arange(77, dtype="int32")[None]
    reference = text_encoder.predict_on_batch({"tokens": tokens, "positions": positions})
    np.testing.assert_allclose(encoding, reference, rtol=1e-5, atol=1e-5)
    latents = np.random.default_rng(0).standard_normal((1, 16, 16, 4)).astype("float32")
    reference_image = np.clip((decoder.predict_on_batch(latents) + 1) / 2 * 255, 0, 255)
    assert np.abs(explorer.decode(latents).astype(int) - reference_image.astype("uint8")).max() <= 1
