"""Checkpoint conversion without torch: round trips through CompVis files, errors.

The comparison with diffusers' own models lives in
`test_checkpoints_reference.py` (marked `reference`).
"""

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from kerasmorph import checkpoints, models, presets

_CROSS_KEY = checkpoints.CHECKPOINT_KEY_NAMES["compvis"]["cross_attention"]
_UNET_INPUT_KEY = checkpoints.CHECKPOINT_KEY_NAMES["compvis"]["unet_input"]


def _randomize(model, seed):
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(rng.standard_normal(variable.shape, dtype=np.float32) * 0.05)


def _build(preset, component):
    return models.build_component(presets.PRESETS[preset], component, 128, 128)


@pytest.fixture(scope="module")
def vae_models():
    """A random sd1 decoder and image encoder (seconds to build)."""
    decoder, encoder = _build("sd1", "decoder"), _build("sd1", "image_encoder")
    _randomize(decoder, 1)
    _randomize(encoder, 2)
    return {"decoder": decoder, "image_encoder": encoder}


@pytest.fixture(scope="module")
def vae_file(vae_models, tmp_path_factory):
    """The VAE exported as a CompVis single file, with EMA and an unrelated key."""
    state = checkpoints.compvis_state_dict(vae_models)
    state["model_ema.decay"] = np.array(0.9999, dtype=np.float32)
    state["model_ema.first_stage_modelencoderconv_inweight"] = np.zeros((2, 2), np.float32)
    path = tmp_path_factory.mktemp("vae") / "vae.safetensors"
    save_file(state, str(path))
    return path, state


def test_plan_covers_every_weight_once(vae_models):
    for component, model in vae_models.items():
        plan = checkpoints.weight_plan(model, component)
        assert [id(v) for v, _ in plan] == [id(v) for v in model.weights]
        names = [ref.name for _, ref in plan]
        assert len(set(names)) == len(names)


def test_compvis_names_follow_compvis_layout(vae_file):
    _, state = vae_file
    # CompVis numbers decoder levels in reverse: KerasCV's first up block is up.3.
    assert state["first_stage_model.decoder.up.3.block.0.conv1.weight"].shape == (512, 512, 3, 3)
    assert state["first_stage_model.decoder.up.0.block.0.nin_shortcut.weight"].shape == (
        128,
        256,
        1,
        1,
    )
    assert state["first_stage_model.encoder.mid.attn_1.q.weight"].shape == (512, 512, 1, 1)
    assert state["first_stage_model.post_quant_conv.weight"].shape == (4, 4, 1, 1)


def test_vae_round_trip_is_exact(vae_models, vae_file):
    path, _ = vae_file
    with checkpoints.open_checkpoint(path) as source:
        for component, model in vae_models.items():
            fresh = _build("sd1", component)
            checkpoints.load_component(fresh, component, source, "sd1")
            for expected, got in zip(model.weights, fresh.weights):
                np.testing.assert_array_equal(got.numpy(), expected.numpy())


def test_float16_file_is_cast_to_float32(vae_models, vae_file, tmp_path):
    _, state = vae_file
    half = {key: value.astype(np.float16) for key, value in state.items()}
    path = tmp_path / "half.safetensors"
    save_file(half, str(path))
    decoder = _build("sd1", "decoder")
    with checkpoints.open_checkpoint(path) as source:
        checkpoints.load_component(decoder, "decoder", source, "sd1")
    for expected, got in zip(vae_models["decoder"].weights, decoder.weights):
        assert got.dtype == "float32"
        np.testing.assert_array_equal(
            got.numpy(), expected.numpy().astype(np.float16).astype(np.float32)
        )


