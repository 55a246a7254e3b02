"""Up-front resource limits (issue 17, point 6): the estimators, and the CLI refusing
absurd requests in well under a second, before any model is built.
"""

import logging
import math
import time

import pytest
from PIL import Image

from kerasmorph import cli, limits, sweeps
from kerasmorph.errors import ResourceLimitError
from kerasmorph.explorer.batching import clamp_batch_size
from kerasmorph.presets import PRESETS

GIB = 1 << 30


# ----------------------------------------------------------------- estimators


def test_image_bytes_known_numbers():
    sd1, tiny = limits.MODEL_COSTS["sd1"], limits.MODEL_COSTS["tiny"]
    # sd1 512x512: 64x64 = 4096 latent positions, 8 heads x 2 passes x 2 bytes.
    assert limits.image_bytes(512, 512, sd1) == 4096**2 * 32 == 512 * 2**20
    # tiny 128x128: the decoder's 32 float32 channels, in and out, beat 256² x 4.
    assert limits.image_bytes(128, 128, tiny) == 128 * 128 * 256
    # 64000x64000: 8000² positions, their scores 8000⁴ x 4 bytes.
    assert limits.image_bytes(64000, 64000, tiny) == 8000**4 * 4
    assert limits.batch_bytes(3, 128, 128, tiny) == 3 * 128 * 128 * 256
    # The lowest cost is a lower bound of every model's.
    for cost in limits.MODEL_COSTS.values():
        for size in (64, 512, 4096):
            assert limits.image_bytes(size, size) <= limits.image_bytes(size, size, cost)


def test_frames_encodings_noise_and_png_bytes():
    assert limits.held_frames_bytes(10, 64, 32, "stream") == 0
    assert limits.held_frames_bytes(10, 64, 32, "gif") == 10 * 64 * 32
    assert limits.held_frames_bytes(10, 64, 32, "grid") == 6 * 10 * 64 * 32
    assert limits.held_frames_bytes(10, 64, 32, "gif-rubber-band") == 5 * 10 * 64 * 32
    with pytest.raises(ValueError, match="`output` must be one of"):
        limits.held_frames_bytes(1, 8, 8, "tiff")
    assert limits.walk_plan_bytes(1000, "path") == 288_000
    assert limits.encodings_bytes(100, 768) == 100 * 77 * 768 * 4
    assert limits.noise_bytes(2, 512, 512) == 2 * 64 * 64 * 16
    assert limits.png_bytes(128, 128) == 63 + math.ceil(128 * 385 / 1032) == 111


@pytest.mark.parametrize("text", ["0:1:0.1", "0.6:0.99:0.01", "1:5:2", "0:1:0.3", "2:2:1"])
def test_range_count_matches_parse_range(text):
    start, stop, step = (float(part) for part in text.split(":"))
    assert limits.range_count(start, stop, step) == len(sweeps.parse_range(text))


def test_range_count_without_listing():
    assert limits.range_count(0, 1, 1e-10) == 10_000_000_001
    assert limits.range_count(0, math.inf, 1) == 0  # Left to parse_range to report.
    assert limits.range_count(1, 0, 1) == limits.range_count(0, 1, 0) == 0


def test_check_memory_refuses_in_one_line():
    parts = [
        (3 * GIB, "the frames", "use fewer --frames"),
        (1 * GIB, "a batch", "use a smaller --batch-size"),
    ]
    assert limits.check_memory("x", parts, memory=4 * GIB) == 4 * GIB
    with pytest.raises(ResourceLimitError) as error:
        limits.check_memory("--frames 99", parts, memory=2 * GIB)
    message = str(error.value)
    assert message == (
        "--frames 99 needs at least 4 GiB of memory (3 GiB of it for the frames); "
        "this machine has 2 GiB. Use fewer --frames."
    )
    assert isinstance(error.value, ValueError)


def test_machine_memory_and_format_bytes():
    memory = limits.machine_memory()
    assert memory is None or memory > 256 * 2**20
    assert limits.format_bytes(512) == "512 B"
    assert limits.format_bytes(1536) == "1.5 KiB"
    assert limits.format_bytes(14.6 * 2**50) == "14.6 PiB"


def test_check_disk_counts_bytes(tmp_path):
    limits.check_disk("ten", tmp_path / "frames", 10, 111, "use fewer --frames")
    with pytest.raises(ResourceLimitError, match="of disk"):
        limits.check_disk("many", tmp_path / "frames", 10**15, 111, "use fewer --frames")


