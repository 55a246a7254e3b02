"""kerasmorph: explore the latent spaces of Stable Diffusion with Keras 3.

`import kerasmorph` is cheap: the numpy helpers (schedules, interpolation)
load at once, while TensorFlow, Keras and KerasCV load only when a model is
needed (PEP 562 module `__getattr__`).

Example:

```python
import kerasmorph

explorer = kerasmorph.Explorer("tiny", img_height=128, img_width=128)
encoding = explorer.encode_text("a red circle")
images = explorer.generate_image(encoding, num_steps=5, seed=0)
```

kerasmorph's own exceptions derive from `kerasmorph.KerasmorphError` (the
hierarchy is in `kerasmorph.errors`); those for bad input are `ValueError`s too.
"""

from __future__ import annotations

import importlib
import os
import shutil
from typing import Any

__version__ = "0.1.0"


def _quiet_tensorflow_start_up() -> None:
    """Hides TensorFlow's C++ start-up lines, unless `TF_CPP_MIN_LOG_LEVEL` is already set.

    Runs before any kerasmorph module imports TensorFlow. Level 2 hides INFO
    and WARNING (the oneDNN and CPU-feature notices); with no NVIDIA driver and
    no TPU device, level 3 also hides the ERROR lines of a CUDA build that
    finds no GPU (`failed call to cuInit`). `kerasmorph info` says what
    TensorFlow found and why. (The probes are `kerasmorph.devices.nvidia_driver`
    and `tpu_device_files`, in short: the package root imports no submodule.)
    """
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return
    try:
        tpu = any(name.startswith("accel") for name in os.listdir("/dev"))
        vfio = os.listdir("/dev/vfio") if os.path.isdir("/dev/vfio") else []
        tpu = tpu or any(name.isdigit() for name in vfio)
    except OSError:
        tpu = False
    nvidia = os.path.exists("/proc/driver/nvidia") or shutil.which("nvidia-smi") is not None
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2" if nvidia or tpu else "3"


_quiet_tensorflow_start_up()

# Public name -> submodule that defines it. Submodules that need TensorFlow
# are imported only on first access.
_LAZY_ATTRIBUTES = {
    "Explorer": "kerasmorph.explorer",
    "PRESETS": "kerasmorph.presets",
    "MissingWeightsError": "kerasmorph.weights",
    "IncompleteConversionError": "kerasmorph.weights",
    "find_weights": "kerasmorph.weights",
    # The exception hierarchy (stdlib only, cheap to load).
    "KerasmorphError": "kerasmorph.errors",
    "InputError": "kerasmorph.errors",
    "ResourceLimitError": "kerasmorph.errors",
    "FileFormatError": "kerasmorph.errors",
    "RenderDirectoryError": "kerasmorph.errors",
    "NonFiniteOutputError": "kerasmorph.errors",
    "MorphOptions": "kerasmorph.morph_options",
}

# Submodules reachable as attributes (`kerasmorph.sampler`) on first access.
_SUBMODULES = (
    "adaptive",
    "atomic",
    "backend",
    "bench",
    "checkpoints",
    "cli",
    "constants",
    "devices",
    "embeddings",
    "errors",
    "explorer",
    "export",
    "images",
    "installs",
    "interpolation",
    "kerascv_internals",
    "licences",
    "merging",
    "metrics",
    "models",
    "morph_options",
    "noise_statistics",
    "plotting",
    "presets",
    "renders",
    "sampler",
    "schedulers",
    "schedules",
    "shapes",
    "sweeps",
    "training",
    "walks",
    "weights",
)

__all__ = ["__version__", *_LAZY_ATTRIBUTES]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"kerasmorph.{name}")
    module_name = _LAZY_ATTRIBUTES.get(name)
    if module_name is None:
        raise AttributeError(f"module 'kerasmorph' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_ATTRIBUTES) | set(_SUBMODULES))
