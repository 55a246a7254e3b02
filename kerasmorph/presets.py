"""Presets: which architecture makes a model, and which files it loads (data only).

Like keras-hub's `*_presets.py`, this module is a registry of plain data:
building belongs to `kerasmorph.models` (`build_component` looks the builder up
by `Preset.architecture`).

- `sd1`: KerasCV's `StableDiffusion` (v1.4): `TextEncoder` (768), `DiffusionModel`;
  weights `kcv_*.h5`, `vae_encoder.h5`.
- `sd2`: `StableDiffusionV2` (v2.1): `TextEncoderV2` (1024), `DiffusionModelV2`;
  weights `*_v2_1.h5` + the sd1 VAE.
- `tiny`: text encoder of 2 layers (64), UNet of 4 levels (32–64 channels);
  seeded random weights.
- `shapes`: 30-word vocabulary, 2 layers (128), UNet of 3 levels (32–128 channels);
  trained, shipped in `kerasmorph/data/shapes`.
- `shapes-depth`: `shapes` fine-tuned with the scene's depth map as a 5th UNet
  input channel (SD 2 depth's design); shipped in `kerasmorph/data/shapes-depth`.
- `shapes-black`: `shapes` fine-tuned on the same scenes on a black background,
  the style fine-tune of the depth + task-arithmetic recipe; shipped in
  `kerasmorph/data/shapes-black`.
- `shapes-outlined`: `shapes` fine-tuned on the same scenes with a black outline
  around each shape, the style fine-tune with which the recipe keeps layout and
  style; shipped in `kerasmorph/data/shapes-outlined`.
- `sd2-depth`: Stability's stable-diffusion-2-depth in `sd2`'s architecture, the
  UNet's `latent` input of 5 channels (the latent and a depth map); its weights
  come only from a folder written by `kerasmorph convert` (KerasCV never
  shipped any: nothing is downloaded).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from kerasmorph.constants import (
    COMPONENTS,
    MAX_PROMPT_LENGTH,
    PRECISION_OPTIONS,
    PRECISIONS,
    Component,
)
from kerasmorph.weights import WeightFile

# Re-exported from `kerasmorph.constants` for the modules that read them here.
__all__ = [
    "COMPONENTS",
    "MAX_PROMPT_LENGTH",
    "PRECISIONS",
    "PRECISION_OPTIONS",
    "PRESETS",
    "Component",
    "Preset",
    "get_preset",
]

_HF = "https://huggingface.co"
_SD1_FILES = {
    "text_encoder": WeightFile(
        "text_encoder",
        "kcv_encoder.h5",
        "4789e63e07c0e54d6a34a29b45ce81ece27060c499a709d556c7755b42bb0dc4",
        f"{_HF}/fchollet/stable-diffusion/resolve/main/kcv_encoder.h5",
    ),
    "diffusion_model": WeightFile(
        "diffusion_model",
        "kcv_diffusion_model.h5",
        "8799ff9763de13d7f30a683d653018e114ed24a6a819667da4f5ee10f9e805fe",
        f"{_HF}/fchollet/stable-diffusion/resolve/main/kcv_diffusion_model.h5",
    ),
    "decoder": WeightFile(
        "decoder",
        "kcv_decoder.h5",
        "ad350a65cc8bc4a80c8103367e039a3329b4231c2469a1093869a345f55b1962",
        f"{_HF}/fchollet/stable-diffusion/resolve/main/kcv_decoder.h5",
    ),
    "image_encoder": WeightFile(
        "image_encoder",
        "vae_encoder.h5",
        "c60fb220a40d090e0f86a6ab4c312d113e115c87c40ff75d11ffcf380aab7ebb",
        f"{_HF}/fchollet/stable-diffusion/resolve/main/vae_encoder.h5",
    ),
}
_SD2_FILES = {
    **_SD1_FILES,
    "text_encoder": WeightFile(
        "text_encoder",
        "text_encoder_v2_1.h5",
        "985002e68704e1c5c3549de332218e99c5b9b745db7171d5f31fcd9a6089f25b",
        f"{_HF}/ianstenbit/keras-sd2.1/resolve/main/text_encoder_v2_1.h5",
    ),
    "diffusion_model": WeightFile(
        "diffusion_model",
        "diffusion_model_v2_1.h5",
        "c31730e91111f98fe0e2dbde4475d381b5287ebb9672b1821796146a25c5132d",
        f"{_HF}/ianstenbit/keras-sd2.1/resolve/main/diffusion_model_v2_1.h5",
    ),
}

# No origin: no download exists; `kerasmorph convert` writes them from Stability's
# stable-diffusion-2-depth (a diffusers folder or its 512-depth-ema single file).
_SD2_DEPTH_FILES = {
    component: WeightFile(component, filename, sha256="", origin="")
    for component, filename in (
        ("text_encoder", "text_encoder_v2_depth.h5"),
        ("diffusion_model", "diffusion_model_v2_depth.h5"),
        ("decoder", "decoder_v2_depth.h5"),
        ("image_encoder", "vae_encoder_v2_depth.h5"),
    )
}

_SD1_LICENCE = (
    "Stable Diffusion v1.4 weights: CreativeML Open RAIL-M licence, "
    "https://raw.githubusercontent.com/CompVis/stable-diffusion/main/LICENSE"
)
_SD2_LICENCE = (
    "Stable Diffusion v2.1 weights: CreativeML Open RAIL++-M licence, "
    "https://github.com/Stability-AI/stablediffusion/blob/main/LICENSE-MODEL"
)

_SD2_DEPTH_LICENCE = (
    "Stable Diffusion 2 depth weights: CreativeML Open RAIL++-M licence, "
    "https://github.com/Stability-AI/stablediffusion/blob/main/LICENSE-MODEL"
)


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named model recipe.

    Args:
        name: the preset's name, e.g. `"sd1"`.
        description: one line for `kerasmorph info`.
        default_size: default image height and width in pixels.
        size_multiple: image sizes must be multiples of this (VAE factor 8 x
            the UNet's 3 halvings = 64 for every preset).
        weight_files: component -> `WeightFile`; empty for random presets. A
            file without an origin (`sd2-depth`) is never downloaded: only a
            folder (a converted one, `weights_dir`) supplies it.
        licence: the weights' licence notice ("" when none applies).
        architecture: the builder `kerasmorph.models.build_component` uses
            (`kerasmorph.models.BUILDERS`): `"sd1"`, `"sd2"`, `"sd2-depth"`,
            `"tiny"`, `"shapes"` or `"shapes-depth"`. Weights that ship inside
            kerasmorph (`shapes`) are found by
            `kerasmorph.models.bundled_weights_dir(preset)`.
        kerascv_class: name of the matching `keras_cv.models` class, if any.
    """

    name: str
    description: str
    default_size: int
    size_multiple: int
    weight_files: Mapping[str, WeightFile]
    licence: str
    architecture: str
    kerascv_class: str | None = None


