"""An exclusive lock per render directory, with a shared mode made for sharded workers.

Two processes must never write one render directory: one could delete (or
count as done) the other's frames. `DirectoryLock` holds an `fcntl.flock` on
`DIR/.kerasmorph.lock` for as long as a render runs, and writes the holder's
pid and host into the file for the error a second process gets. The kernel
releases a flock when its process dies (kill -9 included), so a lock file
left behind by a killed render is stale by construction: the next run simply
takes it. Its contents are only ever read for the message.

Modes:

- A single-process render (`shard=(0, 1)`) holds the lock exclusively: any
  other render or `--overwrite` of that directory is refused while it lives.
- Worker `i` of `n` (`n > 1`, `kerasmorph.renders.shard_of_cluster`) holds it
  *shared* with the other workers of its cluster, which render disjoint
  frames of one spec, plus `DIR/.kerasmorph.worker-i-of-n.lock` exclusively
  (so two copies of one worker, or workers of clusters of different sizes,
  are refused). A single-process render, or a worker of another cluster
  size, is refused while any worker lives.

Every acquisition, and every removal of a lock file, happens under a brief
"setup" flock on the directory itself. That makes the check-then-act of a
render's setup (read the manifest, compare, maybe delete the frames of another
spec, write the manifest) atomic between processes, lets the first worker
take the lock exclusively for that setup and then share it, and makes
removing the lock files at the end race-free. `DirectoryLock.sole` tells the
setup whether another process holds the directory (then `--overwrite` and the
cleanup of temporary files are off limits).

A directory the process cannot write (a read-only mount) is not locked when
its lock file cannot be created; `DirectoryLock.writable` is then False, and a
render must not write anything there.

On NFS, Linux emulates flock with byte-range locks that work across hosts;
that is why the holder's host is recorded. Stdlib only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import socket
import time
from pathlib import Path

from kerasmorph.errors import RenderDirectoryError

try:
    import fcntl
except ImportError:  # Windows: no flock; renders there are not locked.
    fcntl = None

LOCK_NAME = ".kerasmorph.lock"
WORKER_LOCK_PREFIX = ".kerasmorph.worker-"
# How long a process waits for another's setup (reading and writing a manifest: milliseconds).
SETUP_TIMEOUT_S = 60.0
# Errors that mean "this directory is read-only for us", not a bug.
_READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)


class DirectoryLockedError(RenderDirectoryError):
    """Another live process is rendering into the directory.

    Attributes:
        directory: the render directory.
        holders: what the holders' lock files say (pid, host, shard), as far
            as they could be read.
    """

    def __init__(self, directory: Path, holders: list[Holder], hint: str = ""):
        self.directory = directory
        self.holders = holders
        who = ", ".join(holder.describe() for holder in holders) or "an unknown process"
        message = (
            f"{directory} is being rendered by {who}: two processes must not write one "
            "render directory. Wait for it to finish (or stop it), or choose another "
            "directory."
        )
        super().__init__(f"{message} {hint}".strip())


@dataclasses.dataclass(frozen=True)
class Holder:
    """What a lock file says about the process holding it.

    Attributes:
        pid: its process id (None when the file could not be read).
        host: the host it runs on.
        shard: `(task_index, num_tasks)` it renders.
        since: when it took the lock, seconds since the epoch.
    """

    pid: int | None
    host: str
    shard: tuple[int, int]
    since: float | None

    def describe(self) -> str:
        """E.g. "pid 123 on host1 (worker 0 of 2, since 12:00:03)"."""
        text = f"pid {self.pid} on {self.host}" if self.pid is not None else "a process"
        details = []
        if self.shard[1] > 1:
            details.append(f"worker {self.shard[0]} of {self.shard[1]}")
        if self.since is not None:
            details.append(f"since {time.strftime('%H:%M:%S', time.localtime(self.since))}")
        return f"{text} ({', '.join(details)})" if details else text

    @classmethod
    def read(cls, path: Path) -> Holder:
        """The holder a lock file names; unknown fields when it cannot be parsed."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            shard = tuple(int(n) for n in data.get("shard", (0, 1)))
            return cls(int(data["pid"]), str(data["host"]), shard, float(data["since"]))
        except (OSError, ValueError, KeyError, TypeError):
            return cls(None, "", (0, 1), None)


