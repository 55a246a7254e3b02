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


def _int_at_least(minimum: int):
    """An argparse `type` accepting integers >= `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the options every generating subcommand shares."""
    from kerasmorph.presets import PRECISION_OPTIONS, PRESETS

    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default=AUTO_MODEL,
        help=(
            f"preset: {', '.join(PRESETS)}, or a converted checkpoint's directory, or "
            f"'{AUTO_MODEL}' (default): sd1 when its weight files are on disk, else the "
            "offline 'shapes' toy model shipped with kerasmorph"
        ),
    )
    group.add_argument("--height", type=_positive_int, help="image height (multiple of 64)")
    group.add_argument("--width", type=_positive_int, help="image width (multiple of 64)")
    group.add_argument("--weights-dir", help="directory searched first for weight files")
    group.add_argument(
        "--embedding",
        action="append",
        default=[],
        metavar="FILE",
        help="textual-inversion file (A1111 .pt/.safetensors or diffusers "
        "learned_embeds) whose token prompts may use (repeatable)",
    )
    group.add_argument(
        "--precision",
        choices=PRECISION_OPTIONS,
        default="auto",
        help=(
            "dtype policy of the text encoder and UNet (the VAE stays float32). "
            "'auto' (default): the fastest safe choice for the device, shown by "
            "`kerasmorph info` (bf16 UNet without XLA on AMX/AVX512-BF16 CPUs, "
            "mixed_float16 on GPU, mixed_bfloat16 on TPU, else float32); "
            "'float32' reproduces KerasCV's numbers"
        ),
    )
    group.add_argument(
        "--jit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=(
            "compile the denoising step and decoder with XLA (default: as the "
            "precision plan says: on, except the bf16 CPU step)"
        ),
    )
    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("--steps", type=_positive_int, default=50, help="denoising steps")
    sampling.add_argument(
        "--guidance", type=float, default=7.5, help="unconditional guidance scale"
    )
    sampling.add_argument("--seed", type=_non_negative_int, default=0, help="noise seed")
    sampling.add_argument("--negative-prompt", default=None)
    sampling.add_argument(
        "--long-prompts",
        action="store_true",
        help="encode prompts (and the negative prompt) over 77 tokens in 75-token "
        "chunks, concatenated as A1111 does, instead of failing",
    )
    sampling.add_argument(
        "--batch-size", type=_positive_int, default=None, help="images per UNet batch"
    )


def resolve_model_name(name: str, weights_dir: str | None) -> str:
    """Maps 'auto' to 'sd1' when its files are on disk, else to 'shapes'."""
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
        "using the offline 'shapes' toy model (coloured circles, squares and "
        "triangles on white; real Stable Diffusion weights give real pictures).",
        file=sys.stderr,
    )
    return "shapes"


# The last Explorer built, reused when `main` runs again in the same process
# (notebooks, tests) with the same model settings: building and tracing a
# model costs seconds (tiny) to minutes (sd1). One entry bounds the memory.
_last_explorer: tuple[tuple, object] | None = None


def build_explorer(args: argparse.Namespace):
    """Builds the `Explorer` described by the shared model arguments."""
    global _last_explorer
    name = resolve_model_name(args.model, args.weights_dir)
    strategy_name = getattr(args, "strategy", "none")
    embeddings = tuple(getattr(args, "embedding", ()))
    key = (
        name,
        args.height,
        args.width,
        args.jit,
        args.precision,
        args.weights_dir,
        strategy_name,
        embeddings,
    )
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
            strategy=make_strategy(strategy_name),
        )
        for path in embeddings:
            explorer.add_text_embeddings(path)
        _last_explorer = (key, explorer)
    explorer.verbose = not args.quiet
    # Not part of the key: it changes how prompts are encoded, not the model.
    explorer.long_prompts = bool(getattr(args, "long_prompts", False))
    return explorer


