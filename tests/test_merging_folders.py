"""Merging and comparing diffusers folders: the library, the CLI, diffusers itself.

The folders are written here with a few tensors under real diffusers names
(`unet/`, `vae/`, `text_encoder/` subfolders with their `config.json`), plus
the files a Hub download has around them; the reference test at the end
merges real (tiny) diffusers and transformers models and loads the result
with their own `from_pretrained`.
"""

import json

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from kerasmorph import checkpoints, cli, merging

# One Session per file, as a notebook keeps one: the model is built once and reused.
_SESSION = cli.Session()


def main(argv, session=_SESSION):
    return cli.main(argv, session=session)


SHAPES = {
    "unet": {
        "conv_in.weight": (8, 4, 3, 3),
        "conv_in.bias": (8,),
        "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight": (8, 6),
        "conv_out.weight": (4, 8, 3, 3),
    },
    "vae": {
        "encoder.conv_in.weight": (8, 3, 3, 3),
        "encoder.mid_block.attentions.0.to_q.weight": (8, 8),
        "decoder.conv_in.weight": (8, 4, 3, 3),
        "quant_conv.weight": (8, 8, 1, 1),
    },
    "text_encoder": {
        "text_model.embeddings.token_embedding.weight": (10, 6),
        "text_model.encoder.layers.0.self_attn.q_proj.weight": (6, 6),
        "text_model.final_layer_norm.weight": (6,),
    },
}
WEIGHT_FILES = {
    "unet": "diffusion_pytorch_model.safetensors",
    "vae": "diffusion_pytorch_model.safetensors",
    "text_encoder": "model.safetensors",
}
POSITION_IDS = "text_encoder/text_model.embeddings.position_ids"
UNET_CONV = "unet/conv_in.weight"


def _write_folder(root, seed, *, shapes=None, extra=None, drop=(), subfolders=tuple(SHAPES)):
    """Writes a diffusers folder; returns its tensors under `DiffusersSource` names.

    Args:
        shapes: `{"unet/conv_in.weight": shape}` overrides.
        extra: `{"vae/name": array}` tensors added.
        drop: names left out.
        subfolders: the weight subfolders written.
    """
    rng = np.random.default_rng(seed)
    tensors = {}
    for subfolder in subfolders:
        for name, shape in SHAPES[subfolder].items():
            key = f"{subfolder}/{name}"
            shape = (shapes or {}).get(key, shape)
            tensors[key] = rng.standard_normal(shape).astype(np.float32)
    if "text_encoder" in subfolders:
        # Older transformers saved this int64 buffer: not mergeable.
        tensors[POSITION_IDS] = np.arange(7, dtype=np.int64)[None]
    tensors.update(extra or {})
    for name in drop:
        tensors.pop(name)
    for subfolder in subfolders:
        folder = root / subfolder
        folder.mkdir(parents=True)
        state = {
            key.split("/", 1)[1]: value
            for key, value in tensors.items()
            if key.startswith(subfolder + "/")
        }
        save_file(state, str(folder / WEIGHT_FILES[subfolder]), metadata={"format": "pt"})
        (folder / "config.json").write_text(
            json.dumps({"_class_name": subfolder, "origin": root.name})
        )
    index = {"_class_name": "StableDiffusionPipeline", "origin": root.name}
    (root / "model_index.json").write_text(json.dumps(index))
    (root / "scheduler").mkdir()
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps({"origin": root.name}))
    (root / "tokenizer").mkdir()
    (root / "tokenizer" / "vocab.json").write_text("{}")
    (root / "tokenizer" / "merges.txt").write_text("#version: 0.2\n")
    return tensors


def _read(folder):
    with checkpoints.open_checkpoint(folder) as source:
        assert source.format == "diffusers"
        return {key: source.get_native(key) for key in source.keys()}


def _floats(tensors):
    return [name for name, value in tensors.items() if value.dtype.kind == "f"]


@pytest.fixture
def folders(tmp_path):
    """Three folders of one architecture with different random weights."""
    return {
        name: (tmp_path / name, _write_folder(tmp_path / name, seed))
        for seed, name in enumerate(("a", "b", "c"), 1)
    }


# ------------------------------------------------------------------ library


