"""The shipped `shapes` weights and the toy presets' builders.

The trained text encoder and UNet ship inside the package as float16 `.npz`
files in `kerasmorph/data/shapes/` (written by `kerasmorph.shapes.train`);
the decoder and image encoder are fixed and have no weights. Setting
`KERASMORPH_SHAPES_WEIGHTS` to a directory holding `text_encoder.npz` and
`diffusion_model.npz` (e.g. a training run's output) uses those instead.

`shapes-depth` is the same model fine-tuned with a 5th UNet input channel, the
scene's depth map (`python -m kerasmorph.shapes.train --depth --init ...`), in
`kerasmorph/data/shapes-depth/` (`KERASMORPH_SHAPES_DEPTH_WEIGHTS` overrides).
`shapes-black` is `shapes` fine-tuned on the same scenes on a black background
(`--background black`): the style fine-tune of the depth + task-arithmetic
recipe, in `kerasmorph/data/shapes-black/` (`KERASMORPH_SHAPES_BLACK_WEIGHTS`).
`shapes-outlined` is `shapes` fine-tuned on the same scenes with a black outline
around each shape (`--outline`): the style fine-tune with which the recipe keeps
both layout and style, in `kerasmorph/data/shapes-outlined/`
(`KERASMORPH_SHAPES_OUTLINED_WEIGHTS`).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from kerasmorph.shapes import model as model_lib

WEIGHTS_ENV = "KERASMORPH_SHAPES_WEIGHTS"
DEPTH_WEIGHTS_ENV = "KERASMORPH_SHAPES_DEPTH_WEIGHTS"
BLACK_WEIGHTS_ENV = "KERASMORPH_SHAPES_BLACK_WEIGHTS"
OUTLINED_WEIGHTS_ENV = "KERASMORPH_SHAPES_OUTLINED_WEIGHTS"
WEIGHT_FILES = {
    "text_encoder": "text_encoder.npz",
    "diffusion_model": "diffusion_model.npz",
}
DESCRIPTION = (
    "toy model trained on CPU: one red/green/blue/yellow circle, square or "
    "triangle on white (shipped, offline)"
)
# Each toy: its folder under `kerasmorph/data/`, the variable overriding it,
# and its UNet's latent input channels.
TOYS: dict[str, tuple[str, int]] = {
    "shapes": (WEIGHTS_ENV, 4),
    "shapes-depth": (DEPTH_WEIGHTS_ENV, 5),
    "shapes-black": (BLACK_WEIGHTS_ENV, 4),
    "shapes-outlined": (OUTLINED_WEIGHTS_ENV, 4),
}


def weights_dir(depth: bool = False, *, toy: str | None = None) -> Path:
    """The directory a toy's weights are read from: its override variable's, or the package's.

    Args:
        depth: the `shapes-depth` toy (kept for callers of the two-toy API).
        toy: a `TOYS` name (`"shapes"`, `"shapes-depth"`, `"shapes-black"`,
            `"shapes-outlined"`);
            overrides `depth`.
    """
    toy = toy or ("shapes-depth" if depth else "shapes")
    override = os.environ.get(TOYS[toy][0])
    if override:
        return Path(override)
    return Path(str(resources.files("kerasmorph") / "data" / toy))


def builder_of(toy: str):
    """`build_component` for one of `TOYS`, with the preset builders' signature."""

    def build(component: str, img_height: int, img_width: int, seed: int = 0):
        return build_component(component, img_height, img_width, seed, toy=toy)

    return build


def build_depth_component(component: str, img_height: int, img_width: int, seed: int = 0):
    """`build_component` for `shapes-depth`: its UNet takes a 5-channel latent (+ depth)."""
    return build_component(component, img_height, img_width, seed, toy="shapes-depth")


def build_component(
    component: str,
    img_height: int,
    img_width: int,
    seed: int = 0,
    *,
    depth: bool = False,
    toy: str | None = None,
):
    """Builds one `shapes` component with its trained weights loaded.

    Args:
        component: `"text_encoder"`, `"diffusion_model"`, `"decoder"` or `"image_encoder"`.
        img_height: image height in pixels (the UNet and decoder are built for it).
        img_width: image width in pixels.
        seed: unused (the weights are trained); kept for the preset interface.
        depth: the `shapes-depth` model (a 5-channel UNet input).
        toy: a `TOYS` name; overrides `depth`.

    Returns:
        A `keras.Model` with KerasCV's inputs and outputs for that component.

    Raises:
        FileNotFoundError: when a weight file is missing, naming it.
    """
    toy = toy or ("shapes-depth" if depth else "shapes")
    if component == "decoder":
        return model_lib.build_decoder(img_height, img_width)
    if component == "image_encoder":
        return model_lib.build_image_encoder()
    if component == "text_encoder":
        model = model_lib.build_text_encoder()
    elif component == "diffusion_model":
        config = model_lib.ShapesConfig(input_channels=TOYS[toy][1])
        model = model_lib.build_diffusion_model(img_height, img_width, config)
    else:
        raise ValueError(
            "`component` must be one of 'text_encoder', 'diffusion_model', 'decoder', "
            f"'image_encoder'. Received: component={component!r}"
        )
    path = weights_dir(toy=toy) / WEIGHT_FILES[component]
    env = TOYS[toy][0]
    if not path.is_file():
        raise FileNotFoundError(
            f"The shapes {component} weights are missing: {path}. Reinstall kerasmorph, "
            f"or train them with `python -m kerasmorph.shapes.train --out DIR` and set "
            f"{env}=DIR. Received: {env}={os.environ.get(env)!r}"
        )
    model_lib.load_weights(model, path)
    return model
