"""Selects the TensorFlow backend for Keras before Keras is first imported.

Every kerasmorph module that needs Keras imports it through `keras_module()`
so that `KERAS_BACKEND` defaults to `tensorflow` and a conflicting backend is
reported clearly instead of failing deep inside KerasCV.

`tensorflow_module()` (which `keras_module()` calls first) imports TensorFlow
with its C++ start-up notices held to `TF_CPP_MIN_LOG_LEVEL`: TensorFlow ≥ 2.19
prints some INFO lines (the oneDNN notice, "Could not find cuda drivers")
through absl before it reads the variable. While TensorFlow is imported,
stderr goes through a small child process that drops log lines below the
level and passes every other line on at once (so a FATAL line before an abort
still shows). `import kerasmorph` sets the level (see
`kerasmorph._quiet_tensorflow_start_up`) unless the user did.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import BinaryIO

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
    tensorflow_module()
    import keras

    return keras


# A C++ log line's severity letter: absl's `I0101 12:00:00.000000  123 file.cc:1] ...`
# or TensorFlow's own `2025-01-01 12:00:00.000000: I file.cc:1] ...`.
_LOG_LINE = re.compile(
    r"^(?:([IWEF])\d{4} [\d:.]+ +\d+ |\d{4}-\d\d-\d\d [\d:.]+: ([IWEF]) )\S+:\d+\] "
)
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}
_ABSL_BANNER = "WARNING: All log messages before absl::InitializeLog() is called"


def _kept_lines(lines: Iterable[str], min_level: int) -> Iterator[str]:
    dropping = False
    for line in lines:
        match = _LOG_LINE.match(line)
        if match:
            dropping = _SEVERITY[match.group(1) or match.group(2)] < min_level
        elif line.startswith(_ABSL_BANNER):
            dropping = min_level >= 2
        elif not line.startswith((" ", "\t", "To enable the following instructions")):
            dropping = False
        if not dropping:
            yield line


def drop_below_level(text: str, min_level: int) -> str:
    """Drops C++ log lines of `text` below `min_level` (0 INFO … 3 FATAL), with their continuations.

    Lines that are not log lines (Python warnings, tracebacks) are kept, except
    the continuation lines of a dropped message and absl's pre-initialisation
    banner (a WARNING) when `min_level` ≥ 2.
    """
    return "".join(_kept_lines(text.splitlines(keepends=True), min_level))


def forward_below_level(source: BinaryIO, sink: BinaryIO, min_level: int) -> None:
    """Copies `source` to `sink` line by line as it comes, as `drop_below_level` would."""
    lines = (line.decode("utf-8", "replace") for line in iter(source.readline, b""))
    for line in _kept_lines(lines, min_level):
        sink.write(line.encode("utf-8"))
        sink.flush()


# Runs `forward_below_level` from this file in a child process (no kerasmorph
# import, no site): it outlives a TensorFlow import that aborts after a FATAL line.
_FORWARDER = (
    "import importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location('kerasmorph_forwarder', sys.argv[1])\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(module)\n"
    "module.forward_below_level(sys.stdin.buffer, sys.stdout.buffer, int(sys.argv[2]))\n"
)


@contextlib.contextmanager
def _stderr_held_to(min_level: int) -> Iterator[None]:
    """Sends file descriptor 2 through `forward_below_level` (in a child process) meanwhile."""
    import subprocess

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # No usable stderr: nothing to hold.
        yield
        return
    read_end, write_end = os.pipe()
    try:
        child = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _FORWARDER, __file__, str(min_level)],
            stdin=read_end,
            stdout=saved,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        for fd in (read_end, write_end, saved):
            os.close(fd)
        yield
        return
    os.close(read_end)
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(saved, 2)  # Closes the pipe's last write end: the child reads to EOF.
        os.close(saved)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)


def tensorflow_module() -> ModuleType:
    """Returns the `tensorflow` module, its start-up notices held to `TF_CPP_MIN_LOG_LEVEL`."""
    if "tensorflow" not in sys.modules:
        try:
            min_level = int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
        except ValueError:
            min_level = 0
        if min_level > 0 and os.name == "posix":
            with _stderr_held_to(min_level):
                import tensorflow
    import tensorflow

    return tensorflow
