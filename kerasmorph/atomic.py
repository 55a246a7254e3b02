"""Atomic file writes: the one helper every writer uses.

A file is written under a hidden temporary name in its own directory and
renamed over the final name with `os.replace` only once it is complete, so a
killed process never leaves a half-written file under the name a reader
looks for. Stdlib only.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, mode: int | None = None) -> Iterator[Path]:
    """Yields a temporary path next to `path`; renames it to `path` on success.

    The temporary name is hidden (it starts with a dot, so `*.png` globs skip
    it) and keeps the suffix of `path`, so writers that look at the suffix
    still see the right one. On any exception, including KeyboardInterrupt,
    the temporary file (or folder) is removed and `path` is left as it was.

    Args:
        path: the final file name; its parent folder is created if needed.
        mode: permission bits to give the file before the rename (e.g. 0o644);
            default: whatever the writer created it with.

    Example:

    ```python
    with kerasmorph.atomic.atomic_path("out/frame.png") as temporary:
        image.save(temporary, format="PNG")
    ```
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        yield temporary
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise
