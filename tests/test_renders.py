"""Resumable render directories, kill-and-resume, and tf.distribute sharding."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from kerasmorph import cli, renders

# One Session per file, as a notebook keeps one: the model is built once and reused.
_SESSION = cli.Session()


def main(argv, session=_SESSION):
    return cli.main(argv, session=session)


TINY = ["--model", "tiny", "--no-jit", "--quiet", "--steps", "2"]


def spec_for(explorer, **changes):
    spec = renders.RenderSpec(
        kind="interpolate",
        prompts=("a red circle", "a blue square"),
        seeds=(0,),
        num_frames=6,
        schedule="linear",
        options={},
        model="tiny",
        weights=renders.weights_fingerprint(explorer),
        img_height=128,
        img_width=128,
        precision="float32",
        jit_compile=False,
        num_steps=2,
        unconditional_guidance_scale=7.5,
        negative_prompt=None,
        batch_size=2,
    )
    return dataclasses.replace(spec, **changes)


def test_spec_round_trips_through_json(tiny_explorer):
    spec = spec_for(tiny_explorer, options={"step_size": 0.01}, seeds=(1, 2))
    again = renders.RenderSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert again == spec
    with pytest.raises(ValueError, match="unknown fields \\['extra'\\]"):
        renders.RenderSpec.from_json({**spec.to_json(), "extra": 1})


def test_resume_renders_only_missing_frames(tiny_explorer, tmp_path):
    spec = spec_for(tiny_explorer)
    first = renders.render_to_directory(tiny_explorer, spec, tmp_path)
    assert first.rendered == tuple(range(6)) and first.skipped == ()
    before = {p.name: p.read_bytes() for p in tmp_path.glob("frame_*.png")}
    kept_mtime = renders.frame_path(tmp_path, 0).stat().st_mtime_ns
    for index in (3, 5):
        renders.frame_path(tmp_path, index).unlink()
    again = renders.render_to_directory(tiny_explorer, spec, tmp_path)
    assert again.rendered == (3, 5) and again.skipped == (0, 1, 2, 4)
    assert {p.name: p.read_bytes() for p in tmp_path.glob("frame_*.png")} == before
    assert renders.frame_path(tmp_path, 0).stat().st_mtime_ns == kept_mtime


def test_other_spec_is_refused_naming_fields(tiny_explorer, tmp_path):
    renders.render_to_directory(tiny_explorer, spec_for(tiny_explorer, num_frames=3), tmp_path)
    other = spec_for(tiny_explorer, num_frames=3, num_steps=3, seeds=(5,))
    with pytest.raises(
        ValueError, match=r"num_steps: 2 on disk vs 3.*seeds: \[0\] on disk vs \[5\].*--overwrite"
    ):
        renders.render_to_directory(tiny_explorer, other, tmp_path)
    report = renders.render_to_directory(tiny_explorer, other, tmp_path, overwrite=True)
    assert report.rendered == (0, 1, 2)
    assert renders.load_spec(tmp_path) == other


def test_shards_split_frames(tiny_explorer, tmp_path):
    spec = spec_for(tiny_explorer, num_frames=5)
    first = renders.render_to_directory(tiny_explorer, spec, tmp_path, shard=(0, 2))
    second = renders.render_to_directory(tiny_explorer, spec, tmp_path, shard=(1, 2))
    assert first.rendered == (0, 2, 4) and second.rendered == (1, 3)
    with pytest.raises(ValueError, match="shard"):
        renders.render_to_directory(tiny_explorer, spec, tmp_path, shard=(2, 2))


def _cli(*args, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "kerasmorph.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_kill_and_resume_loses_nothing(tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    # The default path (no --no-jit): what a user's rerun after kill -9 goes through.
    args = ["walk", "a red circle", "--frames", "12", "--batch-size", "2"]
    args += ["--model", "tiny", "--quiet", "--steps", "3"]
    process = _cli(*args, "--out", str(killed))
    deadline = time.time() + 300
    while len(list(killed.glob("frame_*.png"))) < 4:
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, "the render did not start in time"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    finished = {p.name: p.stat().st_mtime_ns for p in killed.glob("frame_*.png")}
    assert 4 <= len(finished) < 12
    assert main([*args, "--out", str(killed)]) == 0
    assert main([*args, "--out", str(clean)]) == 0
    names = sorted(p.name for p in killed.iterdir())
    assert names == sorted(p.name for p in clean.iterdir())  # No partial or temp file.
    for name in names:
        if name.startswith("frame_"):
            assert (killed / name).read_bytes() == (clean / name).read_bytes(), name
    for name, mtime in finished.items():  # No finished frame recomputed.
        assert (killed / name).stat().st_mtime_ns == mtime


def test_render_command_resumes_from_the_manifest(tmp_path, capsys):
    # With --no-jit; the default plan's resume is in test_renders_spec.py.
    out = tmp_path / "loop"
    assert main(["loop", "a", "--frames", "4", *TINY, "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.glob("frame_*.png")}
    renders.frame_path(out, 1).unlink()
    capsys.readouterr()
    assert main(["render", str(out / "manifest.json"), "--quiet"]) == 0
    assert "rendered 1 frames, 3 already done" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in out.glob("frame_*.png")} == before


def test_cli_refuses_a_changed_render(tmp_path, capsys):
    out = tmp_path / "walk"
    assert main(["walk", "a", "--frames", "3", *TINY, "--out", str(out)]) == 0
    assert main(["walk", "a", "--frames", "3", "--step-size", "0.1", *TINY, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "options" in err and "--overwrite" in err
    assert (
        main(
            [
                "walk",
                "a",
                "--frames",
                "3",
                "--step-size",
                "0.1",
                *TINY,
                "--out",
                str(out),
                "--overwrite",
            ]
        )
        == 0
    )


MIRRORED = textwrap.dedent(
    """
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import kerasmorph
    from kerasmorph import walks
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    single = kerasmorph.Explorer("tiny", jit_compile=False, verbose=False)
    mirrored = kerasmorph.Explorer("tiny", jit_compile=False, verbose=False, strategy=strategy)
    frames = {}
    for name, explorer in (("single", single), ("mirrored", mirrored)):
        walk = walks.prompt_walk(explorer, ["a red circle", "a blue square"], 6)
        frames[name] = np.stack(list(explorer.render(walk, num_steps=2, batch_size=4)))
    assert strategy.num_replicas_in_sync == 2
    assert mirrored.sampler.num_traces >= 1
    print("max difference", np.abs(frames["single"].astype(int) - frames["mirrored"]).max())
    """
)


def test_two_replicas_render_the_same_frames_as_one_device():
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "max difference 0" in result.stdout


def test_two_workers_render_every_frame_exactly_once(tmp_path):
    out, single = tmp_path / "shared", tmp_path / "single"
    cluster = {"worker": ["127.0.0.1:23456", "127.0.0.1:23457"]}
    args = ["interpolate", "a", "b", "--frames", "7", *TINY]
    processes = [
        _cli(
            *args,
            "--out",
            str(out),
            "--strategy",
            "multiworker",
            env={
                "TF_CONFIG": json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": i}}
                )
            },
        )
        for i in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=600) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert "rendered 4 frames, 0 already done (worker 0 of 2)" in outputs[0][0]
    assert "rendered 3 frames, 0 already done (worker 1 of 2)" in outputs[1][0]
    # Each worker held the shared lock and its own worker lock; none is left.
    assert sorted(p.name for p in out.iterdir()) == [
        *(f"frame_{i:05d}.png" for i in range(7)),
        "manifest.json",
    ]
    # The frames are those of a one-process render, byte for byte.
    assert main([*args, "--out", str(single)]) == 0
    for index in range(7):
        path = renders.frame_path(out, index)
        assert path.read_bytes() == renders.frame_path(single, index).read_bytes(), path
    assert renders.load_spec(out) == renders.load_spec(single)
