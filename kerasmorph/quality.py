"""Quality per step of every scheduler: distance to a converged reference, and prompt accuracy.

    python -m kerasmorph.quality --model shapes --steps 5 10 20 30 50 --json quality.json
    python -m kerasmorph.quality --model sd1-random --seeds 2 --prompts 1 --batch-size 2 \
        --reference sd1-reference.npy --json quality-sd1.json    # full-size, random weights

For each scheduler and step count it denoises the same noises and prompts as a
reference run — DDIM at `--reference-steps` (1000) steps, guidance 7.5 — and
reports the mean relative L2 distance of the final latents from the reference's,
`‖x − x_ref‖ / ‖x_ref‖` (the reference is the image each noise converges to, so
the distance says how far a short run is from it). On `shapes` it also decodes
the images and reports the colour and shape accuracy of
`kerasmorph.shapes.evaluate` (12 prompts "a {colour} {shape}"). `sd1-random`
is the full-size KerasCV sd1 architecture with random weights
(`download_weights=False`) at 128×128: no image quality to read, but the same
convergence question on the real UNet's size. It prints one JSON line per
(scheduler, steps) and, with `--json`, writes them all.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

import numpy as np

STEP_COUNTS = (5, 10, 20, 30, 50)
GUIDANCE = 7.5


def build_explorer(model: str):
    """The Explorer to measure: `shapes`, or the full-size sd1 architecture with random weights."""
    import kerasmorph

    if model != "sd1-random":
        return kerasmorph.Explorer(model, verbose=False)
    from kerasmorph import models, presets
    from kerasmorph.backend import keras_module

    keras_module().utils.set_random_seed(0)  # Random weights, the same every run.
    preset = presets.get_preset("sd1")
    components = {
        name: models.build_component(preset, name, 128, 128, seed=0)
        for name in ("text_encoder", "diffusion_model", "decoder")
    }
    return kerasmorph.Explorer(
        "sd1", img_height=128, img_width=128, components=components, verbose=False
    )


def prompt_grid(explorer, num_prompts: int, num_seeds: int) -> tuple[np.ndarray, np.ndarray, list]:
    """Encodings and noises of `num_prompts × num_seeds` samples, prompt-major."""
    from kerasmorph.shapes import evaluate

    prompts = list(evaluate.PROMPTS)[:num_prompts]
    encodings = explorer.encode_text([evaluate.prompt_text(c, s) for c, s in prompts])
    noise = explorer.noise(num_seeds, 0)
    return (
        np.repeat(encodings, num_seeds, axis=0),
        np.tile(noise, (len(prompts), 1, 1, 1)),
        prompts,
    )


def relative_distance(latents: np.ndarray, reference: np.ndarray) -> float:
    """Mean over samples of ‖x − x_ref‖ / ‖x_ref‖."""
    axes = tuple(range(1, latents.ndim))
    difference = np.sqrt(((latents - reference) ** 2).sum(axes))
    return float(np.mean(difference / np.sqrt((reference**2).sum(axes))))


def measure(
    explorer,
    scheduler: str,
    num_steps: int,
    encodings: np.ndarray,
    noise: np.ndarray,
    reference: np.ndarray,
    prompts: Sequence | None,
    num_seeds: int,
    batch_size: int,
) -> dict:
    """One row: the distance to the reference (and accuracy when `prompts` is given)."""
    start = time.perf_counter()
    latents = explorer.denoise(
        noise,
        encodings,
        num_steps=num_steps,
        unconditional_guidance_scale=GUIDANCE,
        batch_size=batch_size,
        scheduler=scheduler,
    )
    row = {
        "scheduler": scheduler,
        "steps": num_steps,
        "distance": relative_distance(latents, reference),
        "seconds": time.perf_counter() - start,
    }
    if prompts is not None:
        from kerasmorph.shapes import evaluate

        images = explorer.decode(latents, batch_size=batch_size)
        scores = evaluate.score(images, num_seeds, prompts)
        row.update(colour=scores["colour"], shape=scores["shape"])
    return row


def reference_latents(explorer, args, encodings: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """DDIM at `args.reference_steps` from `noise`, or the saved `args.reference` file."""
    if args.reference and os.path.exists(args.reference):
        reference = np.load(args.reference)
        if reference.shape != noise.shape:
            raise ValueError(
                f"{args.reference} holds latents of shape {reference.shape}; this run's "
                f"reference has shape {noise.shape} (other --model, --prompts or --seeds?)"
            )
        return reference
    reference = explorer.denoise(
        noise,
        encodings,
        num_steps=args.reference_steps,
        unconditional_guidance_scale=GUIDANCE,
        batch_size=args.batch_size,
        scheduler="ddim",
    )
    if args.reference:
        from kerasmorph.atomic import atomic_path

        with atomic_path(args.reference) as temporary, open(temporary, "wb") as handle:
            np.save(handle, reference)
    return reference


def main(argv: Sequence[str] | None = None) -> int:
    from kerasmorph import schedulers

    parser = argparse.ArgumentParser(
        prog="python -m kerasmorph.quality", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model", default="shapes", help="a preset, or sd1-random")
    parser.add_argument("--schedulers", nargs="+", default=sorted(schedulers.SCHEDULERS))
    parser.add_argument("--steps", type=int, nargs="+", default=list(STEP_COUNTS))
    parser.add_argument("--reference-steps", type=int, default=1000)
    parser.add_argument("--prompts", type=int, default=12, help="prompts (of the 12)")
    parser.add_argument("--seeds", type=int, default=4, help="noises per prompt")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--json", help="write every row to this file")
    parser.add_argument(
        "--reference",
        metavar="NPY",
        help="the reference's final latents: loaded when the file exists (its shape is "
        "checked), else computed and saved there (sd1-random's takes ~1 h on 2 cores)",
    )
    args = parser.parse_args(argv)
    explorer = build_explorer(args.model)
    encodings, noise, prompts = prompt_grid(explorer, args.prompts, args.seeds)
    reference = reference_latents(explorer, args, encodings, noise)
    scored = prompts if args.model == "shapes" else None
    rows = []
    for name in args.schedulers:
        for num_steps in args.steps:
            row = measure(
                explorer,
                name,
                num_steps,
                encodings,
                noise,
                reference,
                scored,
                args.seeds,
                args.batch_size,
            )
            rows.append({"model": args.model, **row})
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        from kerasmorph import export

        export.save_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
