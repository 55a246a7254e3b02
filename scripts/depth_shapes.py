"""Depth-to-image on the toy: does `shapes-depth` follow a depth map? (issue 13's measurements)

    python scripts/depth_shapes.py --out notes/data/issue-13

1. depth2img: the depth map of a square in the bottom right (centre (0.7, 0.7),
   45% wide), prompt "a red circle", from a picture of a blue triangle in the top
   left, strength 0.8, 25 DDIM steps, guidance 7.5, 32 noises. Scored from
   pixels: IoU of the generated shape's mask with the depth map's foreground,
   colour accuracy (red). Baseline: `shapes` img2img of the same picture and
   prompt (no depth).
2. A depth-locked prompt walk ("a red circle" -> "a blue square", 9 frames, seed
   0) with the depth of a square at (0.35, 0.6): IoU of each frame's mask with
   the foreground and between neighbouring frames, against the same walk on
   `shapes` (no depth).

Writes `OUT/results.json` and `OUT/depth2img.png` (row 1: start picture, depth
map, 6 depth2img results; row 2: the `shapes` img2img baseline; row 3: the
depth-locked walk).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

NUM_NOISES = 32


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def square(center, size):
    from kerasmorph.shapes import data

    sample = data.Sample("red", "square", size, center)
    return data.depth_map(sample), data.coverage(sample) > 0.5


def score(frames, foreground) -> dict:
    from kerasmorph.shapes import data

    masks = [data.shape_mask(frame) for frame in frames]
    ious = [iou(mask, foreground) for mask in masks]
    return {
        "iou_mean": float(np.mean(ious)),
        "iou_min": float(np.min(ious)),
        "red": float(np.mean([data.measure(f).colour == "red" for f in frames])),
        "neighbour_iou_min": float(min(iou(a, b) for a, b in zip(masks, masks[1:]))),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)

    import kerasmorph
    from kerasmorph import export, plotting, walks
    from kerasmorph.shapes import data

    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    depth_model = kerasmorph.Explorer("shapes-depth", precision="auto", verbose=False)
    plain = kerasmorph.Explorer("shapes", precision="auto", verbose=False)
    start = data.render(data.Sample("blue", "triangle", 0.4, (0.3, 0.3)))
    depth, foreground = square((0.7, 0.7), 0.45)
    noise = depth_model.noise(NUM_NOISES, 0)
    common = dict(strength=0.8, num_steps=25, diffusion_noise=noise)
    depth_frames = depth_model.depth_to_image(
        [start] * NUM_NOISES, "a red circle", depth_map=depth, **common
    )
    plain_frames = plain.image_to_image([start] * NUM_NOISES, "a red circle", **common)

    walk_depth, walk_foreground = square((0.35, 0.6), 0.4)
    depth_model.set_depth_map(walk_depth)
    prompts = ["a red circle", "a blue square"]
    locked = walks.interpolate(depth_model, prompts, 9, num_steps=25, seed=0)
    free = walks.interpolate(plain, prompts, 9, num_steps=25, seed=0)
    results = {
        "depth2img": {
            "shapes-depth": score(depth_frames, foreground),
            "shapes img2img (no depth)": score(plain_frames, foreground),
        },
        "walk": {
            "shapes-depth, depth-locked": score(locked, walk_foreground),
            "shapes (no depth)": score(free, walk_foreground),
        },
        "settings": {
            "num_noises": NUM_NOISES,
            "strength": 0.8,
            "num_steps": 25,
            "guidance": 7.5,
            "precision": depth_model.precision_plan.diffusion_model,
        },
        "seconds": round(time.perf_counter() - started, 1),
        "command": "python scripts/depth_shapes.py " + " ".join(sys.argv[1:]),
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    grey = np.repeat((depth * 255).astype(np.uint8)[..., None], 3, axis=-1)
    rows = [
        [start, grey, *depth_frames[:7]],
        [start, grey, *plain_frames[:7]],
        list(locked),
    ]
    export.save_frame(args.out / "depth2img.png", plotting.make_grid(sum(rows, []), 9))
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
