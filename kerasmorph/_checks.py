"""Argument validators shared by every layer: one home for each check.

Each raises an `InputError` (`kerasmorph.errors`, a `ValueError`) that says
what is accepted and echoes what was received (Keras style: "... Received:
name=value"). Numpy only.
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any

import numpy as np

from kerasmorph.constants import CHUNK_LENGTH, MAX_PROMPT_LENGTH
from kerasmorph.errors import InputError


def format_value(value: Any) -> str:
    """`repr` of a value, with numpy scalars shown as Python numbers."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


def check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    """Returns `value` as an `int`, or raises unless it is an integer in [minimum, maximum].

    Bools are refused; numpy integers and objects with `__index__` are accepted.
    """
    index = None
    if not isinstance(value, bool):
        try:
            index = operator.index(value)
        except TypeError:
            index = None
    if index is None or index < minimum or (maximum is not None and index > maximum):
        bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise InputError(
            f"`{name}` must be an integer {bounds}. Received: {name}={format_value(value)}"
        )
    return index


def check_count(name: str, value: Any) -> int:
    """Returns `value` as an `int`, or raises unless it is an integer >= 1."""
    return check_int(name, value, 1)


def check_finite(name: str, value: Any) -> float:
    """Returns `value` as a `float`, or raises unless it is a finite real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InputError(
            f"`{name}` must be a finite number. Received: {name}={format_value(value)}"
        )
    return float(value)


# The largest float32; the models compute in float32 (or narrower), so a larger
# number becomes Inf there.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_float32(name: str, value: Any) -> float:
    """Returns `value` as a `float`, or raises unless it is finite, in float32 too.

    For numbers that go into the model (the guidance scale): 1e308 is a finite
    float64 but Inf in float32.
    """
    value = check_finite(name, value)
    if abs(value) > FLOAT32_MAX:
        raise InputError(
            f"`{name}` must be a finite number within float32's range "
            f"(|{name}| <= {FLOAT32_MAX:.3g}). Received: {name}={format_value(value)}"
        )
    return value


def check_positive(name: str, value: Any) -> float:
    """Returns `value` as a `float`, or raises unless it is a positive finite number."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InputError(
            f"`{name}` must be a positive, finite number. Received: {name}={format_value(value)}"
        )
    return float(value)


def check_unit_interval(name: str, value: Any) -> float:
    """Returns `value` as a `float`, or raises unless it is a real number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise InputError(f"`{name}` must be in [0, 1]. Received: {name}={format_value(value)}")
    return float(value)


def check_choice(name: str, value: Any, choices: tuple) -> Any:
    """Returns `value`, or raises unless it is one of `choices` (listed in the message)."""
    if value not in choices:
        valid = ", ".join(repr(choice) for choice in choices)
        raise InputError(f"`{name}` must be one of {valid}. Received: {name}={value!r}")
    return value


def nearest_valid_sizes(size: int, multiple: int) -> tuple[int, ...]:
    """Returns the valid sizes (multiples of `multiple`, >= it) around `size`."""
    below = (size // multiple) * multiple
    above = below + multiple
    return tuple(s for s in (below, above) if s >= multiple)


def validate_image_size(name: str, size: Any, multiple: int) -> int:
    """Checks an image side; never rounds silently.

    Raises:
        ValueError: naming the nearest valid sizes when `size` is not a
            positive multiple of `multiple`.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise InputError(f"`{name}` must be an integer. Received: {name}={size!r}")
    if size < multiple or size % multiple:
        options = " or ".join(str(s) for s in nearest_valid_sizes(int(size), multiple))
        raise InputError(
            f"`{name}` must be a positive multiple of {multiple} (the VAE "
            f"downsamples 8x and the UNet halves the latent 3 more times). "
            f"Nearest valid sizes: {options}. Received: {name}={size}"
        )
    return int(size)


def check_sequence_length(name: str, length: Any) -> int:
    """Checks a text-encoding length: a positive multiple of 77 (one per chunk).

    Raises:
        ValueError: saying what is accepted and echoing `length`.
    """
    if (
        isinstance(length, bool)
        or not isinstance(length, (int, np.integer))
        or length < MAX_PROMPT_LENGTH
        or length % MAX_PROMPT_LENGTH
    ):
        raise InputError(
            f"`{name}` must be a positive multiple of {MAX_PROMPT_LENGTH} (one "
            f"{MAX_PROMPT_LENGTH}-token chunk per {CHUNK_LENGTH} prompt tokens, see "
            f"Explorer.encode_text(long_prompts=True)). Received: {name}={length!r}"
        )
    return int(length)


# Array-aware variants for the numpy modules (schedules, interpolation), whose
# arguments may be arrays: an array in a message is abridged, not `repr`-ed.


def format_array_value(value: Any) -> str:
    """`format_value` for arguments that may be arrays.

    An n-d array prints as `np.array2string` (at most 12 items, 3 at each end,
    6 decimals); a 0-d array as its scalar; anything else as `format_value`.
    """
    if isinstance(value, np.ndarray) and value.ndim > 0:
        return np.array2string(value, threshold=12, edgeitems=3, precision=6)
    if isinstance(value, np.ndarray):
        value = value.item()
    return format_value(value)


def check_index(name: str, value: Any, minimum: int) -> int:
    """`check_int(name, value, minimum)`, echoing an array argument with `format_array_value`."""
    try:
        return check_int(name, value, minimum)
    except ValueError:
        if not isinstance(value, np.ndarray):
            raise
    raise InputError(
        f"`{name}` must be an integer >= {minimum}. Received: {name}={format_array_value(value)}"
    )


def check_positions(name: str, t: Any, *, max_ndim: int | None = None) -> np.ndarray:
    """Returns positions `t` as a float64 array, or raises unless real, finite and in [0, 1].

    Args:
        name: the argument's name, for the message.
        t: a number or an array of numbers (bools refused).
        max_ndim: the most dimensions accepted (`None`: any).
    """
    array = np.asarray(t)
    if array.dtype == bool or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise InputError(
            f"`{name}` must be a real number or an array of real numbers in [0, 1]. "
            f"Received: {name}={format_array_value(t)} (dtype {array.dtype})"
        )
    if max_ndim is not None and array.ndim > max_ndim:
        raise InputError(
            f"`{name}` must be a scalar or a 1-D array of weights. "
            f"Received: {name} with shape {array.shape}"
        )
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)) or np.any(array < 0.0) or np.any(array > 1.0):
        raise InputError(
            f"`{name}` must be in [0, 1]. Received: {name}={format_array_value(array)}"
        )
    return array
