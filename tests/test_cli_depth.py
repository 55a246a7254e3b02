"""`kerasmorph depth2img IMAGE PROMPT --depth DEPTH --out OUT`, through `main([...])`."""

import json

import numpy as np
import pytest
from PIL import Image

from kerasmorph import cli, export
from kerasmorph.shapes import data as shapes_data

_SESSION = cli.Session()
DEPTH_MODEL = ["--model", "shapes-depth", "--steps", "8", "--quiet"]


def main(argv, session=_SESSION):
    try:
        return cli.main(argv, session=session)
    except SystemExit as exit:  # argparse's refusals.
        return exit.code


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("depth")
    image = shapes_data.render(shapes_data.Sample("blue", "triangle", 0.4, (0.3, 0.3)))
    export.save_frame(root / "image.png", image)
    depth = shapes_data.depth_map(shapes_data.Sample("red", "square", 0.45, (0.7, 0.7)))
    Image.fromarray(np.round(depth * 65535).astype(np.uint16)).save(root / "depth.png")
    np.save(root / "depth.npy", depth)
    return {"image": str(root / "image.png"), "png": str(root / "depth.png"),
            "npy": str(root / "depth.npy")}  # fmt: skip


def test_depth2img_writes_the_image_and_the_map_it_used(files, tmp_path, capsys):
    out, saved = tmp_path / "out.png", tmp_path / "used.png"
    argv = ["depth2img", files["image"], "a red circle", "--depth", files["png"]]
    assert main(argv + ["--out", str(out), "--save-depth", str(saved), *DEPTH_MODEL]) == 0
    assert capsys.readouterr().out.split() == [str(out), str(saved)]
    used = np.asarray(Image.open(saved))
    assert used.dtype == np.uint16 and used.shape == (128, 128)
    assert used.max() == 65535 and used.min() == 0  # Normalised to the full range.
    assert used[110, 110] > used[10, 10]  # Near in the bottom right.
    # The .npy of the same map gives the same image (same seed).
    again = tmp_path / "npy.png"
    argv = ["depth2img", files["image"], "a red circle", "--depth", files["npy"]]
    assert main(argv + ["--out", str(again), *DEPTH_MODEL]) == 0
    first, second = (np.asarray(Image.open(p)).astype(int) for p in (out, again))
    assert np.abs(first - second).max() <= 2  # The PNG's 16-bit rounding of the map.


@pytest.mark.parametrize(
    "change, message",
    [
        (["--model", "shapes"], "has no depth input"),
        (["--depth", None], "No depth map given: pass depth_map="),
        (["--save-depth", "{tmp}/d.jpg"], "--save-depth writes a 16-bit PNG"),
        (["--strength", "1.5"], "expected a number in [0, 1]"),
    ],
)
def test_bad_requests_are_one_line(files, tmp_path, capsys, change, message):
    argv = ["depth2img", files["image"], "a red circle", "--out", str(tmp_path / "o.png")]
    if change[1] is None:
        rest = DEPTH_MODEL
    else:
        rest = ["--depth", files["png"], *DEPTH_MODEL]
        change = [part.replace("{tmp}", str(tmp_path)) for part in change]
        rest = rest + change
    assert main(argv + rest) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0], error


def test_a_depth_locked_walk_resumes_with_its_map(files, tmp_path, capsys):
    out = tmp_path / "walk"
    argv = ["interpolate", "a red circle", "a blue square", "--frames", "3", "--depth"]
    argv += [files["png"], "--out", str(out), "--batch-size", "3", *DEPTH_MODEL]
    assert main(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    depth = np.asarray(manifest["options"]["depth_map"], np.float32)
    assert depth.shape == (16, 16) and depth.min() == -1 and depth.max() == 1
    frame = sorted(out.glob("frame_*.png"))[1]
    before = np.asarray(Image.open(frame))
    frame.unlink()
    # Resumed with `render` alone: the map comes from the manifest, not from a file.
    assert main(["render", str(out), "--quiet"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(frame)), before)
    # The depth model without a map, and a GIF: one line, nothing written.
    capsys.readouterr()
    argv = ["interpolate", "a red circle", "a blue square", "--frames", "3"]
    assert main(argv + ["--out", str(tmp_path / "w.gif"), *DEPTH_MODEL]) == 2
    assert "needs a depth map" in capsys.readouterr().err
    assert not (tmp_path / "w.gif").exists()


def test_a_walk_from_an_image_keeps_the_picture_and_resumes(files, tmp_path, capsys):
    """--image: every frame is img2img of one picture (a blue triangle, top left)."""
    out = tmp_path / "from-image"
    argv = ["interpolate", "a red circle", "a green square", "--frames", "3", "--model", "shapes"]
    argv += ["--image", files["image"], "--strength", "0.6", "--steps", "10", "--quiet"]
    assert main(argv + ["--out", str(out), "--batch-size", "3"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["strength"] == 0.6
    assert np.shape(manifest["options"]["start_latents"]) == (16, 16, 4)
    frames = sorted(out.glob("frame_*.png"))
    for frame in frames:  # Each frame's shape sits where the picture's is.
        x, y = shapes_data.measure(np.asarray(Image.open(frame))).centroid
        assert x < 0.45 and y < 0.45, (frame.name, x, y)
    before = np.asarray(Image.open(frames[2]))
    frames[2].unlink()
    assert main(["render", str(out), "--quiet"]) == 0  # The latents come from the manifest.
    np.testing.assert_array_equal(np.asarray(Image.open(frames[2])), before)
    # Refusals, one line each, nothing written.
    capsys.readouterr()
    gif = ["--out", str(tmp_path / "x.gif"), "--model", "shapes", "--steps", "2", "--quiet"]
    for extra, message in (
        (["--strength", "0.5"], "--strength 0.5 goes with --image"),
        (["--image", files["image"], "--respace"], "does not combine with --adaptive/--respace"),
        (["--image", str(tmp_path / "none.png")], "No such image file"),
    ):
        assert main(["interpolate", "a red circle", "a green square", *extra, *gif]) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and message in error[0], error
    assert not (tmp_path / "x.gif").exists()
