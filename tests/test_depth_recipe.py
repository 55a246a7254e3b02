"""The depth + task-arithmetic recipe: merging across the 4 -> 5-channel mismatch.

`base + 0.5 (depth - base) + 0.5 (style - base)` with the depth model as the
target, so its 5-channel first convolution is kept: on the shipped toys
(`shapes`, `shapes-depth`, the style fine-tunes `shapes-outlined` and
`shapes-black`, kerasmorph `.npz` folders) from Python and the CLI, measured
from pixels: the merged toy keeps the depth map's layout AND the outlined style;
and on single files under CompVis names, where the fine-tune's VAE is taken too.
"""

import contextlib
import io
import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import kerasmorph
from kerasmorph import checkpoints, cli
from kerasmorph.models import bundled_weights_dir
from kerasmorph.presets import PRESETS
from kerasmorph.shapes import data as shapes_data

_SESSION = cli.Session()
TOYS = {
    name: bundled_weights_dir(PRESETS[name])
    for name in ("shapes", "shapes-depth", "shapes-outlined", "shapes-black")
}
FIRST_CONV = "diffusion_model/002"  # The shapes UNet's first convolution's kernel.
RECIPE = ["--base", "shapes", "--add", "shapes-depth:0.5", "--add", "shapes-outlined:0.5"]


def main(argv, session=_SESSION):
    try:
        return cli.main(argv, session=session)
    except SystemExit as exit:  # argparse's refusals.
        return exit.code


def _arrays(folder):
    with checkpoints.LazyTensors(folder) as tensors:
        return {name: np.asarray(tensors[name]) for name in tensors}


@pytest.fixture(scope="module")
def toys():
    return {name: _arrays(folder) for name, folder in TOYS.items()}


@pytest.fixture(scope="module")
def merged(tmp_path_factory):
    """The recipe through the CLI: `(the merged folder, its stdout, its stderr)`."""
    out = tmp_path_factory.mktemp("recipe") / "merged"
    stdout, stderr = io.StringIO(), io.StringIO()
    argv = ["merge", *RECIPE, "--target", "shapes-depth", "--out", str(out), "--quiet"]
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        assert main(argv) == 0
    return out, stdout.getvalue(), stderr.getvalue()


# ------------------------------------------------------------ .npz folders


def test_toy_folders_open_as_npz_checkpoints(toys):
    assert checkpoints.check_same_format(TOYS) == "npz"
    for name, arrays in toys.items():
        unet = [key for key in arrays if key.startswith("diffusion_model/")]
        text = [key for key in arrays if key.startswith("text_encoder/")]
        assert len(unet) > 300 and len(text) > 20, name
        assert unet[:3] == ["diffusion_model/000", "diffusion_model/001", "diffusion_model/002"]
    # Only the first convolution differs in shape: 5 input channels (latent + depth).
    assert toys["shapes-depth"][FIRST_CONV].shape[2] == 5
    assert toys["shapes"][FIRST_CONV].shape[2] == 4
    mismatched = [
        k for k in toys["shapes"] if toys["shapes"][k].shape != toys["shapes-depth"][k].shape
    ]
    assert mismatched == [FIRST_CONV]


def test_npz_folder_writer_round_trips_and_refuses_split_components(tmp_path):
    tensors = [("diffusion_model/000", np.arange(6, dtype=np.float32).reshape(2, 3)),
               ("diffusion_model/001", np.ones(3, np.float32)),
               ("text_encoder/000", np.full((2,), 0.5, np.float32))]  # fmt: skip
    written = checkpoints.save_npz_folder_stream(tmp_path / "out", tensors, dtype="float16")
    assert sorted(path.name for path in written.values()) == [
        "diffusion_model.npz",
        "text_encoder.npz",
    ]
    back = _arrays(tmp_path / "out")
    assert sorted(back) == sorted(name for name, _ in tensors)
    assert all(array.dtype == np.float16 for array in back.values())
    np.testing.assert_array_equal(back["diffusion_model/000"], tensors[0][1])
    with pytest.raises(ValueError, match="must come together"):
        checkpoints.save_npz_folder_stream(tmp_path / "bad", [tensors[0], tensors[2], tensors[1]])


# ------------------------------------------------------------ the recipe, toys