def test_bfloat16_tensors_are_widened(tmp_path):
    values = np.array([1.0, -2.5, 3.140625], dtype=np.float32)
    # bfloat16 = the top 16 bits of float32; safetensors.numpy cannot write it.
    raw = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    header = json.dumps({"w": {"dtype": "BF16", "shape": [3], "data_offsets": [0, len(raw)]}})
    header = header.encode() + b" " * (-len(header) % 8)
    path = tmp_path / "bf16.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + raw)
    with checkpoints.open_checkpoint(path) as source:
        np.testing.assert_array_equal(source.get("w"), values)


def test_missing_tensor_is_named(vae_file, tmp_path):
    _, state = vae_file
    missing = "first_stage_model.decoder.up.1.upsample.conv.weight"
    truncated = {key: value for key, value in state.items() if key != missing}
    path = tmp_path / "truncated.safetensors"
    save_file(truncated, str(path))
    decoder = _build("sd1", "decoder")
    before = [w.numpy().copy() for w in decoder.weights[:2]]
    with checkpoints.open_checkpoint(path) as source:
        with pytest.raises(checkpoints.CheckpointError, match=missing.replace(".", r"\.")):
            checkpoints.load_component(decoder, "decoder", source, "sd1")
    # Nothing was assigned before the error.
    np.testing.assert_array_equal(decoder.weights[0].numpy(), before[0])


def test_misfitting_tensor_is_named(vae_file, tmp_path):
    _, state = vae_file
    bad = dict(state)
    key = "first_stage_model.encoder.down.1.block.0.conv1.weight"
    bad[key] = np.zeros((256, 64, 3, 3), np.float32)
    path = tmp_path / "bad.safetensors"
    save_file(bad, str(path))
    with checkpoints.open_checkpoint(path) as source:
        with pytest.raises(
            checkpoints.CheckpointError,
            match=r"down\.1\.block\.0\.conv1\.weight.*\(256, 64, 3, 3\).*\(256, 128, 3, 3\)",
        ):
            checkpoints.load_component(
                _build("sd1", "image_encoder"), "image_encoder", source, "sd1"
            )


def test_truncated_file_gives_a_clear_error(vae_file, tmp_path):
    path, _ = vae_file
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(checkpoints.CheckpointError, match="truncated"):
        checkpoints.open_checkpoint(cut)


@pytest.mark.parametrize("width, family", [(768, "sd1"), (1024, "sd2")])
def test_detect_family_from_cross_attention(tmp_path, width, family):
    path = tmp_path / "unet.safetensors"
    save_file({_CROSS_KEY: np.zeros((320, width), np.float32)}, str(path))
    with checkpoints.open_checkpoint(path) as source:
        assert checkpoints.detect_family(source) == family


def test_detect_family_rejects_sdxl_and_unknown(tmp_path):
    path = tmp_path / "xl.safetensors"
    save_file({"conditioner.embedders.0.transformer.x": np.zeros(2, np.float32)}, str(path))
    with checkpoints.open_checkpoint(path) as source:
        with pytest.raises(checkpoints.CheckpointError, match="SDXL"):
            checkpoints.detect_family(source)
    path = tmp_path / "odd.safetensors"
    save_file({_CROSS_KEY: np.zeros((320, 512), np.float32)}, str(path))
    with checkpoints.open_checkpoint(path) as source:
        with pytest.raises(checkpoints.CheckpointError, match="512-wide"):
            checkpoints.detect_family(source)


def _unet_keys(tmp_path, width, channels):
    """A UNet's two telling tensors, as a CompVis single file and as a diffusers folder."""
    single = tmp_path / "unet.safetensors"
    cross = np.zeros((320, width), np.float32)
    conv_in = np.zeros((320, channels, 3, 3), np.float32)
    save_file({_CROSS_KEY: cross, _UNET_INPUT_KEY: conv_in}, str(single))
    names = checkpoints.CHECKPOINT_KEY_NAMES["diffusers"]
    folder = tmp_path / "folder"
    (folder / "unet").mkdir(parents=True)
    save_file(
        {
            names["cross_attention"].removeprefix("unet/"): cross,
            names["unet_input"].removeprefix("unet/"): conv_in,
        },
        str(folder / "unet" / "diffusion_pytorch_model.safetensors"),
    )
    return single, folder


