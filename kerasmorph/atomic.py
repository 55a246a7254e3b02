"""Atomic file writes: the one helper every writer uses.

A file is written under a hidden temporary name in its own directory and
renamed over the final name with `os.replace` only once it is complete, so a
killed process never leaves a half-written file under the name a reader
looks for. Stdlib only.

`temporary_files(directory)` lists the temporaries a killed writer left in a
folder, for the next run there to remove (`kerasmorph.renders` does, under
its directory lock). Outside a locked folder, a temporary's name carries its
writer's pid, and `atomic_path(..., remove_stale=True)` (the GIF and MP4
writers) removes the temporaries of the same final name whose writer is no
longer running on this host.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

# `.{stem}.{8 hex digits}-{pid}.tmp{suffix}`, the names `atomic_path` gives its temporaries
# (older versions wrote them without `-{pid}`).
TEMPORARY_NAME = re.compile(r"^\..+\.[0-9a-f]{8}(-\d+)?\.tmp(\.[^./]+)?$")


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike, *, mode: int | None = None, remove_stale: bool = False
) -> Iterator[Path]:
    """Yields a temporary path next to `path`; renames it to `path` on success.

    The temporary name is hidden (it starts with a dot, so `*.png` globs skip
    it) and keeps the suffix of `path`, so writers that look at the suffix
    still see the right one. On any exception, including KeyboardInterrupt,
    the temporary file (or folder) is removed and `path` is left as it was.

    Args:
        path: the final file name; its parent folder is created if needed.
        mode: permission bits to give the file before the rename (e.g. 0o644);
            default: whatever the writer created it with.
        remove_stale: first remove the temporaries of `path` that a killed
            writer left (`stale_temporaries`); it lists the folder, so
            writers of many small files (frames) leave it off.

    Example:

    ```python
    with kerasmorph.atomic.atomic_path("out/frame.png") as temporary:
        image.save(temporary, format="PNG")
    ```
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if remove_stale:
        for stale in stale_temporaries(path):
            with contextlib.suppress(OSError):
                stale.unlink()
    temporary = path.with_name(temporary_name(path))
    try:
        yield temporary
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise


def temporary_name(path: str | os.PathLike) -> str:
    """A fresh hidden temporary name for `path`: `.{stem}.{8 hex}-{pid}.tmp{suffix}`."""
    path = Path(path)
    return f".{path.stem}.{secrets.token_hex(4)}-{os.getpid()}.tmp{path.suffix}"


def stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """The temporaries of final name `path` whose writer is no longer running.

    Only temporaries that name their writer's pid count, and only when no
    process with that pid runs on this host (a folder shared between hosts
    may hold another host's live temporaries: they are left alone, as are
    those of older versions, which carry no pid).

    Args:
        path: the final file name.

    Returns:
        The paths, sorted.
    """
    path = Path(path)
    stale = []
    for temporary in temporary_files(path.parent, path.stem):
        match = re.search(r"-(\d+)\.tmp", temporary.name)
        if match and temporary.name.endswith(f".tmp{path.suffix}"):
            if not _running(int(match.group(1))):
                stale.append(temporary)
    return stale


def _running(pid: int) -> bool:
    """Whether a process with `pid` runs on this host (ours counts as running)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # Another user's live process.
    return True


def temporary_files(directory: str | os.PathLike, stem: str | None = None) -> list[Path]:
    """The temporaries `atomic_path` made in `directory` (of final names with `stem`, if given).

    A killed process leaves them behind; only a caller that knows no live
    writer uses the folder (e.g. under a lock) may delete them.

    Args:
        directory: the folder to look in (not recursive).
        stem: only the temporaries of final names with this stem
            (`"frame_00003"` for `frame_00003.png`); default: all.

    Returns:
        The paths, sorted; `[]` when the folder does not exist.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    pattern = TEMPORARY_NAME
    if stem is not None:
        pattern = re.compile(rf"^\.{re.escape(stem)}\.[0-9a-f]{{8}}(-\d+)?\.tmp(\.[^./]+)?$")
    prefix = "." if stem is None else f".{stem}."
    return sorted(path for path in directory.glob(f"{prefix}*") if pattern.match(path.name))