def test_weighted_sum_writes_a_diffusers_folder(folders, tmp_path):
    (a, state_a), (b, state_b) = folders["a"], folders["b"]
    # Around the weights of a Hub download: a component kerasmorph does not
    # merge, and a stale weight file beside the target's UNet.
    (a / "safety_checker").mkdir()
    save_file({"w": np.ones(3, np.float32)}, str(a / "safety_checker" / "model.safetensors"))
    (a / "safety_checker" / "config.json").write_text("{}")
    (a / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"stale")
    out = tmp_path / "merged"
    report = checkpoints.merge_checkpoints(out, a, [(0.3, b)], 0.7)

    merged = _read(out)
    assert sorted(merged) == sorted(state_a)
    assert list(merged) == list(_read(a))  # In the target's order.
    for name in _floats(state_a):
        np.testing.assert_allclose(
            merged[name], 0.7 * state_a[name] + 0.3 * state_b[name], rtol=1e-6, atol=1e-6
        )
        assert merged[name].dtype == np.float32
    np.testing.assert_array_equal(merged[POSITION_IDS], state_a[POSITION_IDS])
    assert merged[POSITION_IDS].dtype == np.int64
    assert sorted(report.merged) == sorted(_floats(state_a))
    kept = dict(report.kept)
    assert "not floating point" in kept[POSITION_IDS]
    assert "does not merge" in kept["safety_checker/"]

    # Each file under the name from_pretrained looks for, without the prefix.
    for subfolder, file_name in WEIGHT_FILES.items():
        path = out / subfolder / file_name
        with safe_open(str(path), framework="numpy") as handle:
            assert handle.metadata() == {"format": "pt"}
            assert sorted(handle.keys()) == sorted(
                key.split("/", 1)[1] for key in state_a if key.startswith(subfolder + "/")
            )
        assert json.loads((out / subfolder / "config.json").read_text())["origin"] == "a"
    assert not (out / "unet" / "diffusion_pytorch_model.bin").exists()
    assert json.loads((out / "model_index.json").read_text())["origin"] == "a"
    assert json.loads((out / "scheduler" / "scheduler_config.json").read_text())["origin"] == "a"
    assert (out / "tokenizer" / "merges.txt").read_text() == "#version: 0.2\n"
    assert load_file(str(out / "safety_checker" / "model.safetensors"))["w"].tolist() == [1, 1, 1]
    assert not list(out.rglob("*.partial"))


def test_add_difference_and_task_vectors_of_folders(folders, tmp_path):
    (a, state_a), (b, state_b), (c, state_c) = folders["a"], folders["b"], folders["c"]
    # A + alpha (B - C).
    checkpoints.merge_checkpoints(tmp_path / "diff", a, [(0.75, b), (-0.75, c)])
    merged = _read(tmp_path / "diff")
    for name in _floats(state_a):
        expected = state_a[name] + 0.75 * (state_b[name] - state_c[name])
        np.testing.assert_allclose(merged[name], expected, rtol=1e-5, atol=1e-6)
    # base + 0.5 (B - base) - 0.25 (C - base), the base a term as well (opened once).
    checkpoints.merge_checkpoints(
        tmp_path / "tv", a, [(0.5, b), (-0.25, c), (-0.25, a)], dtype="float16"
    )
    merged = _read(tmp_path / "tv")
    for name in _floats(state_a):
        expected = (
            state_a[name]
            + 0.5 * (state_b[name] - state_a[name])
            - 0.25 * (state_c[name] - state_a[name])
        )
        assert merged[name].dtype == np.float16
        np.testing.assert_allclose(merged[name], expected, rtol=2e-3, atol=2e-3)
    assert merged[POSITION_IDS].dtype == np.int64


def test_mismatched_and_missing_tensors_are_kept_from_the_target(tmp_path):
    state_a = _write_folder(tmp_path / "a", 1)
    # B: a depth model's 5-channel first conv, no quant_conv, an extra
    # tensor, and no text encoder at all.
    state_b = _write_folder(
        tmp_path / "b",
        2,
        shapes={UNET_CONV: (8, 5, 3, 3)},
        drop=("vae/quant_conv.weight",),
        extra={"unet/only_in_b.weight": np.ones(2, np.float32)},
        subfolders=("unet", "vae"),
    )
    report = checkpoints.merge_checkpoints(
        tmp_path / "out", tmp_path / "a", [(0.5, tmp_path / "b")], 0.5
    )
    merged = _read(tmp_path / "out")
    assert sorted(merged) == sorted(state_a)
    kept = dict(report.kept)
    assert "(8, 4, 3, 3) != (8, 5, 3, 3)" in kept[UNET_CONV]
    assert "missing from model 1" in kept["vae/quant_conv.weight"]
    text_names = [name for name in state_a if name.startswith("text_encoder/")]
    for name in [UNET_CONV, "vae/quant_conv.weight", *text_names]:
        assert name in kept
        np.testing.assert_array_equal(merged[name], state_a[name])
    name = "unet/conv_out.weight"
    np.testing.assert_allclose(
        merged[name], 0.5 * (state_a[name] + state_b[name]), rtol=1e-6, atol=1e-6
    )
    assert f"{len(kept)} kept from the target" in report.summary()
    assert f"kept {UNET_CONV}: shape" in report.summary()


