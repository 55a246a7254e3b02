"""The `kerasmorph` command line: parse, call the library, report.

Every subcommand is a function `_run_<name>(args) -> int`; `main(argv)` is the
console-script entry point and returns the exit status, so tests call
`main([...])` directly. Bad arguments give a one-line error and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

import kerasmorph

AUTO_MODEL = "auto"


class CommandError(Exception):
    """A user error reported as one line on stderr, exit status 2."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the options every generating subcommand shares."""
    from kerasmorph.presets import PRECISIONS, PRESETS

    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default=AUTO_MODEL,
        help=(
            f"preset: {', '.join(PRESETS)}, or '{AUTO_MODEL}' (default): sd1 when "
            "its weight files are on disk, else the offline 'tiny' preset"
        ),
    )
    group.add_argument("--height", type=_positive_int, help="image height (multiple of 64)")
    group.add_argument("--width", type=_positive_int, help="image width (multiple of 64)")
    group.add_argument("--weights-dir", help="directory searched first for weight files")
    group.add_argument("--precision", choices=PRECISIONS, default="float32")
    group.add_argument(
        "--jit",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compile the denoising step and decoder with XLA (default: on)",
    )
    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("--steps", type=_positive_int, default=50, help="denoising steps")
    sampling.add_argument(
        "--guidance", type=float, default=7.5, help="unconditional guidance scale"
    )
    sampling.add_argument("--seed", type=_non_negative_int, default=0, help="noise seed")
    sampling.add_argument("--negative-prompt", default=None)
    sampling.add_argument(
        "--batch-size", type=_positive_int, default=None, help="images per UNet batch"
    )


def resolve_model_name(name: str, weights_dir: str | None) -> str:
    """Maps 'auto' to 'sd1' when its files are on disk, else to 'tiny'."""
    if name != AUTO_MODEL:
        return name
    from kerasmorph.presets import PRESETS
    from kerasmorph.weights import find_weights

    files = {
        component: file
        for component, file in PRESETS["sd1"].weight_files.items()
        if component != "image_encoder"
    }
    if all(find_weights(files, weights_dir).values()):
        return "sd1"
    print(
        "kerasmorph: no Stable Diffusion weights found (see `kerasmorph info`); "
        "using the offline 'tiny' preset, whose random weights draw noise.",
        file=sys.stderr,
    )
    return "tiny"


# The last Explorer built, reused when `main` runs again in the same process
# (notebooks, tests) with the same model settings: building and tracing a
# model costs seconds (tiny) to minutes (sd1). One entry bounds the memory.
_last_explorer: tuple[tuple, object] | None = None


def build_explorer(args: argparse.Namespace):
    """Builds the `Explorer` described by the shared model arguments."""
    global _last_explorer
    name = resolve_model_name(args.model, args.weights_dir)
    key = (name, args.height, args.width, args.jit, args.precision, args.weights_dir)
    if _last_explorer is not None and _last_explorer[0] == key:
        explorer = _last_explorer[1]
    else:
        _last_explorer = None  # Release the previous model before building.
        explorer = kerasmorph.Explorer(
            name,
            img_height=args.height,
            img_width=args.width,
            jit_compile=args.jit,
            precision=args.precision,
            weights_dir=args.weights_dir,
        )
        _last_explorer = (key, explorer)
    explorer.verbose = not args.quiet
    return explorer


