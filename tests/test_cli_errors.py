"""The command line's error boundary: one line and exit status 2 for every known
failure, 130 for Ctrl-C, a traceback for a bug (issue 17, point 7).

Every test runs the default CLI path (no --no-jit) through `main([...])`.
"""

import errno
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

import kerasmorph
from kerasmorph import cli
from kerasmorph.cli import info

# One Session per file, as a notebook keeps one: the model is built once and reused.
_SESSION = cli.Session()


def main(argv, session=_SESSION):
    return cli.main(argv, session=session)


TINY = ["--model", "tiny", "--steps", "2", "--quiet"]


def one_error_line(capsys, command):
    """The one line on stderr (fails if there are more), checked to start with the command."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"kerasmorph {command}: ")
    return lines[0]


def argparse_error(capsys, argv):
    """The one line argparse prints (no usage block) when it refuses `argv`."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and "--help)" in lines[0], lines
    return lines[0]


# ------------------------------------------------------------ the hierarchy


def test_errors_form_one_hierarchy_exported_from_the_package():
    from kerasmorph.cli import CommandError
    from kerasmorph.explorer.checks import NonFiniteOutputError

    base = kerasmorph.KerasmorphError
    assert NonFiniteOutputError is kerasmorph.NonFiniteOutputError
    assert issubclass(NonFiniteOutputError, (base, FloatingPointError))
    for name in ("InputError", "ResourceLimitError", "FileFormatError", "RenderDirectoryError"):
        error_type = getattr(kerasmorph, name)
        assert issubclass(error_type, base) and issubclass(error_type, ValueError), name
    assert issubclass(CommandError, base)
    error = kerasmorph.FileFormatError("a/b.pt", "garbage")
    assert error.filename == "a/b.pt" and str(error) == "a/b.pt: garbage"


def test_validators_raise_input_errors_that_are_value_errors(tiny_explorer):
    with pytest.raises(kerasmorph.InputError, match="unconditional_guidance_scale"):
        tiny_explorer.generate_image(
            tiny_explorer.encode_text("x"), num_steps=1, unconditional_guidance_scale=float("nan")
        )
    with pytest.raises(ValueError, match="float32"):
        tiny_explorer.generate_image(
            tiny_explorer.encode_text("x"), num_steps=1, unconditional_guidance_scale=1e308
        )


# ------------------------------------------------------------ float flags


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e308"])
def test_guidance_must_be_finite(capsys, tmp_path, value):
    argv = ["generate", "x", "--out", str(tmp_path / "a.png"), *TINY, f"--guidance={value}"]
    line = argparse_error(capsys, argv)
    assert "argument --guidance: expected a finite number" in line and value in line
    assert not (tmp_path / "a.png").exists()


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["walk", "x", "--out", "o.gif", "--step-size", "nan"], "--step-size"),
        (["walk", "x", "--out", "o.gif", "--norm", "inf"], "--norm"),
        (["walk", "x", "--out", "o.gif", "--norm", "0"], "--norm"),
        (["loop", "x", "--out", "o.gif", "--fps", "nan"], "--fps"),
        (["interpolate", "a", "b", "--out", "o.gif", "--adaptive", "inf"], "--adaptive"),
        (["inpaint", "i.png", "m.png", "x", "--out", "o.png", "--feather", "nan"], "--feather"),
        (["inpaint", "i.png", "m.png", "x", "--out", "o.png", "--feather", "-1"], "--feather"),
        (["img2img", "i.png", "x", "--out", "o.png", "--strength", "nan"], "--strength"),
        (["merge", "--weighted-sum", "a", "b", "--alpha", "inf", "--out", "o"], "--alpha"),
        (["merge", "--base", "b", "--add", "a:nan", "--out", "o"], "--add"),
    ],
)
def test_float_flags_are_validated_up_front(capsys, argv, flag):
    assert f"argument {flag}:" in argparse_error(capsys, argv)


def test_sweep_range_must_be_finite(capsys, tmp_path):
    argv = ["sweep", "i.png", "x", "--param", "guidance", "--range", "0:inf:1", "--out", "o.jpg"]
    line = argparse_error(capsys, argv)
    assert "argument --range" in line and "'inf'" in line


