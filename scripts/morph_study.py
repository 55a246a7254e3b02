"""The morph-quality study of the README (issue 15): every smoothing method vs plain lerp.

    python scripts/morph_study.py [--out notes/data/issue-15-study.json]
        [--picture notes/data/issue-15-worst-pair.png] [--pairs 8] [--steps 20]

On the `shapes` model (128², DDIM, guidance 7.5, seed 0): 8 prompt pairs ×
17 frames under each method of `METHODS`, and 8 seed pairs of one prompt
under each noise mix of `NOISE_METHODS`. Each walk is measured with
`kerasmorph.metrics.evaluate_frames` (pixel L2 and 1 − SSIM distances,
presence relative to the endpoints). Prints one row per method (means over
the pairs, and how many pairs keep presence >= 0.5) and writes every number
to `--out`, plus a picture of the baseline's worst pair under every method.
Deterministic: the same command gives the same numbers on the same machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

NUM_FRAMES = 17
PAIRS = (
    ("a red circle", "a blue square"),  # Both (the README's morph).
    ("a red circle", "a blue circle"),  # Colour.
    ("a green square", "a yellow square"),  # Colour.
    ("a red circle", "a red square"),  # Shape.
    ("a blue triangle", "a blue circle"),  # Shape.
    ("a yellow triangle", "a green square"),  # Both.
    ("a red circle on the left", "a red circle on the right"),  # Position.
    ("a small blue square in the top left", "a large green triangle in the bottom right"),
)
# name -> prompt_walk keywords (schedule, text_interpolation, middle_guidance_scale).
METHODS: dict[str, dict] = {
    "embedding (baseline)": {},
    "embedding + sinh": {"schedule": "sinh"},
    "embedding + beta": {"schedule": "beta"},
    "middle guidance 3": {"middle_guidance_scale": 3.0},
    "middle guidance 12": {"middle_guidance_scale": 12.0},
    "attention": {"text_interpolation": "attention"},
    "attention + beta": {"text_interpolation": "attention", "schedule": "beta"},
    "attention + middle guidance 3": {
        "text_interpolation": "attention",
        "middle_guidance_scale": 3.0,
    },
    "attention + middle guidance 12": {
        "text_interpolation": "attention",
        "middle_guidance_scale": 12.0,
    },
    "switch": {"text_interpolation": "switch"},
    "switch (width 0.2)": {"text_interpolation": "switch", "switch_width": 0.2},
    "switch + middle guidance 3": {"text_interpolation": "switch", "middle_guidance_scale": 3.0},
    # Bisection by pixel L2 (`kerasmorph.adaptive.refine`): 5 even frames, all 4 gaps
    # bisected, then twice the 4 largest changes: 17 frames in all.
    "adaptive (l2)": {"adaptive": "embedding"},
    "attention + adaptive (l2)": {"adaptive": "attention"},
    # Equal pixel-L2 steps (`kerasmorph.adaptive.respace`, DiffMorpher's reschedule):
    # a uniform probe of 33 frames, then 17 frames at equal accumulated distance.
    "respaced (l2)": {"respace": {}},
    "switch + respaced (l2)": {"respace": {"text_interpolation": "switch"}},
}
NOISE_PROMPT = "a red circle"
NOISE_METHODS = ("lerp", "slerp", "variance_preserving", "slerp + adain", "lerp + adain")


def _summary(evaluations: list[dict]) -> dict:
    """Means over pairs of the statistics the targets name."""
    l2 = [e["distances"]["l2"] for e in evaluations]
    ssim = [e["distances"]["ssim"] for e in evaluations]
    minima = [e["presence"]["minimum"] for e in evaluations]
    return {
        "istd_l2": float(np.mean([s["istd"] for s in l2])),
        "pdv_l2": float(np.mean([s["pdv"] for s in l2])),
        "smoothness_l2": float(np.mean([s["smoothness"] for s in l2])),
        "largest_jump_l2": float(np.mean([s["largest_jump"] for s in l2])),
        "pdv_ssim": float(np.mean([s["pdv"] for s in ssim])),
        "largest_jump_ssim": float(np.mean([s["largest_jump"] for s in ssim])),
        "path_length_l2": float(np.mean([s["path_length"] for s in l2])),
        "presence_minimum_mean": float(np.mean(minima)),
        "presence_minimum_worst": float(np.min(minima)),
        "pairs_presence_at_least_half": int(sum(m >= 0.5 for m in minima)),
    }


def _prompt_frames(explorer, pair: tuple[str, str], method: dict, sampling: dict) -> np.ndarray:
    from kerasmorph import MorphOptions, adaptive, walks

    if "adaptive" not in method and "respace" not in method:
        walk = walks.prompt_walk(explorer, pair, NUM_FRAMES, seed=0, **method)
        return np.stack(list(explorer.render(walk, batch_size=NUM_FRAMES, **sampling)))
    morph = (
        MorphOptions(**method["respace"])
        if "respace" in method
        else MorphOptions(text_interpolation=method["adaptive"])
    )
    path = adaptive.keyframe_path(
        explorer.encode_text(list(pair)), np.repeat(explorer.noise(1, 0), 2, axis=0), morph=morph
    )
    if "respace" in method:
        result = adaptive.respace(
            explorer, path, num_frames=NUM_FRAMES, metric="l2", batch_size=NUM_FRAMES, **sampling
        )
        return result.frames
    result = adaptive.refine(
        explorer,
        path,
        threshold=1e-6,  # Spend the whole budget.
        max_frames=NUM_FRAMES,
        initial_frames=5,
        metric="l2",
        batch_size=4,
        **sampling,
    )
    return result.frames


def _noise_walk(explorer, seeds: tuple[int, int], method: str):
    from kerasmorph import interpolation, noise_statistics, walks

    mix, _, correction = method.partition(" + ")
    start, end = explorer.noise(1, seeds[0])[0], explorer.noise(1, seeds[1])[0]
    weights = np.linspace(0.0, 1.0, NUM_FRAMES)
    if mix == "lerp":
        noises = interpolation.lerp(start, end, weights)
    else:
        noises = interpolation.interpolate_noise(start, end, weights, method=mix)
    if correction == "adain":
        noises = noise_statistics.adain(noises, start, end, weights)
    encodings = np.repeat(explorer.encode_text(NOISE_PROMPT), NUM_FRAMES, axis=0)
    return walks.Walk.from_arrays(encodings, noises)


def _picture(rows: dict[str, np.ndarray], path: str) -> None:
    """One row of frames per method, labelled, as a PNG."""
    from PIL import Image, ImageDraw

    names = list(rows)
    height, width = rows[names[0]].shape[1:3]
    scale = 0.5
    cell_h, cell_w = int(height * scale), int(width * scale)
    label = 190
    sheet = Image.new("RGB", (label + cell_w * NUM_FRAMES, cell_h * len(names)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, name in enumerate(names):
        draw.text((4, row * cell_h + cell_h // 2 - 6), name, fill="black")
        for column, frame in enumerate(rows[name]):
            thumb = Image.fromarray(frame).resize((cell_w, cell_h), Image.BILINEAR)
            sheet.paste(thumb, (label + column * cell_w, row * cell_h))
    from kerasmorph.export import save_frame

    save_frame(path, np.asarray(sheet))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="notes/data/issue-15-study.json")
    parser.add_argument("--picture", default="notes/data/issue-15-worst-pair.png")
    parser.add_argument("--pairs", type=int, default=len(PAIRS), help="first N prompt pairs")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = parser.parse_args(argv)

    import kerasmorph
    from kerasmorph import metrics
    from kerasmorph.export import save_json

    explorer = kerasmorph.Explorer("shapes", verbose=False)
    sampling = {"num_steps": args.steps, "unconditional_guidance_scale": args.guidance}
    pairs = PAIRS[: args.pairs]
    results: dict = {"settings": {**sampling, "frames": NUM_FRAMES, "seed": 0}, "prompt": {}}
    frames_of: dict[str, list[np.ndarray]] = {}
    for name in args.methods:
        started = time.perf_counter()
        evaluations, frames_of[name] = [], []
        for pair in pairs:
            frames = _prompt_frames(explorer, pair, METHODS[name], sampling)
            frames_of[name].append(frames)
            evaluations.append(metrics.evaluate_frames(frames))
        results["prompt"][name] = {
            "summary": _summary(evaluations),
            "pairs": {" -> ".join(pair): e for pair, e in zip(pairs, evaluations)},
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(name, json.dumps(results["prompt"][name]["summary"]), file=sys.stderr)

    results["noise"] = {}
    seed_pairs = [(2 * k + 1, 2 * k + 2) for k in range(len(pairs))]
    for method in NOISE_METHODS:
        evaluations = []
        for seeds in seed_pairs:
            walk = _noise_walk(explorer, seeds, method)
            frames = np.stack(list(explorer.render(walk, batch_size=NUM_FRAMES, **sampling)))
            evaluations.append(metrics.evaluate_frames(frames))
        results["noise"][method] = {"summary": _summary(evaluations)}
        print(method, json.dumps(results["noise"][method]["summary"]), file=sys.stderr)

    baseline = next(iter(results["prompt"].values()))["pairs"]
    worst = int(np.argmin([e["presence"]["minimum"] for e in baseline.values()]))
    results["worst_pair"] = " -> ".join(pairs[worst])
    _picture({name: frames[worst] for name, frames in frames_of.items()}, args.picture)
    save_json(args.out, results)
    _print_table(results)
    return 0


def _print_table(results: dict) -> None:
    columns = (
        ("ISTD", "istd_l2", 4),
        ("PDV", "pdv_l2", 6),
        ("smooth", "smoothness_l2", 3),
        ("max jump", "largest_jump_l2", 3),
        ("min presence", "presence_minimum_mean", 2),
        ("worst", "presence_minimum_worst", 2),
        ("pairs ≥ 0.5", "pairs_presence_at_least_half", 0),
    )
    for section in ("prompt", "noise"):
        print(f"\n| {section} walk | " + " | ".join(c[0] for c in columns) + " |")
        print("|---" * (len(columns) + 1) + "|")
        for name, result in results[section].items():
            summary = result["summary"]
            cells = [f"{summary[key]:.{digits}f}" for _, key, digits in columns]
            print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\nworst pair of the baseline: {results['worst_pair']}")


if __name__ == "__main__":
    raise SystemExit(main())
