"""Schedulers on the trained `shapes` model: they draw what is asked, and stochastic
sampling stays coherent along a walk."""

import dataclasses

import numpy as np
import pytest

import kerasmorph
from kerasmorph import schedulers
from kerasmorph.shapes import data as shapes_data


@pytest.fixture(scope="module")
def explorer():
    return kerasmorph.Explorer("shapes", verbose=False)


def neighbour_change(frames: np.ndarray) -> float:
    """Mean absolute change between neighbouring frames, in grey levels."""
    frames = frames.astype(np.float32)
    return float(np.abs(np.diff(frames, axis=0)).mean())


def independent_step_noise(walk):
    """The same walk with per-step noise drawn independently for every frame."""

    def step_noise(indices, call):
        return np.stack(
            [
                np.random.default_rng([int(i), call, 7]).standard_normal((16, 16, 4), np.float32)
                for i in indices
            ]
        )

    return dataclasses.replace(walk, step_noise=step_noise)


@pytest.mark.skipif("euler_ancestral" not in schedulers.SCHEDULERS, reason="not registered")
def test_ancestral_walk_noise_is_coherent(explorer):
    walk = kerasmorph.walks.prompt_walk(explorer, ["a red circle", "a blue square"], 16, seed=2)
    settings = dict(num_steps=20, scheduler="euler_ancestral", batch_size=4)
    coherent = np.stack(list(explorer.render(walk, **settings)))
    independent = np.stack(list(explorer.render(independent_step_noise(walk), **settings)))
    # Measured: see notes/issue-12-schedulers.md (coherent ≈ a third of independent).
    assert neighbour_change(coherent) < 0.6 * neighbour_change(independent)
    # Both ends still draw their prompts.
    for frame, colour in ((coherent[0], "red"), (coherent[-1], "blue")):
        assert shapes_data.measure(frame).colour == colour


@pytest.mark.skipif("euler_ancestral" not in schedulers.SCHEDULERS, reason="not registered")
def test_seed_morph_mixes_the_per_step_noise(explorer):
    walk = kerasmorph.walks.seed_walk(explorer, "a green triangle", [1, 2], 8)
    assert walk.step_noise is not None
    noise = walk.inputs(np.arange(8))[1]
    step = walk.step_noise(np.arange(8), 3)
    # Ends: exactly the keyframes' derived per-step noise; the middle stays standard normal.
    from kerasmorph.explorer.walk import derived_noise

    np.testing.assert_allclose(step[[0, -1]], derived_noise(noise[[0, -1]], 3), atol=1e-6)
    assert abs(float(step[4].std()) - 1.0) < 0.1


@pytest.mark.skipif("euler_ancestral" not in schedulers.SCHEDULERS, reason="not registered")
def test_adaptive_render_per_step_noise_is_coherent(explorer):
    from kerasmorph import adaptive

    encodings = explorer.encode_text(["a red circle", "a blue square"])
    path = adaptive.keyframe_path(encodings, explorer.noise(2, 2))
    settings = dict(threshold=1.0, max_frames=8, initial_frames=8, num_steps=20, batch_size=4)
    settings["scheduler"] = "euler_ancestral"
    coherent = adaptive.refine(explorer, path, **settings).frames
    # A plain function path: each frame's per-step noise derives from its own starting noise.
    independent = adaptive.refine(explorer, lambda p: path(p), **settings).frames
    assert neighbour_change(coherent) < 0.6 * neighbour_change(independent)


@pytest.mark.parametrize("name", sorted(set(schedulers.SCHEDULERS) - {"ddim"}))
def test_every_scheduler_draws_the_prompt(explorer, name):
    encoding = explorer.encode_text("a blue square")
    # PNDM and LMS extrapolate from past steps and are unstable on the toy model at few
    # steps (README, Schedulers: shape accuracy at 20 steps 0.52 for LMS); 50 steps for them.
    num_steps = 50 if name in ("pndm", "lms") else 20
    images = explorer.generate_image(
        encoding, batch_size=4, num_steps=num_steps, seed=0, scheduler=name
    )
    colours = [shapes_data.measure(image).colour for image in images]
    assert colours.count("blue") >= 3, colours


