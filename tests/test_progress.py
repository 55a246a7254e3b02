"""Progress bars (issue 16, item 10): Keras' `Progbar` on long work, nothing when quiet.

Converting, merging and comparing checkpoints and loading a component's
weights count tensors; a sweep and an adaptive render show one bar of frames
for the whole job instead of one per Explorer call. The bars go to stderr, so
stdout holds only what a command reports.
"""

import re

import numpy as np
import pytest
from safetensors.numpy import save_file
from test_cli_checkpoints import NAMES  # Tiny CompVis-named files.
from test_cli_checkpoints import _write as write_checkpoint

from kerasmorph import adaptive, checkpoints, cli, models, presets, progress, sweeps

# One Session per file, as a notebook keeps one: the model is built once and reused.
_SESSION = cli.Session()


def main(argv, session=_SESSION):
    return cli.main(argv, session=session)


def _write(tmp_path, name, seed):
    return write_checkpoint(tmp_path, name, seed)[0]


def _bars(text: str) -> list[tuple[int, int]]:
    """The `(count, total)` of every progress-bar update in `text` (colours stripped)."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    return [(int(count), int(total)) for count, total in re.findall(r"(\d+)/(\d+) ━", plain)]


def test_progress_bar_counts_and_is_silent_when_quiet(capsys):
    bar = progress.ProgressBar(3, verbose=True, unit_name="tensor")
    for _ in bar.track(range(3)):
        pass
    captured = capsys.readouterr()
    assert _bars(captured.err)[-1] == (3, 3) and "/tensor" in captured.err
    assert captured.out == ""
    quiet = progress.ProgressBar(3, verbose=False)
    for _ in quiet.track(range(3)):
        pass
    quiet.finish()
    assert capsys.readouterr() == ("", "") and not quiet.shown


def test_a_job_that_stops_early_ends_its_bar_at_its_count(capsys):
    bar = progress.ProgressBar(10, verbose=True, unit_name="frame")
    bar.advance(4)
    bar.finish()
    assert _bars(capsys.readouterr().err)[-1] == (4, 4)


def test_merge_and_similarity_show_the_tensor_count(tmp_path, capsys):
    a, b = _write(tmp_path, "a", 1), _write(tmp_path, "b", 2)
    out = tmp_path / "merged.safetensors"
    assert main(["merge", "--weighted-sum", a, b, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert _bars(captured.err)[-1] == (len(NAMES), len(NAMES)) and "/tensor" in captured.err
    assert captured.out == f"{out}\n"
    assert main(["similarity", a, b, "--csv", str(tmp_path / "s.csv")]) == 0
    assert _bars(capsys.readouterr().err)[-1] == (len(NAMES), len(NAMES))


def test_merge_and_similarity_are_quiet_with_quiet(tmp_path, capsys):
    a, b = _write(tmp_path, "a", 1), _write(tmp_path, "b", 2)
    out = tmp_path / "merged.safetensors"
    assert main(["merge", "--weighted-sum", a, b, "--out", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{out}\n" and _bars(captured.err) == []
    table = tmp_path / "s.csv"
    assert main(["similarity", a, b, "--csv", str(table), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{table}\n" and _bars(captured.err) == []


def _write_folder(folder, seed, num_tensors):
    """A diffusers folder: `num_tensors` (name -> count) tensors in each weight subfolder."""
    rng = np.random.default_rng(seed)
    files = {"unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model"}
    for subfolder, count in num_tensors.items():
        (folder / subfolder).mkdir(parents=True)
        tensors = {f"w{i}": rng.standard_normal(3).astype(np.float32) for i in range(count)}
        save_file(tensors, str(folder / subfolder / f"{files[subfolder]}.safetensors"))
        (folder / subfolder / "config.json").write_text("{}")
    (folder / "model_index.json").write_text("{}")
    return folder


def test_merged_diffusers_folders_count_every_tensor_written(tmp_path, capsys):
    a = _write_folder(tmp_path / "a", 1, {"unet": 3, "vae": 2})
    b = _write_folder(tmp_path / "b", 2, {"unet": 3, "vae": 2})
    vae = _write_folder(tmp_path / "vae", 3, {"vae": 4})
    out = tmp_path / "merged"
    checkpoints.merge_checkpoints(out, a, [(0.5, b)], 0.5, take={"vae": vae}, verbose=True)
    # The unet's 3 merged, then the 4 of the VAE taken whole.
    assert _bars(capsys.readouterr().err)[-1] == (7, 7)


def test_convert_shows_the_tensors_loaded(tmp_path, capsys):
    decoder = models.build_component(presets.PRESETS["sd1"], "decoder", 128, 128)
    path = tmp_path / "vae.safetensors"
    save_file(checkpoints.compvis_state_dict({"decoder": decoder}), str(path))
    num_tensors = len(checkpoints.weight_plan(decoder, "decoder"))
    capsys.readouterr()
    checkpoints.convert(path, tmp_path / "out", family="sd1", components=("decoder",), verbose=True)
    assert _bars(capsys.readouterr().err)[-1] == (num_tensors, num_tensors)
    # Quiet by default (the library's), as `convert` calls it without verbose.
    with checkpoints.open_checkpoint(path) as source:
        checkpoints.load_component(decoder, "decoder", source, "sd1")
    assert capsys.readouterr() == ("", "")


def test_building_a_component_shows_the_weights_loaded(tmp_path, capsys):
    preset = presets.PRESETS["tiny"]
    decoder = models.build_component(preset, "decoder", 64, 64)
    weights = tmp_path / "decoder.weights.h5"
    decoder.save_weights(str(weights))
    capsys.readouterr()
    models.build_component(preset, "decoder", 64, 64, weights_path=weights, verbose=True)
    num_tensors = len(decoder.weights)
    assert _bars(capsys.readouterr().err) == [(num_tensors, num_tensors)]
    models.build_component(preset, "decoder", 64, 64, weights_path=weights)
    assert capsys.readouterr() == ("", "")


@pytest.fixture
def verbose_explorer(tiny_explorer):
    """The shared tiny Explorer with its progress bars on, for one test."""
    tiny_explorer.verbose = True
    yield tiny_explorer
    tiny_explorer.verbose = False


def test_a_sweep_shows_one_bar_of_frames(verbose_explorer, capsys):
    sweeps.sweep(verbose_explorer, "x", "guidance", [1.0, 7.5], seed=3, num_steps=1)
    bars = _bars("".join(capsys.readouterr()))  # The Explorer's own bars go to stdout.
    # Frames, not the denoising step of each image.
    assert bars and {total for _, total in bars} == {2} and bars[-1] == (2, 2)
    assert verbose_explorer.verbose


def test_an_adaptive_render_shows_one_bar_of_frames(verbose_explorer, capsys):
    encodings = verbose_explorer.encode_text(["a red circle", "a blue square"])
    path = adaptive.keyframe_path(encodings, np.repeat(verbose_explorer.noise(1, 0), 2, axis=0))
    capsys.readouterr()
    result = adaptive.refine(
        verbose_explorer,
        path,
        threshold=1e-6,
        max_frames=5,
        initial_frames=3,
        num_steps=1,
        batch_size=2,
    )
    bars = _bars("".join(capsys.readouterr()))  # The Explorer's own bars go to stdout.
    frames = len(result.frames)
    # Frames of the whole refinement (ending at those made), not each round's steps.
    assert bars[-1] == (frames, frames)
    assert {total for _, total in bars} <= {5, frames} and all(count >= 3 for count, _ in bars)
    assert verbose_explorer.verbose


@pytest.mark.parametrize("verbose", [True, False])
def test_an_explorer_builds_its_components_with_its_verbosity(monkeypatch, verbose):
    import kerasmorph
    from kerasmorph.explorer import components

    seen = []
    real_build = components.models.build_component

    def recording_build(*args, **kwargs):
        seen.append(kwargs.get("verbose"))
        return real_build(*args, **kwargs)

    monkeypatch.setattr(components.models, "build_component", recording_build)
    explorer = kerasmorph.Explorer("tiny", img_height=64, img_width=64, verbose=verbose)
    assert explorer.decoder is not None
    assert seen == [verbose]
