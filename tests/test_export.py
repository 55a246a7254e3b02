"""Tests for `kerasmorph.export`: files are written, then read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kerasmorph import export

REPO_ROOT = Path(__file__).resolve().parents[1]


def flat_frames(num_frames: int, height: int = 32, width: int = 32) -> np.ndarray:
    """Frames of one distinct flat colour each (exact through a GIF palette)."""
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for index in range(num_frames):
        frames[index] = (
            (index * 37) % 256,
            (index * 91 + 50) % 256,
            (200 - index * 13) % 256,
        )
    return frames


def noise_frames(num_frames: int, height: int = 32, width: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(
        0, 256, (num_frames, height, width, 3), dtype=np.uint8
    )


def gif_frames(path: Path) -> tuple[list[np.ndarray], list[int]]:
    """Returns the RGB frames and per-frame durations (ms) of a GIF."""
    frames, durations = [], []
    with Image.open(path) as image:
        for index in range(image.n_frames):
            image.seek(index)
            durations.append(image.info["duration"])
            frames.append(np.asarray(image.convert("RGB")))
    return frames, durations


def mp4_frames(path: Path) -> tuple[list[np.ndarray], dict]:
    import imageio.v2 as imageio

    with imageio.get_reader(path, format="FFMPEG") as reader:
        metadata = reader.get_meta_data()
        frames = [np.asarray(frame) for frame in reader]
    return frames, metadata


def failing_generator(frames: np.ndarray, fail_after: int):
    for index, frame in enumerate(frames):
        if index == fail_after:
            raise RuntimeError("render failed")
        yield frame


def listing(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


# ---------------------------------------------------------------------------
# Import hygiene.
# ---------------------------------------------------------------------------


def test_export_and_plotting_never_import_tensorflow_or_keras(tmp_path):
    code = f"""
