"""Streaming writers: safetensors files, diffusers folders, legacy `.h5` files.

Each file is written through `kerasmorph.atomic.atomic_path`, so it appears
under its name only when complete; the safetensors writers hold one tensor
in memory at a time, never the model.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kerasmorph.atomic import atomic_path

_SAFETENSORS_DTYPES = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
}
# The file written into each merged subfolder: the name diffusers' and
# transformers' `from_pretrained` look for first.
DIFFUSERS_WEIGHT_FILES = {
    "unet": "diffusion_pytorch_model.safetensors",
    "vae": "diffusion_pytorch_model.safetensors",
    "text_encoder": "model.safetensors",
}


def save_legacy_h5(model, path: str | os.PathLike) -> Path:
    """Saves `model`'s weights in the legacy `.h5` layout KerasCV's files use.

    `model.load_weights(path)` reads it back by layer order, as it reads
    KerasCV's own downloads. The file is written next to `path` and renamed
    into place, so a crash never leaves a half-written file under the name.

    Args:
        model: a built Keras model.
        path: the `.h5` file to write.

    Returns:
        The path written.
    """
    import h5py

    from kerasmorph import kerascv_internals

    legacy_h5_format = kerascv_internals.legacy_h5_format()

    path = Path(path)
    with atomic_path(path) as temporary, h5py.File(temporary, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, model)
    return path


def _little_endian_bytes(name: str, array, dtype: str | None) -> tuple[str, tuple, bytes]:
    """`(safetensors dtype, shape, raw bytes)` of one tensor, cast to `dtype` if floating."""
    array = np.asarray(array)
    if dtype is not None and np.issubdtype(array.dtype, np.floating):
        array = array.astype(dtype)
    if array.dtype.name not in _SAFETENSORS_DTYPES:
        raise ValueError(f"Cannot store dtype {array.dtype} in safetensors. Received: {name}")
    raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    return _SAFETENSORS_DTYPES[array.dtype.name], array.shape, raw


def save_safetensors_stream(
    path: str | os.PathLike,
    tensors,
    *,
    dtype: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Writes `(name, array)` pairs to a `.safetensors` file one at a time.

    The data go to a temporary file as they come, the header is written
    once all shapes are known, then the two are joined, so memory holds one
    tensor, not the model (`safetensors.numpy.save_file` needs them all).

    Args:
        path: the output file.
        tensors: an iterable of `(name, array)`, e.g. `merging.iter_merge(...)`.
        dtype: cast floating-point tensors to this (e.g. `"float16"`).
        metadata: string metadata stored in the header.

    Returns:
        The path written.

    Raises:
        ValueError: for a tensor whose dtype safetensors cannot store.

    Example:

    ```python
    kerasmorph.checkpoints.save_safetensors_stream("merged.safetensors", merging.iter_merge(...))
    ```
    """
    path = Path(path)
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    with atomic_path(path) as temporary, tempfile.TemporaryFile(dir=path.parent) as data:
        for name, array in tensors:
            stored_dtype, shape, raw = _little_endian_bytes(name, array, dtype)
            header[name] = {
                "dtype": stored_dtype,
                "shape": list(shape),
                "data_offsets": [offset, offset + len(raw)],
            }
            data.write(raw)
            offset += len(raw)
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-len(encoded) % 8)
        with open(temporary, "wb") as out:
            out.write(len(encoded).to_bytes(8, "little"))
            out.write(encoded)
            data.seek(0)
            shutil.copyfileobj(data, out, 16 << 20)
    return path


def _subfolder_of(item: tuple[str, np.ndarray]) -> str:
    subfolder, separator, rest = item[0].partition("/")
    if not (separator and rest) or subfolder not in DIFFUSERS_WEIGHT_FILES:
        valid = ", ".join(f"{name}/" for name in DIFFUSERS_WEIGHT_FILES)
        raise ValueError(
            f"Tensor names must start with a subfolder: {valid}. Received: {item[0]!r}"
        )
    return subfolder


