"""`kerasmorph train-embedding IMAGES --token T --init-word W --out FILE`, through `main([...])`."""

import json

import numpy as np
import pytest
from PIL import Image

from kerasmorph import cli, export
from kerasmorph.shapes import data as shapes_data

# One Session per file, as a notebook keeps one.
_SESSION = cli.Session()
TINY = ["--model", "tiny", "--height", "64", "--width", "64", "--no-jit", "--quiet"]


def read_image(path):
    return np.asarray(Image.open(path).convert("RGB"))


def main(argv, session=_SESSION):
    return cli.main(argv, session=session)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("concept")
    images, _, _ = shapes_data.generate_batch(np.random.default_rng(0), 3)
    for index, image in enumerate(images):
        export.save_frame(root / f"{index}.png", image)
    (root / "notes.txt").write_text("not an image: skipped")
    return root


def test_trains_writes_and_the_embedding_loads(folder, tmp_path, capsys):
    out = tmp_path / "learned_embeds.safetensors"
    argv = ["train-embedding", str(folder), "--token", "<Concept>", "--init-word", "cat"]
    argv += ["--steps", "3", "--batch-size", "2", "--accumulation", "1", "--out", str(out)]
    assert main(argv + ["--checkpoint-every", "2", "--preview-every", "3", *TINY]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == str(out) and "3 steps in" in printed[1]
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["settings"]["token"] == "<concept>" and record["num_images"] == 3
    assert record["settings"]["templates"][0] == "a photo of a {}"  # The object set.
    checkpoints = tmp_path / "learned_embeds-checkpoints"
    assert (checkpoints / "state.npz").is_file()
    assert (checkpoints / "learned_embeds-steps-000002.safetensors").is_file()
    preview = read_image(checkpoints / "preview-steps-000003.png")
    assert preview.shape == (128, 128, 3)  # 4 images of 64x64, 2 by 2.
    # The session's Explorer did not get the token: the same model without --embedding
    # has no "<concept>".
    explorer = _SESSION.explorer_for(
        cli.build_parser().parse_args(["generate", "a", "--out", "x.png", *TINY])
    )
    assert "<concept>" not in explorer.tokenizer.encoder
    image = tmp_path / "a.png"
    argv = ["generate", "a <concept>", "--out", str(image), "--embedding", str(out)]
    assert main(argv + ["--steps", "2", *TINY]) == 0
    assert image.is_file()
    # Run again: the finished checkpoint resumes and trains nothing more.
    argv = ["train-embedding", str(folder), "--token", "<Concept>", "--init-word", "cat"]
    argv += ["--steps", "3", "--batch-size", "2", "--accumulation", "1", "--out", str(out)]
    assert main(argv + ["--checkpoint-every", "2", *TINY]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["resumed_from"] == 3


@pytest.mark.parametrize(
    "change, message",
    [
        (["--token", "cat"], "'cat' is already in the vocabulary"),
        (["--init-word", "a photo"], "must be one token"),
        (["--out", "{tmp}/no/such/e.safetensors"], "does not exist"),
        (["--out", "{tmp}/e.npz"], "must end in .safetensors"),
        (["--crop", "0.5,2"], "expected 0 < LOW <= HIGH <= 1"),
        (["--learning-rate", "0"], "--learning-rate"),
        (["--steps", "0"], "--steps"),
        (["--template", "a {}", "--templates", "style"], "not both"),
        (["--template", "a photo"], "one '{}'"),
    ],
)
def test_bad_input_is_one_line(folder, tmp_path, capsys, change, message):
    argv = ["train-embedding", str(folder), "--token", "<c>", "--init-word", "cat"]
    argv += ["--out", str(tmp_path / "e.safetensors"), "--steps", "1", *TINY]
    change = [part.replace("{tmp}", str(tmp_path)) for part in change]
    try:
        status = main(argv + change)
    except SystemExit as exit:  # argparse's refusals.
        status = exit.code
    assert status == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("kerasmorph train-embedding: error:"), error
    assert message in error[0]


def test_an_empty_folder_and_an_unreadable_image_are_named(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["--token", "<c>", "--init-word", "cat", "--out", str(tmp_path / "e.safetensors")]
    assert main(["train-embedding", str(empty), *argv, *TINY]) == 2
    assert f"No image file in {empty}" in capsys.readouterr().err
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"garbage")
    assert main(["train-embedding", str(broken), *argv, *TINY]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "broken.png" in error[0], error


def test_ctrl_c_names_the_checkpoint_kept(folder, tmp_path, capsys, monkeypatch):
    from kerasmorph.training import steps

    call, calls = steps.LossAndGradient.__call__, []

    def interrupted_on_the_third(self, *arrays):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return call(self, *arrays)

    monkeypatch.setattr(steps.LossAndGradient, "__call__", interrupted_on_the_third)
    out = tmp_path / "e.safetensors"
    argv = ["train-embedding", str(folder), "--token", "<c>", "--init-word", "cat", "--steps", "4"]
    argv += ["--accumulation", "1", "--checkpoint-every", "2", "--out", str(out), *TINY]
    assert main(argv) == 130
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == (
        "kerasmorph train-embedding: interrupted; the checkpoint of step 2 is kept in "
        f"{tmp_path / 'e-checkpoints'}, rerun to resume"
    )
    assert main(argv) == 0  # Resumes from step 2.
    assert json.loads(out.with_suffix(".json").read_text())["resumed_from"] == 2
