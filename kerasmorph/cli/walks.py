"""The walk commands: `interpolate`, `grid`, `walk`, `loop` and `morph-seeds`.

Each renders a walk described by a `RenderSpec` (`kerasmorph.cli.render`);
`interpolate` and `morph-seeds` can instead space their frames adaptively.
"""

from __future__ import annotations

import argparse

from kerasmorph.cli.arguments import (
    SharedArguments,
    build_scheduler,
    finite_float,
    int_at_least,
    non_negative_int,
    own_arguments,
    positive_float,
    resolve_schedule,
    unit_float,
)
from kerasmorph.cli.checks import (
    check_outputs,
    check_render,
    clamp_batch_size,
    is_directory_out,
    model_inputs,
)
from kerasmorph.cli.output import check_output_path, write_frames
from kerasmorph.cli.render import render_spec
from kerasmorph.cli.session import CommandError, Session
from kerasmorph.constants import TEXT_INTERPOLATIONS
from kerasmorph.morph_options import DEFAULT_SWITCH_WIDTH, NOISE_STATISTICS, MorphOptions

# `walk`'s element-wise step, the KerasCV tutorial's `ones × 0.005`.
DEFAULT_STEP_SIZE = 0.005


def _structure_arguments() -> argparse.ArgumentParser:
    """--depth and --image (--strength, --depth-estimator): one depth map and one start image
    for every frame."""
    parser = own_arguments()
    parser.add_argument(
        "--depth",
        metavar="DEPTH",
        help="depth models (--model shapes-depth, SD 2 depth): every frame follows this depth "
        "map (8/16-bit greyscale PNG/TIFF or .npy, larger nearer), so the layout holds",
    )
    parser.add_argument(
        "--image",
        metavar="IMAGE",
        help="every frame starts from this image (img2img, each frame with its own noise) "
        "instead of pure noise; with --depth, a structure-preserving morph",
    )
    parser.add_argument(
        "--strength",
        type=unit_float,
        default=None,
        help="with --image: how far from the image each frame goes, in (0, 1] (default 0.8)",
    )
    parser.add_argument(
        "--depth-estimator",
        metavar="DIR",
        help="depth models, with --image and no --depth: estimate the map from IMAGE with this "
        "local KerasHub DepthAnything preset folder (default $KERASMORPH_DEPTH_ESTIMATOR; never "
        "downloaded; needs kerasmorph[depth])",
    )
    return parser


def register(subparsers, shared: SharedArguments) -> None:
    """Adds `interpolate`, `grid`, `walk`, `loop` and `morph-seeds`."""
    depth = _structure_arguments()
    own = own_arguments()
    own.add_argument("prompts", nargs="+", metavar="PROMPT")
    _morph_arguments(own, text=True)
    subparsers.add_parser(
        "interpolate",
        help="interpolate 2+ prompts with fixed noise",
        parents=[own, depth, *shared.rendering(10), shared.adaptive],
    ).set_defaults(run=run_interpolate)

    own = own_arguments()
    own.add_argument("prompts", nargs=4, metavar="PROMPT", help="TL TR BL BR")
    own.add_argument("--size", type=int_at_least(2), default=4, help="frames per side, >= 2")
    own.add_argument("--vary-noise", action="store_true", help="a different noise for every cell")
    subparsers.add_parser(
        "grid", help="bilinear grid of 4 prompts", parents=[own, depth, *shared.rendering(None)]
    ).set_defaults(run=run_grid)

    own = own_arguments()
    own.add_argument("prompt")
    own.add_argument(
        "--step-size",
        type=finite_float,
        default=None,
        help=f"element-wise step (default: {DEFAULT_STEP_SIZE})",
    )
    own.add_argument(
        "--norm", type=positive_float, default=None, help="L2 length of each step instead"
    )
    own.add_argument(
        "--direction-seed",
        type=non_negative_int,
        default=None,
        help="walk in a random direction drawn from this seed (default: all ones)",
    )
    subparsers.add_parser(
        "walk", help="delta walk around one prompt", parents=[own, depth, *shared.rendering(20)]
    ).set_defaults(run=run_walk)

    own = own_arguments()
    own.add_argument("prompt")
    subparsers.add_parser(
        "loop",
        help="circular noise loop on one prompt",
        parents=[own, depth, *shared.rendering(16)],
    ).set_defaults(run=run_loop)

    own = own_arguments()
    own.add_argument("prompt")
    own.add_argument("--seeds", type=non_negative_int, nargs="+", default=[1, 2], help="2+ seeds")
    own.add_argument(
        "--noise-method",
        choices=("variance_preserving", "slerp"),
        default="variance_preserving",
        help="how neighbouring seeds' noises are mixed (both keep it standard normal)",
    )
    _morph_arguments(own, text=False)
    subparsers.add_parser(
        "morph-seeds",
        help="morph the noise between seeds for one prompt",
        # The noises are --seeds' (no --seed).
        parents=[own, depth, *shared.rendering(10, seed=False), shared.adaptive],
    ).set_defaults(run=run_morph_seeds)