def test_a_150_frame_render_traces_once_per_step_kind():
    # The default path (XLA), one Explorer, every scheduler in turn: the fused DDIM step
    # is one trace, the guided UNet call all host-stepped schedulers share is the other;
    # 19 batches of 8 (the last one padded) add none.
    explorer = kerasmorph.Explorer("tiny", img_height=64, img_width=64, verbose=False)
    walk = kerasmorph.walks.prompt_walk(explorer, ["a red circle", "a blue square"], 150)
    traces = {}
    for name in schedulers.NAMES:
        frames = sum(1 for _ in explorer.render(walk, num_steps=3, batch_size=8, scheduler=name))
        assert frames == 150
        traces[name] = explorer.sampler.num_traces
    assert traces == {name: 1 if name == "ddim" else 2 for name in schedulers.NAMES}


# ------------------------------------------------------------------ command line


def test_cli_scheduler_flag_is_read_and_stored(tmp_path, capsys):
    import json

    from PIL import Image

    from kerasmorph import cli, renders

    session = cli.Session()
    # The default path (no --no-jit): `render` restores the manifest's precision plan.
    base = ["--model", "tiny", "--steps", "3", "--quiet"]
    assert (
        cli.main(["generate", "x", "--out", str(tmp_path / "d.png"), *base], session=session) == 0
    )
    ddim = np.asarray(Image.open(tmp_path / "d.png"))
    for name in ("euler", "heun"):
        out = tmp_path / f"{name}.png"
        argv = ["generate", "x", "--out", str(out), *base, "--scheduler", name]
        assert cli.main(argv, session=session) == 0
        image = np.asarray(Image.open(out))
        assert not np.array_equal(image, ddim)  # The flag changes the sampling.
    # A render directory records the scheduler; `render` resumes with it, byte for byte.
    directory = tmp_path / "walk"
    argv = ["interpolate", "a", "b", "--frames", "3", "--out", str(directory), *base]
    assert cli.main([*argv, "--scheduler", "euler_ancestral"], session=session) == 0
    spec = renders.load_spec(directory)
    assert spec.scheduler == "euler_ancestral"
    first = (directory / "frame_00001.png").read_bytes()
    (directory / "frame_00001.png").unlink()
    assert cli.main(["render", str(directory), "--quiet"], session=session) == 0
    assert (directory / "frame_00001.png").read_bytes() == first
    # Another scheduler is another render: refused without --overwrite.
    assert cli.main([*argv, "--scheduler", "euler"], session=session) == 2
    assert "scheduler" in capsys.readouterr().err
    # info lists them; morph-images refuses a scheduler it cannot invert with.
    assert cli.main(["info", "--json"], session=session) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["schedulers"]) == set(schedulers.SCHEDULERS)
    assert report["schedulers"]["euler_ancestral"]["deterministic"] is False
    image = tmp_path / "d.png"
    argv = ["morph-images", str(image), str(image), "--prompts", "a", "b", "--frames", "2"]
    assert cli.main([*argv, "--out", str(tmp_path / "m.gif"), *base, "--scheduler", "euler"]) == 2
    assert "--scheduler ddim" in capsys.readouterr().err


def test_old_manifests_without_a_scheduler_still_resume(tmp_path):
    from kerasmorph import renders

    spec = renders.RenderSpec(
        kind="interpolate",
        prompts=("a", "b"),
        seeds=(0,),
        num_frames=2,
        schedule="linear",
        options={},
        model="tiny",
        weights="seed:0",
        img_height=64,
        img_width=64,
        precision="float32",
        jit_compile=False,
        num_steps=2,
        unconditional_guidance_scale=7.5,
        negative_prompt=None,
        batch_size=2,
    )
    stored = spec.to_json()
    del stored["scheduler"], stored["scheduler_config"]
    assert renders.RenderSpec.from_json(stored) == spec
    assert renders.differing_fields(stored, spec) == []