def test_overflow_is_one_line(capsys, monkeypatch):
    def overflow(args, session):
        raise OverflowError("cannot convert float infinity to integer")

    monkeypatch.setattr(info, "run_info", overflow)
    assert main(["info"]) == 2
    assert "cannot convert float infinity to integer" in one_error_line(capsys, "info")


# ------------------------------------------------------------ OS errors


def test_file_out_that_is_a_directory_is_refused_up_front(capsys, tmp_path):
    out = tmp_path / "x.gif"
    out.mkdir()
    assert main(["interpolate", "a", "b", "--frames", "2", "--out", str(out), *TINY]) == 2
    line = one_error_line(capsys, "interpolate")
    assert str(out) in line and "is a directory" in line


def test_unwritable_out_is_one_line_naming_the_file(capsys, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file")
    out = blocker / "image.png"
    assert main(["generate", "x", "--out", str(out), *TINY]) == 2
    line = one_error_line(capsys, "generate")
    assert "not_a_folder" in line and "Traceback" not in line


@pytest.mark.parametrize(
    "error",
    [
        PermissionError(errno.EACCES, "Permission denied", "/ro/out.gif"),
        IsADirectoryError(errno.EISDIR, "Is a directory", "/ro/out.gif"),
        FileExistsError(errno.EEXIST, "File exists", "/ro/out.gif"),
        OSError(errno.ENOSPC, "No space left on device", "/ro/out.gif"),
        OSError(errno.EROFS, "Read-only file system", "/ro/out.gif"),
    ],
    ids=lambda error: errno.errorcode[error.errno],
)
def test_os_errors_are_one_line_naming_the_file(capsys, monkeypatch, error):
    def fail(args, session):
        raise error

    monkeypatch.setattr(info, "run_info", fail)
    assert main(["info"]) == 2
    assert (
        one_error_line(capsys, "info") == f"kerasmorph info: error: /ro/out.gif: {error.strerror}"
    )


# ------------------------------------------------------------ decode errors


def test_garbage_embedding_file_is_one_line_naming_it(capsys, tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\xff" * 64)
    argv = ["generate", "x", "--out", str(tmp_path / "a.png"), *TINY, "--embedding", str(bad)]
    assert main(argv, session=cli.Session()) == 2
    line = one_error_line(capsys, "generate")
    assert str(bad) in line and "safetensors" in line


def test_non_finite_embedding_is_one_line_naming_it(capsys, tmp_path):
    from safetensors.numpy import save_file

    vectors = np.zeros((2, 32), np.float32)
    vectors[1, 3] = np.nan
    path = tmp_path / "nan-style.safetensors"
    save_file({"emb_params": vectors}, str(path))
    argv = ["generate", "x", "--out", str(tmp_path / "a.png"), *TINY, "--embedding", str(path)]
    assert main(argv, session=cli.Session()) == 2
    line = one_error_line(capsys, "generate")
    assert str(path) in line and "NaN/Inf" in line


def _png_header(path: Path, width: int, height: int) -> None:
    """A PNG that declares `width` x `height` pixels (and holds none): Pillow reads the header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


def test_decompression_bomb_is_one_line_naming_the_file(capsys, tmp_path):
    bomb = tmp_path / "bomb.png"
    _png_header(bomb, 20000, 20000)
    assert main(["img2img", str(bomb), "x", "--out", str(tmp_path / "o.png"), *TINY]) == 2
    line = one_error_line(capsys, "img2img")
    assert str(bomb) in line and "pixels" in line


def _open_bomb(path):
    from PIL import Image

    with Image.open(path):
        pass


def _load_safetensors(path):
    from safetensors.numpy import load_file

    load_file(str(path))


@pytest.mark.parametrize(
    "read, suffix", [(_open_bomb, ".png"), (_load_safetensors, ".safetensors")]
)
def test_unwrapped_decode_errors_are_one_line_naming_the_file(
    capsys, tmp_path, monkeypatch, read, suffix
):
    # Pillow's DecompressionBombError and safetensors' SafetensorError as the
    # libraries raise them (neither is a ValueError nor an OSError).
    path = tmp_path / f"input{suffix}"
    if suffix == ".png":
        _png_header(path, 20000, 20000)
    else:
        path.write_bytes(b"\xff" * 64)
    monkeypatch.setattr(info, "run_info", lambda args, session: read(path))
    assert main(["info"]) == 2
    assert f"error: {path}: " in one_error_line(capsys, "info")


def test_corrupt_scheduler_config_is_one_line_naming_the_file(capsys, tmp_path):
    config = tmp_path / "scheduler_config.json"
    config.write_text("{not json")
    argv = ["generate", "x", "--out", str(tmp_path / "a.png"), *TINY]
    assert main([*argv, "--scheduler-config", str(config)]) == 2
    assert "scheduler_config.json" in one_error_line(capsys, "generate")


# ------------------------------------------------------------ non-finite outputs


def test_non_finite_inputs_are_named_instead_of_the_precision(tiny_explorer):
    from kerasmorph.explorer.checks import check_finite

    encodings = tiny_explorer.encode_text("x")
    encodings[0, 3, 0] = np.inf
    with pytest.raises(kerasmorph.NonFiniteOutputError) as error_info:
        tiny_explorer.generate_image(encodings, num_steps=1, seed=0)
    message = str(error_info.value)
    assert "encoded_text (1 NaN/Inf)" in message and "not the cause" in message
    # Under a low precision the hint blames the precision only when the inputs are finite.
    nan = np.full((1, 2), np.nan)
    with pytest.raises(kerasmorph.NonFiniteOutputError, match="encoded_text") as error_info:
        check_finite(nan, "denoising", "mixed_bfloat16", {"encoded_text": nan, "noise": [0.0]})
    assert "Try precision" not in str(error_info.value)
    with pytest.raises(kerasmorph.NonFiniteOutputError, match="Try precision='float32'"):
        check_finite(nan, "denoising", "mixed_bfloat16", {"noise": [0.0]}, guidance=7.5)
    with pytest.raises(kerasmorph.NonFiniteOutputError, match="guidance scale is extreme"):
        check_finite(nan, "denoising", "mixed_bfloat16", {"noise": [0.0]}, guidance=1e30)


def test_non_finite_output_is_one_line(capsys, tmp_path):
    # Finite in float32, so accepted; the latents overflow while denoising.
    argv = ["generate", "x", "--out", str(tmp_path / "a.png"), *TINY, "--guidance", "3e38"]
    assert main(argv) == 2
    line = one_error_line(capsys, "generate")
    assert "Denoising produced NaN or Inf" in line and "guidance scale is extreme" in line
    assert not (tmp_path / "a.png").exists()


# ------------------------------------------------------------ Ctrl-C and bugs


def test_ctrl_c_keeps_the_frames_and_says_how_to_resume(capsys, tmp_path, monkeypatch):
    from kerasmorph.explorer import Explorer

    render = Explorer.render

    def interrupted_render(self, *args, **kwargs):
        for index, frame in enumerate(render(self, *args, **kwargs)):
            if index == 2:
                raise KeyboardInterrupt
            yield frame

    out = tmp_path / "render"
    argv = ["interpolate", "a", "b", "--frames", "4", "--batch-size", "1", "--out", str(out)]
    monkeypatch.setattr(Explorer, "render", interrupted_render)
    assert main([*argv, *TINY]) == 130
    line = one_error_line(capsys, "interpolate")
    assert line == f"kerasmorph interpolate: interrupted; 2 frames kept in {out}, rerun to resume"
    assert len(list(out.glob("frame_*.png"))) == 2
    monkeypatch.setattr(Explorer, "render", render)
    assert main([*argv, *TINY]) == 0
    assert len(list(out.glob("frame_*.png"))) == 4


def test_ctrl_c_elsewhere_is_one_line(capsys, monkeypatch):
    def interrupt(args, session):
        raise KeyboardInterrupt

    monkeypatch.setattr(info, "run_info", interrupt)
    assert main(["info"]) == 130
    assert one_error_line(capsys, "info") == "kerasmorph info: interrupted"


@pytest.mark.parametrize("bug", [TypeError, AttributeError, KeyError])
def test_bugs_keep_their_traceback(monkeypatch, bug):
    def broken(args, session):
        raise bug("a bug")

    monkeypatch.setattr(info, "run_info", broken)
    with pytest.raises(bug):
        main(["info"])