def _morph_arguments(parser: argparse.ArgumentParser, *, text: bool) -> None:
    """The smoothing options of a keyframed walk (`kerasmorph.MorphOptions`)."""
    group = parser.add_argument_group("morph")
    if text:
        group.add_argument(
            "--text-interpolation",
            choices=TEXT_INTERPOLATIONS,
            default="embedding",
            help="embedding: lerp the prompts' encodings (KerasCV's tutorial); attention: "
            "interpolate every cross-attention output instead (AID); switch: the first "
            "prompt in the early steps, the second in the late ones, switching earlier as "
            "the morph goes on",
        )
        group.add_argument(
            "--switch-width",
            type=finite_float,
            default=DEFAULT_SWITCH_WIDTH,
            metavar="FRACTION",
            help="the width of --text-interpolation switch's ramp, a fraction of the steps in "
            "[0, 1] (0: a hard switch)",
        )
    else:
        group.add_argument(
            "--noise-statistics",
            choices=NOISE_STATISTICS,
            default=None,
            help="adain: renormalise the mixed noise to the seeds' lerped channel mean/std "
            "(DiffMorpher)",
        )
    group.add_argument(
        "--middle-guidance",
        type=finite_float,
        default=None,
        metavar="SCALE",
        help="guidance halfway between keyframes, linear to --guidance at each keyframe "
        "(default: --guidance everywhere)",
    )


def _morph_options(args: argparse.Namespace) -> MorphOptions:
    """The command's `MorphOptions`."""
    return MorphOptions(
        getattr(args, "text_interpolation", "embedding"),
        getattr(args, "noise_statistics", None),
        args.middle_guidance,
        getattr(args, "switch_width", DEFAULT_SWITCH_WIDTH),
    )


def _check(
    args: argparse.Namespace,
    session: Session,
    num_frames: int,
    *,
    walk: str,
    request: str,
    fewer: str = "fewer --frames",
    num_encodings: int = 0,
) -> None:
    """The up-front checks of a walk command: --out not an input, the render fits,
    and an explicit --batch-size above the frames clamped to them."""
    if args.strength is not None and args.image is None:
        raise CommandError(
            f"--strength {args.strength} goes with --image (how far each frame goes from it)"
        )
    if args.depth_estimator is not None and (args.image is None or args.depth is not None):
        raise CommandError(
            "--depth-estimator estimates the depth map from --image: pass it with --image and "
            "without --depth"
        )
    if args.image is not None and _spaced(args):
        raise CommandError(
            "--image does not combine with --adaptive/--respace (their probe renders start "
            "from noise); render the walk with fixed frames"
        )
    inputs = {**model_inputs(args), "--image": args.image}
    directories = ("--out",) if is_directory_out(args.out) else ()
    check_outputs({"--out": args.out}, inputs, directories=directories)
    if _spaced(args):
        # The refined frames (at most --max-frames) or the probe are kept, then written.
        num_held = max(num_frames, args.max_frames or 0, _probe_frames(args))
        plot = _plot_path(check_output_path(args.out))
        check_outputs({"--out (plot)": plot}, model_inputs(args))
        check_render(args, num_held, walk=walk, request=request, num_held=num_held)
    else:
        check_render(
            args,
            num_frames,
            walk=walk,
            request=request,
            fewer=fewer,
            num_encodings=num_encodings,
        )
    clamp_batch_size(args, session, num_frames)


def _check_keyframes(args: argparse.Namespace, keyframes: list, noun: str) -> None:
    """Refuses a path of fewer than 2 keyframes (`noun`: prompts, seeds), fewer --frames
    than keyframes, or an --adaptive render without a frame budget, before the model is built."""
    count = len(keyframes)
    if count < 2:
        raise CommandError(
            f"{args.command} needs at least 2 {noun}. Received: {count} {noun} {keyframes!r}"
        )
    if args.respace:
        if args.adaptive is not None or args.max_frames is not None:
            raise CommandError(
                "--respace places --frames frames itself: drop --adaptive/--max-frames "
                "(bisection), or --respace"
            )
        if args.frames < count:
            raise CommandError(
                f"{count} keyframes need at least {count} frames. Received: --frames {args.frames}"
            )
        return
    if args.probe_frames is not None:
        raise CommandError("--probe-frames is the probe of --respace: add --respace")
    if args.adaptive is None:
        if args.frames < count:
            raise CommandError(
                f"{count} keyframes need at least {count} frames. Received: --frames {args.frames}"
            )
        return
    if args.max_frames is None:
        raise CommandError("--adaptive needs --max-frames N (the frame budget)")
    if not 2 <= args.frames <= args.max_frames:
        raise CommandError(
            "--adaptive renders --frames (>= 2) first, then bisects up to --max-frames: "
            f"need 2 <= --frames <= --max-frames. Received: --frames {args.frames} "
            f"--max-frames {args.max_frames}"
        )


def _spaced(args: argparse.Namespace) -> bool:
    """Whether the frames are placed by measuring them (--adaptive or --respace)."""
    return getattr(args, "adaptive", None) is not None or getattr(args, "respace", False)


def _probe_frames(args: argparse.Namespace) -> int:
    if not getattr(args, "respace", False):
        return 0
    return args.probe_frames or 2 * args.frames - 1


