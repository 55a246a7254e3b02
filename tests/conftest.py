"""Shared fixtures. Every test runs offline with an empty Keras cache."""

import os

# Before anything imports Keras: no test may reach the network, and the
# user's own ~/.keras cache must not leak into weight lookups.
os.environ["KERASMORPH_OFFLINE"] = "1"
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_weight_dirs(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path_factory.mktemp("keras_home")))
    monkeypatch.delenv("KERASMORPH_WEIGHTS", raising=False)


@pytest.fixture(scope="session")
def tiny_explorer():
    """One 128x128 `tiny` Explorer shared by the fast tests (built once)."""
    import kerasmorph

    return kerasmorph.Explorer("tiny", jit_compile=False, verbose=False)