def test_cli_recipe_keeps_the_depth_conv_and_sums_the_rest(toys, merged):
    merged, out, err = merged
    assert out.split() == [str(merged), "preset", "shapes-depth:", "use", "--model", str(merged)]
    assert f"kept {FIRST_CONV}: shape (3, 3, 5, 32) != (3, 3, 4, 32)" in err
    assert "1 kept from the target" in err
    manifest = json.loads((merged / "kerasmorph.json").read_text())
    assert manifest["preset"] == "shapes-depth"
    result = _arrays(merged)
    base, depth, style = toys["shapes"], toys["shapes-depth"], toys["shapes-outlined"]
    np.testing.assert_array_equal(result[FIRST_CONV], depth[FIRST_CONV])
    for name in list(base)[::20] + ["text_encoder/000"]:
        if name == FIRST_CONV:
            continue
        b, d, s = (m[name].astype(np.float32) for m in (base, depth, style))
        expected = b + 0.5 * (d - b) + 0.5 * (s - b)
        assert result[name].dtype == np.float16
        np.testing.assert_allclose(result[name], expected, rtol=1e-3, atol=1e-3)
    # The same merge from Python gives the same file.
    again = merged.parent / "python"
    report = checkpoints.merge_checkpoints(
        again, TOYS["shapes-depth"], [(0.5, TOYS["shapes-outlined"]), (0.0, TOYS["shapes"])], 0.5
    )
    assert [name for name, _ in report.kept] == [FIRST_CONV]
    for name, array in _arrays(again).items():
        np.testing.assert_array_equal(array, result[name])


