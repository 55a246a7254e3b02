"""Converted weights against diffusers/transformers on PyTorch (the reference).

For SD 1.5 and SD 2.1 configurations, diffusers' `UNet2DConditionModel`,
`AutoencoderKL` and transformers' `CLIPTextModel` are built with random
weights (no download), saved as a diffusers folder and as a CompVis single
file, converted with kerasmorph, and run on the same inputs as the KerasCV
components. The single file is checked independently: diffusers' own CompVis
converters (`diffusers.loaders.single_file_utils`) must turn it back into the
original state dicts. stable-diffusion-2-depth's UNet (SD 2.1's with
`in_channels=5`) is checked the same way, alone (`depth_bundle`: a UNet-only
folder and file, converted into the `sd2-depth` preset; ~4 minutes, ~8 GB).

KerasCV's architecture differs from the reference in three places; each test
also compares against a reference patched to KerasCV's choice, which isolates
the conversion error (~1e-6) from the architecture's (printed with `-s`):
- `TextEncoderV2` uses the tanh GELU approximation (OpenCLIP: exact GELU);
- the UNet's GEGLU uses the tanh GELU approximation (CompVis/diffusers: exact),
  and its spatial-transformer GroupNorm has epsilon 1e-5 (reference: 1e-6);
- every VAE GroupNorm has epsilon 1e-5 (CompVis VAE: 1e-6).

Run: `pytest -s -m reference tests/test_checkpoints_reference.py` (about 10
minutes on a CPU; ~10 GB of memory at peak for the UNet).
"""

import gc
import shutil
import types

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="reference tests need torch: pip install 'kerasmorph[reference]'"
)
diffusers = pytest.importorskip(
    "diffusers", reason="reference tests need diffusers: pip install 'kerasmorph[reference]'"
)
transformers = pytest.importorskip(
    "transformers", reason="reference tests need transformers: pip install 'kerasmorph[reference]'"
)

from kerasmorph import checkpoints, models, presets  # noqa: E402
from kerasmorph.sampler import timestep_embeddings  # noqa: E402

pytestmark = [pytest.mark.reference, pytest.mark.slow]

TOLERANCE = 1e-3
SIZE = 128  # Image side: 16x16 latents.
TOKENS = [
    49406,
    320,
    1125,
    539,
    320,
    2368,
    525,
    518,
    3772,
    49407,
]  # "a photo of a cat on the beach"

# The SD 1.5 / SD 2.1 configurations (stable-diffusion-v1-5, stable-diffusion-2-1).
UNET_CONFIG = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    block_out_channels=[320, 640, 1280, 1280],
    layers_per_block=2,
    norm_num_groups=32,
    norm_eps=1e-5,
    flip_sin_to_cos=True,
    freq_shift=0,
)
UNET_FAMILY = {
    "sd1": dict(cross_attention_dim=768, attention_head_dim=8),
    "sd2": dict(
        cross_attention_dim=1024, attention_head_dim=[5, 10, 20, 20], use_linear_projection=True
    ),
}
VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
    block_out_channels=[128, 256, 512, 512],
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=32,
    sample_size=512,
)
TEXT_CONFIG = {
    "sd1": dict(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        hidden_act="quick_gelu",
        projection_dim=768,
    ),
    # SD 2.1's diffusers text encoder keeps the 23 layers SD2 uses (of OpenCLIP's 24).
    "sd2": dict(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=23,
        num_attention_heads=16,
        hidden_act="gelu",
        projection_dim=512,
    ),
}


def relative_error(output, reference):
    return float(np.abs(output - reference).max() / np.abs(reference).max())


