"""The commands that start from images: `img2img`, `sweep`, `inpaint` and `morph-images`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from kerasmorph.cli.arguments import (
    SharedArguments,
    build_scheduler,
    finite_range,
    non_negative_float,
    non_negative_int,
    own_arguments,
    resolve_schedule,
    unit_float,
)
from kerasmorph.cli.checks import (
    check_image_size,
    check_images,
    check_outputs,
    check_render,
    clamp_batch_size,
    is_directory_out,
    model_inputs,
)
from kerasmorph.cli.output import IMAGE_SUFFIXES, check_image_out, check_output_path, write_frames
from kerasmorph.cli.render import render_walk
from kerasmorph.cli.session import CommandError, Session


def register(subparsers, shared: SharedArguments) -> None:
    """Adds `img2img`, `sweep`, `inpaint` and `morph-images`."""
    own = own_arguments()
    own.add_argument("image")
    own.add_argument("prompt")
    own.add_argument(
        "--strength",
        type=unit_float,
        default=0.75,
        help="how far from the image to go, in [0, 1] (0: the image, 1: text to image)",
    )
    own.add_argument("--out", required=True, help="image path (.png/.jpg/.webp)")
    subparsers.add_parser(
        "img2img",
        help="image to image with a strength",
        # One image: no --batch-size.
        parents=[own, shared.fit, *shared.generating(batch_size=False)],
    ).set_defaults(run=run_img2img)

    own = own_arguments()
    own.add_argument("image")
    own.add_argument("prompt")
    own.add_argument(
        "--param",
        choices=("strength", "guidance", "num_steps", "prompt_weight"),
        default="strength",
        help="the argument swept; prompt_weight mixes the empty prompt's encoding (0) "
        "with the prompt's (1), and alone batches its frames (--batch-size)",
    )
    own.add_argument(
        "--range",
        required=True,
        type=finite_range,
        help="start:stop:step (stop included) or a,b,c",
    )
    own.add_argument(
        "--strength", type=unit_float, default=0.75, help="img2img strength when not swept"
    )
    subparsers.add_parser(
        "sweep",
        help="vary one argument over a range with the noise fixed",
        # The values are --range's (no --schedule); a directory --out is not a
        # resumable render (no --resume, --overwrite).
        parents=[own, shared.fit, *shared.rendering(None, schedule=False, resume=False)],
    ).set_defaults(run=run_sweep)
    _register_inpaint(subparsers, shared)
    _register_morph_images(subparsers, shared)


def _register_inpaint(subparsers, shared: SharedArguments) -> None:
    own = own_arguments()
    own.add_argument("image")
    own.add_argument("mask", help="white = repaint, black = keep; any size or mode")
    own.add_argument("prompt")
    own.add_argument(
        "--out",
        required=True,
        help="the result with the original pasted outside the mask (feathered)",
    )
    own.add_argument("--raw-out", help="also write the decoded result without the paste")
    own.add_argument(
        "--feather",
        type=non_negative_float,
        default=4.0,
        help="mask edge blur radius in pixels",
    )
    subparsers.add_parser(
        "inpaint",
        help="repaint the white part of a mask",
        # One image: no --batch-size.
        parents=[own, shared.fit, *shared.generating(batch_size=False)],
    ).set_defaults(run=run_inpaint)


def _register_morph_images(subparsers, shared: SharedArguments) -> None:
    own = own_arguments()
    own.add_argument("images", nargs="+", metavar="IMAGE")
    own.add_argument("--prompts", nargs="+", required=True, help="one prompt per image")
    own.add_argument(
        "--inversion-refinements",
        type=non_negative_int,
        default=0,
        help="fixed-point iterations per inversion step (exacter, slower)",
    )
    subparsers.add_parser(
        "morph-images",
        help="morph between real images by DDIM inversion",
        # Here --guidance, also the inversion's, defaults to 1.0. The noise is
        # the images' inverted (no --seed); a directory --out is not a
        # resumable render (no --resume, --overwrite).
        parents=[own, shared.fit, *shared.rendering(30, guidance=1.0, resume=False, seed=False)],
    ).set_defaults(run=run_morph_images)


def _loaded_images(explorer, paths: Sequence[str], fit: str):
    return explorer.load_images(list(paths), fit=fit)


def _sweep_count(text: str) -> int:
    """How many values --range has, counted without listing them (0: let parse_range say)."""
    from kerasmorph import limits

    if ":" not in text:
        return len([part for part in text.split(",") if part.strip()])
    try:
        start, stop, step = (float(part) for part in text.split(":"))
    except ValueError:
        return 0
    return limits.range_count(start, stop, step)


def run_img2img(args: argparse.Namespace, session: Session) -> int:
    from kerasmorph import export

    out = check_image_out(args.out)
    check_outputs({"--out": out}, {"IMAGE": args.image, **model_inputs(args)})
    check_image_size(args)
    explorer = session.explorer_for(args)
    image = _loaded_images(explorer, [args.image], args.fit)
    frames = explorer.image_to_image(
        image,
        args.prompt,
        strength=args.strength,
        num_steps=args.steps,
        unconditional_guidance_scale=args.guidance,
        scheduler=build_scheduler(args),
        seed=args.seed,
        negative_prompt=args.negative_prompt,
    )
    print(export.save_frame(out, frames[0]))
    return 0


def run_sweep(args: argparse.Namespace, session: Session) -> int:
    from kerasmorph import plotting, sweeps

    out = check_output_path(args.out)
    directories = ("--out",) if is_directory_out(args.out) else ()
    check_outputs(
        {"--out": out}, {"IMAGE": args.image, **model_inputs(args)}, directories=directories
    )
    count = _sweep_count(args.range)
    check_images(
        args,
        count,
        request=f"--range {args.range} ({count:,} values)",
        fewer="a coarser --range (fewer values)",
        num_values=count,
    )
    values = sweeps.check_values(args.param, sweeps.parse_range(args.range))
    if args.batch_size is not None and args.param != "prompt_weight":
        raise CommandError(
            "--batch-size batches the frames of a --param prompt_weight sweep only (the "
            "other params change the sampler's settings per frame). Received: "
            f"--param {args.param} --batch-size {args.batch_size}"
        )
    clamp_batch_size(args, session, count)
    explorer = session.explorer_for(args)
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
        scheduler=build_scheduler(args),
        strength=args.strength,
        negative_prompt=args.negative_prompt,
        batch_size=args.batch_size,
    )
    if out.suffix.lower() in IMAGE_SUFFIXES:
        print(plotting.save_grid(out, result.frames, labels=list(result.labels)))
    else:
        print(write_frames(out, result.frames, args))
    return 0


def run_inpaint(args: argparse.Namespace, session: Session) -> int:
    from kerasmorph import export

    out = check_image_out(args.out)
    raw = check_image_out(args.raw_out) if args.raw_out else None
    inputs = {"IMAGE": args.image, "MASK": args.mask, **model_inputs(args)}
    check_outputs({"--out": out, "--raw-out": raw}, inputs)
    check_image_size(args)
    explorer = session.explorer_for(args)
    image = _loaded_images(explorer, [args.image], args.fit)
    result = explorer.inpaint(
        image,
        args.mask,
        args.prompt,
        num_steps=args.steps,
        unconditional_guidance_scale=args.guidance,
        scheduler=build_scheduler(args),
        seed=args.seed,
        feather_radius=args.feather,
        negative_prompt=args.negative_prompt,
    )
    print(export.save_frame(out, result.composite[0]))
    if raw is not None:
        print(export.save_frame(raw, result.images[0]))
    return 0


def run_morph_images(args: argparse.Namespace, session: Session) -> int:
    from kerasmorph import walks

    if len(args.images) < 2:
        raise CommandError(f"morph-images needs 2+ images. Received: {len(args.images)}")
    if len(args.prompts) != len(args.images):
        raise CommandError(
            f"--prompts needs one prompt per image. Received: {len(args.images)} images "
            f"and {len(args.prompts)} prompts"
        )
    schedule = resolve_schedule(args, "linear")
    if args.scheduler != "ddim":
        raise CommandError(
            "morph-images inverts the images with DDIM and must render with it to start "
            f"and end on them: use --scheduler ddim. Received: --scheduler {args.scheduler}"
        )
    inputs = {f"IMAGE #{index}": path for index, path in enumerate(args.images, 1)}
    directories = ("--out",) if is_directory_out(args.out) else ()
    check_outputs({"--out": args.out}, {**inputs, **model_inputs(args)}, directories=directories)
    check_render(args, args.frames, walk="path", request=f"--frames {args.frames}")
    clamp_batch_size(args, session, args.frames)

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

    return render_walk(args, session, build)
