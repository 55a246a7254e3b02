"""KerasCV's and Keras's private modules that kerasmorph uses, imported in this one place.

KerasCV 0.9 exports `keras_cv.models.StableDiffusion` but not its components
(`TextEncoder`, `DiffusionModel`, `Decoder`, `ImageEncoder`), their layers
(`PaddedConv2D`, `ResnetBlock`, `AttentionBlock`, `CLIPEmbedding`), the CLIP
`SimpleTokenizer` or DDIM's `_ALPHAS_CUMPROD` table; they live in
`keras_cv.src.models.stable_diffusion`. KerasCV's `.h5` weight layout is written
with Keras 3's `keras.src.legacy.saving.legacy_h5_format`. An upgrade may move
any of them, so every such import goes through `stable_diffusion_modules`,
`stable_diffusion_name` or `legacy_h5_format`, which turn a failed import into
one line naming what is missing, the version found and the pin that has it.

Importing this module is cheap: KerasCV and Keras load on the first call.

Example:

```python
text_encoder, decoder = kerasmorph.kerascv_internals.stable_diffusion_modules(
    "text_encoder", "decoder"
)
```
"""

from __future__ import annotations

import importlib
from importlib import metadata
from types import ModuleType
from typing import Any

from kerasmorph.backend import keras_module
from kerasmorph.installs import DependencyError

STABLE_DIFFUSION = "keras_cv.src.models.stable_diffusion"
LEGACY_H5_FORMAT = "keras.src.legacy.saving.legacy_h5_format"
# The modules of `STABLE_DIFFUSION` that kerasmorph uses.
STABLE_DIFFUSION_MODULES = (
    "attention_block",
    "clip_tokenizer",
    "constants",
    "decoder",
    "diffusion_model",
    "image_encoder",
    "padded_conv2d",
    "resnet_block",
    "text_encoder",
)


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "none"


def _moved(what: str, distribution: str) -> DependencyError:
    """The error for a private name that this KerasCV or Keras does not have."""
    found = _version(distribution)
    if distribution == "keras-cv":
        need, pin = "keras_cv 0.9", 'pip install "keras-cv==0.9.*"'
    else:
        need, pin = "Keras 3", f'pip install "keras>=3.0,<{found}"'
    return DependencyError(
        f"kerasmorph needs {need}'s {what}; found {distribution} {found}: pin it with `{pin}`."
    )


def _import(path: str, distribution: str) -> ModuleType:
    keras_module()  # The TensorFlow backend, before Keras is first imported.
    try:
        return importlib.import_module(path)
    except ImportError as error:
        raise _moved(path, distribution) from error


def stable_diffusion_modules(*names: str) -> tuple[ModuleType, ...]:
    """KerasCV's private Stable Diffusion modules `keras_cv.src.models.stable_diffusion.<name>`.

    Args:
        *names: module names from `STABLE_DIFFUSION_MODULES`, e.g. "text_encoder".

    Returns:
        The modules, in the order named.

    Raises:
        ValueError: for a name kerasmorph does not use.
        kerasmorph.installs.DependencyError: when this KerasCV has no such module.
    """
    unknown = [name for name in names if name not in STABLE_DIFFUSION_MODULES]
    if unknown:
        valid = ", ".join(map(repr, STABLE_DIFFUSION_MODULES))
        raise ValueError(f"Unknown KerasCV module. Valid: {valid}. Received: {unknown[0]!r}")
    return tuple(_import(f"{STABLE_DIFFUSION}.{name}", "keras-cv") for name in names)


def stable_diffusion_name(module: str, name: str) -> Any:
    """One class or constant of a KerasCV Stable Diffusion module.

    Args:
        module: a name from `STABLE_DIFFUSION_MODULES`, e.g. "padded_conv2d".
        name: the attribute, e.g. "PaddedConv2D".

    Raises:
        kerasmorph.installs.DependencyError: when this KerasCV lacks the module or the name.
    """
    (found,) = stable_diffusion_modules(module)
    try:
        return getattr(found, name)
    except AttributeError as error:
        raise _moved(f"{STABLE_DIFFUSION}.{module}.{name}", "keras-cv") from error


def legacy_h5_format() -> ModuleType:
    """Keras 3's `keras.src.legacy.saving.legacy_h5_format` (KerasCV's `.h5` weight layout).

    Raises:
        kerasmorph.installs.DependencyError: when this Keras has no such module.
    """
    return _import(LEGACY_H5_FORMAT, "keras")
