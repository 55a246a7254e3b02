"""Outputs never overwrite inputs: one check for every command and merge (stdlib only).

`check_output_not_input(out, inputs)` refuses an output path that is one of
the inputs (the same file after symlinks, `..` and `~`, or a hard link to
it: `os.path.samefile`), or lies inside an input folder (a diffusers folder,
an embeddings folder). An output that is a directory whose contents are
replaced (a render directory, a merged diffusers folder) also must not hold an
input. The error is one line naming both paths and the flags they came from.

Example:

```python
kerasmorph.paths.check_output_not_input("in.png", {"IMAGE": "in.png"}, flag="--out")
# InputError: --out 'in.png' is the input IMAGE 'in.png': an input is never overwritten. ...
```
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from kerasmorph.errors import InputError

PathLike = str | os.PathLike


def resolved(path: PathLike) -> Path:
    """`path` with `~`, symlinks and `..` resolved (it need not exist)."""
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def same_path(a: PathLike, b: PathLike) -> bool:
    """Whether `a` and `b` name one file or folder (after symlinks; hard links too)."""
    if resolved(a) == resolved(b):
        return True
    try:
        return os.path.samefile(os.path.expanduser(a), os.path.expanduser(b))
    except (OSError, ValueError):
        return False


def _inside(path: Path, folder: Path) -> bool:
    return folder in path.parents


def check_output_not_input(
    out: PathLike,
    inputs: Mapping[str, PathLike | None],
    *,
    flag: str = "--out",
    replaces_contents: bool = False,
) -> None:
    """Refuses an output that would overwrite (or be written inside) an input.

    Args:
        out: the output file or folder (it need not exist).
        inputs: a label for the message (`"IMAGE"`, `"--embedding"`,
            `"target"`) -> an input path; None values are skipped.
        flag: how the output is named in the message (`"--out"`, `"out"`).
        replaces_contents: `out` is a folder whose contents are written over
            or replaced (a render directory, a merged diffusers folder):
            inputs inside it are refused too.

    Raises:
        InputError: (a `ValueError`) of one line naming the output and the
            input: when `out` is an input, lies inside an input folder, or
            (`replaces_contents`) holds an input.

    Example:

    ```python
    kerasmorph.paths.check_output_not_input(
        "merged/", {"target": "a/", "model 1": "b/"}, flag="out", replaces_contents=True
    )
    ```
    """
    target = resolved(out)
    for label, path in inputs.items():
        if path is None:
            continue
        source = resolved(path)
        received = f"Received: {flag}={os.fspath(out)!r}, {label}={os.fspath(path)!r}"
        if same_path(out, path):
            kind = "folder" if source.is_dir() else "file"
            raise InputError(
                f"{flag} is the input {kind} {label}: an input is never overwritten; "
                f"choose another {flag}. {received}"
            )
        if source.is_dir() and _inside(target, source):
            raise InputError(
                f"{flag} lies inside the input folder {label}: {flag} must not be an input "
                f"folder or lie inside one; choose another {flag}. {received}"
            )
        if replaces_contents and _inside(source, target):
            raise InputError(
                f"The input {label} lies inside {flag}, whose contents are written over; "
                f"choose another {flag}, or move the input. {received}"
            )
