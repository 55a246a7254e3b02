"""Depth maps estimated from the picture: KerasHub's DepthAnything from a local preset folder.

The estimator is a tiny random `DepthAnythingDepthEstimator` saved here with
KerasHub's own `save_to_preset`, so the real loading path runs offline; its
maps are noise, so the tests check the plumbing (the map the UNet holds is the
estimate, normalised), not depth quality.
"""

import numpy as np
import pytest

import kerasmorph
from kerasmorph import cli, images
from kerasmorph.errors import InputError
from kerasmorph.models import depth_estimator
from kerasmorph.shapes import data as shapes_data

_SESSION = cli.Session()
START = shapes_data.render(shapes_data.Sample("blue", "triangle", 0.4, (0.3, 0.3)))


def test_a_folder_that_is_not_a_preset_names_the_missing_files(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(InputError, match="task.json, model.weights.h5 missing") as info:
        depth_estimator.load_depth_estimator(tmp_path)
    assert "pass --depth" in str(info.value)


def test_no_map_and_no_estimator_says_what_to_pass(monkeypatch):
    monkeypatch.delenv(depth_estimator.DEPTH_ESTIMATOR_ENV, raising=False)
    explorer = kerasmorph.Explorer("shapes-depth", verbose=False)
    with pytest.raises(InputError, match="--depth-estimator DIR"):
        explorer.depth_to_image(START, "a red circle", num_steps=2, seed=0)


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    keras_hub = pytest.importorskip("keras_hub", reason="needs kerasmorph[depth] (keras-hub)")
    size = 112  # 8 patches of 14: the smallest the neck's 0.5 reassembly accepts.
    # Seeded: about 1 random init in 10 of so tiny a head is dead (its ReLU gives an all-zero,
    # constant map, which depth_to_latent rightly refuses); seed 0 gives a varied map.
    import keras

    keras.utils.set_random_seed(0)
    encoder = keras_hub.models.DINOV2Backbone(
        patch_size=14, num_layers=4, hidden_dim=16, num_heads=2, intermediate_dim=32,
        image_shape=(size, size, 3), position_embedding_shape=(size, size),
    )  # fmt: skip
    backbone = keras_hub.models.DepthAnythingBackbone(
        image_encoder=encoder, reassemble_factors=[4, 2, 1, 0.5], neck_hidden_dims=[8, 8, 8, 8],
        fusion_hidden_dim=8, head_hidden_dim=8, head_in_index=-1,
        feature_keys=["stage1", "stage2", "stage3", "stage4"],
    )  # fmt: skip
    converter = keras_hub.layers.DepthAnythingImageConverter(image_size=(size, size))
    preprocessor = keras_hub.models.DepthAnythingDepthEstimatorPreprocessor(
        image_converter=converter
    )
    estimator = keras_hub.models.DepthAnythingDepthEstimator(
        backbone=backbone, depth_estimation_type="relative", preprocessor=preprocessor
    )
    folder = tmp_path_factory.mktemp("depth-anything") / "preset"
    estimator.save_to_preset(str(folder))
    return folder


def test_depth_to_image_estimates_the_map_from_the_picture(preset, monkeypatch):
    loads = []
    real_load = depth_estimator.load_depth_estimator
    monkeypatch.setattr(
        depth_estimator, "load_depth_estimator", lambda path: loads.append(path) or real_load(path)
    )
    explorer = kerasmorph.Explorer("shapes-depth", verbose=False)
    frames = explorer.depth_to_image(
        START, "a red circle", depth_estimator=str(preset), num_steps=2, seed=0
    )
    assert frames.shape == (1, 128, 128, 3)
    estimate = depth_estimator.estimate_depth(real_load(preset), START[None])
    assert estimate.shape == (1, 112, 112) and estimate.std() > 0
    expected = images.depth_to_latent(estimate, (16, 16))[0, ..., 0]
    held = kerasmorph.models.depth.stored_depth_map(explorer.diffusion_model)
    np.testing.assert_allclose(held, expected, atol=1e-5)
    # From the environment too, and loaded once per Explorer.
    monkeypatch.setenv(depth_estimator.DEPTH_ESTIMATOR_ENV, str(preset))
    explorer.depth_to_image(START, "a red circle", num_steps=2, seed=0)
    assert len(loads) == 1


def test_cli_depth2img_with_an_estimator_saves_the_map_it_used(preset, tmp_path, capsys):
    from kerasmorph import export

    export.save_frame(tmp_path / "start.png", START)
    out, used = tmp_path / "out.png", tmp_path / "used.png"
    argv = ["depth2img", str(tmp_path / "start.png"), "a red circle", "--depth-estimator"]
    argv += [str(preset), "--out", str(out), "--save-depth", str(used)]
    argv += ["--model", "shapes-depth", "--steps", "2", "--quiet"]
    assert cli.main(argv, session=_SESSION) == 0
    assert capsys.readouterr().out.split() == [str(out), str(used)]
    assert out.is_file() and used.is_file()


def test_a_walk_from_a_picture_follows_its_estimated_depth(preset, tmp_path, capsys):
    import json

    from kerasmorph import export

    export.save_frame(tmp_path / "start.png", START)
    out = tmp_path / "walk"
    argv = ["interpolate", "a red circle", "a blue square", "--image", str(tmp_path / "start.png")]
    argv += ["--depth-estimator", str(preset), "--frames", "2", "--steps", "2", "--out", str(out)]
    assert cli.main([*argv, "--model", "shapes-depth", "--quiet"], session=_SESSION) == 0
    estimator = depth_estimator.load_depth_estimator(preset)
    estimate = depth_estimator.estimate_depth(estimator, START[None])
    expected = images.depth_to_latent(estimate, (16, 16))[0, ..., 0]
    manifest = json.loads((out / "manifest.json").read_text())
    np.testing.assert_allclose(np.asarray(manifest["options"]["depth_map"]), expected, atol=1e-5)
    assert len(list(out.glob("*.png"))) == 2
    capsys.readouterr()
    # A 4-channel model does not read a depth map: the flag is refused, not ignored.
    argv[-1] = str(tmp_path / "plain")
    assert cli.main([*argv, "--model", "shapes", "--quiet"], session=_SESSION) == 2
    assert "--depth-estimator needs a depth model" in capsys.readouterr().err


@pytest.mark.parametrize("with_depth", [True, False], ids=["with --depth", "without --image"])
def test_walk_depth_estimator_needs_an_image_and_no_map(with_depth, tmp_path, capsys):
    depth = tmp_path / "map.npy"
    np.save(depth, np.eye(16, dtype=np.float32))
    extra = ["--image", str(depth), "--depth", str(depth)] if with_depth else []
    argv = ["interpolate", "a", "b", "--depth-estimator", str(tmp_path), *extra]
    argv += ["--model", "shapes-depth", "--out", str(tmp_path / "w.gif")]
    assert cli.main(argv, session=_SESSION) == 2
    assert "pass it with --image and without --depth" in capsys.readouterr().err


def test_depth_to_image_refuses_a_map_and_an_estimator_together(tmp_path):
    explorer = kerasmorph.Explorer("shapes-depth", verbose=False)
    with pytest.raises(InputError, match="not both"):
        explorer.depth_to_image(
            START, "a", depth_map=np.eye(16), depth_estimator=str(tmp_path), num_steps=2
        )
