"""Converts Stable Diffusion 1.x/2.x checkpoints into KerasCV's components.

Reads a CompVis/A1111 single file (`.safetensors` through the `safetensors`
package, no torch needed; `.ckpt`/`.pt` through `torch.load(weights_only=True)`)
or a diffusers folder (`unet/`, `vae/`, `text_encoder/`), detects the family
(sd1: 768-d text context, sd2: 1024-d) from the tensors, and fills KerasCV's
`TextEncoder(V2)`, `DiffusionModel(V2)`, `Decoder` and `ImageEncoder`.

Every Keras weight is mapped *by name*: the KerasCV layers are walked in their
forward order, each block is paired with its CompVis and diffusers name, and
each variable gets a `TensorRef` saying which tensor feeds it and how:

| layout | PyTorch | Keras |
|---|---|---|
| `"conv"` | (out, in, kh, kw) | transpose(2, 3, 1, 0) -> (kh, kw, in, out) |
| `"linear"` | (out, in) | transpose -> (in, out) |
| `"copy"` | norms, biases, embeddings | as they are |

Special cases: SD2's OpenCLIP `attn.in_proj_weight` (3D, D) is split by rows
into q, k, v; the 24th OpenCLIP layer is dropped (KerasCV's `TextEncoderV2`
stops at the penultimate layer, then applies the final LayerNorm); diffusers'
VAE attention Linear (out, in) feeds KerasCV's 1x1 convs; `position_ids`
buffers, EMA copies (`model_ema.*`) and the OpenCLIP text projection are never
read; every tensor is cast to float32. Each shape is checked before it is
assigned, and a missing or misfitting tensor raises `CheckpointError` naming it.

`convert(checkpoint, out_dir)` writes one legacy-`.h5` file per component under
the KerasCV file names that `kerasmorph.weights` looks for, plus a small
`kerasmorph.json` naming the preset, so both `Explorer("sd1", weights_dir=DIR)`
and `Explorer(DIR)` load the result.

For `kerasmorph.merging`, `LazyTensors` opens a file or folder as a lazy
name -> array mapping, and `merge_checkpoints` merges files into a file, or
diffusers folders into a diffusers folder, one tensor at a time.

References:
    huggingface/diffusers, `scripts/convert_diffusers_to_original_stable_diffusion.py`
    and `src/diffusers/loaders/single_file_utils.py` (the CompVis <-> diffusers names).
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import itertools
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from kerasmorph.merging import MergeReport

Family = Literal["sd1", "sd2"]
Layout = Literal["conv", "linear", "copy"]
FAMILIES: tuple[Family, ...] = ("sd1", "sd2")
COMPONENTS = ("text_encoder", "diffusion_model", "decoder", "image_encoder")
MANIFEST_NAME = "kerasmorph.json"

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_TEXT_PREFIXES = ("cond_stage_model.transformer.text_model.", "cond_stage_model.transformer.")
SD2_TEXT_PREFIX = "cond_stage_model.model."
# Subfolder of a diffusers pipeline holding each KerasCV component's weights.
DIFFUSERS_SUBFOLDERS = {
    "text_encoder": "text_encoder",
    "diffusion_model": "unet",
    "decoder": "vae",
    "image_encoder": "vae",
}
# Top-level key prefix of each component in a CompVis single file.
COMPVIS_PREFIXES = {
    "text_encoder": "cond_stage_model.",
    "diffusion_model": UNET_PREFIX,
    "decoder": VAE_PREFIX,
    "image_encoder": VAE_PREFIX,
}
_TORCH_HINT = (
    "Reading a pickled PyTorch file needs torch: `pip install torch` "
    "(or `pip install kerasmorph[reference]`)."
)


class CheckpointError(ValueError):
    """Raised when a checkpoint cannot be read into KerasCV's components."""


# --------------------------------------------------------------------- sources


class TensorSource(abc.ABC):
    """A read-only view of the tensors of one checkpoint, loaded one at a time.

    Attributes:
        path: the file or folder read.
        format: `"compvis"` (single file) or `"diffusers"` (folder); decides
            which name of a `TensorRef` is looked up.
    """

    format: str = "compvis"

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
            raise ImportError(
                "Reading .safetensors needs the safetensors package: `pip install safetensors`."
            ) from error
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
            import torch
        except ImportError as error:
            raise ImportError(f"Cannot read {path}. {_TORCH_HINT}") from error
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as error:  # pickle and zip errors alike.
            raise CheckpointError(
                f"Could not read {path} with torch.load(weights_only=True) "
                "(truncated, or a pickle with arbitrary objects, which kerasmorph "
                f"refuses). Cause: {type(error).__name__}: {error}"
            ) from error
        if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
            state = state["state_dict"]
        if not isinstance(state, Mapping):
            raise CheckpointError(
                f"Expected a state dict (name -> tensor) in {path}. "
                f"Received: an object of type {type(state).__name__}"
            )
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