def _plot_path(out):
    """Where an adaptive render's plot of the changes goes, beside --out."""
    return out.with_name(f"{out.stem or out.name}.changes.png")


def run_interpolate(args: argparse.Namespace, session: Session) -> int:
    _check_keyframes(args, args.prompts, "prompts")
    _check(args, session, args.frames, walk="path", request=f"--frames {args.frames}")
    if _spaced(args):
        import numpy as np

        schedule = resolve_schedule(args, "linear")
        explorer = session.explorer_for(args)
        encodings = explorer.encode_text(args.prompts, long_prompts=args.long_prompts)
        noises = np.repeat(explorer.noise(1, args.seed), len(args.prompts), axis=0)
        return _render_adaptive(args, explorer, encodings, noises, schedule, "slerp")
    return render_spec(
        args,
        session,
        "interpolate",
        args.prompts,
        [args.seed],
        args.frames,
        resolve_schedule(args, "linear"),
        # Only what differs from plain interpolation: older manifests still match.
        _morph_options(args).to_json(),
    )


def run_grid(args: argparse.Namespace, session: Session) -> int:
    num_cells = args.size * args.size
    _check(
        args,
        session,
        num_cells,
        walk="positions",
        request=f"--size {args.size} ({num_cells:,} frames)",
        fewer="a smaller --size",
        num_encodings=num_cells,
    )
    return render_spec(
        args,
        session,
        "grid",
        args.prompts,
        [args.seed],
        args.size,
        resolve_schedule(args, "linear"),
        {"vary_noise": args.vary_noise},
        num_columns=args.size,
    )


def run_walk(args: argparse.Namespace, session: Session) -> int:
    if args.step_size is not None and args.norm is not None:
        raise CommandError(
            "--step-size and --norm both set the length of a step: give one. Received: "
            f"--step-size {args.step_size} --norm {args.norm}"
        )
    _check(args, session, args.frames, walk="positions", request=f"--frames {args.frames}")
    step_size = DEFAULT_STEP_SIZE if args.step_size is None else args.step_size
    options = {
        "step_size": None if args.norm is not None else step_size,
        "norm": args.norm,
        "direction_seed": args.direction_seed,
    }
    return render_spec(
        args,
        session,
        "walk",
        [args.prompt],
        [args.seed],
        args.frames,
        resolve_schedule(args, "linear"),
        options,
    )


def run_loop(args: argparse.Namespace, session: Session) -> int:
    _check(args, session, args.frames, walk="positions", request=f"--frames {args.frames}")
    schedule = resolve_schedule(args, "linear")
    return render_spec(args, session, "loop", [args.prompt], [args.seed], args.frames, schedule, {})


def run_morph_seeds(args: argparse.Namespace, session: Session) -> int:
    _check_keyframes(args, args.seeds, "seeds")
    _check(args, session, args.frames, walk="path", request=f"--frames {args.frames}")
    if _spaced(args):
        import numpy as np

        schedule = resolve_schedule(args, "ease")
        explorer = session.explorer_for(args)
        noises = np.concatenate([explorer.noise(1, seed) for seed in args.seeds])
        encoding = explorer.encode_text(args.prompt, long_prompts=args.long_prompts)
        encodings = np.repeat(encoding, len(args.seeds), axis=0)
        return _render_adaptive(args, explorer, encodings, noises, schedule, args.noise_method)
    return render_spec(
        args,
        session,
        "morph-seeds",
        [args.prompt],
        args.seeds,
        args.frames,
        resolve_schedule(args, "ease"),
        {"noise_method": args.noise_method, **_morph_options(args).to_json()},
    )


def _render_adaptive(
    args: argparse.Namespace, explorer, encodings, noises, schedule: str, noise_method: str
) -> int:
    """Renders the keyframe path, bisected where neighbouring frames differ too much
    (--adaptive) or placed at equal steps of the change (--respace)."""
    from kerasmorph import adaptive

    out = check_output_path(args.out)
    if args.depth is not None:
        explorer.set_depth_map(args.depth)
    path = adaptive.keyframe_path(
        encodings, noises, schedule=schedule, noise_method=noise_method, morph=_morph_options(args)
    )
    sampling = {
        "metric": args.adaptive_metric,
        "num_steps": args.steps,
        "unconditional_guidance_scale": args.guidance,
        "scheduler": build_scheduler(args),
        "batch_size": args.batch_size,
        "negative_prompt": args.negative_prompt,
    }
    if args.respace:
        result = adaptive.respace(
            explorer, path, num_frames=args.frames, probe_frames=args.probe_frames, **sampling
        )
    else:
        result = adaptive.refine(
            explorer,
            path,
            threshold=args.adaptive,
            max_frames=args.max_frames,
            initial_frames=args.frames,
            **sampling,
        )
    print(write_frames(out, result.frames, args))
    figure = adaptive.plot_changes(result)
    plot = _plot_path(out)
    figure.savefig(plot)
    print(
        f"{plot}: {len(result.positions)} frames, largest change "
        f"{result.changes_before.max():.3f} -> {result.changes_after.max():.3f}"
    )
    return 0
