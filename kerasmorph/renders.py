"""Resumable renders: a directory of frames described by a manifest.

A render directory holds `manifest.json` — a `RenderSpec`, every parameter
that decides the frames — and `frame_00000.png`, … each written atomically
(temp file + rename) as soon as its batch is decoded. Running the same render
again skips the frames already on disk, so a killed render loses no finished
frame and the result is byte-identical to an uninterrupted run; a directory
whose manifest differs is refused with the differing fields named, unless
`overwrite=True`.

Frames can also be split across workers: worker `task_index` of `num_tasks`
renders the frames `i` with `i % num_tasks == task_index` into the same
directory (see `shard_of_cluster`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import kerasmorph
from kerasmorph import export, schedulers, walks

MANIFEST = "manifest.json"
FRAME_PREFIX = "frame_"
FRAME_DIGITS = 5


@dataclasses.dataclass(frozen=True)
class RenderSpec:
    """Everything that decides a render's frames; round-trips through JSON.

    Attributes:
        kind: the walk, one of `WALK_BUILDERS` ("interpolate", "grid", …).
        prompts: the prompts, in order.
        seeds: noise seeds (one for most walks, 2+ for "morph-seeds").
        num_frames: frames per walk (per side for "grid").
        schedule: schedule name.
        options: walk-specific settings (e.g. {"step_size": 0.005}).
        model: preset name.
        weights: fingerprint of the weight files (or the random seed).
        img_height, img_width: image size.
        precision, jit_compile: numerics that can change the last bits.
        num_steps, unconditional_guidance_scale, negative_prompt: sampling.
        batch_size: UNet batch (frames are byte-identical only for one batch).
        version: kerasmorph version that rendered it.
        scheduler: the sampling algorithm's name (`kerasmorph.schedulers`).
        scheduler_config: its configuration (`Scheduler.config`); `{}` for
            the scheduler's defaults with the model's prediction type.
    """

    kind: str
    prompts: tuple[str, ...]
    seeds: tuple[int, ...]
    num_frames: int
    schedule: str
    options: dict[str, Any]
    model: str
    weights: str
    img_height: int
    img_width: int
    precision: str
    jit_compile: bool
    num_steps: int
    unconditional_guidance_scale: float
    negative_prompt: str | None
    batch_size: int
    version: str = kerasmorph.__version__
    # Fields added later have defaults, so older manifests still load (as DDIM renders).
    scheduler: str = "ddim"
    scheduler_config: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RenderSpec":
        """Rebuilds a spec from `to_json` output; unknown fields are an error."""
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        missing = sorted(names - set(data) - set(_optional_fields()))
        if unknown or missing:
            raise ValueError(
                f"Not a kerasmorph render manifest: unknown fields {unknown}, missing "
                f"fields {missing}. Received: {sorted(data)}"
            )
        values = dict(data)
        values["prompts"] = tuple(values["prompts"])
        values["seeds"] = tuple(values["seeds"])
        return cls(**values)


def weights_fingerprint(explorer) -> str:
    """A cheap identity of the weights: file names, sizes and head/tail hashes.

    Random presets are identified by their seed. Hashing 1 MiB at each end of
    each file tells different checkpoints apart without reading gigabytes.
    """
    import hashlib

    paths = explorer.describe()["weights"]
    if not paths:
        return f"{explorer.preset.name}:seed={explorer.seed}"
    digest = hashlib.sha256()
    for component in sorted(paths):
        path = Path(paths[component])
        size = path.stat().st_size
        digest.update(f"{component}:{path.name}:{size}".encode())
        with open(path, "rb") as handle:
            digest.update(handle.read(1 << 20))
            handle.seek(max(0, size - (1 << 20)))
            digest.update(handle.read(1 << 20))
    return f"{explorer.preset.name}:{digest.hexdigest()[:16]}"


# kind -> (explorer, spec) -> Walk
WALK_BUILDERS: dict[str, Callable[[Any, RenderSpec], walks.Walk]] = {
    "interpolate": lambda explorer, spec: walks.prompt_walk(
        explorer, spec.prompts, spec.num_frames, schedule=spec.schedule, seed=spec.seeds[0]
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
    return WALK_BUILDERS[spec.kind](explorer, spec)


def frame_path(directory: str | os.PathLike, index: int) -> Path:
    """`directory/frame_00042.png` for index 42."""
    return Path(directory) / f"{FRAME_PREFIX}{index:0{FRAME_DIGITS}d}.png"


def _optional_fields() -> dict[str, Any]:
    """`RenderSpec` fields that have defaults (added after the first manifests), with them."""
    return {
        field.name: field.default_factory()
        if field.default_factory is not dataclasses.MISSING
        else field.default
        for field in dataclasses.fields(RenderSpec)
        if field.default is not dataclasses.MISSING
        or field.default_factory is not dataclasses.MISSING
    }


def differing_fields(stored: dict[str, Any], spec: RenderSpec) -> list[str]:
    """Names of the manifest fields whose values differ from `spec`."""
    current = spec.to_json()
    # A field added after the manifest was written counts as its default value.
    defaults = {name: value for name, value in _optional_fields().items() if name != "version"}
    stored = {**defaults, **stored}
    return sorted(
        name for name in set(stored) | set(current) if stored.get(name) != current.get(name)
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

    Args:
        explorer: the `Explorer` (its model settings must match the spec).
        spec: the `RenderSpec`.
        directory: the render directory; created if needed.
        overwrite: replace a directory rendered with another spec (its frames
            and manifest are deleted) instead of refusing it.
        shard: `(task_index, num_tasks)`: render only frames i with
            `i % num_tasks == task_index` (multi-worker renders).

    Returns:
        A `RenderReport`.

    Raises:
        ValueError: when the directory holds a render of another spec (the
            message names the differing fields) and `overwrite` is False.
    """
    directory = Path(directory)
    task_index, num_tasks = shard
    if not 0 <= task_index < num_tasks:
        raise ValueError(
            f"`shard` must be (task_index, num_tasks) with 0 <= task_index < num_tasks. "
            f"Received: shard={shard}"
        )
    manifest = directory / MANIFEST
    if manifest.is_file():
        stored = json.loads(manifest.read_text(encoding="utf-8"))
        fields = differing_fields(stored, spec)
        if fields and not overwrite:
            details = ", ".join(
                f"{name}: {stored.get(name)!r} on disk vs {spec.to_json().get(name)!r}"
                for name in fields
            )
            raise ValueError(
                f"{directory} holds a different render ({details}). Pass overwrite=True "
                "(CLI: --overwrite) to replace it, or choose another directory."
            )
        if fields:
            for path in directory.glob(f"{FRAME_PREFIX}*.png"):
                path.unlink()
    directory.mkdir(parents=True, exist_ok=True)
    export.save_json(manifest, spec.to_json())
    walk = build_walk(explorer, spec)
    mine = [i for i in range(walk.num_frames) if i % num_tasks == task_index]
    # A killed render may leave hidden temp files (see export); remove this
    # worker's own, never another worker's file still being written.
    for index in mine:
        for stale in directory.glob(f".{frame_path(directory, index).stem}.*.tmp.png"):
            stale.unlink(missing_ok=True)
    skipped = [i for i in mine if frame_path(directory, i).is_file()]
    missing = [i for i in mine if i not in set(skipped)]
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
    return RenderReport(
        directory,
        tuple(missing),
        tuple(skipped),
        tuple(frame_path(directory, i) for i in mine),
    )


def load_spec(manifest: str | os.PathLike) -> RenderSpec:
    """Reads a `RenderSpec` from a manifest file (or a render directory)."""
    path = Path(manifest)
    if path.is_dir():
        path = path / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"No render manifest at {path}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}).") from None
    return RenderSpec.from_json(data)


def read_frames(directory: str | os.PathLike, num_frames: int) -> list[np.ndarray]:
    """Reads a finished render's frames back, in order."""
    from PIL import Image

    frames = []
    for index in range(num_frames):
        with Image.open(frame_path(directory, index)) as image:
            frames.append(np.asarray(image.convert("RGB")))
    return frames


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
