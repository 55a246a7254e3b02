"""What makes `Explorer` a drop-in for `keras_cv.models.StableDiffusion`.

KerasCV code passes the constructor's `(img_height, img_width, jit_compile)`
by position, builds under the global Keras dtype policy
(`keras.mixed_precision.set_global_policy("mixed_float16")`), draws
`seed=None` noise from Keras' global seed generator (so
`keras.utils.set_random_seed` makes it reproducible) and replaces components
through the private attributes `_text_encoder`, `_diffusion_model`,
`_decoder`, `_image_encoder` and `_tokenizer` (the keras.io textual-inversion
guide does `stable_diffusion._text_encoder = new_encoder`). This module holds
those four translations; `Explorer` applies them.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import TYPE_CHECKING, Any

import numpy as np

from kerasmorph import devices
from kerasmorph.constants import PRECISIONS
from kerasmorph.errors import InputError
from kerasmorph.explorer.checks import check_seed_or_noise, count_images, is_batched, unbatch

if TYPE_CHECKING:
    from kerasmorph.explorer.explorer import Explorer

# Where an Explorer's precision came from (`describe()["precision_source"]`).
GLOBAL_POLICY_SOURCE = "global Keras policy"


def _is_size(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def constructor_arguments(
    model: Any, img_height: Any, img_width: Any, jit_compile: Any
) -> tuple[Any, Any, Any, Any]:
    """Reads KerasCV's positional `StableDiffusion(img_height, img_width, jit_compile)`.

    When the first positional argument is an int it is KerasCV's
    `img_height`, the next two are `img_width` and `jit_compile`, and the
    model is the default, `"sd1"` (KerasCV's `StableDiffusion`). Otherwise
    the arguments are returned unchanged: `Explorer("shapes", 64, 64)`.

    Args:
        model, img_height, img_width, jit_compile: the Explorer's first four
            arguments as received.

    Returns:
        `(model, img_height, img_width, jit_compile)`.

    Raises:
        InputError: for an int first argument together with a fourth
            positional (or keyword) `jit_compile`, or a third value that is
            not a bool.

    Example:

    ```python
    >>> kerasmorph.explorer.kerascv_api.constructor_arguments(512, 768, True, None)
    ('sd1', 512, 768, True)
    ```
    """
    if not _is_size(model):
        return model, img_height, img_width, jit_compile
    if jit_compile is not None or not (img_width is None or isinstance(img_width, bool)):
        raise InputError(
            "With an int first argument, Explorer takes KerasCV's positional "
            "(img_height, img_width, jit_compile) for the 'sd1' model; name the model "
            "first for anything else: Explorer('sd1', img_height, img_width, jit_compile). "
            f"Received: Explorer({model!r}, {img_height!r}, {img_width!r}, "
            f"jit_compile={jit_compile!r})"
        )
    return "sd1", model, img_height, img_width


def global_policy_name() -> str:
    """The name of the global Keras dtype policy (`keras.config.dtype_policy()`)."""
    from kerasmorph.backend import keras_module

    return keras_module().config.dtype_policy().name


def resolve_plan(
    precision: str | None, jit_compile: bool | None
) -> tuple[devices.PrecisionPlan, str]:
    """The precision plan of an Explorer, and where its precision came from.

    `precision=None` follows the global Keras policy at the time the
    Explorer is made, as KerasCV builds its components under it: a mixed or
    bf16 policy applies to the text encoder and UNet, and the VAE stays
    float32 (a float16 VAE overflows). `"auto"` and explicit policies go to
    `kerasmorph.devices.resolve_precision` as they are.

    Args:
        precision: None, `"auto"` or one of `kerasmorph.constants.PRECISIONS`.
        jit_compile: the Explorer's `jit_compile`.

    Returns:
        `(plan, source)`, source `"global Keras policy"`, `"auto"` or
        `"argument"`.

    Raises:
        InputError: when precision is None and the global policy is not one
            of `PRECISIONS` (e.g. `"float16"`, whose weights overflow).
    """
    if precision is not None:
        source = "auto" if precision == "auto" else "argument"
        return devices.resolve_precision(precision, jit_compile), source
    policy = global_policy_name()
    if policy not in PRECISIONS:
        valid = ", ".join(repr(p) for p in PRECISIONS)
        raise InputError(
            f"precision=None follows the global Keras dtype policy, which must be one of "
            f"{valid} (set it with keras.config.set_dtype_policy), or pass precision= "
            f"explicitly. Received: global policy {policy!r}"
        )
    plan = devices.resolve_precision(policy, jit_compile)
    reason = (
        f"precision=None: the global Keras policy {policy!r} for the text encoder and "
        "UNet, as KerasCV; the VAE stays float32"
    )
    if jit_compile is not None:
        reason += f"; explicit jit_compile={plan.jit_compile}"
    return dataclasses.replace(plan, reason=reason), GLOBAL_POLICY_SOURCE


def draw_seed() -> int:
    """A noise seed in [0, 2³¹ − 1) from Keras' global seed generator.

    `keras.utils.set_random_seed(n)` resets that generator, so generating
    with `seed=None` after it is reproducible, as in KerasCV (whose
    `keras.random.normal(..., seed=None)` draws from the same generator).
    """
    from kerasmorph.backend import keras_module

    keras = keras_module()
    return int(keras.random.randint((), 0, 2**31 - 1, dtype="int32"))


def generation_inputs(
    explorer: "Explorer", encoded_text: Any, batch_size: int | None, diffusion_noise: Any, seed: Any
) -> tuple[np.ndarray, np.ndarray]:
    """The per-image encodings and noise of `generate_image`, by KerasCV's rules.

    The image count N is the encodings' batch axis, else the noise's, else
    `batch_size`, else 1; an unbatched encoding or noise is repeated N
    times. Encodings (N, 1, 77·k, D) lose their axis of one, as KerasCV
    squeezes them. Noise not given is `explorer.noise(N, seed)`, with
    `draw_seed()` for `seed=None`.

    Returns:
        `(encodings (N, 77·k, D), noise (N, h, w, 4))`, float32.

    Raises:
        ValueError: for `seed` with `diffusion_noise`, shapes that do not
            match the model, or batch axes of different sizes.
    """
    check_seed_or_noise(seed, diffusion_noise)
    encodings = np.asarray(encoded_text, dtype=np.float32)
    if encodings.ndim == 4 and encodings.shape[1] == 1:
        # `ops.linspace` of two (1, 77, D) encodings (KerasCV's docstring
        # example) is (N, 1, 77, D); KerasCV squeezes it.
        encodings = encodings[:, 0]
    encodings = explorer._text.check(encodings)
    noise = None if diffusion_noise is None else explorer._check_noise(diffusion_noise)
    num_images = count_images(encodings, noise, batch_size)
    if not is_batched(encodings, 2):
        encodings = np.repeat(unbatch(encodings, 2)[None], num_images, axis=0)
    if noise is None:
        noise = explorer.noise(num_images, draw_seed() if seed is None else seed)
    elif not is_batched(noise, 3):
        noise = np.repeat(unbatch(noise, 3)[None], num_images, axis=0)
    return encodings, noise


def component_attribute(name: str) -> property:
    """KerasCV's private attribute of component `name`, read and written like KerasCV's.

    Reading gives the component once built (None before, as KerasCV's lazy
    attributes do); assigning replaces it through the Explorer's
    `ComponentStore.set`, which drops everything derived from the old one
    (compiled functions, traced steps, cached encodings). Assigning None
    makes the next use build it again from the preset.

    Args:
        name: `"tokenizer"` or a name of `kerasmorph.constants.COMPONENTS`.

    Returns:
        A `property` for the `Explorer` class.
    """

    def get(explorer):
        return explorer._store.peek(name)

    def set_(explorer, value):
        if name == "tokenizer":
            explorer._store.set_tokenizer(value)
        else:
            explorer._store.set(name, value)

    return property(get, set_, doc=f"KerasCV's `_{name}`: the {name} once built, else None.")