def test_take_copies_the_whole_vae_subfolder(folders, tmp_path):
    (a, state_a), (b, state_b) = folders["a"], folders["b"]
    # A VAE from an older diffusers: attention under its old names.
    vae_state = _write_folder(
        tmp_path / "vae_source",
        9,
        drop=("vae/encoder.mid_block.attentions.0.to_q.weight",),
        extra={"vae/encoder.mid_block.attentions.0.query.weight": np.full((8, 8), 0.5, np.float32)},
    )
    report = checkpoints.merge_checkpoints(
        tmp_path / "out", a, [(0.5, b)], 0.5, take={"vae": tmp_path / "vae_source"}
    )
    merged = _read(tmp_path / "out")
    vae_names = [name for name in _read(tmp_path / "vae_source") if name.startswith("vae/")]
    assert [name for name in merged if name.startswith("vae/")] == vae_names
    for name in vae_names:
        np.testing.assert_array_equal(merged[name], vae_state[name])
    assert report.taken == tuple((name, "vae") for name in vae_names)
    assert (
        json.loads((tmp_path / "out" / "vae" / "config.json").read_text())["origin"] == "vae_source"
    )
    assert json.loads((tmp_path / "out" / "unet" / "config.json").read_text())["origin"] == "a"
    np.testing.assert_allclose(
        merged[UNET_CONV], 0.5 * (state_a[UNET_CONV] + state_b[UNET_CONV]), rtol=1e-6
    )

    _write_folder(tmp_path / "no_vae", 3, subfolders=("unet",))
    with pytest.raises(checkpoints.CheckpointError, match="has no vae/ weights"):
        checkpoints.merge_checkpoints(
            tmp_path / "out2", a, [(0.5, b)], 0.5, take={"vae": tmp_path / "no_vae"}
        )
    with pytest.raises(ValueError, match="take key 'decoder'"):
        checkpoints.merge_checkpoints(tmp_path / "out2", a, [(0.5, b)], 0.5, take={"decoder": b})


def test_mixing_a_folder_and_a_file_is_refused(folders, tmp_path):
    folder, _ = folders["a"]
    file = tmp_path / "single.safetensors"
    save_file(
        {"model.diffusion_model.input_blocks.0.0.weight": np.ones((8, 4, 3, 3), np.float32)},
        str(file),
    )
    with pytest.raises(checkpoints.CheckpointError) as error:
        checkpoints.merge_checkpoints(tmp_path / "out", folder, [(0.5, file)], 0.5)
    message = str(error.value)
    assert f"target={str(folder)!r} (a diffusers folder)" in message
    assert f"model 1={str(file)!r} (a single file)" in message
    assert "all single files" in message and "all diffusers folders" in message
    assert not (tmp_path / "out").exists()
    with pytest.raises(checkpoints.CheckpointError, match=r"take\['vae'\]="):
        checkpoints.merge_checkpoints(
            tmp_path / "out", folder, [(0.5, folder)], 0.5, take={"vae": file}
        )


def test_out_must_fit_the_inputs(folders, tmp_path):
    (a, _), (b, _) = folders["a"], folders["b"]
    with pytest.raises(ValueError, match="must be a directory"):
        checkpoints.merge_checkpoints(tmp_path / "merged.safetensors", a, [(0.5, b)], 0.5)
    with pytest.raises(ValueError, match="must not be an input folder"):
        checkpoints.merge_checkpoints(a / "merged", a, [(0.5, b)], 0.5)
    with pytest.raises(ValueError, match="finite number"):
        checkpoints.merge_checkpoints(tmp_path / "nan", a, [(float("nan"), b)], 0.5)
    with pytest.raises(ValueError, match="floating-point dtype"):
        checkpoints.merge_checkpoints(tmp_path / "int", a, [(0.5, b)], 0.5, dtype="int8")
    assert not (tmp_path / "nan").exists() and not (tmp_path / "int").exists()
    file = tmp_path / "single.safetensors"
    save_file({"x": np.ones(2, np.float32)}, str(file))
    with pytest.raises(ValueError, match="must end in .safetensors"):
        checkpoints.merge_checkpoints(tmp_path / "dir", file, [(0.5, file)], 0.5)