def _run_info(args: argparse.Namespace) -> int:
    from kerasmorph.presets import PRESETS
    from kerasmorph.weights import find_weights, search_dirs

    import keras
    import keras_cv
    import numpy as np
    import tensorflow as tf

    report = {
        "kerasmorph": kerasmorph.__version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_cv": keras_cv.__version__,
        "numpy": np.__version__,
        "backend": keras.config.backend(),
        "devices": [
            f"{device.device_type}:{device.name}"
            for device in tf.config.list_physical_devices()
        ],
        "weights_searched": [str(d) for d in search_dirs(args.weights_dir)],
        "presets": {},
    }
    for name, preset in PRESETS.items():
        found = find_weights(preset.weight_files, args.weights_dir)
        report["presets"][name] = {
            "description": preset.description,
            "weights": {
                file.filename: str(found[component]) if found[component] else None
                for component, file in preset.weight_files.items()
            },
        }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for key in ("kerasmorph", "python", "tensorflow", "keras", "keras_cv", "numpy", "backend"):
        print(f"{key:<11} {report[key]}")
    print(f"{'devices':<11} {', '.join(report['devices'])}")
    print("weights searched, in order:")
    for directory in report["weights_searched"]:
        print(f"  {directory}")
    print("presets:")
    for name, entry in report["presets"].items():
        print(f"  {name:<5} {entry['description']}")
        if not entry["weights"]:
            print("        weights: none needed (seeded random)")
        for filename, path in entry["weights"].items():
            print(f"        {filename:<26} {path or 'MISSING'}")
    return 0


def _run_generate(args: argparse.Namespace) -> int:
    from kerasmorph import export

    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise CommandError(
            f"--out must end in .png, .jpg, .jpeg or .webp. Received: --out {args.out}"
        )
    explorer = build_explorer(args)
    encoding = explorer.encode_text(args.prompt, truncate=args.truncate)
    images = explorer.generate_image(
        encoding,
        batch_size=args.batch_size or args.num_images,
        num_steps=args.steps,
        unconditional_guidance_scale=args.guidance,
        diffusion_noise=explorer.noise(args.num_images, args.seed),
        negative_prompt=args.negative_prompt,
    )
    if args.num_images == 1:
        paths = [export.save_frame(out, images[0])]
    else:
        paths = [
            export.save_frame(out.with_name(f"{out.stem}_{index:03d}{out.suffix}"), image)
            for index, image in enumerate(images)
        ]
    for path in paths:
        print(path)
    return 0


GRID_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def add_walk_arguments(parser: argparse.ArgumentParser, *, frames: int | None) -> None:
    """Adds the options every walk subcommand shares (and the model's)."""
    from kerasmorph.schedules import SCHEDULES

    group = parser.add_argument_group("walk")
    if frames is not None:
        group.add_argument(
            "--frames", type=_positive_int, default=frames, help=f"frames (default {frames})"
        )
    group.add_argument(
        "--schedule", default=None, help=f"spacing of the frames: {', '.join(SCHEDULES)}"
    )
    output = parser.add_argument_group("output")
    output.add_argument(
        "--out",
        required=True,
        help="the suffix picks the format: .gif, .mp4, an image (.png/.jpg/.webp) "
        "for a grid of the frames, or a directory (no suffix) of PNG frames",
    )
    output.add_argument("--fps", type=float, default=10.0, help="GIF/MP4 frame rate")
    output.add_argument(
        "--rubber-band", action="store_true",
        help="GIF: play forwards then backwards (frames + frames[2:-1] reversed)",
    )
    add_model_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def check_output_path(out: str) -> Path:
    """Checks the --out suffix before any model work starts."""
    path = Path(out)
    suffix = path.suffix.lower()
    if suffix and suffix not in (".gif", ".mp4", *GRID_SUFFIXES):
        raise CommandError(
            "--out must end in .gif, .mp4, .png, .jpg, .jpeg or .webp, or name a "
            f"directory (no suffix). Received: --out {out}"
        )
    return path


def write_frames(path: Path, frames, args: argparse.Namespace, *, num_columns=None):
    """Writes frames to `path` in the format its suffix names; returns what was written."""
    from kerasmorph import export, plotting

    suffix = path.suffix.lower()
    if suffix == ".gif":
        return export.save_gif(path, frames, fps=args.fps, rubber_band=args.rubber_band)
    if suffix == ".mp4":
        return export.save_mp4(path, frames, fps=args.fps)
    if suffix in GRID_SUFFIXES:
        return plotting.save_grid(path, frames, num_columns=num_columns)
    export.save_frames(path, frames)
    return path


