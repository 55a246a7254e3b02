"""`kerasmorph convert`, `merge`, `similarity` and `--embedding`, through `main([...])`."""

import numpy as np
from PIL import Image
from safetensors.numpy import load_file, save_file

from kerasmorph import cli

# One Session per file, as a notebook keeps one: the model is built once and reused.
_SESSION = cli.Session()


def main(argv, session=_SESSION):
    return cli.main(argv, session=session)


TINY = ["--model", "tiny", "--steps", "2", "--no-jit", "--quiet"]
NAMES = {
    "model.diffusion_model.input_blocks.0.0.weight": (8, 4, 3, 3),
    "model.diffusion_model.out.2.bias": (4,),
    "first_stage_model.decoder.conv_in.weight": (6, 4, 3, 3),
    "cond_stage_model.transformer.text_model.final_layer_norm.weight": (5,),
}


def _write(tmp_path, name, seed):
    rng = np.random.default_rng(seed)
    state = {key: rng.standard_normal(shape).astype(np.float32) for key, shape in NAMES.items()}
    path = tmp_path / f"{name}.safetensors"
    save_file(state, str(path))
    return str(path), state


def test_merge_weighted_sum_with_the_vae_taken(tmp_path, capsys):
    a, state_a = _write(tmp_path, "a", 1)
    b, state_b = _write(tmp_path, "b", 2)
    v, state_v = _write(tmp_path, "v", 3)
    out = tmp_path / "merged.safetensors"
    code = main(
        ["merge", "--weighted-sum", a, b, "--alpha", "0.25", "--take-vae", v, "--out", str(out)]
    )
    assert code == 0
    merged = load_file(str(out))
    unet = "model.diffusion_model.input_blocks.0.0.weight"
    np.testing.assert_allclose(
        merged[unet], 0.75 * state_a[unet] + 0.25 * state_b[unet], rtol=1e-6, atol=1e-7
    )
    vae = "first_stage_model.decoder.conv_in.weight"
    np.testing.assert_array_equal(merged[vae], state_v[vae])
    assert "1 taken whole" in capsys.readouterr().err


def test_merge_task_vectors_and_add_difference(tmp_path):
    base, state_base = _write(tmp_path, "base", 1)
    a, state_a = _write(tmp_path, "a", 2)
    c, state_c = _write(tmp_path, "c", 3)
    out = tmp_path / "tv.safetensors"
    assert (
        main(
            [
                "merge",
                "--base",
                base,
                "--add",
                f"{a}:0.5",
                "--add",
                f"{c}:0.25",
                "--half",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    merged = load_file(str(out))
    for name in NAMES:
        expected = (
            state_base[name]
            + 0.5 * (state_a[name] - state_base[name])
            + 0.25 * (state_c[name] - state_base[name])
        )
        assert merged[name].dtype == np.float16
        np.testing.assert_allclose(merged[name], expected, rtol=2e-3, atol=2e-3)
    out = tmp_path / "diff.safetensors"
    assert main(["merge", "--add-difference", base, a, c, "--alpha", "1.0", "--out", str(out)]) == 0
    merged = load_file(str(out))
    for name in NAMES:
        np.testing.assert_allclose(
            merged[name], state_base[name] + state_a[name] - state_c[name], rtol=1e-5, atol=1e-6
        )


def test_merge_rejects_conflicting_modes(tmp_path, capsys):
    a, _ = _write(tmp_path, "a", 1)
    assert (
        main(
            [
                "merge",
                "--weighted-sum",
                a,
                a,
                "--add-difference",
                a,
                a,
                a,
                "--out",
                str(tmp_path / "x.safetensors"),
            ]
        )
        == 2
    )
    assert "exactly one" in capsys.readouterr().err
    assert main(["merge", "--add", f"{a}:0.5", "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "--add needs --base" in capsys.readouterr().err


def test_similarity_writes_histogram_and_csv(tmp_path):
    a, _ = _write(tmp_path, "a", 1)
    b, _ = _write(tmp_path, "b", 2)
    base, _ = _write(tmp_path, "base", 3)
    plot, table = tmp_path / "hist.png", tmp_path / "layers.csv"
    assert main(["similarity", a, b, "--plot", str(plot), "--csv", str(table)]) == 0
    with Image.open(plot) as image:
        assert image.size[0] > 100 and image.size[1] > 100
    lines = table.read_text().splitlines()
    assert lines[0].startswith("name,shape,cosine") and len(lines) == 1 + len(NAMES)
    # Task vectors against a base: a model compared with itself is exactly similar.
    assert main(["similarity", a, a, "--base", base, "--csv", str(table)]) == 0
    cosines = [float(line.split(",")[2]) for line in table.read_text().splitlines()[1:]]
    np.testing.assert_allclose(cosines, 1.0, atol=1e-6)


def test_convert_reports_the_missing_tensor(tmp_path, capsys):
    vae_only, _ = _write(tmp_path, "vae", 1)
    code = main(["convert", vae_only, "--family", "sd1", "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "token_embedding.weight" in err and "incomplete" in err


def test_embedding_option_on_generate(tmp_path):
    embedding = tmp_path / "learned_embeds.safetensors"
    vectors = np.random.default_rng(0).standard_normal((2, 64)).astype(np.float32)
    save_file({"<shiny>": vectors}, str(embedding))
    out = tmp_path / "image.png"
    assert (
        main(
            ["generate", "a <shiny> cube", "--embedding", str(embedding), "--out", str(out), *TINY]
        )
        == 0
    )
    with Image.open(out) as image:
        assert image.size == (128, 128)
