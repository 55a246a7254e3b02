"""One batching helper for every batched loop of the Explorer.

Every model call runs on batches of one fixed shape — the last batch is
padded by repeating its last row and the padding dropped — so any number of
rows runs through one compiled shape without retracing, and memory is
bounded by the batch size.

A batch size is never rounded silently, and a loop keeps the batch size it
was given even when it has fewer rows (a resumed render pads its last few
frames to the spec's batch, so they match the first run's). Only where the
whole count is known — a command's total frames — does `clamp_batch_size`
bring an explicit batch size above it down to it, with a logged note, so 3
frames never run padded to a million rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from kerasmorph._checks import check_count

logger = logging.getLogger(__name__)


def batch_indices(num_rows: int, batch_size: int) -> Iterator[np.ndarray]:
    """Yields int arrays of consecutive row indices, `batch_size` at a time."""
    for start in range(0, num_rows, batch_size):
        yield np.arange(start, min(start + batch_size, num_rows))


def pad_rows(array: np.ndarray, batch_size: int) -> tuple[np.ndarray, int]:
    """Pads a short last batch by repeating its last row, to keep one shape.

    Returns:
        `(padded (batch_size, ...), num_real)`.
    """
    num_real = len(array)
    if num_real == batch_size:
        return array, num_real
    padding = np.repeat(array[-1:], batch_size - num_real, axis=0)
    return np.concatenate([array, padding]), num_real


def run_padded(
    function: Callable[..., np.ndarray], arrays: Sequence[np.ndarray], batch_size: int
) -> np.ndarray:
    """Calls `function` on `arrays` padded to `batch_size` rows; returns the real rows.

    Args:
        function: `(*batches) -> np.ndarray (batch_size, ...)`.
        arrays: arrays with the same number of rows, at most `batch_size`.
        batch_size: the fixed batch shape.
    """
    padded = [pad_rows(array, batch_size)[0] for array in arrays]
    return np.asarray(function(*padded))[: len(arrays[0])]


def map_batches(
    function: Callable[..., np.ndarray], arrays: Sequence[np.ndarray], batch_size: int
) -> Iterator[np.ndarray]:
    """Yields `function` of each fixed-shape batch of `arrays`' rows, padding dropped.

    Example:

    ```python
    decoded = np.concatenate(list(map_batches(decode_batch, [latents], 4)))
    ```
    """
    for indices in batch_indices(len(arrays[0]), batch_size):
        yield run_padded(function, [array[indices] for array in arrays], batch_size)


def resolve_batch_size(
    num_rows: int, batch_size: int | None, default_batch_size: int, num_replicas: int
) -> int:
    """The batch size of a loop over `num_rows` rows.

    Default: min(num_rows, `default_batch_size`), rounded up to a multiple of
    the replica count. An explicit `batch_size` must be a multiple of the
    replica count; it is never rounded silently.
    """
    if batch_size is None:
        default = min(num_rows, default_batch_size)
        return -(-default // num_replicas) * num_replicas
    check_count("batch_size", batch_size)
    if batch_size % num_replicas:
        raise ValueError(
            f"`batch_size` must be a multiple of the {num_replicas} replicas of the "
            f"strategy. Received: batch_size={batch_size}"
        )
    return int(batch_size)


def clamp_batch_size(num_rows: int, batch_size: int | None, num_replicas: int = 1) -> int | None:
    """An explicit batch size larger than a whole job's rows, clamped to them.

    `ceil(num_rows / num_replicas) * num_replicas` when `batch_size` is
    larger than that, with a warning logged ("batch_size=1000000 is larger
    than the 3 frames to render: using 3"); else `batch_size` unchanged (None stays None:
    the default is already at most `num_rows`). Call it with the total of a
    job, not with a part of it: a resumed render must keep its batch shape.

    Args:
        num_rows: the job's rows (frames, images), >= 1.
        batch_size: the batch size asked for, or None.
        num_replicas: replicas of the strategy (a batch is a multiple of it).

    Returns:
        The batch size to use, or None.

    Example:

    ```python
    kerasmorph.explorer.batching.clamp_batch_size(3, 1_000_000)  # 3, and a logged note
    ```
    """
    if batch_size is None:
        return None
    clamped = -(-num_rows // num_replicas) * num_replicas
    if batch_size <= clamped:
        return batch_size
    logger.warning(
        "batch_size=%d is larger than the %d frames to render: using %d.",
        batch_size,
        num_rows,
        clamped,
    )
    return clamped


def progress_callback(total: int, verbose: bool) -> Callable[[], None] | None:
    """A Keras `Progbar` of `total` steps as a no-argument callback, or None when quiet."""
    if not verbose or total <= 0:
        return None
    from kerasmorph.progress import ProgressBar

    return ProgressBar(total, to_stderr=False)  # On stdout, as Keras' `model.fit` bars.
