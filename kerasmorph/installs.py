"""How kerasmorph was installed, and the `pip install` that adds an extra to that install.

Every missing-dependency error is built by `missing_dependency`, so it names
the command that works for this install (read from the checkout the package
runs from, or from pip's PEP 610 `direct_url.json`):

| kerasmorph runs from | the command for the `torch` extra |
|---|---|
| a checkout (`pip install -e .`, or on `sys.path`) | `pip install -e ".[torch]"` (1) |
| a copy installed from a local folder or file | `pip install "/that/file.whl[torch]"` |
| a copy installed from Git | `pip install "kerasmorph[torch] @ git+https://…@commit"` |
| a copy installed from an index | `pip install "kerasmorph[torch]"` |

(1) run in the checkout; the checkout's path in place of `.` when run elsewhere.

Stdlib only: importing it is cheap.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlparse

from kerasmorph.errors import KerasmorphError

DISTRIBUTION = "kerasmorph"
# The package directory (`kerasmorph/`); its parent is the checkout when run from one.
_PACKAGE_DIR = Path(__file__).resolve().parent

SourceKind = Literal["checkout", "local", "vcs", "index"]
# Where pip finds the `libtpu` wheels that `tensorflow-tpu` (the `tpu` extra) needs.
TPU_FIND_LINKS = "https://storage.googleapis.com/libtpu-tf-releases/index.html"


class DependencyError(KerasmorphError, ImportError):
    """A package kerasmorph needs that is missing, or of a version it cannot use.

    The message names the `pip install` to run.
    """


@dataclasses.dataclass(frozen=True)
class InstallSource:
    """Where this kerasmorph came from.

    Attributes:
        kind: "checkout" (editable or on `sys.path`), "local" (installed from
            a folder or a wheel/sdist file that still exists), "vcs" (from a
            Git URL) or "index" (PyPI or another index, or unknown).
        location: the checkout or local path, the `git+` URL with its
            commit, or "" for an index.
    """

    kind: SourceKind
    location: str = ""


def _checkout_root(package_dir: Path) -> Path | None:
    """The checkout holding `package_dir`: its parent, when that has kerasmorph's pyproject."""
    pyproject = package_dir.parent / "pyproject.toml"
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError:
        return None
    return package_dir.parent if f'name = "{DISTRIBUTION}"' in text else None


def _direct_url() -> dict | None:
    """pip's `direct_url.json` of the installed distribution, if any."""
    # A stale `kerasmorph.egg-info` in the working directory may shadow the
    # installed `.dist-info`: take the first distribution that has the file.
    for distribution in metadata.distributions(name=DISTRIBUTION):
        text = distribution.read_text("direct_url.json")
        if text:
            try:
                return json.loads(text)
            except ValueError:
                return None
    return None


def source_from(package_dir: Path, direct_url: dict | None) -> InstallSource:
    """The `InstallSource` of a package at `package_dir` with this `direct_url.json`."""
    root = _checkout_root(package_dir)
    if root is not None:
        return InstallSource("checkout", str(root))
    url = (direct_url or {}).get("url", "")
    vcs = (direct_url or {}).get("vcs_info")
    if vcs:
        commit = vcs.get("commit_id")
        return InstallSource(
            "vcs", f"{vcs.get('vcs', 'git')}+{url}" + (f"@{commit}" if commit else "")
        )
    parsed = urlparse(url)
    if parsed.scheme == "file" and os.path.exists(unquote(parsed.path)):
        return InstallSource("local", unquote(parsed.path))
    return InstallSource("index")


@functools.lru_cache(maxsize=1)
def install_source() -> InstallSource:
    """Where the running kerasmorph came from (see the module docstring)."""
    return source_from(_PACKAGE_DIR, _direct_url())


def install_command(
    extra: str | None = None,
    source: InstallSource | None = None,
    cwd: str | os.PathLike | None = None,
) -> str:
    """The `pip install` command that adds `extra` to this kerasmorph install.

    Args:
        extra: an optional-dependency group of pyproject.toml ("torch",
            "gpu", "tpu", ...); `None` reinstalls the base dependencies.
        source: where kerasmorph came from; default `install_source()`.
        cwd: the directory the command is to be run in; default the current one.

    Returns:
        One shell command, e.g. `pip install -e ".[torch]"`.

    Example:

    ```python
    kerasmorph.installs.install_command("gpu")  # 'pip install "kerasmorph[gpu]"'
    ```
    """
    source = install_source() if source is None else source
    suffix = f"[{extra}]" if extra else ""
    if source.kind == "checkout":
        here = Path(os.getcwd() if cwd is None else cwd).resolve()
        target = "." if here == Path(source.location).resolve() else source.location
        command = f'pip install -e "{target}{suffix}"'
    elif source.kind == "local":
        command = f'pip install "{source.location}{suffix}"'
    elif source.kind == "vcs":
        command = f'pip install "{DISTRIBUTION}{suffix} @ {source.location}"'
    else:
        command = f'pip install "{DISTRIBUTION}{suffix}"'
    return f"{command} -f {TPU_FIND_LINKS}" if extra == "tpu" else command


def missing_dependency(
    purpose: str, packages: Sequence[str], extra: str | None = None
) -> DependencyError:
    """The error to raise when `purpose` needs `packages` that are not installed.

    Args:
        purpose: what needed them, e.g. "Reading a pickled PyTorch file".
        packages: the pip names of the packages, e.g. `["torch"]`.
        extra: the kerasmorph extra that installs them; `None` when they are
            base dependencies (a broken or partial install).

    Returns:
        A `DependencyError` (an `ImportError`) whose one line names the command
        for this install and the bare `pip install` of the packages.
    """
    names = " and ".join(packages)
    command = install_command(extra)
    bare = f"pip install {' '.join(packages)}"
    kind = f"the `{extra}` extra" if extra else "kerasmorph's dependencies"
    return DependencyError(
        f"{purpose} needs {names} ({kind}), which is not installed: run `{command}` (or `{bare}`)."
    )
