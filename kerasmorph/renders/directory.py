"""Rendering a `RenderSpec` into a resumable directory of frames.

A render directory holds `manifest.json` (`kerasmorph.renders.spec`) and
`frame_00000.png`, … each written atomically (temp file + rename) as soon as
its batch is decoded. Running the same render again skips the frames already
on disk, so a killed render loses no finished frame and the result is
byte-identical to an uninterrupted run; a directory whose manifest differs
is refused with the differing fields named, unless `overwrite=True`.

A render directory is written by one process at a time: `render_to_directory`
holds its `kerasmorph.locks.DirectoryLock` (exclusive for one process, shared
by the workers of a sharded render), so a second render into it — or an
`overwrite` that would delete its frames — is refused while the first lives.
Under the lock, the setup also removes the hidden temporaries a killed run
left, and re-renders frames that are empty or not complete PNGs. A
directory that is already complete is never written to (it may be
read-only).

Frames can also be split across workers: worker `task_index` of `num_tasks`
renders the frames `i` with `i % num_tasks == task_index` into the same
directory (see `shard_of_cluster`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from kerasmorph import atomic, export, locks, schedulers, walks
from kerasmorph.errors import RenderDirectoryError
from kerasmorph.morph_options import DEFAULT_SWITCH_WIDTH
from kerasmorph.renders.spec import (
    MANIFEST,
    RenderSpec,
    _read_spec,
    differing_fields,
    load_spec,
)

FRAME_PREFIX = "frame_"
FRAME_DIGITS = 5
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # An empty IEND chunk with its CRC.


# kind -> (explorer, spec) -> Walk
WALK_BUILDERS: dict[str, Callable[[Any, RenderSpec], walks.Walk]] = {
    "interpolate": lambda explorer, spec: walks.prompt_walk(
        explorer,
        spec.prompts,
        spec.num_frames,
        schedule=spec.schedule,
        seed=spec.seeds[0],
        text_interpolation=spec.options.get("text_interpolation", "embedding"),
        switch_width=spec.options.get("switch_width", DEFAULT_SWITCH_WIDTH),
        middle_guidance_scale=spec.options.get("middle_guidance_scale"),
    ),
    "grid": lambda explorer, spec: walks.grid_walk(
        explorer,
        spec.prompts,
        spec.num_frames,
        seed=spec.seeds[0],
        vary_noise=bool(spec.options.get("vary_noise", False)),
        schedule=spec.schedule,
    ),
    "walk": lambda explorer, spec: walks.delta_walk(
        explorer,
        spec.prompts[0],
        spec.num_frames,
        step_size=spec.options.get("step_size"),
        norm=spec.options.get("norm"),
        direction_seed=spec.options.get("direction_seed"),
        seed=spec.seeds[0],
        schedule=spec.schedule,
    ),
    "loop": lambda explorer, spec: walks.noise_loop_walk(
        explorer, spec.prompts[0], spec.num_frames, seed=spec.seeds[0], schedule=spec.schedule
    ),
    "morph-seeds": lambda explorer, spec: walks.seed_walk(
        explorer,
        spec.prompts[0],
        spec.seeds,
        spec.num_frames,
        schedule=spec.schedule,
        noise_method=spec.options.get("noise_method", "variance_preserving"),
        noise_statistics=spec.options.get("noise_statistics"),
        middle_guidance_scale=spec.options.get("middle_guidance_scale"),
    ),
}


def spec_scheduler(spec: RenderSpec) -> str | schedulers.Scheduler:
    """The scheduler a spec names: its name alone, or built from its stored config."""
    if not spec.scheduler_config:
        return spec.scheduler
    return schedulers.get(spec.scheduler, **spec.scheduler_config)


def build_walk(explorer, spec: RenderSpec) -> walks.Walk:
    """Builds the walk a spec describes."""
    if spec.kind not in WALK_BUILDERS:
        valid = ", ".join(repr(k) for k in WALK_BUILDERS)
        raise ValueError(f"Unknown render kind; valid: {valid}. Received: kind={spec.kind!r}")
    if "depth_map" in spec.options:  # A depth-locked render: the map the UNet saw.
        explorer.set_depth_map(np.asarray(spec.options["depth_map"]), normalised=True)
    walk = WALK_BUILDERS[spec.kind](explorer, spec)
    if "start_latents" in spec.options:  # Every frame starts from one image (img2img).
        latents = np.asarray(spec.options["start_latents"], dtype=np.float32)[None]
        walk = dataclasses.replace(
            walk, start_latents=latents, strength=float(spec.options["strength"])
        )
    return walk


def frame_path(directory: str | os.PathLike, index: int) -> Path:
    """`directory/frame_00042.png` for index 42."""
    return Path(directory) / f"{FRAME_PREFIX}{index:0{FRAME_DIGITS}d}.png"


def frame_is_complete(path: str | os.PathLike, img_height: int, img_width: int) -> bool:
    """Whether `path` is a whole PNG frame of this size (not empty, cut short or garbage).

    Reads only the first 24 and the last 12 bytes: the PNG signature, the
    IHDR size and the closing IEND chunk — enough to tell a finished frame
    from a 0-byte, truncated or foreign file without decoding it.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(24)
            handle.seek(0, os.SEEK_END)
            if handle.tell() < len(head) + len(_PNG_END):
                return False
            handle.seek(-len(_PNG_END), os.SEEK_END)
            tail = handle.read()
    except OSError:
        return False
    return (
        head[:8] == _PNG_SIGNATURE
        and head[12:16] == b"IHDR"
        and int.from_bytes(head[16:20], "big") == img_width
        and int.from_bytes(head[20:24], "big") == img_height
        and tail == _PNG_END
    )


