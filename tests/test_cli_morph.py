"""The morph-quality flags of the walk commands (issue 15), end to end on `tiny`."""

import json

import numpy as np
import pytest
from PIL import Image
from test_cli import gif_frames

from kerasmorph import cli

_SESSION = cli.Session()


def main(argv, session=_SESSION):
    return cli.main(argv, session=session)


# The default path users run: XLA on (no --no-jit).
TINY = ["--model", "tiny", "--steps", "2", "--quiet", "--height", "64", "--width", "64"]


def _frames(directory):
    return [np.asarray(Image.open(path)) for path in sorted(directory.glob("frame_*.png"))]


def test_attention_render_records_its_options_and_resumes_byte_identical(tmp_path):
    out = tmp_path / "morph"
    args = ["interpolate", "a red circle", "a blue square", "--frames", "5", "--out", str(out)]
    morph = ["--text-interpolation", "attention", "--middle-guidance", "3"]
    assert main([*args, *morph, *TINY]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"] == {"text_interpolation": "attention", "middle_guidance_scale": 3.0}
    first = _frames(out)
    (out / "frame_00002.png").unlink()
    assert main(["render", str(out), "--quiet"]) == 0
    for before, after in zip(first, _frames(out)):
        np.testing.assert_array_equal(before, after)
    # The plain walk: the endpoints are the same frames, the middle is not.
    plain = tmp_path / "plain"
    plain_args = ["interpolate", "a red circle", "a blue square", "--frames", "5"]
    assert main([*plain_args, "--out", str(plain), *TINY]) == 0
    assert json.loads((plain / "manifest.json").read_text())["options"] == {}
    plain_frames = _frames(plain)
    for index in (0, 4):
        assert np.abs(first[index].astype(int) - plain_frames[index]).max() <= 1
    assert np.abs(first[2].astype(int) - plain_frames[2]).max() > 2
    # Asking the finished directory for other options is refused, naming them.
    assert main([*args, *TINY]) == 2


def test_adaptive_interpolate_with_attention_and_an_l2_metric(tmp_path):
    out = tmp_path / "adaptive.gif"
    args = ["interpolate", "a red circle", "a blue square", "--frames", "3", "--out", str(out)]
    adaptive = ["--adaptive", "0.0001", "--max-frames", "5", "--adaptive-metric", "l2"]
    assert main([*args, *adaptive, "--text-interpolation", "attention", *TINY]) == 0
    assert gif_frames(out)[0] == 5


def test_morph_seeds_with_adain(tmp_path):
    out = tmp_path / "seeds"
    args = ["morph-seeds", "a red circle", "--seeds", "1", "2", "--frames", "3"]
    assert main([*args, "--noise-statistics", "adain", "--out", str(out), *TINY]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    expected = {"noise_method": "variance_preserving", "noise_statistics": "adain"}
    assert manifest["options"] == expected


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--text-interpolation", "outer"], "invalid choice: 'outer'"),
        (["--middle-guidance", "nan"], "--middle-guidance"),
    ],
)
def test_bad_morph_flags_are_refused(tmp_path, capsys, flags, message):
    args = ["interpolate", "a", "b", "--out", str(tmp_path / "x.gif"), *flags, *TINY]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_respace_writes_the_frames_and_the_changes_plot(tmp_path, capsys):
    out = tmp_path / "respaced.gif"
    args = ["interpolate", "a red circle", "a blue square", "--frames", "4", "--out", str(out)]
    assert (
        main([*args, "--respace", "--probe-frames", "5", "--text-interpolation", "switch", *TINY])
        == 0
    )
    assert gif_frames(out)[0] == 4
    assert (tmp_path / "respaced.changes.png").exists()
    assert "largest change" in capsys.readouterr().out


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--respace", "--adaptive", "0.1"], "--respace places --frames frames itself"),
        (["--probe-frames", "5"], "--probe-frames is the probe of --respace"),
        (["--switch-width", "0.1"], "shapes text_interpolation='switch' only"),
    ],
)
def test_conflicting_spacing_flags_are_refused(tmp_path, capsys, flags, message):
    args = ["interpolate", "a", "b", "--out", str(tmp_path / "x.gif"), *flags, *TINY]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