def _run_info(args: argparse.Namespace) -> int:
    import keras
    import keras_cv
    import numpy as np
    import tensorflow as tf

    from kerasmorph.presets import PRESETS
    from kerasmorph.weights import find_weights, search_dirs

    report = {
        "kerasmorph": kerasmorph.__version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_cv": keras_cv.__version__,
        "numpy": np.__version__,
        "backend": keras.config.backend(),
        "devices": [
            f"{device.device_type}:{device.name}" for device in tf.config.list_physical_devices()
        ],
        "weights_searched": [str(d) for d in search_dirs(args.weights_dir)],
        "precision_auto": _auto_plan_report(),
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
        if preset.bundled_weights is not None:
            report["presets"][name]["bundled_weights"] = str(preset.bundled_weights())
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for key in ("kerasmorph", "python", "tensorflow", "keras", "keras_cv", "numpy", "backend"):
        print(f"{key:<11} {report[key]}")
    print(f"{'devices':<11} {', '.join(report['devices'])}")
    auto = report["precision_auto"]
    print(
        f"{'auto':<11} text encoder {auto['text_encoder']}, UNet {auto['diffusion_model']}, "
        f"VAE {auto['decoder']}, step XLA {'on' if auto['jit_compile'] else 'off'}; "
        f"batch {auto['default_batch_size']['256x256']} at 256², "
        f"{auto['default_batch_size']['512x512']} at 512² ({auto['reason']})"
    )
    print("weights searched, in order:")
    for directory in report["weights_searched"]:
        print(f"  {directory}")
    print("presets:")
    for name, entry in report["presets"].items():
        print(f"  {name:<5} {entry['description']}")
        if "bundled_weights" in entry:
            print(f"        weights: trained, shipped in {entry['bundled_weights']}")
        elif not entry["weights"]:
            print("        weights: none needed (seeded random)")
        for filename, path in entry["weights"].items():
            print(f"        {filename:<26} {path or 'MISSING'}")
    return 0


def _auto_plan_report() -> dict:
    """What `--precision auto` resolves to here, with the default batch sizes."""
    from kerasmorph import devices

    plan = devices.resolve_precision("auto")
    return {
        **plan.to_json(),
        "cpu_bf16_flags": sorted(devices.cpu_flags() & set(devices.BF16_CPU_FLAGS)),
        "default_batch_size": {
            f"{size}x{size}": devices.default_batch_size(size, size, plan.device)
            for size in (256, 512, 768)
        },
    }


def _run_generate(args: argparse.Namespace) -> int:
    from kerasmorph import export

    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise CommandError(
            f"--out must end in .png, .jpg, .jpeg or .webp. Received: --out {args.out}"
        )
    explorer = build_explorer(args)
    encoding = explorer.encode_text(
        args.prompt, truncate=args.truncate, long_prompts=args.long_prompts
    )
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
        "--rubber-band",
        action="store_true",
        help="GIF: play forwards then backwards (frames + frames[2:-1] reversed)",
    )
    resume = output.add_mutually_exclusive_group()
    resume.add_argument(
        "--resume",
        dest="overwrite",
        action="store_false",
        help="(default) a directory --out is a resumable render: finished frames are kept",
    )
    resume.add_argument(
        "--overwrite",
        dest="overwrite",
        action="store_true",
        help="replace a render directory made with other settings",
    )
    parser.set_defaults(overwrite=False)
    add_strategy_argument(parser)
    add_model_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_strategy_argument(parser: argparse.ArgumentParser) -> None:
    """Adds --strategy, how frames are spread over devices and workers."""
    parser.add_argument(
        "--strategy",
        choices=("none", "mirrored", "tpu", "multiworker"),
        default="none",
        help="mirrored: every local GPU (or device); tpu: a Cloud/Colab TPU; "
        "multiworker: this worker's share of the frames, from TF_CONFIG",
    )


def make_strategy(name: str):
    """Builds the tf.distribute strategy named on the command line (or None)."""
    if name == "none":
        return None
    import tensorflow as tf

    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    # mirrored, and each worker's local devices under multiworker (workers
    # render disjoint frames, so they need no collective).
    return tf.distribute.MirroredStrategy()


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