@dataclasses.dataclass(frozen=True)
class RenderReport:
    """What `render_to_directory` did.

    Attributes:
        directory: the render directory.
        rendered: indices of the frames rendered by this call.
        skipped: indices of the frames already on disk.
        paths: every frame this worker is responsible for, in order.
    """

    directory: Path
    rendered: tuple[int, ...]
    skipped: tuple[int, ...]
    paths: tuple[Path, ...]


def render_to_directory(
    explorer,
    spec: RenderSpec,
    directory: str | os.PathLike,
    *,
    overwrite: bool = False,
    shard: tuple[int, int] = (0, 1),
) -> RenderReport:
    """Renders a spec into a resumable render directory.

    The directory is locked for the whole render (`kerasmorph.locks`):
    exclusively, or shared with the other workers of a sharded render. Frames
    already on disk and complete are kept; empty or broken ones are
    re-rendered. An unchanged manifest is not rewritten, so a finished
    render on a read-only location resumes (as a no-op).

    Args:
        explorer: the `Explorer` (its model settings must match the spec,
            see `model_fields`).
        spec: the `RenderSpec`.
        directory: the render directory; created if needed.
        overwrite: replace a directory rendered with another spec, or whose
            manifest is unreadable (its frames and manifest are deleted),
            instead of refusing it. Never while another process renders there.
        shard: `(task_index, num_tasks)`: render only frames i with
            `i % num_tasks == task_index` (multi-worker renders).

    Returns:
        A `RenderReport`.

    Raises:
        RenderDirectoryError: (a `ValueError`) when the directory holds a
            render of another spec (the message names the differing fields),
            an unreadable manifest or frames without one, and `overwrite` is
            False; when it is read-only and frames are missing.
        kerasmorph.locks.DirectoryLockedError: (a `RenderDirectoryError`)
            when another live process renders into it (the message names its
            pid and host).
    """
    directory = Path(directory)
    task_index, num_tasks = shard
    if not 0 <= task_index < num_tasks:
        raise ValueError(
            f"`shard` must be (task_index, num_tasks) with 0 <= task_index < num_tasks. "
            f"Received: shard={shard}"
        )
    # Built before the directory is touched: a walk that cannot be built
    # (a bad option) leaves no manifest behind.
    walk = build_walk(explorer, spec)
    mine = [i for i in range(walk.num_frames) if i % num_tasks == task_index]
    directory.mkdir(parents=True, exist_ok=True)
    with locks.DirectoryLock(directory, shard=shard) as lock:
        missing = _set_up(explorer, spec, directory, lock, mine, overwrite=overwrite)
        lock.end_setup()
        if missing:
            frames = explorer.render(
                walk.subset(missing),
                num_steps=spec.num_steps,
                unconditional_guidance_scale=spec.unconditional_guidance_scale,
                negative_prompt=spec.negative_prompt,
                batch_size=spec.batch_size,
                scheduler=spec_scheduler(spec),
            )
            for index, frame in zip(missing, frames):
                export.save_frame(frame_path(directory, index), frame)
    done = set(missing)
    return RenderReport(
        directory,
        tuple(missing),
        tuple(i for i in mine if i not in done),
        tuple(frame_path(directory, i) for i in mine),
    )


