"""Writes frames to files: GIF, MP4, PNG sequences and single images.

This module knows nothing about diffusion. It takes frames, i.e. RGB images
as numpy arrays of shape `(height, width, 3)` and dtype `uint8`, either as
one `(num_frames, height, width, 3)` array or as any iterable of frames and
batches of frames, so a render can stream its frames to disk as they are
decoded. It never imports TensorFlow or Keras.

Every file is written atomically (`kerasmorph.atomic.atomic_path`): the data
goes to a hidden temporary file in the same directory
(`.name.<random>.tmp.suffix`), which is renamed to the final name with
`os.replace` only once it is complete. A process that is
killed or fails midway therefore never leaves a truncated file under the
final name, and a temporary file left by a failure is removed.

Example:

```python
import numpy as np
import kerasmorph.export

frames = np.zeros((8, 64, 64, 3), dtype="uint8")
frames[:, :, :, 0] = np.linspace(0, 255, 8, dtype="uint8")[:, None, None]
kerasmorph.export.save_gif("walk.gif", frames, fps=10, rubber_band=True)
kerasmorph.export.save_mp4("walk.mp4", frames, fps=10)
kerasmorph.export.save_frames("walk_frames", frames)
```
"""

from __future__ import annotations

import itertools
import math
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from kerasmorph._checks import check_int, check_positive
from kerasmorph.atomic import atomic_path
from kerasmorph.installs import missing_dependency

__all__ = [
    "iter_frames",
    "save_grey16",
    "pillow_format",
    "rubber_band",
    "rubber_band_order",
    "save_frame",
    "save_frames",
    "save_gif",
    "save_mp4",
    "save_video",
]

# Frames as accepted everywhere in this module: a `(num_frames, height,
# width, 3)` uint8 array, or an iterable of `(height, width, 3)` frames and/or
# `(batch, height, width, 3)` batches.
Frames = np.ndarray | Iterable[np.ndarray]

# GIF stores frame delays in whole centiseconds. Browsers (Chrome, Firefox,
# Safari) replace delays below 2 cs with 10 cs, so 50 fps is the fastest GIF
# that plays as written.
_GIF_MIN_DELAY_CENTISECONDS = 2

# ---------------------------------------------------------------------------
# Frame validation.
# ---------------------------------------------------------------------------


def _check_frame(frame: np.ndarray, index: int, reference_shape: tuple[int, ...] | None) -> None:
    """Raises a ValueError unless `frame` is an RGB uint8 frame.

    Args:
        frame: the array to check.
        index: the position of the frame in the whole sequence, for messages.
        reference_shape: the shape of frame 0, or None for frame 0 itself.
    """
    if frame.ndim == 2:
        raise ValueError(
            "Frames must be RGB arrays of shape (height, width, 3); greyscale "
            "frames are not accepted. Stack a greyscale frame to RGB with "
            "`np.repeat(frame[..., None], 3, axis=-1)`. "
            f"Received: frame {index} with shape {frame.shape}"
        )
    if frame.ndim != 3 or frame.shape[-1] != 3:
        hint = (
            " Drop the alpha channel with `frame[..., :3]`."
            if frame.ndim == 3 and frame.shape[-1] == 4
            else ""
        )
        raise ValueError(
            "Frames must be RGB arrays of shape (height, width, 3)."
            f"{hint} Received: frame {index} with shape {frame.shape}"
        )
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(
            f"Frames must be at least 1x1 pixels. Received: frame {index} with shape {frame.shape}"
        )
    if frame.dtype != np.uint8:
        raise ValueError(
            "Frames must have dtype uint8 (values 0-255). Convert floats in "
            "[0, 1] with `(np.clip(x, 0, 1) * 255).round().astype('uint8')`. "
            f"Received: frame {index} with dtype {frame.dtype}"
        )
    if reference_shape is not None and frame.shape != reference_shape:
        raise ValueError(
            "All frames must have the same shape: frame "
            f"{index} has shape {frame.shape} but frame 0 has {reference_shape}."
        )


