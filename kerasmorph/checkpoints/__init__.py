"""Converts Stable Diffusion 1.x/2.x checkpoints into KerasCV's components (layer L6).

Reads a CompVis/A1111 single file or a diffusers folder, detects the family
(sd1: 768-d text context, sd2: 1024-d, sd2-depth: 1024-d and a UNet taking 5
input channels, stable-diffusion-2-depth) from the tensors, and fills KerasCV's
`TextEncoder(V2)`, `DiffusionModel(V2)`, `Decoder` and `ImageEncoder`, every
weight mapped by name and shape-checked. One job per module:

- `sources`: tensor sources (`open_checkpoint`: safetensors files, torch
  files, diffusers folders, kerasmorph `.npz` folders of the toys;
  `LazyTensors`, the lazy mapping merges read);
- `detect`: family detection from a key table (`detect_family`), and the
  preset of a toy's `.npz` folder (`npz_folder_preset`);
- `plans`: name plans, CompVis/diffusers names -> KerasCV variables
  (`weight_plan`, the UNet/VAE block tables);
- `load`: tensors into KerasCV components (`load_component`) and the state
  dicts of built components;
- `conversion`: `convert(checkpoint, out_dir)`, `.h5` files and the
  `kerasmorph.json` manifest (read back by `kerasmorph.weights`);
- `writers`: streaming writers (safetensors files, diffusers folders, `.npz`
  folders, `.h5`);
- `merge_files`: `merge_checkpoints`, files into a file and folders into a
  folder, one tensor at a time (the math is `kerasmorph.merging`'s), of one
  format and one family.

Importing it is cheap: TensorFlow, KerasCV, torch and h5py load on first use.

Example:

```python
kerasmorph.checkpoints.convert("v1-5-pruned-emaonly.safetensors", "sd15")
explorer = kerasmorph.Explorer("sd15")
```

References:
    huggingface/diffusers, `scripts/convert_diffusers_to_original_stable_diffusion.py`
    and `src/diffusers/loaders/single_file_utils.py` (the CompVis <-> diffusers names).
"""

from __future__ import annotations

from kerasmorph.checkpoints.conversion import ConversionResult, convert
from kerasmorph.checkpoints.detect import (
    CHECKPOINT_KEY_NAMES,
    COMPVIS_PREFIXES,
    CONTEXT_WIDTHS,
    DIFFUSERS_SUBFOLDERS,
    SD1_TEXT_PREFIXES,
    SD2_TEXT_PREFIX,
    UNET_INPUT_CHANNELS,
    UNET_PREFIX,
    VAE_PREFIX,
    detect_family,
    model_family,
    npz_folder_preset,
)
from kerasmorph.checkpoints.load import (
    assign_state_dict,
    component_state_dict,
    compvis_state_dict,
    load_component,
)
from kerasmorph.checkpoints.merge_files import (
    check_one_family,
    check_same_format,
    merge_checkpoints,
)
from kerasmorph.checkpoints.plans import (
    Layout,
    TensorRef,
    decoder_blocks,
    image_encoder_blocks,
    unet_blocks,
    weight_plan,
)
from kerasmorph.checkpoints.sources import (
    CheckpointError,
    CheckpointFormat,
    DiffusersSource,
    LazyTensors,
    NpzFolderSource,
    SafetensorsSource,
    StateDictSource,
    TensorSource,
    checkpoint_format,
    npz_components,
    open_checkpoint,
)
from kerasmorph.checkpoints.writers import (
    DIFFUSERS_WEIGHT_FILES,
    save_diffusers_stream,
    save_legacy_h5,
    save_npz_folder_stream,
    save_safetensors_stream,
)
from kerasmorph.constants import COMPONENTS
from kerasmorph.weights import FAMILIES, MANIFEST_NAME, Family, is_converted_dir, read_manifest

__all__ = [
    "CHECKPOINT_KEY_NAMES",
    "COMPONENTS",
    "COMPVIS_PREFIXES",
    "CONTEXT_WIDTHS",
    "CheckpointError",
    "CheckpointFormat",
    "ConversionResult",
    "DIFFUSERS_SUBFOLDERS",
    "DIFFUSERS_WEIGHT_FILES",
    "DiffusersSource",
    "FAMILIES",
    "Family",
    "LazyTensors",
    "Layout",
    "NpzFolderSource",
    "MANIFEST_NAME",
    "SD1_TEXT_PREFIXES",
    "SD2_TEXT_PREFIX",
    "SafetensorsSource",
    "StateDictSource",
    "TensorRef",
    "TensorSource",
    "UNET_INPUT_CHANNELS",
    "UNET_PREFIX",
    "VAE_PREFIX",
    "assign_state_dict",
    "check_one_family",
    "check_same_format",
    "checkpoint_format",
    "component_state_dict",
    "compvis_state_dict",
    "convert",
    "decoder_blocks",
    "detect_family",
    "image_encoder_blocks",
    "is_converted_dir",
    "load_component",
    "merge_checkpoints",
    "model_family",
    "npz_components",
    "npz_folder_preset",
    "open_checkpoint",
    "read_manifest",
    "save_diffusers_stream",
    "save_legacy_h5",
    "save_npz_folder_stream",
    "save_safetensors_stream",
    "unet_blocks",
    "weight_plan",
]