def _perturb(module, seed):
    """Moves norms and biases off 1 and 0, so a misplaced one shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            if parameter.ndim == 1:
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
            elif float(parameter.std()) == 0:
                parameter.copy_(0.02 * torch.randn(parameter.shape, generator=generator))
    return module.eval()


def _group_norm_eps(module, eps, only=None):
    for name, child in module.named_modules():
        if isinstance(child, torch.nn.GroupNorm) and (only is None or only(name)):
            child.eps = eps


def _tanh_geglu(unet):
    """Patches diffusers' GEGLU to KerasCV's tanh GELU approximation."""
    from diffusers.models.activations import GEGLU

    def gelu(self, gate):
        return torch.nn.functional.gelu(gate, approximate="tanh")

    for child in unet.modules():
        if isinstance(child, GEGLU):
            child.gelu = types.MethodType(gelu, child)


def _nhwc(tensor):
    return tensor.detach().numpy().transpose(0, 2, 3, 1)


def _torch_state(module, subfolder):
    return {f"{subfolder}/{key}": value for key, value in module.state_dict().items()}


def _compvis_file(path, keras_models, torch_state, family):
    """Writes a CompVis single file from the diffusers tensors, by kerasmorph's names.

    Adds what real files carry and a converter must skip: EMA entries, the
    `position_ids` buffer (SD1), OpenCLIP's 24th layer, projection and
    logit scale (SD2).
    """
    state, fused = {}, {}
    for component, model in keras_models.items():
        for _, ref in checkpoints.weight_plan(model, component):
            key = next(k for k in ref.diffusers if k in torch_state)
            value = torch_state[key].numpy()
            if ref.layout == "conv" and value.ndim == 2:
                value = value[:, :, None, None]  # diffusers' VAE attention Linear.
            if ref.rows is not None:
                fused.setdefault(ref.compvis[0], {})[ref.rows[0]] = value
            else:
                state[ref.compvis[0]] = value
    for key, parts in fused.items():
        state[key] = np.concatenate([parts[start] for start in sorted(parts)])
    rng = np.random.default_rng(7)
    state["model_ema.decay"] = np.array(0.9999, np.float32)
    state["model_ema.num_updates"] = np.array(1000, np.int32)
    if family == "sd1":
        state["cond_stage_model.transformer.text_model.embeddings.position_ids"] = np.arange(77)[
            None
        ]
    else:
        prefix = "cond_stage_model.model."
        for key in [k for k in state if ".resblocks.22." in k]:
            state[key.replace(".resblocks.22.", ".resblocks.23.")] = rng.standard_normal(
                state[key].shape
            ).astype(np.float32)
        state[prefix + "text_projection"] = rng.standard_normal((1024, 1024)).astype(np.float32)
        state[prefix + "logit_scale"] = np.array(4.6, np.float32)
    # Streamed: safetensors.numpy.save_file would copy the whole model into memory.
    checkpoints.save_safetensors_stream(path, state.items())


@pytest.fixture(scope="module", params=["sd1", "sd2"])
def bundle(request, tmp_path_factory):
    """Reference models' outputs, their diffusers folder and CompVis file, Keras models."""
    family = request.param
    root = tmp_path_factory.mktemp(f"reference_{family}")
    folder = root / "diffusers"
    rng = np.random.default_rng(0)
    context_dim = 768 if family == "sd1" else 1024
    inputs = {
        "tokens": np.array([TOKENS + [49407] * (77 - len(TOKENS))], dtype=np.int32),
        "latent": rng.standard_normal((1, SIZE // 8, SIZE // 8, 4)).astype(np.float32),
        "context": rng.standard_normal((1, 77, context_dim)).astype(np.float32),
        "image": rng.uniform(-1, 1, (1, SIZE, SIZE, 3)).astype(np.float32),
        "timestep": 500,
    }
    outputs, torch_state = {}, {}
    torch.manual_seed(0)

    text_encoder = _perturb(
        transformers.CLIPTextModel(
            transformers.CLIPTextConfig(
                vocab_size=49408,
                max_position_embeddings=77,
                layer_norm_eps=1e-5,
                **TEXT_CONFIG[family],
            )
        ),
        1,
    )
    text_encoder.save_pretrained(folder / "text_encoder")
    torch_state.update(_torch_state(text_encoder, "text_encoder"))
    tokens = torch.tensor(inputs["tokens"], dtype=torch.int64)
    with torch.no_grad():
        outputs["text_encoder"] = text_encoder(tokens).last_hidden_state.numpy()
        from transformers.activations import ACT2FN

        # transformers 5 dropped the `text_model` wrapper.
        for layer in getattr(text_encoder, "text_model", text_encoder).encoder.layers:
            if family == "sd2":
                layer.mlp.activation_fn = ACT2FN["gelu_pytorch_tanh"]
        outputs["text_encoder_as_kerascv"] = text_encoder(tokens).last_hidden_state.numpy()
    text_config = text_encoder.config
    del text_encoder

    vae = _perturb(diffusers.AutoencoderKL(**VAE_CONFIG), 2)
    vae.save_pretrained(folder / "vae")
    torch_state.update(_torch_state(vae, "vae"))
    latent = torch.from_numpy(inputs["latent"].transpose(0, 3, 1, 2))
    image = torch.from_numpy(inputs["image"].transpose(0, 3, 1, 2))
    with torch.no_grad():
        # KerasCV's Decoder starts with x / 0.18215; its ImageEncoder returns mean x 0.18215.
        outputs["decoder"] = _nhwc(vae.decode(latent / 0.18215).sample)
        outputs["image_encoder"] = _nhwc(vae.encode(image).latent_dist.mean * 0.18215)
        _group_norm_eps(vae, 1e-5)
        outputs["decoder_as_kerascv"] = _nhwc(vae.decode(latent / 0.18215).sample)
        outputs["image_encoder_as_kerascv"] = _nhwc(vae.encode(image).latent_dist.mean * 0.18215)
    vae_config = dict(vae.config)
    del vae

    unet = _perturb(diffusers.UNet2DConditionModel(**UNET_CONFIG, **UNET_FAMILY[family]), 3)
    unet.save_pretrained(folder / "unet")
    torch_state.update(_torch_state(unet, "unet"))
    context = torch.from_numpy(inputs["context"])
    with torch.no_grad():
        outputs["diffusion_model"] = _nhwc(unet(latent, inputs["timestep"], context).sample)
        _tanh_geglu(unet)
        _group_norm_eps(unet, 1e-5)
        outputs["diffusion_model_as_kerascv"] = _nhwc(
            unet(latent, inputs["timestep"], context).sample
        )
    unet_config = dict(unet.config)
    del unet

    keras_models = {
        component: models.build_component(presets.PRESETS[family], component, SIZE, SIZE)
        for component in checkpoints.COMPONENTS
    }
    single_file = root / "model.safetensors"
    _compvis_file(single_file, keras_models, torch_state, family)
    del torch_state  # The folder holds the originals; keep one copy in memory.
    gc.collect()
    yield types.SimpleNamespace(
        family=family,
        folder=folder,
        single_file=single_file,
        inputs=inputs,
        outputs=outputs,
        models=keras_models,
        configs={"unet": unet_config, "vae": vae_config, "text_encoder": text_config},
    )
    # Free this family's ~5 GB of Keras weights before the next family is built,
    # and its multi-GB checkpoint files (pytest keeps old temp dirs otherwise).
    shutil.rmtree(root, ignore_errors=True)
    keras_models.clear()
    from kerasmorph.backend import keras_module

    keras_module().backend.clear_session()
    gc.collect()
    try:  # Hand freed memory back to the OS before the next family's ~10 GB.
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def _run(bundle, component):
    model, inputs = bundle.models[component], bundle.inputs
    if component == "text_encoder":
        positions = np.arange(77, dtype=np.int32)[None]
        return model.predict_on_batch({"tokens": inputs["tokens"], "positions": positions})
    if component == "diffusion_model":
        embedding = timestep_embeddings(np.array([inputs["timestep"]]))
        return model.predict_on_batch([inputs["latent"], embedding, inputs["context"]])
    if component == "decoder":
        return model.predict_on_batch(inputs["latent"])
    return model.predict_on_batch(inputs["image"])


def _compare_with_folder(converted, folder_file, skip=()):
    """Every tensor of a diffusers weight file equals the converted one, read lazily."""
    from safetensors import safe_open

    with safe_open(str(folder_file), framework="pt") as original:
        names = {key.removeprefix("text_model.") for key in original.keys()}
        names = {key for key in names if not any(part in key for part in skip)}
        converted = {
            key.removeprefix("text_model."): value
            for key, value in converted.items()
            if not any(part in key for part in skip)
        }
        assert sorted(converted) == sorted(names)
        for key in original.keys():
            name = key.removeprefix("text_model.")
            if name in names:
                value = original.get_tensor(key)
                np.testing.assert_array_equal(
                    converted[name].reshape(value.shape).numpy(), value.numpy(), err_msg=key
                )


def test_single_file_is_read_back_by_diffusers_converters(bundle):
    """diffusers' own CompVis converters turn the single file into the folder's tensors.

    This checks kerasmorph's CompVis names independently of kerasmorph; one
    component at a time, to keep one UNet in memory.
    """
    from diffusers.loaders import single_file_utils as sfu
    from safetensors import safe_open

    def part(prefixes):
        with safe_open(str(bundle.single_file), framework="pt") as handle:
            return {k: handle.get_tensor(k) for k in handle.keys() if k.startswith(prefixes)}

    checkpoint = part(("model.diffusion_model.",))
    unet = sfu.convert_ldm_unet_checkpoint(checkpoint, bundle.configs["unet"])
    _compare_with_folder(unet, bundle.folder / "unet" / "diffusion_pytorch_model.safetensors")
    del checkpoint, unet
    checkpoint = part(("first_stage_model.",))
    vae = sfu.convert_ldm_vae_checkpoint(checkpoint, bundle.configs["vae"])
    _compare_with_folder(vae, bundle.folder / "vae" / "diffusion_pytorch_model.safetensors")
    checkpoint = part(("cond_stage_model.",))
    if bundle.family == "sd1":
        text = sfu.convert_ldm_clip_checkpoint(checkpoint)
    else:
        model = types.SimpleNamespace(config=bundle.configs["text_encoder"])
        text = sfu.convert_open_clip_checkpoint(model, checkpoint)
    # OpenCLIP's 24th layer, projection and logit scale are not in SD2's encoder.
    skip = ("position_ids", "text_projection", "logit_scale", ".layers.23.")
    _compare_with_folder(text, bundle.folder / "text_encoder" / "model.safetensors", skip)


@pytest.mark.parametrize("component", checkpoints.COMPONENTS)
def test_converted_component_matches_reference(bundle, component):
    reference = bundle.outputs[component]
    as_kerascv = bundle.outputs[f"{component}_as_kerascv"]
    for checkpoint in (bundle.single_file, bundle.folder):
        with checkpoints.open_checkpoint(checkpoint) as source:
            assert checkpoints.detect_family(source) == bundle.family
            checkpoints.load_component(bundle.models[component], component, source)
        output = _run(bundle, component)
        error = relative_error(output, reference)
        conversion_error = relative_error(output, as_kerascv)
        print(
            f"\n{bundle.family} {component} from {checkpoint.name}: relative error "
            f"{error:.2e} vs the reference, {conversion_error:.2e} vs the reference "
            "patched to KerasCV's GELU/epsilon"
        )
        assert error < TOLERANCE
        # With KerasCV's choices patched in, only float32 rounding is left.
        assert conversion_error <= error and conversion_error < 5e-5


def test_sd2_padding_token_changes_only_positions_after_the_end(bundle):
    """KerasCV pads prompts with 49407; SD2's reference tokenizer pads with 0.

    The causal mask keeps every position up to the end token identical; the
    padding positions (which the UNet attends to) differ.
    """
    if bundle.family != "sd2":
        pytest.skip("the padding token differs for sd2 only")
    model = bundle.models["text_encoder"]
    with checkpoints.open_checkpoint(bundle.folder) as source:
        checkpoints.load_component(model, "text_encoder", source)
    positions = np.arange(77, dtype=np.int32)[None]
    end = len(TOKENS)
    kerascv_padding = bundle.inputs["tokens"]
    zero_padding = kerascv_padding.copy()
    zero_padding[:, end:] = 0
    a = model.predict_on_batch({"tokens": kerascv_padding, "positions": positions})
    b = model.predict_on_batch({"tokens": zero_padding, "positions": positions})
    np.testing.assert_allclose(a[:, :end], b[:, :end], atol=1e-5)
    padding_error = relative_error(a, b)
    print(f"\nsd2 padding 49407 vs 0: relative difference of the encoding {padding_error:.2e}")
    assert padding_error > 1e-2


def test_converted_folder_loads_through_the_explorer(bundle, tmp_path):
    import kerasmorph

    # The last test of a family: free its UNet so convert's own one fits.
    bundle.models.pop("diffusion_model", None)
    gc.collect()
    result = checkpoints.convert(bundle.folder, tmp_path / "converted")
    assert result.preset == bundle.family
    explorer = kerasmorph.Explorer(str(result.directory), img_height=SIZE, img_width=SIZE)
    assert explorer.preset.name == bundle.family
    by_preset = kerasmorph.Explorer(bundle.family, weights_dir=str(result.directory))
    assert by_preset.describe()["weights"] == explorer.describe()["weights"]
    positions = np.arange(77, dtype=np.int32)[None]
    encoded = explorer.text_encoder.predict_on_batch(
        {"tokens": bundle.inputs["tokens"], "positions": positions}
    )
    assert relative_error(encoded, bundle.outputs["text_encoder"]) < TOLERANCE
    decoded = explorer.decoder.predict_on_batch(bundle.inputs["latent"])
    assert relative_error(decoded, bundle.outputs["decoder"]) < TOLERANCE
    # The UNet file, read back through the preset's normal build.
    bundle.models["diffusion_model"] = models.build_component(
        presets.PRESETS[bundle.family],
        "diffusion_model",
        SIZE,
        SIZE,
        weights_path=result.files["diffusion_model"],
    )
    output = _run(bundle, "diffusion_model")
    assert relative_error(output, bundle.outputs["diffusion_model"]) < TOLERANCE


# ------------------------------------------------------- stable-diffusion-2-depth


@pytest.fixture(scope="module")
def depth_bundle(tmp_path_factory):
    """stable-diffusion-2-depth's UNet (random): outputs, UNet-only folder and file, Keras UNet.

    SD 2.1's UNet with `in_channels=5` (the latent and a depth map), as Stability's
    `unet/config.json`. The CompVis file is written from the folder's tensors by
    kerasmorph's names (`weight_plan`, as `_compvis_file`), one at a time.
    """
    root = tmp_path_factory.mktemp("reference_sd2_depth")
    folder = root / "diffusers"
    rng = np.random.default_rng(5)
    inputs = {
        "latent": rng.standard_normal((1, SIZE // 8, SIZE // 8, 4)).astype(np.float32),
        # Normalised as `images.depth_to_latent` makes it.
        "depth": rng.uniform(-1, 1, (1, SIZE // 8, SIZE // 8, 1)).astype(np.float32),
        "context": rng.standard_normal((1, 77, 1024)).astype(np.float32),
        "timestep": 500,
    }
    torch.manual_seed(0)
    config = {**UNET_CONFIG, "in_channels": 5}
    unet = _perturb(diffusers.UNet2DConditionModel(**config, **UNET_FAMILY["sd2"]), 4)
    assert tuple(unet.conv_in.weight.shape) == (320, 5, 3, 3)
    unet.save_pretrained(folder / "unet")
    sample = torch.from_numpy(
        np.concatenate([inputs["latent"], inputs["depth"]], axis=-1).transpose(0, 3, 1, 2)
    )
    context = torch.from_numpy(inputs["context"])
    outputs = {}
    with torch.no_grad():
        outputs["reference"] = _nhwc(unet(sample, inputs["timestep"], context).sample)
        _tanh_geglu(unet)
        _group_norm_eps(unet, 1e-5)
        outputs["as_kerascv"] = _nhwc(unet(sample, inputs["timestep"], context).sample)
    del unet, sample
    _release_memory()

    keras_unet = models.build_component(presets.PRESETS["sd2-depth"], "diffusion_model", SIZE, SIZE)
    single_file = root / "sd2-depth.safetensors"
    with checkpoints.open_checkpoint(folder) as source:
        tensors = [
            (ref.compvis[0], lambda key=ref.diffusers[0]: source.get_native(key))
            for _, ref in checkpoints.weight_plan(keras_unet, "diffusion_model")
        ]
        # What real files carry and a converter must skip: EMA entries.
        tensors += [
            ("model_ema.decay", lambda: np.array(0.9999, np.float32)),
            ("model_ema.diffusion_modelinput_blocks00weight", lambda: np.zeros((1,), np.float32)),
        ]
        checkpoints.save_safetensors_stream(single_file, ((k, get()) for k, get in tensors))
    bundle = types.SimpleNamespace(
        folder=folder, single_file=single_file, inputs=inputs, outputs=outputs, unet=keras_unet
    )
    del keras_unet  # The bundle's is the only reference: a test frees it.
    yield bundle
    shutil.rmtree(root, ignore_errors=True)
    from kerasmorph.backend import keras_module

    keras_module().backend.clear_session()
    _release_memory()


def _release_memory():
    """Collects, then hands freed memory back to the OS (glibc keeps it otherwise)."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def _run_depth_unet(unet, inputs):
    """A wrapped depth UNet (4-channel latent, the depth map stored) on the bundle's inputs."""
    models.depth.set_depth_map(unet, inputs["depth"])
    embedding = timestep_embeddings(np.array([inputs["timestep"]]))
    return unet.predict_on_batch(
        {"latent": inputs["latent"], "timestep_embedding": embedding, "context": inputs["context"]}
    )


def test_depth_unet_is_detected_and_matches_reference(depth_bundle):
    from safetensors import safe_open

    unet = depth_bundle.unet
    assert checkpoints.model_family(unet, "diffusion_model") == "sd2-depth"
    with safe_open(str(depth_bundle.single_file), framework="numpy") as handle:
        conv_in = handle.get_tensor(checkpoints.UNET_PREFIX + "input_blocks.0.0.weight")
    assert conv_in.shape == (320, 5, 3, 3)
    for checkpoint in (depth_bundle.single_file, depth_bundle.folder):
        with checkpoints.open_checkpoint(checkpoint) as source:
            assert checkpoints.detect_family(source) == "sd2-depth"
            checkpoints.load_component(unet, "diffusion_model", source)
        # The first conv's kernel: OIHW -> HWIO, 5 input channels.
        plan = checkpoints.weight_plan(unet, "diffusion_model")
        kernel = next(v for v, ref in plan if ref.name == "unet/conv_in.weight").numpy()
        np.testing.assert_array_equal(kernel, conv_in.transpose(2, 3, 1, 0))
        output = _run_depth_unet(unet, depth_bundle.inputs)
        error = relative_error(output, depth_bundle.outputs["reference"])
        conversion_error = relative_error(output, depth_bundle.outputs["as_kerascv"])
        print(
            f"\nsd2-depth diffusion_model from {checkpoint.name}: relative error {error:.2e} "
            f"vs the reference, {conversion_error:.2e} vs the reference patched to KerasCV's "
            "GELU/epsilon"
        )
        assert error < TOLERANCE
        assert conversion_error <= error and conversion_error < 5e-5


def test_converted_depth_file_loads_through_the_explorer(depth_bundle, tmp_path):
    """`convert` records sd2-depth; `Explorer(folder)` builds it and loads the UNet.

    One source only (a UNet build and a 3.5 GB `.h5` each): the single file, whose
    EMA entries the converter skips. Both sources' tensors are checked above, and
    `convert` reads them through the same `detect_family`/`load_component`.
    """
    import kerasmorph

    depth_bundle.unet = None  # Free it: convert and the Explorer build their own.
    _release_memory()
    # The source holds a UNet only: convert that.
    result = checkpoints.convert(
        depth_bundle.single_file, tmp_path / "converted", components=("diffusion_model",)
    )
    assert result.preset == "sd2-depth"
    assert checkpoints.read_manifest(result.directory)["preset"] == "sd2-depth"
    assert result.files["diffusion_model"].name == "diffusion_model_v2_depth.h5"
    _release_memory()
    # The Explorer reads the manifest: sd2-depth's architecture. The text encoder and
    # decoder are looked up at once but built lazily: names suffice for the UNet.
    directory = result.directory
    files = presets.PRESETS["sd2-depth"].weight_files
    for component in ("text_encoder", "decoder"):
        (directory / files[component].filename).write_bytes(b"")
    explorer = kerasmorph.Explorer(str(directory), img_height=SIZE, img_width=SIZE, verbose=False)
    assert explorer.preset.name == "sd2-depth"
    assert explorer.takes_depth
    unet = models.depth.inner_unet(explorer.diffusion_model)
    assert models.depth.latent_input_channels(unet) == 5
    explorer.set_depth_map(depth_bundle.inputs["depth"][0, ..., 0], normalised=True)
    embedding = timestep_embeddings(np.array([depth_bundle.inputs["timestep"]]))
    output = explorer.diffusion_model.predict_on_batch(
        {
            "latent": depth_bundle.inputs["latent"],
            "timestep_embedding": embedding,
            "context": depth_bundle.inputs["context"],
        }
    )
    error = relative_error(output, depth_bundle.outputs["reference"])
    print(f"\nsd2-depth through Explorer({directory.name!r}): relative error {error:.2e}")
    assert error < TOLERANCE