def _set_up(
    explorer, spec: RenderSpec, directory: Path, lock, mine: list[int], *, overwrite: bool
) -> list[int]:
    """Checks (and if allowed replaces) the manifest, cleans up; returns the frames to render.

    Runs under the directory's setup lock, so no other render changes the
    directory meanwhile.
    """
    manifest = directory / MANIFEST
    replace = _must_replace(explorer, spec, directory, overwrite=overwrite)
    if replace and not lock.sole:
        raise locks.DirectoryLockedError(
            directory, lock.live_holders(), "(--overwrite never deletes a live render's frames.)"
        )
    if replace:
        for path in _frame_files(directory):
            path.unlink()
    complete = {i for i in mine if frame_is_complete(frame_path(directory, i), *_size(spec))}
    missing = [i for i in mine if i not in complete]
    if not lock.writable and (replace or missing or not manifest.is_file()):
        raise RenderDirectoryError(
            f"{directory} is not writable (a read-only location?) and this render would "
            f"write there ({len(missing)} frames missing). Copy it somewhere writable to resume."
        )
    if replace or not manifest.is_file():
        export.save_json(manifest, spec.to_json())
    _remove_leftovers(directory, lock, mine, missing)
    return missing


def _must_replace(explorer, spec: RenderSpec, directory: Path, *, overwrite: bool) -> bool:
    """Whether the directory's manifest and frames are to be replaced by this render's.

    True when it holds another render, an unreadable manifest or frames
    without one, and `overwrite` allows replacing them; refuses them
    otherwise.

    Raises:
        RenderDirectoryError: for any of these when `overwrite` is False.
    """
    manifest = directory / MANIFEST
    if manifest.exists():
        try:
            stored = _read_spec(manifest)
        except RenderDirectoryError as error:
            if not overwrite:
                raise RenderDirectoryError(
                    f"{error} Pass overwrite=True (CLI: --overwrite) to replace it with this "
                    "render (the directory's frames are deleted)."
                ) from None
            return True
        fields = differing_fields(stored, spec, explorer=explorer)
        if fields and not overwrite:
            on_disk, here = stored.to_json(), spec.to_json()
            details = ", ".join(
                f"{name}: {on_disk.get(name)!r} on disk vs {here.get(name)!r}" for name in fields
            )
            raise RenderDirectoryError(
                f"{directory} holds a different render ({details}). Pass overwrite=True "
                "(CLI: --overwrite) to replace it, or choose another directory."
            )
        return bool(fields)
    if _frame_files(directory):
        # Frames but no manifest (one is written before any frame): not ours to count as done.
        if not overwrite:
            raise RenderDirectoryError(
                f"{directory} holds {len(_frame_files(directory))} frame files but no "
                f"{MANIFEST}, so they may belong to another render. Pass overwrite=True "
                "(CLI: --overwrite) to delete them, or choose another directory."
            )
        return True
    return False


def _remove_leftovers(directory: Path, lock, mine: list[int], missing: list[int]) -> None:
    """Removes what a killed run left: hidden temporaries, and the frames to render again.

    Temporaries: all of them when no other process renders here, else only
    this worker's own (another worker may be writing its own). Frames that
    are empty, cut short or foreign are deleted, to be rendered again.
    """
    stale = (
        atomic.temporary_files(directory)
        if lock.sole
        else [t for i in mine for t in atomic.temporary_files(directory, _stem(i))]
    )
    for path in stale:
        with contextlib.suppress(OSError):
            path.unlink()
    for index in missing:
        with contextlib.suppress(FileNotFoundError):
            frame_path(directory, index).unlink()


def _size(spec: RenderSpec) -> tuple[int, int]:
    return spec.img_height, spec.img_width


def _stem(index: int) -> str:
    return f"{FRAME_PREFIX}{index:0{FRAME_DIGITS}d}"


def _frame_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"{FRAME_PREFIX}*.png"))


def read_frames(directory: str | os.PathLike, num_frames: int) -> list[np.ndarray]:
    """Reads a finished render's frames back, in order."""
    return list(iter_frame_files([frame_path(directory, i) for i in range(num_frames)]))


def iter_frame_files(paths: Iterable[str | os.PathLike]) -> Iterator[np.ndarray]:
    """Reads frame files one at a time: uint8 (H, W, 3) arrays, in the order given."""
    from PIL import Image

    for path in paths:
        with Image.open(path) as image:
            yield np.asarray(image.convert("RGB"))


def frame_count(spec: RenderSpec) -> int:
    """The frames a render has: `num_frames`, or `num_frames²` for a grid."""
    return spec.num_frames**2 if spec.kind == "grid" else spec.num_frames