def _render_spec(
    args: argparse.Namespace,
    kind: str,
    prompts: Sequence[str],
    seeds: Sequence[int],
    num_frames: int,
    schedule: str,
    options: dict,
    *,
    num_columns: int | None = None,
) -> int:
    """Renders a walk described by a RenderSpec: a resumable render directory
    when --out has no suffix, else streamed into a GIF, MP4 or grid image."""
    from kerasmorph import renders

    out = check_output_path(args.out)
    explorer = build_explorer(args)
    # Too-long prompts fail here, before a render directory's manifest is
    # written: the corrected run would otherwise be refused as another render.
    for prompt in prompts:
        explorer.tokenize(prompt)
    if args.long_prompts:
        # In the manifest, so a resumed render encodes the prompts the same way;
        # only when set, so manifests of short-prompt renders are unchanged.
        options = {**options, "long_prompts": True}
    total = num_frames * num_frames if kind == "grid" else num_frames
    spec = renders.RenderSpec(
        kind=kind,
        prompts=tuple(prompts),
        seeds=tuple(seeds),
        num_frames=num_frames,
        schedule=schedule,
        options=options,
        model=explorer.preset.name,
        weights=renders.weights_fingerprint(explorer),
        img_height=explorer.img_height,
        img_width=explorer.img_width,
        # The resolved policies, not "auto": they decide the frames' last bits.
        precision=_resolved_precision(explorer),
        jit_compile=explorer.jit_compile,
        num_steps=args.steps,
        unconditional_guidance_scale=args.guidance,
        negative_prompt=args.negative_prompt,
        batch_size=explorer.batch_size_for(total, args.batch_size),
    )
    if not out.suffix:
        return _render_directory(explorer, spec, out, args)
    if args.strategy == "multiworker":
        raise CommandError(
            "--strategy multiworker writes each worker's frames into a shared render "
            f"directory: give --out a directory (no suffix). Received: --out {args.out}"
        )
    frames = explorer.render(
        renders.build_walk(explorer, spec),
        num_steps=spec.num_steps,
        unconditional_guidance_scale=spec.unconditional_guidance_scale,
        negative_prompt=spec.negative_prompt,
        batch_size=spec.batch_size,
    )
    print(write_frames(out, frames, args, num_columns=num_columns))
    return 0


def _resolved_precision(explorer) -> str:
    plan = explorer.precision_plan
    if plan.requested != "auto":
        return plan.requested
    return f"auto:{plan.text_encoder}/{plan.diffusion_model}/{plan.decoder}"


def _render_directory(explorer, spec, directory: Path, args: argparse.Namespace) -> int:
    from kerasmorph import renders

    shard = renders.shard_of_cluster() if args.strategy == "multiworker" else (0, 1)
    report = renders.render_to_directory(
        explorer, spec, directory, overwrite=args.overwrite, shard=shard
    )
    print(
        f"{directory}: rendered {len(report.rendered)} frames, "
        f"{len(report.skipped)} already done (worker {shard[0]} of {shard[1]})"
    )
    return 0


def _run_render(args: argparse.Namespace) -> int:
    from kerasmorph import renders

    spec = renders.load_spec(args.manifest)
    directory = Path(args.manifest)
    directory = directory if directory.is_dir() else directory.parent
    args.model, args.height, args.width = spec.model, spec.img_height, spec.img_width
    args.precision = spec.precision.split(":")[0]  # "auto:…" re-resolves to "auto".
    args.jit = spec.jit_compile
    args.long_prompts = bool(spec.options.get("long_prompts", False))
    explorer = build_explorer(args)
    fingerprint = renders.weights_fingerprint(explorer)
    if fingerprint != spec.weights:
        raise CommandError(
            f"The weights differ from the manifest's ({fingerprint} here, {spec.weights} "
            f"in {directory}): the frames would not match. Point --weights-dir at them."
        )
    return _render_directory(explorer, spec, directory, args)


def _schedule(args: argparse.Namespace, default: str) -> str:
    from kerasmorph.schedules import get_schedule

    name = args.schedule or default
    get_schedule(name)  # A ValueError listing the valid names.
    return name


