"""Textual-inversion training (`kerasmorph.training`): mechanics on `tiny`, concept on `shapes`."""

import json
import math

import numpy as np
import pytest

import kerasmorph
from kerasmorph import training
from kerasmorph.errors import InputError, NonFiniteOutputError
from kerasmorph.models import textual_inversion as ti
from kerasmorph.shapes import data as shapes_data
from kerasmorph.training import embedding as embedding_lib
from kerasmorph.training import steps as steps_lib

TOKEN = "<tiny-concept>"


def _tiny():
    # Its own Explorer: training adds a token to the tokenizer and text encoder.
    return kerasmorph.Explorer("tiny", jit_compile=False, verbose=False)


def _concept_images(num=4):
    images, _, _ = shapes_data.generate_batch(np.random.default_rng(3), num)
    return images


def _weights(model):
    return [np.array(w.numpy()) for w in model.weights]


def _train(explorer, out=None, **kwargs):
    options = dict(
        initializer_token="cat",
        templates=["a {}", "a photo of a {}"],
        num_steps=4,
        batch_size=2,
        gradient_accumulation=2,
        learning_rate=5e-2,
        checkpoint_every=2,
        out=out,
    )
    options.update(kwargs)
    return training.train_embedding(explorer, _concept_images(), TOKEN, **options)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny Explorer before (weights) and after 4 steps, and the files written."""
    out = tmp_path_factory.mktemp("trained") / "learned_embeds.safetensors"
    explorer = _tiny()
    before = {
        name: _weights(getattr(explorer, name))
        for name in ("text_encoder", "diffusion_model", "decoder", "image_encoder")
    }
    matrix = ti.token_embedding_matrix(explorer.text_encoder)
    result = _train(explorer, out)
    return explorer, before, matrix, result, out


def test_only_the_new_row_changes(trained):
    explorer, before, matrix, result, _ = trained
    assert not np.array_equal(result.embedding.vectors, result.initial_vectors)
    grown = ti.token_embedding_matrix(explorer.text_encoder)
    assert grown.shape == (matrix.shape[0] + 1, matrix.shape[1])
    np.testing.assert_array_equal(grown[:-1], matrix)  # Bit-identical.
    np.testing.assert_array_equal(grown[-1], result.embedding.vectors[0])
    # The initial vector is the initializer word's row.
    cat = explorer.tokenizer.encode("cat")[1]
    np.testing.assert_array_equal(result.initial_vectors[0], matrix[cat])
    for name in ("diffusion_model", "decoder", "image_encoder"):
        for old, new in zip(before[name], _weights(getattr(explorer, name))):
            np.testing.assert_array_equal(old, new)
    parts = ti.split_text_encoder(explorer.text_encoder)
    rest = parts.position_embedding.weights + [w for layer in parts.layers for w in layer.weights]
    old_rest = before["text_encoder"][1:]  # The token table is the first weight.
    assert len(old_rest) == len(rest)
    for old, new in zip(old_rest, rest):
        np.testing.assert_array_equal(old, new.numpy())


def test_the_explorer_draws_with_the_learned_vectors(trained):
    explorer, _, _, result, _ = trained
    encoding = explorer.encode_text(f"a {TOKEN}")
    tokens = np.asarray(explorer.tokenize(f"a {TOKEN}"))
    lookup = ti.token_embedding_matrix(explorer.text_encoder)[tokens]
    np.testing.assert_array_equal(lookup[2], result.embedding.vectors[0])
    direct = ti.encode_token_embeddings(explorer.text_encoder, lookup[None])
    np.testing.assert_allclose(encoding, direct, atol=1e-5)


def test_files_record_and_round_trip(trained, tmp_path):
    explorer, _, _, result, out = trained
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["steps"] == 4 and len(record["loss"]) == 4
    assert record["settings"]["token"] == TOKEN and record["posterior_sampled"] is True
    assert all(math.isfinite(v) for v in record["loss"])
    checkpoints = out.with_name("learned_embeds-checkpoints")
    assert sorted(p.name for p in checkpoints.iterdir()) == [
        "learned_embeds-steps-000002.safetensors",
        "learned_embeds-steps-000004.safetensors",
        "state.npz",
    ]
    fresh = _tiny()
    assert fresh.add_text_embeddings(str(out)) == [TOKEN]
    np.testing.assert_allclose(
        fresh.encode_text(f"a {TOKEN}"), explorer.encode_text(f"a {TOKEN}"), atol=1e-6
    )


def test_a1111_pt_round_trips(trained, tmp_path):
    pytest.importorskip("torch")
    _, _, _, result, _ = trained
    path = ti.save_textual_inversion(tmp_path / "my-concept.pt", result.embedding, step=4)
    (loaded,) = ti.load_textual_inversion(path)
    assert loaded.token == "my-concept"  # A1111's trigger word is the file name.
    np.testing.assert_array_equal(loaded.vectors, result.embedding.vectors)
    path = ti.save_textual_inversion(tmp_path / "learned_embeds.bin", result.embedding)
    (loaded,) = ti.load_textual_inversion(path)
    assert loaded.token == TOKEN


def test_torch_formats_without_torch_name_the_install(trained, tmp_path, without_torch):
    _, _, _, result, _ = trained
    with pytest.raises(ImportError, match="pip install"):
        ti.save_textual_inversion(tmp_path / "e.pt", result.embedding)
    assert not (tmp_path / "e.pt").exists()


def test_learning_rate_warms_up_then_decays():
    settings = embedding_lib.TrainingSettings(
        token="<t>", initializer_token="cat", num_vectors=1, templates=("a {}",),
        num_steps=100, batch_size=1, gradient_accumulation=1, learning_rate=1e-3,
        final_learning_rate=1e-4, warmup_steps=10, weight_decay=0.0, clip_norm=1.0,
        crop=(1.0, 1.0), flip=0.0, fit="resize", seed=0,
    )  # fmt: skip
    rates = [training.learning_rate_at(step, settings) for step in range(100)]
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3)
    assert all(a < b for a, b in zip(rates[:9], rates[1:10]))
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))
    assert rates[-1] == pytest.approx(1e-4, rel=1e-2)


def test_a_killed_run_resumes_to_the_same_vectors(tmp_path):
    (tmp_path / "a").mkdir()
    straight = _train(_tiny(), tmp_path / "a" / "e.safetensors")

    def kill(step, loss):
        if step == 3:
            raise KeyboardInterrupt

    (tmp_path / "b").mkdir()
    with pytest.raises(KeyboardInterrupt):
        _train(_tiny(), tmp_path / "b" / "e.safetensors", on_step=kill)
    assert not (tmp_path / "b" / "e.safetensors").exists()
    resumed = _train(_tiny(), tmp_path / "b" / "e.safetensors")
    assert resumed.record["resumed_from"] == 2
    # The same draws and optimizer state; TF's CPU kernels round differently after
    # another history in the process (~1e-7 on the loss), hence the tolerance.
    np.testing.assert_allclose(resumed.losses, straight.losses, rtol=1e-5)
    np.testing.assert_allclose(
        resumed.embedding.vectors, straight.embedding.vectors, rtol=1e-4, atol=1e-6
    )
    moved = np.abs(straight.embedding.vectors - straight.initial_vectors).max()
    assert moved > 100 * 1e-6  # The tolerance is far below what training moves.
    # Other settings do not resume silently.
    with pytest.raises(InputError, match="other settings.*learning_rate"):
        _train(_tiny(), tmp_path / "b" / "e.safetensors", learning_rate=1e-2)


def test_nan_loss_names_the_step_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    call = steps_lib.LossAndGradient.__call__
    calls = []

    def poisoned(self, *arrays):
        loss, gradient = call(self, *arrays)
        calls.append(loss)
        return (float("nan") if len(calls) > 4 else loss), gradient

    monkeypatch.setattr(steps_lib.LossAndGradient, "__call__", poisoned)
    out = tmp_path / "e.safetensors"
    with pytest.raises(NonFiniteOutputError, match=r"nan at step 3; the last good checkpoint "):
        _train(_tiny(), out)
    state = np.load(out.with_name("e-checkpoints") / "state.npz")
    assert int(state["step"]) == 2


def test_bad_input_is_refused_before_training(tmp_path):
    explorer = _tiny()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    with pytest.raises(InputError, match="No image file in"):
        training.train_embedding(explorer, empty, TOKEN, initializer_token="cat")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="Cannot read the training image .*a.png"):
        training.train_embedding(explorer, broken, TOKEN, initializer_token="cat")
    images = _concept_images(2)
    cases = [
        (dict(token="cat"), "already in the vocabulary"),
        (dict(initializer_token="a photo"), "one token of the vocabulary.*2 tokens"),
        (dict(learning_rate=2.0), r"learning_rate.*\(0, 1\]"),
        (dict(learning_rate=float("nan")), "learning_rate"),
        (dict(num_steps=0), "num_steps"),
        (dict(out=tmp_path / "missing" / "e.safetensors"), "does not exist"),
        (dict(out=tmp_path / "e.npz"), r"must end in \.safetensors, \.bin, \.pt"),
        (dict(templates=["a photo"]), "one '{}'"),
        (dict(templates="painting"), "Unknown template set"),
        (dict(crop=(0.5, 1.5)), "crop"),
    ]
    for change, message in cases:
        options = dict(token=TOKEN, initializer_token="cat")
        options.update(change)
        token = options.pop("token")
        with pytest.raises(InputError, match=message):
            training.train_embedding(explorer, images, token, **options)
    # Nothing was added by the refusals.
    assert TOKEN not in explorer.tokenizer.encoder


def test_small_images_are_upscaled_with_a_warning():
    small = np.full((32, 48, 3), 200, dtype=np.uint8)
    with pytest.warns(UserWarning, match="48×32, smaller than the model's 128×128"):
        loaded = training.load_concept_images([small], (128, 128))
    assert loaded.shape == (1, 128, 128, 3)


def test_augment_is_seeded_and_keeps_the_size():
    image = _concept_images(1)[0]
    a = training.augment(image, np.random.default_rng(1))
    b = training.augment(image, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert a.shape == image.shape
    np.testing.assert_array_equal(
        training.augment(image, np.random.default_rng(1), crop=(1, 1), flip=1.0), image[:, ::-1]
    )


def _measure(images):
    measured = [shapes_data.measure(image) for image in images]
    found = [m for m in measured if m.centroid is not None]
    return {
        "colour": np.mean([m.colour == "green" for m in measured]),
        "shape": np.mean([m.shape == "circle" for m in measured]),
        "y": np.mean([m.centroid[1] for m in found]) if found else 1.0,
    }


def test_shapes_learns_a_large_green_circle_in_the_top_left():
    """The README's concept, shorter (300 steps, ~45 s): 32 seeds before and after."""
    explorer = kerasmorph.Explorer("shapes", precision="auto", verbose=False)
    images = shapes_data.concept_batch(
        np.random.default_rng(0), 12, colour="green", shape="circle",
        size=(0.6, 0.7), center=(0.0, 0.35),
    )  # fmt: skip
    before = _measure(explorer.text_to_image("a picture", batch_size=32, num_steps=25, seed=0))
    training.train_embedding(
        explorer, images, "<tl-circle>", initializer_token="picture",
        templates=("a {}", "a {} on a white background", "a picture of a {}"),
        num_steps=300, batch_size=8, gradient_accumulation=1, learning_rate=5e-3, flip=0.0,
    )  # fmt: skip
    after = _measure(explorer.text_to_image("a <tl-circle>", batch_size=32, num_steps=25, seed=0))
    assert before["colour"] <= 0.5 and before["shape"] <= 0.5, before
    assert after["colour"] >= 0.9 and after["shape"] >= 0.9, after
    assert after["y"] < before["y"] - 0.1, (before, after)  # Higher up, as the concept.


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_the_loss_is_the_mse_on_the_models_target(prediction_type):
    """One micro-batch's loss recomputed by hand from the public components."""
    from kerasmorph.sampler import timestep_embeddings
    from kerasmorph.schedulers.ddim import kerascv_alphas_cumprod

    explorer = _tiny()
    explorer.prediction_type = prediction_type
    vectors = np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32)
    explorer.add_token_vectors(TOKEN, vectors)
    first_id = ti.added_token_ids(explorer.tokenizer, TOKEN)[0]
    import keras

    variable = keras.Variable(vectors)
    function = steps_lib.LossAndGradient(explorer, first_id, variable)
    rng = np.random.default_rng(1)
    tokens = np.asarray([explorer.tokenize(f"a photo of a {TOKEN}")] * 2, dtype=np.int32)
    pixels = (_concept_images(2).astype(np.float32) / 127.5 - 1).astype(np.float32)
    posterior_noise = np.zeros((2, 16, 16, 4), np.float32)  # The posterior's mean.
    timesteps = np.asarray([100, 700], np.int32)
    noise = rng.standard_normal((2, 16, 16, 4)).astype(np.float32)
    loss, gradient = function(tokens, pixels, posterior_noise, timesteps, noise)

    latents = np.asarray(explorer.image_encoder(pixels))
    alpha = kerascv_alphas_cumprod().astype(np.float32)[timesteps][:, None, None, None]
    noisy = np.sqrt(alpha) * latents + np.sqrt(1 - alpha) * noise
    target = noise if prediction_type == "epsilon" else (
        np.sqrt(alpha) * noise - np.sqrt(1 - alpha) * latents
    )  # fmt: skip
    context = explorer.text_encoder(
        {"tokens": tokens, "positions": np.tile(np.arange(77, dtype=np.int32), (2, 1))}
    )
    inputs = {"latent": noisy, "timestep_embedding": timestep_embeddings(timesteps)}
    inputs = {key: keras.ops.convert_to_tensor(value) for key, value in inputs.items()}
    prediction = explorer.diffusion_model({**inputs, "context": context})
    expected = np.mean((np.asarray(prediction, np.float32) - target) ** 2)
    assert loss == pytest.approx(float(expected), rel=1e-4)
    assert np.abs(np.asarray(gradient)).max() > 0
