"""What a render spec captures, byte-identical resumes on the default path, and the
render-directory dead ends (bad manifests, broken frames, old versions, temp files)."""

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
from safetensors.numpy import save_file

from kerasmorph import cli, renders, weights

_SESSION = cli.Session()
# The default CLI path: no --no-jit (on a bf16 CPU the step runs without XLA
# and the decoder with it; `render` must restore both).
TINY = ["--model", "tiny", "--quiet", "--steps", "2"]
WIDTH = 64  # The tiny text encoder's width.


def main(argv):
    return cli.main(argv, session=_SESSION)


def frames_of(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.glob("frame_*.png"))}


def spec_for(explorer, **changes):
    spec = renders.RenderSpec(
        kind="interpolate",
        prompts=("a red circle", "a blue square"),
        seeds=(0,),
        num_frames=3,
        schedule="linear",
        options={},
        **renders.model_fields(explorer),
        num_steps=2,
        unconditional_guidance_scale=7.5,
        negative_prompt=None,
        batch_size=3,
    )
    return dataclasses.replace(spec, **changes)


# ------------------------------------------------------------ the default precision plan


def test_render_command_reproduces_the_default_plan_byte_for_byte(tmp_path, capsys):
    out = tmp_path / "loop"
    assert main(["loop", "a red circle", "--frames", "4", *TINY, "--out", str(out)]) == 0
    spec = renders.load_spec(out)
    plan = _SESSION.explorer.precision_plan
    assert spec.precision_request == {"precision": "auto", "jit_compile": None}
    assert (spec.jit_compile, spec.decoder_jit_compile) == (
        plan.jit_compile,
        plan.decoder_jit_compile,
    )
    before = frames_of(out)
    manifest_stat = (out / renders.MANIFEST).stat()
    renders.frame_path(out, 2).unlink()
    capsys.readouterr()
    assert main(["render", str(out), "--quiet"]) == 0
    assert "rendered 1 frames, 3 already done" in capsys.readouterr().out
    assert frames_of(out) == before
    # Nothing changed, so the manifest was not rewritten.
    assert (out / renders.MANIFEST).stat().st_mtime_ns == manifest_stat.st_mtime_ns


# ------------------------------------------------------------------------ embeddings


def _embedding(path, seed):
    vectors = np.random.default_rng(seed).standard_normal((2, WIDTH)).astype(np.float32)
    save_file({"<my-style>": vectors}, str(path))
    return path