def finished_frames(
    directory: str | os.PathLike, *, partial: bool = False
) -> tuple[RenderSpec, list[int]]:
    """The complete frames of a render directory, for exporting them.

    Reads the manifest and checks every frame as a resumed render would
    (`frame_is_complete`), without locking or writing anything.

    Args:
        directory: a render directory, or its manifest.
        partial: accept an unfinished render and return the frames done so
            far; default: refuse it.

    Returns:
        `(spec, indices)`: the manifest's `RenderSpec` and the indices of
        the complete frames, in order (`frame_path(directory, i)`).

    Raises:
        FileNotFoundError: when there is no manifest.
        RenderDirectoryError: for an unreadable manifest, an unfinished
            render (naming the missing frames) unless `partial`, or one with
            no frame done.
    """
    spec = load_spec(directory)
    directory = Path(directory)
    directory = directory if directory.is_dir() else directory.parent
    total = frame_count(spec)
    done = [i for i in range(total) if frame_is_complete(frame_path(directory, i), *_size(spec))]
    missing = sorted(set(range(total)) - set(done))
    if not done:
        raise RenderDirectoryError(
            f"{directory} has none of its {total} frames yet: render it first "
            f"(kerasmorph render {directory})."
        )
    if missing and not partial:
        raise RenderDirectoryError(
            f"{directory} is unfinished: {len(missing)} of {total} frames missing "
            f"({_describe_indices(missing)}); finish it with `kerasmorph render "
            f"{directory}`, or pass partial=True (CLI: --partial) to use the "
            f"{len(done)} done."
        )
    return spec, done


def _describe_indices(indices: list[int], limit: int = 8) -> str:
    """`"frames 2, 5-7, 9"`: sorted indices as ranges, the first `limit` ranges named."""
    runs: list[list[int]] = []
    for index in indices:
        if runs and index == runs[-1][1] + 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    named = [f"{start}" if start == end else f"{start}-{end}" for start, end in runs[:limit]]
    more = f" and {len(runs) - limit} more ranges" if len(runs) > limit else ""
    return f"frame{'s' if len(indices) > 1 else ''} {', '.join(named)}{more}"


def _read_tf_config() -> tuple[str | None, int | None, dict[str, Any]]:
    """`(task type, task index, cluster)` of `TF_CONFIG`, as TensorFlow reads them.

    The same reading as `tf.distribute.cluster_resolver.TFConfigClusterResolver`
    (`task_type`, `task_id`, `cluster_spec().as_dict()`) without importing
    TensorFlow: a missing key gives `None`; a job's tasks are a list of
    addresses, or a dict task index -> address (kept a dict when sparse).
    """
    config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = config.get("task", {})
    task_type = str(task["type"]) if "type" in task else None
    task_id = int(task["index"]) if "index" in task else None
    cluster: dict[str, Any] = {}
    for job, tasks in config.get("cluster", {}).items():
        if isinstance(tasks, (list, tuple)):
            tasks = dict(enumerate(tasks))
        elif isinstance(tasks, dict):
            tasks = {int(index): address for index, address in tasks.items()}
        else:
            raise TypeError(
                f"The tasks for job {job!r} must be a list or a dictionary from integers "
                "to strings."
            )
        indices = sorted(tasks)
        dense = bool(indices) and indices[-1] + 1 == len(indices)
        cluster[job] = [tasks[i] for i in indices] if dense else {i: tasks[i] for i in indices}
    return task_type, task_id, cluster


def shard_of_cluster() -> tuple[int, int]:
    """`(task_index, num_workers)` of this process from `TF_CONFIG`.

    Reads `TF_CONFIG` as TensorFlow's `TFConfigClusterResolver` does; a process
    without `TF_CONFIG` is worker 0 of 1. Only the task index and count are
    read — workers render disjoint frames, so no collective or server is
    started.
    """
    if not os.environ.get("TF_CONFIG"):
        return (0, 1)
    task_type, task_id, cluster = _read_tf_config()
    workers = cluster.get("worker", [])
    if task_type not in ("worker", "chief") or not workers:
        raise ValueError(
            "TF_CONFIG must describe a 'worker' cluster with this task's type and "
            f"index. Received: task_type={task_type!r}, cluster={cluster}"
        )
    num_tasks = len(workers) + len(cluster.get("chief", []))
    index = task_id + (len(cluster.get("chief", [])) if task_type == "worker" else 0)
    return (int(index), int(num_tasks))
