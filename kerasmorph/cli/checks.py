"""A command's up-front checks, before any model is built: outputs that are not
inputs (`kerasmorph.paths`) and requests that fit this machine (`kerasmorph.limits`).

Every run function calls them first, so `--out in.png` or `--frames 1000000000`
is refused in milliseconds with one line (exit status 2), not after minutes of
work or with a MemoryError. The estimates need the model's architecture and
image size, read here from the flags without building anything: a preset's
name, a converted folder's manifest, else the least costly model
(`kerasmorph.limits.LOWEST_COST`, a lower bound for any).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

from kerasmorph import limits
from kerasmorph.cli.output import IMAGE_SUFFIXES
from kerasmorph.paths import check_output_not_input

PathOrNone = str | Path | None


def model_inputs(args: argparse.Namespace) -> dict[str, PathOrNone]:
    """The files a model-using command reads besides its own: embeddings, scheduler config,
    depth map, depth estimator."""
    inputs: dict[str, PathOrNone] = {
        f"--embedding #{index}": path
        for index, path in enumerate(getattr(args, "embedding", None) or (), 1)
    }
    inputs["--scheduler-config"] = getattr(args, "scheduler_config", None)
    inputs["--depth"] = getattr(args, "depth", None)
    inputs["--depth-estimator"] = getattr(args, "depth_estimator", None)
    return inputs


def check_outputs(
    outputs: Mapping[str, PathOrNone],
    inputs: Mapping[str, PathOrNone],
    *,
    directories: tuple[str, ...] = (),
) -> None:
    """Refuses any output (flag -> path) that is, or lies inside, an input.

    Args:
        outputs: flag -> output path; None values are skipped.
        inputs: label -> input path; None values are skipped.
        directories: the flags whose output is a folder whose contents are
            written over (a render directory): inputs inside it are refused too.
    """
    for flag, out in outputs.items():
        if out is not None:
            check_output_not_input(out, inputs, flag=flag, replaces_contents=flag in directories)


def is_directory_out(out: str) -> bool:
    """Whether a frame-writing --out names a directory (no suffix)."""
    return not Path(out).suffix


def model_cost(model: str) -> limits.ModelCost:
    """The `ModelCost` of --model: a preset, a converted folder, else the lowest."""
    from kerasmorph.presets import PRESETS
    from kerasmorph.weights import is_converted_dir, read_manifest

    if model in PRESETS:
        return limits.MODEL_COSTS.get(PRESETS[model].architecture, limits.LOWEST_COST)
    try:
        if is_converted_dir(model):
            family = read_manifest(model)["preset"]
            return limits.MODEL_COSTS.get(PRESETS[family].architecture, limits.LOWEST_COST)
    except (OSError, ValueError, KeyError):
        pass  # The Explorer reports a bad folder when it is built.
    return limits.LOWEST_COST


def image_size(args: argparse.Namespace, cost: limits.ModelCost) -> tuple[int, int]:
    """(height, width) of the images: the flags, else the model's default size."""
    return args.height or cost.default_size, args.width or cost.default_size


def output_kind(out: str, rubber_band: bool = False) -> limits.Output:
    """What a frame-writing --out holds in memory (`kerasmorph.limits.HELD_BYTES_PER_PIXEL`)."""
    suffix = Path(out).suffix.lower()
    if suffix == ".gif":
        return "gif-rubber-band" if rubber_band else "gif"
    if suffix in IMAGE_SUFFIXES:
        return "grid"
    return "stream"  # .mp4, or a directory of PNG frames.


def _batch(args: argparse.Namespace, num_rows: int) -> int:
    """The batch size of the estimate: --batch-size (at most the rows), else 1 (the least)."""
    batch_size = getattr(args, "batch_size", None)
    return min(batch_size, num_rows) if batch_size else 1


