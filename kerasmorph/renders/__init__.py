"""Resumable renders: a directory of frames described by a manifest.

A render directory holds `manifest.json` — a `RenderSpec`, every parameter
that decides the frames — and `frame_00000.png`, … each written atomically
(temp file + rename) as soon as its batch is decoded. Running the same render
again skips the frames already on disk, so a killed render loses no finished
frame and the result is byte-identical to an uninterrupted run; a directory
whose manifest differs is refused with the differing fields named, unless
`overwrite=True`.

What decides a frame is in `spec`; locking, resuming and sharding in
`directory`.

| module | job |
|---|---|
| `spec` | what decides a frame: `RenderSpec`, fingerprints, manifests (`load_spec`) |
| `directory` | `render_to_directory`, frames, sharding; reading one back (`finished_frames`) |
"""

from __future__ import annotations

from kerasmorph.renders.directory import (
    FRAME_DIGITS,
    FRAME_PREFIX,
    WALK_BUILDERS,
    RenderReport,
    build_walk,
    finished_frames,
    frame_count,
    frame_is_complete,
    frame_path,
    iter_frame_files,
    read_frames,
    render_to_directory,
    shard_of_cluster,
    spec_scheduler,
)
from kerasmorph.renders.spec import (
    INFORMATIONAL_FIELDS,
    MANIFEST,
    RenderSpec,
    differing_fields,
    embedding_files,
    embedding_records,
    legacy_weights_fingerprint,
    load_spec,
    model_fields,
    resolved_precision,
    weights_fingerprint,
)

__all__ = [
    "FRAME_DIGITS",
    "FRAME_PREFIX",
    "INFORMATIONAL_FIELDS",
    "MANIFEST",
    "WALK_BUILDERS",
    "RenderReport",
    "RenderSpec",
    "build_walk",
    "differing_fields",
    "embedding_files",
    "embedding_records",
    "finished_frames",
    "frame_count",
    "frame_is_complete",
    "frame_path",
    "iter_frame_files",
    "legacy_weights_fingerprint",
    "load_spec",
    "model_fields",
    "read_frames",
    "render_to_directory",
    "resolved_precision",
    "shard_of_cluster",
    "spec_scheduler",
    "weights_fingerprint",
]
