"""Inputs are never overwritten (issue 17, point 4), and the checkpoint parts of point 8.

`--out` equal to (or inside) an input is refused by every command in one line,
before anything is built or written; merges refuse it from Python too, write
to a temporary path, and replace a merged diffusers folder whole (no stale
`unet/*.bin`, no old `text_encoder/`); a converted folder that lacks a file is
an error naming it, never a stock file mixed in.
"""

import json
import os

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load_file, save_file

from kerasmorph import checkpoints, cli, paths, weights
from kerasmorph.errors import InputError
from kerasmorph.presets import PRESETS

TINY = ["--model", "tiny", "--quiet"]


def _run(argv, capsys):
    """`main(argv)` in a fresh session: (exit status, stderr, whether a model was built)."""
    session = cli.Session()
    model_flags = [] if argv[0] in ("merge", "similarity", "convert") else TINY
    code = cli.main([*argv, *model_flags], session=session)
    return code, capsys.readouterr().err, session.explorer is not None


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "in.png"
    Image.new("RGB", (64, 64), (200, 100, 50)).save(path)
    return path


# ------------------------------------------------------------------ the check


def test_same_file_symlink_hard_link_and_inside(tmp_path):
    source = tmp_path / "a.png"
    source.write_bytes(b"x")
    with pytest.raises(InputError, match="is the input file IMAGE"):
        paths.check_output_not_input(tmp_path / "." / "a.png", {"IMAGE": source})
    (tmp_path / "link.png").symlink_to(source)
    with pytest.raises(ValueError, match="never overwritten"):
        paths.check_output_not_input(tmp_path / "link.png", {"IMAGE": source})
    os.link(source, tmp_path / "hard.png")
    with pytest.raises(ValueError, match="never overwritten"):
        paths.check_output_not_input(tmp_path / "hard.png", {"IMAGE": source})
    folder = tmp_path / "model"
    folder.mkdir()
    with pytest.raises(ValueError, match="must not be an input folder or lie inside one"):
        paths.check_output_not_input(folder / "sub" / "x.gif", {"A": folder})
    # A folder whose contents are replaced must not hold an input either.
    paths.check_output_not_input(tmp_path, {"IMAGE": source})
    with pytest.raises(ValueError, match="lies inside --out"):
        paths.check_output_not_input(tmp_path, {"IMAGE": source}, replaces_contents=True)
    paths.check_output_not_input(tmp_path / "b.png", {"IMAGE": source, "none": None})


# --------------------------------------------------------------- the commands


def test_image_commands_refuse_an_input_as_out(image, tmp_path, capsys):
    before = image.read_bytes()
    mask = tmp_path / "mask.png"
    Image.new("L", (64, 64), 255).save(mask)
    frames = tmp_path / "frames"
    frames.mkdir()
    inside = frames / "a.png"
    inside.write_bytes(before)
    cases = [
        (["img2img", str(image), "p", "--out", str(image)], "IMAGE"),
        (["inpaint", str(image), str(mask), "p", "--out", str(mask)], "MASK"),
        (
            ["inpaint", str(image), str(mask), "p", "--out", "o.png", "--raw-out", str(image)],
            "IMAGE",
        ),
        (["sweep", str(image), "p", "--range", "0.5,0.6", "--out", str(image)], "IMAGE"),
        (
            ["morph-images", str(inside), str(image), "--prompts", "a", "b", "--out", str(frames)],
            "IMAGE #1",
        ),
    ]
    for argv, label in cases:
        code, err, built = _run(argv, capsys)
        assert code == 2 and err.count("\n") == 1, err
        assert f"{label}=" in err and "error:" in err and not built
    assert image.read_bytes() == before and inside.read_bytes() == before
    assert not (tmp_path / "o.png").exists()