def _render_walk(args: argparse.Namespace, build_walk, *, num_columns=None) -> int:
    out = check_output_path(args.out)
    explorer = build_explorer(args)
    walk = build_walk(explorer)
    frames = explorer.render(
        walk,
        num_steps=args.steps,
        unconditional_guidance_scale=args.guidance,
        negative_prompt=args.negative_prompt,
        batch_size=args.batch_size,
    )
    print(write_frames(out, frames, args, num_columns=num_columns))
    return 0


def _schedule(args: argparse.Namespace, default: str) -> str:
    from kerasmorph.schedules import get_schedule

    name = args.schedule or default
    get_schedule(name)  # A ValueError listing the valid names.
    return name


def _run_interpolate(args: argparse.Namespace) -> int:
    from kerasmorph import walks

    schedule = _schedule(args, "linear")
    return _render_walk(
        args,
        lambda explorer: walks.prompt_walk(
            explorer, args.prompts, args.frames, schedule=schedule, seed=args.seed
        ),
    )


def _run_grid(args: argparse.Namespace) -> int:
    from kerasmorph import walks

    schedule = _schedule(args, "linear")
    return _render_walk(
        args,
        lambda explorer: walks.grid_walk(
            explorer, args.prompts, args.size, seed=args.seed,
            vary_noise=args.vary_noise, schedule=schedule,
        ),
        num_columns=args.size,
    )


def _run_walk(args: argparse.Namespace) -> int:
    from kerasmorph import walks

    schedule = _schedule(args, "linear")
    return _render_walk(
        args,
        lambda explorer: walks.delta_walk(
            explorer, args.prompt, args.frames,
            step_size=None if args.norm is not None else args.step_size,
            norm=args.norm, direction_seed=args.direction_seed, seed=args.seed,
            schedule=schedule,
        ),
    )


def _run_loop(args: argparse.Namespace) -> int:
    from kerasmorph import walks

    schedule = _schedule(args, "linear")
    return _render_walk(
        args,
        lambda explorer: walks.noise_loop_walk(
            explorer, args.prompt, args.frames, seed=args.seed, schedule=schedule
        ),
    )


def _run_morph_seeds(args: argparse.Namespace) -> int:
    from kerasmorph import walks

    schedule = _schedule(args, "ease")
    return _render_walk(
        args,
        lambda explorer: walks.seed_walk(
            explorer, args.prompt, args.seeds, args.frames,
            schedule=schedule, noise_method=args.noise_method,
        ),
    )


def _check_image_out(out: str) -> Path:
    path = Path(out)
    if path.suffix.lower() not in GRID_SUFFIXES:
        raise CommandError(
            f"--out must end in .png, .jpg, .jpeg or .webp. Received: --out {out}"
        )
    return path


def _unit_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value}")
    return value


def _loaded_images(explorer, paths: Sequence[str], fit: str):
    return explorer.load_images(list(paths), fit=fit)


def _run_img2img(args: argparse.Namespace) -> int:
    from kerasmorph import export

    out = _check_image_out(args.out)
    explorer = build_explorer(args)
    image = _loaded_images(explorer, [args.image], args.fit)
    frames = explorer.image_to_image(
        image, args.prompt, strength=args.strength, num_steps=args.steps,
        unconditional_guidance_scale=args.guidance, seed=args.seed,
        negative_prompt=args.negative_prompt,
    )
    print(export.save_frame(out, frames[0]))
    return 0


def _run_sweep(args: argparse.Namespace) -> int:
    from kerasmorph import plotting, sweeps

    out = check_output_path(args.out)
    values = sweeps.parse_range(args.range)
    explorer = build_explorer(args)
    image = _loaded_images(explorer, [args.image], args.fit)
    result = sweeps.sweep(
        explorer, args.prompt, args.param, values, image=image, seed=args.seed,
        num_steps=args.steps, unconditional_guidance_scale=args.guidance,
        strength=args.strength,
    )
    if out.suffix.lower() in GRID_SUFFIXES:
        print(plotting.save_grid(out, result.frames, labels=list(result.labels)))
    else:
        print(write_frames(out, result.frames, args))
    return 0