import json, sys
import numpy as np
import kerasmorph.export, kerasmorph.plotting
heavy = ("matplotlib", "tensorflow", "keras", "keras_cv")
after_import = sorted(name for name in heavy if name in sys.modules)
frames = np.zeros((4, 16, 16, 3), dtype="uint8")
kerasmorph.export.save_gif({str(tmp_path / "a.gif")!r}, frames)
kerasmorph.export.save_frames({str(tmp_path / "frames")!r}, frames)
grid_path = {str(tmp_path / "grid.png")!r}
kerasmorph.plotting.save_grid(grid_path, frames, labels=list("abcd"))
kerasmorph.plotting.plot_grid(frames)
print(json.dumps({{"after_import": after_import, "loaded": sorted(sys.modules)}}))
"""
    environment = dict(os.environ, PYTHONPATH=str(REPO_ROOT), MPLBACKEND="Agg")
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # Importing is cheap: not even matplotlib until a figure is drawn.
    assert report["after_import"] == []
    heavy = [
        name
        for name in report["loaded"]
        if name.split(".")[0] in ("tensorflow", "keras", "keras_cv")
    ]
    assert heavy == []
    assert (tmp_path / "grid.png").is_file()


# ---------------------------------------------------------------------------
# Frame validation.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frames, error, match",
    [
        (
            np.zeros((2, 8, 8, 3), np.float32),
            ValueError,
            r"dtype uint8.*Received: frame 0 with dtype float32",
        ),
        (
            np.zeros((2, 8, 8, 4), np.uint8),
            ValueError,
            r"Drop the alpha.*Received: frame 0 with shape \(8, 8, 4\)",
        ),
        (
            [np.zeros((8, 8), np.uint8)],
            ValueError,
            r"greyscale.*Received: frame 0 with shape \(8, 8\)",
        ),
        (
            np.zeros((8, 8, 3), np.uint8),
            ValueError,
            r"num_frames, height, width, 3.*Received: frames.shape=\(8, 8, 3\)",
        ),
        (
            np.zeros((0, 8, 8, 3), np.uint8),
            ValueError,
            r"`frames` is empty.*shape \(0, 8, 8, 3\)",
        ),
        ([], ValueError, r"`frames` is empty.*list of length 0"),
        (iter([]), ValueError, r"`frames` is empty"),
        ([np.zeros((0, 8, 3), np.uint8)], ValueError, r"at least 1x1"),
        (42, TypeError, r"Received: frames of type int"),
        ("walk.gif", TypeError, r"Received: frames of type str"),
    ],
)
def test_invalid_frames_are_rejected_before_writing(tmp_path, frames, error, match):
    with pytest.raises(error, match=match):
        export.save_frames(tmp_path / "out", frames)
    assert listing(tmp_path) == []


def test_mismatched_frame_shapes_name_both_frames(tmp_path):
    frames = [np.zeros((128, 128, 3), np.uint8)] * 3 + [np.zeros((64, 64, 3), np.uint8)]
    with pytest.raises(
        ValueError,
        match=r"frame 3 has shape \(64, 64, 3\) but frame 0 has \(128, 128, 3\)",
    ):
        export.save_gif(tmp_path / "a.gif", frames)
    assert listing(tmp_path) == []


def test_frame_index_counts_frames_across_batches(tmp_path):
    frames = [
        np.zeros((2, 8, 8, 3), np.uint8),
        np.zeros((8, 8, 3), np.uint8),
        np.zeros((8, 8, 3), np.float64),
    ]
    with pytest.raises(ValueError, match=r"frame 3 with dtype float64"):
        export.save_frames(tmp_path, frames)


# ---------------------------------------------------------------------------
# rubber_band.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("num_frames", [1, 2, 3, 4, 5, 8])
def test_rubber_band_matches_the_keras_cv_tutorial(num_frames):
    frames = flat_frames(num_frames)
    bounced = export.rubber_band(frames)
    # The tutorial: `images += images[2:-1][::-1]`.
    expected_order = list(range(num_frames)) + list(range(num_frames))[2:-1][::-1]
    assert isinstance(bounced, np.ndarray)
    assert len(bounced) == num_frames + max(num_frames - 3, 0)
    np.testing.assert_array_equal(bounced, frames[expected_order])


def test_rubber_band_of_a_list_returns_a_list_in_tutorial_order():
    frames = list(flat_frames(5))
    bounced = export.rubber_band(iter(frames))
    assert isinstance(bounced, list)
    assert [int(frame[0, 0, 0]) for frame in bounced] == [
        int(frames[index][0, 0, 0]) for index in (0, 1, 2, 3, 4, 3, 2)
    ]


# ---------------------------------------------------------------------------
# save_gif.
# ---------------------------------------------------------------------------


def test_save_gif_frames_durations_and_loop(tmp_path):
    frames = flat_frames(6)
    path = export.save_gif(tmp_path / "walk.gif", frames, fps=10)
    assert path == tmp_path / "walk.gif"
    read_frames, durations = gif_frames(path)
    with Image.open(path) as image:
        assert image.format == "GIF"
        assert image.n_frames == 6
        assert image.info["loop"] == 0
    assert durations == [100] * 6
    np.testing.assert_array_equal(np.stack(read_frames), frames)


@pytest.mark.parametrize("loop, expected", [(3, 3), (None, "absent")])
def test_save_gif_loop_count(tmp_path, loop, expected):
    path = export.save_gif(tmp_path / "walk.gif", flat_frames(3), loop=loop)
    with Image.open(path) as image:
        assert image.info.get("loop", "absent") == expected


@pytest.mark.parametrize("num_frames", [3, 4, 6])
def test_save_gif_rubber_band_count_and_order(tmp_path, num_frames):
    frames = flat_frames(num_frames)
    path = export.save_gif(tmp_path / "walk.gif", frames, rubber_band=True)
    read_frames, _ = gif_frames(path)
    assert len(read_frames) == num_frames + (num_frames - 3)
    expected_order = list(range(num_frames)) + list(range(2, num_frames - 1))[::-1]
    np.testing.assert_array_equal(np.stack(read_frames), frames[expected_order])


@pytest.mark.parametrize("fps, milliseconds", [(25, 40), (50, 20), (12.5, 80), (2, 500)])
def test_save_gif_exact_frame_rates_do_not_warn(tmp_path, fps, milliseconds):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = export.save_gif(tmp_path / "walk.gif", flat_frames(3), fps=fps)
    assert gif_frames(path)[1] == [milliseconds] * 3


@pytest.mark.parametrize(
    "fps, milliseconds, match",
    [
        # Pillow alone would truncate 33.3 ms to 30 ms and 41.7 ms to 40 ms;
        # save_gif rounds to the nearest centisecond and says so.
        (
            30,
            30,
            r"fps=30 \(33.33 ms per frame\).*writing 30 ms per frame \(33.33 fps\)",
        ),
        (24, 40, r"fps=24 .*writing 40 ms per frame \(25.00 fps\)"),
        (15, 70, r"fps=15 .*writing 70 ms per frame"),
        # Pillow alone would write 10 ms, which browsers play at 10 fps.
        (60, 20, r"cannot play faster than 50 fps.*Received: fps=60"),
        (200, 20, r"cannot play faster than 50 fps.*Received: fps=200"),
    ],
)
def test_save_gif_inexact_frame_rates_warn(tmp_path, fps, milliseconds, match):
    with pytest.warns(UserWarning, match=match):
        path = export.save_gif(tmp_path / "walk.gif", flat_frames(3), fps=fps)
    assert gif_frames(path)[1] == [milliseconds] * 3


def test_save_gif_accepts_a_generator_of_frames_and_batches(tmp_path):
    frames = flat_frames(5)

    def generate():
        yield frames[0]
        yield frames[1:4]  # a batch
        yield frames[4]

    path = export.save_gif(tmp_path / "walk.gif", generate())
    np.testing.assert_array_equal(np.stack(gif_frames(path)[0]), frames)


def test_save_gif_merges_identical_consecutive_frames_keeping_total_time(tmp_path):
    # Documented Pillow behaviour: a held frame becomes one longer frame.
    frames = flat_frames(3)[[0, 0, 0, 1, 2]]
    path = export.save_gif(tmp_path / "walk.gif", frames, fps=10)
    _, durations = gif_frames(path)
    assert durations == [300, 100, 100]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"fps": 0}, r"`fps` must be a positive, finite number. Received: fps=0"),
        ({"fps": -5}, r"Received: fps=-5"),
        ({"fps": float("nan")}, r"Received: fps=nan"),
        ({"fps": True}, r"Received: fps=True"),
        ({"loop": -1}, r"`loop` must be an integer in \[0, 65535\]. Received: loop=-1"),
        ({"loop": 1.5}, r"Received: loop=1.5"),
    ],
)
def test_save_gif_rejects_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        export.save_gif(tmp_path / "walk.gif", flat_frames(3), **kwargs)
    assert listing(tmp_path) == []


def test_save_gif_failure_midway_leaves_no_file_and_keeps_the_old_one(tmp_path):
    path = tmp_path / "walk.gif"
    path.write_bytes(b"previous render")
    with pytest.raises(RuntimeError, match="render failed"):
        export.save_gif(path, failing_generator(flat_frames(5), fail_after=3))
    assert path.read_bytes() == b"previous render"
    assert listing(tmp_path) == ["walk.gif"]


def test_save_gif_never_exposes_a_partial_file(tmp_path):
    path = tmp_path / "walk.gif"
    seen_final_name = []

    def generate():
        for frame in flat_frames(4):
            seen_final_name.append(path.exists())
            yield frame

    export.save_gif(path, generate())
    assert seen_final_name == [False] * 4
    assert listing(tmp_path) == ["walk.gif"]


# ---------------------------------------------------------------------------
# save_mp4.
# ---------------------------------------------------------------------------


def test_save_mp4_frame_count_size_and_fps(tmp_path):
    frames = flat_frames(5, 64, 48)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        path = export.save_mp4(tmp_path / "walk.mp4", frames, fps=12)
    read_frames, metadata = mp4_frames(path)
    assert len(read_frames) == 5
    assert read_frames[0].shape == (64, 48, 3)
    assert metadata["fps"] == pytest.approx(12)
    assert metadata["codec"] == "h264"
    assert metadata["pix_fmt"].startswith("yuv420p")
    # Lossy, but flat colours come back close.
    for read, original in zip(read_frames, frames, strict=True):
        assert np.abs(read.astype(int) - original.astype(int)).mean() < 4


@pytest.mark.parametrize(
    "height, width, macro_block_size, padded",
    [
        (40, 50, 16, (48, 64)),
        (33, 32, 16, (48, 32)),
        (33, 35, 2, (34, 36)),
    ],
)
def test_save_mp4_pads_to_the_macro_block_with_a_warning(
    tmp_path, height, width, macro_block_size, padded
):
    frames = flat_frames(3, height, width) | np.uint8(128)  # brighter than the black padding
    with pytest.warns(
        UserWarning,
        match=rf"\(height, width\)=\({height}, {width}\).*padded.*"
        rf"to \({padded[0]}, {padded[1]}\)",
    ):
        path = export.save_mp4(tmp_path / "walk.mp4", frames, macro_block_size=macro_block_size)
    read_frames, _ = mp4_frames(path)
    assert len(read_frames) == 3
    assert read_frames[0].shape == (*padded, 3)
    # Padded, not resized: the original pixels keep their place, black after.
    inner = read_frames[1][2 : height - 2, 2 : width - 2].astype(int)
    assert np.abs(inner - frames[1, 0, 0].astype(int)).mean() < 6
    if padded[0] > height + 2:
        assert read_frames[1][height + 2 :].mean() < 20
    if padded[1] > width + 2:
        assert read_frames[1][:, width + 2 :].mean() < 20


@pytest.mark.parametrize("macro_block_size", [1, 2])
def test_save_mp4_even_sizes_need_no_padding_with_small_macro_blocks(tmp_path, macro_block_size):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        path = export.save_mp4(
            tmp_path / "walk.mp4",
            flat_frames(2, 34, 38),
            macro_block_size=macro_block_size,
        )
    assert mp4_frames(path)[0][0].shape == (34, 38, 3)


def test_save_mp4_macro_block_size_one_rejects_odd_sizes(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"even width and height.*Received: frame size "
        r"\(height, width\)=\(33, 32\) with macro_block_size=1",
    ):
        export.save_mp4(tmp_path / "walk.mp4", flat_frames(2, 33, 32), macro_block_size=1)
    assert listing(tmp_path) == []


def test_save_mp4_streams_a_generator(tmp_path):
    frames = noise_frames(6)
    seen_final_name = []

    def generate():
        for frame in frames:
            seen_final_name.append((tmp_path / "walk.mp4").exists())
            yield frame

    path = export.save_mp4(tmp_path / "walk.mp4", generate())
    assert len(mp4_frames(path)[0]) == 6
    assert seen_final_name == [False] * 6
    assert listing(tmp_path) == ["walk.mp4"]


def test_save_mp4_lower_crf_means_higher_quality(tmp_path):
    frames = noise_frames(3)
    best = export.save_mp4(tmp_path / "best.mp4", frames, crf=0)
    worst = export.save_mp4(tmp_path / "worst.mp4", frames, crf=51)
    assert best.stat().st_size > 2 * worst.stat().st_size
    best_error = np.abs(mp4_frames(best)[0][0].astype(int) - frames[0]).mean()
    worst_error = np.abs(mp4_frames(worst)[0][0].astype(int) - frames[0]).mean()
    assert best_error < worst_error


def test_save_mp4_failure_midway_leaves_no_file(tmp_path):
    with pytest.raises(RuntimeError, match="render failed"):
        export.save_mp4(tmp_path / "walk.mp4", failing_generator(noise_frames(5), fail_after=3))
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"fps": 0}, r"Received: fps=0"),
        ({"crf": 52}, r"`crf` must be an integer in \[0, 51\]. Received: crf=52"),
        ({"crf": -1}, r"Received: crf=-1"),
        (
            {"macro_block_size": 0},
            r"`macro_block_size` must be an integer >= 1. Received: macro_block_size=0",
        ),
        (
            {"macro_block_size": 3},
            r"1 \(no padding\) or an even number.*Received: macro_block_size=3",
        ),
    ],
)
def test_save_mp4_rejects_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        export.save_mp4(tmp_path / "walk.mp4", flat_frames(2), **kwargs)
    assert listing(tmp_path) == []


@pytest.mark.parametrize("missing", ["imageio_ffmpeg", "imageio.v2"])
def test_save_mp4_without_imageio_names_the_pip_install(tmp_path, monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)
    # imageio is a base dependency: the command reinstalls this install (no extra).
    with pytest.raises(ImportError, match=r"run `pip install .*\(or `pip install imageio imageio-"):
        export.save_mp4(tmp_path / "walk.mp4", flat_frames(2))
    assert listing(tmp_path) == []


# ---------------------------------------------------------------------------
# save_frames and save_frame.
# ---------------------------------------------------------------------------


def test_save_frames_names_count_and_pixels(tmp_path):
    frames = noise_frames(4)
    paths = export.save_frames(tmp_path / "frames", frames)
    assert [path.name for path in paths] == [f"frame_{index:05d}.png" for index in range(4)]
    assert listing(tmp_path / "frames") == [path.name for path in paths]
    for path, frame in zip(paths, frames, strict=True):
        with Image.open(path) as image:
            assert image.format == "PNG"
            np.testing.assert_array_equal(np.asarray(image), frame)


def test_save_frames_prefix_start_index_and_digits(tmp_path):
    paths = export.save_frames(tmp_path, flat_frames(3), prefix="walk-", start_index=98, digits=3)
    assert [path.name for path in paths] == [
        "walk-098.png",
        "walk-099.png",
        "walk-100.png",
    ]


def test_save_frames_writes_each_file_as_its_frame_arrives(tmp_path):
    directory = tmp_path / "frames"
    frames = noise_frames(4)
    seen = []

    def generate():
        for frame in frames:
            seen.append(listing(directory) if directory.exists() else None)
            yield frame

    paths = export.save_frames(directory, generate())
    assert seen == [
        None,  # the directory is created only once a frame arrives
        ["frame_00000.png"],
        ["frame_00000.png", "frame_00001.png"],
        ["frame_00000.png", "frame_00001.png", "frame_00002.png"],
    ]
    assert len(paths) == 4


def test_save_frames_failure_midway_keeps_complete_frames_only(tmp_path):
    with pytest.raises(RuntimeError, match="render failed"):
        export.save_frames(tmp_path, failing_generator(noise_frames(5), fail_after=3))
    assert listing(tmp_path) == [
        "frame_00000.png",
        "frame_00001.png",
        "frame_00002.png",
    ]


def test_save_frames_failure_inside_the_writer_leaves_no_temporary_file(tmp_path, monkeypatch):
    def broken_save(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        export.save_frames(tmp_path, noise_frames(2))
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"prefix": "sub/frame_"},
            r"without a path separator. Received: prefix='sub/frame_'",
        ),
        (
            {"start_index": -1},
            r"`start_index` must be an integer >= 0. Received: start_index=-1",
        ),
        ({"digits": 0}, r"`digits` must be an integer >= 1. Received: digits=0"),
        (
            {"digits": 1, "start_index": 8},
            r"Frame numbers up to 10 need more than `digits` digits. "
            r"Received: digits=1",
        ),
    ],
)
def test_save_frames_rejects_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        export.save_frames(tmp_path / "frames", flat_frames(3), **kwargs)
    assert listing(tmp_path) == []


def test_save_frames_streaming_past_the_digits_raises(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"Frame number 10 needs more than `digits` digits; 2 frames were written",
    ):
        export.save_frames(tmp_path, iter(flat_frames(3)), start_index=8, digits=1)
    assert listing(tmp_path) == ["frame_8.png", "frame_9.png"]


def test_save_frame_png_round_trip_and_jpeg_by_suffix(tmp_path):
    frame = noise_frames(1, 24, 40)[0]
    png = export.save_frame(tmp_path / "out" / "frame.png", frame)
    jpeg = export.save_frame(tmp_path / "frame.JPG", frame)
    with Image.open(png) as image:
        assert image.format == "PNG"
        np.testing.assert_array_equal(np.asarray(image), frame)
    with Image.open(jpeg) as image:
        assert image.format == "JPEG"
        assert image.size == (40, 24)


@pytest.mark.parametrize(
    "name, frame, match",
    [
        (
            "frame.xyz",
            np.zeros((8, 8, 3), np.uint8),
            r"suffix.*Received: path='.*frame.xyz'",
        ),
        ("frame", np.zeros((8, 8, 3), np.uint8), r"suffix.*Received: path='.*frame'"),
        (
            "frame.png",
            np.zeros((2, 8, 8, 3), np.uint8),
            r"one frame.*Received: frame.shape=\(2, 8, 8, 3\)",
        ),
        (
            "frame.png",
            np.zeros((8, 8, 3), np.int64),
            r"dtype uint8.*Received: frame 0 with dtype int64",
        ),
    ],
)
def test_save_frame_rejects_bad_input(tmp_path, name, frame, match):
    with pytest.raises(ValueError, match=match):
        export.save_frame(tmp_path / name, frame)
    assert listing(tmp_path) == []


# ---------------------------------------------------------------------------
# save_video.
# ---------------------------------------------------------------------------


def test_save_video_dispatches_on_the_suffix(tmp_path):
    frames = flat_frames(4)
    gif = export.save_video(tmp_path / "walk.gif", frames, fps=20)
    mp4 = export.save_video(tmp_path / "walk.MP4", frames)
    pngs = export.save_video(tmp_path / "walk_frames", frames, prefix="f")
    existing = tmp_path / "frames.v2"
    existing.mkdir()
    in_existing = export.save_video(existing, frames)
    with Image.open(gif) as image:
        assert (image.format, image.n_frames, image.info["duration"]) == ("GIF", 4, 50)
    assert len(mp4_frames(mp4)[0]) == 4
    assert [path.name for path in pngs] == [
        "f00000.png",
        "f00001.png",
        "f00002.png",
        "f00003.png",
    ]
    assert len(in_existing) == 4 and all(path.parent == existing for path in in_existing)


@pytest.mark.parametrize("name", ["walk.png", "walk.avi", "walk.webm"])
def test_save_video_rejects_other_suffixes(tmp_path, name):
    with pytest.raises(ValueError, match=r"\.gif or \.mp4, or name a directory.*Received: path="):
        export.save_video(tmp_path / name, flat_frames(2))
    assert listing(tmp_path) == []


def test_a_killed_writers_gif_temporary_is_removed_by_the_next_write(tmp_path):
    from kerasmorph import atomic

    out = tmp_path / "morph.gif"
    # A temporary whose writer (a finished process) is gone, one of a live writer (us),
    # an old-style one without a pid, and another output's: only the first is stale.
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = tmp_path / f".morph.0123abcd-{int(finished.stdout)}.tmp.gif"
    live = tmp_path / f".morph.89abcdef-{os.getpid()}.tmp.gif"
    old = tmp_path / ".morph.00000000.tmp.gif"
    other = tmp_path / f".other.0123abcd-{int(finished.stdout)}.tmp.gif"
    for path in (dead, live, old, other):
        path.write_bytes(b"partial")
    assert atomic.stale_temporaries(out) == [dead]
    export.save_gif(out, np.zeros((2, 8, 8, 3), np.uint8), fps=10)
    assert out.is_file() and not dead.exists()
    assert live.exists() and old.exists() and other.exists()
    # Its own temporary names carry its pid, so a later run can tell them apart.
    assert atomic.TEMPORARY_NAME.match(atomic.temporary_name(out))
    assert f"-{os.getpid()}.tmp.gif" in atomic.temporary_name(out)