class DiffusersSource(TensorSource):
    """The `unet/`, `vae/` and `text_encoder/` weights of a diffusers folder.

    Keys are prefixed with the subfolder (`"unet/conv_in.weight"`); each
    subfolder's file is opened on first use.
    """

    format = "diffusers"
    _CANDIDATES = {
        "unet": (
            "diffusion_pytorch_model.safetensors",
            "diffusion_pytorch_model.fp16.safetensors",
            "diffusion_pytorch_model.bin",
            "diffusion_pytorch_model.fp16.bin",
        ),
        "vae": (
            "diffusion_pytorch_model.safetensors",
            "diffusion_pytorch_model.fp16.safetensors",
            "diffusion_pytorch_model.bin",
            "diffusion_pytorch_model.fp16.bin",
        ),
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


def _open_file(path: Path, prefix: str = "") -> TensorSource:
    if path.suffix == ".safetensors":
        return SafetensorsSource(path, prefix)
    if path.suffix in (".ckpt", ".pt", ".pth", ".bin"):
        return StateDictSource(path, prefix)
    raise CheckpointError(
        "A checkpoint must be a .safetensors, .ckpt, .pt, .pth or .bin file, or a "
        f"diffusers folder. Received: checkpoint={str(path)!r}"
    )


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
    """
    path = Path(checkpoint).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"No checkpoint at {path}. Received: checkpoint={str(checkpoint)!r}"
        )
    if path.is_dir():
        return DiffusersSource(path)
    return _open_file(path)


# ------------------------------------------------------------------ detection

_SD_CONTEXT_DIMS = {768: "sd1", 1024: "sd2"}
_COMPVIS_CROSS_KEY = UNET_PREFIX + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
_DIFFUSERS_CROSS_KEY = "unet/down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"


def detect_family(source: TensorSource) -> Family:
    """Tells SD 1.x from SD 2.x by the tensors of a checkpoint.

    The UNet's cross-attention key projection takes the text context: 768
    wide for SD 1.x (CLIP ViT-L), 1024 for SD 2.x (OpenCLIP ViT-H). Without a
    UNet, the text encoder decides (`cond_stage_model.model.` is OpenCLIP).

    Raises:
        CheckpointError: for SDXL or other unsupported models.
    """
    keys = source._key_set() if source.format == "compvis" else None
    if source.format == "compvis":
        if any(key.startswith("conditioner.embedders.") for key in keys):
            raise CheckpointError(
                f"{source.path} looks like SDXL (conditioner.embedders.*); kerasmorph "
                "converts Stable Diffusion 1.x and 2.x only."
            )
        cross_key = _COMPVIS_CROSS_KEY
        text_hint = (
            "sd2"
            if any(k.startswith(SD2_TEXT_PREFIX) for k in keys)
            else "sd1"
            if any(k.startswith(SD1_TEXT_PREFIXES[1]) for k in keys)
            else None
        )
    else:
        cross_key = _DIFFUSERS_CROSS_KEY
        text_hint = None
        for width_key in (
            "text_encoder/text_model.embeddings.token_embedding.weight",
            "text_encoder/embeddings.token_embedding.weight",
        ):
            if width_key in source:
                text_hint = _SD_CONTEXT_DIMS.get(source.shape(width_key)[-1])
    if cross_key in source:
        width = source.shape(cross_key)[-1]
        if width not in _SD_CONTEXT_DIMS:
            raise CheckpointError(
                f"The UNet's cross-attention takes a {width}-wide text context "
                f"({cross_key}); kerasmorph converts SD 1.x (768) and SD 2.x (1024) only."
            )
        return _SD_CONTEXT_DIMS[width]
    if text_hint is not None:
        return text_hint
    raise CheckpointError(
        f"Could not tell SD 1.x from SD 2.x in {source.path}: it has no UNet "
        f"cross-attention tensor ({cross_key}) and no known text encoder. Pass "
        "family='sd1' or 'sd2' if it is one of them."
    )


# ---------------------------------------------------------------------- plans


@dataclasses.dataclass(frozen=True)
class TensorRef:
    """Where one Keras weight comes from.

    Attributes:
        compvis: candidate keys in a CompVis/A1111 single file (first found wins).
        diffusers: candidate keys in a diffusers folder, with the subfolder
            (`"unet/conv_in.weight"`); the first is also the weight's canonical
            name in `component_state_dict`.
        layout: `"conv"`, `"linear"` or `"copy"` (see the module docstring).
        rows: `(start, stop)` slice of the first axis of the CompVis tensor
            (OpenCLIP's fused q/k/v); diffusers files store them apart.
        linear_as_conv: accept a 2-D Linear weight for a 1x1 conv (VAE attention
            in diffusers files).
    """

    compvis: tuple[str, ...]
    diffusers: tuple[str, ...]
    layout: Layout
    rows: tuple[int, int] | None = None
    linear_as_conv: bool = False

    @property
    def name(self) -> str:
        """The canonical (diffusers) name of the weight."""
        return self.diffusers[0]


def _ref(compvis, diffusers, layout: Layout, **kwargs) -> TensorRef:
    compvis = (compvis,) if isinstance(compvis, str) else tuple(compvis)
    diffusers = (diffusers,) if isinstance(diffusers, str) else tuple(diffusers)
    return TensorRef(compvis, diffusers, layout, **kwargs)


def _names(prefixes: Sequence[str], name: str) -> tuple[str, ...]:
    return tuple(prefix + name for prefix in prefixes)


def _dense_refs(layer, compvis: Sequence[str], diffusers: Sequence[str], **kwargs):
    """(variable, ref) of a Dense layer from PyTorch `.weight`/`.bias`."""
    yield (
        layer.kernel,
        _ref(_names(compvis, ".weight"), _names(diffusers, ".weight"), "linear", **kwargs),
    )
    if layer.bias is not None:
        yield (
            layer.bias,
            _ref(_names(compvis, ".bias"), _names(diffusers, ".bias"), "copy", **kwargs),
        )


def _conv_refs(layer, compvis: Sequence[str], diffusers: Sequence[str], **kwargs):
    """(variable, ref) of a KerasCV PaddedConv2D (or a Conv2D)."""
    conv = getattr(layer, "conv2d", layer)
    yield (
        conv.kernel,
        _ref(_names(compvis, ".weight"), _names(diffusers, ".weight"), "conv", **kwargs),
    )
    yield conv.bias, _ref(_names(compvis, ".bias"), _names(diffusers, ".bias"), "copy")


def _norm_refs(layer, compvis: Sequence[str], diffusers: Sequence[str]):
    """(variable, ref) of a Group/LayerNormalization: weight -> gamma, bias -> beta."""
    yield layer.gamma, _ref(_names(compvis, ".weight"), _names(diffusers, ".weight"), "copy")
    yield layer.beta, _ref(_names(compvis, ".bias"), _names(diffusers, ".bias"), "copy")


def _as_tuple(value) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _join(prefixes, name: str) -> tuple[str, ...]:
    return tuple(f"{prefix}.{name}" for prefix in _as_tuple(prefixes))


def _text_encoder_plan(model, family: Family):
    """(variable, ref) of KerasCV's `TextEncoder`/`TextEncoderV2`."""
    from keras_cv.src.models.stable_diffusion import text_encoder as kcv

    layers = [layer for layer in model.layers if layer.weights]
    embedding, *blocks, final_norm = layers
    _expect(embedding, kcv.CLIPEmbedding, "text_encoder")
    # transformers 4 saves `text_model.*`, transformers 5 drops the prefix.
    hf = ("text_encoder/text_model.", "text_encoder/")
    if family == "sd1":
        compvis = SD1_TEXT_PREFIXES
        yield (
            embedding.token_embedding.embeddings,
            _ref(
                _names(compvis, "embeddings.token_embedding.weight"),
                _names(hf, "embeddings.token_embedding.weight"),
                "copy",
            ),
        )
        yield (
            embedding.position_embedding.embeddings,
            _ref(
                _names(compvis, "embeddings.position_embedding.weight"),
                _names(hf, "embeddings.position_embedding.weight"),
                "copy",
            ),
        )
    else:
        yield (
            embedding.token_embedding.embeddings,
            _ref(
                SD2_TEXT_PREFIX + "token_embedding.weight",
                _names(hf, "embeddings.token_embedding.weight"),
                "copy",
            ),
        )
        yield (
            embedding.position_embedding.embeddings,
            _ref(
                SD2_TEXT_PREFIX + "positional_embedding",
                _names(hf, "embeddings.position_embedding.weight"),
                "copy",
            ),
        )
    width = int(embedding.token_embedding.embeddings.shape[-1])
    for index, block in enumerate(blocks):
        _expect(block, kcv.CLIPEncoderLayer, "text_encoder")
        layer = _names(hf, f"encoder.layers.{index}")
        attn = block.clip_attn
        if family == "sd1":
            cv = _names(SD1_TEXT_PREFIXES, f"encoder.layers.{index}")
            yield from _norm_refs(
                block.layer_norm1, _join(cv, "layer_norm1"), _join(layer, "layer_norm1")
            )
            for part in ("q_proj", "k_proj", "v_proj", "out_proj"):
                yield from _dense_refs(
                    getattr(attn, part),
                    _join(cv, f"self_attn.{part}"),
                    _join(layer, f"self_attn.{part}"),
                )
            yield from _norm_refs(
                block.layer_norm2, _join(cv, "layer_norm2"), _join(layer, "layer_norm2")
            )
            yield from _dense_refs(block.fc1, _join(cv, "mlp.fc1"), _join(layer, "mlp.fc1"))
            yield from _dense_refs(block.fc2, _join(cv, "mlp.fc2"), _join(layer, "mlp.fc2"))
        else:
            cv = f"{SD2_TEXT_PREFIX}transformer.resblocks.{index}"
            yield from _norm_refs(block.layer_norm1, [f"{cv}.ln_1"], _join(layer, "layer_norm1"))
            for row, part in enumerate(("q_proj", "k_proj", "v_proj")):
                rows = (row * width, (row + 1) * width)
                dense = getattr(attn, part)
                yield (
                    dense.kernel,
                    _ref(
                        f"{cv}.attn.in_proj_weight",
                        _join(layer, f"self_attn.{part}.weight"),
                        "linear",
                        rows=rows,
                    ),
                )
                yield (
                    dense.bias,
                    _ref(
                        f"{cv}.attn.in_proj_bias",
                        _join(layer, f"self_attn.{part}.bias"),
                        "copy",
                        rows=rows,
                    ),
                )
            yield from _dense_refs(
                attn.out_proj, [f"{cv}.attn.out_proj"], _join(layer, "self_attn.out_proj")
            )
            yield from _norm_refs(block.layer_norm2, [f"{cv}.ln_2"], _join(layer, "layer_norm2"))
            yield from _dense_refs(block.fc1, [f"{cv}.mlp.c_fc"], _join(layer, "mlp.fc1"))
            yield from _dense_refs(block.fc2, [f"{cv}.mlp.c_proj"], _join(layer, "mlp.fc2"))
    final_cv = (
        _names(SD1_TEXT_PREFIXES, "final_layer_norm")
        if family == "sd1"
        else [SD2_TEXT_PREFIX + "ln_final"]
    )
    yield from _norm_refs(final_norm, final_cv, _names(hf, "final_layer_norm"))


def unet_blocks() -> list[tuple[str, str, str]]:
    """The UNet's blocks in forward order: (kind, CompVis name, diffusers name).

    Kinds: `"conv"`, `"downsample"`, `"upsample"`, `"resnet"`, `"transformer"`,
    `"norm"`. CompVis numbers `input_blocks` 0-11 (every third a
    downsampler) and `output_blocks` 0-11; diffusers groups them by level.
    """
    blocks = [("conv", "input_blocks.0.0", "conv_in")]
    for level in range(4):
        for index in range(2):
            number = 3 * level + index + 1
            blocks.append(
                ("resnet", f"input_blocks.{number}.0", f"down_blocks.{level}.resnets.{index}")
            )
            if level < 3:
                blocks.append(
                    (
                        "transformer",
                        f"input_blocks.{number}.1",
                        f"down_blocks.{level}.attentions.{index}",
                    )
                )
        if level < 3:
            blocks.append(
                (
                    "downsample",
                    f"input_blocks.{3 * level + 3}.0.op",
                    f"down_blocks.{level}.downsamplers.0.conv",
                )
            )
    blocks += [
        ("resnet", "middle_block.0", "mid_block.resnets.0"),
        ("transformer", "middle_block.1", "mid_block.attentions.0"),
        ("resnet", "middle_block.2", "mid_block.resnets.1"),
    ]
    for level in range(4):
        for index in range(3):
            number = 3 * level + index
            blocks.append(
                ("resnet", f"output_blocks.{number}.0", f"up_blocks.{level}.resnets.{index}")
            )
            if level > 0:
                blocks.append(
                    (
                        "transformer",
                        f"output_blocks.{number}.1",
                        f"up_blocks.{level}.attentions.{index}",
                    )
                )
        if level < 3:
            slot = 2 if level > 0 else 1
            blocks.append(
                (
                    "upsample",
                    f"output_blocks.{3 * level + 2}.{slot}.conv",
                    f"up_blocks.{level}.upsamplers.0.conv",
                )
            )
    blocks += [("norm", "out.0", "conv_norm_out"), ("conv", "out.2", "conv_out")]
    return blocks


def _unet_plan(model, family: Family):
    """(variable, ref) of KerasCV's `DiffusionModel`/`DiffusionModelV2`."""
    keras = _keras()
    from keras_cv.src.models.stable_diffusion import diffusion_model as kcv
    from keras_cv.src.models.stable_diffusion.padded_conv2d import PaddedConv2D

    cv, df = UNET_PREFIX, "unet/"
    chain = []
    for layer in model.layers:
        if not layer.weights:
            continue
        if isinstance(layer, keras.layers.Dense):
            # The two time-embedding Dense layers sit off the main chain, so
            # their place in `model.layers` is not fixed: tell them by width.
            first = int(layer.kernel.shape[0]) == 320
            name = (
                ("time_embed.0", "time_embedding.linear_1")
                if first
                else ("time_embed.2", "time_embedding.linear_2")
            )
            yield from _dense_refs(layer, [cv + name[0]], [df + name[1]])
        else:
            chain.append(layer)
    blocks = unet_blocks()
    if len(chain) != len(blocks):
        raise RuntimeError(
            f"KerasCV's DiffusionModel has {len(chain)} blocks with weights; "
            f"kerasmorph's CompVis map has {len(blocks)}. Is keras_cv 0.9 installed?"
        )
    classes = {
        "conv": PaddedConv2D,
        "downsample": PaddedConv2D,
        "upsample": kcv.Upsample,
        "resnet": kcv.ResBlock,
        "transformer": kcv.SpatialTransformer,
        "norm": keras.layers.GroupNormalization,
    }
    for layer, (kind, compvis, diffusers) in zip(chain, blocks):
        _expect(layer, classes[kind], "diffusion_model")
        c, d = cv + compvis, df + diffusers
        if kind in ("conv", "downsample"):
            yield from _conv_refs(layer, [c], [d])
        elif kind == "upsample":
            yield from _conv_refs(layer.conv, [c], [d])
        elif kind == "norm":
            yield from _norm_refs(layer, [c], [d])
        elif kind == "resnet":
            yield from _norm_refs(layer.entry_flow[0], [c + ".in_layers.0"], [d + ".norm1"])
            yield from _conv_refs(layer.entry_flow[2], [c + ".in_layers.2"], [d + ".conv1"])
            yield from _dense_refs(
                layer.embedding_flow[1], [c + ".emb_layers.1"], [d + ".time_emb_proj"]
            )
            yield from _norm_refs(layer.exit_flow[0], [c + ".out_layers.0"], [d + ".norm2"])
            yield from _conv_refs(layer.exit_flow[2], [c + ".out_layers.3"], [d + ".conv2"])
            if isinstance(layer.residual_projection, PaddedConv2D):
                yield from _conv_refs(
                    layer.residual_projection, [c + ".skip_connection"], [d + ".conv_shortcut"]
                )
        else:
            yield from _norm_refs(layer.norm, [c + ".norm"], [d + ".norm"])
            project = _dense_refs if isinstance(layer.proj1, keras.layers.Dense) else _conv_refs
            yield from project(layer.proj1, [c + ".proj_in"], [d + ".proj_in"])
            block = layer.transformer_block
            c_block, d_block = c + ".transformer_blocks.0", d + ".transformer_blocks.0"
            for index, attention in ((1, block.attn1), (2, block.attn2)):
                yield from _norm_refs(
                    getattr(block, f"norm{index}"),
                    [f"{c_block}.norm{index}"],
                    [f"{d_block}.norm{index}"],
                )
                for part in ("to_q", "to_k", "to_v"):
                    yield from _dense_refs(
                        getattr(attention, part),
                        [f"{c_block}.attn{index}.{part}"],
                        [f"{d_block}.attn{index}.{part}"],
                    )
                yield from _dense_refs(
                    attention.out_proj,
                    [f"{c_block}.attn{index}.to_out.0"],
                    [f"{d_block}.attn{index}.to_out.0"],
                )
            yield from _norm_refs(block.norm3, [c_block + ".norm3"], [d_block + ".norm3"])
            yield from _dense_refs(
                block.geglu.dense, [c_block + ".ff.net.0.proj"], [d_block + ".ff.net.0.proj"]
            )
            yield from _dense_refs(block.dense, [c_block + ".ff.net.2"], [d_block + ".ff.net.2"])
            project = _dense_refs if isinstance(layer.proj2, keras.layers.Dense) else _conv_refs
            yield from project(layer.proj2, [c + ".proj_out"], [d + ".proj_out"])


def _vae_block_refs(layer, kind: str, compvis: str, diffusers: str):
    c, d = VAE_PREFIX + compvis, "vae/" + diffusers
    if kind == "conv":
        yield from _conv_refs(layer, [c], [d])
    elif kind == "norm":
        yield from _norm_refs(layer, [c], [d])
    elif kind == "resnet":
        yield from _norm_refs(layer.norm1, [c + ".norm1"], [d + ".norm1"])
        yield from _conv_refs(layer.conv1, [c + ".conv1"], [d + ".conv1"])
        yield from _norm_refs(layer.norm2, [c + ".norm2"], [d + ".norm2"])
        yield from _conv_refs(layer.conv2, [c + ".conv2"], [d + ".conv2"])
        if hasattr(layer.residual_projection, "conv2d"):  # Else the identity.
            yield from _conv_refs(
                layer.residual_projection, [c + ".nin_shortcut"], [d + ".conv_shortcut"]
            )
    else:  # attention: CompVis 1x1 convs; diffusers Linear under new or old names.
        yield from _norm_refs(layer.norm, [c + ".norm"], [d + ".group_norm"])
        for keras_name, compvis_name, new, old in (
            ("q", "q", "to_q", "query"),
            ("k", "k", "to_k", "key"),
            ("v", "v", "to_v", "value"),
            ("proj_out", "proj_out", "to_out.0", "proj_attn"),
        ):
            yield from _conv_refs(
                getattr(layer, keras_name),
                [f"{c}.{compvis_name}"],
                [f"{d}.{new}", f"{d}.{old}"],
                linear_as_conv=True,
            )


def decoder_blocks() -> list[tuple[str, str, str]]:
    """The VAE decoder's blocks in KerasCV order: (kind, CompVis name, diffusers name).

    diffusers numbers `decoder.up_blocks.i` in reverse of CompVis `decoder.up.{3-i}`.
    """
    blocks = [
        ("conv", "post_quant_conv", "post_quant_conv"),
        ("conv", "decoder.conv_in", "decoder.conv_in"),
        ("resnet", "decoder.mid.block_1", "decoder.mid_block.resnets.0"),
        ("attention", "decoder.mid.attn_1", "decoder.mid_block.attentions.0"),
        ("resnet", "decoder.mid.block_2", "decoder.mid_block.resnets.1"),
    ]
    for level in range(4):
        for index in range(3):
            blocks.append(
                (
                    "resnet",
                    f"decoder.up.{3 - level}.block.{index}",
                    f"decoder.up_blocks.{level}.resnets.{index}",
                )
            )
        if level < 3:
            blocks.append(
                (
                    "conv",
                    f"decoder.up.{3 - level}.upsample.conv",
                    f"decoder.up_blocks.{level}.upsamplers.0.conv",
                )
            )
    blocks += [
        ("norm", "decoder.norm_out", "decoder.conv_norm_out"),
        ("conv", "decoder.conv_out", "decoder.conv_out"),
    ]
    return blocks


def image_encoder_blocks() -> list[tuple[str, str, str]]:
    """The VAE encoder's blocks in KerasCV order: (kind, CompVis name, diffusers name)."""
    blocks = [("conv", "encoder.conv_in", "encoder.conv_in")]
    for level in range(4):
        for index in range(2):
            blocks.append(
                (
                    "resnet",
                    f"encoder.down.{level}.block.{index}",
                    f"encoder.down_blocks.{level}.resnets.{index}",
                )
            )
        if level < 3:
            blocks.append(
                (
                    "conv",
                    f"encoder.down.{level}.downsample.conv",
                    f"encoder.down_blocks.{level}.downsamplers.0.conv",
                )
            )
    blocks += [
        ("resnet", "encoder.mid.block_1", "encoder.mid_block.resnets.0"),
        ("attention", "encoder.mid.attn_1", "encoder.mid_block.attentions.0"),
        ("resnet", "encoder.mid.block_2", "encoder.mid_block.resnets.1"),
        ("norm", "encoder.norm_out", "encoder.conv_norm_out"),
        ("conv", "encoder.conv_out", "encoder.conv_out"),
        ("conv", "quant_conv", "quant_conv"),
    ]
    return blocks


def _vae_plan(model, component: str):
    keras = _keras()
    from keras_cv.src.models.stable_diffusion.attention_block import AttentionBlock
    from keras_cv.src.models.stable_diffusion.padded_conv2d import PaddedConv2D
    from keras_cv.src.models.stable_diffusion.resnet_block import ResnetBlock

    blocks = decoder_blocks() if component == "decoder" else image_encoder_blocks()
    chain = [layer for layer in model.layers if layer.weights]
    if len(chain) != len(blocks):
        raise RuntimeError(
            f"KerasCV's {component} has {len(chain)} blocks with weights; "
            f"kerasmorph's CompVis map has {len(blocks)}. Is keras_cv 0.9 installed?"
        )
    classes = {
        "conv": PaddedConv2D,
        "resnet": ResnetBlock,
        "attention": AttentionBlock,
        "norm": keras.layers.GroupNormalization,
    }
    for layer, (kind, compvis, diffusers) in zip(chain, blocks):
        _expect(layer, classes[kind], component)
        yield from _vae_block_refs(layer, kind, compvis, diffusers)


def _expect(layer, cls, component: str) -> None:
    if not isinstance(layer, cls):
        raise RuntimeError(
            f"Unexpected layer {layer.name} ({type(layer).__name__}) in KerasCV's "
            f"{component}; expected {cls.__name__}. Is keras_cv 0.9 installed?"
        )


def _keras():
    from kerasmorph.backend import keras_module

    return keras_module()


def model_family(model, component: str) -> Family:
    """Tells whether a KerasCV component is the SD 1.x or SD 2.x variant.

    The VAE is shared, so the decoder and image encoder report `"sd1"`.
    """
    if component == "text_encoder":
        width = int(model.output.shape[-1])
    elif component == "diffusion_model":
        width = int(model.inputs[-1].shape[-1])
    else:
        return "sd1"
    if width not in _SD_CONTEXT_DIMS:
        raise ValueError(
            f"Expected a KerasCV {component} with a 768- or 1024-wide text context. "
            f"Received: width={width} ({type(model).__name__})"
        )
    return _SD_CONTEXT_DIMS[width]


def weight_plan(model, component: str, family: Family | None = None) -> list[tuple[Any, TensorRef]]:
    """Pairs every weight of a KerasCV component with the tensor that feeds it.

    Args:
        model: a built KerasCV `TextEncoder(V2)`, `DiffusionModel(V2)`,
            `Decoder` or `ImageEncoder`.
        component: one of `COMPONENTS`.
        family: `"sd1"` or `"sd2"`; default: read from the model.

    Returns:
        A list of `(variable, TensorRef)` covering each variable of `model`
        exactly once, in `model.weights` order.

    Raises:
        ValueError: for an unknown component.
        RuntimeError: when the model's layout is not KerasCV 0.9's.
    """
    _check_component(component)
    family = family or model_family(model, component)
    if component == "text_encoder":
        pairs = list(_text_encoder_plan(model, family))
    elif component == "diffusion_model":
        pairs = list(_unet_plan(model, family))
    else:
        pairs = list(_vae_plan(model, component))
    by_id = {id(variable): (variable, ref) for variable, ref in pairs}
    if (
        len(by_id) != len(pairs)
        or len(pairs) != len(model.weights)
        or any(id(variable) not in by_id for variable in model.weights)
    ):
        raise RuntimeError(
            f"kerasmorph's map covers {len(by_id)} of the {len(model.weights)} "
            f"weights of KerasCV's {component}. Is keras_cv 0.9 installed?"
        )
    return [by_id[id(variable)] for variable in model.weights]


def _check_component(component: str) -> None:
    if component not in COMPONENTS:
        valid = ", ".join(repr(c) for c in COMPONENTS)
        raise ValueError(f"`component` must be one of {valid}. Received: component={component!r}")


# ------------------------------------------------------------------- loading


def _to_keras(
    array: np.ndarray, ref: TensorRef, target_shape: tuple[int, ...], rows: tuple[int, int] | None
) -> np.ndarray:
    if rows is not None:
        array = array[rows[0] : rows[1]]
    if ref.layout == "conv":
        if array.ndim == 2 and ref.linear_as_conv and target_shape[:2] == (1, 1):
            array = array[:, :, None, None]
        if array.ndim == 4:
            array = array.transpose(2, 3, 1, 0)
    elif ref.layout == "linear" and array.ndim == 2:
        array = array.T
    return np.ascontiguousarray(array, dtype=np.float32)


def _expected_source_shape(ref: TensorRef, target_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The PyTorch shape that becomes a Keras variable of `target_shape`."""
    if ref.layout == "conv" and len(target_shape) == 4:
        height, width, inputs, outputs = target_shape
        return (outputs, inputs, height, width)
    if ref.layout == "linear" and len(target_shape) == 2:
        return tuple(reversed(target_shape))
    return tuple(target_shape)


def _fits(shape: tuple[int, ...], ref: TensorRef, target: tuple[int, ...]) -> bool:
    expected = _expected_source_shape(ref, target)
    if shape == expected:
        return True
    # diffusers stores the VAE attention's 1x1 convs as Linear (out, in).
    return ref.linear_as_conv and target[:2] == (1, 1) and shape == expected[:2]


def _find_key(source: TensorSource, ref: TensorRef) -> str | None:
    candidates = ref.diffusers if source.format == "diffusers" else ref.compvis
    return next((key for key in candidates if key in source), None)


def load_component(
    model,
    component: str,
    source: TensorSource,
    family: Family | None = None,
) -> None:
    """Loads one component's weights from an open checkpoint into `model`.

    Args:
        model: the built KerasCV component (random or not).
        component: one of `COMPONENTS`.
        source: an open checkpoint (`open_checkpoint`).
        family: `"sd1"`/`"sd2"`; default: `detect_family(source)`.

    Raises:
        CheckpointError: naming the first tensor that is missing or whose
            shape does not fit, before anything is assigned.
    """
    family = family or detect_family(source)
    plan = weight_plan(model, component, family)
    found = []
    for variable, ref in plan:
        key = _find_key(source, ref)
        candidates = ref.diffusers if source.format == "diffusers" else ref.compvis
        if key is None:
            raise CheckpointError(
                f"{source.path} has no tensor {candidates[0]!r}, needed by the "
                f"{family} {component} ({type(model).__name__}). The file is "
                "incomplete (a truncated download?) or holds another model."
            )
        shape = tuple(source.shape(key))
        rows = ref.rows if source.format == "compvis" else None
        if rows is not None and shape and shape[0] == 3 * (rows[1] - rows[0]):
            shape = (rows[1] - rows[0],) + shape[1:]
        target = tuple(variable.shape)
        if not _fits(shape, ref, target):
            raise CheckpointError(
                f"Tensor {key!r}{' rows %d:%d' % rows if rows else ''} of "
                f"{source.path} has shape {shape}, but the {family} {component} "
                f"({type(model).__name__}) expects {_expected_source_shape(ref, target)} "
                "there. Is the file an "
                f"SD {'1.x' if family == 'sd1' else '2.x'} checkpoint? "
                f"Received: shape={shape}"
            )
        found.append((variable, ref, key, rows))
    for variable, ref, key, rows in found:
        variable.assign(_to_keras(source.get(key), ref, tuple(variable.shape), rows))


# ------------------------------------------------------------------ converting


@dataclasses.dataclass(frozen=True)
class ConversionResult:
    """What `convert` wrote.

    Attributes:
        preset: `"sd1"` or `"sd2"`, the preset that loads the files.
        directory: the output directory.
        files: component -> path of the written `.h5` file.
    """

    preset: Family
    directory: Path
    files: dict[str, Path]


def convert(
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    family: Family | None = None,
    components: Sequence[str] = COMPONENTS,
    overwrite: bool = False,
) -> ConversionResult:
    """Converts a checkpoint into KerasCV weight files in `out_dir`.

    Each component is built (random), filled from the checkpoint, saved in
    KerasCV's legacy `.h5` layout under the file name its preset looks for
    (e.g. `kcv_diffusion_model.h5` for sd1, `diffusion_model_v2_1.h5` for sd2),
    and freed before the next is built, so peak memory is about one component
    (the UNet: ~3.4 GB) plus the memory-mapped checkpoint. A `kerasmorph.json`
    records the preset, so `Explorer(out_dir)` works as well as
    `Explorer(preset, weights_dir=out_dir)`.

    Args:
        checkpoint: a CompVis/A1111 `.safetensors`/`.ckpt` file or a
            diffusers folder.
        out_dir: the directory to write (created if needed).
        family: force `"sd1"` or `"sd2"`; default: detected from the tensors.
        components: which components to convert (default: all four). A
            component whose tensors are absent from a diffusers folder (e.g.
            no `vae/`) raises.
        overwrite: replace existing files.

    Returns:
        A `ConversionResult`.

    Raises:
        CheckpointError: for a missing or misfitting tensor (named), an
            unknown family or an unreadable file.
        FileExistsError: when an output file exists and `overwrite` is False.
        ImportError: for a `.ckpt` when torch is not installed.

    Example:

    ```python
    kerasmorph.checkpoints.convert("v1-5-pruned-emaonly.safetensors", "sd15")
    explorer = kerasmorph.Explorer("sd15")  # or Explorer("sd1", weights_dir="sd15")
    ```
    """
    from kerasmorph import presets as presets_lib

    if family is not None and family not in FAMILIES:
        raise ValueError(f"`family` must be 'sd1' or 'sd2'. Received: family={family!r}")
    for component in components:
        _check_component(component)
    out = Path(out_dir).expanduser()
    with open_checkpoint(checkpoint) as source:
        family = family or detect_family(source)
        preset = presets_lib.get_preset(family)
        files = {c: out / preset.weight_files[c].filename for c in components}
        existing = [str(path) for path in files.values() if path.exists()]
        if existing and not overwrite:
            raise FileExistsError(
                f"Not overwriting {', '.join(existing)}; pass overwrite=True "
                f"(--overwrite). Received: out_dir={str(out_dir)!r}"
            )
        out.mkdir(parents=True, exist_ok=True)
        for component in components:
            model = presets_lib.build_component(preset, component, 128, 128)
            load_component(model, component, source, family)
            save_legacy_h5(model, files[component])
            del model
    manifest_path = out / MANIFEST_NAME
    previous = read_manifest(out) if manifest_path.is_file() else {}
    manifest = {
        "format": 1,
        "preset": family,
        "source": str(Path(checkpoint).expanduser().resolve()),
        "files": {**previous.get("files", {}), **{c: p.name for c, p in files.items()}},
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return ConversionResult(family, out, files)


def save_legacy_h5(model, path: str | os.PathLike) -> Path:
    """Saves `model`'s weights in the legacy `.h5` layout KerasCV's files use.

    `model.load_weights(path)` reads it back by layer order, as it reads
    KerasCV's own downloads. The file is written next to `path` and renamed
    into place, so a crash never leaves a half-written file under the name.
    """
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    with h5py.File(partial, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, model)
    os.replace(partial, path)
    return path


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """Reads the `kerasmorph.json` that `convert` wrote into `directory`.

    Returns:
        A dict with at least `"preset"` (`"sd1"`/`"sd2"`) and `"files"`.

    Raises:
        FileNotFoundError: when `directory` has no manifest.
        ValueError: when the manifest names no known preset.
    """
    path = Path(directory).expanduser() / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{directory} has no {MANIFEST_NAME}; is it a folder written by "
            f"`kerasmorph convert`? Received: directory={str(directory)!r}"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("preset") not in FAMILIES:
        raise ValueError(
            f"{path} names no known preset (sd1, sd2). Received: preset={manifest.get('preset')!r}"
        )
    return manifest


def is_converted_dir(path: str | os.PathLike) -> bool:
    """True when `path` is a directory holding a `kerasmorph.json`."""
    candidate = Path(path).expanduser()
    return candidate.is_dir() and (candidate / MANIFEST_NAME).is_file()


# -------------------------------------------------- state dicts of Keras models


def component_state_dict(model, component: str) -> dict[str, np.ndarray]:
    """Returns `{canonical name: array}` of a KerasCV component's weights.

    Names are the diffusers names with their subfolder
    (`"unet/down_blocks.0.resnets.0.conv1.weight"`), stable across builds
    (unlike Keras' auto-numbered `variable.path`), so two models' dicts line
    up for `kerasmorph.merging`. Arrays keep Keras' layout.
    """
    return {
        ref.name: np.asarray(variable.numpy()) for variable, ref in weight_plan(model, component)
    }


def assign_state_dict(model, component: str, state: Mapping[str, np.ndarray]) -> None:
    """Writes `{canonical name: array}` (from `component_state_dict`) into `model`.

    Raises:
        ValueError: naming the first missing name or misfitting shape,
            before anything is assigned.
    """
    plan = weight_plan(model, component)
    for variable, ref in plan:
        if ref.name not in state:
            raise ValueError(
                f"The state dict has no {ref.name!r} for the {component}. "
                f"Received: {len(state)} tensors"
            )
        if tuple(np.shape(state[ref.name])) != tuple(variable.shape):
            raise ValueError(
                f"{ref.name!r} must have shape {tuple(variable.shape)}. "
                f"Received: shape={tuple(np.shape(state[ref.name]))}"
            )
    for variable, ref in plan:
        variable.assign(np.asarray(state[ref.name], dtype=variable.dtype))


def compvis_state_dict(models: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Exports KerasCV components as a CompVis/A1111 single-file state dict.

    The inverse of `load_component`: Keras kernels go back to PyTorch layouts
    (HWIO -> OIHW, (in, out) -> (out, in)) under their CompVis names, and
    SD2's q/k/v are fused into OpenCLIP's `in_proj_weight`. Save the result
    with `safetensors.numpy.save_file` to get a file A1111 and diffusers'
    `from_single_file` read (KerasCV's `TextEncoderV2` has 23 of OpenCLIP's
    24 layers, so an SD2 export lacks the last one, which SD2 never uses).

    Args:
        models: component name -> built KerasCV component.

    Returns:
        `{CompVis key: float32 array}`.
    """
    state: dict[str, np.ndarray] = {}
    fused: dict[str, dict[int, np.ndarray]] = {}
    for component, model in models.items():
        for variable, ref in weight_plan(model, component):
            array = np.asarray(variable.numpy(), dtype=np.float32)
            if ref.layout == "conv" and array.ndim == 4:
                array = array.transpose(3, 2, 0, 1)
            elif ref.layout == "linear" and array.ndim == 2:
                array = array.T
            key = ref.compvis[0]
            if ref.rows is not None:
                fused.setdefault(key, {})[ref.rows[0]] = array
            else:
                state[key] = np.ascontiguousarray(array)
    for key, parts in fused.items():
        # C order: safetensors writes an array's memory as it is laid out.
        state[key] = np.ascontiguousarray(np.concatenate([parts[start] for start in sorted(parts)]))
    return state


# ---------------------------------------------------- files for merging


class LazyTensors(Mapping):
    """A checkpoint as a read-only `Mapping` name -> array, read on access.

    What `kerasmorph.merging` iterates over: each tensor is read from the
    (memory-mapped) file only when asked for, in its stored dtype, so a merge
    of files holds about one tensor per model at a time.

    Args:
        checkpoint: a `.safetensors`/`.ckpt` file or a diffusers folder.
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
    """
    import tempfile

    path = Path(path)
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    with tempfile.TemporaryFile(dir=path.parent) as data:
        for name, array in tensors:
            array = np.asarray(array)
            if dtype is not None and np.issubdtype(array.dtype, np.floating):
                array = array.astype(dtype)
            if array.dtype.name not in _SAFETENSORS_DTYPES:
                raise ValueError(
                    f"Cannot store dtype {array.dtype} in safetensors. Received: {name}"
                )
            raw = (
                np.ascontiguousarray(array)
                .astype(array.dtype.newbyteorder("<"), copy=False)
                .tobytes()
            )
            header[name] = {
                "dtype": _SAFETENSORS_DTYPES[array.dtype.name],
                "shape": list(array.shape),
                "data_offsets": [offset, offset + len(raw)],
            }
            data.write(raw)
            offset += len(raw)
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-len(encoded) % 8)
        partial = path.with_name(path.name + ".partial")
        with open(partial, "wb") as out:
            out.write(len(encoded).to_bytes(8, "little"))
            out.write(encoded)
            data.seek(0)
            shutil.copyfileobj(data, out, 16 << 20)
    os.replace(partial, path)
    return path


# ---------------------------------------------- merging files and folders

CheckpointFormat = Literal["compvis", "diffusers"]
_FORMAT_NAMES = {"compvis": "a single file", "diffusers": "a diffusers folder"}
# The file written into each merged subfolder: the name diffusers' and
# transformers' `from_pretrained` look for first.
DIFFUSERS_WEIGHT_FILES = {
    "unet": "diffusion_pytorch_model.safetensors",
    "vae": "diffusion_pytorch_model.safetensors",
    "text_encoder": "model.safetensors",
}
# Weight files are never copied from a merged subfolder (a stale `.bin` or
# `.fp16.safetensors` next to the merged file would contradict it) nor from
# a folder's top level (some Hub repositories keep a 4 GB single file there).
_WEIGHT_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".ckpt",
    ".pt",
    ".pth",
    ".msgpack",
    ".h5",
    ".pb",
    ".onnx",
    ".onnx_data",
    ".gguf",
)


def checkpoint_format(checkpoint: str | os.PathLike) -> CheckpointFormat:
    """Tells a single-file checkpoint from a diffusers folder, without reading it.

    Args:
        checkpoint: a `.safetensors`/`.ckpt` file or a diffusers folder.

    Returns:
        `"diffusers"` for a folder, `"compvis"` for a file (the value of
        `TensorSource.format` once opened).

    Raises:
        FileNotFoundError: when the path does not exist.
    """
    path = Path(checkpoint).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"No checkpoint at {path}. Received: checkpoint={str(checkpoint)!r}"
        )
    return "diffusers" if path.is_dir() else "compvis"


def check_same_format(checkpoints: Mapping[str, str | os.PathLike]) -> CheckpointFormat:
    """Checks that checkpoints merged or compared together share one format.

    Merges and similarities pair tensors by name, and the two formats name
    the same weight differently (`model.diffusion_model.input_blocks.0.0.weight`
    is `unet/conv_in.weight`); some do not even pair one to one (SD2's fused
    q/k/v, the VAE attention's 1x1 convs stored as Linears). kerasmorph pairs
    them only through the KerasCV weight plan, which needs the models built,
    so a mix is refused instead of silently keeping one side of every tensor.

    Args:
        checkpoints: a label for the error message (`"target"`, `"--base"`)
            -> the path.

    Returns:
        The common format, `"compvis"` or `"diffusers"`.

    Raises:
        FileNotFoundError: when a path does not exist.
        CheckpointError: when the formats differ, naming each input's.
        ValueError: for an empty `checkpoints`.

    Example:

    ```python
    kerasmorph.checkpoints.check_same_format({"a": "sd15/", "b": "dreamy/"})  # "diffusers"
    ```
    """
    if not checkpoints:
        raise ValueError("`checkpoints` must name at least one checkpoint. Received: {}")
    formats = {label: checkpoint_format(path) for label, path in checkpoints.items()}
    if len(set(formats.values())) > 1:
        received = ", ".join(
            f"{label}={str(checkpoints[label])!r} ({_FORMAT_NAMES[value]})"
            for label, value in formats.items()
        )
        raise CheckpointError(
            "Checkpoints merged or compared together must share one format: all "
            "single files (CompVis/A1111 .safetensors/.ckpt) or all diffusers folders "
            "(unet/, vae/, text_encoder/). The two name their tensors differently, and "
            "kerasmorph pairs the names only by building the KerasCV models. Convert "
            "the odd ones out first (a single file becomes a folder with diffusers' "
            "`StableDiffusionPipeline.from_single_file(FILE).save_pretrained(DIR)`). "
            f"Received: {received}"
        )
    return next(iter(formats.values()))


class _PrefixView(Mapping):
    """The tensors of `tensors` whose names start with `prefix`: one subfolder."""

    def __init__(self, tensors: Mapping[str, np.ndarray], prefix: str):
        self._tensors = tensors
        self._names = [name for name in tensors if name.startswith(prefix)]
        self._name_set = set(self._names)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._name_set:
            raise KeyError(name)
        return self._tensors[name]

    def __contains__(self, name) -> bool:
        return name in self._name_set

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


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

    def subfolder_of(item: tuple[str, np.ndarray]) -> str:
        subfolder, separator, rest = item[0].partition("/")
        if not (separator and rest) or subfolder not in DIFFUSERS_WEIGHT_FILES:
            valid = ", ".join(f"{name}/" for name in DIFFUSERS_WEIGHT_FILES)
            raise ValueError(
                f"Tensor names must start with a subfolder: {valid}. Received: {item[0]!r}"
            )
        return subfolder

    for subfolder, group in itertools.groupby(tensors, key=subfolder_of):
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


def _iter_folder_merge(
    target, terms, target_coef, take, report
) -> Iterator[tuple[str, np.ndarray]]:
    """The merged tensors of diffusers folders, one subfolder after another."""
    from kerasmorph import merging

    subfolders = target.source.subfolders()
    subfolders += [component for component in take if component not in subfolders]
    for subfolder in subfolders:
        prefix = subfolder + "/"
        if subfolder in take:
            # The component under its own names, not the target's: a VAE
            # saved by an older diffusers names its attention `query`, a newer
            # one `to_q`, and both load; its config comes along too.
            source = take[subfolder]
            for name in source:
                if name.startswith(prefix):
                    report.taken.append((name, subfolder))
                    yield name, source[name]
        else:
            yield from merging.iter_merge(
                _PrefixView(target, prefix), terms, target_coef, report=report
            )


def _copy_pipeline_files(target: Path, out: Path, merged: Mapping[str, Path]) -> list[str]:
    """Copies from the target folder what a merge does not compute.

    Args:
        target: the target diffusers folder.
        out: the output folder.
        merged: each subfolder the merge wrote -> the folder whose
            subfolder config goes with it (the target's or a `take` model's).

    Returns:
        The subfolders with weights copied unmerged (`safety_checker`).
    """
    unmerged = []
    for entry in sorted(target.iterdir()):
        if entry.name.startswith("."):  # A Hub download's .cache/, .gitattributes.
            continue
        if entry.is_file():
            if not entry.name.endswith(_WEIGHT_SUFFIXES):  # model_index.json.
                shutil.copy2(entry, out / entry.name)
        elif entry.is_dir() and entry.name not in merged:
            # scheduler/, tokenizer/, and components kerasmorph does not merge:
            # as they are, so the pipeline's model_index.json still holds.
            copied = out / entry.name
            shutil.copytree(entry, copied, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))
            if any(path.name.endswith(_WEIGHT_SUFFIXES) for path in copied.rglob("*")):
                unmerged.append(entry.name)
    for subfolder, source in merged.items():
        for entry in sorted((source / subfolder).iterdir()):
            # `*.index.json` lists the shards of a weight file not written here.
            if (
                entry.is_file()
                and not entry.name.startswith(".")
                and not entry.name.endswith(_WEIGHT_SUFFIXES + (".index.json",))
            ):
                shutil.copy2(entry, out / subfolder / entry.name)
    return unmerged


