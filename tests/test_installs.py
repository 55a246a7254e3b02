"""Installs: extras and licences in the wheel, pip hints per install, private imports, notices."""

from __future__ import annotations

import ast
import dataclasses
import json
import logging
import pathlib
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata

import pytest

from kerasmorph import devices, installs, kerascv_internals, licences
from kerasmorph.cli import main
from kerasmorph.installs import DependencyError, InstallSource, install_command

ROOT = pathlib.Path(__file__).resolve().parents[1]
SD = "keras_cv.src.models.stable_diffusion"

# ------------------------------------------------------------ the wheel


def _setuptools_version() -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in metadata.version("setuptools").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return ()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
    """kerasmorph's wheel, built from a copy of the checkout (the checkout stays untouched)."""
    if _setuptools_version() < (77,):
        pytest.skip("building the wheel offline needs setuptools>=77 (the test extra has it)")
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "kerasmorph", source / "kerasmorph", ignore=ignore)
    command = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps"]
    command += ["--no-build-isolation", "--no-cache-dir", "-q", "-w", str(work / "out")]
    result = subprocess.run(command, capture_output=True, text=True, cwd=work)
    assert result.returncode == 0, result.stderr
    (path,) = (work / "out").glob("kerasmorph-*.whl")
    return path


def _metadata(wheel: pathlib.Path) -> tuple[list[str], list[str]]:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (meta,) = [name for name in names if name.endswith(".dist-info/METADATA")]
        return names, archive.read(meta).decode().splitlines()


def test_wheel_ships_the_licences_beside_the_metadata_and_the_vocabulary(wheel):
    names, meta = _metadata(wheel)
    licences_dir = next(n for n in names if n.endswith(".dist-info/METADATA"))[: -len("METADATA")]
    assert "License-Expression: Apache-2.0" in meta
    assert f"{licences_dir}licenses/LICENSE" in names
    for notice in ("LICENSE-OpenAI-CLIP", "LICENSE-open_clip"):
        assert f"kerasmorph/data/clip/{notice}" in names
        assert f"{licences_dir}licenses/kerasmorph/data/clip/{notice}" in names
    with zipfile.ZipFile(wheel) as archive:
        apache = archive.read(f"{licences_dir}licenses/LICENSE").decode()
        openai = archive.read("kerasmorph/data/clip/LICENSE-OpenAI-CLIP").decode()
    assert "Apache License" in apache and "Version 2.0, January 2004" in apache
    assert "Copyright (c) 2021 OpenAI" in openai and "MIT License" in openai


def test_wheel_extras(wheel):
    _, meta = _metadata(wheel)
    extras = {line.split(": ", 1)[1] for line in meta if line.startswith("Provides-Extra: ")}
    assert {"gpu", "tpu", "torch", "reference", "video", "test"} <= extras
    requires = [line.split(": ", 1)[1] for line in meta if line.startswith("Requires-Dist: ")]
    base = [r for r in requires if "extra ==" not in r]
    assert "imageio>=2.31" in base and "imageio-ffmpeg>=0.5" in base  # MP4 in the base install.
    assert 'tensorflow[and-cuda]>=2.16; extra == "gpu"' in requires
    assert 'tensorflow-tpu>=2.16; extra == "tpu"' in requires
    assert 'torch>=2.1; extra == "torch"' in requires
    assert not [r for r in requires if r.startswith("torch==")]  # The exact pin is CI's only.
    assert not [r for r in requires if r.endswith('extra == "video"')]  # An empty alias.


