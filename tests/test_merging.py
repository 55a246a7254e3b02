"""Task arithmetic and similarity over dicts of arrays, and over files."""

import numpy as np
import pytest
from safetensors.numpy import save_file

from kerasmorph import checkpoints, merging


def _model(seed, *, shapes=None):
    rng = np.random.default_rng(seed)
    shapes = shapes or {
        "model.diffusion_model.input_blocks.0.0.weight": (8, 4, 3, 3),
        "model.diffusion_model.out.2.bias": (4,),
        "first_stage_model.decoder.conv_in.weight": (6, 4, 3, 3),
        "cond_stage_model.transformer.text_model.final_layer_norm.weight": (5,),
    }
    return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}


def _dyadic(seed):
    """Values k/64 with small k: every sum and difference here is exact."""
    rng = np.random.default_rng(seed)
    return {
        name: rng.integers(-64, 64, value.shape).astype(np.float32) / 64
        for name, value in _model(0).items()
    }


def test_task_vector_add_then_subtract_is_identity():
    base, a, b = _dyadic(1), _dyadic(2), _dyadic(3)
    tau_a, tau_b = merging.TaskVector(base, a), merging.TaskVector(base, b)
    result = (tau_a + tau_b) - tau_b
    for name, value in tau_a.vector.items():
        np.testing.assert_array_equal(result.vector[name], value)
    # Random values: equal up to float32 rounding.
    base, a, b = _model(1), _model(2), _model(3)
    tau_a, tau_b = merging.TaskVector(base, a), merging.TaskVector(base, b)
    result = (tau_a + tau_b) - tau_b
    for name, value in tau_a.vector.items():
        np.testing.assert_allclose(result.vector[name], value, atol=1e-6)


def test_task_vector_negation_scaling_and_apply():
    base, model = _model(1), _model(2)
    tau = merging.TaskVector(base, model)
    np.testing.assert_allclose(
        tau.apply_to(base, 1.0)["model.diffusion_model.out.2.bias"],
        model["model.diffusion_model.out.2.bias"],
        atol=1e-6,
    )
    back = (-tau).apply_to(model)
    for name in base:
        np.testing.assert_allclose(back[name], base[name], atol=1e-6)
    half = (0.5 * tau).apply_to(base)
    also_half = tau.apply_to(base, scaling_coef=0.5)
    for name in base:
        np.testing.assert_allclose(half[name], also_half[name], atol=1e-7)
        np.testing.assert_allclose(half[name], (base[name] + model[name]) / 2, atol=1e-6)
    assert sum([tau, tau]).vector.keys() == tau.vector.keys()
    with pytest.raises(ValueError, match="Received: scale="):
        tau * "two"


def test_weighted_sum_and_add_difference_match_the_formulas():
    a, b, c = _model(1), _model(2), _model(3)
    merged, report = merging.weighted_sum(a, b, 0.3)
    assert len(report.merged) == len(a) and not report.kept
    for name in a:
        np.testing.assert_allclose(
            merged[name], a[name] * 0.7 + b[name] * 0.3, rtol=1e-6, atol=1e-7
        )
    merged, _ = merging.add_difference(a, b, c, 0.75)
    for name in a:
        np.testing.assert_allclose(
            merged[name], a[name] + 0.75 * (b[name] - c[name]), rtol=1e-6, atol=1e-6
        )
    for alpha, expected in ((0.0, a), (1.0, b)):
        merged, _ = merging.weighted_sum(a, b, alpha)
        for name in a:
            np.testing.assert_array_equal(merged[name], expected[name])