def test_embeddings_are_part_of_the_spec_and_reloaded_by_render(tmp_path, capsys):
    style = _embedding(tmp_path / "style.safetensors", 1)
    other = _embedding(tmp_path / "other.safetensors", 2)
    out = tmp_path / "rd"
    argv = ["interpolate", "a <my-style> cat", "a dog", "--frames", "2", *TINY, "--out", str(out)]
    assert main([*argv, "--embedding", str(style)]) == 0
    spec = renders.load_spec(out)
    assert spec.embeddings == (
        {"path": str(style), "sha256": weights.sha256_of(style), "tokens": ["<my-style>"]},
    )
    before = frames_of(out)
    renders.frame_path(out, 1).unlink()
    capsys.readouterr()
    # Resuming without the embedding, or with another one, would fill gaps
    # with other frames: refused, naming the field.
    assert main(argv) == 2
    assert "embeddings" in capsys.readouterr().err
    assert main([*argv, "--embedding", str(other)]) == 2
    assert "embeddings" in capsys.readouterr().err
    # `render` loads the recorded file: the gap is filled byte for byte.
    assert main(["render", str(out), "--quiet"]) == 0
    assert frames_of(out) == before
    # A moved file is named; --embedding points at it (matched by content).
    moved = shutil.move(style, tmp_path / "moved.safetensors")
    renders.frame_path(out, 0).unlink()
    assert main(["render", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{style} that this render used is missing" in err and len(err.splitlines()) == 1
    assert main(["render", str(out), "--quiet", "--embedding", str(other)]) == 2
    assert "not an embedding this render used" in capsys.readouterr().err
    assert main(["render", str(out), "--quiet", "--embedding", str(moved)]) == 0
    assert frames_of(out) == before
    # Changed contents under the recorded name are refused, naming the file.
    _embedding(style, 3)
    assert main(["render", str(out), "--quiet"]) == 2
    assert f"{style} changed since this render used it" in capsys.readouterr().err


# -------------------------------------------------------------------- weight hashing


def test_weights_fingerprint_hashes_full_contents_once(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path / "cache"))
    files = {"diffusion_model": tmp_path / "unet.h5", "decoder": tmp_path / "decoder.h5"}
    for seed, path in enumerate(files.values()):
        path.write_bytes(np.random.default_rng(seed).bytes(5 << 20))
    # `weights_fingerprint` reads only `describe()["weights"]` and the preset's name.
    explorer = types.SimpleNamespace(
        describe=lambda: {"weights": {name: str(path) for name, path in files.items()}},
        preset=types.SimpleNamespace(name="sd1"),
        seed=0,
    )
    reads = []
    real_sha256_of = weights.sha256_of

    def counting_sha256_of(path):
        reads.append(path)
        return real_sha256_of(path)

    monkeypatch.setattr(weights, "sha256_of", counting_sha256_of)
    first = renders.weights_fingerprint(explorer)
    assert first.startswith("sd1:sha256:") and len(reads) == 2
    assert renders.weights_fingerprint(explorer) == first and len(reads) == 2  # Cached.
    cache = json.loads((tmp_path / "cache" / weights.HASH_CACHE_NAME).read_text())
    assert {entry["sha256"] for entry in cache.values()} == {
        real_sha256_of(path) for path in files.values()
    }
    # One byte in the middle (the old fingerprint read only 1 MiB at each end).
    legacy = renders.legacy_weights_fingerprint(explorer)
    with open(files["diffusion_model"], "r+b") as handle:
        handle.seek(2 << 20)
        byte = handle.read(1)
        handle.seek(2 << 20)
        handle.write(bytes([byte[0] ^ 1]))
    os.utime(files["diffusion_model"], ns=(1, 1))  # A new mtime invalidates the entry.
    assert renders.weights_fingerprint(explorer) != first and len(reads) == 3
    assert renders.legacy_weights_fingerprint(explorer) == legacy  # Blind to it.


# ---------------------------------------------------------------- manifest dead ends


def test_spec_fields_are_validated_naming_the_field(tiny_explorer):
    spec = spec_for(tiny_explorer)
    with pytest.raises(ValueError, match=r"`unconditional_guidance_scale` must be a finite"):
        dataclasses.replace(spec, unconditional_guidance_scale=math.nan)
    for field, value in [
        ("num_frames", "abc"),
        ("seeds", 3),
        ("prompts", "a"),
        ("jit_compile", "yes"),
        ("options", []),
        ("embeddings", [{"path": 1}]),
        ("batch_size", 0),
    ]:
        with pytest.raises(ValueError, match=rf"^`{field}` must be .*Received: {field}="):
            renders.RenderSpec.from_json({**spec.to_json(), field: value})
    with pytest.raises(ValueError, match="must be a JSON object"):
        renders.RenderSpec.from_json([1, 2])


def test_unreadable_manifests_are_named_and_replaced_with_overwrite(tiny_explorer, tmp_path):
    spec = spec_for(tiny_explorer)
    good = spec.to_json()
    bare_nan = json.dumps({**good, "unconditional_guidance_scale": "NAN"}).replace('"NAN"', "NaN")
    for text in ("{not json", bare_nan, json.dumps({**good, "num_frames": "abc"}), "\xff"):
        directory = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
        directory.mkdir()
        (directory / renders.MANIFEST).write_text(text, encoding="latin-1")
        (directory / "frame_00007.png").write_bytes(b"someone else's")
        with pytest.raises(ValueError) as raised:
            renders.render_to_directory(tiny_explorer, spec, directory)
        message = str(raised.value)
        assert f"{directory / renders.MANIFEST} is not a valid render manifest" in message
        assert "--overwrite" in message and "\n" not in message
        report = renders.render_to_directory(tiny_explorer, spec, directory, overwrite=True)
        assert report.rendered == (0, 1, 2)
        assert renders.load_spec(directory) == spec
        assert not (directory / "frame_00007.png").exists()
    # The command line: one line naming the file, exit status 2.
    assert main(["render", str(directory / renders.MANIFEST), "--quiet"]) == 0
    (directory / renders.MANIFEST).write_text(json.dumps({**good, "num_frames": "abc"}))
    assert main(["render", str(directory), "--quiet"]) == 2


def test_frames_without_a_manifest_are_not_counted_as_done(tiny_explorer, tmp_path):
    spec = spec_for(tiny_explorer)
    (tmp_path / "frame_00000.png").write_bytes(b"not ours")
    with pytest.raises(ValueError, match="1 frame files but no manifest.json"):
        renders.render_to_directory(tiny_explorer, spec, tmp_path)
    report = renders.render_to_directory(tiny_explorer, spec, tmp_path, overwrite=True)
    assert report.rendered == (0, 1, 2)


def test_broken_frames_old_versions_and_temporaries(tiny_explorer, tmp_path):
    spec = spec_for(tiny_explorer)
    renders.render_to_directory(tiny_explorer, spec, tmp_path)
    before = frames_of(tmp_path)
    # A manifest written by an older kerasmorph: another version, and without
    # the fields added since (they count as their defaults, or are not compared).
    old = spec.to_json()
    old["version"] = "0.0.1"
    for name in ("decoder_jit_compile", "embeddings", "precision_request"):
        del old[name]
    (tmp_path / renders.MANIFEST).write_text(json.dumps(old))
    # A 0-byte frame, a truncated one, and temporaries of a killed run.
    renders.frame_path(tmp_path, 0).write_bytes(b"")
    path = renders.frame_path(tmp_path, 2)
    path.write_bytes(before[path.name][:-20])
    temporaries = [".frame_00001.0123abcd.tmp.png", ".manifest.deadbeef.tmp.json"]
    for name in temporaries:
        (tmp_path / name).write_bytes(b"partial")
    report = renders.render_to_directory(tiny_explorer, spec, tmp_path)
    assert report.rendered == (0, 2) and report.skipped == (1,)
    assert frames_of(tmp_path) == before
    assert not any((tmp_path / name).exists() for name in temporaries)
    # Nothing that decides the frames changed: the old manifest is kept as written.
    assert json.loads((tmp_path / renders.MANIFEST).read_text()) == old
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([renders.MANIFEST, *before])


def test_old_weights_fingerprints_still_match(tiny_explorer, tmp_path, monkeypatch):
    # kerasmorph 0.1 manifests hold the head/tail fingerprint: still the same weights.
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path / "cache"))
    path = tmp_path / "unet.h5"
    path.write_bytes(b"weights" * 1000)
    explorer = types.SimpleNamespace(
        describe=lambda: {"weights": {"diffusion_model": str(path)}},
        preset=types.SimpleNamespace(name="sd1"),
        seed=0,
    )
    spec = spec_for(tiny_explorer, weights=renders.weights_fingerprint(explorer))
    stored = {**spec.to_json(), "weights": renders.legacy_weights_fingerprint(explorer)}
    assert renders.differing_fields(stored, spec) == ["weights"]
    assert renders.differing_fields(stored, spec, explorer=explorer) == []
    path.write_bytes(b"other" * 1000)
    assert renders.differing_fields(stored, spec, explorer=explorer) == ["weights"]


