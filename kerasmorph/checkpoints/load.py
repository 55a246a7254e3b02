"""Moves tensors between checkpoints and KerasCV components, by the weight plan.

`load_component` fills a built component from an open checkpoint: each
tensor's shape is checked before anything is assigned, then each is laid out
for Keras (`plans` module docstring) and cast to float32. `position_ids`
buffers, EMA copies (`model_ema.*`) and the OpenCLIP text projection are never
read. The state-dict helpers go the other ways: canonical-name dicts for
`kerasmorph.merging` (`component_state_dict`, `assign_state_dict`) and a
CompVis single file (`compvis_state_dict`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kerasmorph.checkpoints.detect import detect_family
from kerasmorph.checkpoints.plans import TensorRef, weight_plan
from kerasmorph.checkpoints.sources import CheckpointError, TensorSource
from kerasmorph.progress import ProgressBar
from kerasmorph.weights import Family

_FAMILY_NAMES = {"sd1": "an SD 1.x", "sd2": "an SD 2.x", "sd2-depth": "an SD 2 depth"}


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


def _to_torch(array: np.ndarray, ref: TensorRef) -> np.ndarray:
    """The inverse of `_to_keras` (without the row slice): Keras -> PyTorch layout."""
    if ref.layout == "conv" and array.ndim == 4:
        return array.transpose(3, 2, 0, 1)
    if ref.layout == "linear" and array.ndim == 2:
        return array.T
    return array


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


def _candidates(source: TensorSource, ref: TensorRef) -> tuple[str, ...]:
    return ref.diffusers if source.format == "diffusers" else ref.compvis


def _locate(source: TensorSource, variable, ref: TensorRef, family: Family, component: str, model):
    """`(key, rows)` of the tensor feeding `variable`, its shape checked; raises if none fits."""
    candidates = _candidates(source, ref)
    key = next((key for key in candidates if key in source), None)
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
            f"there. Is the file {_FAMILY_NAMES.get(family, family)} checkpoint? "
            f"Received: shape={shape}"
        )
    return key, rows


def load_component(
    model,
    component: str,
    source: TensorSource,
    family: Family | None = None,
    *,
    verbose: bool = False,
) -> None:
    """Loads one component's weights from an open checkpoint into `model`.

    Args:
        model: the built KerasCV component (random or not).
        component: one of `COMPONENTS`.
        source: an open checkpoint (`open_checkpoint`).
        family: `"sd1"`/`"sd2"`/`"sd2-depth"`; default: `detect_family(source)`.
        verbose: show a progress bar of the tensors assigned.

    Raises:
        CheckpointError: naming the first tensor that is missing or whose
            shape does not fit, before anything is assigned.

    Example:

    ```python
    with kerasmorph.checkpoints.open_checkpoint("v1-5.safetensors") as source:
        kerasmorph.checkpoints.load_component(decoder, "decoder", source)
    ```
    """
    family = family or detect_family(source)
    found = [
        (variable, ref, *_locate(source, variable, ref, family, component, model))
        for variable, ref in weight_plan(model, component, family)
    ]
    progress = ProgressBar(len(found), verbose=verbose, unit_name="tensor")
    for variable, ref, key, rows in found:
        variable.assign(_to_keras(source.get(key), ref, tuple(variable.shape), rows))
        progress.advance()


def component_state_dict(model, component: str) -> dict[str, np.ndarray]:
    """Returns `{canonical name: array}` of a KerasCV component's weights.

    Names are the diffusers names with their subfolder
    (`"unet/down_blocks.0.resnets.0.conv1.weight"`), stable across builds
    (unlike Keras' auto-numbered `variable.path`), so two models' dicts line
    up for `kerasmorph.merging`. Arrays keep Keras' layout.

    Args:
        model: a built KerasCV component.
        component: one of `COMPONENTS`.

    Returns:
        `{canonical name: array}` in `model.weights` order.
    """
    return {
        ref.name: np.asarray(variable.numpy()) for variable, ref in weight_plan(model, component)
    }


def assign_state_dict(model, component: str, state: Mapping[str, np.ndarray]) -> None:
    """Writes `{canonical name: array}` (from `component_state_dict`) into `model`.

    Args:
        model: a built KerasCV component.
        component: one of `COMPONENTS`.
        state: canonical name -> array in Keras' layout.

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
            array = _to_torch(np.asarray(variable.numpy(), dtype=np.float32), ref)
            key = ref.compvis[0]
            if ref.rows is not None:
                fused.setdefault(key, {})[ref.rows[0]] = array
            else:
                state[key] = np.ascontiguousarray(array)
    for key, parts in fused.items():
        # C order: safetensors writes an array's memory as it is laid out.
        state[key] = np.ascontiguousarray(np.concatenate([parts[start] for start in sorted(parts)]))
    return state