def test_every_preset_architecture_has_a_cost():
    assert {preset.architecture for preset in PRESETS.values()} <= set(limits.MODEL_COSTS)
    for name, preset in PRESETS.items():
        assert limits.MODEL_COSTS[preset.architecture].default_size == preset.default_size, name


def test_clamp_batch_size(caplog):
    with caplog.at_level(logging.WARNING, logger="kerasmorph.explorer.batching"):
        assert clamp_batch_size(3, 1_000_000) == 3
    assert "batch_size=1000000 is larger than the 3 frames to render: using 3" in caplog.text
    caplog.clear()
    assert clamp_batch_size(3, None) is None
    assert clamp_batch_size(3, 2) == 2 and clamp_batch_size(3, 3) == 3
    assert clamp_batch_size(3, 8, num_replicas=2) == 4  # A multiple of the replicas.
    assert caplog.text.count("larger than") == 1


# --------------------------------------------------------------------- CLI

TINY = ["--model", "tiny", "--quiet"]


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "in.png"
    Image.new("RGB", (64, 64), (200, 100, 50)).save(path)
    return path


@pytest.mark.parametrize(
    "argv, needs",
    [
        (["interpolate", "a", "b", "--frames", "1000000000", "--out", "{tmp}/x.gif"], "--frames"),
        (["interpolate", "a", "b", "--frames", "1000000000", "--out", "{tmp}/x.mp4"], "--frames"),
        (["walk", "a", "--frames", "1000000000000", "--out", "{tmp}/rd"], "--frames"),
        (
            ["interpolate", "a", "b", "--frames", "1000000", "--batch-size", "1000000"]
            + ["--out", "{tmp}/rd"],
            "--batch-size",
        ),
        (
            ["generate", "x", "--height", "64000", "--width", "64000", "--out", "{tmp}/g.png"],
            "--height/--width",
        ),
        (
            ["img2img", "{image}", "p", "--height", "64000", "--width", "64000"]
            + ["--out", "{tmp}/o.png"],
            "--height/--width",
        ),
        (["grid", "a", "b", "c", "d", "--size", "100000", "--out", "{tmp}/g.png"], "--size"),
        (["sweep", "{image}", "p", "--range", "0:1:1e-10", "--out", "{tmp}/s.png"], "--range"),
        (["generate", "x", "--num-images", "100000000", "--out", "{tmp}/g.png"], "--num-images"),
        (
            ["morph-images", "{image}", "{image}", "--prompts", "a", "b", "--frames", "1000000000"]
            + ["--out", "{tmp}/m.gif"],
            "--frames",
        ),
    ],
)
def test_absurd_requests_are_refused_up_front(argv, needs, tmp_path, image, capsys, monkeypatch):
    # A fixed 64 GiB machine, so the test never depends on (or runs on) this one's.
    monkeypatch.setattr(limits, "machine_memory", lambda: 64 * GIB)
    argv = [part.format(tmp=tmp_path, image=image) for part in argv]
    session = cli.Session()
    start = time.perf_counter()
    code = cli.main([*argv, *TINY], session=session)
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith(f"kerasmorph {argv[0]}: error: ")
    assert "needs at least" in err and "this machine has 64 GiB" in err and needs in err
    assert session.explorer is None  # No model was built,
    assert elapsed < 1.0  # and it took well under a second.
    assert not any(path.name != "in.png" for path in tmp_path.iterdir())  # Nothing written.


def test_a_normal_run_is_not_refused_and_a_large_batch_is_clamped(tmp_path, caplog):
    out = tmp_path / "walk.gif"
    argv = ["interpolate", "a", "b", "--frames", "3", "--batch-size", "1000000", "--steps", "2"]
    with caplog.at_level(logging.WARNING, logger="kerasmorph.explorer.batching"):
        assert cli.main([*argv, "--out", str(out), *TINY], session=cli.Session()) == 0
    assert "batch_size=1000000 is larger than the 3 frames to render: using 3" in caplog.text
    with Image.open(out) as gif:
        assert gif.n_frames == 3


def test_a_frame_directory_must_fit_its_disk(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(limits, "machine_memory", lambda: 64 * GIB)
    free = type("Usage", (), {"free": 2**20})()
    monkeypatch.setattr(limits.shutil, "disk_usage", lambda path: free)
    argv = ["loop", "a", "--frames", "1000000", "--out", str(tmp_path / "rd"), *TINY]
    assert cli.main(argv, session=cli.Session()) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "needs at least 106 MiB of disk (1,000,000 PNG files of at least 111 bytes)" in err
    assert "has 1 MiB free. Use fewer --frames." in err