def add_adaptive_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds --adaptive/--max-frames to the subcommands that render a 1-D path."""
    group = parser.add_argument_group("adaptive spacing")
    group.add_argument(
        "--adaptive",
        type=float,
        metavar="THRESHOLD",
        default=None,
        help="bisect where neighbouring frames differ by more than THRESHOLD (mean "
        "absolute pixel difference / 255, e.g. 0.05); --frames is the first grid",
    )
    group.add_argument(
        "--max-frames", type=_positive_int, default=None, help="frame budget of --adaptive"
    )


def _render_adaptive(
    args: argparse.Namespace, encodings, noises, schedule: str, noise_method: str
) -> int:
    from kerasmorph import adaptive

    out = check_output_path(args.out)
    if args.max_frames is None:
        raise CommandError("--adaptive needs --max-frames N (the frame budget)")
    explorer = args._explorer
    result = adaptive.refine(
        explorer,
        adaptive.keyframe_path(encodings, noises, schedule=schedule, noise_method=noise_method),
        threshold=args.adaptive,
        max_frames=args.max_frames,
        initial_frames=args.frames,
        num_steps=args.steps,
        unconditional_guidance_scale=args.guidance,
        batch_size=args.batch_size,
    )
    print(write_frames(out, result.frames, args))
    figure = adaptive.plot_changes(result)
    plot = out.with_name(f"{out.stem or out.name}.changes.png")
    figure.savefig(plot)
    print(
        f"{plot}: {len(result.positions)} frames, largest change "
        f"{result.changes_before.max():.3f} -> {result.changes_after.max():.3f}"
    )
    return 0


def _run_interpolate(args: argparse.Namespace) -> int:
    if args.adaptive is not None:
        import numpy as np

        args._explorer = build_explorer(args)
        encodings = args._explorer.encode_text(args.prompts, long_prompts=args.long_prompts)
        noises = np.repeat(args._explorer.noise(1, args.seed), len(args.prompts), axis=0)
        return _render_adaptive(args, encodings, noises, _schedule(args, "linear"), "slerp")
    return _render_spec(
        args,
        "interpolate",
        args.prompts,
        [args.seed],
        args.frames,
        _schedule(args, "linear"),
        {},
    )


def _run_grid(args: argparse.Namespace) -> int:
    return _render_spec(
        args,
        "grid",
        args.prompts,
        [args.seed],
        args.size,
        _schedule(args, "linear"),
        {"vary_noise": args.vary_noise},
        num_columns=args.size,
    )


def _run_walk(args: argparse.Namespace) -> int:
    options = {
        "step_size": None if args.norm is not None else args.step_size,
        "norm": args.norm,
        "direction_seed": args.direction_seed,
    }
    return _render_spec(
        args,
        "walk",
        [args.prompt],
        [args.seed],
        args.frames,
        _schedule(args, "linear"),
        options,
    )


def _run_loop(args: argparse.Namespace) -> int:
    return _render_spec(
        args, "loop", [args.prompt], [args.seed], args.frames, _schedule(args, "linear"), {}
    )


def _run_morph_seeds(args: argparse.Namespace) -> int:
    if args.adaptive is not None:
        import numpy as np

        if len(args.seeds) < 2:
            raise CommandError(f"--seeds needs at least 2 seeds. Received: {args.seeds}")
        args._explorer = build_explorer(args)
        noises = np.concatenate([args._explorer.noise(1, seed) for seed in args.seeds])
        encoding = args._explorer.encode_text(args.prompt, long_prompts=args.long_prompts)
        encodings = np.repeat(encoding, len(args.seeds), axis=0)
        return _render_adaptive(args, encodings, noises, _schedule(args, "ease"), args.noise_method)
    return _render_spec(
        args,
        "morph-seeds",
        [args.prompt],
        args.seeds,
        args.frames,
        _schedule(args, "ease"),
        {"noise_method": args.noise_method},
    )


def _check_image_out(out: str) -> Path:
    path = Path(out)
    if path.suffix.lower() not in GRID_SUFFIXES:
        raise CommandError(f"--out must end in .png, .jpg, .jpeg or .webp. Received: --out {out}")
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
        image,
        args.prompt,
        strength=args.strength,
        num_steps=args.steps,
        unconditional_guidance_scale=args.guidance,
        seed=args.seed,
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
        explorer,
        args.prompt,
        args.param,
        values,
        image=image,
        seed=args.seed,
        num_steps=args.steps,
        unconditional_guidance_scale=args.guidance,
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
        image,
        args.mask,
        args.prompt,
        num_steps=args.steps,
        unconditional_guidance_scale=args.guidance,
        seed=args.seed,
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
            explorer,
            list(images),
            args.prompts,
            args.frames,
            schedule=schedule,
            num_steps=args.steps,
            inversion_guidance=args.guidance,
            num_refinements=args.inversion_refinements,
            long_prompts=args.long_prompts,
        )

    return _render_walk(args, build)


def _run_bench(args: argparse.Namespace) -> int:
    from kerasmorph import bench

    config = bench.BenchConfig(
        model=args.model,
        img_height=args.height,
        img_width=args.width,
        num_steps=args.steps,
        batch_size=args.batch_size,
        precision=args.precision,
        num_rounds=args.rounds,
        compare=tuple(args.compare or ()),
        weights_dir=args.weights_dir,
        seed=args.seed,
    )
    report = bench.run_bench(
        config, log=lambda message: print(f"kerasmorph bench: {message}", file=sys.stderr)
    )
    print(bench.format_table(report))
    if args.json:
        print(json.dumps(report))
    return 0


def add_image_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds --fit, the policy that brings input images to the model size."""
    parser.add_argument(
        "--fit",
        choices=("resize", "center-crop", "pad"),
        default="resize",
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
        "--num-images",
        type=_positive_int,
        default=1,
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
    add_adaptive_arguments(interpolate)
    interpolate.set_defaults(run=_run_interpolate)

    grid = subparsers.add_parser("grid", help="bilinear grid of 4 prompts")
    grid.add_argument("prompts", nargs=4, metavar="PROMPT", help="TL TR BL BR")
    grid.add_argument("--size", type=_positive_int, default=4, help="frames per side")
    grid.add_argument("--vary-noise", action="store_true", help="a different noise for every cell")
    add_walk_arguments(grid, frames=None)
    grid.set_defaults(run=_run_grid)

    walk = subparsers.add_parser("walk", help="delta walk around one prompt")
    walk.add_argument("prompt")
    walk.add_argument("--step-size", type=float, default=0.005, help="element-wise step")
    walk.add_argument("--norm", type=float, default=None, help="L2 length of each step instead")
    walk.add_argument(
        "--direction-seed",
        type=_non_negative_int,
        default=None,
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
        "--noise-method",
        choices=("variance_preserving", "slerp"),
        default="variance_preserving",
    )
    add_walk_arguments(morph_seeds, frames=10)
    add_adaptive_arguments(morph_seeds)
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
        "--param",
        choices=("strength", "guidance", "num_steps", "prompt_weight"),
        default="strength",
    )
    sweep.add_argument("--range", required=True, help="start:stop:step (stop included) or a,b,c")
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
        "--out",
        required=True,
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
    morph_images.add_argument("--prompts", nargs="+", required=True, help="one prompt per image")
    morph_images.add_argument(
        "--inversion-refinements",
        type=_non_negative_int,
        default=0,
        help="fixed-point iterations per inversion step (exacter, slower)",
    )
    add_image_arguments(morph_images)
    add_walk_arguments(morph_images, frames=30)
    morph_images.set_defaults(run=_run_morph_images, guidance=1.0)

    render = subparsers.add_parser(
        "render", help="re-run (resume) a saved render from its manifest"
    )
    render.add_argument("manifest", help="a render directory or its manifest.json")
    render.add_argument("--weights-dir", help="directory searched first for weight files")
    render.add_argument("--overwrite", action="store_true", help=argparse.SUPPRESS)
    add_strategy_argument(render)
    render.add_argument("--quiet", action="store_true", help="no progress bar")
    render.set_defaults(run=_run_render)

    from kerasmorph.presets import PRECISION_OPTIONS

    bench = subparsers.add_parser(
        "bench",
        help="time KerasCV's generate_image against kerasmorph (and diffusers)",
        description=(
            "One process, one set of weights (real when found, else the full-size "
            "architecture with random weights), the same encodings and noise for "
            "every variant; warm-up excluded, rounds timed round-robin, medians."
        ),
    )
    bench.add_argument("--model", choices=("tiny", "sd1", "sd2"), default="sd1")
    bench.add_argument("--height", type=_positive_int, help="image height (default 256; tiny: 128)")
    bench.add_argument("--width", type=_positive_int, help="image width (default 256; tiny: 128)")
    bench.add_argument("--steps", type=_positive_int, default=5, help="denoising steps")
    bench.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        help="images per generation (default: the device's default for the size)",
    )
    bench.add_argument(
        "--precision",
        choices=PRECISION_OPTIONS,
        default="auto",
        help="precision of kerasmorph's fast variant (default: auto)",
    )
    bench.add_argument("--rounds", type=_positive_int, default=3, help="timed rounds")
    bench.add_argument(
        "--compare",
        choices=("diffusers",),
        action="append",
        help="also time diffusers' UNet (PyTorch CPU; skipped with a reason if absent)",
    )
    bench.add_argument("--weights-dir", help="directory searched first for weight files")
    bench.add_argument("--seed", type=_non_negative_int, default=0, help="noise seed")
    bench.add_argument(
        "--json", action="store_true", help="also print the report as one JSON line, last"
    )
    bench.set_defaults(run=_run_bench)
    add_checkpoint_commands(subparsers)
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


