"""`kerasmorph generate`: text to image."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from kerasmorph.cli.arguments import SharedArguments, build_scheduler, own_arguments, positive_int
from kerasmorph.cli.checks import check_images, check_outputs, clamp_batch_size, model_inputs
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
    for path in _numbered_outputs(out, args.num_images, model_inputs(args)):
        check_outputs({"--out": path}, model_inputs(args))
    check_images(
        args,
        args.num_images,
        request=f"--num-images {args.num_images}" if args.num_images > 1 else "one image",
        fewer="fewer --num-images",
    )
    clamp_batch_size(args, session, args.num_images)
    explorer = session.explorer_for(args)
    encoding = explorer.encode_text(
        args.prompt, truncate=args.truncate, long_prompts=args.long_prompts
    )
    images = explorer.generate_image(
        encoding,
        # Default: the Explorer's batch size (at most the images), not all at once.
        batch_size=args.batch_size,
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
            export.save_frame(_numbered(out, index), image) for index, image in enumerate(images)
        ]
    for path in paths:
        print(path)
    return 0


def _numbered(out: Path, index: int) -> Path:
    """Where image `index` of several goes: OUT_000.png, OUT_001.png, ..."""
    return out.with_name(f"{out.stem}_{index:03d}{out.suffix}")


def _numbered_outputs(out: Path, num_images: int, inputs) -> list[Path]:
    """The files `generate` writes that an input could be: --out, or the numbered
    files among the inputs' names (found from the inputs, not by listing them all)."""
    if num_images == 1:
        return [out]
    pattern = re.compile(rf"{re.escape(out.stem)}_(\d{{3,}}){re.escape(out.suffix)}")
    found = []
    for path in inputs.values():
        match = path is not None and pattern.fullmatch(Path(path).name)
        if match and int(match.group(1)) < num_images:
            found.append(_numbered(out, int(match.group(1))))
    return found