def save_diffusers_stream(
    out_dir: str | os.PathLike,
    tensors: Iterable[tuple[str, np.ndarray]],
    *,
    dtype: str | None = None,
) -> dict[str, Path]:
    """Writes `("unet/...", array)` pairs into the weight files of a diffusers folder.

    The subfolder prefix is stripped and each subfolder's tensors go through
    `save_safetensors_stream` into `out_dir/<subfolder>/` under the file name
    `from_pretrained` looks for (`DIFFUSERS_WEIGHT_FILES`), so memory holds
    one tensor at a time and each file appears whole or not at all. The
    header says `{"format": "pt"}`, as `save_pretrained`'s does (older
    transformers refuse a file without it). Configs are not written: a merge
    copies them from its target (`merge_checkpoints`).

    Args:
        out_dir: the folder (created if needed); existing weight files are
            replaced.
        tensors: `(name, array)` pairs named `"unet/..."`, `"vae/..."` or
            `"text_encoder/..."` (the names of `DiffusersSource`), each
            subfolder's tensors one after another, e.g. in a
            `DiffusersSource`'s order.
        dtype: cast floating-point tensors to this (e.g. `"float16"`);
            default: as they come.

    Returns:
        Subfolder -> the file written, in the order written.

    Raises:
        ValueError: for a name outside the three subfolders, or a
            subfolder whose tensors come in two separate runs (its file
            would be written twice).

    Example:

    ```python
    with kerasmorph.checkpoints.LazyTensors("sd15/") as model:
        kerasmorph.checkpoints.save_diffusers_stream("sd15-fp16/", model.items(), dtype="float16")
    ```
    """
    out = Path(out_dir).expanduser()
    written: dict[str, Path] = {}
    for subfolder, group in itertools.groupby(tensors, key=_subfolder_of):
        if subfolder in written:
            raise ValueError(
                f"The tensors of {subfolder}/ must come one after another, not in "
                f"two runs (its file would be written twice). Received: {subfolder}/ "
                f"again after {', '.join(written)}"
            )
        folder = out / subfolder
        folder.mkdir(parents=True, exist_ok=True)
        start = len(subfolder) + 1
        written[subfolder] = save_safetensors_stream(
            folder / DIFFUSERS_WEIGHT_FILES[subfolder],
            ((name[start:], array) for name, array in group),
            dtype=dtype,
            metadata={"format": "pt"},
        )
    return written


def save_npz_folder_stream(
    out_dir: str | os.PathLike,
    tensors: Iterable[tuple[str, np.ndarray]],
    *,
    dtype: str | None = None,
) -> dict[str, Path]:
    """Writes `("<component>/NNN", array)` pairs as a kerasmorph `.npz` weights folder.

    The layout `kerasmorph.shapes.model.save_weights` writes and
    `NpzFolderSource` reads: one `<component>.npz` per component, its arrays
    keyed by their index (the order `load_weights` assigns them in). Each
    file appears whole or not at all. Unlike the safetensors writers this
    holds one component's arrays at a time (the toys' are a few MB).

    Args:
        out_dir: the folder (created if needed).
        tensors: `(name, array)` pairs, each component's one after another.
        dtype: cast floating-point arrays to this; default: as they come.

    Returns:
        Component -> the file written, in the order written.

    Raises:
        ValueError: for a name without a component prefix, or a component
            whose arrays come in two separate runs.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for component, items in itertools.groupby(tensors, key=lambda item: item[0].split("/")[0]):
        if component in written or not component:
            raise ValueError(
                "Each component's tensors must come together, named '<component>/NNN'. "
                f"Received: a second run of {component!r}"
            )
        arrays = {}
        for name, array in items:
            array = np.asarray(array)
            if dtype is not None and np.issubdtype(array.dtype, np.floating):
                array = array.astype(dtype)
            arrays[name.split("/", 1)[1]] = array
        path = out_dir / f"{component}.npz"
        with atomic_path(path, mode=0o644) as temporary, open(temporary, "wb") as file:
            np.savez(file, **arrays)
        written[component] = path
    return written
