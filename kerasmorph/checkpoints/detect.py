"""Family detection: SD 1.x, SD 2.x or SD 2 depth, from a key table.

As in diffusers' `single_file_utils` (`CHECKPOINT_KEY_NAMES`,
`infer_diffusers_model_type`), the tensors that tell the families apart are
listed once, as data, in `CHECKPOINT_KEY_NAMES`; `detect_family` only looks
them up: the UNet's cross-attention width tells SD 1.x from SD 2.x, its first
conv's input channels a depth UNet (5: stable-diffusion-2-depth) from a
text-to-image one (4). The top-level prefixes of a CompVis single file live here too, the
name plans (`kerasmorph.checkpoints.plans`) build on them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from kerasmorph.checkpoints.sources import CheckpointError, TensorSource
from kerasmorph.models import depth
from kerasmorph.weights import MANIFEST_NAME, Family

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

# The keys (or key prefixes) that tell the families apart, in the order they
# are looked at. The UNet's cross-attention key projection takes the text
# context: 768 wide for SD 1.x (CLIP ViT-L), 1024 for SD 2.x (OpenCLIP ViT-H).
# The UNet's first conv (320, C, 3, 3) takes C = 4 latent channels, or 5 for
# stable-diffusion-2-depth (latent + depth map; LDM config `in_channels: 5`).
CHECKPOINT_KEY_NAMES = {
    "compvis": {
        "sdxl": "conditioner.embedders.",  # A prefix: SDXL is refused.
        "cross_attention": UNET_PREFIX + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
        "unet_input": UNET_PREFIX + "input_blocks.0.0.weight",
        "open_clip": SD2_TEXT_PREFIX,  # A prefix: SD 2.x's text encoder.
        "clip": SD1_TEXT_PREFIXES[1],  # A prefix: SD 1.x's text encoder.
    },
    "diffusers": {
        "cross_attention": "unet/down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight",
        "unet_input": "unet/conv_in.weight",
        # transformers 4 saves `text_model.*`, transformers 5 drops the prefix.
        "token_embedding": (
            "text_encoder/text_model.embeddings.token_embedding.weight",
            "text_encoder/embeddings.token_embedding.weight",
        ),
    },
}
# Text-context width -> family.
CONTEXT_WIDTHS: dict[int, Family] = {768: "sd1", 1024: "sd2"}
# UNet input channels -> (the family of that context width -> the family converted).
# 4: text-to-image; 5: SD 2.x depth (no SD 1.x depth model exists).
UNET_INPUT_CHANNELS: dict[int, dict[Family, Family]] = {
    4: {"sd1": "sd1", "sd2": "sd2"},
    depth.DEPTH_INPUT_CHANNELS: {"sd2": "sd2-depth"},
}


def _compvis_text_family(source: TensorSource) -> Family | None:
    """The family of a single file's text encoder; raises for SDXL."""
    names = CHECKPOINT_KEY_NAMES["compvis"]
    keys = source._key_set()

    def has_prefix(prefix: str) -> bool:
        return any(key.startswith(prefix) for key in keys)

    if has_prefix(names["sdxl"]):
        raise CheckpointError(
            f"{source.path} looks like SDXL (conditioner.embedders.*); kerasmorph "
            "converts Stable Diffusion 1.x and 2.x only."
        )
    if has_prefix(names["open_clip"]):
        return "sd2"
    return "sd1" if has_prefix(names["clip"]) else None


def _diffusers_text_family(source: TensorSource) -> Family | None:
    """The family of a diffusers folder's text encoder, by its token-embedding width."""
    keys = CHECKPOINT_KEY_NAMES["diffusers"]["token_embedding"]
    widths = [source.shape(key)[-1] for key in keys if key in source]
    return CONTEXT_WIDTHS.get(widths[-1]) if widths else None


def _with_unet_input(source: TensorSource, family: Family) -> Family:
    """`family`, or `"sd2-depth"` for an SD 2.x UNet whose first conv takes 5 channels."""
    key = CHECKPOINT_KEY_NAMES[source.format]["unet_input"]
    if key not in source:
        return family
    shape = source.shape(key)
    channels = int(shape[1]) if len(shape) == 4 else None
    families = UNET_INPUT_CHANNELS.get(channels, {})
    if family in families:
        return families[family]
    if channels in UNET_INPUT_CHANNELS:  # A depth UNet with an SD 1.x text context.
        raise CheckpointError(
            f"The UNet takes {channels} input channels ({key} {tuple(shape)}) and an "
            f"{family} text context; kerasmorph converts 5-channel depth UNets of SD 2.x "
            "(stable-diffusion-2-depth) only."
        )
    raise CheckpointError(
        f"The UNet takes {channels} input channels ({key} {tuple(shape)}); kerasmorph "
        "converts text-to-image UNets (4 channels) and SD 2 depth UNets (5: latent + depth "
        "map) only (9 channels is an inpainting model)."
    )


