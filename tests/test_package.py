"""Package-level behaviour: cheap import, TensorFlow backend, bundled vocabulary."""

import hashlib
import os
import platform
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
    assert "Copyright (c) 2021 OpenAI" in (path.parent / "LICENSE-OpenAI-CLIP").read_text()
    assert "Gabriel Ilharco" in (path.parent / "LICENSE-open_clip").read_text()


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


# `import kerasmorph`, then TensorFlow through kerasmorph (as every kerasmorph command does).
FORCE_TENSORFLOW = (
    "import os, kerasmorph; from kerasmorph import backend, devices;"
    "backend.keras_module(); devices.find_devices();"
    "print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"
)
START_UP_LINES = ("oneDNN", "cuInit", "Could not find cuda drivers", "absl::InitializeLog")


def test_tensorflow_start_up_lines_are_hidden():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, "-c", FORCE_TENSORFLOW], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in ("2", "3")
    assert [
        line for line in result.stderr.splitlines() if any(s in line for s in START_UP_LINES)
    ] == []


def test_a_log_level_set_by_the_user_is_left_alone():
    result = _run(FORCE_TENSORFLOW, TF_CPP_MIN_LOG_LEVEL="0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"
    if sys.platform == "linux" and platform.machine() == "x86_64":  # oneDNN builds say so.
        assert "oneDNN custom operations are on" in result.stderr


def test_drop_below_level_keeps_errors_and_other_output():
    from kerasmorph.backend import drop_below_level

    text = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1796181472.110064    8869 port.cc:153] oneDNN custom operations are on.\n"
        "2025-09-17 14:44:05.157831: I external/cuda/cudart_stub.cc:32] Could not find cuda\n"
        "I0000 00:00:17.5    12 cpu_feature_guard.cc:227] This TensorFlow binary is optimized\n"
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild\n"
        "E0000 00:00:1796181473.0    8869 cuda_dnn.cc:8579] Unable to register cuDNN factory\n"
        "/x/y.py:3: UserWarning: something Python said\n"
        "  warnings.warn(...)\n"
    )
    kept = drop_below_level(text, 2).splitlines()
    assert kept == [
        "E0000 00:00:1796181473.0    8869 cuda_dnn.cc:8579] Unable to register cuDNN factory",
        "/x/y.py:3: UserWarning: something Python said",
        "  warnings.warn(...)",
    ]
    assert drop_below_level(text, 3).splitlines() == kept[1:]
    assert len(drop_below_level(text, 1).splitlines()) == len(text.splitlines()) - 4


def test_a_fatal_line_before_an_abort_still_shows(tmp_path):
    # A stand-in `tensorflow` that logs INFO, a Python warning and FATAL, then aborts.
    package = tmp_path / "tensorflow"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import os, sys, warnings\n"
        "os.write(2, b'I0000 00:00:17.1    1 port.cc:1] oneDNN custom operations are on.\\n')\n"
        "warnings.warn('a Python warning')\n"
        "sys.stderr.flush()\n"
        "os.write(2, b'F0000 00:00:17.2    1 guard.cc:2] compiled for AVX\\n')\n"
        "os.abort()\n"
    )
    code = "import kerasmorph; from kerasmorph import backend; backend.tensorflow_module()"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert result.returncode != 0
    assert "oneDNN" not in result.stderr
    assert "UserWarning: a Python warning" in result.stderr
    assert "F0000 00:00:17.2    1 guard.cc:2] compiled for AVX" in result.stderr


def test_python_dash_m_kerasmorph_runs_the_cli():
    result = subprocess.run(
        [sys.executable, "-m", "kerasmorph", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: kerasmorph ")
