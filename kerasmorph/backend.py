"""Selects the TensorFlow backend for Keras before Keras is first imported.

Every kerasmorph module that needs Keras imports it through `keras_module()`
so that `KERAS_BACKEND` defaults to `tensorflow` and a conflicting backend is
reported clearly instead of failing deep inside KerasCV.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

REQUIRED_BACKEND = "tensorflow"


class BackendError(RuntimeError):
    """Raised when Keras is set up with a backend other than TensorFlow."""


def ensure_tensorflow_backend() -> None:
    """Defaults `KERAS_BACKEND` to TensorFlow and checks the active backend.

    Raises:
        BackendError: if `KERAS_BACKEND` names another backend, or Keras was
            already imported with another backend.
    """
    requested = os.environ.setdefault("KERAS_BACKEND", REQUIRED_BACKEND)
    if requested != REQUIRED_BACKEND:
        raise BackendError(
            "kerasmorph runs Keras on the TensorFlow backend (KerasCV's Stable "
            "Diffusion is TensorFlow-only in practice). Unset KERAS_BACKEND or "
            f"set KERAS_BACKEND=tensorflow. Received: KERAS_BACKEND={requested}"
        )
    if "keras" in sys.modules:
        active = sys.modules["keras"].config.backend()
        if active != REQUIRED_BACKEND:
            raise BackendError(
                "Keras was imported with another backend before kerasmorph. "
                "Restart the interpreter with KERAS_BACKEND=tensorflow. "
                f"Received: keras.config.backend()={active!r}"
            )


def keras_module() -> ModuleType:
    """Returns the `keras` module, imported on the TensorFlow backend."""
    ensure_tensorflow_backend()
    import keras

    return keras