def detect_family(source: TensorSource) -> Family:
    """Tells SD 1.x from SD 2.x (and SD 2 depth) by the tensors of a checkpoint.

    The UNet's cross-attention key projection takes the text context: 768
    wide for SD 1.x (CLIP ViT-L), 1024 for SD 2.x (OpenCLIP ViT-H). Without a
    UNet, the text encoder decides (`cond_stage_model.model.` is OpenCLIP).
    An SD 2.x UNet whose first conv (`input_blocks.0.0` / `conv_in`) takes 5
    input channels is stable-diffusion-2-depth: `"sd2-depth"`.

    Args:
        source: an open checkpoint (`open_checkpoint`).

    Returns:
        `"sd1"`, `"sd2"` or `"sd2-depth"`.

    Raises:
        CheckpointError: for SDXL, a UNet of another input width (e.g. a
            9-channel inpainting UNet) or other unsupported models.

    Example:

    ```python
    with kerasmorph.checkpoints.open_checkpoint("sd21/") as source:
        kerasmorph.checkpoints.detect_family(source)  # "sd2"
    ```
    """
    if source.format == "compvis":
        text_family = _compvis_text_family(source)
    else:
        text_family = _diffusers_text_family(source)
    cross_key = CHECKPOINT_KEY_NAMES[source.format]["cross_attention"]
    if cross_key in source:
        width = source.shape(cross_key)[-1]
        if width not in CONTEXT_WIDTHS:
            raise CheckpointError(
                f"The UNet's cross-attention takes a {width}-wide text context "
                f"({cross_key}); kerasmorph converts SD 1.x (768) and SD 2.x (1024) only."
            )
        return _with_unet_input(source, CONTEXT_WIDTHS[width])
    if text_family is not None:
        return _with_unet_input(source, text_family)
    raise CheckpointError(
        f"Could not tell SD 1.x from SD 2.x in {source.path}: it has no UNet "
        f"cross-attention tensor ({cross_key}) and no known text encoder. Pass "
        "family='sd1', 'sd2' or 'sd2-depth' if it is one of them."
    )


def model_family(model, component: str) -> Family:
    """Tells whether a KerasCV component is the SD 1.x or SD 2.x variant.

    The VAE is shared, so the decoder and image encoder report `"sd1"`; a
    UNet with a 5-channel `latent` input (also wrapped by
    `kerasmorph.models.depth.with_depth_input`) reports `"sd2-depth"`.

    Args:
        model: a built KerasCV component.
        component: one of `COMPONENTS`.

    Returns:
        `"sd1"`, `"sd2"` or `"sd2-depth"`.

    Raises:
        ValueError: for a text encoder or UNet whose text context is neither
            768 nor 1024 wide.
    """
    if component == "text_encoder":
        width = int(model.output.shape[-1])
    elif component == "diffusion_model":
        model = depth.inner_unet(model)
        width = int(model.inputs[-1].shape[-1])
    else:
        return "sd1"
    if width not in CONTEXT_WIDTHS:
        raise ValueError(
            f"Expected a KerasCV {component} with a 768- or 1024-wide text context. "
            f"Received: width={width} ({type(model).__name__})"
        )
    family = CONTEXT_WIDTHS[width]
    if component == "diffusion_model":
        channels = depth.latent_input_channels(model)
        return UNET_INPUT_CHANNELS.get(channels, {}).get(family, family)
    return family


def npz_folder_preset(folder: str | os.PathLike) -> str:
    """The preset that loads a kerasmorph `.npz` folder: `"shapes"` or `"shapes-depth"`.

    Read from the folder's `kerasmorph.json` (a merge's output) or, for a
    `kerasmorph.shapes.train` run (the shipped toys included), from the model
    configuration in its `training.json`: 5 UNet input channels make
    `shapes-depth`.

    Raises:
        CheckpointError: when neither file says, or the run trained other
            widths than the `shapes` presets build.
    """
    from kerasmorph.shapes import model as shapes_model

    folder = Path(folder)
    if (folder / MANIFEST_NAME).is_file():
        return json.loads((folder / MANIFEST_NAME).read_text())["preset"]
    record = folder / "training.json"
    if not record.is_file():
        raise CheckpointError(
            f"{folder} has .npz weights but neither {MANIFEST_NAME} nor training.json, so "
            "kerasmorph cannot tell which preset loads them. Received: "
            f"checkpoint={str(folder)!r}"
        )
    config = dict(json.loads(record.read_text()).get("model_config", {}))
    channels = config.pop("input_channels", 4)
    # Through JSON, as the record was written (tuples become lists).
    expected = json.loads(json.dumps(dataclasses.asdict(shapes_model.ShapesConfig())))
    expected.pop("input_channels")
    if config != expected:
        raise CheckpointError(
            f"{folder} holds a model of other widths than the shapes presets build "
            f"({config}); only full-size shapes runs load as a preset. Received: "
            f"checkpoint={str(folder)!r}"
        )
    return "shapes-depth" if channels == depth.DEPTH_INPUT_CHANNELS else "shapes"