@pytest.mark.parametrize(
    "width, channels, family", [(1024, 5, "sd2-depth"), (1024, 4, "sd2"), (768, 4, "sd1")]
)
def test_detect_family_from_unet_input_channels(tmp_path, width, channels, family):
    for checkpoint in _unet_keys(tmp_path, width, channels):
        with checkpoints.open_checkpoint(checkpoint) as source:
            assert checkpoints.detect_family(source) == family


@pytest.mark.parametrize(
    "width, channels, match", [(1024, 9, "9 input channels.*inpainting"), (768, 5, "SD 2.x")]
)
def test_detect_family_rejects_other_unet_inputs(tmp_path, width, channels, match):
    for checkpoint in _unet_keys(tmp_path, width, channels):
        with checkpoints.open_checkpoint(checkpoint) as source:
            with pytest.raises(checkpoints.CheckpointError, match=match):
                checkpoints.detect_family(source)


def test_unknown_suffix_and_missing_path(tmp_path):
    odd = tmp_path / "model.onnx"
    odd.write_bytes(b"x")
    with pytest.raises(checkpoints.CheckpointError, match="Received: checkpoint="):
        checkpoints.open_checkpoint(odd)
    with pytest.raises(FileNotFoundError):
        checkpoints.open_checkpoint(tmp_path / "nothing.safetensors")


def test_ckpt_without_torch_names_the_install(tmp_path, without_torch):
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"not read")
    with pytest.raises(ImportError, match="pip install torch"):
        checkpoints.open_checkpoint(path)


def test_ckpt_read_with_weights_only(vae_file, tmp_path):
    torch = pytest.importorskip("torch", reason="reading .ckpt needs torch")
    _, state = vae_file
    path = tmp_path / "model.ckpt"
    torch.save(
        {"state_dict": {k: torch.from_numpy(v) for k, v in state.items()}, "global_step": 5},
        str(path),
    )
    with checkpoints.open_checkpoint(path) as source:
        key = "first_stage_model.decoder.conv_in.weight"
        np.testing.assert_array_equal(source.get(key), state[key])
    # A pickle with arbitrary objects is refused, not executed.
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hook": _Unpicklable()}, str(evil))
    with pytest.raises(checkpoints.CheckpointError, match="weights_only"):
        checkpoints.open_checkpoint(evil)


class _Unpicklable:
    """A class `torch.load(weights_only=True)` must refuse to rebuild."""


@pytest.mark.slow
def test_sd2_text_encoder_fuses_and_splits_in_proj(tmp_path):
    model = _build("sd2", "text_encoder")
    _randomize(model, 3)
    state = checkpoints.compvis_state_dict({"text_encoder": model})
    fused = state["cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"]
    assert fused.shape == (3072, 1024)
    q_kernel = model.layers[3].clip_attn.q_proj.kernel.numpy()  # (in, out)
    np.testing.assert_array_equal(fused[:1024], q_kernel.T)
    assert "cond_stage_model.model.transformer.resblocks.23.ln_1.weight" not in state
    path = tmp_path / "sd2_text.safetensors"
    save_file(state, str(path))
    fresh = _build("sd2", "text_encoder")
    with checkpoints.open_checkpoint(path) as source:
        assert checkpoints.detect_family(source) == "sd2"
        checkpoints.load_component(fresh, "text_encoder", source)
    for expected, got in zip(model.weights, fresh.weights):
        np.testing.assert_array_equal(got.numpy(), expected.numpy())
    # The sd1 text encoder does not fit these tensors: the error names the first.
    with checkpoints.open_checkpoint(path) as source:
        with pytest.raises(checkpoints.CheckpointError, match="token_embedding"):
            checkpoints.load_component(_build("sd1", "text_encoder"), "text_encoder", source, "sd1")


