"""Textual inversion on `shapes`: a token for "a large green circle in the top left".

    python scripts/textual_inversion_shapes.py --out notes/data/issue-14 [--steps 400]

Draws `--num-images` concept images with the shapes data generator (green
circles of 60–70% of the width, centred in the top-left 35% of the image),
trains `<tl-circle>` from the neutral word "picture" with
`kerasmorph.training.train_embedding` (no flip: the concept has a side), and
measures `"a <token>"` over 32 seeds (25 DDIM steps, guidance 7.5) with the
shapes pixel measurements, before (the initializer word, "a picture") and after:
colour, shape, position (centroid in the top-left third) and size ("large":
the mask wider than 58% of the image) accuracy. Writes `OUT/results.json`,
`OUT/before-after.png` (before row, after row), the embedding
`OUT/tl-circle.safetensors` and its record `OUT/tl-circle.json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

CONCEPT = "a large green circle in the top left"
TOKEN = "<tl-circle>"
INITIALIZER = "picture"
TEMPLATES = ("a {}", "a {} on a white background", "a picture of a {}")
NUM_SEEDS = 32


def concept_images(num: int, seed: int) -> np.ndarray:
    """uint8 (num, 128, 128, 3): green circles, 60–70% wide, centred in the top-left 35%."""
    from kerasmorph.shapes import data

    return data.concept_batch(
        np.random.default_rng(seed), num, colour="green", shape="circle",
        size=(0.6, 0.7), center=(0.0, 0.35),
    )  # fmt: skip


def scores(images: np.ndarray) -> dict[str, float]:
    """Accuracy of colour (green), shape (circle), position (top left) and size (large)."""
    from kerasmorph.shapes import data

    colour = shape = position = size = 0
    centroids = []
    for image in images:
        measured = data.measure(image)
        colour += measured.colour == "green"
        shape += measured.shape == "circle"
        if measured.centroid is not None:
            position += measured.centroid[0] < 0.4 and measured.centroid[1] < 0.4
            centroids.append(measured.centroid)
            columns = np.nonzero(data.shape_mask(image).any(0))[0]
            size += (columns.max() - columns.min() + 1) / image.shape[1] > data.LARGE_ABOVE
    count = len(images)
    return {
        "colour": colour / count,
        "shape": shape / count,
        "position": position / count,
        "size": size / count,
        # Mean (x, y) of the shapes found; the concept images' is about (0.34, 0.34).
        "centroid_mean": [round(float(v), 3) for v in np.mean(centroids, axis=0)]
        if centroids
        else None,
    }


def generate(explorer, prompt: str) -> np.ndarray:
    return explorer.text_to_image(prompt, batch_size=NUM_SEEDS, num_steps=25, seed=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=5e-3)
    parser.add_argument("--num-images", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from kerasmorph import export, plotting, training
    from kerasmorph.explorer import Explorer

    args.out.mkdir(parents=True, exist_ok=True)
    explorer = Explorer("shapes", precision="auto", verbose=False)
    images = concept_images(args.num_images, args.seed)
    export.save_frame(args.out / "concept.png", plotting.make_grid(images, 6))
    before_images = generate(explorer, f"a {INITIALIZER}")
    concept_prompt_images = generate(explorer, CONCEPT)
    started = time.perf_counter()
    result = training.train_embedding(
        explorer,
        images,
        TOKEN,
        initializer_token=INITIALIZER,
        templates=TEMPLATES,
        num_steps=args.steps,
        batch_size=args.batch_size,
        gradient_accumulation=1,
        learning_rate=args.learning_rate,
        flip=0.0,
        seed=args.seed,
        out=args.out / "tl-circle.safetensors",
        checkpoint_every=max(1, args.steps // 4),
        verbose=True,
    )
    seconds = time.perf_counter() - started
    after_images = generate(explorer, f"a {TOKEN}")
    results = {
        "concept": CONCEPT,
        "token": TOKEN,
        "initializer": INITIALIZER,
        "templates": list(TEMPLATES),
        "num_images": args.num_images,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "precision": explorer.precision_plan.diffusion_model,
        "training_seconds": round(seconds, 1),
        "loss_first_50": float(np.mean(result.losses[:50])),
        "loss_last_50": float(np.mean(result.losses[-50:])),
        "vector_change": float(np.linalg.norm(result.embedding.vectors - result.initial_vectors)),
        "initial_norm": float(np.linalg.norm(result.initial_vectors)),
        "before": scores(before_images),
        "after": scores(after_images),
        "concept_caption": scores(concept_prompt_images),
        "training_images": scores(images),
        "num_seeds": NUM_SEEDS,
        "command": "python scripts/textual_inversion_shapes.py " + " ".join(sys.argv[1:]),
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    picture = plotting.make_grid(np.concatenate([before_images[:8], after_images[:8]]), 8)
    export.save_frame(args.out / "before-after.png", picture)
    print(json.dumps({k: results[k] for k in ("before", "after", "concept_caption")}, indent=1))
    print(f"training: {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
