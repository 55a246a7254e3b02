"""`kerasmorph generate`: text to image."""

from __future__ import annotations

import argparse

from kerasmorph.cli.arguments import SharedArguments, build_scheduler, own_arguments, positive_int
from kerasmorph.cli.output import check_image_out
from kerasmorph.cli.session import Session


def register(subparsers, shared: SharedArguments) -> None:
    """Adds `generate`."""
    own = own_arguments()
    own.add_argument("prompt")
    own.add_argument("--out", required=True, help="image path (.png/.jpg/.webp)")
    own.add_argument(
        "--num-images",
        type=positive_int,
        default=1,
        help="images from seeds' streams 0..N-1 (written as OUT_000.png, ...)",
    )
    own.add_argument("--truncate", action="store_true", help="cut prompts over 77 tokens (warns)")
    generate = subparsers.add_parser(
        "generate", help="text to image", parents=[own, *shared.generating()]
    )
    generate.set_defaults(run=run_generate)


def run_generate(args: argparse.Namespace, session: Session) -> int:
    from kerasmorph import export

    out = check_image_out(args.out)
    explorer = session.explorer_for(args)
    encoding = explorer.encode_text(
        args.prompt, truncate=args.truncate, long_prompts=args.long_prompts
    )
    images = explorer.generate_image(
        encoding,
        batch_size=args.batch_size or args.num_images,
        num_steps=args.steps,
        unconditional_guidance_scale=args.guidance,
        scheduler=build_scheduler(args),
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