def test_without_target_the_merge_keeps_the_base_conv_and_says_so(tmp_path, capsys):
    out = tmp_path / "plain"
    assert main(["merge", *RECIPE, "--out", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert f"kept {FIRST_CONV}: shape (3, 3, 4, 32) != (3, 3, 5, 32)" in captured.err
    assert "preset shapes: use --model" in captured.out
    assert _arrays(out)[FIRST_CONV].shape[2] == 4


@pytest.mark.parametrize(
    "argv, message",
    [
        ([*RECIPE, "--target", "shapes-black-missing"], "--target must be --base or one of"),
        (["--weighted-sum", "shapes", "shapes-black", "--target", "shapes"], "--target goes with"),
        ([*RECIPE, "--take-vae", "shapes-black"], "Cannot take the vae from"),
    ],
)
def test_recipe_refusals(argv, message, tmp_path, capsys):
    assert main(["merge", *argv, "--out", str(tmp_path / "m"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "m").exists()


def test_mixing_an_npz_folder_and_a_single_file_is_refused(tmp_path, capsys):
    file = tmp_path / "sd.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": np.ones((8, 4, 3, 3), np.float32)},
              str(file))  # fmt: skip
    argv = ["merge", "--weighted-sum", "shapes", str(file), "--out", str(tmp_path / "m")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "a kerasmorph .npz folder" in err and "a single file" in err


def test_similarity_lists_the_layers_it_cannot_compare(tmp_path, capsys):
    table = tmp_path / "layers.csv"
    argv = ["similarity", "shapes-depth", "shapes-outlined", "--base", "shapes"]
    argv += ["--csv", str(table)]
    assert main(argv + ["--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"not compared: {FIRST_CONV}" in err
    rows = table.read_text().splitlines()[1:]
    assert len(rows) == len(_arrays(TOYS["shapes"])) - 1
    assert FIRST_CONV not in table.read_text()


# The depth2img measurement of `scripts/depth_recipe_shapes.py` on 8 noises at
# strength 1.0, where the layout can come only from the map and the style only
# from the weights (measured: the recipe IoU 0.74 and outline darkness 0.27,
# shapes-depth 0.78 and 0.04, shapes-outlined's text-to-image outline 0.67).
RECIPE_IOU, RECIPE_OUTLINE, PLAIN_OUTLINE, STYLE_OUTLINE = 0.5, 0.15, 0.1, 0.4
BLACK_DARKNESS = 0.6  # shapes-black's text-to-image background: 0.90.
SQUARE = shapes_data.Sample("red", "square", 0.45, (0.7, 0.7))
START = shapes_data.Sample("blue", "triangle", 0.4, (0.3, 0.3))


def _depth2img(model, strength=1.0):
    """`(mean IoU with the map's foreground, mean outline darkness)` over 8 noises."""
    depth, foreground = shapes_data.depth_map(SQUARE), shapes_data.coverage(SQUARE) > 0.5
    explorer = kerasmorph.Explorer(model, precision="auto", verbose=False)
    frames = explorer.depth_to_image(
        [shapes_data.render(START)] * 8, "a red circle", depth_map=depth, strength=strength,
        num_steps=25, diffusion_noise=explorer.noise(8, 0),
    )  # fmt: skip
    ious = [iou(shapes_data.shape_mask(frame), foreground) for frame in frames]
    return float(np.mean(ious)), float(np.mean(list(map(shapes_data.outline_darkness, frames))))


def _text_to_image(model, measure):
    explorer = kerasmorph.Explorer(model, precision="auto", verbose=False)
    images = explorer.text_to_image("a red circle", batch_size=8, num_steps=25, seed=0)
    return float(np.mean([measure(image) for image in images]))


def test_the_merged_toy_keeps_the_layout_and_the_style(merged):
    """base + 0.5 Δdepth + 0.5 Δstyle: the shape follows the depth map AND is outlined,
    where the depth model alone draws no outline and the style model takes no depth map."""
    merged_iou, merged_outline = _depth2img(str(merged[0]))
    assert merged_iou >= RECIPE_IOU
    assert merged_outline >= RECIPE_OUTLINE
    depth_iou, depth_outline = _depth2img("shapes-depth")
    assert depth_iou >= RECIPE_IOU and depth_outline <= PLAIN_OUTLINE
    with pytest.raises(ValueError, match="has no depth input"):
        _depth2img("shapes-outlined")  # The style model cannot follow a depth map.
    assert _text_to_image("shapes-outlined", shapes_data.outline_darkness) >= STYLE_OUTLINE


def test_the_black_background_style_toy_draws_black_backgrounds():
    """`shapes-black`, the global style whose half vector does not show once merged
    (notes/issue-13-depth.md): the toy itself does what it says."""
    assert _text_to_image("shapes-black", shapes_data.background_darkness) >= BLACK_DARKNESS


def iou(a, b):
    return float((a & b).sum() / max(1, (a | b).sum()))


# ------------------------------------------------------------ single files


def _compvis(path, conv_channels, seed, vae_value):
    rng = np.random.default_rng(seed)
    tensors = {
        "model.diffusion_model.input_blocks.0.0.weight": rng.normal(size=(8, conv_channels, 3, 3)),
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight":
            rng.normal(size=(8, 1024)),
        "model.diffusion_model.out.2.weight": rng.normal(size=(4, 8, 3, 3)),
        "first_stage_model.decoder.conv_in.weight": np.full((8, 4, 3, 3), vae_value),
        "cond_stage_model.model.token_embedding.weight": rng.normal(size=(10, 6)),
    }  # fmt: skip
    save_file({k: np.asarray(v, np.float32) for k, v in tensors.items()}, str(path))
    return load_file(str(path))


def test_recipe_on_single_files_takes_the_fine_tunes_vae(tmp_path, capsys):
    _compvis(tmp_path / "sd2.safetensors", 4, 0, 0.0)
    depth = _compvis(tmp_path / "depth.safetensors", 5, 1, 1.0)
    style = _compvis(tmp_path / "anime.safetensors", 4, 2, 2.0)
    out = tmp_path / "merged.safetensors"
    sd2, depth_file, anime = (str(tmp_path / f"{n}.safetensors") for n in ("sd2", "depth", "anime"))
    argv = ["merge", "--base", sd2, "--add", f"{depth_file}:0.5", "--add", f"{anime}:0.5",
            "--target", depth_file, "--take-vae", anime, "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    assert "kept model.diffusion_model.input_blocks.0.0.weight" in capsys.readouterr().err
    result = load_file(str(out))
    conv = "model.diffusion_model.input_blocks.0.0.weight"
    np.testing.assert_array_equal(result[conv], depth[conv])
    assert (result["first_stage_model.decoder.conv_in.weight"] == 2.0).all()
    # The merged file is what `kerasmorph convert` detects as stable-diffusion-2-depth.
    with checkpoints.open_checkpoint(out) as source:
        assert checkpoints.detect_family(source) == "sd2-depth"
    for name in (
        "model.diffusion_model.out.2.weight",
        "cond_stage_model.model.token_embedding.weight",
    ):
        expected = 0.5 * depth[name] + 0.5 * style[name]  # base + 0.5 Δdepth + 0.5 Δstyle
        np.testing.assert_allclose(result[name], expected, rtol=1e-6, atol=1e-6)


def test_sd1_and_sd2_files_are_not_merged(tmp_path, capsys):
    _compvis(tmp_path / "sd2.safetensors", 4, 0, 0.0)
    sd1 = {"model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight":
           np.ones((8, 768), np.float32)}  # fmt: skip
    save_file(sd1, str(tmp_path / "sd1.safetensors"))
    sd2, sd1 = str(tmp_path / "sd2.safetensors"), str(tmp_path / "sd1.safetensors")
    argv = ["merge", "--weighted-sum", sd2, sd1, "--out", str(tmp_path / "m.safetensors")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "must be one family" in err and "is SD 1.x" in err and "is SD 2.x" in err
    assert not (tmp_path / "m.safetensors").exists()