# In a private mount namespace: $1 bound read-only onto itself, then `render $1`.
_READ_ONLY_RENDER = (
    'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && '
    'exec "$2" -m kerasmorph.cli render "$1" --quiet'
)


def _read_only_runner(tmp_path):
    """How to run a command on a read-only view of a directory here, or None."""
    if os.geteuid() != 0:
        return "chmod"  # Permissions bind a non-root user.
    probe = tmp_path / "probe"
    probe.mkdir()
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && ! touch "$1/x"'
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", str(probe)], capture_output=True
    )
    return "unshare" if result.returncode == 0 else None


def test_a_finished_render_resumes_on_a_read_only_location(tmp_path):
    runner = _read_only_runner(tmp_path)
    if runner is None:
        pytest.skip("no way to make a read-only location here (root without mount namespaces)")
    out = tmp_path / "rd"
    assert main(["loop", "a red circle", "--frames", "2", *TINY, "--out", str(out)]) == 0
    before = sorted(p.name for p in out.iterdir())
    if runner == "unshare":
        command = ["unshare", "-m", "sh", "-c", _READ_ONLY_RENDER, "sh", str(out), sys.executable]
    else:
        out.chmod(0o555)
        command = [sys.executable, "-m", "kerasmorph.cli", "render", str(out), "--quiet"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    finally:
        out.chmod(0o755)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "rendered 0 frames, 2 already done" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == before