# ------------------------------------------------ checkpoints: convert, merge, similarity


def _run_convert(args: argparse.Namespace) -> int:
    from kerasmorph import checkpoints

    result = checkpoints.convert(
        args.checkpoint, args.out, family=args.family, overwrite=args.overwrite
    )
    for component, path in result.files.items():
        print(f"{component:<15} {path}")
    print(f"preset {result.preset}: use --model {result.directory}")
    return 0


def _model_and_coefficient(text: str) -> tuple[str, float]:
    path, separator, value = text.rpartition(":")
    if not separator or not path:
        raise argparse.ArgumentTypeError(f"expected PATH:COEFFICIENT, got {text!r}")
    try:
        return path, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected PATH:COEFFICIENT with a number, got {text!r}"
        ) from None


# Suffixes that name a checkpoint file, never a diffusers folder.
_CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


def _merge_plan(
    args: argparse.Namespace,
) -> tuple[dict[str, str], str, list[tuple[float, str]], float]:
    """`merge`'s inputs by flag, and its target, terms and target coefficient.

    Every mode is `target_coef * target + sum(coefficient * model)`; see
    `kerasmorph.checkpoints.merge_checkpoints`.
    """
    if args.add:
        inputs = {"--base": args.base}
        inputs.update({f"--add #{index}": path for index, (path, _) in enumerate(args.add, 1)})
        # base + sum c_i (model_i - base), tensor by tensor.
        terms = [(coefficient, path) for path, coefficient in args.add]
        terms.append((-sum(coefficient for _, coefficient in args.add), args.base))
        return inputs, args.base, terms, 1.0
    if args.weighted_sum is not None:
        a, b = args.weighted_sum
        inputs = {"--weighted-sum A": a, "--weighted-sum B": b}
        return inputs, a, [(args.alpha, b)], 1.0 - args.alpha
    a, b, c = args.add_difference
    inputs = {"--add-difference A": a, "--add-difference B": b, "--add-difference C": c}
    return inputs, a, [(args.alpha, b), (-args.alpha, c)], 1.0


