"""Package-level behaviour: cheap import, TensorFlow backend, bundled vocabulary."""

import hashlib
import os
import subprocess
import sys

import pytest

import kerasmorph
from kerasmorph import models

CLIP_VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"


def _run(code, **env):
    environment = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment
    )


def test_import_does_not_load_tensorflow():
    result = _run(
        "import sys, kerasmorph, kerasmorph.schedules, kerasmorph.interpolation;"
        "print(sorted(m for m in ('tensorflow', 'keras', 'keras_cv') if m in sys.modules))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_backend_defaults_to_tensorflow():
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; from kerasmorph.backend import keras_module;"
            "print(keras_module().config.backend(), os.environ['KERAS_BACKEND'])",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["tensorflow", "tensorflow"]


def test_other_backend_is_a_clear_error():
    result = _run(
        "from kerasmorph.backend import keras_module; keras_module()",
        KERAS_BACKEND="jax",
    )
    assert result.returncode != 0
    assert "KERAS_BACKEND=tensorflow" in result.stderr
    assert "Received: KERAS_BACKEND=jax" in result.stderr


def test_bundled_clip_vocabulary_is_kerascvs_file():
    path = models.bpe_vocabulary_path()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == CLIP_VOCAB_SHA256
    assert (path.parent / "LICENSE").is_file()


def test_tokenizer_works_offline_with_known_clip_ids(monkeypatch):
    # Any download attempt fails loudly.
    import keras

    def no_download(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(keras.utils, "get_file", no_download)
    tokenizer = models.build_tokenizer()
    assert tokenizer.encode("a photo of a cat") == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_unknown_attribute():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        kerasmorph.nope  # noqa: B018