def _run_inpaint(args: argparse.Namespace) -> int:
    from kerasmorph import export

    out = _check_image_out(args.out)
    raw = _check_image_out(args.raw_out) if args.raw_out else None
    explorer = build_explorer(args)
    image = _loaded_images(explorer, [args.image], args.fit)
    result = explorer.inpaint(
        image, args.mask, args.prompt, num_steps=args.steps,
        unconditional_guidance_scale=args.guidance, seed=args.seed,
        feather_radius=args.feather,
    )
    print(export.save_frame(out, result.composite[0]))
    if raw is not None:
        print(export.save_frame(raw, result.images[0]))
    return 0


def _run_morph_images(args: argparse.Namespace) -> int:
    from kerasmorph import walks

    if len(args.prompts) != len(args.images):
        raise CommandError(
            f"--prompts needs one prompt per image. Received: {len(args.images)} images "
            f"and {len(args.prompts)} prompts"
        )
    schedule = _schedule(args, "linear")

    def build(explorer):
        images = _loaded_images(explorer, args.images, args.fit)
        return walks.image_morph_walk(
            explorer, list(images), args.prompts, args.frames, schedule=schedule,
            num_steps=args.steps, inversion_guidance=args.guidance,
            num_refinements=args.inversion_refinements,
        )

    return _render_walk(args, build)