def _run_merge(args: argparse.Namespace) -> int:
    from kerasmorph import checkpoints

    modes = [bool(args.add), args.weighted_sum is not None, args.add_difference is not None]
    if sum(modes) != 1:
        raise CommandError(
            "give exactly one of --base with --add, --weighted-sum A B or --add-difference A B C"
        )
    if args.add and args.base is None:
        raise CommandError("--add needs --base (the model the fine-tunes started from)")
    inputs, target, terms, target_coef = _merge_plan(args)
    if args.take_vae:
        inputs["--take-vae"] = args.take_vae
    # Single files and diffusers folders name their tensors differently.
    file_format = checkpoints.check_same_format(inputs)
    out = Path(args.out)
    if file_format == "compvis":
        if out.suffix and out.suffix != ".safetensors":
            raise CommandError(
                f"--out must be a .safetensors file or a directory. Received: --out {args.out}"
            )
        merged = out if out.suffix else out / "merged.safetensors"
    else:
        if out.suffix in _CHECKPOINT_SUFFIXES:
            raise CommandError(
                "diffusers folders merge into a diffusers folder: --out must be a "
                f"directory. Received: --out {args.out}"
            )
        merged = out
    report = checkpoints.merge_checkpoints(
        merged,
        target,
        terms,
        target_coef,
        take={"vae": args.take_vae} if args.take_vae else None,
        dtype="float16" if args.half else None,
    )
    print(report.summary(), file=sys.stderr)
    print(merged)
    # A directory --out also gets the KerasCV conversion, beside the merge.
    if (file_format == "diffusers" or not out.suffix) and not args.no_convert:
        result = checkpoints.convert(merged, out, overwrite=True)
        print(f"preset {result.preset}: use --model {result.directory}")
    return 0


