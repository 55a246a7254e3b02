"""Tests for `kerasmorph.plotting`: grids as arrays, figures and files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kerasmorph import plotting


def noise_frames(num_frames: int, height: int = 32, width: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(
        0, 256, (num_frames, height, width, 3), dtype=np.uint8
    )


def cell(grid: np.ndarray, row: int, column: int, height: int, width: int) -> np.ndarray:
    return grid[row * height : (row + 1) * height, column * width : (column + 1) * width]


# ---------------------------------------------------------------------------
# make_grid.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "num_frames, num_columns, rows_columns",
    [
        (9, None, (3, 3)),
        (5, None, (2, 3)),
        (1, None, (1, 1)),
        (6, 2, (3, 2)),
        (3, 5, (1, 5)),
    ],
)
def test_make_grid_layout_and_cells(num_frames, num_columns, rows_columns):
    height, width = 24, 40
    frames = noise_frames(num_frames, height, width)
    grid = plotting.make_grid(frames, num_columns)
    num_rows, num_cols = rows_columns
    assert grid.dtype == np.uint8
    assert grid.shape == (num_rows * height, num_cols * width, 3)
    for index in range(num_rows * num_cols):
        row, column = divmod(index, num_cols)
        if index < num_frames:
            np.testing.assert_array_equal(cell(grid, row, column, height, width), frames[index])
        else:
            assert (cell(grid, row, column, height, width) == 255).all()


def test_make_grid_accepts_a_generator_of_frames_and_batches():
    frames = noise_frames(4)
    grid = plotting.make_grid(iter([frames[:2], frames[2], frames[3]]))
    np.testing.assert_array_equal(grid, plotting.make_grid(frames))
    np.testing.assert_array_equal(cell(grid, 1, 0, 32, 32), frames[2])


@pytest.mark.parametrize("num_columns", [0, -2, 1.5, True])
def test_make_grid_rejects_bad_num_columns(num_columns):
    with pytest.raises(
        ValueError,
        match=r"`num_columns` must be an integer >= 1. Received: num_columns=",
    ):
        plotting.make_grid(noise_frames(2), num_columns)


def test_make_grid_rejects_mismatched_frames():
    with pytest.raises(
        ValueError,
        match=r"frame 1 has shape \(16, 16, 3\) but frame 0 has \(32, 32, 3\)",
    ):
        plotting.make_grid([np.zeros((32, 32, 3), np.uint8), np.zeros((16, 16, 3), np.uint8)])


def test_make_grid_rejects_empty_frames():
    with pytest.raises(ValueError, match=r"`frames` is empty"):
        plotting.make_grid([])


# ---------------------------------------------------------------------------
# plot_grid.
# ---------------------------------------------------------------------------


def test_plot_grid_fills_the_figure_with_the_grid(tmp_path):
    from matplotlib.figure import Figure

    frames = noise_frames(6, 32, 48)
    figure = plotting.plot_grid(frames)
    assert isinstance(figure, Figure)
    (axes,) = figure.axes
    # No margins and no gaps: one axes over the whole figure, holding the grid.
    assert axes.get_position().bounds == pytest.approx((0, 0, 1, 1))
    assert not axes.axison
    np.testing.assert_array_equal(axes.images[0].get_array(), plotting.make_grid(frames))
    width, height = figure.get_size_inches()
    assert width / height == pytest.approx(3 * 48 / (2 * 32))
    figure.savefig(tmp_path / "grid.png")
    with Image.open(tmp_path / "grid.png") as image:
        assert image.size[0] == pytest.approx(width * figure.dpi, abs=1)
        assert image.size[1] == pytest.approx(height * figure.dpi, abs=1)


def test_plot_grid_labels_and_title():
    frames = noise_frames(4)
    labels = ["t=0.00", "t=0.33", "t=0.67", "t=1.00"]
    figure = plotting.plot_grid(frames, labels=labels, title="a walk", figsize=(4, 5))
    (axes,) = figure.axes
    assert [text.get_text() for text in axes.texts] == labels
    assert figure.get_suptitle() == "a walk"
    assert tuple(figure.get_size_inches()) == (4, 5)
    # The title band sits above the grid, never over it.
    assert axes.get_position().y1 < 1
    # Labels sit in their own cell's top left corner (data coordinates).
    positions = [text.get_position() for text in axes.texts]
    assert positions[3][0] > 32 and positions[3][1] > 32
    assert positions[0][0] < 16 and positions[0][1] < 16


def test_plot_grid_rejects_wrong_labels_and_figsize():
    frames = noise_frames(3)
    with pytest.raises(ValueError, match=r"one entry per frame \(3 frames\). Received: 2 labels"):
        plotting.plot_grid(frames, labels=["a", "b"])
    with pytest.raises(ValueError, match=r"not a single string. Received: labels='abc'"):
        plotting.plot_grid(frames, labels="abc")
    with pytest.raises(
        ValueError,
        match=r"`figsize` must be \(width, height\).*Received: figsize=\(4, 0\)",
    ):
        plotting.plot_grid(frames, figsize=(4, 0))


def test_plot_grid_displays_inline_in_the_first_notebook_cell():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from pathlib import Path

    repo_root = Path(__file__).resolve().parents[1]
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(
            f"import sys; sys.path.insert(0, {str(repo_root)!r})\n"
            "import numpy as np\n"
            "import kerasmorph.plotting\n"
            "frames = np.zeros((4, 16, 16, 3), 'uint8')\n"
            "kerasmorph.plotting.plot_grid(frames, labels=list('abcd'))"
        )
    ]
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    outputs = notebook.cells[0].outputs
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    # Exactly one image: the returned figure, not drawn a second time by pyplot.
    assert len(images) == 1, outputs


# ---------------------------------------------------------------------------
# save_grid.
# ---------------------------------------------------------------------------


def test_save_grid_writes_the_exact_pixel_grid(tmp_path):
    frames = noise_frames(5, 24, 40)
    path = plotting.save_grid(tmp_path / "grid.png", frames)
    with Image.open(path) as image:
        assert image.size == (3 * 40, 2 * 24)
        pixels = np.asarray(image)
    np.testing.assert_array_equal(pixels, plotting.make_grid(frames))
    np.testing.assert_array_equal(cell(pixels, 1, 1, 24, 40), frames[4])


def test_save_grid_with_labels_keeps_the_pixel_size_and_the_frames(tmp_path):
    height, width = 64, 48
    frames = noise_frames(4, height, width)
    labels = ["a label far too long for one cell", "b", "c", "d"]
    path = plotting.save_grid(tmp_path / "labelled.png", frames, num_columns=2, labels=labels)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (2 * width, 2 * height)
        pixels = np.asarray(image)
    grid = plotting.make_grid(frames, num_columns=2)
    for index in range(4):
        row, column = divmod(index, 2)
        drawn, original = (
            cell(pixels, row, column, height, width),
            cell(grid, row, column, height, width),
        )
        # The label changes the top left corner of its cell ...
        assert (drawn[:12, :12] != original[:12, :12]).any()
        # ... and nothing in the bottom half.
        np.testing.assert_array_equal(drawn[height // 2 :], original[height // 2 :])
    # The long label of cell (0, 0) is cut at its edge: cell (0, 1), whose own
    # label is one letter, keeps its top right quarter.
    np.testing.assert_array_equal(
        cell(pixels, 0, 1, height, width)[: height // 4, width // 2 :],
        cell(grid, 0, 1, height, width)[: height // 4, width // 2 :],
    )
    assert (
        cell(pixels, 0, 0, height, width)[: height // 4, width // 2 :]
        != cell(grid, 0, 0, height, width)[: height // 4, width // 2 :]
    ).any()


def test_save_grid_jpeg_by_suffix(tmp_path):
    path = plotting.save_grid(tmp_path / "grid.jpg", noise_frames(4), labels=list("abcd"))
    with Image.open(path) as image:
        assert (image.format, image.size) == ("JPEG", (64, 64))


def test_save_grid_rejects_bad_suffix_and_labels_without_writing(tmp_path):
    with pytest.raises(ValueError, match=r"suffix.*Received: path='.*grid.mp4'"):
        plotting.save_grid(tmp_path / "grid.mp4", noise_frames(2))
    with pytest.raises(ValueError, match=r"Received: 1 labels"):
        plotting.save_grid(tmp_path / "grid.png", noise_frames(2), labels=["a"])
    assert list(tmp_path.iterdir()) == []


def test_plot_morph_metrics_draws_a_panel_per_distance_and_presence():
    from kerasmorph import metrics

    frames = np.full((5, 16, 16, 3), 255, np.uint8)
    for frame, side in zip(frames, (8, 6, 0, 6, 8)):
        frame[2 : 2 + side, 2 : 2 + side] = (0, 70, 230)
    results = {
        "five": metrics.evaluate_frames(frames, metrics=["l2", "mad"]),
        "three": metrics.evaluate_frames(frames[::2], metrics=["l2"]),
    }
    figure = plotting.plot_morph_metrics(results)
    l2, mad, presence = figure.axes
    assert len(l2.lines) == 2 and len(mad.lines) == 1 and len(presence.lines) == 2
    # Morphs of different lengths share the position axis: ends at 0 and 1.
    np.testing.assert_allclose(presence.lines[1].get_xdata(), [0, 0.5, 1])
    np.testing.assert_allclose(l2.lines[0].get_xdata(), [0.125, 0.375, 0.625, 0.875])
    with pytest.raises(ValueError, match="at least one"):
        plotting.plot_morph_metrics({})
