"""Every flag works or is refused (issue 16, items 9 and 10).

- A negative prompt reaches every path: the walk one-liners, sweeps, inpainting,
  adaptive renders, from Python and from the command line.
- Flags a command cannot use are not in its parser (argparse refuses them).
- Walking the parser: every option of every subcommand is read by its handler
  (each handler is run on `tiny` through a Namespace that records reads).
- Numbers and keyframe counts are checked before the model is built; `--help`
  shows the defaults.

Everything runs on `tiny` at 64x64 with 1 step and batches of 1 (one traced shape).
"""

import argparse

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save_file

from kerasmorph import adaptive, cli, sweeps, walks
from kerasmorph.cli.session import ModelSettings

# One Session per file, as a notebook keeps one: the model is built once and reused.
_SESSION = cli.Session()


def main(argv, session=_SESSION):
    return cli.main(argv, session=session)


MODEL = ["--model", "tiny", "--height", "64", "--width", "64", "--no-jit", "--quiet"]
TINY = [*MODEL, "--steps", "1"]
NEGATIVE = "a zebra"
# Frames per UNet batch in every render here: one traced shape for the whole file.
ONE = ["--batch-size", "1"]


@pytest.fixture(scope="module")
def explorer():
    """The Explorer the CLI runs of this file use too (same settings as TINY)."""
    settings = ModelSettings("tiny", 64, 64, jit=False, precision="auto", weights_dir=None)
    return _SESSION.get_explorer(settings, verbose=False, long_prompts=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two 64x64 pictures, a mask, and three small single-file checkpoints."""
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    paths = {}
    for name in ("a", "b"):
        paths[name] = root / f"{name}.png"
        Image.fromarray((rng.random((64, 64, 3)) * 255).astype("uint8")).save(paths[name])
    mask = np.zeros((64, 64), np.uint8)
    mask[:, 32:] = 255
    paths["mask"] = root / "mask.png"
    Image.fromarray(mask).save(paths["mask"])
    shapes = {
        "model.diffusion_model.out.2.bias": (4,),
        "first_stage_model.decoder.conv_in.weight": (6, 4, 3, 3),
    }
    for index, name in enumerate(("ckpt_a", "ckpt_b", "ckpt_c")):
        state = {
            key: rng.standard_normal(shape).astype(np.float32) for key, shape in shapes.items()
        }
        paths[name] = root / f"{name}.safetensors"
        save_file(state, str(paths[name]))
    return {name: str(path) for name, path in paths.items()}


def _differ(first, second) -> bool:
    return not np.array_equal(np.asarray(first), np.asarray(second))


# ------------------------------------------------ negative prompts, from Python

SAMPLING = {"num_steps": 1, "batch_size": 1}

ONE_LINERS = {
    "interpolate": lambda e, **kw: walks.interpolate(e, ["a", "b"], 2, **kw),
    "morph_prompts": lambda e, **kw: walks.morph_prompts(e, ["a", "b"], 2, **kw),
    "grid": lambda e, **kw: walks.grid(e, ["a", "b", "c", "d"], 2, **kw),
    "walk": lambda e, **kw: walks.walk(e, "a", 2, **kw),
    "loop": lambda e, **kw: walks.loop(e, "a", 2, **kw),
    "morph_seeds": lambda e, **kw: walks.morph_seeds(e, "a", (1, 2), 2, **kw),
}


@pytest.mark.parametrize("name", sorted(ONE_LINERS))
def test_every_walk_one_liner_takes_a_negative_prompt(explorer, name):
    plain = ONE_LINERS[name](explorer, **SAMPLING)
    negative = ONE_LINERS[name](explorer, negative_prompt=NEGATIVE, **SAMPLING)
    assert plain.shape == negative.shape and _differ(plain, negative)


def test_image_morph_one_liner_takes_a_negative_prompt(explorer, files):
    # At guidance 1 the unconditional pass has no weight; 3 gives it one.
    images, prompts = [files["a"], files["b"]], ["a", "b"]
    settings = {"unconditional_guidance_scale": 3.0, **SAMPLING}
    plain = walks.morph_images(explorer, images, prompts, 2, **settings)
    negative = walks.morph_images(
        explorer, images, prompts, 2, negative_prompt=NEGATIVE, **settings
    )
    assert _differ(plain, negative)


@pytest.mark.parametrize("param, values", [("guidance", [3.0]), ("prompt_weight", [0.5])])
def test_sweeps_take_a_negative_prompt(explorer, files, param, values):
    for image in (None, files["a"]):
        settings = {"image": image, "num_steps": 1, "strength": 1.0}
        plain = sweeps.sweep(explorer, "a", param, values, **settings)
        negative = sweeps.sweep(explorer, "a", param, values, negative_prompt=NEGATIVE, **settings)
        assert _differ(plain.frames, negative.frames), image


def test_prompt_weight_sweeps_batch_their_frames(explorer):
    values = [0.0, 0.5, 1.0]
    batched = sweeps.sweep(explorer, "a", "prompt_weight", values, num_steps=1, batch_size=1)
    # One call, denoised a batch of 1 at a time (the traced shape): the frames one by one.
    one_by_one = sweeps.sweep(explorer, "a", "prompt_weight", values, num_steps=1)
    np.testing.assert_array_equal(batched.frames, one_by_one.frames)
    with pytest.raises(ValueError, match="'prompt_weight' sweep only"):
        sweeps.sweep(explorer, "a", "guidance", [1.0], batch_size=1)


def test_inpaint_takes_a_negative_prompt(explorer, files):
    settings = {"num_steps": 1, "seed": 0}
    plain = explorer.inpaint(files["a"], files["mask"], "a", **settings)
    negative = explorer.inpaint(
        files["a"], files["mask"], "a", negative_prompt=NEGATIVE, **settings
    )
    assert _differ(plain.images, negative.images)


def test_adaptive_renders_take_a_negative_prompt(explorer):
    path = adaptive.keyframe_path(
        explorer.encode_text(["a", "b"]), np.concatenate([explorer.noise(1, 0)] * 2)
    )
    settings = {"threshold": 1.0, "max_frames": 2, "initial_frames": 2, **SAMPLING}
    plain = adaptive.refine(explorer, path, **settings)
    negative = adaptive.refine(explorer, path, negative_prompt=NEGATIVE, **settings)
    assert _differ(plain.frames, negative.frames)


# -------------------------------------------- negative prompts, from the command line


def _command_outputs(tmp_path, name, argv):
    """The bytes `argv` writes to --out, without and with --negative-prompt."""
    written = []
    for extra in ([], ["--negative-prompt", NEGATIVE]):
        out = tmp_path / f"{name}{len(written)}.png"
        assert main([*argv, "--out", str(out), *TINY, *extra]) == 0
        written.append(out.read_bytes())
    return written


@pytest.mark.parametrize(
    "name, argv",
    [
        ("sweep", ["sweep", "A", "a", "--param", "guidance", "--range", "3", "--strength", "1"]),
        ("inpaint", ["inpaint", "A", "MASK", "a"]),
        (
            "interpolate-adaptive",
            [
                "interpolate",
                "a",
                "b",
                "--frames",
                "2",
                "--adaptive",
                "1",
                "--max-frames",
                "2",
                *ONE,
            ],
        ),
        (
            "morph-seeds-adaptive",
            ["morph-seeds", "a", "--frames", "2", "--adaptive", "1", "--max-frames", "2", *ONE],
        ),
    ],
)
def test_negative_prompt_flag_reaches_every_command(tmp_path, files, name, argv):
    argv = [{"A": files["a"], "MASK": files["mask"]}.get(arg, arg) for arg in argv]
    plain, negative = _command_outputs(tmp_path, name, argv)
    assert plain != negative


# ---------------------------------------------------------------- refused flags


@pytest.mark.parametrize(
    "argv",
    [
        ["img2img", "A", "a", "--out", "o.png", "--batch-size", "2"],
        ["inpaint", "A", "M", "a", "--out", "o.png", "--batch-size", "2"],
        ["sweep", "A", "a", "--range", "0.5", "--out", "o.png", "--schedule", "linear"],
        ["sweep", "A", "a", "--range", "0.5", "--out", "frames", "--resume"],
        ["sweep", "A", "a", "--range", "0.5", "--out", "frames", "--overwrite"],
        ["morph-images", "A", "B", "--prompts", "a", "b", "--out", "frames", "--resume"],
        ["morph-images", "A", "B", "--prompts", "a", "b", "--out", "frames", "--overwrite"],
        ["morph-images", "A", "B", "--prompts", "a", "b", "--out", "o.gif", "--seed", "3"],
    ],
)
def test_flags_a_command_cannot_use_are_refused(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    # Unknown, or (--schedule on sweep) an ambiguous prefix of --scheduler*.
    assert len(lines) == 1 and ("unrecognized arguments" in lines[0] or "ambiguous" in lines[0])


# ------------------------------------------------- checked before the model is built


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sweep", "A", "a", "--range", "0.5:1.5:0.5", "--out", "o.png"], "[0, 1]"),
        (["sweep", "A", "a", "--param", "num_steps", "--range", "1,2.5", "--out", "o.png"], "2.5"),
        (
            ["sweep", "A", "a", "--param", "guidance", "--range", "1,2", "--out", "o.png", *ONE],
            "prompt_weight sweep only",
        ),
        (["interpolate", "a", "b", "--frames", "1", "--out", "o.gif"], "at least 2 frames"),
        (["interpolate", "a", "b", "--adaptive", "0.1", "--out", "o.gif"], "--max-frames"),
        (
            ["morph-seeds", "a", "--adaptive", "0.1", "--max-frames", "3", "--out", "o.gif"],
            "--frames <= --max-frames",
        ),
        (["walk", "a", "--step-size", "0.1", "--norm", "1", "--out", "o.gif"], "give one"),
        (["morph-images", "A", "--prompts", "a", "--out", "o.gif"], "2+ images"),
    ],
)
def test_bad_requests_are_refused_before_the_model_is_built(tmp_path, capsys, files, argv, message):
    argv = [{"A": files["a"]}.get(arg, arg) for arg in argv]
    argv = [str(tmp_path / arg) if arg in ("o.png", "o.gif") else arg for arg in argv]
    session = cli.Session()
    assert main([*argv, *TINY], session=session) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert session.explorer is None
    assert not list(tmp_path.iterdir())


def test_a_grid_of_one_cell_per_side_is_an_argparse_error(capsys):
    # (--guidance nan, --strength and --fps are refused by argparse too: test_cli_errors.)
    with pytest.raises(SystemExit) as exit_info:
        main(["grid", "a", "b", "c", "d", "--size", "1", "--out", "o.png"])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "argument --size: expected an integer >= 2" in lines[0], lines


# ----------------------------------------------------------------------- --help


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_generate_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "denoising steps (default: 50)" in text
    assert "unconditional guidance scale (default: 7.5)" in text


# Options of other modules whose help does not show their default yet.
_NO_HELP_YET = {"bench --model"}  # kerasmorph/cli/bench.py: no help string.


def test_every_option_with_a_default_shows_it_in_help():
    missing = []
    for name, parser in _subparsers(cli.build_parser()).items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            if action.default in (None, False, [], argparse.SUPPRESS):
                continue
            text = formatter._expand_help(action) if action.help else ""
            if "default" not in text:
                missing.append(f"{name} {action.option_strings[0]}")
    assert set(missing) <= _NO_HELP_YET, missing


# ----------------------------------------------------------- walking the parser


class RecordingNamespace(argparse.Namespace):
    """A Namespace that records the names read from it once `recording()` is called."""

    def recording(self) -> set[str]:
        object.__setattr__(self, "_reads", set())
        return object.__getattribute__(self, "_reads")

    def __getattribute__(self, name):
        if not name.startswith("_"):
            reads = object.__getattribute__(self, "__dict__").get("_reads")
            if reads is not None:
                reads.add(name)
        return object.__getattribute__(self, name)


def _recipes(files, out):
    """Cheap runs of every subcommand that, together, reach each of its options."""
    render_dir = str(out / "render")
    return {
        "info": [["info", "--json"]],
        "generate": [["generate", "a", "--out", str(out / "g.png"), *TINY]],
        "img2img": [["img2img", files["a"], "a", "--out", str(out / "i.png"), *TINY]],
        "sweep": [["sweep", files["a"], "a", "--range", "0.5", "--out", str(out / "s.gif"), *TINY]],
        "inpaint": [
            ["inpaint", files["a"], files["mask"], "a", "--out", str(out / "p.png"), *TINY]
            + ["--raw-out", str(out / "p_raw.png")]
        ],
        "morph-images": [
            ["morph-images", files["a"], files["b"], "--prompts", "a", "b", "--frames", "2"]
            + ["--out", str(out / "m.gif"), *TINY, *ONE]
        ],
        "interpolate": [
            ["interpolate", "a", "b", "--frames", "2", "--out", render_dir, *TINY, *ONE],
            ["interpolate", "a", "b", "--frames", "2", "--adaptive", "1", "--max-frames", "2"]
            + ["--out", str(out / "a.gif"), *TINY, *ONE],
        ],
        "grid": [
            ["grid", "a", "b", "c", "d", "--size", "2", "--out", str(out / where), *TINY, *ONE]
            for where in ("grid", "grid.gif")
        ],
        "walk": [
            ["walk", "a", "--frames", "2", "--out", str(out / where), *TINY, *ONE]
            for where in ("walk", "walk.gif")
        ],
        "loop": [
            ["loop", "a", "--frames", "2", "--out", str(out / where), *TINY, *ONE]
            for where in ("loop", "loop.gif")
        ],
        "morph-seeds": [
            ["morph-seeds", "a", "--frames", "2", "--out", str(out / "seeds"), *TINY, *ONE],
            ["morph-seeds", "a", "--frames", "2", "--adaptive", "1", "--max-frames", "2"]
            + ["--out", str(out / "seeds.gif"), *TINY, *ONE],
        ],
        "render": [["render", render_dir, "--quiet"]],
        "export": [["export", render_dir, "--out", str(out / "e.gif")]],
        "evaluate": [
            ["evaluate", render_dir, "--metrics", "l2", "--threshold", "16", "--json"]
            + ["--plot", str(out / "v.png"), "--latent", "--model", "tiny"],
        ],
        "bench": [["bench", "--model", "tiny"]],
        "convert": [["convert", files["ckpt_a"], "--family", "sd1", "--out", str(out / "c")]],
        "merge": [
            ["merge", "--weighted-sum", files["ckpt_a"], files["ckpt_b"], "--no-convert"]
            + ["--out", str(out / "merged")],
            ["merge", "--base", files["ckpt_a"], "--add", f"{files['ckpt_b']}:0.5"]
            + ["--out", str(out / "added.safetensors")],
        ],
        "similarity": [
            ["similarity", files["ckpt_a"], files["ckpt_b"], "--csv", str(out / "s.csv")]
        ],
        "train-embedding": [
            ["train-embedding", files["a"], files["b"], "--token", "<r>", "--init-word", "cat"]
            + ["--out", str(out / "r.safetensors"), "--accumulation", "1", "--preview-every", "1"]
            + ["--preview-prompt", "a <r>", "--checkpoint-dir", str(out / "r"), *TINY],
        ],
        # Last: it builds the `shapes-depth` Explorer in place of the file's tiny one.
        "depth2img": [
            ["depth2img", files["a"], "a", "--depth", files["mask"], "--out", str(out / "d.png")]
            + ["--save-depth", str(out / "dm.png"), "--strength", "0.5", "--fit", "pad"]
            + ["--model", "shapes-depth", "--steps", "1", "--quiet"],
        ],
    }


# Commands whose recipe fails on purpose, after reading every option (a fake checkpoint).
_FAILING = {"convert"}


def test_every_option_of_every_command_is_read(tmp_path, files, explorer, monkeypatch):
    from kerasmorph import bench

    # `bench` reads all its options into a BenchConfig, then times models: not here.
    monkeypatch.setattr(bench, "run_bench", lambda config, log: {"config": repr(config)})
    monkeypatch.setattr(bench, "format_table", lambda report: "")
    parser = cli.build_parser()
    commands = _subparsers(parser)
    recipes = _recipes(files, tmp_path)
    assert sorted(recipes) == sorted(commands), "give each command a recipe here"
    unread = {}
    for name, runs in recipes.items():
        reads = set()
        for argv in runs:
            args = parser.parse_args(argv, namespace=RecordingNamespace())
            run_reads = args.recording()
            if name in _FAILING:
                with pytest.raises(cli.reported_errors()):
                    args.run(args, _SESSION)
            else:
                assert args.run(args, _SESSION) == 0, argv
            reads |= run_reads
        options = {
            action.dest
            for action in commands[name]._actions
            if action.dest not in ("help", "version")
        }
        if options - reads:
            unread[name] = sorted(options - reads)
    assert not unread, f"options accepted but never read: {unread}"
