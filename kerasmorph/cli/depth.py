"""`kerasmorph depth2img`: depth-to-image with a depth model (`Explorer.depth_to_image`)."""

from __future__ import annotations

import argparse

from kerasmorph.cli.arguments import SharedArguments, build_scheduler, own_arguments, unit_float
from kerasmorph.cli.checks import check_outputs, model_inputs
from kerasmorph.cli.output import check_image_out
from kerasmorph.cli.session import CommandError, Session


def register(subparsers, shared: SharedArguments) -> None:
    """Adds `depth2img`."""
    own = own_arguments()
    own.add_argument("image")
    own.add_argument("prompt")
    own.add_argument(
        "--depth",
        metavar="DEPTH",
        help="the depth map: an 8/16-bit greyscale PNG/TIFF or .npy, larger values nearer "
        "(default: estimated from IMAGE by --depth-estimator)",
    )
    own.add_argument(
        "--depth-estimator",
        metavar="DIR",
        help="without --depth: a local KerasHub DepthAnything preset folder that estimates the "
        "map from IMAGE (default $KERASMORPH_DEPTH_ESTIMATOR; never downloaded; needs "
        "kerasmorph[depth])",
    )
    own.add_argument(
        "--strength",
        type=unit_float,
        default=0.8,
        help="how far from the image to go, in [0, 1] (diffusers' depth2img default)",
    )
    own.add_argument("--out", required=True, help="image path (.png/.jpg/.webp)")
    own.add_argument(
        "--save-depth", metavar="FILE.png", help="write the map the UNet saw (16-bit grey PNG)"
    )
    subparsers.add_parser(
        "depth2img",
        help="depth to image with a depth model (--model shapes-depth, or SD 2 depth)",
        parents=[own, shared.fit, *shared.generating(batch_size=False)],
    ).set_defaults(run=run_depth2img)


def run_depth2img(args: argparse.Namespace, session: Session) -> int:
    from kerasmorph import export
    from kerasmorph.explorer.depth import depth_image

    out = check_image_out(args.out)
    outputs = {"--out": out, "--save-depth": args.save_depth}
    check_outputs(outputs, {"IMAGE": args.image, **model_inputs(args)})
    if args.save_depth is not None and not args.save_depth.lower().endswith(".png"):
        raise CommandError(f"--save-depth writes a 16-bit PNG. Received: {args.save_depth!r}")
    explorer = session.explorer_for(args)
    images = explorer.load_images(args.image, fit=args.fit)
    if len(images) != 1:
        raise CommandError(f"depth2img takes one image. Received: {len(images)}")
    frames = explorer.depth_to_image(
        images,
        args.prompt,
        depth_map=args.depth,
        strength=args.strength,
        num_steps=args.steps,
        unconditional_guidance_scale=args.guidance,
        scheduler=build_scheduler(args),
        seed=args.seed,
        negative_prompt=args.negative_prompt,
        depth_estimator=args.depth_estimator,
    )
    print(export.save_frame(out, frames[0]))
    if args.save_depth is not None:
        from kerasmorph import models

        depth = models.depth.stored_depth_map(explorer.diffusion_model)  # The map the UNet saw.
        size = (explorer.img_height, explorer.img_width)
        print(export.save_grey16(args.save_depth, depth_image(depth, size)))
    return 0
