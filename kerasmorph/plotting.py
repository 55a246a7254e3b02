"""Tiles frames into grids: as a numpy image, a matplotlib figure or a file.

`make_grid` is pure numpy. `plot_grid` and `save_grid` use matplotlib's
object-oriented API, never `pyplot.show`, so they work headless (Agg) and in
notebooks; matplotlib is imported only when a figure is drawn, so importing
this module is cheap. Like `kerasmorph.export`, this module never imports
TensorFlow or Keras.

Example:

```python
import numpy as np
import kerasmorph.plotting

frames = np.zeros((9, 64, 64, 3), dtype="uint8")
grid = kerasmorph.plotting.make_grid(frames)  # (192, 192, 3), 3x3 tiles
figure = kerasmorph.plotting.plot_grid(frames, labels=[f"t={i}" for i in range(9)])
kerasmorph.plotting.save_grid("grid.png", frames)
```
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kerasmorph._checks import check_int
from kerasmorph.export import Frames, iter_frames, pillow_format, save_frame

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["make_grid", "plot_grid", "plot_morph_metrics", "plot_similarity_histogram", "save_grid"]

# `plot_grid` draws each column this many inches wide by default (the
# KerasCV walk tutorial's `plot_grid(..., scale=2)`).
_INCHES_PER_COLUMN = 2.0
# Height of the band above the grid that holds `title`, in inches.
_TITLE_INCHES = 0.5
# `save_grid` renders labels at this dpi. A power of two keeps
# `pixels / dpi * dpi == pixels` exact in floating point, so the rendered
# image has exactly the grid's pixel size.
_RENDER_DPI = 128


def _grid_layout(num_frames: int, num_columns: int | None) -> tuple[int, int]:
    """Returns `(num_rows, num_columns)` for `num_frames` tiles."""
    if num_columns is None:
        num_columns = math.ceil(math.sqrt(num_frames))
    else:
        num_columns = check_int("num_columns", num_columns, 1)
    return math.ceil(num_frames / num_columns), num_columns


def _tile(frames: list[np.ndarray], num_columns: int | None) -> tuple[np.ndarray, int, int]:
    num_rows, num_columns = _grid_layout(len(frames), num_columns)
    height, width = frames[0].shape[:2]
    grid = np.full((num_rows * height, num_columns * width, 3), 255, dtype=np.uint8)
    for index, frame in enumerate(frames):
        row, column = divmod(index, num_columns)
        grid[row * height : (row + 1) * height, column * width : (column + 1) * width] = frame
    return grid, num_rows, num_columns


def make_grid(frames: Frames, num_columns: int | None = None) -> np.ndarray:
    """Tiles frames into one image, row by row, with no gaps between them.

    Frame `i` lands in row `i // num_columns`, column `i % num_columns`.
    Cells after the last frame are white.

    Args:
        frames: a `(num_frames, height, width, 3)` uint8 array, or an
            iterable of `(height, width, 3)` frames and/or batches of them.
        num_columns: the number of columns, `>= 1`. Defaults to `None`,
            `ceil(sqrt(num_frames))`: a square grid for 4, 9, 16, ...
            frames, and as square as possible otherwise.

    Returns:
        A `(num_rows * height, num_columns * width, 3)` uint8 array, where
        `num_rows = ceil(num_frames / num_columns)`.

    Raises:
        ValueError: if `num_columns` is not a positive integer, a frame is
            not an RGB uint8 frame, frames differ in shape, or there are none.

    Example:

    ```python
    frames = np.zeros((6, 64, 32, 3), dtype="uint8")
    kerasmorph.plotting.make_grid(frames).shape  # (128, 96, 3): 2 rows, 3 columns
    ```
    """
    if num_columns is not None:
        check_int("num_columns", num_columns, 1)
    grid, _, _ = _tile(list(iter_frames(frames)), num_columns)
    return grid


def _check_labels(labels: Sequence[str] | None, num_frames: int) -> list[str] | None:
    if labels is None:
        return None
    if isinstance(labels, str):
        raise ValueError(
            "`labels` must be a sequence of strings, one per frame, not a "
            f"single string. Received: labels={labels!r}"
        )
    labels = [str(label) for label in labels]
    if len(labels) != num_frames:
        raise ValueError(
            f"`labels` must have one entry per frame ({num_frames} frames). "
            f"Received: {len(labels)} labels"
        )
    return labels


def _new_figure(figsize: tuple[float, float]) -> Figure:
    """Returns an empty Figure that pyplot does not keep or show.

    In a Jupyter kernel the figure is made by pyplot and closed at once:
    creating it loads the inline backend, which is what makes IPython
    display a returned Figure as an image (a bare `Figure()` shows as
    `<Figure size ...>` in the first cell of a notebook), and closing it
    stops the backend from drawing it a second time. Anywhere else a plain
    `matplotlib.figure.Figure` is made, which needs no GUI and no pyplot.
    """
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is not None and hasattr(shell, "kernel"):
        import matplotlib.pyplot as plt

        figure = plt.figure(figsize=figsize)
        plt.close(figure)
        return figure
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def _draw_grid(
    axes: Axes,
    grid: np.ndarray,
    cell_size: tuple[int, int],
    num_columns: int,
    labels: list[str] | None,
    fontsize: float,
    interpolation: str,
) -> None:
    """Shows `grid` on `axes` and writes each label in its cell's top left."""
    from matplotlib.transforms import Bbox, TransformedBbox

    height, width = cell_size
    axes.imshow(grid, interpolation=interpolation)
    axes.set_axis_off()
    for index, label in enumerate(labels or []):
        row, column = divmod(index, num_columns)
        text = axes.text(
            column * width + 0.04 * width,
            row * height + 0.04 * height,
            label,
            color="white",
            fontsize=fontsize,
            horizontalalignment="left",
            verticalalignment="top",
            clip_on=True,
            bbox={
                "boxstyle": "square,pad=0.25",
                "facecolor": "black",
                "alpha": 0.6,
                "edgecolor": "none",
            },
        )
        # A long label is cut at its cell's edge instead of covering the next.
        cell = Bbox.from_bounds(column * width - 0.5, row * height - 0.5, width, height)
        text.set_clip_box(TransformedBbox(cell, axes.transData))


