"""`kerasmorph export RENDER_DIR --out x.gif|x.mp4`, through `main([...])`."""

import importlib.util
import shutil

import numpy as np
import pytest
from test_export import gif_frames

from kerasmorph import cli, renders

# One Session per file, as a notebook keeps one: the model is built once and reused.
_SESSION = cli.Session()


def main(argv, session=_SESSION):
    return cli.main(argv, session=session)


WALK = ["--model", "tiny", "--steps", "1", "--no-jit", "--quiet", "--height", "64", "--width", "64"]
NUM_FRAMES = 5


@pytest.fixture(scope="module")
def render_dir(tmp_path_factory):
    """A finished 5-frame render directory of the tiny model (read-only for the tests)."""
    directory = tmp_path_factory.mktemp("render") / "walk"
    args = ["interpolate", "a red circle", "a blue square", "--frames", str(NUM_FRAMES)]
    assert main([*args, "--out", str(directory), *WALK]) == 0
    return directory


def test_a_finished_render_becomes_agif_frames(render_dir, tmp_path, capsys):
    out = tmp_path / "walk.gif"
    assert main(["export", str(render_dir), "--out", str(out), "--fps", "5"]) == 0
    assert capsys.readouterr().out == f"{out}\n"
    frames, durations = gif_frames(out)
    assert len(frames) == NUM_FRAMES and durations == [200] * NUM_FRAMES
    assert frames[0].shape == (64, 64, 3)


def test_rubber_band_appends_the_frames_reversed(render_dir, tmp_path):
    out = tmp_path / "band.gif"
    manifest = render_dir / renders.MANIFEST
    assert main(["export", str(manifest), "--out", str(out), "--rubber-band"]) == 0
    frames, _ = gif_frames(out)
    # 0 1 2 3 4, then 3 2: the same frame files, so the same GIF frames.
    assert len(frames) == NUM_FRAMES + NUM_FRAMES - 3
    np.testing.assert_array_equal(frames[5], frames[3])
    np.testing.assert_array_equal(frames[6], frames[2])
    assert not np.array_equal(frames[0], frames[4])


@pytest.mark.skipif(
    importlib.util.find_spec("imageio_ffmpeg") is None, reason="imageio-ffmpeg is not installed"
)
def test_a_finished_render_becomes_an_mp4(render_dir, tmp_path):
    import imageio.v2 as imageio

    out = tmp_path / "walk.mp4"
    assert main(["export", str(render_dir), "--out", str(out), "--rubber-band"]) == 0
    with imageio.get_reader(out, format="FFMPEG") as reader:
        assert sum(1 for _ in reader) == NUM_FRAMES + NUM_FRAMES - 3


def test_an_unfinished_render_is_refused_unless_partial(render_dir, tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    shutil.copytree(render_dir, unfinished)
    for index in (1, 2, 4):
        renders.frame_path(unfinished, index).unlink()
    out = tmp_path / "partial.gif"
    assert main(["export", str(unfinished), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "3 of 5 frames missing (frames 1-2, 4)" in err and "--partial" in err
    assert not out.exists()
    assert main(["export", str(unfinished), "--out", str(out), "--partial"]) == 0
    assert "2 frames written (2 of its 5 frames done)" in capsys.readouterr().err
    assert len(gif_frames(out)[0]) == 2


@pytest.mark.parametrize(
    "out, message",
    [
        ("walk.png", "--out must end in .gif or .mp4"),
        ("folder.gif", "is a directory"),
        ("frame.gif", "never overwritten"),
    ],
)
def test_bad_outputs_are_one_line_errors(render_dir, tmp_path, capsys, out, message):
    (tmp_path / "folder.gif").mkdir()
    # A GIF name that is a frame of the render (a symlink to it).
    (tmp_path / "frame.gif").symlink_to(renders.frame_path(render_dir, 0))
    before = renders.frame_path(render_dir, 0).read_bytes()
    assert main(["export", str(render_dir), "--out", str(tmp_path / out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert renders.frame_path(render_dir, 0).read_bytes() == before


def test_a_directory_without_a_manifest_is_a_one_line_error(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "x.gif")]) == 2
    err = capsys.readouterr().err.strip()
    assert "No render manifest" in err and len(err.splitlines()) == 1