class DirectoryLock:
    """The lock of one render directory, held by one render.

    Use it as a context manager: entering takes the setup flock and the lock
    (or raises `DirectoryLockedError`); the caller sets the directory up, then
    calls `end_setup()`; leaving releases everything and removes the lock
    files no other process holds.

    Args:
        directory: the render directory (must exist).
        shard: `(task_index, num_tasks)` of this render; `num_tasks > 1`
            shares the lock with the other workers of the cluster.

    Attributes:
        sole: True when no other process holds the directory: the setup may
            replace its manifest, delete its frames and temporary files.
        writable: False when the directory is read-only (no lock was taken:
            the caller must not write there).

    Example:

    ```python
    with kerasmorph.locks.DirectoryLock("renders/cat-dog") as lock:
        ...  # read / write the manifest; lock.sole says whether others render here
        lock.end_setup()
        ...  # render the frames
    ```
    """

    def __init__(self, directory: str | os.PathLike, *, shard: tuple[int, int] = (0, 1)):
        self.directory = Path(directory)
        self.shard = (int(shard[0]), int(shard[1]))
        self.path = self.directory / LOCK_NAME
        self.worker_path = (
            self.directory / f"{WORKER_LOCK_PREFIX}{self.shard[0]}-of-{self.shard[1]}.lock"
            if self.shard[1] > 1
            else None
        )
        self.sole = False
        self.writable = True
        self._fd: int | None = None
        self._worker_fd: int | None = None
        self._setup_fd: int | None = None

    # ------------------------------------------------------------------ protocol

    def __enter__(self) -> DirectoryLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def acquire(self) -> None:
        """Takes the setup flock, then the lock; the setup flock stays held until `end_setup`.

        Raises:
            DirectoryLockedError: when a live process holds the directory in a
                way this render cannot share.
        """
        if fcntl is None:
            self.sole = True
            return
        self._setup_fd = _take_setup_flock(self.directory)
        try:
            self._acquire_under_setup()
        except BaseException:
            self._close_all()
            raise

    def end_setup(self) -> None:
        """Ends the setup: a worker's exclusive hold becomes shared; the setup flock is freed."""
        if self._fd is not None and self.shard[1] > 1:
            # Safe although flock's conversion is not atomic: every acquisition
            # happens under the setup flock, which this process still holds.
            fcntl.flock(self._fd, fcntl.LOCK_SH)
        self.sole = False if self.shard[1] > 1 else self.sole
        _close(self._setup_fd, unlock=True)
        self._setup_fd = None

    def release(self) -> None:
        """Releases the lock and removes the lock files that no other process holds."""
        if fcntl is None or (self._fd is None and self._worker_fd is None):
            self._close_all()
            return
        try:
            if self._setup_fd is None:
                self._setup_fd = _take_setup_flock(self.directory)
            if self._worker_fd is not None:
                with contextlib.suppress(OSError):
                    self.worker_path.unlink()
                _close(self._worker_fd, unlock=True)
                self._worker_fd = None
            _close(self._fd, unlock=True)
            self._fd = None
            # The last holder removes the lock file (nobody can be waiting for
            # it: every acquisition happens under the setup flock held here).
            if _is_free(self.path):
                with contextlib.suppress(OSError):
                    self.path.unlink()
        except OSError:
            pass  # The directory went away or became read-only: nothing to clean.
        finally:
            self._close_all()

    # ------------------------------------------------------------------ internals

    def _acquire_under_setup(self) -> None:
        # access(2) reports a read-only mount (EROFS) as well as permissions.
        self.writable = os.access(self.directory, os.W_OK)
        fd = _open_lock_file(self.path)
        if fd is None:  # A read-only directory without a lock file: nothing to lock.
            self.writable, self.sole = False, True
            return
        self._fd = fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.sole = True
            # Lock files of workers killed earlier: nobody holds them.
            for path in self.directory.glob(f"{WORKER_LOCK_PREFIX}*.lock"):
                if _is_free(path):
                    with contextlib.suppress(OSError):
                        path.unlink()
        except BlockingIOError:
            self.sole = False
            if self.shard[1] == 1:
                raise DirectoryLockedError(self.directory, self.live_holders()) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # A single-process render holds it.
                raise DirectoryLockedError(self.directory, self.live_holders()) from None
            others = self._live_workers()
            sizes = sorted({holder.shard[1] for holder in others} - {self.shard[1]})
            if sizes:
                raise DirectoryLockedError(
                    self.directory,
                    others,
                    f"(Those are workers of a {sizes[0]}-worker cluster; this is worker "
                    f"{self.shard[0]} of {self.shard[1]}.)",
                ) from None
        if self.sole:
            self._write_holder(fd)
        if self.worker_path is not None:
            self._worker_fd = _open_lock_file(self.worker_path)
            if self._worker_fd is not None:
                try:
                    fcntl.flock(self._worker_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = Holder.read(self.worker_path)
                    raise DirectoryLockedError(
                        self.directory,
                        [holder],
                        f"(Worker {self.shard[0]} of {self.shard[1]} is already running.)",
                    ) from None
                self._write_holder(self._worker_fd)

    def _write_holder(self, fd: int) -> None:
        text = json.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "shard": list(self.shard),
                "since": time.time(),
            }
        )
        with contextlib.suppress(OSError):  # Only for messages; a read-only fd cannot.
            os.ftruncate(fd, 0)
            os.pwrite(fd, text.encode(), 0)

    def live_holders(self) -> list[Holder]:
        """The processes holding this directory now: the exclusive holder, or the workers."""
        if fcntl is None:
            return []
        workers = self._live_workers()
        if workers:
            return workers
        return [Holder.read(self.path)] if self.path.exists() else []

    def _live_workers(self) -> list[Holder]:
        holders = []
        for path in sorted(self.directory.glob(f"{WORKER_LOCK_PREFIX}*.lock")):
            if path != self.worker_path and not _is_free(path):
                holders.append(Holder.read(path))
        return holders

    def _close_all(self) -> None:
        for name in ("_worker_fd", "_fd", "_setup_fd"):
            _close(getattr(self, name), unlock=True)
            setattr(self, name, None)


def _open_lock_file(path: Path) -> int | None:
    """Opens (creating) a lock file; read-only when it exists in a read-only directory.

    Returns None when it does not exist and cannot be created there.
    """
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        if error.errno not in _READ_ONLY_ERRNOS:
            raise
    try:
        return os.open(path, os.O_RDONLY)  # flock works on a read-only descriptor.
    except FileNotFoundError:
        return None


def _is_free(path: Path) -> bool:
    """Whether no process holds a flock on `path` (False when it cannot be told)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        _close(fd, unlock=True)


def _take_setup_flock(directory: Path, timeout_s: float = SETUP_TIMEOUT_S) -> int:
    """An exclusive flock on the directory itself, waited for up to `timeout_s`."""
    fd = os.open(directory, os.O_RDONLY)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                _close(fd, unlock=False)
                raise RenderDirectoryError(
                    f"{directory}: another kerasmorph process has been setting this render "
                    f"directory up for {timeout_s:.0f} s; try again, or choose another directory."
                ) from None
            time.sleep(0.02)


def _close(fd: int | None, *, unlock: bool) -> None:
    if fd is None:
        return
    with contextlib.suppress(OSError):
        if unlock and fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
