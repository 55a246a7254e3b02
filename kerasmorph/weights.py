"""Finds Stable Diffusion weight files on disk, offline first.

This module knows about files and nothing about Keras models: it decides
*which file* each component should load, and explains clearly what is missing.

Search order for a file named e.g. `kcv_encoder.h5`:

1. `weights_dir` passed by the caller (e.g. `Explorer("sd1", weights_dir=...)`);
2. the directory in the `KERASMORPH_WEIGHTS` environment variable;
3. the Keras cache, where KerasCV's own downloads land:
   `$KERAS_HOME/datasets` (default `~/.keras/datasets`).

Only when a file is in none of them, and downloading is allowed, is it fetched
through `keras.utils.get_file` from KerasCV's origin with KerasCV's sha256 —
exactly what KerasCV itself would do. A `weights_dir` written by `kerasmorph
convert` (it holds a `kerasmorph.json`) is the only place searched: a file it
lacks is an error naming the file (`IncompleteConversionError`), never a stock
file from the cache or a download mixed into the converted model. A file
without an origin (`sd2-depth`'s: KerasCV never published depth weights) is
never downloaded: missing, it is an error naming it. A file found on disk is never
re-downloaded, even when its hash differs (a fine-tune or a converted
checkpoint legitimately has another hash).

Full-content sha256 hashes of weight files (`cached_sha256`) are computed
once and kept in a small JSON cache keyed by path, size and mtime
(`$KERASMORPH_CACHE_DIR`, default `~/.cache/kerasmorph`), so a render's
weights fingerprint reads gigabytes only the first time.

It also reads the two other kinds of weight files kerasmorph meets before any
model is built: the `kerasmorph.json` manifest of a folder written by
`kerasmorph.checkpoints.convert` (`is_converted_dir`, `read_manifest`), and
pickled PyTorch files (`load_torch_file`, importing torch only then).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from kerasmorph.errors import KerasmorphError

WEIGHTS_ENV = "KERASMORPH_WEIGHTS"
CACHE_ENV = "KERASMORPH_CACHE_DIR"
HASH_CACHE_NAME = "sha256.json"
OFFLINE_ENV = "KERASMORPH_OFFLINE"
# The file `kerasmorph.checkpoints.convert` writes into a converted folder.
MANIFEST_NAME = "kerasmorph.json"
# The presets a converted checkpoint (and its manifest) may name: `sd2-depth` is
# SD 2.x whose UNet takes 5 input channels (stable-diffusion-2-depth).
Family = Literal["sd1", "sd2", "sd2-depth"]
FAMILIES: tuple[Family, ...] = ("sd1", "sd2", "sd2-depth")
# Presets a folder's manifest may name: the converted families, and the
# shapes toys (a merge of their `.npz` folders).
MANIFEST_PRESETS: tuple[str, ...] = FAMILIES + ("shapes", "shapes-depth")


@dataclasses.dataclass(frozen=True)
class WeightFile:
    """One pretrained weight file that KerasCV knows how to download.

    Args:
        component: the KerasCV component it belongs to, e.g. `"text_encoder"`.
        filename: the file's name in KerasCV's cache, e.g. `"kcv_encoder.h5"`.
        sha256: the hash KerasCV checks after downloading ("" when none).
        origin: the URL KerasCV downloads it from; "" for a file no one
            publishes (`sd2-depth`'s: `kerasmorph convert` writes them),
            which is never downloaded.
    """

    component: str
    filename: str
    sha256: str
    origin: str

    @property
    def downloadable(self) -> bool:
        """Whether the file has an origin to download it from."""
        return bool(self.origin)


class MissingWeightsError(KerasmorphError, FileNotFoundError):
    """Raised when weight files are neither on disk nor downloadable.

    Attributes:
        missing: the `WeightFile`s that were not found.
        searched: the directories that were searched, in order.
    """

    def __init__(
        self,
        missing: Iterable[WeightFile],
        searched: Iterable[Path],
        reason: str,
    ):
        self.missing = tuple(missing)
        self.searched = tuple(searched)
        lines = [
            f"Missing Stable Diffusion weight files ({reason}).",
            "Put each file below in one of the searched directories:",
        ]
        for file in self.missing:
            if file.downloadable:
                lines.append(
                    f"  - {file.filename} ({file.component}): "
                    f"sha256 {file.sha256}\n      from {file.origin}"
                )
            else:
                lines.append(
                    f"  - {file.filename} ({file.component}): no download exists; "
                    "`kerasmorph convert CHECKPOINT --out DIR` writes it"
                )
        lines.append("Searched, in order:")
        lines.extend(f"  - {directory}" for directory in self.searched)
        lines.append(
            f"Pass weights_dir=..., set {WEIGHTS_ENV}=DIR, or use the offline "
            "preset 'tiny' (random weights) to try kerasmorph without them."
        )
        super().__init__("\n".join(lines))


class IncompleteConversionError(MissingWeightsError):
    """Raised when a converted folder (it has a `kerasmorph.json`) lacks a weight file.

    Its files are one model: a stock file found elsewhere (or downloaded)
    would mix another model in, so none is looked for. One line.

    Attributes:
        missing: the `WeightFile`s that were not found.
        searched: the converted folder, alone.
    """

    def __init__(self, directory: str | os.PathLike, missing: Iterable[WeightFile]):
        self.missing = tuple(missing)
        self.searched = (Path(directory),)
        names = ", ".join(f"{file.filename} ({file.component})" for file in self.missing)
        FileNotFoundError.__init__(
            self,
            f"{directory} was written by `kerasmorph convert` ({MANIFEST_NAME}) but has no "
            f"{names}; a converted model never takes stock files from elsewhere. Convert "
            f"again into it (`kerasmorph convert CHECKPOINT --out {directory} --overwrite`).",
        )


def keras_cache_dir() -> Path:
    """Returns the directory where `keras.utils.get_file` caches downloads."""
    keras_home = os.environ.get("KERAS_HOME")
    base = Path(keras_home) if keras_home else Path.home() / ".keras"
    return base / "datasets"


def search_dirs(weights_dir: str | os.PathLike | None = None) -> list[Path]:
    """Lists the directories searched for weight files, in priority order.

    Args:
        weights_dir: an optional directory given by the caller; searched first.
            A converted folder (`is_converted_dir`) is searched alone.

    Returns:
        A list of `Path`s without duplicates (they need not exist).
    """
    if weights_dir is not None and is_converted_dir(weights_dir):
        return [Path(weights_dir).expanduser()]
    candidates: list[Path] = []
    if weights_dir is not None:
        candidates.append(Path(weights_dir).expanduser())
    if os.environ.get(WEIGHTS_ENV):
        candidates.append(Path(os.environ[WEIGHTS_ENV]).expanduser())
    candidates.append(keras_cache_dir())
    unique: list[Path] = []
    for candidate in candidates:
        if candidate not in unique:
            unique.append(candidate)
    return unique


def find_weights(
    files: Mapping[str, WeightFile],
    weights_dir: str | os.PathLike | None = None,
) -> dict[str, Path | None]:
    """Looks for each weight file on disk without touching the network.

    Args:
        files: component name -> `WeightFile`.
        weights_dir: an optional directory searched before the defaults.

    Returns:
        component name -> the first existing path, or `None` when not found.

    Example:

    ```python
    from kerasmorph.presets import PRESETS
    found = kerasmorph.find_weights(PRESETS["sd1"].weight_files)
    ```
    """
    directories = search_dirs(weights_dir)
    found: dict[str, Path | None] = {}
    for component, file in files.items():
        found[component] = next(
            (
                directory / file.filename
                for directory in directories
                if (directory / file.filename).is_file()
            ),
            None,
        )
    return found


def is_offline() -> bool:
    """Tells whether downloads must not be attempted.

    Offline when `KERASMORPH_OFFLINE` or `HF_HUB_OFFLINE` is set to a true
    value, or when the weights host cannot be reached within 3 seconds.
    """
    for variable in (OFFLINE_ENV, "HF_HUB_OFFLINE"):
        if os.environ.get(variable, "").lower() in ("1", "true", "yes"):
            return True
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=3):
            return False
    except OSError:
        return True


def resolve_weights(
    files: Mapping[str, WeightFile],
    weights_dir: str | os.PathLike | None = None,
    download: bool | None = None,
) -> dict[str, Path]:
    """Returns a local path for every file, downloading only when allowed.

    Args:
        files: component name -> `WeightFile`.
        weights_dir: an optional directory searched first.
        download: `True` downloads missing files through KerasCV's origin,
            `False` never downloads, `None` (default) downloads only when
            online (see `is_offline`).

    Returns:
        component name -> path of the file to load.

    Raises:
        MissingWeightsError: listing every missing file, its sha256 and the
            searched directories, when a file is missing and may not be
            downloaded, or has no origin (`WeightFile.downloadable`: e.g.
            `sd2-depth`'s, which only `kerasmorph convert` writes). Raised
            before anything is downloaded or built.
        IncompleteConversionError: (a `MissingWeightsError`) when
            `weights_dir` is a converted folder that lacks a file: nothing
            is downloaded into a converted model, whatever `download` says.
    """
    found = find_weights(files, weights_dir)
    missing = [files[name] for name, path in found.items() if path is None]
    if not missing:
        return {name: path for name, path in found.items() if path is not None}
    if weights_dir is not None and is_converted_dir(weights_dir):
        raise IncompleteConversionError(weights_dir, missing)
    undownloadable = [file.filename for file in missing if not file.downloadable]
    if undownloadable:
        reason = (
            f"no download exists for {', '.join(undownloadable)}: convert a checkpoint "
            "with `kerasmorph convert` and pass its folder"
        )
    elif download is False:
        reason = "downloading is disabled"
    elif download is None and is_offline():
        reason = "offline, and nothing may be downloaded"
    else:
        reason = ""
    if reason:
        raise MissingWeightsError(missing, search_dirs(weights_dir), reason)
    from kerasmorph.backend import keras_module

    keras = keras_module()
    for file in missing:
        found[file.component] = Path(
            keras.utils.get_file(fname=file.filename, origin=file.origin, file_hash=file.sha256)
        )
    return {name: path for name, path in found.items() if path is not None}


def sha256_of(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Returns the hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_dir() -> Path:
    """kerasmorph's cache folder: `$KERASMORPH_CACHE_DIR`, else `$XDG_CACHE_HOME/kerasmorph`
    (default `~/.cache/kerasmorph`). It need not exist."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "kerasmorph"


def cached_sha256(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's full contents, cached by path, size and mtime.

    The first call for a file reads it all (about 1 s per GB); later calls
    look it up in `cache_dir() / "sha256.json"` while the file's size and
    mtime (ns) are unchanged. A cache that cannot be read or written (a
    read-only home) only costs the re-hash: it is never an error.

    Args:
        path: the file.

    Returns:
        The 64-character hex digest.
    """
    from kerasmorph.atomic import atomic_path

    path = Path(path).expanduser().resolve()
    stat = path.stat()
    key = str(path)
    cache_file = cache_dir() / HASH_CACHE_NAME
    cache = _read_hash_cache(cache_file)
    entry = cache.get(key)
    if (
        isinstance(entry, dict)
        and entry.get("size") == stat.st_size
        and entry.get("mtime_ns") == stat.st_mtime_ns
        and isinstance(entry.get("sha256"), str)
    ):
        return entry["sha256"]
    digest = sha256_of(path)
    # Re-read just before writing: another process may have added entries meanwhile.
    cache = _read_hash_cache(cache_file)
    cache[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    try:
        with atomic_path(cache_file) as temporary:
            temporary.write_text(json.dumps(cache, indent=1, sort_keys=True), encoding="utf-8")
    except OSError:
        pass  # A read-only cache: hash again next time.
    return digest


def _read_hash_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """Reads the `kerasmorph.json` that `kerasmorph.checkpoints.convert` wrote into `directory`.

    Args:
        directory: a folder written by `kerasmorph convert` (or by a merge of
            the shapes toys' `.npz` folders).

    Returns:
        A dict with at least `"preset"` (one of `MANIFEST_PRESETS`: `"sd1"`,
        `"sd2"`, `"sd2-depth"`, `"shapes"`, `"shapes-depth"`) and `"files"`.

    Raises:
        FileNotFoundError: when `directory` has no manifest.
        ValueError: when the manifest names no known preset.

    Example:

    ```python
    preset = kerasmorph.weights.read_manifest("sd15")["preset"]  # "sd1"
    ```
    """
    path = Path(directory).expanduser() / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{directory} has no {MANIFEST_NAME}; is it a folder written by "
            f"`kerasmorph convert`? Received: directory={str(directory)!r}"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("preset") not in MANIFEST_PRESETS:
        raise ValueError(
            f"{path} names no known preset ({', '.join(MANIFEST_PRESETS)}). "
            f"Received: preset={manifest.get('preset')!r}"
        )
    return manifest


def is_converted_dir(path: str | os.PathLike) -> bool:
    """True when `path` is a directory holding a `kerasmorph.json`."""
    candidate = Path(path).expanduser()
    return candidate.is_dir() and (candidate / MANIFEST_NAME).is_file()


def manifest_npz_files(directory: str | os.PathLike) -> dict[str, Path]:
    """The `.npz` weight files a folder's manifest lists (a merge of the `shapes` toys).

    Returns:
        Component -> path; empty when the folder is not a converted or
        merged folder, or lists no `.npz` file.
    """
    if not is_converted_dir(directory):
        return {}
    folder = Path(directory).expanduser()
    files = read_manifest(folder).get("files", {})
    return {name: folder / file for name, file in files.items() if str(file).endswith(".npz")}


def save_torch_file(path: str | os.PathLike, content: Mapping[str, Any]) -> Path:
    """Writes a mapping as a PyTorch file (`torch.save`), atomically; arrays become tensors.

    Nested mappings are converted too (A1111 embeddings nest `string_to_param`).

    Raises:
        ImportError: naming the `pip install` to run when torch is missing.
    """
    try:
        import torch
    except ImportError as error:
        from kerasmorph.installs import missing_dependency

        raise missing_dependency(f"Writing {path}", ["torch"], "torch") from error
    import numpy as np

    from kerasmorph.atomic import atomic_path

    def convert(value):
        if isinstance(value, np.ndarray):
            return torch.from_numpy(np.array(value))
        if isinstance(value, Mapping):
            return {key: convert(item) for key, item in value.items()}
        return value

    path = Path(path)
    with atomic_path(path, mode=0o644) as temporary:
        torch.save(convert(content), str(temporary))
    return path


def load_torch_file(path: str | os.PathLike) -> Mapping[str, Any]:
    """Reads a pickled PyTorch file (`.ckpt`, `.pt`, `.pth`, `.bin`) safely.

    `torch.load(weights_only=True)` unpickles tensors and plain containers
    only, never arbitrary objects, so a malicious file cannot run code. torch
    is imported here, on first use, not with kerasmorph.

    Args:
        path: the file to read.

    Returns:
        The file's top-level mapping (a state dict, or e.g. an A1111
        embedding's `{"string_to_param": ..., "name": ...}`), tensors as torch
        tensors on the CPU.

    Raises:
        ImportError: naming the `pip install` to run when torch is missing.
        ValueError: for a truncated file, a pickle with arbitrary objects, or
            a file whose top level is not a mapping.

    Example:

    ```python
    state = kerasmorph.weights.load_torch_file("v1-5-pruned-emaonly.ckpt")["state_dict"]
    ```
    """
    try:
        import torch
    except ImportError as error:
        from kerasmorph.installs import missing_dependency

        raise missing_dependency(f"Reading {path}", ["torch"], "torch") from error
    try:
        content = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # pickle and zip errors alike.
        raise ValueError(
            f"Could not read {path} with torch.load(weights_only=True) "
            "(truncated, or a pickle with arbitrary objects, which kerasmorph "
            f"refuses). Cause: {type(error).__name__}: {error}"
        ) from error
    if not isinstance(content, Mapping):
        raise ValueError(
            f"Expected a state dict (name -> tensor) in {path}. "
            f"Received: an object of type {type(content).__name__}"
        )
    return content
