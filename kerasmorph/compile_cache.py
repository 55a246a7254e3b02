"""XLA's persistent compilation cache, so a second run skips the XLA compiles (stdlib only).

TensorFlow can keep every XLA executable it compiles in a folder and load it
in later processes (`TF_XLA_FLAGS=--tf_xla_persistent_cache_directory=DIR`).
XLA keys each entry by the fingerprint of the compiled graph (its ops,
shapes and dtypes: image size, batch, context length, precision plan and
scheduler all change it), and weights are arguments of the graph, not part
of it, so a hit is the same executable a cold compile would give. kerasmorph
adds to that key the folder `xla/tf-<version>-<cpu>` (TensorFlow's version and
a hash of the CPU's instruction sets), so a home folder shared between
machines never loads code built for another CPU.

What this module adds around TensorFlow's cache:

- where it lives: `$KERASMORPH_CACHE_DIR/xla` (default `~/.cache/kerasmorph/xla`,
  the folder `kerasmorph.weights.cache_dir()` names); `KERASMORPH_NO_CACHE=1`,
  `--no-cache` or `Explorer(compile_cache=False)` turn it off;
- a size cap (`$KERASMORPH_COMPILE_CACHE_MAX_MB`, default 2048) enforced at
  start-up by evicting the least recently used entries (by access time, or
  modification time where the file system does not keep access times);
- entries that are not whole (a truncated or overwritten file,
  which TensorFlow would fail on with "Read less bytes than requested") are
  removed before TensorFlow can read them, so they are compiled again;
- concurrent processes: TensorFlow writes each entry under a temporary name
  and renames it, and eviction tolerates files another process removed.

TensorFlow reads its XLA flags once, at the first XLA compile of the process,
so the cache must be enabled before that: every `Explorer` enables it when it
is built (the CLI builds one before compiling anything).

Example:

```python
from kerasmorph import compile_cache

directory = compile_cache.enable()  # Path, or None when turned off.
```
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import time
from pathlib import Path

from kerasmorph.errors import InputError
from kerasmorph.weights import cache_dir

FLAG = "--tf_xla_persistent_cache_directory"
DISABLE_ENV = "KERASMORPH_NO_CACHE"
MAX_MB_ENV = "KERASMORPH_COMPILE_CACHE_MAX_MB"
DEFAULT_MAX_MB = 2048
ENTRY_SUFFIX = ".pb"
CHECKED_STAMP = ".checked"

# The directory this process gave TensorFlow (or found in TF_XLA_FLAGS); False: turned off.
_active: Path | bool | None = None


def default_directory() -> Path:
    """`<kerasmorph cache>/xla/tf-<version>-<cpu>`: one folder per TensorFlow and CPU."""
    try:
        tf_version = importlib.metadata.version("tensorflow")
    except importlib.metadata.PackageNotFoundError:
        tf_version = "none"
    return cache_dir() / "xla" / f"tf-{tf_version}-{_cpu_fingerprint()}"


def _cpu_fingerprint() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as file:
            flags = next((line for line in file if line.startswith("flags")), "")
    except OSError:
        flags = ""
    text = f"{platform.machine()} {' '.join(sorted(flags.split(':')[-1].split()))}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def disabled_by_environment() -> bool:
    """Whether `$KERASMORPH_NO_CACHE` is set to a true value (1, true, yes)."""
    return os.environ.get(DISABLE_ENV, "").strip().lower() in {"1", "true", "yes"}


def max_bytes() -> int:
    """The size cap: `$KERASMORPH_COMPILE_CACHE_MAX_MB` MiB, default 2048."""
    text = os.environ.get(MAX_MB_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_MB * 2**20
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise InputError(
            f"${MAX_MB_ENV} must be a whole number of MiB (0 or more); received {text!r}"
        )
    return value * 2**20


def _flag_directory(flags: str) -> str | None:
    for item in flags.split():
        if item.startswith(FLAG + "="):
            return item.split("=", 1)[1]
    return None


def enable(requested: bool | str | os.PathLike | None = None) -> Path | None:
    """Turns XLA's persistent cache on for this process (before its first XLA compile).

    Args:
        requested: None: the default folder unless `$KERASMORPH_NO_CACHE` is
            set (and the folder already in force, if any); True: the default
            folder; False: no cache; a path: that folder.

    Returns:
        The cache folder in force, or None when there is none.

    Raises:
        InputError: the request contradicts what this process already uses
            (TensorFlow reads the setting once), or the size cap is not a number.
    """
    global _active
    explicit = requested is not None
    if requested is None:
        requested = not disabled_by_environment()
    if _active is None:
        given = _flag_directory(os.environ.get("TF_XLA_FLAGS", ""))
        if given is not None:  # The user's own TF_XLA_FLAGS win; never pruned by us.
            _active = Path(given)
    if _active is not None:
        if explicit and not _agrees(requested):
            in_force = "off" if _active is False else f"in {_active}"
            raise InputError(
                f"the XLA compilation cache is already {in_force} in this process and "
                "TensorFlow reads that setting once; set it before the first Explorer "
                f"(or ${DISABLE_ENV}=1 / TF_XLA_FLAGS) instead"
            )
        return _active or None
    if requested is False:
        _active = False
        return None
    directory = default_directory() if requested is True else Path(requested).expanduser()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        prune(directory, max_bytes())
    except OSError:
        _active = False  # A read-only home only costs the compiles.
        return None
    flags = os.environ.get("TF_XLA_FLAGS", "")
    os.environ["TF_XLA_FLAGS"] = f"{flags} {FLAG}={directory}".strip()
    _active = directory
    return directory


def _agrees(requested: bool | str | os.PathLike) -> bool:
    if requested is False:
        return _active is False
    if requested is True:
        return _active is not False
    return (
        _active is not False and Path(requested).expanduser().resolve() == Path(_active).resolve()
    )


def entries(directory: str | os.PathLike) -> list[Path]:
    """The cache entries (`*.pb`) in `directory`."""
    try:
        return [path for path in Path(directory).iterdir() if path.name.endswith(ENTRY_SUFFIX)]
    except OSError:
        return []


# TensorFlow's `XlaSerializedCacheEntry`: key = 1, compilation_result = 2, executable = 3.
ENTRY_FIELDS = frozenset({1, 2, 3})


def is_complete_entry(data: bytes) -> bool:
    """Whether `data` is a whole cache entry: protobuf fields that end exactly at its
    end and include the key, the compilation result and the executable.

    A truncated or overwritten entry fails this; the fields' contents are not checked.
    """
    position, end = 0, len(data)
    seen = set()
    while position < end:
        key, position = _varint(data, position)
        if key is None or key >> 3 == 0:
            return False
        seen.add(key >> 3)
        wire_type = key & 7
        if wire_type == 0:
            _, position = _varint(data, position)
            if position is None:
                return False
        elif wire_type == 1:
            position += 8
        elif wire_type == 2:
            length, position = _varint(data, position)
            if length is None:
                return False
            position += length
        elif wire_type == 5:
            position += 4
        else:
            return False
        if position is None or position > end:
            return False
    return ENTRY_FIELDS <= seen


def _varint(data: bytes, position: int) -> tuple[int | None, int | None]:
    value, shift = 0, 0
    while position < len(data) and shift < 64:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
    return None, None


def prune(directory: str | os.PathLike, cap_bytes: int) -> list[Path]:
    """Removes incomplete entries, then the least recently used ones above `cap_bytes`.

    Only the entries written since the last pass are read (the `.checked`
    stamp's time), so a full cache costs a listing, not a read of every file.

    Args:
        directory: the cache folder.
        cap_bytes: the most the entries may take together.

    Returns:
        The entries removed.
    """
    started = time.time()
    stamp = Path(directory) / CHECKED_STAMP
    try:
        checked_until = stamp.stat().st_mtime
    except OSError:
        checked_until = 0.0
    removed, kept = [], []
    for path in entries(directory):
        try:
            stat = path.stat()
            # Any write changes the mtime: what was checked and not written since is whole.
            complete = stat.st_mtime < checked_until or is_complete_entry(path.read_bytes())
        except OSError:  # Removed by another process meanwhile.
            continue
        if complete:
            kept.append((max(stat.st_atime, stat.st_mtime), stat.st_size, path))
        elif _remove(path):
            removed.append(path)
    total = sum(size for _, size, _ in kept)
    for _, size, path in sorted(kept):
        if total <= cap_bytes:
            break
        total -= size
        if _remove(path):
            removed.append(path)
    # The pass's start, not its end: an entry written meanwhile is checked next time.
    stamp.touch()
    os.utime(stamp, (started, started))
    return removed


def _remove(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