def test_save_diffusers_stream_needs_known_grouped_subfolders(tmp_path):
    one = np.ones(2, np.float32)
    written = checkpoints.save_diffusers_stream(
        tmp_path / "ok", [("unet/a", one), ("unet/b", one), ("text_encoder/c", one)]
    )
    assert list(written) == ["unet", "text_encoder"]
    assert sorted(load_file(str(written["unet"]))) == ["a", "b"]
    with pytest.raises(ValueError, match="must start with a subfolder"):
        checkpoints.save_diffusers_stream(tmp_path / "bad", [("conv_in.weight", one)])
    with pytest.raises(ValueError, match="one after another"):
        checkpoints.save_diffusers_stream(
            tmp_path / "bad", [("unet/a", one), ("vae/b", one), ("unet/c", one)]
        )


def test_cosine_similarities_of_folders(tmp_path):
    state = _write_folder(tmp_path / "a", 1)
    changed = "vae/decoder.conv_in.weight"
    _write_folder(tmp_path / "b", 1, extra={changed: -state[changed] + 0.1})
    with checkpoints.LazyTensors(tmp_path / "a") as a, checkpoints.LazyTensors(tmp_path / "b") as b:
        rows = {row.name: row for row in merging.cosine_similarities(a, b)}
    assert sorted(rows) == sorted(_floats(state))
    for name, row in rows.items():
        if name == changed:
            assert row.cosine < 0
        else:
            assert row.cosine == pytest.approx(1.0)


# ---------------------------------------------------------------------- CLI


