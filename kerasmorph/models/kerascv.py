"""KerasCV interop: building `keras_cv.models.StableDiffusion`(V2) and reading its components.

KerasCV's `StableDiffusion` builds its components lazily behind private
attributes (`_text_encoder`, `_diffusion_model`, `_decoder`, `_image_encoder`,
`_tokenizer`) and downloads their weights when it does. This module is the one
place kerasmorph touches those attributes: `attach_components` sets them (so
the KerasCV object never downloads), `kerascv_components` reads the ones it
has already built, and `preset_of_kerascv` names the preset of its class.
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Any

from kerasmorph.backend import keras_module
from kerasmorph.constants import COMPONENTS
from kerasmorph.presets import PRESETS, Preset

logger = logging.getLogger(__name__)

# `keras_cv.models` class -> the preset of its architecture.
KERASCV_CLASSES = {"StableDiffusion": "sd1", "StableDiffusionV2": "sd2"}


def build_kerascv_model(
    preset: Preset,
    img_height: int,
    img_width: int,
    jit_compile: bool,
    *,
    kerascv_class: str | None = None,
):
    """Constructs KerasCV's `StableDiffusion`(V2) for `preset`, without its licence print.

    KerasCV prints its weights' licence from the constructor; kerasmorph logs
    `preset.licence` itself, so the print is captured (and logged at DEBUG).
    Nothing is built or downloaded here: attach components with
    `attach_components` before the KerasCV object builds its own.

    Args:
        preset: a `Preset` with a `kerascv_class` (`sd1`, `sd2`).
        img_height: image height in pixels.
        img_width: image width in pixels.
        jit_compile: passed on to KerasCV (its UNet and decoder compilation).
        kerascv_class: the class to build instead of `preset.kerascv_class`,
            `"StableDiffusion"` or `"StableDiffusionV2"` (e.g. to hold the
            `tiny` preset's components in KerasCV's loop).

    Returns:
        A `keras_cv.models.StableDiffusion` or `StableDiffusionV2`.

    Raises:
        ValueError: when the preset has no KerasCV class and none is given.
    """
    name = kerascv_class or preset.kerascv_class
    if name is None:
        raise ValueError(
            "Only the 'sd1' and 'sd2' presets have a KerasCV class. "
            f"Received: preset={preset.name!r}"
        )
    if name not in KERASCV_CLASSES:
        valid = ", ".join(repr(key) for key in KERASCV_CLASSES)
        raise ValueError(
            f"`kerascv_class` must be one of {valid}. Received: kerascv_class={name!r}"
        )
    keras_module()
    import keras_cv

    cls = getattr(keras_cv.models, name)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        model = cls(img_height, img_width, jit_compile=jit_compile)
    if printed.getvalue().strip():
        logger.debug("KerasCV %s printed: %s", name, printed.getvalue().strip())
    return model


def attach_components(kerascv_model, components: dict[str, Any], tokenizer=None) -> None:
    """Sets built components (and a tokenizer) on a KerasCV `StableDiffusion`(V2).

    KerasCV's properties build a component (downloading its weights) only
    when the private attribute is still `None`, so attached components are
    used as they are.

    Args:
        kerascv_model: a `keras_cv.models.StableDiffusion` or `StableDiffusionV2`.
        components: component name (one of `COMPONENTS`) -> built `keras.Model`.
        tokenizer: a CLIP tokenizer to set as well; `None` leaves KerasCV's.

    Raises:
        ValueError: for a name that is not a component.
    """
    for name, component in components.items():
        if name not in COMPONENTS:
            valid = ", ".join(repr(key) for key in COMPONENTS)
            raise ValueError(f"`components` keys must be in {valid}. Received: component={name!r}")
        setattr(kerascv_model, f"_{name}", component)
    if tokenizer is not None:
        kerascv_model._tokenizer = tokenizer


def kerascv_components(kerascv_model) -> dict[str, Any]:
    """The components a KerasCV `StableDiffusion`(V2) has already built, by name."""
    components = {}
    for name in COMPONENTS:
        built = getattr(kerascv_model, f"_{name}", None)
        if built is not None:
            components[name] = built
    return components


def preset_of_kerascv(model) -> Preset:
    """The preset of a KerasCV model: `sd2` for `StableDiffusionV2`, `sd1` for `StableDiffusion`.

    Raises:
        ValueError: for any other object.
    """
    keras_module()
    import keras_cv

    if isinstance(model, keras_cv.models.StableDiffusionV2):
        return PRESETS["sd2"]
    if isinstance(model, keras_cv.models.StableDiffusion):
        return PRESETS["sd1"]
    raise ValueError(
        "`model` must be a preset name or a keras_cv.models.StableDiffusion / "
        f"StableDiffusionV2 instance. Received: model of type {type(model).__name__}"
    )