def _label_fontsize(cell_points: float, points_per_pixel: float) -> float:
    """A label size (points) for a cell `cell_points` points wide and high.

    About a twelfth of the cell, but never below 7 pixels, so labels stay
    legible on small frames.
    """
    return max(7.0 * points_per_pixel, cell_points / 12.0)


def plot_grid(
    frames: Frames,
    *,
    num_columns: int | None = None,
    labels: Sequence[str] | None = None,
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure:
    """Draws frames as a grid in a matplotlib figure, with no gaps between them.

    The grid from `make_grid` fills the whole figure (axes off, no margins),
    with optional labels written on the images. Nothing is shown: in a
    notebook, returning the figure from a cell displays it inline; in a
    script, save it with `figure.savefig(...)`, or use `save_grid`.

    Args:
        frames: a `(num_frames, height, width, 3)` uint8 array, or an
            iterable of `(height, width, 3)` frames and/or batches of them.
        num_columns: the number of columns, `>= 1`. Defaults to `None`,
            `ceil(sqrt(num_frames))`.
        labels: one string per frame, drawn in white on a dark box in the
            top left corner of the frame (and cut at its edges). Defaults
            to `None`, no labels.
        figsize: `(width, height)` in inches. Defaults to `None`: 2 inches
            per column and the grid's aspect ratio, plus 0.5 inch for
            `title`. Pixels stay square, so a figsize with another aspect
            ratio leaves margins around the grid (never between frames).
        title: a title above the grid. Defaults to `None`, no title.

    Returns:
        A `matplotlib.figure.Figure` holding one axes with the grid image.

    Raises:
        ValueError: if `num_columns` is not a positive integer, the number
            of labels differs from the number of frames, a frame is not an
            RGB uint8 frame, frames differ in shape, or there are none.

    Example:

    ```python
    figure = kerasmorph.plotting.plot_grid(
        frames, labels=[f"t={t:.2f}" for t in np.linspace(0, 1, len(frames))]
    )
    figure.savefig("grid.png")
    ```

    References:
        - `plot_grid` in [A walk through latent space with Stable Diffusion](
          https://keras.io/examples/generative/random_walks_with_stable_diffusion/)
    """
    if num_columns is not None:
        check_int("num_columns", num_columns, 1)
    frame_list = list(iter_frames(frames))
    labels = _check_labels(labels, len(frame_list))
    grid, num_rows, num_columns = _tile(frame_list, num_columns)
    title_inches = _TITLE_INCHES if title is not None else 0.0
    if figsize is None:
        width_inches = _INCHES_PER_COLUMN * num_columns
        figsize = (
            width_inches,
            width_inches * grid.shape[0] / grid.shape[1] + title_inches,
        )
    elif len(figsize) != 2 or not all(
        isinstance(size, (int, float)) and size > 0 for size in figsize
    ):
        raise ValueError(
            "`figsize` must be (width, height) in inches, both positive. "
            f"Received: figsize={figsize!r}"
        )
    figure = _new_figure(tuple(figsize))
    grid_fraction = 1.0 - min(title_inches / figsize[1], 0.5)
    axes = figure.add_axes((0.0, 0.0, 1.0, grid_fraction))
    cell_points = 72.0 * min(figsize[0] / num_columns, figsize[1] * grid_fraction / num_rows)
    _draw_grid(
        axes,
        grid,
        frame_list[0].shape[:2],
        num_columns,
        labels,
        _label_fontsize(cell_points, 72.0 / figure.dpi),
        interpolation="antialiased",
    )
    if title is not None:
        figure.suptitle(title, y=1.0 - 0.5 * (1.0 - grid_fraction), va="center")
    return figure


def _render_labelled_grid(
    frame_list: list[np.ndarray], num_columns: int | None, labels: list[str]
) -> np.ndarray:
    """Returns the grid with labels drawn on it, at the grid's exact pixel size."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    grid, _, num_columns = _tile(frame_list, num_columns)
    grid_height, grid_width = grid.shape[:2]
    figure = Figure(figsize=(grid_width / _RENDER_DPI, grid_height / _RENDER_DPI), dpi=_RENDER_DPI)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    height, width = frame_list[0].shape[:2]
    cell_points = 72.0 * min(height, width) / _RENDER_DPI
    _draw_grid(
        axes,
        grid,
        (height, width),
        num_columns,
        labels,
        _label_fontsize(cell_points, 72.0 / _RENDER_DPI),
        interpolation="none",  # Pixels 1:1 with the grid, no resampling.
    )
    canvas.draw()
    rendered = np.asarray(canvas.buffer_rgba())[..., :3]
    if rendered.shape != grid.shape:
        raise RuntimeError(
            "matplotlib rendered the labelled grid at the wrong size. "
            f"Expected {grid.shape}. Received: {rendered.shape}"
        )
    return np.ascontiguousarray(rendered)


def save_grid(
    path: str | os.PathLike[str],
    frames: Frames,
    *,
    num_columns: int | None = None,
    labels: Sequence[str] | None = None,
) -> Path:
    """Writes frames tiled into one grid image, atomically.

    Without labels, the file holds exactly the pixels of `make_grid`: a
    `num_rows * height` by `num_columns * width` image, frames untouched.
    With labels, matplotlib draws them on the grid (as in `plot_grid`) at
    that same pixel size, the frames' pixels unchanged outside the labels.

    Args:
        path: the image file to write; the suffix picks the format through
            Pillow (`.png`, `.jpg`, `.jpeg`, `.webp`, ...). Parent
            directories are created.
        frames: a `(num_frames, height, width, 3)` uint8 array, or an
            iterable of `(height, width, 3)` frames and/or batches of them.
        num_columns: the number of columns, `>= 1`. Defaults to `None`,
            `ceil(sqrt(num_frames))`.
        labels: one string per frame, drawn in the frame's top left corner.
            Defaults to `None`, no labels.

    Returns:
        `path` as a `pathlib.Path`.

    Raises:
        ValueError: if Pillow cannot write the suffix of `path`,
            `num_columns` is not a positive integer, the number of labels
            differs from the number of frames, a frame is not an RGB uint8
            frame, frames differ in shape, or there are none.

    Example:

    ```python
    kerasmorph.plotting.save_grid("grid.png", frames, num_columns=6)
    ```
    """
    path = Path(path)
    pillow_format(path)  # Fail on a bad suffix before drawing anything.
    if num_columns is not None:
        check_int("num_columns", num_columns, 1)
    frame_list = list(iter_frames(frames))
    labels = _check_labels(labels, len(frame_list))
    if labels is None:
        image, _, _ = _tile(frame_list, num_columns)
    else:
        image = _render_labelled_grid(frame_list, num_columns, labels)
    return save_frame(path, image)


def plot_similarity_histogram(
    cosines: Sequence[float],
    *,
    num_bins: int = 50,
    title: str | None = None,
) -> Figure:
    """Draws a histogram of per-layer cosine similarities.

    For `kerasmorph.merging.cosine_similarities` (pass `[row.cosine for row
    in rows]`): how alike two models, or two task vectors, are layer by
    layer. NaN values (all-zero tensors) are left out and counted in the
    x-axis label.

    Args:
        cosines: similarities in [-1, 1].
        num_bins: histogram bins over [-1, 1]. Defaults to 50.
        title: a title above the plot. Defaults to `None`.

    Returns:
        A `matplotlib.figure.Figure` (headless-safe; save it with
        `figure.savefig(path)`).

    Raises:
        ValueError: when there are no finite values or `num_bins` < 1.
    """
    check_int("num_bins", num_bins, 1)
    values = np.asarray(list(cosines), dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise ValueError(
            "`cosines` must hold at least one finite value. "
            f"Received: {values.size} values, {finite.size} finite"
        )
    figure = _new_figure((6.0, 4.0))
    axes = figure.add_subplot(1, 1, 1)
    low = min(-1.0, float(finite.min()))
    high = max(1.0, float(finite.max()))
    axes.hist(finite, bins=num_bins, range=(low, high), color="tab:blue")
    missing = values.size - finite.size
    axes.set_xlabel("cosine similarity" + (f" ({missing} undefined left out)" if missing else ""))
    axes.set_ylabel("layers")
    axes.set_title(title or f"{finite.size} layers, median {np.median(finite):.4f}")
    figure.tight_layout()
    return figure


_METRIC_LABELS = {"l2": "L2", "mad": "MAD", "ssim": "1 − SSIM", "latent_l2": "latent L2"}


def plot_morph_metrics(evaluations: Mapping[str, Mapping]) -> Figure:
    """Draws the distance and presence curves of one or more morphs.

    One panel per distance (`"l2"`, `"ssim"`, ...): the distance between
    frames i and i + 1, drawn at the position (i + ½)/(F − 1) along the morph
    so that morphs of different lengths line up; a last panel with the
    presence relative to the endpoints at i/(F − 1). One line per morph.

    Args:
        evaluations: name -> a `kerasmorph.metrics.evaluate_frames` result.

    Returns:
        A `matplotlib.figure.Figure` (headless-safe; `figure.savefig(path)`).

    Example:

    ```python
    result = kerasmorph.metrics.evaluate_frames(frames)
    kerasmorph.plotting.plot_morph_metrics({"slerp": result}).savefig("metrics.png")
    ```
    """
    if not evaluations:
        raise ValueError("`evaluations` must hold at least one result. Received: none")
    names = list(dict.fromkeys(m for e in evaluations.values() for m in e["distances"]))
    figure = _new_figure((7.0, 2.2 * (len(names) + 1)))
    panels = figure.subplots(len(names) + 1, 1, sharex=True, squeeze=False)[:, 0]
    for label, evaluation in evaluations.items():
        steps = evaluation["num_frames"] - 1
        for axes, metric in zip(panels, names):
            stats = evaluation["distances"].get(metric)
            if stats is not None:
                positions = (np.arange(steps) + 0.5) / steps
                axes.plot(positions, stats["distances"], marker=".", label=label)
        presence = evaluation["presence"]
        curve = presence["relative"] if presence["relative"] is not None else presence["shares"]
        panels[-1].plot(np.arange(steps + 1) / steps, curve, marker=".", label=label)
    for axes, metric in zip(panels, names):
        axes.set_ylabel(_METRIC_LABELS.get(metric, metric) + " to next")
    panels[-1].set_ylabel("presence / ends'")
    panels[-1].set_xlabel("position along the morph")
    panels[0].legend(fontsize="small")
    figure.tight_layout()
    return figure