def iter_frames(frames: Frames) -> Iterator[np.ndarray]:
    """Yields the frames of `frames` one at a time, validating each.

    Batches found in an iterable are split into frames, so the index in
    error messages counts frames, not items. Nothing is read ahead: a
    generator is consumed one item at a time. Every writer here (and
    `kerasmorph.plotting`) reads its frames through it.

    Args:
        frames: a `(num_frames, height, width, 3)` uint8 array, or an
            iterable of `(height, width, 3)` frames and/or batches of them.

    Yields:
        `(height, width, 3)` uint8 frames, all of one shape.

    Raises:
        TypeError: if `frames` is neither an array nor an iterable.
        ValueError: if a frame is not an RGB uint8 frame, the frames differ
            in shape, or there are no frames at all.
    """
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4:
            raise ValueError(
                "An array of frames must have shape (num_frames, height, "
                "width, 3). To write a single image use `save_frame`, or pass "
                f"`frame[None]`. Received: frames.shape={frames.shape}"
            )
        items: Iterable[Any] = (frames,)
    elif isinstance(frames, (str, bytes, Image.Image)):
        raise TypeError(
            "`frames` must be an array of shape (num_frames, height, width, "
            "3) or an iterable of uint8 arrays. "
            f"Received: frames of type {type(frames).__name__}"
        )
    else:
        try:
            items = iter(frames)
        except TypeError:
            raise TypeError(
                "`frames` must be an array of shape (num_frames, height, "
                "width, 3) or an iterable of uint8 arrays. "
                f"Received: frames of type {type(frames).__name__}"
            ) from None

    reference_shape: tuple[int, ...] | None = None
    index = 0
    for item in items:
        array = np.asarray(item)
        if array.ndim == 4:
            batch: Iterable[np.ndarray] = array
        else:
            # A single frame; `_check_frame` explains a wrong shape.
            batch = (array,)
        for frame in batch:
            _check_frame(frame, index, reference_shape)
            if reference_shape is None:
                reference_shape = frame.shape
            yield frame
            index += 1
    if index == 0:
        raise ValueError(
            f"`frames` is empty: there is nothing to write. Received: frames={_describe(frames)}"
        )


def _describe(frames: Any) -> str:
    if isinstance(frames, np.ndarray):
        return f"array of shape {frames.shape}"
    if hasattr(frames, "__len__"):
        return f"{type(frames).__name__} of length {len(frames)}"
    return f"exhausted {type(frames).__name__}"


def _first_and_rest(frames: Frames) -> tuple[np.ndarray, Iterator[np.ndarray]]:
    """Validates and returns the first frame, and an iterator over the others.

    Raising for an empty sequence here, before any file is opened, means an
    error never leaves an empty file or directory behind.
    """
    iterator = iter_frames(frames)
    first = next(iterator)  # `iter_frames` raises ValueError when empty.
    return first, iterator


def pillow_format(path: Path) -> str:
    """Returns the Pillow format that writes files with the suffix of `path`.

    Raises:
        ValueError: when Pillow cannot write that suffix.
    """
    Image.init()
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format is None or image_format not in Image.SAVE:
        raise ValueError(
            "Cannot tell which image format to write from the suffix of "
            "`path`. Use a suffix Pillow can write, such as .png, .jpg, "
            f".jpeg, .webp, .bmp or .tiff. Received: path={str(path)!r}"
        )
    return image_format


def _write_image(path: Path, frame: np.ndarray, image_format: str) -> None:
    with atomic_path(path) as temporary:
        Image.fromarray(frame).save(temporary, format=image_format)


# ---------------------------------------------------------------------------
# Public API.
# ---------------------------------------------------------------------------