def test_model_inputs_are_inputs_too(tmp_path, capsys):
    embedding = tmp_path / "rd" / "token.safetensors"
    embedding.parent.mkdir()
    save_file({"emb_params": np.zeros((1, 64), np.float32)}, str(embedding))
    before = embedding.read_bytes()
    # A render directory must not hold an input: --overwrite would clear it.
    argv = ["interpolate", "a", "b", "--out", str(embedding.parent), "--embedding", str(embedding)]
    code, err, built = _run(argv, capsys)
    assert code == 2 and "--embedding #1=" in err and "lies inside --out" in err and not built
    config = tmp_path / "scheduler.png"  # Named so --out accepts it.
    config.write_text("{}")
    code, err, built = _run(
        ["generate", "x", "--out", str(config), "--scheduler-config", str(config)], capsys
    )
    assert code == 2 and "--scheduler-config=" in err and not built
    assert embedding.read_bytes() == before and config.read_text() == "{}"


def test_generate_refuses_a_numbered_output_that_is_an_input(tmp_path, capsys):
    embedding = tmp_path / "out_001.png"  # Image 1 of --num-images 3 would go here.
    embedding.write_bytes(b"not an image")
    argv = ["generate", "x", "--num-images", "3", "--out", str(tmp_path / "out.png")]
    code, err, built = _run([*argv, "--embedding", str(embedding)], capsys)
    assert code == 2 and "out_001.png" in err and not built
    assert embedding.read_bytes() == b"not an image"


# ------------------------------------------------------------ merging files


def _file(path, value):
    save_file({"model.diffusion_model.w": np.full((2, 2), value, np.float32)}, str(path))
    return path


def test_merge_refuses_to_replace_a_single_file_input(tmp_path, capsys):
    a, b = _file(tmp_path / "A.safetensors", 1.0), _file(tmp_path / "B.safetensors", 3.0)
    before = a.read_bytes()
    code, err, _ = _run(["merge", "--weighted-sum", str(a), str(b), "--out", str(a)], capsys)
    assert code == 2 and "--weighted-sum A=" in err and err.count("\n") == 1
    with pytest.raises(ValueError, match="is the input file target"):
        checkpoints.merge_checkpoints(a, a, [(0.5, b)], 0.5)
    with pytest.raises(ValueError, match="is the input file model 1"):
        checkpoints.merge_checkpoints(tmp_path / "." / "B.safetensors", a, [(0.5, b)], 0.5)
    assert a.read_bytes() == before
    # A new file is written whole, through a hidden temporary name.
    checkpoints.merge_checkpoints(tmp_path / "m.safetensors", a, [(0.5, b)], 0.5)
    np.testing.assert_allclose(
        load_file(str(tmp_path / "m.safetensors"))["model.diffusion_model.w"], 2.0
    )
    assert not list(tmp_path.glob(".*tmp*"))


def _folder(root, value, *, subfolders=("unet", "vae", "text_encoder")):
    names = {
        "unet": ("diffusion_pytorch_model.safetensors", "conv_in.weight"),
        "vae": ("diffusion_pytorch_model.safetensors", "decoder.conv_in.weight"),
        "text_encoder": ("model.safetensors", "text_model.final_layer_norm.weight"),
    }
    for subfolder in subfolders:
        file_name, tensor = names[subfolder]
        (root / subfolder).mkdir(parents=True)
        save_file({tensor: np.full(3, value, np.float32)}, str(root / subfolder / file_name))
        (root / subfolder / "config.json").write_text("{}")
    (root / "model_index.json").write_text(json.dumps({"value": value}))
    return root


def test_a_folder_merge_replaces_an_earlier_merge_whole(tmp_path):
    a, b = _folder(tmp_path / "a", 1.0), _folder(tmp_path / "b", 3.0)
    out = tmp_path / "merged"
    checkpoints.merge_checkpoints(out, a, [(0.5, b)], 0.5)
    record = json.loads((out / checkpoints.merge_files.MERGE_RECORD).read_text())
    assert record["target"] == str(a.resolve()) and record["terms"] == [[0.5, str(b.resolve())]]
    (out / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"stale")
    # A merge of folders without a text encoder, into the same folder; and the
    # hidden folder a killed merge left (its pid no longer runs).
    c, d = (
        _folder(tmp_path / n, v, subfolders=("unet", "vae")) for n, v in (("c", 5.0), ("d", 7.0))
    )
    killed = tmp_path / ".merged.999999999.0badf00d.merging"
    (killed / "unet").mkdir(parents=True)
    checkpoints.merge_checkpoints(out, c, [(0.5, d)], 0.5)
    assert not (out / "text_encoder").exists()
    assert not (out / "unet" / "diffusion_pytorch_model.bin").exists()
    unet = load_file(str(out / "unet" / "diffusion_pytorch_model.safetensors"))
    np.testing.assert_allclose(unet["conv_in.weight"], 6.0)
    assert not killed.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c", "d", "merged"]