def add_image_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds --fit, the policy that brings input images to the model size."""
    parser.add_argument(
        "--fit", choices=("resize", "center-crop", "pad"), default="resize",
        help="how input images are brought to the model size (default: resize)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Builds the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="kerasmorph",
        description="Explore Stable Diffusion latent spaces with Keras 3 and KerasCV.",
    )
    parser.add_argument("--version", action="version", version=kerasmorph.__version__)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = subparsers.add_parser("info", help="versions, devices, presets, weight files")
    info.add_argument("--weights-dir", help="also search this directory")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(run=_run_info, quiet=True)

    generate = subparsers.add_parser("generate", help="text to image")
    generate.add_argument("prompt")
    generate.add_argument("--out", required=True, help="image path (.png/.jpg/.webp)")
    generate.add_argument(
        "--num-images", type=_positive_int, default=1,
        help="images from seeds' streams 0..N-1 (written as OUT_000.png, ...)",
    )
    generate.add_argument(
        "--truncate", action="store_true", help="cut prompts over 77 tokens (warns)"
    )
    add_model_arguments(generate)
    generate.add_argument("--quiet", action="store_true", help="no progress bar")
    generate.set_defaults(run=_run_generate)

    interpolate = subparsers.add_parser(
        "interpolate", help="interpolate 2+ prompts with fixed noise"
    )
    interpolate.add_argument("prompts", nargs="+", metavar="PROMPT")
    add_walk_arguments(interpolate, frames=10)
    interpolate.set_defaults(run=_run_interpolate)

    grid = subparsers.add_parser("grid", help="bilinear grid of 4 prompts")
    grid.add_argument("prompts", nargs=4, metavar="PROMPT", help="TL TR BL BR")
    grid.add_argument("--size", type=_positive_int, default=4, help="frames per side")
    grid.add_argument(
        "--vary-noise", action="store_true", help="a different noise for every cell"
    )
    add_walk_arguments(grid, frames=None)
    grid.set_defaults(run=_run_grid)

    walk = subparsers.add_parser("walk", help="delta walk around one prompt")
    walk.add_argument("prompt")
    walk.add_argument("--step-size", type=float, default=0.005, help="element-wise step")
    walk.add_argument("--norm", type=float, default=None, help="L2 length of each step instead")
    walk.add_argument(
        "--direction-seed", type=_non_negative_int, default=None,
        help="walk in a random direction drawn from this seed (default: all ones)",
    )
    add_walk_arguments(walk, frames=20)
    walk.set_defaults(run=_run_walk)

    loop = subparsers.add_parser("loop", help="circular noise loop on one prompt")
    loop.add_argument("prompt")
    add_walk_arguments(loop, frames=16)
    loop.set_defaults(run=_run_loop)

    morph_seeds = subparsers.add_parser(
        "morph-seeds", help="morph the noise between seeds for one prompt"
    )
    morph_seeds.add_argument("prompt")
    morph_seeds.add_argument(
        "--seeds", type=_non_negative_int, nargs="+", default=[1, 2], help="2+ seeds"
    )
    morph_seeds.add_argument(
        "--noise-method", choices=("variance_preserving", "slerp"),
        default="variance_preserving",
    )
    add_walk_arguments(morph_seeds, frames=10)
    morph_seeds.set_defaults(run=_run_morph_seeds)

    img2img = subparsers.add_parser("img2img", help="image to image with a strength")
    img2img.add_argument("image")
    img2img.add_argument("prompt")
    img2img.add_argument("--strength", type=_unit_float, default=0.75)
    img2img.add_argument("--out", required=True, help="image path (.png/.jpg/.webp)")
    add_image_arguments(img2img)
    add_model_arguments(img2img)
    img2img.add_argument("--quiet", action="store_true", help="no progress bar")
    img2img.set_defaults(run=_run_img2img)

    sweep = subparsers.add_parser(
        "sweep", help="vary one argument over a range with the noise fixed"
    )
    sweep.add_argument("image")
    sweep.add_argument("prompt")
    sweep.add_argument(
        "--param", choices=("strength", "guidance", "num_steps", "prompt_weight"),
        default="strength",
    )
    sweep.add_argument(
        "--range", required=True, help="start:stop:step (stop included) or a,b,c"
    )
    sweep.add_argument(
        "--strength", type=_unit_float, default=0.75, help="img2img strength when not swept"
    )
    add_image_arguments(sweep)
    add_walk_arguments(sweep, frames=None)
    sweep.set_defaults(run=_run_sweep)

    inpaint = subparsers.add_parser("inpaint", help="repaint the white part of a mask")
    inpaint.add_argument("image")
    inpaint.add_argument("mask", help="white = repaint, black = keep; any size or mode")
    inpaint.add_argument("prompt")
    inpaint.add_argument(
        "--out", required=True,
        help="the result with the original pasted outside the mask (feathered)",
    )
    inpaint.add_argument("--raw-out", help="also write the decoded result without the paste")
    inpaint.add_argument(
        "--feather", type=float, default=4.0, help="mask edge blur radius in pixels"
    )
    add_image_arguments(inpaint)
    add_model_arguments(inpaint)
    inpaint.add_argument("--quiet", action="store_true", help="no progress bar")
    inpaint.set_defaults(run=_run_inpaint)

    morph_images = subparsers.add_parser(
        "morph-images", help="morph between real images by DDIM inversion"
    )
    morph_images.add_argument("images", nargs="+", metavar="IMAGE")
    morph_images.add_argument(
        "--prompts", nargs="+", required=True, help="one prompt per image"
    )
    morph_images.add_argument(
        "--inversion-refinements", type=_non_negative_int, default=0,
        help="fixed-point iterations per inversion step (exacter, slower)",
    )
    add_image_arguments(morph_images)
    add_walk_arguments(morph_images, frames=30)
    morph_images.set_defaults(run=_run_morph_images, guidance=1.0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (CommandError, ValueError, FileNotFoundError, ImportError) as error:
        message = str(error)
        if isinstance(error, FileNotFoundError) and "\n" in message:
            print(f"kerasmorph {args.command}: {message}", file=sys.stderr)
        else:
            print(f"kerasmorph {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