def rubber_band(frames: Frames) -> np.ndarray | list[np.ndarray]:
    """Appends the frames in reverse so a one-way walk plays back and forth.

    This is exactly the "rubber band" of the KerasCV tutorial *A walk through
    latent space with Stable Diffusion* (`export_as_gif(...,
    rubber_band=True)`), which does `images += images[2:-1][::-1]`: after the
    last frame, the walk returns through frames `n - 2, n - 3, ..., 2`, and
    the looping GIF then jumps from frame 2 back to frame 0. So frame 1 is
    shown once per cycle (frames 2 to n - 2 twice) and the result has
    `n + max(n - 3, 0)` frames; fewer than 4 frames are returned unchanged.

    Args:
        frames: a `(num_frames, height, width, 3)` uint8 array, or an
            iterable of `(height, width, 3)` frames and/or batches of them.

    Returns:
        A `(num_frames + max(num_frames - 3, 0), height, width, 3)` uint8
        array when `frames` is an array, else a list of `(height, width, 3)`
        uint8 arrays (the input frames, not copies).

    Raises:
        ValueError: if the frames are not RGB uint8 arrays of one shape, or
            there are none.

    Example:

    ```python
    frames = np.zeros((5, 64, 64, 3), dtype="uint8")
    kerasmorph.export.rubber_band(frames).shape  # (7, 64, 64, 3): 0 1 2 3 4 3 2
    ```

    References:
        - [A walk through latent space with Stable Diffusion](
          https://keras.io/examples/generative/random_walks_with_stable_diffusion/)
    """
    bounced = _rubber_band_list(frames)
    if isinstance(frames, np.ndarray):
        return np.stack(bounced)
    return bounced


def rubber_band_order(num_frames: int) -> list[int]:
    """The frame indices `rubber_band` plays: `0, 1, ..., n - 1`, then `n - 2, ..., 2`.

    For writers that read frames one at a time (from files) instead of
    holding them: `[frames[i] for i in rubber_band_order(len(frames))]` is
    `rubber_band(frames)`.

    Args:
        num_frames: n, >= 0.

    Returns:
        `n + max(n - 3, 0)` indices.

    Example:

    ```python
    kerasmorph.export.rubber_band_order(5)  # [0, 1, 2, 3, 4, 3, 2]
    ```
    """
    num_frames = check_int("num_frames", num_frames, 0)
    forward = list(range(num_frames))
    return forward + forward[2:-1][::-1]


def _rubber_band_list(frames: Frames) -> list[np.ndarray]:
    """Returns the validated frames followed by `frames[2:-1]` reversed."""
    frame_list = list(iter_frames(frames))
    return [frame_list[index] for index in rubber_band_order(len(frame_list))]


def save_frame(path: str | os.PathLike[str], frame: np.ndarray) -> Path:
    """Writes one frame to an image file, atomically.

    The suffix of `path` picks the format through Pillow (`.png`, `.jpg`,
    `.jpeg`, `.webp`, ...). PNG is lossless; JPEG uses Pillow's default
    quality (75). Parent directories are created.

    Args:
        path: the file to write.
        frame: a `(height, width, 3)` uint8 array.

    Returns:
        `path` as a `pathlib.Path`.

    Raises:
        ValueError: if `frame` is not an RGB uint8 frame (a batch of frames
            included), or Pillow cannot write the suffix of `path`.

    Example:

    ```python
    kerasmorph.export.save_frame("first.png", frames[0])
    ```
    """
    path = Path(path)
    image_format = pillow_format(path)
    frame = np.asarray(frame)
    if frame.ndim == 4:
        raise ValueError(
            "`save_frame` writes one frame of shape (height, width, 3). Use "
            "`save_frames` or `kerasmorph.plotting.save_grid` for several, "
            f"or pass `frames[0]`. Received: frame.shape={frame.shape}"
        )
    _check_frame(frame, 0, None)
    _write_image(path, frame, image_format)
    return path


