"""Shared fixtures. Every test runs offline with an empty Keras cache."""

import os
import subprocess
import sys

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
    # The weight-hash cache (`kerasmorph.weights.cached_sha256`) never touches the user's.
    monkeypatch.setenv("KERASMORPH_CACHE_DIR", str(tmp_path_factory.mktemp("kerasmorph_cache")))


@pytest.fixture
def without_torch(monkeypatch):
    """Makes `import torch` (and its submodules) fail, as on a machine without it."""
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)


@pytest.fixture(scope="session")
def tiny_explorer():
    """One 128x128 `tiny` Explorer shared by the fast tests (built once)."""
    import kerasmorph

    return kerasmorph.Explorer("tiny", jit_compile=False, verbose=False)


# ------------------------------------------------- heavy tests in their own process
#
# Tests marked `slow` or `reference` build full-size models (5-10 GB each in
# Keras and PyTorch). Freed TensorFlow/PyTorch memory is not reliably handed
# back to the OS (glibc arenas), so in one process the full suite grew past the
# machine's 24 GiB and was killed. Each such module therefore runs in a child
# pytest process before the fast tests (one child per parameter of a module-scoped
# fixture, e.g. per model family); the child's exit code fails the run.

_ISOLATED_MARKERS = ("slow", "reference")
_CHILD_ENV = "KERASMORPH_TEST_CHILD"
_isolated_key = pytest.StashKey[dict]()
_results_key = pytest.StashKey[list]()


def _isolation_group(item) -> str:
    """The module, plus the values of its module-scoped parametrized fixtures."""
    group = str(item.path)
    callspec = getattr(item, "callspec", None)
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    for name, value in sorted(callspec.params.items()) if callspec else ():
        scope = getattr(definitions.get(name, [None])[-1], "scope", "function")
        if scope in ("module", "package", "session"):
            group += f"[{name}={value}]"
    return group


@pytest.hookimpl(trylast=True)  # After -m/-k deselection.
def pytest_collection_modifyitems(config, items):
    if os.environ.get(_CHILD_ENV) or config.option.collectonly:
        return
    groups: dict[str, list[str]] = {}
    kept = []
    for item in items:
        if any(item.get_closest_marker(name) for name in _ISOLATED_MARKERS):
            groups.setdefault(_isolation_group(item), []).append(item.nodeid)
        else:
            kept.append(item)
    items[:] = kept
    config.stash[_isolated_key] = groups


@pytest.hookimpl(hookwrapper=True)
def pytest_runtestloop(session):
    # The children run first, while this process is still small (the fast tests
    # leave ~7 GB behind), then the fast tests here; failures count after both.
    failures = 0
    groups = session.config.stash.get(_isolated_key, {})
    if groups and not session.testsfailed:  # testsfailed here = collection errors.
        failures = _run_isolated(session, groups)
    yield
    session.testsfailed += failures


def _run_isolated(session, groups: dict[str, list[str]]) -> int:
    """Runs each group's tests in a child pytest; returns how many children failed."""
    config = session.config
    reporter = config.pluginmanager.getplugin("terminalreporter")
    capture = config.pluginmanager.getplugin("capturemanager")
    results = config.stash.setdefault(_results_key, [])
    verbosity = ["-v"] * max(config.option.verbose, 0) or ["-q"] * -min(config.option.verbose, 0)
    failures = 0
    for group, nodeids in groups.items():
        module = os.path.relpath(group, config.rootpath)
        if reporter is not None:
            reporter.write_sep("=", f"{module}: {len(nodeids)} tests in a separate process")
        command = [sys.executable, "-m", "pytest", "-ra", "-p", "no:cacheprovider", *verbosity]
        if config.option.maxfail:
            command.append(f"--maxfail={config.option.maxfail}")
        with capture.global_and_fixture_disabled():
            code = subprocess.call(
                command + nodeids, cwd=config.rootpath, env={**os.environ, _CHILD_ENV: "1"}
            )
        results.append((module, len(nodeids), code))
        if code != 0:
            failures += 1
            if config.option.maxfail:
                break
    return failures


def pytest_terminal_summary(terminalreporter, config):
    results = config.stash.get(_results_key, [])
    if not results:
        return
    terminalreporter.write_sep("=", "tests run in separate processes")
    for module, count, code in results:
        status = "passed" if code == 0 else f"FAILED (exit code {code})"
        terminalreporter.write_line(f"{module}: {count} tests {status}")