def _run_similarity(args: argparse.Namespace) -> int:
    import contextlib

    import numpy as np

    from kerasmorph import checkpoints, merging, plotting

    if args.plot is None and args.csv is None:
        raise CommandError("give --plot PNG and/or --csv CSV")
    inputs = {"A": args.a, "B": args.b}
    if args.base is not None:
        inputs["--base"] = args.base
    checkpoints.check_same_format(inputs)
    with contextlib.ExitStack() as stack:
        a, b = (stack.enter_context(checkpoints.LazyTensors(path)) for path in (args.a, args.b))
        if args.base is not None:
            base = stack.enter_context(checkpoints.LazyTensors(args.base))
            a, b = merging.TaskVectorView(base, a), merging.TaskVectorView(base, b)
        rows = merging.cosine_similarities(a, b)
    if not rows:
        raise CommandError("the two checkpoints share no tensors of equal shape")
    if args.csv is not None:
        Path(args.csv).write_text(merging.similarity_csv(rows))
        print(args.csv)
    if args.plot is not None:
        what = "task vectors" if args.base is not None else "weights"
        figure = plotting.plot_similarity_histogram(
            [row.cosine for row in rows],
            title=f"{Path(args.a).name} vs {Path(args.b).name}: cosine of the {what}",
        )
        figure.savefig(args.plot)
        print(args.plot)
    cosines = np.asarray([row.cosine for row in rows])
    print(
        f"{len(rows)} layers, cosine median {np.nanmedian(cosines):.6f}, "
        f"min {np.nanmin(cosines):.6f}",
        file=sys.stderr,
    )
    return 0


def add_checkpoint_commands(subparsers) -> None:
    """Adds `convert`, `merge` and `similarity` to the CLI."""
    convert = subparsers.add_parser(
        "convert", help="convert an SD 1.x/2.x checkpoint into KerasCV weight files"
    )
    convert.add_argument(
        "checkpoint", help="a .safetensors/.ckpt single file or a diffusers folder"
    )
    convert.add_argument("--out", required=True, help="output directory")
    convert.add_argument("--family", choices=("sd1", "sd2"), default=None, help="default: detected")
    convert.add_argument("--overwrite", action="store_true", help="replace existing files")
    convert.set_defaults(run=_run_convert, quiet=True)

    merge = subparsers.add_parser(
        "merge",
        help="merge checkpoints (task vectors, weighted sum, add difference): "
        "single files, or diffusers folders",
        description="Merges checkpoints tensor by tensor. Every input is a "
        "single-file checkpoint (.safetensors/.ckpt), or every input is a "
        "diffusers folder (unet/, vae/, text_encoder/); the two cannot be mixed. "
        "Tensors whose shapes differ or that a model lacks are kept from the "
        "target (--base, or A) and listed.",
    )
    merge.add_argument("--base", help="the model the --add fine-tunes started from")
    merge.add_argument(
        "--add",
        action="append",
        default=[],
        type=_model_and_coefficient,
        metavar="PATH:COEF",
        help="add COEF x (PATH - base) (repeatable)",
    )
    merge.add_argument(
        "--weighted-sum", nargs=2, metavar=("A", "B"), help="A x (1 - alpha) + B x alpha"
    )
    merge.add_argument(
        "--add-difference", nargs=3, metavar=("A", "B", "C"), help="A + alpha x (B - C)"
    )
    merge.add_argument("--alpha", type=float, default=0.5, help="default 0.5")
    merge.add_argument(
        "--take-vae",
        metavar="FROM",
        help="copy the whole VAE from FROM (for folders: FROM's vae/ subfolder, config included)",
    )
    merge.add_argument("--half", action="store_true", help="store float16")
    merge.add_argument(
        "--out",
        required=True,
        help="single files: a .safetensors file, or a directory DIR getting "
        "DIR/merged.safetensors plus its KerasCV conversion (then use --model DIR). "
        "diffusers folders: a directory DIR that becomes the merged diffusers folder "
        "(weights merged, configs, scheduler and tokenizer copied from the target; "
        "diffusers' from_pretrained(DIR) reads it) plus its KerasCV conversion",
    )
    merge.add_argument(
        "--no-convert",
        action="store_true",
        help="with a directory --out, write the merged checkpoint only, not its KerasCV conversion",
    )
    merge.set_defaults(run=_run_merge, quiet=True)

    similarity = subparsers.add_parser(
        "similarity",
        help="per-layer cosine similarity of two checkpoints (single files or diffusers folders)",
    )
    similarity.add_argument("a", help="a single-file checkpoint or a diffusers folder")
    similarity.add_argument("b", help="another, of the same kind")
    similarity.add_argument("--base", help="compare the task vectors A - BASE and B - BASE instead")
    similarity.add_argument("--plot", help="histogram image (.png)")
    similarity.add_argument("--csv", help="per-layer table (.csv)")
    similarity.set_defaults(run=_run_similarity, quiet=True)


if __name__ == "__main__":
    sys.exit(main())