def test_a_wheel_install_names_the_wheel_in_its_pip_hint(wheel, tmp_path):
    target = tmp_path / "site"
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-cache-dir", "-q"]
    result = subprocess.run(
        [*command, "--target", str(target), str(wheel)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    code = (
        "import kerasmorph.installs as i; print(i.install_source().kind); "
        "print(i.install_command('torch'))"
    )
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["local", f'pip install "{wheel}[torch]"']


# ------------------------------------------------------------ pip hints


@pytest.mark.parametrize(
    "source, cwd, expected",
    [
        (InstallSource("checkout", "/src/km"), "/src/km", 'pip install -e ".[torch]"'),
        (InstallSource("checkout", "/src/km"), "/tmp", 'pip install -e "/src/km[torch]"'),
        (InstallSource("local", "/w/km.whl"), "/tmp", 'pip install "/w/km.whl[torch]"'),
        (
            InstallSource("vcs", "git+https://example.org/km.git@abc"),
            "/tmp",
            'pip install "kerasmorph[torch] @ git+https://example.org/km.git@abc"',
        ),
        (InstallSource("index"), "/tmp", 'pip install "kerasmorph[torch]"'),
    ],
)
def test_install_command_fits_the_install(source, cwd, expected):
    assert install_command("torch", source, cwd) == expected


def test_tpu_command_adds_the_libtpu_find_links():
    command = install_command("tpu", InstallSource("index"))
    assert command == f'pip install "kerasmorph[tpu]" -f {installs.TPU_FIND_LINKS}'


def test_install_source_reads_the_checkout_or_direct_url(tmp_path):
    package = tmp_path / "site" / "kerasmorph"
    package.mkdir(parents=True)
    wheel = tmp_path / "kerasmorph-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    local = {"url": wheel.as_uri(), "archive_info": {}}
    vcs = {"url": "https://example.org/km.git", "vcs_info": {"vcs": "git", "commit_id": "abc"}}
    assert installs.source_from(package, local) == InstallSource("local", str(wheel))
    assert installs.source_from(package, vcs).location == "git+https://example.org/km.git@abc"
    assert installs.source_from(package, None) == InstallSource("index")
    gone = {"url": (tmp_path / "deleted.whl").as_uri(), "archive_info": {}}
    assert installs.source_from(package, gone) == InstallSource("index")
    (tmp_path / "site" / "pyproject.toml").write_text('[project]\nname = "kerasmorph"\n')
    assert installs.source_from(package, local) == InstallSource("checkout", str(package.parent))


def test_this_checkout_is_found():
    assert installs.install_source() == InstallSource("checkout", str(ROOT))


def test_missing_dependency_is_one_line_with_both_commands():
    error = installs.missing_dependency("Reading a pickled PyTorch file", ["torch"], "torch")
    assert isinstance(error, ImportError) and "\n" not in str(error)
    assert f"run `{install_command('torch')}` (or `pip install torch`)" in str(error)


# ------------------------------------------------------------ KerasCV's private modules


def _private_imports(path: pathlib.Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        found += [f"{path.name}:{node.lineno} {n}" for n in names if n.startswith(PRIVATE)]
    return found


PRIVATE = ("keras_cv.src", "keras.src")


def test_private_kerascv_and_keras_imports_live_in_one_module():
    paths = sorted((ROOT / "kerasmorph").rglob("*.py"))
    found = [
        hit
        for path in paths
        if path.name != "kerascv_internals.py"
        for hit in _private_imports(path)
    ]
    assert found == []


def test_a_moved_kerascv_module_is_a_clear_error(monkeypatch):
    from kerasmorph import models

    monkeypatch.setitem(sys.modules, f"{SD}.clip_tokenizer", None)
    with pytest.raises(DependencyError) as caught:
        models.build_tokenizer()
    message = str(caught.value)
    assert message.startswith(
        f"kerasmorph needs keras_cv 0.9's {SD}.clip_tokenizer; found keras-cv "
    )
    assert message.endswith('pin it with `pip install "keras-cv==0.9.*"`.')


def test_a_moved_kerascv_constant_is_a_clear_error(monkeypatch):
    from kerasmorph.schedulers import ddim

    (constants,) = kerascv_internals.stable_diffusion_modules("constants")
    monkeypatch.delattr(constants, "_ALPHAS_CUMPROD")
    ddim._kerascv_table.cache_clear()
    try:
        with pytest.raises(DependencyError, match=rf"{SD}\.constants\._ALPHAS_CUMPROD; found"):
            ddim._kerascv_table()
    finally:
        ddim._kerascv_table.cache_clear()


def test_a_moved_keras_module_is_a_clear_error(monkeypatch):
    import keras

    monkeypatch.setitem(sys.modules, kerascv_internals.LEGACY_H5_FORMAT, None)
    with pytest.raises(DependencyError) as caught:
        kerascv_internals.legacy_h5_format()
    assert str(caught.value) == (
        f"kerasmorph needs Keras 3's {kerascv_internals.LEGACY_H5_FORMAT}; found keras "
        f'{keras.__version__}: pin it with `pip install "keras>=3.0,<{keras.__version__}"`.'
    )


# ------------------------------------------------------------ the weights' licence notice


@pytest.fixture
def no_notice_shown(monkeypatch):
    monkeypatch.setattr(licences, "_shown", set())


def test_licence_notice_shows_once_per_process(no_notice_shown, caplog):
    with caplog.at_level(logging.WARNING, logger="kerasmorph.licences"):
        assert licences.show_licence_notice("Weights: a licence, https://example.org")
        assert not licences.show_licence_notice("Weights: a licence, https://example.org")
        assert not licences.show_licence_notice("")
    assert [record.levelno for record in caplog.records] == [logging.WARNING]
    assert caplog.records[0].getMessage().startswith("Weights: a licence, https://example.org.")


def test_loading_licensed_weights_shows_the_notice_once(no_notice_shown, tmp_path, caplog):
    from kerasmorph import models, presets

    preset = dataclasses.replace(presets.get_preset("tiny"), licence="Test weights: RAIL-M, url")
    path = tmp_path / "text_encoder.weights.h5"
    models.build_component(preset, "text_encoder", 64, 64).save_weights(str(path))
    assert caplog.records == []  # Random weights: no licence applies.
    with caplog.at_level(logging.WARNING, logger="kerasmorph.licences"):
        for _ in range(2):
            models.build_component(preset, "text_encoder", 64, 64, weights_path=path)
    assert [record.getMessage() for record in caplog.records] == [
        "Test weights: RAIL-M, url. By using these weights you accept the licence's terms."
    ]


def test_sd_presets_carry_their_licence():
    from kerasmorph import presets

    assert "CreativeML Open RAIL-M" in presets.get_preset("sd1").licence
    assert "CreativeML Open RAIL++-M" in presets.get_preset("sd2").licence
    assert presets.get_preset("tiny").licence == presets.get_preset("shapes").licence == ""


# ------------------------------------------------------------ what `kerasmorph info` finds

CUDA = {"is_cuda_build": True, "cuda_version": "12.5.1", "cudnn_version": "9"}


def test_nvidia_driver_with_cpu_only_tensorflow_names_the_gpu_install():
    found = devices.findings_from({}, [], [], "nvidia-smi at /usr/bin/nvidia-smi", [], [])
    assert found.tensorflow_build == "CPU-only"
    (note,) = found.notes
    assert "nvidia-smi at /usr/bin/nvidia-smi" in note and "CPU-only build" in note
    assert f"`{install_command('gpu')}`" in note


def test_cuda_build_without_driver_or_with_gpus_has_no_note():
    assert devices.findings_from(CUDA, [], [], "", [], []).notes == ()
    found = devices.findings_from(CUDA, ["GPU:0"], [], "/proc/driver/nvidia", [], ["amx_bf16"])
    assert found.notes == () and found.tensorflow_build == "CUDA 12.5.1, cuDNN 9"


def test_cuda_build_with_a_driver_but_no_gpu_says_so(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    (note,) = devices.findings_from(CUDA, [], [], "/proc/driver/nvidia", [], []).notes
    assert "lists no GPU (CUDA_VISIBLE_DEVICES='')" in note


def test_tpu_device_files_without_a_tpu_name_the_tpu_install():
    (note,) = devices.findings_from({}, [], [], "", ["/dev/accel0"], []).notes
    assert "/dev/accel0" in note and f"`{install_command('tpu')}`" in note


def test_info_says_what_it_found_and_why(capsys):
    assert main(["info", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)["found"]
    assert found["tensorflow_build"] in ("CPU-only", "ROCm") or found[
        "tensorflow_build"
    ].startswith("CUDA ")
    assert found["cpu_bf16_flags"] == sorted(devices.cpu_flags() & set(devices.BF16_CPU_FLAGS))
    assert main(["info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(
        line.startswith(f"found       TensorFlow {found['tensorflow_build']} build;")
        for line in lines
    )
    cpu = next(line for line in lines if line.startswith("cpu "))
    assert ("bf16 units (" in cpu) == bool(found["cpu_bf16_flags"])
    assert "precision auto" in cpu


def test_quiet_silences_the_notice_only_once_shown_for_that_output(
    no_notice_shown, tmp_path, caplog
):
    notice = "Weights: a licence, https://example.org"
    record = tmp_path / "cache" / "licence-notices.json"
    render_dir = tmp_path / "renders" / "cat-dog"

    def shown(output, quiet):
        licences._shown.clear()  # A new process.
        licences.for_output(output, quiet=quiet, record=record)
        return licences.show_licence_notice(notice)

    try:
        with caplog.at_level(logging.WARNING, logger="kerasmorph.licences"):
            assert shown(render_dir, quiet=True)  # Never silenced before it was shown.
            assert not shown(render_dir, quiet=True)  # Shown for it already: quiet holds.
            assert shown(render_dir, quiet=False)  # Not quiet: always shown once.
            assert shown(tmp_path / "other.gif", quiet=True)  # Another output.
            assert not shown(tmp_path / "other.gif", quiet=True)
            record.write_text("not json")  # A broken record only shows it again.
            assert shown(render_dir, quiet=True)
    finally:
        licences.for_output(None, quiet=False, record=None)
    assert len(caplog.records) == 4
    assert sorted(json.loads(record.read_text())) == [str(render_dir.resolve())]