def test_convert_writes_kerascv_files_that_load_back(vae_models, vae_file, tmp_path):
    path, _ = vae_file
    result = checkpoints.convert(
        path, tmp_path / "out", family="sd1", components=("decoder", "image_encoder")
    )
    assert result.preset == "sd1"
    assert sorted(p.name for p in result.files.values()) == ["kcv_decoder.h5", "vae_encoder.h5"]
    manifest = checkpoints.read_manifest(tmp_path / "out")
    assert manifest["preset"] == "sd1"
    assert manifest["files"]["decoder"] == "kcv_decoder.h5"
    loaded = models.build_component(
        presets.PRESETS["sd1"], "decoder", 128, 128, weights_path=result.files["decoder"]
    )
    for expected, got in zip(vae_models["decoder"].weights, loaded.weights):
        np.testing.assert_array_equal(got.numpy(), expected.numpy())
    with pytest.raises(FileExistsError, match="overwrite"):
        checkpoints.convert(path, tmp_path / "out", family="sd1", components=("decoder",))


def test_state_dict_helpers_round_trip(vae_models):
    decoder = vae_models["decoder"]
    state = checkpoints.component_state_dict(decoder, "decoder")
    assert "vae/decoder.up_blocks.0.resnets.0.conv1.weight" in state
    fresh = _build("sd1", "decoder")
    checkpoints.assign_state_dict(fresh, "decoder", state)
    np.testing.assert_array_equal(fresh.weights[5].numpy(), decoder.weights[5].numpy())
    state.pop("vae/decoder.conv_out.bias")
    with pytest.raises(ValueError, match="conv_out.bias"):
        checkpoints.assign_state_dict(fresh, "decoder", state)


def test_explorer_opens_a_converted_folder_by_its_manifest(tmp_path):
    import kerasmorph

    # Weight files are looked up at once but built lazily: names suffice here.
    for name in ("text_encoder_v2_1.h5", "diffusion_model_v2_1.h5", "kcv_decoder.h5"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / checkpoints.MANIFEST_NAME).write_text('{"format": 1, "preset": "sd2", "files": {}}')
    explorer = kerasmorph.Explorer(str(tmp_path), verbose=False)
    assert explorer.preset.name == "sd2"
    assert explorer.describe()["weights"]["diffusion_model"] == str(
        tmp_path / "diffusion_model_v2_1.h5"
    )
    with pytest.raises(ValueError, match="its own weights_dir"):
        kerasmorph.Explorer(str(tmp_path), weights_dir=str(tmp_path / "other"))
    (tmp_path / checkpoints.MANIFEST_NAME).write_text('{"preset": "sd9"}')
    with pytest.raises(ValueError, match="sd9"):
        kerasmorph.Explorer(str(tmp_path))


def test_explorer_opens_a_converted_depth_folder_as_sd2_depth(tmp_path):
    import kerasmorph
    from kerasmorph import weights

    files = presets.PRESETS["sd2-depth"].weight_files
    for name in ("text_encoder", "diffusion_model", "decoder"):
        (tmp_path / files[name].filename).write_bytes(b"")
    manifest = {"format": 1, "preset": "sd2-depth", "files": {}}
    (tmp_path / checkpoints.MANIFEST_NAME).write_text(json.dumps(manifest))
    explorer = kerasmorph.Explorer(str(tmp_path), verbose=False)
    assert explorer.preset.name == "sd2-depth"
    assert explorer.describe()["weights"]["diffusion_model"] == str(
        tmp_path / "diffusion_model_v2_depth.h5"
    )
    # A converted folder lacking a file names it; nothing else is looked for.
    (tmp_path / "decoder_v2_depth.h5").unlink()
    with pytest.raises(weights.IncompleteConversionError, match="decoder_v2_depth.h5"):
        kerasmorph.Explorer(str(tmp_path), verbose=False)
