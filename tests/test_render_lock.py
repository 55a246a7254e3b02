"""The render-directory lock: one process per directory, shared by sharded workers."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from kerasmorph import cli, locks, renders

_SESSION = cli.Session()
# The default CLI path: the precision plan decides the step's and the decoder's XLA.
TINY = ["--model", "tiny", "--quiet", "--steps", "2"]


# --------------------------------------------------------------- one process, unit level
# flock locks belong to open file descriptions, so two DirectoryLocks of one
# process conflict exactly as two processes do.


def test_lock_is_exclusive_and_names_its_holder(tmp_path):
    with locks.DirectoryLock(tmp_path) as first:
        assert first.sole and first.writable
        first.end_setup()
        holder = json.loads((tmp_path / locks.LOCK_NAME).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(locks.DirectoryLockedError, match=rf"{tmp_path} is being rendered by "):
            locks.DirectoryLock(tmp_path).acquire()
        with pytest.raises(locks.DirectoryLockedError, match=rf"pid {os.getpid()} on "):
            locks.DirectoryLock(tmp_path, shard=(0, 2)).acquire()  # Not shareable either.
    assert not (tmp_path / locks.LOCK_NAME).exists()  # The last holder removes it.
    with locks.DirectoryLock(tmp_path) as again:  # Free again.
        assert again.sole


def test_a_lock_file_left_by_a_killed_render_is_taken(tmp_path):
    # kill -9 leaves the file, but the kernel released the flock with the process.
    (tmp_path / locks.LOCK_NAME).write_text('{"pid": 999999, "host": "gone", "since": 0}')
    (tmp_path / f"{locks.WORKER_LOCK_PREFIX}1-of-2.lock").write_text("garbage")
    with locks.DirectoryLock(tmp_path) as lock:
        assert lock.sole
        assert json.loads((tmp_path / locks.LOCK_NAME).read_text())["pid"] == os.getpid()
        assert not list(tmp_path.glob(f"{locks.WORKER_LOCK_PREFIX}*"))  # Stale: removed.


def test_workers_share_the_lock_but_not_a_shard(tmp_path):
    with locks.DirectoryLock(tmp_path, shard=(0, 2)) as first:
        assert first.sole  # The first worker sets the directory up alone...
        first.end_setup()
        assert not first.sole  # ...then shares it.
        with locks.DirectoryLock(tmp_path, shard=(1, 2)) as second:
            assert not second.sole  # May not delete frames or others' temporaries.
            second.end_setup()
            with pytest.raises(locks.DirectoryLockedError, match="worker 0 of 2"):
                locks.DirectoryLock(tmp_path).acquire()  # No single render meanwhile.
            with pytest.raises(locks.DirectoryLockedError, match="already running"):
                locks.DirectoryLock(tmp_path, shard=(1, 2)).acquire()
            with pytest.raises(locks.DirectoryLockedError, match="2-worker cluster"):
                locks.DirectoryLock(tmp_path, shard=(2, 3)).acquire()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # Every lock file removed.


# ------------------------------------------------------------------ two real processes


def _start(*args):
    return subprocess.Popen(
        [sys.executable, "-m", "kerasmorph.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_second_process_cannot_write_a_directory_being_rendered(tmp_path, capsys):
    out = tmp_path / "rd"
    first_args = ["interpolate", "a red circle", "a blue square", "--frames", "10"]
    first_args += ["--batch-size", "1", *TINY]
    first = _start(*first_args, "--out", str(out))
    try:
        deadline = time.monotonic() + 300
        while not list(out.glob("frame_*.png")):
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first render did not start in time"
            time.sleep(0.02)
        # Stopped, it still holds the lock: the second process meets a live render.
        first.send_signal(signal.SIGSTOP)
        second = _start("interpolate", "x", "y", "--frames", "3", *TINY, "--out", str(out))
        _, err = second.communicate(timeout=300)
        assert second.returncode == 2, err
        assert f"{out} is being rendered by pid {first.pid} on {socket.gethostname()}" in err
        # Another spec, with and without --overwrite, then the same spec (a resume): refused.
        for extra in ([], ["--overwrite"]):
            argv = ["interpolate", "x", "y", "--frames", "3", *TINY, "--out", str(out), *extra]
            assert cli.main(argv, session=_SESSION) == 2
            assert f"pid {first.pid}" in capsys.readouterr().err
        assert cli.main([*first_args, "--out", str(out)], session=_SESSION) == 2
        assert f"pid {first.pid}" in capsys.readouterr().err
        first.send_signal(signal.SIGCONT)
        first_out, first_err = first.communicate(timeout=300)
    finally:
        first.send_signal(signal.SIGCONT)
        if first.poll() is None:
            first.kill()
            first.wait(timeout=30)
    assert first.returncode == 0, first_err
    assert "rendered 10 frames, 0 already done" in first_out
    # Every frame is the first render's own: byte-identical to a render of its spec alone.
    clean = tmp_path / "clean"
    assert cli.main([*first_args, "--out", str(clean)], session=_SESSION) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in clean.iterdir())
    for index in range(10):
        path = renders.frame_path(out, index)
        assert path.read_bytes() == renders.frame_path(clean, index).read_bytes(), path
    assert renders.load_spec(out) == renders.load_spec(clean)
    assert not (out / locks.LOCK_NAME).exists()
