"""kerasmorph's exceptions: one small hierarchy under `KerasmorphError`.

The command line reports every `KerasmorphError` as one line on stderr with
exit status 2 (`kerasmorph.cli.main`); anything that is not one of these (nor
an OS or decode error) is a bug and keeps its traceback. Each subclass that
stands for bad input is also a `ValueError` (and `NonFiniteOutputError` a
`FloatingPointError`), so code that caught the built-in type keeps working.

| class | also a | raised for |
|---|---|---|
| `KerasmorphError` | `Exception` | the base: any error kerasmorph reports |
| `InputError` | `ValueError` | an argument or flag that cannot be used |
| `ResourceLimitError` | `ValueError` | a request too large for this machine |
| `FileFormatError` | `ValueError` | a file that cannot be read as what it should hold |
| `RenderDirectoryError` | `ValueError` | a render directory that cannot be used or resumed |
| `NonFiniteOutputError` | `FloatingPointError` | NaN or Inf produced by denoising or decoding |

Stdlib only, so `import kerasmorph.errors` is cheap.

Example:

```python
import kerasmorph

try:
    kerasmorph.models.textual_inversion.load_textual_inversion("broken.safetensors")
except kerasmorph.KerasmorphError as error:
    print(f"error: {error}")
```
"""

from __future__ import annotations

import os

__all__ = [
    "FileFormatError",
    "InputError",
    "KerasmorphError",
    "NonFiniteOutputError",
    "RenderDirectoryError",
    "ResourceLimitError",
]


class KerasmorphError(Exception):
    """The base of kerasmorph's own exceptions: a failure reported in one line.

    Catch it to handle every error kerasmorph raises on purpose; built-in
    errors (`ValueError` from a validator, `OSError` from a file) may still
    come through alongside it.
    """


class InputError(KerasmorphError, ValueError):
    """An argument or command-line flag that cannot be used.

    The message says what is accepted and echoes what was received
    ("`strength` must be in [0, 1]. Received: strength=1.3").
    """


class ResourceLimitError(InputError):
    """A request refused up front because it cannot fit this machine.

    The message gives the estimated memory (or frame count) and the flag that
    decides it.
    """


class FileFormatError(KerasmorphError, ValueError):
    """A file that cannot be read as what it should hold.

    Args:
        path: the file.
        message: what is wrong with it; the error's text is
            "`path`: `message`" unless the message names the file already.

    Attributes:
        filename: the file, as a string (as `OSError.filename`).
    """

    def __init__(self, path: str | os.PathLike, message: str):
        self.filename = os.fspath(path)
        if self.filename not in message:
            message = f"{self.filename}: {message}"
        super().__init__(message)


class RenderDirectoryError(KerasmorphError, ValueError):
    """A render directory that cannot be used: another spec, a corrupt manifest, a lock."""


class NonFiniteOutputError(KerasmorphError, FloatingPointError):
    """Raised when denoising or decoding produced NaN or Inf values.

    The message names the stage and the precision, and says which input was
    not finite when one was (then the precision is not to blame).
    """