def test_cli_merges_folders_with_task_vectors(folders, tmp_path, capsys):
    (base, state_base), (a, state_a), (c, state_c) = folders["a"], folders["b"], folders["c"]
    out = tmp_path / "merged"
    code = main(
        [
            "merge",
            "--base",
            str(base),
            "--add",
            f"{a}:0.5",
            "--add",
            f"{c}:0.25",
            "--half",
            "--no-convert",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out)
    assert f"kept {POSITION_IDS}: not floating point" in captured.err
    merged = _read(out)
    for name in _floats(state_base):
        expected = (
            state_base[name]
            + 0.5 * (state_a[name] - state_base[name])
            + 0.25 * (state_c[name] - state_base[name])
        )
        assert merged[name].dtype == np.float16
        np.testing.assert_allclose(merged[name], expected, rtol=2e-3, atol=2e-3)
    assert json.loads((out / "text_encoder" / "config.json").read_text())["origin"] == "a"


def test_cli_weighted_sum_of_folders_takes_the_vae_and_converts(folders, tmp_path, capsys):
    (a, state_a), (b, state_b), (v, state_v) = folders["a"], folders["b"], folders["c"]
    out = tmp_path / "merged"
    code = main(
        [
            "merge",
            "--weighted-sum",
            str(a),
            str(b),
            "--alpha",
            "0.25",
            "--take-vae",
            str(v),
            "--no-convert",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    merged = _read(out)
    expected = 0.75 * state_a[UNET_CONV] + 0.25 * state_b[UNET_CONV]
    np.testing.assert_allclose(merged[UNET_CONV], expected, rtol=1e-6)
    for name in (name for name in state_v if name.startswith("vae/")):
        np.testing.assert_array_equal(merged[name], state_v[name])
    assert "4 taken whole" in capsys.readouterr().err
    # Without --no-convert the folder goes on to the KerasCV conversion,
    # which refuses these 6-wide toy tensors before building anything.
    code = main(["merge", "--weighted-sum", str(a), str(b), "--out", str(tmp_path / "converted")])
    assert code == 2
    assert "SD 1.x (768) and SD 2.x (1024) only" in capsys.readouterr().err
    assert (tmp_path / "converted" / "unet" / "diffusion_pytorch_model.safetensors").is_file()


def test_cli_refuses_mixed_inputs_and_file_outputs(folders, tmp_path, capsys):
    (a, _), (b, _) = folders["a"], folders["b"]
    file = tmp_path / "single.safetensors"
    save_file({"x": np.ones(2, np.float32)}, str(file))
    out = str(tmp_path / "out")
    assert main(["merge", "--weighted-sum", str(a), str(file), "--out", out]) == 2
    err = capsys.readouterr().err
    assert f"--weighted-sum A={str(a)!r} (a diffusers folder)" in err
    assert f"--weighted-sum B={str(file)!r} (a single file)" in err
    assert (
        main(["merge", "--weighted-sum", str(a), str(b), "--take-vae", str(file), "--out", out])
        == 2
    )
    assert "--take-vae=" in capsys.readouterr().err
    assert (
        main(["merge", "--weighted-sum", str(a), str(b), "--out", str(tmp_path / "m.safetensors")])
        == 2
    )
    assert "--out must be a directory" in capsys.readouterr().err
    assert main(["similarity", str(a), str(file), "--csv", str(tmp_path / "x.csv")]) == 2
    assert "B=" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.csv").exists()


def test_cli_similarity_of_folders_writes_csv_and_plot(tmp_path, capsys):
    state = _write_folder(tmp_path / "a", 1)
    changed = "unet/conv_out.weight"
    # Each weight scaled by a ramp from -1 to 1: a cosine near 0.
    ramp = np.linspace(-1, 1, state[changed].size).reshape(state[changed].shape)
    _write_folder(tmp_path / "b", 1, extra={changed: state[changed] * ramp})
    _write_folder(tmp_path / "base", 5)
    plot, table = tmp_path / "hist.png", tmp_path / "layers.csv"
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert main(["similarity", a, b, "--plot", str(plot), "--csv", str(table)]) == 0
    with Image.open(plot) as image:
        assert image.size[0] > 100 and image.size[1] > 100
    rows = {
        line.split(",")[0]: float(line.split(",")[2]) for line in table.read_text().splitlines()[1:]
    }
    assert sorted(rows) == sorted(_floats(state))
    assert rows[changed] < 0.9
    assert all(cosine == pytest.approx(1.0) for name, cosine in rows.items() if name != changed)
    assert main(["similarity", a, a, "--base", str(tmp_path / "base"), "--csv", str(table)]) == 0
    cosines = [float(line.split(",")[2]) for line in table.read_text().splitlines()[1:]]
    np.testing.assert_allclose(cosines, 1.0, atol=1e-6)


# ---------------------------------------------------------------- reference


@pytest.mark.reference
def test_diffusers_loads_a_merged_folder(tmp_path):
    """Tiny diffusers/transformers models, merged at alpha 0.5, read back by from_pretrained."""
    diffusers = pytest.importorskip(
        "diffusers",
        reason="the reference test needs diffusers: pip install 'kerasmorph[reference]'",
    )
    transformers = pytest.importorskip(
        "transformers", reason="the reference test needs transformers"
    )
    import torch

    def components():
        unet = diffusers.UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=1,
            sample_size=16,
            in_channels=4,
            out_channels=4,
            cross_attention_dim=32,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        )
        vae = diffusers.AutoencoderKL(
            block_out_channels=(32, 64),
            layers_per_block=1,
            sample_size=16,
            latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
        )
        text_encoder = transformers.CLIPTextModel(
            transformers.CLIPTextConfig(
                hidden_size=32,
                intermediate_size=37,
                num_attention_heads=4,
                num_hidden_layers=2,
                vocab_size=100,
                max_position_embeddings=77,
            )
        )
        return {"unet": unet, "vae": vae, "text_encoder": text_encoder}

    states = []
    for seed, name in ((1, "a"), (2, "b")):
        torch.manual_seed(seed)
        models = components()
        with torch.no_grad():  # Norms and biases start at 1 and 0: move them too.
            for model in models.values():
                for parameter in model.parameters():
                    parameter.add_(0.01 * torch.randn_like(parameter))
        for subfolder, model in models.items():
            model.save_pretrained(tmp_path / name / subfolder)
        diffusers.DDIMScheduler().save_pretrained(tmp_path / name / "scheduler")
        states.append(
            {
                subfolder: {key: value.clone() for key, value in model.state_dict().items()}
                for subfolder, model in models.items()
            }
        )
    out = tmp_path / "merged"
    assert (
        main(
            [
                "merge",
                "--weighted-sum",
                str(tmp_path / "a"),
                str(tmp_path / "b"),
                "--alpha",
                "0.5",
                "--no-convert",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    loaders = {
        "unet": diffusers.UNet2DConditionModel,
        "vae": diffusers.AutoencoderKL,
        "text_encoder": transformers.CLIPTextModel,
    }
    for subfolder, loader in loaders.items():
        loaded = loader.from_pretrained(out / subfolder).state_dict()
        first, second = states[0][subfolder], states[1][subfolder]
        assert loaded.keys() == first.keys()
        for key, value in loaded.items():
            if not first[key].is_floating_point():
                assert torch.equal(value, first[key])
                continue
            torch.testing.assert_close(
                value, 0.5 * (first[key] + second[key]), rtol=1e-6, atol=1e-6
            )
    assert (
        diffusers.DDIMScheduler.from_pretrained(out / "scheduler").config.num_train_timesteps
        == 1000
    )