def save_grey16(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Writes a uint16 (height, width) grey image as a 16-bit PNG, atomically (e.g. a depth map).

    Raises:
        ValueError: for another suffix than `.png`, or another array.
    """
    path = Path(path)
    image = np.asarray(image)
    if path.suffix.lower() != ".png":
        raise ValueError(f"A 16-bit grey image is written as .png. Received: {path.name!r}")
    if image.ndim != 2 or image.dtype != np.uint16:
        raise ValueError(
            f"Expected a uint16 (height, width) image. Received: {image.shape}, {image.dtype}"
        )
    with atomic_path(path, mode=0o644) as temporary:
        Image.fromarray(image).save(temporary, format="PNG")
    return path


def save_frames(
    directory: str | os.PathLike[str],
    frames: Frames,
    *,
    prefix: str = "frame_",
    start_index: int = 0,
    digits: int = 5,
) -> list[Path]:
    """Writes frames as a numbered PNG sequence, one file as each frame arrives.

    Frames are written as they are drawn from `frames`, so a generator that
    renders frame by frame never holds the walk in memory, and the files of
    a long render appear on disk while it runs. Each file is written
    atomically. Files are named `f"{prefix}{index:0{digits}d}.png"`, e.g.
    `frame_00000.png`; files already in `directory` with the same names are
    replaced and other files are left alone. The directory (and its parents)
    are created when the first frame arrives, so an empty `frames` creates
    nothing.

    Args:
        directory: the directory to write into.
        frames: a `(num_frames, height, width, 3)` uint8 array, or an
            iterable (for example a generator) of `(height, width, 3)`
            frames and/or batches of them.
        prefix: the start of every file name; must not contain a path
            separator. Defaults to `"frame_"`.
        start_index: the number of the first frame, `>= 0`, e.g. to continue
            an interrupted render. Defaults to `0`.
        digits: the zero-padded width of the number, `>= 1`. Defaults to `5`
            (up to 100 000 frames sort correctly).

    Returns:
        The paths written, in frame order.

    Raises:
        ValueError: if an argument is out of range, a frame is not an RGB
            uint8 frame, frames differ in shape, there are no frames, or a
            frame number needs more than `digits` digits (frames written
            before that point stay on disk).

    Example:

    ```python
    paths = kerasmorph.export.save_frames("walk_frames", frames)
    paths[0].name  # 'frame_00000.png'
    ```
    """
    directory = Path(directory)
    if not isinstance(prefix, str) or "/" in prefix or os.sep in prefix:
        raise ValueError(
            "`prefix` must be a file name prefix without a path separator. "
            f"Received: prefix={prefix!r}"
        )
    start_index = check_int("start_index", start_index, 0)
    digits = check_int("digits", digits, 1)
    limit = 10**digits
    if isinstance(frames, np.ndarray) and frames.ndim == 4:
        last_index = start_index + len(frames) - 1
        if len(frames) and last_index >= limit:
            raise ValueError(
                f"Frame numbers up to {last_index} need more than `digits` "
                f"digits. Received: digits={digits}"
            )

    first, rest = _first_and_rest(frames)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for offset, frame in enumerate(itertools.chain([first], rest)):
        index = start_index + offset
        if index >= limit:
            raise ValueError(
                f"Frame number {index} needs more than `digits` digits; "
                f"{len(paths)} frames were written. Received: digits={digits}"
            )
        path = directory / f"{prefix}{index:0{digits}d}.png"
        _write_image(path, frame, "PNG")
        paths.append(path)
    return paths


def _gif_delay_centiseconds(fps: float) -> int:
    """Returns the GIF frame delay for `fps`, warning when it is not exact."""
    exact = 100.0 / fps
    delay = round(exact)
    if exact < _GIF_MIN_DELAY_CENTISECONDS:
        warnings.warn(
            "GIF frame delays are whole centiseconds and browsers play delays "
            "below 20 ms as 100 ms, so a GIF cannot play faster than 50 fps. "
            "Writing 20 ms per frame (50 fps) instead. Use `save_mp4` for "
            f"higher frame rates. Received: fps={fps:g}",
            UserWarning,
            stacklevel=3,
        )
        return _GIF_MIN_DELAY_CENTISECONDS
    if not math.isclose(delay, exact, rel_tol=1e-9):
        warnings.warn(
            "GIF frame delays are whole centiseconds, so "
            f"fps={fps:g} ({1000.0 / fps:.2f} ms per frame) cannot be stored "
            f"exactly; writing {delay * 10} ms per frame "
            f"({100.0 / delay:.2f} fps). Frame rates that are exact: 50, 25, "
            "20, 12.5, 10, 5, ... (100 / an integer).",
            UserWarning,
            stacklevel=3,
        )
    return delay


def save_gif(
    path: str | os.PathLike[str],
    frames: Frames,
    *,
    fps: float = 10,
    loop: int | None = 0,
    rubber_band: bool = False,
) -> Path:
    """Writes frames to an animated GIF with Pillow, atomically.

    GIF stores each frame's delay in whole centiseconds. `save_gif` writes
    `round(100 / fps)` centiseconds per frame (Pillow on its own would
    truncate `1000 / fps` ms: fps=30 gives 30 ms, fps=60 gives 10 ms) and
    warns when that is not exactly `1000 / fps` ms: fps=30 is written as
    30 ms per frame (33.3 fps), fps=24 as 40 ms (25 fps). Browsers play
    delays below 20 ms as 100 ms, so for `fps > 50` the delay is set to 20 ms
    (50 fps), with a warning. Exact frame rates are 100 / an integer: 50,
    25, 20, 12.5, 10, ...

    Other GIF limits: every frame is reduced to an adaptive palette of 256
    colours (lossy; use `save_mp4` or `save_frames` for full colour), and
    Pillow merges consecutive identical frames into one frame showing for
    their summed duration, so the file may hold fewer frames than were
    given while playing for the same time. Pillow also keeps all frames in
    memory until the file is written.

    Args:
        path: the file to write, usually ending in `.gif`. Parent
            directories are created.
        frames: a `(num_frames, height, width, 3)` uint8 array, or an
            iterable (for example a generator) of `(height, width, 3)`
            frames and/or batches of them.
        fps: frames per second, `> 0`. Defaults to `10` (100 ms per frame).
        loop: how many times the animation repeats: `0` loops forever, a
            positive value is stored as the GIF's loop count (at most
            65535), `None` writes no loop block so viewers play it once.
            Defaults to `0`.
        rubber_band: if True, append the frames in reverse so the animation
            plays back and forth; see `kerasmorph.export.rubber_band`.
            Defaults to `False`.

    Returns:
        `path` as a `pathlib.Path`.

    Raises:
        ValueError: if `fps` or `loop` is out of range, a frame is not an
            RGB uint8 frame, frames differ in shape, or there are none.

    Example:

    ```python
    kerasmorph.export.save_gif("walk.gif", frames, fps=10, rubber_band=True)
    ```

    References:
        - [GIF89a specification](https://www.w3.org/Graphics/GIF/spec-gif89a.txt),
          Graphic Control Extension: "Delay Time ... in hundredths (1/100)
          of a second".
    """
    path = Path(path)
    fps = check_positive("fps", fps)
    if loop is not None:
        loop = check_int("loop", loop, 0, 65535)
    delay_milliseconds = _gif_delay_centiseconds(fps) * 10

    if rubber_band:
        frame_list = _rubber_band_list(frames)
        first, rest = frame_list[0], iter(frame_list[1:])
    else:
        first, rest = _first_and_rest(frames)

    options: dict[str, Any] = {"duration": delay_milliseconds}
    if loop is not None:
        options["loop"] = loop
    with atomic_path(path, remove_stale=True) as temporary:
        Image.fromarray(first).save(
            temporary,
            format="GIF",
            save_all=True,
            append_images=(Image.fromarray(frame) for frame in rest),
            **options,
        )
    return path


def _import_imageio() -> Any:
    """Returns `imageio.v2` once imageio and imageio-ffmpeg are importable."""
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  (the FFMPEG plugin needs it)
    except ImportError as error:
        raise missing_dependency("Writing MP4", ["imageio", "imageio-ffmpeg"]) from error
    return imageio


def _padded_size(height: int, width: int, macro_block_size: int) -> tuple[int, int]:
    """Returns the frame size H.264 gets, padding up to `macro_block_size`."""
    if macro_block_size == 1:
        if height % 2 or width % 2:
            raise ValueError(
                "H.264 video with the yuv420p pixel format needs an even width "
                "and height. Crop the frames, or pass macro_block_size=2 (or "
                "the default 16) to pad them with black pixels. Received: "
                f"frame size (height, width)=({height}, {width}) with "
                "macro_block_size=1"
            )
        return height, width
    return (
        -(-height // macro_block_size) * macro_block_size,
        -(-width // macro_block_size) * macro_block_size,
    )


def _check_mp4_options(fps: Any, crf: Any, macro_block_size: Any) -> tuple[float, int | None, int]:
    """Validates `save_mp4`'s options; returns them as (float, int or None, int)."""
    fps = check_positive("fps", fps)
    if crf is not None:
        crf = check_int("crf", crf, 0, 51)
    macro_block_size = check_int("macro_block_size", macro_block_size, 1)
    if macro_block_size != 1 and macro_block_size % 2:
        raise ValueError(
            "`macro_block_size` must be 1 (no padding) or an even number "
            "(yuv420p needs even sizes). "
            f"Received: macro_block_size={macro_block_size}"
        )
    return fps, crf, macro_block_size


def save_mp4(
    path: str | os.PathLike[str],
    frames: Frames,
    *,
    fps: float = 10,
    crf: int | None = None,
    macro_block_size: int = 16,
) -> Path:
    """Writes frames to an H.264 MP4 video with imageio-ffmpeg, atomically.

    The video uses the `libx264` codec and the `yuv420p` pixel format, which
    every browser and player supports. Frames are sent to ffmpeg one at a
    time as they arrive, so a generator streams straight into the encoder.

    yuv420p needs an even width and height, and many players and hardware
    decoders want multiples of 16 (the H.264 macroblock). Frames are never
    resized: when the frame size is not a multiple of `macro_block_size`,
    every frame is padded with black pixels on the bottom and right up to
    the next multiple, and a warning gives both sizes. To avoid padding,
    render at a multiple of 16 (Stable Diffusion sizes are multiples of 64
    already), or pass `macro_block_size=2` to pad odd sizes only, or
    `macro_block_size=1` to never pad (odd sizes then raise a ValueError).

    Args:
        path: the file to write; the container is always MP4, whatever the
            suffix (usually `.mp4`). Parent directories are created.
        frames: a `(num_frames, height, width, 3)` uint8 array, or an
            iterable (for example a generator) of `(height, width, 3)`
            frames and/or batches of them.
        fps: frames per second, `> 0`. Defaults to `10`.
        crf: the x264 constant rate factor in `[0, 51]`: lower is better
            and larger, 0 is lossless (in YUV), about 18 looks lossless.
            Defaults to `None`, ffmpeg's default (23).
        macro_block_size: pad width and height up to a multiple of this; `1`
            (no padding, odd sizes rejected) or an even number. Defaults to
            `16`.

    Returns:
        `path` as a `pathlib.Path`.

    Raises:
        kerasmorph.installs.DependencyError: (an `ImportError`) if imageio
            or imageio-ffmpeg, dependencies of kerasmorph, is not installed.
        ValueError: if an argument is out of range, a frame is not an RGB
            uint8 frame, frames differ in shape, there are none, or (with
            `macro_block_size=1`) the frame size is odd.

    Example:

    ```python
    kerasmorph.export.save_mp4("walk.mp4", frames, fps=24, crf=18)
    ```
    """
    path = Path(path)
    fps, crf, macro_block_size = _check_mp4_options(fps, crf, macro_block_size)
    imageio = _import_imageio()

    first, rest = _first_and_rest(frames)
    height, width = first.shape[:2]
    padded_height, padded_width = _padded_size(height, width, macro_block_size)
    padding = ((0, padded_height - height), (0, padded_width - width), (0, 0))
    needs_padding = (padded_height, padded_width) != (height, width)
    if needs_padding:
        warnings.warn(
            f"The frame size (height, width)=({height}, {width}) is not a "
            f"multiple of macro_block_size={macro_block_size}, so the video is "
            f"padded with black pixels on the bottom and right to "
            f"({padded_height}, {padded_width}); frames are not resized. To "
            f"avoid this, render frames whose size is a multiple of "
            f"{macro_block_size}, or pass macro_block_size=2 (pads odd sizes "
            "only) or macro_block_size=1 (never pads, rejects odd sizes).",
            UserWarning,
            stacklevel=2,
        )

    output_params = ["-f", "mp4"]
    if crf is not None:
        output_params += ["-crf", str(crf)]
    with atomic_path(path, remove_stale=True) as temporary:
        writer = imageio.get_writer(
            temporary,
            format="FFMPEG",
            mode="I",
            fps=fps,
            codec="libx264",
            pixelformat="yuv420p",
            quality=None,  # Rate control comes from `crf` (or ffmpeg's default).
            macro_block_size=1,  # Padding is done here, never by resizing.
            output_params=output_params,
            ffmpeg_log_level="error",
        )
        try:
            for frame in itertools.chain([first], rest):
                if needs_padding:
                    frame = np.pad(frame, padding)
                writer.append_data(np.ascontiguousarray(frame))
        finally:
            writer.close()
    return path


def save_video(path: str | os.PathLike[str], frames: Frames, **kwargs: Any) -> Path | list[Path]:
    """Writes frames to a GIF, an MP4 or a PNG sequence, chosen by `path`.

    - a `.gif` suffix calls `save_gif`;
    - a `.mp4` suffix calls `save_mp4`;
    - an existing directory, or a path without a suffix, calls `save_frames`.

    Suffixes are matched case-insensitively.

    Args:
        path: the file or directory to write.
        frames: a `(num_frames, height, width, 3)` uint8 array, or an
            iterable of `(height, width, 3)` frames and/or batches of them.
        **kwargs: passed on to the writer, e.g. `fps=24`.

    Returns:
        The path written (GIF, MP4), or the list of PNG paths (directory).

    Raises:
        ValueError: if the suffix is not one of the above, or the chosen
            writer rejects its arguments or the frames.

    Example:

    ```python
    kerasmorph.export.save_video("walk.mp4", frames, fps=24)
    ```
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir() or suffix == "":
        return save_frames(path, frames, **kwargs)
    if suffix == ".gif":
        return save_gif(path, frames, **kwargs)
    if suffix == ".mp4":
        return save_mp4(path, frames, **kwargs)
    raise ValueError(
        "`path` must end in .gif or .mp4, or name a directory (a path without "
        "a suffix) for a PNG sequence. For a single image use `save_frame`; "
        "for a grid image use `kerasmorph.plotting.save_grid`. "
        f"Received: path={str(path)!r}"
    )


def save_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Writes `data` as indented JSON, atomically (temp file + rename).

    Args:
        path: destination file.
        data: anything `json.dumps` accepts.

    Returns:
        The `Path` written.
    """
    import json

    path = Path(path)
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path
