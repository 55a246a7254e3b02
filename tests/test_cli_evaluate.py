"""`kerasmorph evaluate FRAMES [FRAMES ...]`, through `main([...])`."""

import importlib.util
import json

import numpy as np
import pytest
from PIL import Image

from kerasmorph import cli, export, metrics

# One Session per file, as a notebook keeps one: the model is built once and reused.
_SESSION = cli.Session()


def main(argv, session=_SESSION):
    return cli.main(argv, session=session)


SIDES = (16, 12, 0, 0, 12, 16)  # The square vanishes mid-morph, for two frames.


def square_frames(sides=SIDES, size=64):
    frames = np.full((len(sides), size, size, 3), 255, np.uint8)
    for frame, side in zip(frames, sides):
        frame[8 : 8 + side, 8 : 8 + side] = (220, 20, 0)
    return frames


@pytest.fixture
def morphs(tmp_path):
    """The same 6-frame morph as a GIF and as a PNG folder."""
    frames = square_frames()
    gif = export.save_gif(tmp_path / "morph.gif", frames, fps=10)
    folder = tmp_path / "frames"
    export.save_frames(folder, frames)
    return {"frames": frames, "gif": str(gif), "folder": str(folder)}


def test_a_table_row_per_morph_and_metric(morphs, capsys):
    assert main(["evaluate", morphs["gif"], morphs["folder"]]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:3] == ["FRAMES", "frames", "metric"]
    rows = [line.split() for line in lines[1:]]
    assert [(row[0], row[1], row[2]) for row in rows] == [
        (morphs["gif"], "6", "l2"),
        (morphs["gif"], "6", "ssim"),
        (morphs["folder"], "6", "l2"),
        (morphs["folder"], "6", "ssim"),
    ]
    # The GIF stores the two empty frames once (Pillow merges them), read back as two:
    # the same numbers as the PNG folder.
    assert rows[0][3:] == rows[2][3:]
    assert rows[0][-2:] == ["0.000", "(2)"]  # Presence: gone at frame 2.


def test_json_holds_every_number(morphs, tmp_path, capsys):
    assert main(["evaluate", morphs["gif"], "--metrics", "l2", "mad", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    (morph,) = document["morphs"]
    expected = metrics.evaluate_frames(morphs["frames"], metrics=["l2", "mad"])
    assert morph == {"path": morphs["gif"], **expected}
    assert morph["presence"]["shares"][2:4] == [0.0, 0.0]
    # --json FILE writes it (and the table still prints).
    out = tmp_path / "report" / "metrics.json"
    assert main(["evaluate", morphs["folder"], "--threshold", "10", "--json", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["morphs"][0]["presence"]["threshold"] == 10.0
    assert "FRAMES" in capsys.readouterr().out


def test_plot_writes_an_image(morphs, tmp_path):
    out = tmp_path / "curves.png"
    assert main(["evaluate", morphs["gif"], morphs["folder"], "--plot", str(out)]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 200


@pytest.mark.skipif(
    importlib.util.find_spec("imageio_ffmpeg") is None, reason="imageio-ffmpeg is not installed"
)
def test_an_mp4(morphs, tmp_path, capsys):
    out = export.save_mp4(tmp_path / "morph.mp4", morphs["frames"], fps=10)
    assert main(["evaluate", str(out), "--json"]) == 0
    (morph,) = json.loads(capsys.readouterr().out)["morphs"]
    assert morph["num_frames"] == 6 and morph["presence"]["argmin"] == 2
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(100))
    assert main(["evaluate", str(broken)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "broken.mp4: cannot be read as a video" in lines[0], lines


def test_a_render_directory_and_latents(tmp_path, capsys):
    render_dir = tmp_path / "walk"
    walk = ["--model", "tiny", "--steps", "1", "--no-jit", "--quiet"]
    argv = ["interpolate", "a", "b", "--frames", "3", "--height", "64", "--width", "64"]
    assert main([*argv, "--out", str(render_dir), *walk]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(render_dir), "--latent", "--model", "tiny", "--json"]) == 0
    (morph,) = json.loads(capsys.readouterr().out)["morphs"]
    assert sorted(morph["distances"]) == ["l2", "latent_l2", "ssim"]
    explorer = _SESSION.explorer
    frames = np.stack([np.asarray(Image.open(p)) for p in sorted(render_dir.glob("*.png"))])
    np.testing.assert_allclose(
        morph["distances"]["latent_l2"]["distances"],
        metrics.latent_distances(explorer.encode_image(frames)),
        rtol=1e-5,
    )


@pytest.mark.parametrize(
    "name, message",
    [
        ("missing.gif", "missing.gif: No such file or directory"),
        ("broken.gif", "cannot identify image file"),
        ("one.gif", "holds 1 frame: a morph needs at least 2"),
        ("one.png", "is a single image"),
        ("mixed", "frame_00001.png is 32x32 but frame_00000.png is 64x64"),
        ("empty", "no PNG frames in this folder"),
        ("notes.txt", "FRAMES must be a .gif"),
    ],
)
def test_bad_frames_are_one_line_errors(tmp_path, capsys, name, message):
    frames = square_frames()
    path = tmp_path / name
    if name == "broken.gif":
        path.write_bytes(b"GIF89a, not really")
    elif name == "one.gif":
        export.save_gif(path, frames[:1])
    elif name == "one.png":
        export.save_frame(path, frames[0])
    elif name == "mixed":
        export.save_frames(path, frames[:1])
        export.save_frame(path / "frame_00001.png", frames[0, :32, :32])
    elif name == "empty":
        path.mkdir()
    elif name == "notes.txt":
        path.write_text("frames")
    assert main(["evaluate", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kerasmorph evaluate: error: "), lines
    assert message in lines[0]


def test_bad_options_are_refused(morphs, tmp_path, capsys):
    gif = morphs["gif"]
    for argv, message in [
        (["--json", str(tmp_path / "m.txt")], "--json FILE must end in .json"),
        (["--plot", str(tmp_path / "m.gif")], "--plot must end in .png"),
        (["--plot", gif], "--plot must end in .png"),
        (
            [
                "--json",
                str(tmp_path / "x.json"),
                "--plot",
                str(tmp_path / "x.png"),
                "--model",
                "sd1",
            ],
            "add --latent",
        ),
    ]:
        assert main(["evaluate", gif, *argv]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines
    # An output that is an input is refused before anything is written.
    assert (
        main(["evaluate", morphs["folder"], "--plot", morphs["folder"] + "/frame_00000.png"]) == 2
    )
    assert "FRAMES #1" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