def _check_merge_out(out: Path, file_format: CheckpointFormat, inputs: Iterable[Path]) -> None:
    if file_format == "compvis":
        if out.suffix != ".safetensors" or out.is_dir():
            raise ValueError(
                "Single files merge into a .safetensors file: `out` must end in "
                f".safetensors. Received: out={str(out)!r}"
            )
        return
    if out.suffix in _WEIGHT_SUFFIXES or out.is_file():
        raise ValueError(
            "diffusers folders merge into a diffusers folder: `out` must be a "
            f"directory, not a file. Received: out={str(out)!r}"
        )
    resolved = out.resolve()
    for path in inputs:
        folder = path.expanduser().resolve()
        if resolved == folder or folder in resolved.parents:
            raise ValueError(
                "`out` must not be an input folder or lie inside one (its files "
                f"are read while the output is written). Received: out={str(out)!r}, "
                f"input {str(path)!r}"
            )


def merge_checkpoints(
    out: str | os.PathLike,
    target: str | os.PathLike,
    terms: Sequence[tuple[float, str | os.PathLike]],
    target_coef: float = 1.0,
    *,
    take: Mapping[str, str | os.PathLike] | None = None,
    dtype: str | None = None,
) -> MergeReport:
    """Merges single-file checkpoints or diffusers folders on disk, streaming.

    Computes `target_coef * target + sum(coefficient * model)` tensor by
    tensor (`kerasmorph.merging.iter_merge`): each tensor is read from each
    (memory-mapped) input when its turn comes and written at once, so memory
    holds about one tensor per model, never a model. Every merge is one of
    these sums:

    | merge | target | terms | target_coef |
    |---|---|---|---|
    | weighted sum | `a` | `[(alpha, b)]` | `1 - alpha` |
    | add difference | `a` | `[(alpha, b), (-alpha, c)]` | 1 |
    | task vectors | `base` | `[(c_1, m_1), ..., (-sum c_i, base)]` | 1 |

    All inputs must share one format (`check_same_format`):

    - single files (CompVis/A1111) merge into the `.safetensors` file `out`;
    - diffusers folders merge into the diffusers folder `out`:
      `unet/diffusion_pytorch_model.safetensors`,
      `vae/diffusion_pytorch_model.safetensors` and
      `text_encoder/model.safetensors`, each beside the target's
      `config.json`. The target's other files are copied as they are:
      `model_index.json`, `scheduler/`, `tokenizer/`, and whole
      subfolders kerasmorph does not merge (`safety_checker/`, weights
      included, listed in the report), so diffusers' `from_pretrained`
      reads `out` as it read the target.

    Tensors whose shape differs, that a model lacks, or that are not
    floating point are kept from the target and listed in the report. A
    component in `take` comes whole from that model: for single files its
    tensors under the target's names, for folders the whole subfolder (its
    tensors under their own names, and its config).

    Args:
        out: a `.safetensors` file (single files) or a folder (diffusers
            folders; created if needed). Existing files are replaced.
        target: the model whose names, shapes and leftovers the result keeps
            (for folders, also its configs).
        terms: `(coefficient, checkpoint)` pairs; a path may repeat, even
            the target's (each is opened once).
        target_coef: the target's own coefficient.
        take: component (`"vae"`, `"unet"`, `"text_encoder"`) -> the
            checkpoint it is copied from, e.g. `{"vae": "vae-ft-mse/"}`.
        dtype: store floating-point tensors as this, e.g. `"float16"`;
            default: the target's dtypes.

    Returns:
        A `kerasmorph.merging.MergeReport`.

    Raises:
        FileNotFoundError: when an input does not exist.
        CheckpointError: for inputs of mixed formats (each named), a folder
            that is not a diffusers folder, or a `take` folder without the
            component.
        ValueError: for an `out` that does not fit the format (or is an input
            folder), a non-finite coefficient, an unknown `take` component or
            a `dtype` that is not floating point.

    Example:

    ```python
    # 0.7 A + 0.3 B of two diffusers folders, with the VAE of a third.
    report = kerasmorph.checkpoints.merge_checkpoints(
        "merged/", "model_a/", [(0.3, "model_b/")], 0.7, take={"vae": "vae_source/"}
    )
    print(report.summary())
    ```
    """
    from kerasmorph import merging

    take = dict(take or {})
    for component in take:
        if component not in merging.COMPONENT_PREFIXES:
            valid = ", ".join(repr(name) for name in merging.COMPONENT_PREFIXES)
            raise ValueError(
                f"`take` keys must be components: {valid}. Received: take key {component!r}"
            )
    if dtype is not None:
        try:
            floating = np.issubdtype(np.dtype(dtype), np.floating)
        except TypeError:
            floating = False
        if not floating:
            raise ValueError(f"`dtype` must be a floating-point dtype. Received: dtype={dtype!r}")
    # iter_merge checks the coefficients on its first step: take that step on
    # nothing, so a bad coefficient fails before any file is written.
    list(merging.iter_merge({}, [(coefficient, {}) for coefficient, _ in terms], target_coef))
    inputs = {
        "target": target,
        **{f"model {index}": path for index, (_, path) in enumerate(terms, 1)},
        **{f"take[{component!r}]": path for component, path in take.items()},
    }
    file_format = check_same_format(inputs)
    out = Path(out).expanduser()
    _check_merge_out(out, file_format, [Path(path) for path in inputs.values()])
    report = merging._Recorder()
    with contextlib.ExitStack() as stack:
        opened: dict[Path, LazyTensors] = {}

        def load(path) -> LazyTensors:
            key = Path(path).expanduser().resolve()
            if key not in opened:
                opened[key] = stack.enter_context(LazyTensors(path))
            return opened[key]

        target_tensors = load(target)
        term_tensors = [(coefficient, load(path)) for coefficient, path in terms]
        take_tensors = {component: load(path) for component, path in take.items()}
        if file_format == "compvis":
            out.parent.mkdir(parents=True, exist_ok=True)
            save_safetensors_stream(
                out,
                merging.iter_merge(
                    target_tensors, term_tensors, target_coef, take=take_tensors, report=report
                ),
                dtype=dtype,
            )
            return report.freeze()
        for component, tensors in take_tensors.items():
            if component not in tensors.source.subfolders():
                raise CheckpointError(
                    f"Cannot take the {component} from {take[component]}: it has no "
                    f"{component}/ weights. Received: take={{{component!r}: "
                    f"{str(take[component])!r}}}"
                )
        written = save_diffusers_stream(
            out,
            _iter_folder_merge(target_tensors, term_tensors, target_coef, take_tensors, report),
            dtype=dtype,
        )
    config_sources = {
        subfolder: Path(take.get(subfolder, target)).expanduser() for subfolder in written
    }
    for subfolder in _copy_pipeline_files(Path(target).expanduser(), out, config_sources):
        report.kept.append(
            (f"{subfolder}/", "a component kerasmorph does not merge, copied from the target")
        )
    return report.freeze()
