"""Tensor sources: the tensors of one checkpoint, read one at a time.

A CompVis/A1111 single file (`.safetensors` through the `safetensors`
package, no torch needed; `.ckpt`/`.pt`/`.pth`/`.bin` through
`kerasmorph.weights.load_torch_file`) or a diffusers folder (`unet/`, `vae/`,
`text_encoder/`) opens as a `TensorSource`: names, shapes without reading
data, and float32 (or stored-dtype) numpy arrays on demand. So does a
kerasmorph `.npz` folder (`text_encoder.npz`, `diffusion_model.npz`: the
`shapes` toys, a `kerasmorph.shapes.train` run, or their merge), so the toys
merge and compare like Stable Diffusion checkpoints. `LazyTensors`
wraps one as the read-only `Mapping` that `kerasmorph.merging` iterates over.
"""

from __future__ import annotations

import abc
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from kerasmorph.constants import COMPONENTS
from kerasmorph.weights import load_torch_file

CheckpointFormat = Literal["compvis", "diffusers", "npz"]
_PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


class CheckpointError(ValueError):
    """Raised when a checkpoint cannot be read into KerasCV's components."""


class TensorSource(abc.ABC):
    """A read-only view of the tensors of one checkpoint, loaded one at a time.

    Attributes:
        path: the file or folder read.
        format: `"compvis"` (single file), `"diffusers"` (folder) or `"npz"`
            (a kerasmorph `.npz` folder); decides which name of a `TensorRef`
            is looked up.
    """

    format: CheckpointFormat = "compvis"

    def __init__(self, path: Path):
        self.path = path

    @abc.abstractmethod
    def keys(self) -> list[str]:
        """All tensor names, in the file's order."""

    @abc.abstractmethod
    def shape(self, key: str) -> tuple[int, ...]:
        """The shape of tensor `key`, without reading its data."""

    @abc.abstractmethod
    def get(self, key: str) -> np.ndarray:
        """Tensor `key` as a float32 numpy array."""

    def get_native(self, key: str) -> np.ndarray:
        """Tensor `key` in its stored dtype (bfloat16 widened to float32)."""
        return self.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self._key_set()

    def _key_set(self) -> set[str]:
        if not hasattr(self, "_keys_cache"):
            self._keys_cache = set(self.keys())
        return self._keys_cache

    def close(self) -> None:
        """Releases open file handles."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class SafetensorsSource(TensorSource):
    """Tensors of a `.safetensors` file, memory-mapped through `safe_open`.

    bfloat16 tensors, which numpy cannot represent, are widened to float32
    from their raw bytes.
    """

    def __init__(self, path: Path, prefix: str = ""):
        super().__init__(path)
        try:
            from safetensors import safe_open
        except ImportError as error:  # pragma: no cover - a declared dependency.
            from kerasmorph.installs import missing_dependency

            raise missing_dependency(f"Reading {path}", ["safetensors"]) from error
        try:
            self._file = safe_open(str(path), framework="numpy")
            self._names = list(self._file.keys())
        except Exception as error:  # safetensors raises its own error types.
            raise CheckpointError(
                f"Could not read {path} as safetensors (truncated or not a "
                f"safetensors file?). Cause: {type(error).__name__}: {error}"
            ) from error
        self._prefix = prefix
        self._header: dict[str, Any] | None = None

    def keys(self) -> list[str]:
        return [self._prefix + name for name in self._names]

    def _name(self, key: str) -> str:
        return key[len(self._prefix) :]

    def _metadata(self) -> dict[str, Any]:
        if self._header is None:
            with open(self.path, "rb") as handle:
                size = int.from_bytes(handle.read(8), "little")
                self._header = json.loads(handle.read(size))
                self._header["__data_start__"] = 8 + size
        return self._header

    def dtype(self, key: str) -> str:
        """The safetensors dtype string of tensor `key` (e.g. `"F16"`)."""
        return self._metadata()[self._name(key)]["dtype"]

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._metadata()[self._name(key)]["shape"])

    def get(self, key: str) -> np.ndarray:
        name = self._name(key)
        if self.dtype(key) == "BF16":
            entry = self._metadata()[name]
            start, end = entry["data_offsets"]
            raw = np.fromfile(
                self.path,
                dtype="<u2",
                count=(end - start) // 2,
                offset=self._metadata()["__data_start__"] + start,
            )
            widened = raw.astype(np.uint32) << 16
            return widened.view(np.float32).reshape(entry["shape"])
        return np.asarray(self._file.get_tensor(name), dtype=np.float32)

    def get_native(self, key: str) -> np.ndarray:
        if self.dtype(key) == "BF16":
            return self.get(key)
        return self._file.get_tensor(self._name(key))

    def close(self) -> None:
        self._file = None


class StateDictSource(TensorSource):
    """Tensors of a pickled PyTorch state dict, read with `weights_only=True`."""

    def __init__(self, path: Path, prefix: str = ""):
        super().__init__(path)
        try:
            state = load_torch_file(path)
        except ValueError as error:  # Truncated, unsafe, or not a mapping.
            raise CheckpointError(str(error)) from error
        if isinstance(state.get("state_dict"), Mapping):
            state = state["state_dict"]
        self._tensors = {
            prefix + name: value for name, value in state.items() if hasattr(value, "shape")
        }

    def keys(self) -> list[str]:
        return list(self._tensors)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._tensors[key].shape)

    def get(self, key: str) -> np.ndarray:
        import torch

        return self._tensors[key].detach().to(torch.float32).cpu().numpy()

    def get_native(self, key: str) -> np.ndarray:
        import torch

        tensor = self._tensors[key].detach().cpu()
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.to(torch.float32)
        return tensor.numpy()

    def close(self) -> None:
        self._tensors = {}


_PIPELINE_FILES = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.bin",
)


class DiffusersSource(TensorSource):
    """The `unet/`, `vae/` and `text_encoder/` weights of a diffusers folder.

    Keys are prefixed with the subfolder (`"unet/conv_in.weight"`); each
    subfolder's file is opened on first use.
    """

    format = "diffusers"
    _CANDIDATES = {
        "unet": _PIPELINE_FILES,
        "vae": _PIPELINE_FILES,
        "text_encoder": (
            "model.safetensors",
            "model.fp16.safetensors",
            "pytorch_model.bin",
            "pytorch_model.fp16.bin",
        ),
    }

    def __init__(self, path: Path):
        super().__init__(path)
        self._files: dict[str, Path] = {}
        for subfolder, names in self._CANDIDATES.items():
            found = next(
                (path / subfolder / name for name in names if (path / subfolder / name).is_file()),
                None,
            )
            if found is not None:
                self._files[subfolder] = found
        if not self._files:
            raise CheckpointError(
                f"{path} is not a diffusers folder: none of unet/, vae/, text_encoder/ "
                "holds diffusion_pytorch_model.safetensors/.bin or "
                f"model.safetensors/pytorch_model.bin. Received: checkpoint={str(path)!r}"
            )
        self._sources: dict[str, TensorSource] = {}

    def _source(self, subfolder: str) -> TensorSource:
        if subfolder not in self._sources:
            file = self._files[subfolder]
            self._sources[subfolder] = _open_file(file, prefix=f"{subfolder}/")
        return self._sources[subfolder]

    def subfolders(self) -> list[str]:
        """The subfolders that hold a weight file."""
        return list(self._files)

    def keys(self) -> list[str]:
        return [key for subfolder in self._files for key in self._source(subfolder).keys()]

    def _owner(self, key: str) -> TensorSource:
        subfolder = key.split("/", 1)[0]
        if subfolder not in self._files:
            raise KeyError(key)
        return self._source(subfolder)

    def __contains__(self, key: str) -> bool:
        subfolder = key.split("/", 1)[0]
        return subfolder in self._files and key in self._source(subfolder)

    def shape(self, key: str) -> tuple[int, ...]:
        return self._owner(key).shape(key)

    def get(self, key: str) -> np.ndarray:
        return self._owner(key).get(key)

    def get_native(self, key: str) -> np.ndarray:
        return self._owner(key).get_native(key)

    def close(self) -> None:
        for source in self._sources.values():
            source.close()
        self._sources = {}


class NpzFolderSource(TensorSource):
    """The `<component>.npz` files of a kerasmorph weights folder (the `shapes` toys).

    Keys are `"<component>/NNN"`, the weight's index in the model's `weights`
    order: `kerasmorph.shapes.model.load_weights` reads the files back in that
    order, and the variable paths stored beside the index are Keras'
    auto-numbered layer names, which differ between builds of one model.
    """

    format = "npz"

    def __init__(self, path: Path):
        super().__init__(path)
        self._files = {name: path / f"{name}.npz" for name in npz_components(path)}
        if not self._files:
            raise CheckpointError(
                f"{path} holds no kerasmorph weight file ({', '.join(_NPZ_FILES)}). "
                f"Received: checkpoint={str(path)!r}"
            )
        self._open: dict[str, Any] = {}
        self._stored: dict[str, tuple[str, str]] = {}  # key -> (component, key in its file)
        for component in self._files:
            for stored in sorted(self._npz(component).files):
                self._stored[f"{component}/{stored.split(':', 1)[0]}"] = (component, stored)

    def _npz(self, component: str):
        if component not in self._open:
            try:
                self._open[component] = np.load(self._files[component])
            except Exception as error:  # zipfile/pickle errors of a damaged file.
                raise CheckpointError(
                    f"Could not read {self._files[component]} as a kerasmorph .npz weight "
                    f"file (truncated?). Cause: {type(error).__name__}: {error}"
                ) from error
        return self._open[component]

    def subfolders(self) -> list[str]:
        """The components that have a weight file."""
        return list(self._files)

    def keys(self) -> list[str]:
        return list(self._stored)

    def _array(self, key: str) -> np.ndarray:
        component, stored = self._stored[key]
        return self._npz(component)[stored]

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._array(key).shape)

    def get(self, key: str) -> np.ndarray:
        return self._array(key).astype(np.float32)

    def get_native(self, key: str) -> np.ndarray:
        return self._array(key)

    def close(self) -> None:
        for file in self._open.values():
            file.close()
        self._open = {}


_NPZ_FILES = tuple(f"{component}.npz" for component in COMPONENTS)


def npz_components(folder: str | os.PathLike) -> list[str]:
    """The components with a `<component>.npz` file in `folder` (empty if none)."""
    folder = Path(folder)
    return [component for component in COMPONENTS if (folder / f"{component}.npz").is_file()]


def _open_file(path: Path, prefix: str = "") -> TensorSource:
    if path.suffix == ".safetensors":
        return SafetensorsSource(path, prefix)
    if path.suffix in _PICKLE_SUFFIXES:
        return StateDictSource(path, prefix)
    raise CheckpointError(
        "A checkpoint must be a .safetensors, .ckpt, .pt, .pth or .bin file, or a "
        f"diffusers folder. Received: checkpoint={str(path)!r}"
    )


def _existing(checkpoint: str | os.PathLike) -> Path:
    path = Path(checkpoint).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"No checkpoint at {path}. Received: checkpoint={str(checkpoint)!r}"
        )
    return path


def checkpoint_format(checkpoint: str | os.PathLike) -> CheckpointFormat:
    """Tells a single-file checkpoint from a diffusers folder, without reading it.

    Args:
        checkpoint: a `.safetensors`/`.ckpt` file or a diffusers folder.

    Returns:
        `"npz"` for a folder of kerasmorph `.npz` weight files, `"diffusers"`
        for another folder, `"compvis"` for a file (the value of
        `TensorSource.format` once opened).

    Raises:
        FileNotFoundError: when the path does not exist.
    """
    path = _existing(checkpoint)
    if not path.is_dir():
        return "compvis"
    return "npz" if npz_components(path) else "diffusers"


def open_checkpoint(checkpoint: str | os.PathLike) -> TensorSource:
    """Opens a single-file checkpoint or a diffusers folder for reading.

    Args:
        checkpoint: a `.safetensors`/`.ckpt`/`.pt`/`.bin` file, or a diffusers
            folder with `unet/`, `vae/` and `text_encoder/` subfolders.

    Returns:
        A `TensorSource`; use it as a context manager to release the file.

    Raises:
        FileNotFoundError: when the path does not exist.
        CheckpointError: for an unknown suffix or an unreadable file.
        ImportError: for a pickled file when torch is not installed.

    Example:

    ```python
    with kerasmorph.checkpoints.open_checkpoint("v1-5-pruned-emaonly.safetensors") as source:
        family = kerasmorph.checkpoints.detect_family(source)  # "sd1"
    ```
    """
    path = _existing(checkpoint)
    if path.is_dir():
        return NpzFolderSource(path) if npz_components(path) else DiffusersSource(path)
    return _open_file(path)


class LazyTensors(Mapping):
    """A checkpoint as a read-only `Mapping` name -> array, read on access.

    What `kerasmorph.merging` iterates over: each tensor is read from the
    (memory-mapped) file only when asked for, in its stored dtype, so a merge
    of files holds about one tensor per model at a time.

    Args:
        checkpoint: a `.safetensors`/`.ckpt` file or a diffusers folder.

    Example:

    ```python
    with kerasmorph.checkpoints.LazyTensors("model.safetensors") as tensors:
        print(len(tensors), next(iter(tensors)))
    ```
    """

    def __init__(self, checkpoint: str | os.PathLike):
        self.source = open_checkpoint(checkpoint)
        self._keys = self.source.keys()
        self._key_set = set(self._keys)

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._key_set:
            raise KeyError(key)
        return self.source.get_native(key)

    def __contains__(self, key) -> bool:
        return key in self._key_set

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def close(self) -> None:
        """Releases the file."""
        self.source.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
