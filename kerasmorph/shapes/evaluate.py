"""Measures how well the `shapes` model draws what it is asked to.

    python -m kerasmorph.shapes.evaluate [--weights DIR] [--seeds 32] [--guidance 1 7.5]

For each of the 12 prompts "a {colour} {shape}" and each of `--seeds` noise
seeds, it generates a 128×128 image with DDIM (`--steps`, default 20) and reads
its colour and shape with `kerasmorph.shapes.data.measure` (dominant hue of
the saturated pixels; fill ratio of their bounding box). Every prompt uses the
same noises (paired comparison). It prints the colour and shape accuracy per
guidance scale, overall, per colour and per shape, as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import numpy as np

from kerasmorph.shapes import data as data_lib

PROMPTS: tuple[tuple[str, str], ...] = tuple(
    (colour, shape) for shape in data_lib.SHAPES for colour in data_lib.COLOURS
)


def prompt_text(colour: str, shape: str) -> str:
    """The evaluation prompt, e.g. "a red circle"."""
    return f"a {colour} {shape}"


def generate_grid(
    explorer,
    num_seeds: int,
    *,
    unconditional_guidance_scale: float = 7.5,
    num_steps: int = 20,
    batch_size: int = 48,
    prompts: Sequence[tuple[str, str]] = PROMPTS,
) -> np.ndarray:
    """Generates `len(prompts) × num_seeds` images, prompt-major.

    Image `p · num_seeds + s` is prompt p with noise `explorer.noise(num_seeds, 0)[s]`.

    Returns:
        uint8 (P · S, H, W, 3).
    """
    encodings = explorer.encode_text([prompt_text(c, s) for c, s in prompts])
    noise = explorer.noise(num_seeds, 0)
    return explorer.generate_image(
        np.repeat(encodings, num_seeds, axis=0),
        diffusion_noise=np.tile(noise, (len(prompts), 1, 1, 1)),
        num_steps=num_steps,
        unconditional_guidance_scale=unconditional_guidance_scale,
        batch_size=batch_size,
    )


def score(images: np.ndarray, num_seeds: int, prompts: Sequence[tuple[str, str]] = PROMPTS) -> dict:
    """Colour and shape accuracy of a `generate_grid` result, overall and per attribute."""
    colours = [c for c, _ in prompts for _ in range(num_seeds)]
    shapes = [s for _, s in prompts for _ in range(num_seeds)]
    measured = [data_lib.measure(image) for image in images]
    colour_right = np.asarray([m.colour == c for m, c in zip(measured, colours)])
    shape_right = np.asarray([m.shape == s for m, s in zip(measured, shapes)])
    report = {
        "colour": float(colour_right.mean()),
        "shape": float(shape_right.mean()),
        "empty": float(np.mean([m.colour is None for m in measured])),
        "num_images": len(images),
    }
    # Per attribute, for the attributes the prompts ask for (a subset of PROMPTS may omit some).
    for name in data_lib.COLOURS:
        rows = np.asarray([c == name for c in colours])
        if rows.any():
            report[f"colour[{name}]"] = float(colour_right[rows].mean())
    for name in data_lib.SHAPES:
        rows = np.asarray([s == name for s in shapes])
        if rows.any():
            report[f"shape[{name}]"] = float(shape_right[rows].mean())
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kerasmorph.shapes.evaluate",
        description="Prompt accuracy of the kerasmorph `shapes` model.",
    )
    parser.add_argument(
        "--weights", help="a training output directory (default: the shipped weights)"
    )
    parser.add_argument("--seeds", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.0, 7.5])
    parser.add_argument("--batch-size", type=int, default=48)
    parser.add_argument("--save", help="write the images of the last guidance as a PNG grid")
    args = parser.parse_args(argv)
    if args.weights:
        from kerasmorph.shapes import pretrained

        os.environ[pretrained.WEIGHTS_ENV] = args.weights
    import kerasmorph

    explorer = kerasmorph.Explorer("shapes", verbose=False)
    results = {}
    for guidance in args.guidance:
        images = generate_grid(
            explorer,
            args.seeds,
            unconditional_guidance_scale=guidance,
            num_steps=args.steps,
            batch_size=args.batch_size,
        )
        results[str(guidance)] = score(images, args.seeds)
        print(json.dumps({"guidance": guidance, **results[str(guidance)]}), flush=True)
    if args.save:
        from PIL import Image

        rows = images.reshape(len(PROMPTS), args.seeds, *images.shape[1:])[:, :16]
        grid = np.concatenate([np.concatenate(list(row), axis=1) for row in rows], axis=0)
        Image.fromarray(grid).save(args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