def test_a_folder_merge_refuses_foreign_folders_and_inputs_inside(tmp_path, capsys):
    a, b = _folder(tmp_path / "a", 1.0), _folder(tmp_path / "b", 3.0)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"keep me")
    with pytest.raises(ValueError, match="non-empty folder that kerasmorph did not write"):
        checkpoints.merge_checkpoints(foreign, a, [(0.5, b)], 0.5)
    assert (foreign / "holiday.jpg").read_bytes() == b"keep me"
    with pytest.raises(ValueError, match="lies inside `out`|lies inside out"):
        checkpoints.merge_checkpoints(tmp_path, a, [(0.5, b)], 0.5)
    with pytest.raises(ValueError, match="is the input folder target"):
        checkpoints.merge_checkpoints(a, a, [(0.5, b)], 0.5)
    code, err, _ = _run(["merge", "--weighted-sum", str(a), str(b), "--out", str(b)], capsys)
    assert code == 2 and "--weighted-sum B=" in err
    code, err, _ = _run(["similarity", str(a), str(b), "--csv", str(a / "similarity.csv")], capsys)
    assert code == 2 and "inside the input folder A" in err
    assert not (a / "similarity.csv").exists()
    code, err, _ = _run(["convert", str(a), "--out", str(a / "keras")], capsys)
    assert code == 2 and "CHECKPOINT=" in err and not (a / "keras").exists()


# --------------------------------------------------------- converted folders


def _converted(folder, missing):
    folder.mkdir()
    for component, file in PRESETS["sd1"].weight_files.items():
        if component not in missing:
            (folder / file.filename).write_bytes(b"")
    (folder / weights.MANIFEST_NAME).write_text('{"format": 1, "preset": "sd1", "files": {}}')
    return folder


def test_a_converted_folder_never_mixes_in_stock_files(tmp_path, monkeypatch):
    folder = _converted(tmp_path / "sd15", missing=("decoder",))
    # The stock decoder is on disk, in both places searched for other folders.
    stock = tmp_path / "stock"
    stock.mkdir()
    (stock / "kcv_decoder.h5").write_bytes(b"stock")
    monkeypatch.setenv(weights.WEIGHTS_ENV, str(stock))
    cache = weights.keras_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "kcv_decoder.h5").write_bytes(b"stock")
    files = PRESETS["sd1"].weight_files
    assert weights.search_dirs(folder) == [folder]
    assert weights.find_weights(files, folder)["decoder"] is None
    assert weights.find_weights(files, tmp_path)["decoder"] == stock / "kcv_decoder.h5"

    def no_download(*args, **kwargs):
        raise AssertionError("a converted folder must never download")

    monkeypatch.setattr("kerasmorph.backend.keras_module", no_download)
    with pytest.raises(weights.IncompleteConversionError) as error:
        weights.resolve_weights(files, folder, download=True)
    message = str(error.value)
    assert "\n" not in message and "kcv_decoder.h5 (decoder)" in message
    assert "kerasmorph convert" in message and str(folder) in message
    assert isinstance(error.value, weights.MissingWeightsError)


def test_the_explorer_names_the_missing_file_of_a_converted_folder(tmp_path):
    import kerasmorph

    folder = _converted(tmp_path / "sd15", missing=("diffusion_model",))
    with pytest.raises(weights.IncompleteConversionError, match="kcv_diffusion_model.h5"):
        kerasmorph.Explorer(str(folder), verbose=False)
