"""The command line, called in-process through `main([...])`."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kerasmorph import cli

# One Session per file, as a notebook keeps one: the model is built once and reused.
_SESSION = cli.Session()


def main(argv, session=_SESSION):
    return cli.main(argv, session=session)


TINY = ["--model", "tiny", "--steps", "2", "--no-jit", "--quiet"]


def test_generate_writes_an_image(tmp_path, capsys):
    out = tmp_path / "image.png"
    assert main(["generate", "a red circle", "--seed", "0", "--out", str(out), *TINY]) == 0
    with Image.open(out) as image:
        assert image.size == (128, 128) and image.mode == "RGB"
    assert str(out) in capsys.readouterr().out


def test_generate_is_deterministic_and_seeded(tmp_path):
    paths = []
    for name, seed in (("a.png", "1"), ("b.png", "1"), ("c.png", "2")):
        paths.append(tmp_path / name)
        main(["generate", "x", "--seed", seed, "--out", str(paths[-1]), *TINY])
    data = [p.read_bytes() for p in paths]
    assert data[0] == data[1] and data[0] != data[2]


def test_generate_several_images_and_sizes(tmp_path):
    out = tmp_path / "many.png"
    args = ["generate", "x", "--num-images", "3", "--batch-size", "2", "--width", "192"]
    assert main([*args, "--out", str(out), *TINY]) == 0
    written = sorted(tmp_path.glob("many_*.png"))
    assert [p.name for p in written] == ["many_000.png", "many_001.png", "many_002.png"]
    with Image.open(written[0]) as image:
        assert image.size == (192, 128)


def test_auto_model_falls_back_to_shapes_offline(tmp_path, capsys):
    out = tmp_path / "auto.png"
    args = ["generate", "a red circle", "--steps", "10", "--no-jit", "--quiet"]
    assert main([*args, "--out", str(out)]) == 0
    assert "using the offline 'shapes' toy model" in capsys.readouterr().err
    from kerasmorph.shapes import data

    with Image.open(out) as image:
        assert image.size == (128, 128)
        assert data.measure(np.asarray(image.convert("RGB"))).colour == "red"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--height", "100"], "Nearest valid sizes: 64 or 128"),
        (["--out", "x.gif"], "--out must end in .png"),
        (["--model", "sd9"], "Valid presets"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, args, message):
    base = ["generate", "x", "--out", str(tmp_path / "x.png"), *TINY]
    assert main([*base, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_sd1_without_weights_lists_missing_files(tmp_path, capsys):
    out = tmp_path / "x.png"
    assert (
        main(["generate", "x", "--model", "sd1", "--weights-dir", str(tmp_path), "--out", str(out)])
        == 2
    )
    err = capsys.readouterr().err
    assert "kcv_diffusion_model.h5" in err and str(tmp_path) in err


def test_argparse_rejects_non_positive_steps(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "x", "--out", "x.png", "--steps", "0"])
    assert exit_info.value.code == 2
    assert "expected an integer >= 1" in capsys.readouterr().err


def test_info_reports_presets_and_missing_weights(tmp_path, capsys):
    (tmp_path / "kcv_encoder.h5").write_bytes(b"")
    assert main(["info", "--json", "--weights-dir", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["backend"] == "tensorflow"
    assert set(report["presets"]) >= {"sd1", "sd2", "tiny"}
    sd1 = report["presets"]["sd1"]["weights"]
    assert sd1["kcv_encoder.h5"] == str(tmp_path / "kcv_encoder.h5")
    assert sd1["kcv_decoder.h5"] is None
    assert report["weights_searched"][0] == str(tmp_path)
    shapes_dir = report["presets"]["shapes"]["bundled_weights"]
    assert (Path(shapes_dir) / "diffusion_model.npz").is_file()
    assert "bundled_weights" not in report["presets"]["tiny"]
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "MISSING" in out and f"trained, shipped in {shapes_dir}" in out


# ---------------------------------------------------------------- walk commands

WALK = [*TINY, "--steps", "1"]


def gif_frames(path):
    with Image.open(path) as image:
        durations = []
        for index in range(image.n_frames):
            image.seek(index)
            durations.append(image.info["duration"])
        return image.n_frames, image.size, durations


def test_interpolate_gif(tmp_path):
    out = tmp_path / "morph.gif"
    args = ["interpolate", "a red circle", "a blue square", "a green triangle"]
    assert main([*args, "--frames", "5", "--fps", "5", "--out", str(out), *WALK]) == 0
    num_frames, size, durations = gif_frames(out)
    assert (num_frames, size) == (5, (128, 128))
    assert durations == [200] * 5


def test_interpolate_rubber_band_and_schedule(tmp_path):
    out = tmp_path / "band.gif"
    args = ["interpolate", "a", "b", "--frames", "5", "--schedule", "sinh", "--rubber-band"]
    assert main([*args, "--out", str(out), *WALK]) == 0
    assert gif_frames(out)[0] == 5 + 2


def test_grid_image(tmp_path):
    out = tmp_path / "grid.png"
    args = ["grid", "a", "b", "c", "d", "--size", "3", "--vary-noise"]
    assert main([*args, "--out", str(out), *WALK, "--height", "64", "--width", "64"]) == 0
    with Image.open(out) as image:
        assert image.size == (3 * 64, 3 * 64)


def test_walk_to_a_directory_of_pngs(tmp_path):
    out = tmp_path / "frames"
    assert (
        main(["walk", "a", "--frames", "4", "--step-size", "0.01", "--out", str(out), *WALK]) == 0
    )
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"frame_{i:05d}.png" for i in range(4)] + ["manifest.json"]


def test_loop_mp4(tmp_path):
    import imageio.v3 as iio

    out = tmp_path / "loop.mp4"
    assert main(["loop", "a", "--frames", "6", "--fps", "12", "--out", str(out), *WALK]) == 0
    frames = iio.imread(out)
    assert frames.shape[0] == 6 and frames.shape[1:3] == (128, 128)


def test_morph_seeds(tmp_path):
    out = tmp_path / "seeds.gif"
    args = ["morph-seeds", "a", "--seeds", "1", "2", "3", "--frames", "5"]
    assert main([*args, "--out", str(out), *WALK]) == 0
    assert gif_frames(out)[0] == 5


@pytest.mark.parametrize(
    "args, message",
    [
        (["interpolate", "only one", "--out", "x.gif"], "at least 2 prompts"),
        (["interpolate", "a", "b", "--schedule", "bouncy", "--out", "x.gif"], "'linear'"),
        (["loop", "a", "--out", "x.avi"], "--out must end in .gif, .mp4"),
        (["morph-seeds", "a", "--seeds", "1", "--out", "x.gif"], "at least 2 seeds"),
        (["interpolate", "a", "b", "c", "--frames", "2", "--out", "x.gif"], "at least 3 frames"),
    ],
)
def test_walk_commands_reject_bad_arguments(tmp_path, capsys, args, message):
    args = [a if a != "x.gif" and a != "x.avi" else str(tmp_path / a) for a in args]
    assert main([*args, *WALK]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_grid_needs_four_prompts(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["grid", "a", "b", "c", "--out", "x.png"])
    assert exit_info.value.code == 2


# ------------------------------------------------------- image-conditioned commands


@pytest.fixture
def picture_file(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path / "input.png"
    Image.fromarray((rng.random((96, 160, 3)) * 255).astype("uint8")).save(path)
    return path


def test_img2img(tmp_path, picture_file):
    out = tmp_path / "out.png"
    args = ["img2img", str(picture_file), "a cat", "--strength", "0.5", "--fit", "center-crop"]
    assert main([*args, "--out", str(out), *TINY]) == 0
    with Image.open(out) as image:
        assert image.size == (128, 128)


def test_sweep_grid_with_labels(tmp_path, picture_file):
    out = tmp_path / "sweep.jpg"
    args = ["sweep", str(picture_file), "a cat", "--param", "strength", "--range", "0.6:0.9:0.1"]
    assert main([*args, "--seed", "0", "--out", str(out), *TINY]) == 0
    with Image.open(out) as image:
        assert image.size == (2 * 128, 2 * 128)  # 4 values on a 2x2 grid.


def test_inpaint_writes_composite_and_raw(tmp_path, picture_file):
    import numpy as np

    mask = tmp_path / "mask.png"
    pixels = np.zeros((40, 40), np.uint8)
    pixels[:, 20:] = 255
    Image.fromarray(pixels).save(mask)
    out, raw = tmp_path / "inpainted.png", tmp_path / "raw.png"
    args = ["inpaint", str(picture_file), str(mask), "a cat", "--raw-out", str(raw)]
    assert main([*args, "--out", str(out), *TINY]) == 0
    with Image.open(out) as composite, Image.open(raw) as decoded:
        composite, decoded = np.asarray(composite), np.asarray(decoded)
    with Image.open(picture_file) as source:
        original = np.asarray(source.resize((128, 128), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(composite[:, :40], original[:, :40])
    np.testing.assert_array_equal(composite[:, 100:], decoded[:, 100:])


def test_morph_images_mp4(tmp_path, picture_file):
    import imageio.v3 as iio

    out = tmp_path / "morph.mp4"
    args = ["morph-images", str(picture_file), str(picture_file), "--prompts", "a", "b"]
    assert main([*args, "--frames", "4", "--out", str(out), *TINY]) == 0
    assert iio.imread(out).shape[0] == 4


@pytest.mark.parametrize(
    "args, message",
    [
        (["img2img", "missing.png", "x", "--out", "o.png"], "missing.png"),
        (
            ["morph-images", "a.png", "b.png", "--prompts", "a", "--out", "o.gif"],
            "one prompt per image",
        ),
        (["sweep", "IMG", "x", "--range", "0.9:0.1:0.1", "--out", "o.jpg"], "start:stop:step"),
    ],
)
def test_image_commands_reject_bad_input(tmp_path, capsys, picture_file, args, message):
    args = [str(picture_file) if a == "IMG" else a for a in args]
    args = [str(tmp_path / a) if a.startswith("o.") else a for a in args]
    assert main([*args, *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_bad_mask_file(tmp_path, capsys, picture_file):
    broken = tmp_path / "mask.png"
    broken.write_bytes(b"nope")
    args = ["inpaint", str(picture_file), str(broken), "x", "--out", str(tmp_path / "o.png")]
    assert main([*args, *TINY]) == 2
    assert "Could not read the mask file" in capsys.readouterr().err


def test_repeated_calls_reuse_the_model(tmp_path):
    from kerasmorph.cli import Session

    session = Session()
    main(["generate", "x", "--out", str(tmp_path / "a.png"), *TINY], session=session)
    first = session.explorer
    main(["generate", "y", "--out", str(tmp_path / "b.png"), *TINY], session=session)
    assert session.explorer is first
    smaller = ["generate", "y", "--width", "64", "--out", str(tmp_path / "c.png"), *TINY]
    main(smaller, session=session)
    assert session.explorer is not first