def test_several_task_vectors_each_with_its_coefficient():
    base, a, b = _model(1), _model(2), _model(3)
    merged, _ = merging.add_task_vectors(base, [(a, 0.5), (b, -0.25)])
    via_vectors = (
        0.5 * merging.TaskVector(base, a) + -0.25 * merging.TaskVector(base, b)
    ).apply_to(base)
    for name in base:
        expected = base[name] + 0.5 * (a[name] - base[name]) - 0.25 * (b[name] - base[name])
        np.testing.assert_allclose(merged[name], expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(via_vectors[name], expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="at least one"):
        merging.add_task_vectors(base, [])


def test_mismatched_and_missing_tensors_are_kept_and_reported():
    target, other = _model(1), _model(2)
    first_conv = "model.diffusion_model.input_blocks.0.0.weight"
    # The depth model's first conv takes 5 channels.
    other[first_conv] = np.ones((8, 5, 3, 3), np.float32)
    del other["model.diffusion_model.out.2.bias"]
    target["model_ema.num_updates"] = np.array(7, np.int64)
    merged, report = merging.weighted_sum(target, other, 0.5)
    np.testing.assert_array_equal(merged[first_conv], target[first_conv])
    np.testing.assert_array_equal(
        merged["model.diffusion_model.out.2.bias"], target["model.diffusion_model.out.2.bias"]
    )
    kept = dict(report.kept)
    assert "(8, 4, 3, 3) != (8, 5, 3, 3)" in kept[first_conv]
    assert "missing" in kept["model.diffusion_model.out.2.bias"]
    assert "not floating point" in kept["model_ema.num_updates"]
    assert merged["model_ema.num_updates"].dtype == np.int64
    assert "first_stage_model.decoder.conv_in.weight" in report.merged
    assert "3 kept from the target" in report.summary()
    tau = merging.TaskVector(target, other)
    assert first_conv in dict(tau.skipped)


def test_take_copies_a_whole_component():
    a, b, vae_source = _model(1), _model(2), _model(9)
    merged, report = merging.weighted_sum(a, b, 0.5, take={"vae": vae_source})
    name = "first_stage_model.decoder.conv_in.weight"
    np.testing.assert_array_equal(merged[name], vae_source[name])
    assert report.taken == ((name, "vae"),)
    with pytest.raises(ValueError, match="take key 'unknown'"):
        merging.weighted_sum(a, b, 0.5, take={"unknown": a})


def test_float16_target_keeps_its_dtype():
    a = {k: v.astype(np.float16) for k, v in _model(1).items()}
    b = _model(2)
    merged, _ = merging.weighted_sum(a, b, 0.5)
    assert all(value.dtype == np.float16 for value in merged.values())


def test_cosine_similarities():
    a = _model(1)
    b = {name: -2.0 * value for name, value in a.items()}
    b["model.diffusion_model.out.2.bias"] = a["model.diffusion_model.out.2.bias"] * 3.0
    rows = {row.name: row for row in merging.cosine_similarities(a, b)}
    assert rows["model.diffusion_model.out.2.bias"].cosine == pytest.approx(1.0)
    assert rows["first_stage_model.decoder.conv_in.weight"].cosine == pytest.approx(-1.0)
    a["zero"] = np.zeros(3, np.float32)
    b["zero"] = np.ones(3, np.float32)
    zero = [row for row in merging.cosine_similarities(a, b) if row.name == "zero"][0]
    assert np.isnan(zero.cosine)
    csv_text = merging.similarity_csv(list(rows.values()))
    lines = csv_text.splitlines()
    assert lines[0] == "name,shape,cosine,norm_a,norm_b"
    assert len(lines) == 1 + len(rows)
    assert "8x4x3x3" in csv_text


def test_merging_files_streams_and_round_trips(tmp_path):
    paths = []
    for seed in (1, 2):
        path = tmp_path / f"m{seed}.safetensors"
        save_file(_model(seed), str(path))
        paths.append(path)
    out = tmp_path / "merged.safetensors"
    with checkpoints.LazyTensors(paths[0]) as a, checkpoints.LazyTensors(paths[1]) as b:
        checkpoints.save_safetensors_stream(
            out, merging.iter_merge(a, [(0.25, b)], 0.75), metadata={"alpha": 0.25}
        )
    with checkpoints.LazyTensors(out) as merged:
        expected_a, expected_b = _model(1), _model(2)
        assert sorted(merged) == sorted(expected_a)
        for name in expected_a:
            np.testing.assert_allclose(
                merged[name],
                0.75 * expected_a[name] + 0.25 * expected_b[name],
                rtol=1e-6,
                atol=1e-7,
            )


def test_similarity_histogram_figure():
    from kerasmorph import plotting

    figure = plotting.plot_similarity_histogram([0.9, 0.95, 1.0, float("nan")], num_bins=10)
    axes = figure.axes[0]
    assert sum(patch.get_height() for patch in axes.patches) == 3
    assert "1 undefined" in axes.get_xlabel()
    with pytest.raises(ValueError, match="finite"):
        plotting.plot_similarity_histogram([float("nan")])
