"""XLA's persistent compilation cache (`kerasmorph.compile_cache`).

The unit tests run here; the cache itself is tried in fresh processes, since
TensorFlow reads its XLA flags once per process: a hit gives bit-identical
images to a cold run, a changed size misses, corrupt entries are compiled
again, and two processes filling one cache at once both succeed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from kerasmorph import compile_cache
from kerasmorph.errors import InputError


def _field(number: int, payload: bytes) -> bytes:
    return bytes([number << 3 | 2, len(payload)]) + payload


# Key, compilation result, executable; a varint field of another number between.
ENTRY = _field(1, b"key") + bytes([4 << 3, 150, 1]) + _field(2, b"hlo") + _field(3, b"x" * 20)


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """The module as in a new process: nothing in force, no TF_XLA_FLAGS."""
    monkeypatch.setattr(compile_cache, "_active", None)
    monkeypatch.delenv("TF_XLA_FLAGS", raising=False)
    monkeypatch.delenv(compile_cache.DISABLE_ENV, raising=False)
    monkeypatch.delenv(compile_cache.MAX_MB_ENV, raising=False)
    monkeypatch.setenv("KERASMORPH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def test_complete_protobufs_pass_and_damaged_ones_fail():
    assert compile_cache.is_complete_entry(ENTRY)
    assert not compile_cache.is_complete_entry(ENTRY[:-1])
    assert not compile_cache.is_complete_entry(ENTRY[:-22])  # Cut between two fields.
    assert compile_cache.is_complete_entry(ENTRY[:-22] + _field(3, b""))
    assert not compile_cache.is_complete_entry(b"")
    assert not compile_cache.is_complete_entry(b"garbage\n")


def _write(path, data, age):
    path.write_bytes(data)
    then = time.time() - age
    os.utime(path, (then, then))


def test_prune_removes_damaged_then_least_recently_used_entries(tmp_path):
    names = [f"xla_compile_cache__{i}__XLA_CPU_JIT.pb" for i in range(4)]
    for age, name in zip((400, 300, 200, 100), names):
        _write(tmp_path / name, ENTRY, age)
    _write(tmp_path / "xla_compile_cache__bad__XLA_CPU_JIT.pb", ENTRY[:-3], 50)
    (tmp_path / "other.txt").write_bytes(b"not an entry")

    removed = compile_cache.prune(tmp_path, cap_bytes=2 * len(ENTRY))

    left = sorted(path.name for path in compile_cache.entries(tmp_path))
    assert left == sorted(names[2:])  # The two most recently used.
    assert {path.name for path in removed} == {
        names[0],
        names[1],
        "xla_compile_cache__bad__XLA_CPU_JIT.pb",
    }
    assert (tmp_path / "other.txt").exists()


def test_an_entry_damaged_after_a_pass_is_caught_by_the_next(tmp_path):
    entry = tmp_path / "xla_compile_cache__1__XLA_CPU_JIT.pb"
    _write(entry, ENTRY, 100)
    assert compile_cache.prune(tmp_path, cap_bytes=10**6) == []
    time.sleep(0.01)
    entry.write_bytes(ENTRY[:4])  # A write moves its mtime past the stamp.
    assert compile_cache.prune(tmp_path, cap_bytes=10**6) == [entry]


def test_enable_adds_the_flag_and_keeps_the_users_flags(fresh, monkeypatch):
    monkeypatch.setenv("TF_XLA_FLAGS", "--tf_xla_auto_jit=1")
    directory = compile_cache.enable()
    assert directory == compile_cache.default_directory()
    assert directory.is_dir() and directory.is_relative_to(fresh / "cache" / "xla")
    assert os.environ["TF_XLA_FLAGS"] == f"--tf_xla_auto_jit=1 {compile_cache.FLAG}={directory}"
    assert compile_cache.enable() == directory  # Idempotent.
    assert compile_cache.enable(True) == directory
    with pytest.raises(InputError, match="already in .* TensorFlow reads that setting once"):
        compile_cache.enable(False)
    with pytest.raises(InputError, match="already in"):
        compile_cache.enable(fresh / "elsewhere")


def test_turned_off_by_the_environment_or_false(fresh, monkeypatch):
    monkeypatch.setenv(compile_cache.DISABLE_ENV, "1")
    assert compile_cache.enable() is None
    assert "TF_XLA_FLAGS" not in os.environ
    with pytest.raises(InputError, match="already off"):
        compile_cache.enable(fresh / "there")
    monkeypatch.setattr(compile_cache, "_active", None)
    monkeypatch.delenv(compile_cache.DISABLE_ENV)
    assert compile_cache.enable(False) is None
    assert "TF_XLA_FLAGS" not in os.environ


def test_a_directory_in_tf_xla_flags_wins_and_is_not_pruned(fresh, monkeypatch):
    own = fresh / "own"
    own.mkdir()
    _write(own / "xla_compile_cache__bad__XLA_CPU_JIT.pb", b"garbage", 10)
    monkeypatch.setenv("TF_XLA_FLAGS", f"{compile_cache.FLAG}={own}")
    assert compile_cache.enable() == own
    assert os.environ["TF_XLA_FLAGS"] == f"{compile_cache.FLAG}={own}"
    assert len(compile_cache.entries(own)) == 1


def test_a_bad_size_cap_is_refused(fresh, monkeypatch):
    monkeypatch.setenv(compile_cache.MAX_MB_ENV, "lots")
    with pytest.raises(InputError, match=r"KERASMORPH_COMPILE_CACHE_MAX_MB must be a whole number"):
        compile_cache.enable()
    monkeypatch.setenv(compile_cache.MAX_MB_ENV, "0")
    directory = compile_cache.enable()  # A cap of 0 keeps nothing from earlier runs.
    assert directory is not None


def test_the_folder_names_tensorflow_and_the_cpu(fresh):
    import importlib.metadata

    name = compile_cache.default_directory().name
    assert name.startswith(f"tf-{importlib.metadata.version('tensorflow')}-")
    assert len(name.rsplit("-", 1)[1]) == 12


# The default path a user runs (precision "auto") plus the XLA step, on `tiny`.
_CHILD = """
import sys, numpy as np, kerasmorph
images = []
for jit in (None, True):
    explorer = kerasmorph.Explorer("tiny", img_height=int(sys.argv[2]), img_width=64,
                                   jit_compile=jit, verbose=False)
    images.append(explorer.text_to_image("a red circle", batch_size=1, num_steps=3, seed=7))
