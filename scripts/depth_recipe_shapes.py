"""The depth + task-arithmetic recipe on the toys: does the merge keep layout AND style?

    python scripts/depth_recipe_shapes.py --out notes/data/issue-13

The recipe of the source write-up (stable-diffusion-2-depth plus an anime
fine-tune's task vector), with `shapes` as the base, `shapes-depth` as the depth
model and a style fine-tune of `shapes`: `shapes-outlined` (a black outline
around each shape) or `shapes-black` (the same scenes on black):

    merged = base + 0.5 (depth - base) + 0.5 (style - base)

with the depth model as the target, so its 5-channel first convolution (which
the other two do not have) is kept: the same call as

    kerasmorph merge --base shapes --add shapes-depth:0.5 --add shapes-outlined:0.5 \\
        --target shapes-depth --out merged/

Then depth2img with each model, as `scripts/depth_shapes.py` runs it: the depth
map of a square in the bottom right, "a red circle", from a blue triangle in the
top left, strength 0.8 and 1.0 (at 1.0 the layout can come only from the map
and the style only from the weights), 25 DDIM steps, guidance 7.5, 32 noises;
the recipe's 0.5 / 0.5 and plain task addition, 1.0 / 1.0, with each style.
Scored from pixels: IoU of the shape's mask with the map's foreground (layout),
outline darkness (`shapes.data.outline_darkness`: the pixels within 4 px of
the shape's edge, ~0.05 plain, ~0.6 drawn outlined), background darkness
(`shapes.data.background_darkness`, ~0 on white, ~1 on black) and red. The
style models have no depth channel, so they run img2img of the same picture:
they cannot follow the map. Style alone at half weight, `shapes + 0.5 (style -
shapes)`, is measured by text-to-image.

Writes `OUT/recipe.json`, `OUT/recipe.png` (one row per model and strength:
the picture, the depth map, 7 results) and `OUT/recipe-row.png` (the README's:
shapes-depth, shapes-outlined and the recipe at strength 1.0, half size).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NUM_NOISES = 32
STYLES = ("shapes-outlined", "shapes-black")
# The README's picture (strength 1.0): the depth model, the style model, the recipe.
README_ROWS = ("shapes-depth", "shapes-outlined", "shapes-outlined merged 0.5 / 0.5")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def score(frames, foreground) -> dict:
    from kerasmorph.shapes import data

    ious = [iou(data.shape_mask(frame), foreground) for frame in frames]
    return {
        "iou_mean": float(np.mean(ious)),
        "iou_min": float(np.min(ious)),
        "outline_mean": float(np.mean([data.outline_darkness(f) for f in frames])),
        "darkness_mean": float(np.mean([data.background_darkness(f) for f in frames])),
        "red": float(np.mean([data.measure(f).colour == "red" for f in frames])),
    }


def toy_dir(name: str) -> Path:
    """The shipped weights folder of a toy preset."""
    from kerasmorph.models import bundled_weights_dir
    from kerasmorph.presets import PRESETS

    return bundled_weights_dir(PRESETS[name])


def merge_recipe(out: Path, style: str, depth_coef: float = 0.5, style_coef: float = 0.5) -> str:
    """Writes the merged toy into `out`; returns the merge report's summary."""
    from kerasmorph import checkpoints

    # base + c_d (depth - base) + c_s (style - base), the depth model as the target.
    terms = [(style_coef, toy_dir(style)), (1.0 - depth_coef - style_coef, toy_dir("shapes"))]
    return checkpoints.merge_checkpoints(out, toy_dir("shapes-depth"), terms, depth_coef).summary()


def half_style(out: Path, style: str) -> None:
    """Writes `shapes + 0.5 (style - shapes)` into `out`."""
    from kerasmorph import checkpoints

    checkpoints.merge_checkpoints(out, toy_dir(style), [(0.5, toy_dir("shapes"))], 0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--noises", type=int, default=NUM_NOISES)
    args = parser.parse_args(argv)

    import kerasmorph
    from kerasmorph import export, plotting
    from kerasmorph.shapes import data

    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    sample = data.Sample("red", "square", 0.45, (0.7, 0.7))
    depth, foreground = data.depth_map(sample), data.coverage(sample) > 0.5
    start = data.render(data.Sample("blue", "triangle", 0.4, (0.3, 0.3)))
    results, rows, summaries = {}, [], {}
    readme_rows = [[] for _ in README_ROWS]
    grey = np.repeat((depth * 255).astype(np.uint8)[..., None], 3, axis=-1)
    with tempfile.TemporaryDirectory() as folder:
        models, half = {}, {}
        for style in STYLES:
            for depth_coef, style_coef in ((0.5, 0.5), (1.0, 1.0)):
                name = f"{style} merged {depth_coef} / {style_coef}"
                merged_dir = Path(folder) / f"{style}-{depth_coef}-{style_coef}"
                summaries[name] = merge_recipe(merged_dir, style, depth_coef, style_coef)
                summaries[name] = summaries[name].splitlines()
                models[name] = kerasmorph.Explorer(str(merged_dir), precision="auto", verbose=False)
            half_style(Path(folder) / f"{style}-half", style)
            half[style] = kerasmorph.Explorer(
                str(Path(folder) / f"{style}-half"), precision="auto", verbose=False
            )
        for name in ("shapes-depth", *STYLES):
            models[name] = kerasmorph.Explorer(name, precision="auto", verbose=False)
        noise = models["shapes-depth"].noise(args.noises, 0)
        for strength in (0.8, 1.0):
            common = dict(strength=strength, num_steps=25, diffusion_noise=noise)
            for name, explorer in models.items():
                images = [start] * args.noises
                if explorer.takes_depth:
                    frames = explorer.depth_to_image(
                        images, "a red circle", depth_map=depth, **common
                    )
                else:  # No depth channel: img2img of the same picture.
                    frames = explorer.image_to_image(images, "a red circle", **common)
                results[f"{name}, strength {strength}"] = score(frames, foreground)
                rows.append([start, grey, *frames[:7]])
                if strength == 1.0 and name in README_ROWS:
                    readme_rows[README_ROWS.index(name)] = [start, grey, *frames[:7]]
        for style, explorer in half.items():
            encoding = explorer.encode_text("a red circle")
            frames = explorer.generate_image(
                encoding, batch_size=args.noises, num_steps=25, diffusion_noise=noise
            )
            results[f"shapes + 0.5 ({style} - shapes), text-to-image"] = score(frames, foreground)
    record = {
        "recipe": "shapes + c_d (shapes-depth - shapes) + c_s (style - shapes), "
        "target shapes-depth (its 5-channel first conv kept), style in " + ", ".join(STYLES),
        "merge_reports": summaries,
        "measurements": results,
        "settings": {"num_noises": args.noises, "num_steps": 25, "guidance": 7.5},
        "seconds": round(time.perf_counter() - started, 1),
        "command": "python scripts/depth_recipe_shapes.py " + " ".join(sys.argv[1:]),
    }
    (args.out / "recipe.json").write_text(json.dumps(record, indent=2) + "\n")
    export.save_frame(args.out / "recipe.png", plotting.make_grid(sum(rows, []), 9))
    row = plotting.make_grid(sum(readme_rows, []), 9)[::2, ::2]  # Half size, for the README.
    export.save_frame(args.out / "recipe-row.png", row)
    print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