def check_render(
    args: argparse.Namespace,
    num_frames: int,
    *,
    walk: str | None,
    request: str,
    fewer: str = "fewer --frames",
    num_encodings: int = 0,
    num_held: int = 0,
) -> None:
    """Refuses a render of `num_frames` frames into --out that cannot fit.

    Sums the frames --out holds (a GIF or grid image keeps them all), the
    walk's plan, `num_encodings` prompt encodings held at once (a grid's
    cells), `num_held` frames kept in an array besides (an adaptive render's)
    and one batch's working memory; a frame directory must also fit its disk.

    Args:
        args: the command's arguments (--out, --model, --height, --width,
            --batch-size, --rubber-band).
        num_frames: frames rendered.
        walk: `"path"` or `"positions"` (`kerasmorph.limits.WALK_FRAME_BYTES`),
            or None.
        request: what was asked, for the message ("--frames 1000000000").
        fewer: what to ask for instead, for the message ("fewer --frames").
        num_encodings: prompt encodings materialised at once.
        num_held: frames kept in memory besides what --out holds.

    Raises:
        ResourceLimitError: of one line.
    """
    cost = model_cost(args.model)
    height, width = image_size(args, cost)
    kind = output_kind(args.out, getattr(args, "rubber_band", False))
    parts = limits.frame_parts(num_frames, height, width, kind, walk=walk, fewer=fewer)
    if num_held:
        parts += limits.frame_parts(num_held, height, width, "array", fewer=fewer)
    if num_encodings:
        parts.append(
            (
                limits.encodings_bytes(num_encodings, cost.text_width),
                f"{num_encodings:,} prompt encodings",
                f"use {fewer}",
            )
        )
    parts.append(limits.batch_part(_batch(args, num_frames), height, width, cost))
    described = f"{request} at {height}x{width} into {args.out}"
    limits.check_memory(described, parts)
    out = Path(args.out)
    if is_directory_out(args.out) and not (out.is_dir() and any(out.iterdir())):
        limits.check_disk(
            described,
            out,
            num_frames,
            limits.png_bytes(height, width),
            f"use {fewer}",
        )


def check_images(
    args: argparse.Namespace,
    num_images: int,
    *,
    request: str,
    fewer: str,
    num_values: int = 0,
) -> None:
    """Refuses `num_images` images kept in memory (generate, sweep) that cannot fit.

    Sums the images (listed, then stacked into one array), their starting
    noise, `num_values` listed sweep values, and one batch's working memory.

    Raises:
        ResourceLimitError: of one line.
    """
    cost = model_cost(args.model)
    height, width = image_size(args, cost)
    parts = limits.frame_parts(num_images, height, width, "array", fewer=fewer, noun="images")
    parts.append(
        (
            limits.noise_bytes(num_images, height, width),
            f"the starting noise of {num_images:,} images",
            f"use {fewer}",
        )
    )
    if num_values:
        parts.append(
            (
                num_values * limits.SWEEP_VALUE_BYTES,
                f"the list of {num_values:,} values",
                f"use {fewer}",
            )
        )
    parts.append(limits.batch_part(_batch(args, num_images), height, width, cost))
    limits.check_memory(f"{request} at {height}x{width}", parts)


def check_image_size(args: argparse.Namespace, request: str = "one image") -> None:
    """Refuses an image size whose working memory cannot fit (img2img, inpaint)."""
    cost = model_cost(args.model)
    height, width = image_size(args, cost)
    limits.check_memory(
        f"{request} at {height}x{width}", [limits.batch_part(1, height, width, cost)]
    )


def clamp_batch_size(args: argparse.Namespace, session, num_rows: int) -> None:
    """Clamps an explicit --batch-size above the command's `num_rows` frames to them.

    `kerasmorph.explorer.batching.clamp_batch_size` (a logged note), rounded
    up to the replicas of --strategy; sets `args.batch_size`.
    """
    from kerasmorph.explorer.batching import clamp_batch_size as clamp

    batch_size = getattr(args, "batch_size", None)
    if batch_size is None or batch_size <= num_rows:
        return
    strategy = getattr(args, "strategy", "none")
    replicas = 1 if strategy == "none" else session.explorer_for(args).num_replicas
    args.batch_size = clamp(num_rows, batch_size, replicas)