assert explorer.compile_cache_dir is not None
np.save(sys.argv[1], np.stack(images))
"""


def _start(out, cache, height=64):
    env = {**os.environ, "KERASMORPH_CACHE_DIR": str(cache)}
    env.pop("TF_XLA_FLAGS", None)
    env.pop(compile_cache.DISABLE_ENV, None)
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(out), str(height)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _run(*children):
    for child in children:
        output, _ = child.communicate(timeout=600)
        assert child.returncode == 0, output


def _snapshot(cache):
    folder = next((cache / "xla").iterdir())
    return {path.name: path.stat().st_mtime_ns for path in compile_cache.entries(folder)}, folder


def test_a_warm_run_hits_and_draws_the_same_bits(tmp_path):
    cache = tmp_path / "cache"
    _run(_start(tmp_path / "cold.npy", cache))
    cold, folder = _snapshot(cache)
    assert len(cold) >= 2  # At least the XLA step and the XLA decoder.

    _run(_start(tmp_path / "warm.npy", cache))
    warm, _ = _snapshot(cache)
    assert warm == cold  # Every compile was a hit: no entry written or rewritten.
    np.testing.assert_array_equal(np.load(tmp_path / "warm.npy"), np.load(tmp_path / "cold.npy"))

    # Another image size is another graph: it misses and adds entries.
    _run(_start(tmp_path / "taller.npy", cache, height=128))
    taller, _ = _snapshot(cache)
    assert set(cold) < set(taller)

    # Damaged entries are removed at start-up and compiled again, to the same bits.
    for name in cold:
        path = folder / name
        path.write_bytes(path.read_bytes()[:100])
    _run(_start(tmp_path / "rebuilt.npy", cache))
    rebuilt, _ = _snapshot(cache)
    assert set(rebuilt) == set(taller)
    assert all(compile_cache.is_complete_entry((folder / name).read_bytes()) for name in rebuilt)
    np.testing.assert_array_equal(np.load(tmp_path / "rebuilt.npy"), np.load(tmp_path / "cold.npy"))


def test_two_processes_fill_one_cache_at_once(tmp_path):
    cache = tmp_path / "cache"
    _run(_start(tmp_path / "a.npy", cache), _start(tmp_path / "b.npy", cache))
    entries, folder = _snapshot(cache)
    assert entries
    assert all(compile_cache.is_complete_entry((folder / name).read_bytes()) for name in entries)
    assert not [
        path for path in folder.iterdir() if path.name not in entries and path.name != ".checked"
    ]
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


def test_no_cache_on_the_command_line_writes_nothing(tmp_path):
    cache = tmp_path / "cache"
    env = {**os.environ, "KERASMORPH_CACHE_DIR": str(cache)}
    env.pop("TF_XLA_FLAGS", None)
    env.pop(compile_cache.DISABLE_ENV, None)
    command = [sys.executable, "-m", "kerasmorph", "generate", "a red circle", "--model", "tiny"]
    command += ["--height", "64", "--width", "64", "--steps", "2", "--quiet", "--jit"]
    for flags, out in (["--no-cache"], "off.png"), ([], "on.png"):
        result = subprocess.run(
            [*command, *flags, "--out", str(tmp_path / out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr
        if flags:
            assert not (cache / "xla").exists()
    assert compile_cache.entries(next((cache / "xla").iterdir()))
    assert (tmp_path / "off.png").read_bytes() == (tmp_path / "on.png").read_bytes()