PRESETS: dict[str, Preset] = {
    "sd1": Preset(
        name="sd1",
        description="Stable Diffusion 1.4 (KerasCV StableDiffusion), 768-d text",
        default_size=512,
        size_multiple=64,
        weight_files=_SD1_FILES,
        licence=_SD1_LICENCE,
        architecture="sd1",
        kerascv_class="StableDiffusion",
    ),
    "sd2": Preset(
        name="sd2",
        description="Stable Diffusion 2.1 (KerasCV StableDiffusionV2), 1024-d text",
        default_size=512,
        size_multiple=64,
        weight_files=_SD2_FILES,
        licence=_SD2_LICENCE,
        architecture="sd2",
        kerascv_class="StableDiffusionV2",
    ),
    "tiny": Preset(
        name="tiny",
        description="tiny seeded random components for tests and offline runs",
        default_size=128,
        size_multiple=64,
        weight_files={},
        licence="",
        architecture="tiny",
    ),
    "shapes": Preset(
        name="shapes",
        description=(
            "toy model trained on CPU: a red/green/blue/yellow circle, square or "
            "triangle on white (weights shipped, offline)"
        ),
        default_size=128,
        size_multiple=64,
        weight_files={},
        licence="",
        architecture="shapes",
    ),
    "shapes-depth": Preset(
        name="shapes-depth",
        description=(
            "the shapes toy fine-tuned on depth maps (a 5-channel UNet, as SD 2 depth): "
            "depth2img offline"
        ),
        default_size=128,
        size_multiple=64,
        weight_files={},
        licence="",
        architecture="shapes-depth",
    ),
    "shapes-black": Preset(
        name="shapes-black",
        description=(
            "the shapes toy fine-tuned on black backgrounds: the style fine-tune of the "
            "depth + task-arithmetic recipe (weights shipped, offline)"
        ),
        default_size=128,
        size_multiple=64,
        weight_files={},
        licence="",
        architecture="shapes-black",
    ),
    "shapes-outlined": Preset(
        name="shapes-outlined",
        description=(
            "the shapes toy fine-tuned on outlined shapes: the style fine-tune with which the "
            "depth + task-arithmetic recipe keeps layout and style (weights shipped, offline)"
        ),
        default_size=128,
        size_multiple=64,
        weight_files={},
        licence="",
        architecture="shapes-outlined",
    ),
    "sd2-depth": Preset(
        name="sd2-depth",
        description=(
            "Stable Diffusion 2 depth (stable-diffusion-2-depth: a 5-channel UNet, latent + "
            "depth map), 1024-d text; weights from `kerasmorph convert` only"
        ),
        default_size=512,
        size_multiple=64,
        weight_files=_SD2_DEPTH_FILES,
        licence=_SD2_DEPTH_LICENCE,
        architecture="sd2-depth",
    ),
}


def get_preset(name: str) -> Preset:
    """Returns the preset called `name`, or raises a ValueError listing them."""
    if name not in PRESETS:
        valid = ", ".join(repr(key) for key in PRESETS)
        raise ValueError(f"Unknown preset. Valid presets: {valid}. Received: preset={name!r}")
    return PRESETS[name]
